"""The HTTP API over a real SQLite file: rollout and verdict reads, manual control, auth, and the
Argo Rollouts / Flagger contracts."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from shadowd.adapters.sql_store import SqlVerdictStore, open_store
from shadowd.config import Config, load_config
from shadowd.core.findings import Finding, Status
from shadowd.core.results import SideResult, Usage
from shadowd.http import ApiState, create_app, runner_options
from shadowd.metrics import Metrics
from shadowd.records import VerdictRecord

ADMIN, READ = "admin-secret", "read-secret"
NOW = datetime.now(UTC)

# regressed: 24 of 40 compared verdicts regress, far past its tolerance -> the gate says rollback.
# clean: 40 clean verdicts, a loose tolerance and two stages -> promote, to the last stage.
# fresh: no verdicts at all -> hold (too little data).
CONFIG = """
rollouts:
  - name: regressed
    baseline: claude-opus-4-6
    candidate: claude-opus-4-7
    stages: [1, 5, 25, 50, 100]
    gate: {min_samples: 5, max_regression_rate_increase: 0.05}
  - name: clean
    baseline: claude-opus-4-6
    candidate: claude-opus-4-7
    stages: [50, 100]
    gate: {min_samples: 5, max_regression_rate_increase: 0.2}
  - name: fresh
    baseline: claude-opus-4-6
    candidate: claude-opus-4-7
    stages: [1, 5, 25, 50, 100]
    gate: {min_samples: 5}
"""

MakeClient = Callable[..., Awaitable[TestClient[Any, Any]]]


def _side(model: str, text: str) -> SideResult:
    return SideResult(
        model=model,
        ok=True,
        content=({"type": "text", "text": text},),
        stop_reason="end_turn",
        usage=Usage(input_tokens=100, output_tokens=40),
        latency_ms=800.0,
        cost_usd=0.0015,
    )


def _verdict(rollout: str, index: int, regression: bool) -> VerdictRecord:
    findings = (
        (Finding.of("schema.key_missing", "key 'summary' is missing", path="/summary"),) if regression else ()
    )
    return VerdictRecord(
        rollout=rollout,
        request_id=f"req-{index:03d}",
        route="support-summary" if index % 2 else "default",
        status=Status.REGRESSION if regression else Status.PASS,
        findings=findings,
        comparator_version="test-1",
        created_at=NOW - timedelta(minutes=index),
        baseline=_side("claude-opus-4-6", '{"summary": "ok"}'),
        candidate=_side("claude-opus-4-7", "{}" if regression else '{"summary": "ok"}'),
    )


async def _seed(path: Path) -> None:
    opened = await open_store("sqlite:///" + str(path), upgrade=True)
    try:
        records = [_verdict("regressed", i, regression=i < 24) for i in range(40)]
        records += [_verdict("clean", i, regression=False) for i in range(40)]
        await opened.save(records, [])
    finally:
        await opened.close()


@pytest.fixture(scope="module")
def seeded_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Migrated and seeded once per module; each test works on its own copy."""
    path = tmp_path_factory.mktemp("seed") / "db.sqlite"
    asyncio.run(_seed(path))
    return path


@pytest.fixture
async def store(tmp_path: Path, seeded_db: Path) -> AsyncIterator[SqlVerdictStore]:
    shutil.copyfile(seeded_db, tmp_path / "db.sqlite")
    opened = await open_store("sqlite:///" + str(tmp_path / "db.sqlite"))
    yield opened
    await opened.close()


@pytest.fixture
def config(tmp_path: Path) -> Config:
    path = tmp_path / "shadowd.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    return load_config(path)


@pytest.fixture
async def make_client(config: Config, store: SqlVerdictStore) -> AsyncIterator[MakeClient]:
    clients: list[TestClient[Any, Any]] = []

    async def make(**overrides: Any) -> TestClient[Any, Any]:
        """Reads are open unless the test passes open_reads=False (the `run` default)."""
        open_reads = overrides.pop("open_reads", True)
        state = ApiState(config=config, store=overrides.pop("store", store), metrics=Metrics(), **overrides)
        server = TestServer(create_app(state, open_reads=open_reads))
        await server.start_server(**runner_options())  # shadowd's server options: protocol errors filtered
        client: TestClient[Any, Any] = TestClient(server)
        await client.start_server()
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


