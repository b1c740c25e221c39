"""deploy/: schema-valid manifests that pass Pod Security "restricted", pinned images, consistent controller examples."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

import shadowd
from shadowd.config import Settings, load_config

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
BASE = DEPLOY / "kustomize" / "base"
# The oldest Kubernetes minor the manifests promise to fit, and the newest the validator ships.
KUBERNETES_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
# Kinds from CRDs (Prometheus Operator, Argo Rollouts, Flagger): no schema in the validator.
CRD_KINDS = {"ServiceMonitor", "PrometheusRule", "AnalysisTemplate", "Canary", "MetricTemplate"}
DIGEST_PINNED = re.compile(r"^[a-z0-9.-]+\.[a-z]{2,}(:\d+)?/[a-z0-9._/-]+@sha256:[0-9a-f]{64}$")


def _documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _base_resources() -> list[tuple[Path, dict[str, Any]]]:
    kustomization = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    return [(BASE / name, doc) for name in kustomization["resources"] for doc in _documents(BASE / name)]


def _all_manifests() -> list[tuple[Path, dict[str, Any]]]:
    others = [(path, doc) for folder in ("argo", "flagger") for path in sorted((DEPLOY / folder).glob("*.yaml"))
              for doc in _documents(path)]
    return _base_resources() + others


def _pod_specs() -> list[tuple[str, dict[str, Any]]]:
    specs = []
    for _path, doc in _base_resources():
        if doc["kind"] in ("Deployment", "Job", "StatefulSet", "DaemonSet"):
            specs.append((f"{doc['kind']}/{doc['metadata']['name']}", doc["spec"]["template"]["spec"]))
    return specs


def test_kustomization_lists_every_manifest_in_the_base() -> None:
    """Every YAML file in the base is a resource of the kustomization (nothing shipped but not applied)."""
    kustomization = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    present = {p.name for p in BASE.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == present
    for generator in kustomization.get("configMapGenerator", []):
        for file in generator["files"]:
            assert (BASE / file).is_file(), file


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_manifests_validate_against_the_kubernetes_schemas(version: str) -> None:
    """Every built-in resource under deploy/ validates strictly (no unknown field) against the Kubernetes
    JSON schemas of the oldest supported and the newest known Kubernetes version."""
    checked: set[str] = set()
    for path, doc in _all_manifests():
        if doc["kind"] in CRD_KINDS:
            continue
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{path.relative_to(ROOT)} {doc['kind']}/{doc['metadata']['name']}: {exc.message} "
                        f"at {'.'.join(str(p) for p in exc.path)}")
        checked.add(doc["kind"])
    assert checked == {"Namespace", "ServiceAccount", "ConfigMap", "Deployment", "Service", "PodDisruptionBudget",
                       "NetworkPolicy", "HorizontalPodAutoscaler", "Job"}


def test_the_validator_catches_a_broken_manifest() -> None:
    """Near miss: a misspelt field in the Deployment fails the same strict validation."""
    deployment = next(doc for _p, doc in _base_resources() if doc["kind"] == "Deployment")
    broken = json.loads(json.dumps(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {"httpGet": {"path": "/readyz"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[0], strict=True)


def _restricted_violations(spec: dict[str, Any]) -> list[str]:
    """Pod Security Standards "restricted" (v1.30) checks, plus a read-only root filesystem."""
    problems = []
    pod = spec.get("securityContext", {})
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(flag):
            problems.append(f"{flag} is set")
    allowed_volumes = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                       "projected", "secret"}
    for volume in spec.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= allowed_volumes:
            problems.append(f"volume {volume['name']} uses {sorted(kinds - allowed_volumes)}")
    if pod.get("runAsUser") == 0:
        problems.append("pod runs as uid 0")
    for container in spec.get("initContainers", []) + spec["containers"]:
        ctx = container.get("securityContext", {})
        name = container["name"]
        if ctx.get("privileged"):
            problems.append(f"{name}: privileged")
        if ctx.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: allowPrivilegeEscalation is not false")
        if "ALL" not in ctx.get("capabilities", {}).get("drop", []):
            problems.append(f"{name}: capabilities.drop lacks ALL")
        if set(ctx.get("capabilities", {}).get("add", [])) - {"NET_BIND_SERVICE"}:
            problems.append(f"{name}: adds capabilities")
        if ctx.get("runAsNonRoot", pod.get("runAsNonRoot")) is not True:
            problems.append(f"{name}: runAsNonRoot is not true")
        if ctx.get("runAsUser", pod.get("runAsUser")) == 0:
            problems.append(f"{name}: runs as uid 0")
        seccomp = ctx.get("seccompProfile", pod.get("seccompProfile", {})).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            problems.append(f"{name}: seccompProfile is {seccomp!r}")
        if ctx.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{name}: root filesystem is writable")
        for port in container.get("ports", []):
            if port.get("hostPort"):
                problems.append(f"{name}: hostPort")
    return problems


@pytest.mark.parametrize(("name", "spec"), _pod_specs(), ids=[name for name, _ in _pod_specs()])
def test_pods_pass_pod_security_restricted(name: str, spec: dict[str, Any]) -> None:
    """Every pod template passes Pod Security "restricted" and has a read-only root filesystem."""
    assert _restricted_violations(spec) == []


def test_restricted_check_rejects_the_old_deployment_shape() -> None:
    """Near miss: a container without capabilities.drop ALL and seccomp (the manifest before) is rejected."""
    spec = {"containers": [{"name": "c", "securityContext": {
        "runAsNonRoot": True, "readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False}}]}
    problems = _restricted_violations(spec)
    assert "c: capabilities.drop lacks ALL" in problems and "c: seccompProfile is None" in problems


@pytest.mark.parametrize(("name", "spec"), _pod_specs(), ids=[name for name, _ in _pod_specs()])
def test_containers_pin_a_fully_named_image_by_digest_with_resources(name: str, spec: dict[str, Any]) -> None:
    """Images name a registry and a digest (never `shadowd:latest`); every container has requests and a memory
    limit; pods use the shadowd ServiceAccount without a mounted token."""
    for container in spec["containers"]:
        assert DIGEST_PINNED.match(container["image"]), container["image"]
        assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    assert spec["serviceAccountName"] == "shadowd" and spec["automountServiceAccountToken"] is False


def test_kustomize_image_override_matches_the_manifests() -> None:
    """The kustomization's image entry names the image the manifests use and carries a sha256 digest."""
    kustomization = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    (image,) = kustomization["images"]
    used = {c["image"].split("@")[0] for _n, spec in _pod_specs() for c in spec["containers"]}
    assert used == {image["name"]} and re.fullmatch(r"sha256:[0-9a-f]{64}", image["digest"])


