"""deploy/compose.yaml read back: each service's command as the argv the integration tests run."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

from tests.helpers import ROOT

COMPOSE_FILE = ROOT / "deploy" / "compose.yaml"
COMPOSE_CONFIG_DIR = ROOT / "deploy" / "compose"
# The image's entrypoint (Dockerfile `ENTRYPOINT ["shadowd"]`).
IMAGE_ENTRYPOINT = ["shadowd"]


def load_compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return data


def service_argv(service: str, substitutions: dict[str, str]) -> list[str]:
    """The service's entrypoint + command with addresses and paths substituted, as a local argv.

    `shadowd ...` becomes `python -m shadowd ...` and `python ...` this interpreter, so the test
    runs exactly the program and flags the container would.
    """
    spec = load_compose()["services"][service]
    argv = [*(spec.get("entrypoint") or IMAGE_ENTRYPOINT), *spec.get("command", [])]
    argv = [_substitute(part, substitutions) for part in argv]
    if argv[0] == "shadowd":
        return [sys.executable, "-m", "shadowd", *argv[1:]]
    if argv[0] == "python":
        return [sys.executable, *argv[1:]]
    raise AssertionError(f"service {service} runs {argv[0]!r}, which the tests cannot run locally")


def service_environment(service: str) -> dict[str, str]:
    return {str(k): str(v) for k, v in (load_compose()["services"][service].get("environment") or {}).items()}


def _substitute(part: str, substitutions: dict[str, str]) -> str:
    for old, new in substitutions.items():
        part = part.replace(old, new)
    return part


def config_copy(folder: Path, topic: str, group_id: str) -> Path:
    """deploy/compose/shadowd.yaml copied into `folder` with this test's topic and consumer group."""
    text = (COMPOSE_CONFIG_DIR / "shadowd.yaml").read_text()
    text = text.replace("topic: llm.mirror", f"topic: {topic}").replace("group_id: shadowd", f"group_id: {group_id}")
    target = folder / "shadowd.yaml"
    target.write_text(text)
    return target