@pytest.fixture
async def client(make_client: MakeClient) -> TestClient[Any, Any]:
    return await make_client(admin_token=ADMIN)


@pytest.fixture
async def broken_store(tmp_path: Path) -> AsyncIterator[SqlVerdictStore]:
    """A database with no schema: every query fails, as when the database is unusable."""
    opened = await open_store("sqlite:///" + str(tmp_path / "empty.sqlite"))
    yield opened
    await opened.close()


def _admin(token: str = ADMIN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _flagger(hook: str | None, rollout: str, **metadata: str) -> dict[str, Any]:
    meta = {"rollout": rollout, **metadata}
    if hook is not None:
        meta["hook"] = hook
    return {
        "name": "support-api",
        "namespace": "prod",
        "phase": "Progressing",
        "checksum": "abc",
        "metadata": meta,
    }


# --- reads ---------------------------------------------------------------------------------------------


async def test_list_rollouts_gives_a_report_per_configured_rollout(client: TestClient[Any, Any]) -> None:
    """GET /v1/rollouts answers one report per configured rollout, in config order, with their names."""
    response = await client.get("/v1/rollouts")
    assert response.status == 200
    body = await response.json()
    assert body["names"] == ["regressed", "clean", "fresh"]
    assert [item["rollout"] for item in body["items"]] == body["names"]
    assert [item["decision"] for item in body["items"]] == ["rollback", "promote", "hold"]
    assert body["unconfigured"] == []


async def test_rollout_report_is_the_report_json_object(client: TestClient[Any, Any]) -> None:
    """GET /v1/rollouts/{name} answers the `report --json` object with the SPEC's fields."""
    response = await client.get("/v1/rollouts/regressed")
    assert response.status == 200
    report = await response.json()
    for key in (
        "rollout",
        "stage",
        "canary_percent",
        "decision",
        "reasons",
        "counts",
        "regression_rate",
        "regression_rate_ci",
        "noise_rate",
        "by_code",
        "by_route",
        "latency_ms",
        "cost_usd",
    ):
        assert key in report
    assert report["decision"] == "rollback"
    assert report["counts"]["regression"] == 24 and report["counts"]["pass"] == 16
    assert report["regression_rate"] == pytest.approx(0.6)


@pytest.mark.parametrize(
    "path",
    [
        "/v1/rollouts/nope",
        "/v1/rollouts/nope/verdicts",
        "/v1/rollouts/nope/decisions",
        "/v1/rollouts/nope/verdicts/req-001",
    ],
)
async def test_unknown_rollout_is_a_json_404(client: TestClient[Any, Any], path: str) -> None:
    """Every read of an unknown rollout answers 404 with a JSON error and reason."""
    response = await client.get(path)
    assert response.status == 404
    body = await response.json()
    assert body["error"] == "unknown rollout" and "nope" in body["reason"]


async def test_unknown_path_under_v1_is_a_json_404(client: TestClient[Any, Any]) -> None:
    """A path the API does not have answers JSON, not an HTML page."""
    response = await client.get("/v1/nothing-here")
    assert response.status == 404
    assert (await response.json())["error"] == "not found"


async def test_verdicts_filter_by_status_code_route_and_since(client: TestClient[Any, Any]) -> None:
    """The `verdicts` filters narrow the list exactly as the CLI's do."""
    regressions = await (
        await client.get("/v1/rollouts/regressed/verdicts?status=regression&limit=1000")
    ).json()
    assert len(regressions["items"]) == 24
    assert {item["status"] for item in regressions["items"]} == {"regression"}
    by_code = await (
        await client.get("/v1/rollouts/regressed/verdicts?code=schema.key_missing&limit=1000")
    ).json()
    assert {item["request_id"] for item in by_code["items"]} == {
        item["request_id"] for item in regressions["items"]
    }
    routed = await (await client.get("/v1/rollouts/regressed/verdicts?route=default&limit=1000")).json()
    assert len(routed["items"]) == 20 and {item["route"] for item in routed["items"]} == {"default"}
    # An absolute time: the seeded verdicts are dated from module import, which may be minutes ago.
    since = (NOW - timedelta(seconds=630)).isoformat().replace("+00:00", "Z")
    recent = await (await client.get(f"/v1/rollouts/regressed/verdicts?since={since}")).json()
    assert {item["request_id"] for item in recent["items"]} == {f"req-{i:03d}" for i in range(11)}
    first = recent["items"][0]
    for key in (
        "id",
        "rollout",
        "request_id",
        "route",
        "status",
        "findings",
        "baseline",
        "candidate",
        "adaptations",
        "comparator_version",
        "created_at",
    ):
        assert key in first


async def test_verdict_pages_cover_every_verdict_once(client: TestClient[Any, Any]) -> None:
    """Following next_cursor visits each verdict exactly once, newest first, and ends with null."""
    seen: list[int] = []
    url = "/v1/rollouts/regressed/verdicts?limit=7"
    pages = 0
    while True:
        body = await (await client.get(url)).json()
        pages += 1
        seen += [item["id"] for item in body["items"]]
        if body["next_cursor"] is None:
            break
        url = f"/v1/rollouts/regressed/verdicts?limit=7&cursor={body['next_cursor']}"
    assert pages == 6
    assert len(seen) == len(set(seen)) == 40
    assert seen == sorted(seen, reverse=True)


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("status=bogus", "status"),
        ("code=format.nope", "code"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=ten", "limit"),
        ("limit=-5", "limit"),
        ("since=yesterday", "since"),
        ("cursor=-1", "cursor"),
        ("cursor=abc", "cursor"),
        ("cursor=99999999999999999999", "cursor"),
        ("limit=%C2%B2", "limit"),
        ("stauts=pass", "stauts"),
    ],
)
async def test_bad_verdict_parameters_are_400_naming_the_parameter(
    client: TestClient[Any, Any], query: str, parameter: str
) -> None:
    """A parameter the verdicts endpoint cannot use answers 400 with a JSON reason naming it."""
    response = await client.get(f"/v1/rollouts/regressed/verdicts?{query}")
    assert response.status == 400
    body = await response.json()
    assert body["parameter"] == parameter and body["reason"]