def test_daemon_has_startup_readiness_and_liveness_probes() -> None:
    """The daemon's container has a startupProbe (so a slow database start is no liveness restart)."""
    deployment = next(doc for _p, doc in _base_resources() if doc["kind"] == "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"


def test_migration_job_is_versioned_bounded_and_cleaned_up() -> None:
    """The db-upgrade Job carries shadowd's version in its name, a TTL, a deadline and a bounded backoff."""
    job = next(doc for _p, doc in _base_resources() if doc["kind"] == "Job")
    slug = shadowd.__version__.replace(".", "-")
    assert job["metadata"]["name"].endswith(f"-{slug}") or job["metadata"].get("generateName")
    assert job["metadata"]["labels"]["app.kubernetes.io/version"] == shadowd.__version__
    assert job["spec"]["ttlSecondsAfterFinished"] > 0 and job["spec"]["activeDeadlineSeconds"] > 0
    assert job["spec"]["backoffLimit"] <= 5


def test_network_policy_guards_the_api_port() -> None:
    """A NetworkPolicy selects the shadowd pods and admits ingress only on the API port, from named sources."""
    policy = next(doc for _p, doc in _base_resources() if doc["kind"] == "NetworkPolicy")
    selected = policy["spec"]["podSelector"]["matchLabels"]
    deployment = next(doc for _p, doc in _base_resources() if doc["kind"] == "Deployment")
    assert selected.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    assert "Ingress" in policy["spec"]["policyTypes"]
    for rule in policy["spec"]["ingress"]:
        assert rule["from"] and [p["port"] for p in rule["ports"]] == [8080]


def test_shipped_config_loads_and_controller_examples_match_it(tmp_path: Path) -> None:
    """The ConfigMap's shadowd.yaml loads (so it holds no secret); the Flagger Canary names a rollout with
    `stages: [100]`, and the Argo analysis template is parameterised by rollout."""
    configmap = next(doc for _p, doc in _base_resources() if doc["kind"] == "ConfigMap")
    path = tmp_path / "shadowd.yaml"
    path.write_text(configmap["data"]["shadowd.yaml"])
    config = load_config(path, Settings())
    canary = next(doc for doc in _documents(DEPLOY / "flagger" / "canary.yaml") if doc["kind"] == "Canary")
    named = {hook["metadata"]["rollout"] for hook in canary["spec"]["analysis"]["webhooks"]}
    named |= {m["templateVariables"]["rollout"] for m in canary["spec"]["analysis"]["metrics"]}
    assert named, "the Canary names no shadowd rollout"
    for name in named:
        spec = config.rollout(name)
        assert spec is not None, f"Flagger names rollout {name!r}, which the shipped config lacks"
        assert spec.stages == (100,), f"rollout {name!r} driven by Flagger must have stages: [100]"
    template = next(doc for doc in _documents(DEPLOY / "argo" / "analysis-template.yaml"))
    assert "rollout" in {arg["name"] for arg in template["spec"]["args"]}
    assert any(spec.stages != (100,) for spec in config.rollouts)  # the Argo-driven one walks the stages


def test_prometheus_operator_resources_have_the_fields_they_need() -> None:
    """ServiceMonitor scrapes the Service's `http` port at /metrics; every PrometheusRule alert has an
    expression, a severity and a summary, and the required alerts are all there."""
    resources = {doc["kind"]: doc for _p, doc in _base_resources()}
    monitor = resources["ServiceMonitor"]
    assert monitor["spec"]["endpoints"][0]["port"] == "http" and monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= resources["Service"]["metadata"]["labels"].items()
    rules = [rule for group in resources["PrometheusRule"]["spec"]["groups"] for rule in group["rules"]]
    for rule in rules:
        assert rule["expr"].strip() and rule["labels"]["severity"] and rule["annotations"]["summary"]
    assert {r["alert"] for r in rules} >= {
        "ShadowdConsumerLagGrowing", "ShadowdDeadLettersRising", "ShadowdBudgetExhausted",
        "ShadowdRollbackDecided", "ShadowdNoVerdicts",
    }
    hpa = resources["HorizontalPodAutoscaler"]
    assert hpa["spec"]["metrics"][0]["external"]["metric"]["name"] == "shadowd_consumer_lag_records"


def test_dockerfile_pins_its_base_and_installs_under_the_lock() -> None:
    """The Dockerfile's base image has a full version tag (never floating), and every pip command in it
    uses requirements/lock.txt as constraints."""
    text = (ROOT / "Dockerfile").read_text()
    images = re.findall(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.MULTILINE)
    assert images and all(re.fullmatch(r"python:\d+\.\d+\.\d+-slim-[a-z]+(@sha256:[0-9a-f]{64})?", i) for i in images)
    assert all(line.split()[1] == "${PYTHON_IMAGE}" for line in text.splitlines() if line.startswith("FROM "))
    pip_lines = [line for line in text.splitlines() if re.search(r"\bpip (install|wheel)\b", line)]
    assert pip_lines and all("--constraint" in line for line in pip_lines)


PLACEHOLDER_DIGEST = "sha256:" + "0" * 64


def _overridden(image: str, override: dict[str, str]) -> str:
    """kustomize's `images:` transform on one container image (name match, then newName / digest)."""
    name = image.split("@")[0].split(":")[0] if "@" in image else image.rsplit(":", 1)[0]
    if name != override["name"]:
        return image
    return f"{override.get('newName', name)}@{override['digest']}"


def test_the_overlay_images_entry_pins_every_container_of_the_base() -> None:
    """The production overlay's `images:` entry (the documented way to pin) matches the image of every
    container and init container in the base, so setting its digest pins everything that runs."""
    overlay = yaml.safe_load((DEPLOY / "kustomize" / "overlays" / "production" / "kustomization.yaml").read_text())
    assert overlay["resources"] == ["../../base"]
    (override,) = overlay["images"]
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", override["digest"])
    pinned = f"{override['newName']}@{override['digest']}"
    for _name, spec in _pod_specs():
        for container in [*spec["containers"], *spec.get("initContainers", [])]:
            assert _overridden(container["image"], override) == pinned, container["image"]


def test_an_image_outside_the_override_is_caught() -> None:
    """Near miss: a container naming another image keeps it through the override, which the check above sees."""
    override = {"name": "registry.example.com/platform/shadowd", "newName": "r.example.com/s", "digest": "sha256:" +
                "a" * 64}
    assert _overridden("registry.example.com/platform/shadowd@" + PLACEHOLDER_DIGEST, override) == \
        "r.example.com/s@sha256:" + "a" * 64
    assert _overridden("registry.example.com/platform/other:1.0", override) == \
        "registry.example.com/platform/other:1.0"


def test_the_base_carries_only_the_placeholder_digest() -> None:
    """The base never holds a real digest (a stale pin would run an old build): releases pin in an overlay."""
    kustomization = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    assert [i["digest"] for i in kustomization["images"]] == [PLACEHOLDER_DIGEST]
    for _name, spec in _pod_specs():
        for container in spec["containers"]:
            assert container["image"].endswith("@" + PLACEHOLDER_DIGEST)