async def test_verdict_detail_includes_each_sides_output(client: TestClient[Any, Any]) -> None:
    """GET .../verdicts/{request_id} answers the verdict with both outputs; an absent one is 404."""
    response = await client.get("/v1/rollouts/regressed/verdicts/req-001")
    assert response.status == 200
    body = await response.json()
    assert body["request_id"] == "req-001" and body["status"] == "regression"
    assert body["outputs"]["baseline"] == [{"type": "text", "text": '{"summary": "ok"}'}]
    assert body["outputs"]["candidate"] == [{"type": "text", "text": "{}"}]
    assert body["outputs"]["baseline_repeat"] is None
    missing = await client.get("/v1/rollouts/regressed/verdicts/req-999")
    assert missing.status == 404
    assert (await missing.json())["error"] == "verdict not found"


async def test_openapi_document_describes_every_route(client: TestClient[Any, Any]) -> None:
    """/openapi.json is an OpenAPI 3.1 document with a path and method for every registered route."""
    response = await client.get("/openapi.json")
    assert response.status == 200
    document = await response.json()
    assert document["openapi"].startswith("3.1")
    assert "bearerAuth" in document["components"]["securitySchemes"]
    app = client.app
    assert app is not None
    for route in app.router.routes():
        if route.method == "HEAD":
            continue
        assert route.resource is not None
        info = route.resource.get_info()
        path = info.get("path") or info.get("formatter")
        assert path in document["paths"], path
        assert route.method.lower() in document["paths"][path], (route.method, path)


def test_openapi_document_is_valid_openapi() -> None:
    """The document passes an OpenAPI 3.1 validator (when one is installed)."""
    validator = pytest.importorskip("openapi_spec_validator")
    from shadowd.http import openapi_document

    validator.validate(openapi_document())


# --- manual control and auth ---------------------------------------------------------------------------


async def test_pause_is_recorded_in_the_audit_trail_and_published(make_client: MakeClient) -> None:
    """A POST pause applies, records `api:<token name>` in the audit trail (the body's actor only as a
    note) and publishes the decision."""
    published: list[dict[str, Any]] = []

    async def publish(decision: dict[str, Any]) -> None:
        published.append(decision)

    client = await make_client(admin_token=ADMIN, publish_decision=publish)
    before = await (await client.get("/v1/rollouts/clean/decisions")).json()
    response = await client.post(
        "/v1/rollouts/clean/pause", json={"actor": "alice", "reason": "looking into it"}, headers=_admin()
    )
    assert response.status == 200
    applied = await response.json()
    assert applied["action"] == "pause" and applied["actor"] == "api:admin" and applied["decision"] == "hold"
    after = await (await client.get("/v1/rollouts/clean/decisions")).json()
    assert len(after["items"]) == len(before["items"]) + 1
    assert after["items"][0]["action"] == "pause" and after["items"][0]["actor"] == "api:admin"
    assert "stated actor: alice" in str(after["items"][0])
    assert published == [applied]
    report = await (await client.get("/v1/rollouts/clean")).json()
    assert report["state"] == "paused"


async def test_actor_is_the_token_name_without_a_body(client: TestClient[Any, Any]) -> None:
    """Without a body, the actor is the name of the token used (`admin` for SHADOWD_ADMIN_TOKEN)."""
    response = await client.post("/v1/rollouts/fresh/pause", headers=_admin())
    assert response.status == 200
    assert (await response.json())["actor"] == "api:admin"


async def test_manual_action_that_does_not_apply_is_409(client: TestClient[Any, Any]) -> None:
    """Resuming a rollout that is not paused answers 409 with the reason."""
    response = await client.post("/v1/rollouts/fresh/resume", headers=_admin())
    assert response.status == 409
    body = await response.json()
    assert body["error"] == "conflict" and "paused" in body["reason"]


async def test_manual_action_on_unknown_rollout_is_404(client: TestClient[Any, Any]) -> None:
    """A manual action on an unknown rollout answers 404."""
    response = await client.post("/v1/rollouts/nope/pause", headers=_admin())
    assert response.status == 404


async def test_manual_action_with_a_bad_body_is_400(client: TestClient[Any, Any]) -> None:
    """A body that is not a JSON object, or an actor that is not a string, answers 400 naming it."""
    not_json = await client.post("/v1/rollouts/fresh/pause", data=b"pause please", headers=_admin())
    assert not_json.status == 400 and (await not_json.json())["parameter"] == "body"
    bad_actor = await client.post("/v1/rollouts/fresh/pause", json={"actor": 7}, headers=_admin())
    assert bad_actor.status == 400 and (await bad_actor.json())["parameter"] == "actor"


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"Authorization": "Bearer wrong"}, 401),
        ({"Authorization": f"Basic {ADMIN}"}, 401),
        ({"Authorization": f"Bearer {READ}"}, 403),
    ],
)
async def test_manual_action_needs_the_admin_token(
    make_client: MakeClient, headers: dict[str, str], status: int
) -> None:
    """Without the admin token a manual action changes nothing: 401 when missing or wrong, 403 for a
    known token that may only read."""
    client = await make_client(admin_token=ADMIN, read_token=READ)
    response = await client.post("/v1/rollouts/clean/rollback", headers=headers)
    assert response.status == status
    if status == 401:
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert (await response.json())["error"] == "unauthorized"
    else:
        assert (await response.json())["error"] == "forbidden"
    decisions = await (await client.get("/v1/rollouts/clean/decisions", headers=_admin(READ))).json()
    assert decisions["items"] == []


async def test_manual_control_is_disabled_without_an_admin_token(make_client: MakeClient) -> None:
    """With no admin token configured, every manual action is 403, whatever token is sent."""
    client = await make_client()
    response = await client.post("/v1/rollouts/clean/promote", headers=_admin())
    assert response.status == 403
    assert "admin token" in (await response.json())["reason"]


async def test_reads_need_the_read_token_when_one_is_set(make_client: MakeClient) -> None:
    """With a read token set, reads need it or the admin token; health, metrics and the document stay open."""
    client = await make_client(admin_token=ADMIN, read_token=READ)
    for path in (
        "/v1/rollouts",
        "/v1/rollouts/clean",
        "/v1/rollouts/clean/verdicts",
        "/v1/rollouts/clean/analysis",
        "/api/v1/query?query=vector(1)",
    ):
        assert (await client.get(path)).status == 401, path
        assert (await client.get(path, headers=_admin("wrong"))).status == 401, path
        assert (await client.get(path, headers=_admin(READ))).status == 200, path
        assert (await client.get(path, headers=_admin(ADMIN))).status == 200, path
    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
        assert (await client.get(path)).status == 200, path


async def test_reads_are_open_only_with_open_reads(make_client: MakeClient) -> None:
    """With open reads, reads need no token; without (the `run` default) they need one even when no read
    token is configured, and the refusal says how to configure one."""
    assert (await (await make_client(admin_token=ADMIN)).get("/v1/rollouts/clean")).status == 200
    closed = await make_client(admin_token=ADMIN, open_reads=False)
    assert (await closed.get("/v1/rollouts/clean")).status == 401
    assert (await closed.get("/v1/rollouts/clean", headers=_admin())).status == 200
    nothing = await make_client(open_reads=False)
    refused = await nothing.get("/v1/rollouts/clean/verdicts")
    assert refused.status == 401 and "--open-reads" in (await refused.json())["reason"]


# --- Argo Rollouts -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rollout", "query", "verdict"),
    [
        ("regressed", "", "fail"),
        ("clean", "", "pass"),
        ("fresh", "", "continue"),
        ("fresh", "?canary_percent=1", "pass"),
        ("fresh", "?canary_percent=5", "continue"),
        ("fresh", "?stage=1", "pass"),
        ("fresh", "?stage=2", "continue"),
        ("clean", "?canary_percent=100", "pass"),
        ("regressed", "?canary_percent=1", "fail"),
    ],
)
async def test_argo_analysis_maps_the_gate_decision(
    client: TestClient[Any, Any], rollout: str, query: str, verdict: str
) -> None:
    """The analysis verdict is fail on rollback, pass on promote (or an approved stage), continue on hold."""
    response = await client.get(f"/v1/rollouts/{rollout}/analysis{query}")
    assert response.status == 200
    body = await response.json()
    assert body["verdict"] == verdict, body["reason"]
    assert isinstance(body["score"], float) and 0.0 <= body["score"] <= 1.0
    assert isinstance(body["canary_percent"], int) and body["reason"]
    assert {m["name"] for m in body["metrics"]} >= {"regression_rate", "latency_p95_ratio", "cost_ratio"}


async def test_argo_analysis_score_is_one_minus_the_regression_rate(client: TestClient[Any, Any]) -> None:
    """score = 1 − regression rate, and 0 while nothing is compared."""
    regressed = await (await client.get("/v1/rollouts/regressed/analysis")).json()
    assert regressed["score"] == pytest.approx(0.4)
    fresh = await (await client.get("/v1/rollouts/fresh/analysis")).json()
    assert fresh["score"] == 0.0


@pytest.mark.parametrize("query", ["?canary_percent=abc", "?canary_percent=101", "?stage=0", "?stage=9"])
async def test_argo_analysis_bad_parameter_is_200_fail(client: TestClient[Any, Any], query: str) -> None:
    """A bad analysis parameter is still 200 JSON, with verdict fail and the parameter named."""
    response = await client.get(f"/v1/rollouts/fresh/analysis{query}")
    assert response.status == 200
    body = await response.json()
    assert body["verdict"] == "fail"
    assert query[1:].split("=")[0] in body["reason"]


async def test_argo_analysis_unknown_rollout_is_200_fail(client: TestClient[Any, Any]) -> None:
    """An unknown rollout is still answered 200 with a JSON body whose verdict is fail."""
    response = await client.get("/v1/rollouts/nope/analysis")
    assert response.status == 200
    body = await response.json()
    assert body["verdict"] == "fail" and "nope" in body["reason"]
    assert body["score"] == 0.0 and body["canary_percent"] == 0 and body["metrics"] == []


async def test_argo_analysis_database_error_is_200_continue(
    make_client: MakeClient, broken_store: SqlVerdictStore
) -> None:
    """When the database cannot be read the answer is still 200 JSON, with verdict continue and the reason."""
    client = await make_client(store=broken_store)
    response = await client.get("/v1/rollouts/clean/analysis")
    assert response.status == 200
    body = await response.json()
    assert body["verdict"] == "continue" and "database" in body["reason"]


async def test_paused_rollout_analysis_is_continue(client: TestClient[Any, Any]) -> None:
    """After a pause, a rollout whose gate would promote answers continue."""
    assert (await (await client.get("/v1/rollouts/clean/analysis")).json())["verdict"] == "pass"
    assert (await client.post("/v1/rollouts/clean/pause", headers=_admin())).status == 200
    body = await (await client.get("/v1/rollouts/clean/analysis")).json()
    assert body["verdict"] == "continue" and "paused" in body["reason"]


# --- Flagger webhooks ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hook", "rollout", "status"),
    [
        ("pre-rollout", "regressed", 403),
        ("pre-rollout", "fresh", 200),
        ("confirm-rollout", "fresh", 200),
        ("rollout", "regressed", 403),
        ("rollout", "fresh", 200),
        ("rollout", "clean", 200),
        ("confirm-traffic-increase", "fresh", 403),
        ("confirm-traffic-increase", "clean", 200),
        ("confirm-traffic-increase", "regressed", 403),
        ("confirm-promotion", "clean", 200),
        ("confirm-promotion", "fresh", 403),
        ("confirm-promotion", "regressed", 403),
    ],
)
async def test_flagger_gate_passes_or_refuses_by_hook(
    client: TestClient[Any, Any], hook: str, rollout: str, status: int
) -> None:
    """Each gate hook answers 200 to pass or 403 with a JSON reason to refuse, from the gate decision."""
    response = await client.post("/v1/flagger/gate", json=_flagger(hook, rollout))
    assert response.status == status
    body = await response.json()
    assert body["ok"] is (status == 200)
    assert body["rollout"] == rollout and body["hook"] == hook and body["reason"]


async def test_flagger_traffic_increase_passes_when_the_stage_covers_the_weight(
    client: TestClient[Any, Any],
) -> None:
    """With metadata.weight, confirm-traffic-increase passes once shadowd approves that share, not before."""
    covered = await client.post(
        "/v1/flagger/gate", json=_flagger("confirm-traffic-increase", "fresh", weight="1")
    )
    assert covered.status == 200
    beyond = await client.post(
        "/v1/flagger/gate", json=_flagger("confirm-traffic-increase", "fresh", weight="5")
    )
    assert beyond.status == 403 and "5%" in (await beyond.json())["reason"]
    bad = await client.post(
        "/v1/flagger/gate", json=_flagger("confirm-traffic-increase", "fresh", weight="lots")
    )
    assert bad.status == 400 and (await bad.json())["parameter"] == "metadata.weight"


async def test_flagger_hook_may_come_from_phase_or_query(client: TestClient[Any, Any]) -> None:
    """Without metadata.hook the hook is read from the `hook` query parameter, then from `phase`."""
    by_query = await client.post("/v1/flagger/gate?hook=rollout", json=_flagger(None, "regressed"))
    assert by_query.status == 403 and (await by_query.json())["hook"] == "rollout"
    payload = _flagger(None, "clean") | {"phase": "confirm-promotion"}
    by_phase = await client.post("/v1/flagger/gate", json=payload)
    assert by_phase.status == 200 and (await by_phase.json())["hook"] == "confirm-promotion"


async def test_flagger_rollout_defaults_to_the_canary_name(client: TestClient[Any, Any]) -> None:
    """Without metadata.rollout the shadowd rollout is the canary's name."""
    payload = {"name": "regressed", "namespace": "prod", "phase": "rollout"}
    response = await client.post("/v1/flagger/gate", json=payload)
    assert response.status == 403 and (await response.json())["rollout"] == "regressed"


@pytest.mark.parametrize(
    ("payload", "parameter"),
    [
        ("not json", "body"),
        ([], "body"),
        ({"namespace": "prod", "phase": "rollout"}, "name"),
        ({"name": "x", "metadata": {"rollout": ["clean"]}, "phase": "rollout"}, "metadata"),
        ({"name": "clean", "phase": "Progressing"}, "metadata.hook"),
        ({"name": "clean"}, "phase"),
        ({"name": "clean", "phase": "confirm-promotoin"}, "metadata.hook"),
        ({"name": "clean", "phase": "rollback"}, "metadata.hook"),
    ],
)
async def test_flagger_gate_malformed_call_is_400(
    client: TestClient[Any, Any], payload: Any, parameter: str
) -> None:
    """A body that does not say which canary, rollout or gate is 400 naming the field (never a pass)."""
    if isinstance(payload, str):
        response = await client.post("/v1/flagger/gate", data=payload.encode())
    else:
        response = await client.post("/v1/flagger/gate", json=payload)
    assert response.status == 400
    assert (await response.json())["parameter"] == parameter


@pytest.mark.parametrize("hook", ["post-rollout", "event"])
async def test_flagger_gate_passes_non_gating_hooks_through(client: TestClient[Any, Any], hook: str) -> None:
    """Hooks shadowd does not gate answer 200 with a note, even for a rolled-back rollout."""
    response = await client.post("/v1/flagger/gate", json=_flagger(hook, "regressed"))
    assert response.status == 200
    assert "passed through" in (await response.json())["reason"]


async def test_flagger_gate_unknown_rollout_is_refused(client: TestClient[Any, Any]) -> None:
    """A gate call for an unknown rollout is refused with 403 and a JSON reason."""
    response = await client.post("/v1/flagger/gate", json=_flagger("rollout", "nope"))
    assert response.status == 403
    body = await response.json()
    assert body["ok"] is False and "nope" in body["reason"]


async def test_flagger_gate_database_error_is_403_not_5xx(
    make_client: MakeClient, broken_store: SqlVerdictStore
) -> None:
    """When the database cannot be read, a gate call is refused with 403 and the reason, so Flagger waits."""
    client = await make_client(store=broken_store)
    response = await client.post("/v1/flagger/gate", json=_flagger("confirm-promotion", "clean"))
    assert response.status == 403
    body = await response.json()
    assert body["ok"] is False and body["error"] == "database unavailable"


@pytest.mark.parametrize(
    ("rollout", "status", "rollback"),
    [("regressed", 200, True), ("clean", 409, False), ("fresh", 409, False), ("nope", 404, False)],
)
async def test_flagger_rollback_hook_is_200_only_to_roll_back(
    client: TestClient[Any, Any], rollout: str, status: int, rollback: bool
) -> None:
    """The rollback hook answers 200 exactly when shadowd says rollback; otherwise non-2xx with a reason."""
    response = await client.post("/v1/flagger/rollback", json=_flagger("rollback", rollout))
    assert response.status == status
    body = await response.json()
    assert body["rollback"] is rollback and body["reason"]


async def test_flagger_rollback_follows_a_manual_rollback(client: TestClient[Any, Any]) -> None:
    """After a manual rollback through the API, the rollback hook answers 200."""
    assert (await client.post("/v1/flagger/rollback", json=_flagger(None, "clean"))).status == 409
    assert (await client.post("/v1/rollouts/clean/rollback", headers=_admin())).status == 200
    assert (await client.post("/v1/flagger/rollback", json=_flagger(None, "clean"))).status == 200


async def test_flagger_rollback_database_error_is_no_rollback(
    make_client: MakeClient, broken_store: SqlVerdictStore
) -> None:
    """When the database cannot be read, the rollback hook does not signal a rollback (409)."""
    client = await make_client(store=broken_store)
    response = await client.post("/v1/flagger/rollback", json=_flagger(None, "regressed"))
    assert response.status == 409
    assert (await response.json())["rollback"] is False


# --- the Prometheus-compatible query API ---------------------------------------------------------------


async def test_prometheus_query_answers_in_the_prometheus_shape(client: TestClient[Any, Any]) -> None:
    """A query with a rollout matcher answers a one-sample vector, its value a string, as Prometheus does."""
    response = await client.get(
        "/api/v1/query", params={"query": 'shadowd_regression_rate{rollout="regressed"}'}
    )
    assert response.status == 200
    body = await response.json()
    assert body["status"] == "success" and body["data"]["resultType"] == "vector"
    [sample] = body["data"]["result"]
    assert sample["metric"] == {"__name__": "shadowd_regression_rate", "rollout": "regressed"}
    stamp, value = sample["value"]
    assert isinstance(stamp, float) and isinstance(value, str)
    assert float(value) == pytest.approx(0.6)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ('shadowd_canary_percent{rollout="fresh"}', 1.0),
        ("shadowd_canary_percent{rollout='clean'}", 50.0),
        ('shadowd_latency_p95_ratio{rollout="clean"}', 1.0),
        ('shadowd_cost_ratio{ rollout = "clean" }', 1.0),
        ('shadowd_rollback{rollout="regressed"}', 1.0),
        ('shadowd_rollback{rollout="clean"}', 0.0),
        ("vector(1)", 1.0),
    ],
)
async def test_prometheus_query_values(client: TestClient[Any, Any], query: str, expected: float) -> None:
    """Each supported metric answers the report's figure; vector(1) answers 1 (Flagger's liveness probe)."""
    body = await (await client.get("/api/v1/query", params={"query": query})).json()
    [sample] = body["data"]["result"]
    assert float(sample["value"][1]) == pytest.approx(expected)


async def test_prometheus_query_without_a_label_answers_every_rollout(client: TestClient[Any, Any]) -> None:
    """Without a rollout matcher the vector has one sample per rollout that has a value."""
    body = await (await client.get("/api/v1/query", params={"query": "shadowd_canary_percent"})).json()
    assert {s["metric"]["rollout"] for s in body["data"]["result"]} == {"regressed", "clean", "fresh"}
    rates = await (await client.get("/api/v1/query", params={"query": "shadowd_regression_rate"})).json()
    assert {s["metric"]["rollout"] for s in rates["data"]["result"]} == {"regressed", "clean"}


async def test_prometheus_query_by_post_form(client: TestClient[Any, Any]) -> None:
    """The query may also come as a POST form, as the Prometheus API allows."""
    response = await client.post("/api/v1/query", data={"query": 'shadowd_stage{rollout="fresh"}'})
    assert response.status == 200
    assert (await response.json())["data"]["result"][0]["value"][1] == "1"


@pytest.mark.parametrize(
    "query",
    [
        "",
        "shadowd_unknown_metric",
        'shadowd_regression_rate{rollout=~"re.*"}',
        'shadowd_regression_rate{job="x"}',
        "sum(rate(x[5m]))",
        'shadowd_regression_rate{rollout="a"',
    ],
)
async def test_prometheus_bad_query_is_bad_data(client: TestClient[Any, Any], query: str) -> None:
    """An unknown metric or a query outside the supported subset is 400 with errorType bad_data."""
    response = await client.get("/api/v1/query", params={"query": query})
    assert response.status == 400
    body = await response.json()
    assert body["status"] == "error" and body["errorType"] == "bad_data" and body["error"]


async def test_prometheus_unknown_rollout_is_an_empty_vector(client: TestClient[Any, Any]) -> None:
    """A rollout matcher that matches nothing answers an empty vector with a warning, as Prometheus would."""
    body = await (await client.get("/api/v1/query", params={"query": 'shadowd_stage{rollout="nope"}'})).json()
    assert body["status"] == "success" and body["data"]["result"] == []
    assert body["warnings"]


async def test_prometheus_query_database_error_is_unavailable(
    make_client: MakeClient, broken_store: SqlVerdictStore
) -> None:
    """When the database cannot be read, the query answers the Prometheus error shape, `unavailable`."""
    client = await make_client(store=broken_store)
    response = await client.get("/api/v1/query", params={"query": 'shadowd_rollback{rollout="clean"}'})
    assert response.status == 503
    assert (await response.json())["errorType"] == "unavailable"
    assert (await client.get("/api/v1/query", params={"query": "vector(1)"})).status == 200


async def test_read_endpoint_database_error_is_503_json(
    make_client: MakeClient, broken_store: SqlVerdictStore
) -> None:
    """A read endpoint whose database cannot be read answers 503 with a JSON reason."""
    client = await make_client(store=broken_store)
    response = await client.get("/v1/rollouts/clean")
    assert response.status == 503
    assert (await response.json())["error"] == "database unavailable"
