"""Every route of the HTTP API, called for real over a seeded SQLite database, answers with a status its
generated OpenAPI document declares and a body that validates against the document's schema; and the
document and the router list exactly the same operations."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from aiohttp.test_utils import TestClient, TestServer

from shadowd.adapters.sql_store import SqlVerdictStore, open_store
from shadowd.auth import AuthThrottle
from shadowd.config import Config
from shadowd.http import ApiState, NotReady, create_app, openapi_document, runner_options
from shadowd.http.app import operations
from shadowd.http.middleware import access_for
from shadowd.metrics import Metrics
from shadowd.records import DeadLetter
from tests.unit.test_api import ADMIN, READ, _flagger, _verdict
from tests.unit.test_api import config as config

DOCUMENT = openapi_document()
OPERATIONS = {
    op["operationId"]: (path, method, op)
    for path, item in DOCUMENT["paths"].items()
    for method, op in item.items()
}
ADMIN_HEADER = {"Authorization": f"Bearer {ADMIN}"}


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqlVerdictStore]:
    """The SQL adapter on a fresh SQLite file, with test_api.py's verdicts: 24 of 40 regress in `regressed`,
    none of 40 in `clean`, none stored for `fresh`."""
    opened = await open_store("sqlite:///" + str(tmp_path / "db.sqlite"), upgrade=True)
    records = [_verdict("regressed", i, regression=i < 24) for i in range(40)]
    records += [_verdict("clean", i, regression=False) for i in range(40)]
    await opened.save(records, [])
    yield opened
    await opened.close()


@dataclass(frozen=True)
class Call:
    operation: str
    method: str
    path: str
    status: int
    kwargs: dict[str, Any] = field(default_factory=dict)


def _template_regex(template: str) -> re.Pattern[str]:
    parts = re.split(r"(\{\w+\})", template)
    return re.compile("^" + "".join("[^/]+?" if p == "{name}" else ".+" if p.startswith("{") else re.escape(p)
                                    for p in parts if p) + "$")


def _validate(call: Call, status: int, content_type: str, body: Any) -> None:
    """The answer is declared for the operation, with this media type, and its body fits the schema."""
    template, method, operation = OPERATIONS[call.operation]
    assert method == call.method.lower(), call
    assert _template_regex(template).match(call.path.split("?")[0]), (template, call.path)
    declared = operation["responses"]
    assert str(status) in declared, (call, status, body)
    content = declared[str(status)]["content"]
    assert content_type in content, (call, content_type, list(content))
    schema = content[content_type]["schema"]
    # The document is the root, so `#/components/schemas/...` references resolve.
    jsonschema.validate(body, {**schema, "components": DOCUMENT["components"]},
                        cls=jsonschema.Draft202012Validator)


async def _fail_check() -> None:
    raise NotReady("writer stuck for 30 s")


@pytest.fixture
async def broken_store(tmp_path: Path) -> AsyncIterator[SqlVerdictStore]:
    """A database with no schema: every query fails, as when the database is unusable."""
    opened = await open_store("sqlite:///" + str(tmp_path / "empty.sqlite"))
    yield opened
    await opened.close()


@pytest.fixture
async def clients(config: Config, store: SqlVerdictStore, broken_store: SqlVerdictStore
                  ) -> AsyncIterator[dict[str, TestClient[Any, Any]]]:
    """open: reads open, an admin token; closed: read and admin tokens required; no-admin: no admin token;
    broken: a database that cannot be read; throttled: an address past its failed-authentication limit."""
    # Dead letters as hostile as the records they keep: a NUL, bytes that are not UTF-8, markup in the detail.
    await store.save([], [
        DeadLetter("llm.mirror", 0, 7, "invalid_json", "not JSON: [bold]x[/]", b"\x00\xff{bad", datetime.now(UTC)),
        DeadLetter("llm.mirror", 1, 9, "invalid_field:route", "route over 256 characters", b"{}", datetime.now(UTC),
                   payload_truncated=True),
    ])
    made: dict[str, TestClient[Any, Any]] = {}
    variants: dict[str, tuple[dict[str, Any], bool]] = {
        "open": ({"admin_token": ADMIN}, True),
        "closed": ({"admin_token": ADMIN, "read_token": READ, "throttle": AuthThrottle(max_failures=1000)}, False),
        "no-admin": ({}, True),
        "broken": ({"admin_token": ADMIN, "store": broken_store, "readiness": {"writer": _fail_check}}, True),
        "throttled": ({"admin_token": ADMIN, "read_token": READ, "throttle": AuthThrottle(max_failures=1)}, False),
    }
    for name, (overrides, open_reads) in variants.items():
        options = {"store": store, **overrides}
        state = ApiState(config=config, metrics=Metrics(), **options)
        server = TestServer(create_app(state, open_reads=open_reads))
        await server.start_server(**runner_options())
        client: TestClient[Any, Any] = TestClient(server)
        await client.start_server()
        made[name] = client
    yield made
    for client in made.values():
        await client.close()


def _gate(hook: str, rollout: str) -> dict[str, Any]:
    return {"json": _flagger(hook, rollout)}


# The successes and the errors a caller can cause; 401, 429 and 503 are added below for every operation
# that declares them.
CALLS = [
    Call("healthz", "GET", "/healthz", 200),
    Call("readyz", "GET", "/readyz", 200),
    Call("metrics", "GET", "/metrics", 200),
    Call("openapi", "GET", "/openapi.json", 200),
    Call("listRollouts", "GET", "/v1/rollouts", 200),
    Call("getRollout", "GET", "/v1/rollouts/clean", 200),
    Call("getRollout", "GET", "/v1/rollouts/regressed", 200),
    Call("getRollout", "GET", "/v1/rollouts/fresh", 200),
    Call("getRollout", "GET", "/v1/rollouts/nope", 404),
    Call("listDecisions", "GET", "/v1/rollouts/clean/decisions?limit=5", 200),
    Call("listDecisions", "GET", "/v1/rollouts/clean/decisions?bogus=1", 400),
    Call("listDecisions", "GET", "/v1/rollouts/nope/decisions", 404),
    Call("listVerdicts", "GET", "/v1/rollouts/regressed/verdicts?status=regression&limit=3", 200),
    Call("listVerdicts", "GET", "/v1/rollouts/regressed/verdicts?code=schema.key_missing&since=2h", 200),
    Call("listVerdicts", "GET", "/v1/rollouts/regressed/verdicts?status=bad", 400),
    Call("listVerdicts", "GET", "/v1/rollouts/nope/verdicts", 404),
    Call("getVerdict", "GET", "/v1/rollouts/regressed/verdicts/req-001", 200),
    Call("getVerdict", "GET", "/v1/rollouts/regressed/verdicts/req%01", 400),
    Call("getVerdict", "GET", "/v1/rollouts/regressed/verdicts/req-999", 404),
    Call("listDeadLetters", "GET", "/v1/dead-letters?limit=1", 200),
    Call("listDeadLetters", "GET", "/v1/dead-letters?limit=0", 400),
    Call("getReportPage", "GET", "/v1/rollouts/clean/report.html", 200),
    Call("getReportPage", "GET", "/v1/rollouts/nope/report.html", 404),
    Call("getVerdictPage", "GET", "/v1/rollouts/clean/verdicts/req-002.html", 200),
    Call("getVerdictPage", "GET", "/v1/rollouts/clean/verdicts/req-999.html", 404),
    Call("getRoutes", "GET", "/v1/routes", 200),
    Call("getRoutesPage", "GET", "/v1/routes.html", 200),
    Call("rolloutWeights", "GET", "/v1/rollouts/clean/weights", 200),
    Call("rolloutWeights", "GET", "/v1/rollouts/nope/weights", 404),
    Call("argoAnalysis", "GET", "/v1/rollouts/clean/analysis", 200),
    Call("argoAnalysis", "GET", "/v1/rollouts/regressed/analysis?canary_percent=5", 200),
    Call("argoAnalysis", "GET", "/v1/rollouts/fresh/analysis?stage=9", 200),
    Call("argoAnalysis", "GET", "/v1/rollouts/nope/analysis", 200),
    Call("manualAction", "POST", "/v1/rollouts/fresh/pause", 200,
         {"json": {"actor": "ops", "reason": "checking"}, "headers": ADMIN_HEADER}),
    Call("manualAction", "POST", "/v1/rollouts/clean/pause", 400, {"json": {"who": "x"}, "headers": ADMIN_HEADER}),
    Call("manualAction", "POST", "/v1/rollouts/nope/pause", 404, {"headers": ADMIN_HEADER}),
    Call("manualAction", "POST", "/v1/rollouts/clean/resume", 409, {"headers": ADMIN_HEADER}),
    Call("flaggerGate", "POST", "/v1/flagger/gate", 200, _gate("confirm-promotion", "clean")),
    Call("flaggerGate", "POST", "/v1/flagger/gate", 200, _gate("post-rollout", "clean")),
    Call("flaggerGate", "POST", "/v1/flagger/gate", 403, _gate("rollout", "regressed")),
    Call("flaggerGate", "POST", "/v1/flagger/gate", 403, _gate("rollout", "nope")),
    Call("flaggerGate", "POST", "/v1/flagger/gate", 400, _gate("Progressing", "clean")),
    Call("flaggerRollback", "POST", "/v1/flagger/rollback", 200, {"json": {"name": "regressed"}}),
    Call("flaggerRollback", "POST", "/v1/flagger/rollback", 409, {"json": {"name": "clean"}}),
    Call("flaggerRollback", "POST", "/v1/flagger/rollback", 404, {"json": {"name": "nope"}}),
    Call("flaggerRollback", "POST", "/v1/flagger/rollback", 400, {"json": ["not", "an", "object"]}),
    Call("prometheusQuery", "GET", '/api/v1/query?query=shadowd_regression_rate{rollout="regressed"}', 200),
    Call("prometheusQuery", "GET", "/api/v1/query?query=vector(1)", 200),
    Call("prometheusQuery", "GET", "/api/v1/query?query=up", 400),
    Call("prometheusQueryPost", "POST", "/api/v1/query", 200, {"data": {"query": "shadowd_canary_percent"}}),
    Call("prometheusQueryPost", "POST", "/api/v1/query", 400, {"data": {"query": "rate(x[5m])"}}),
]
# A path per operation to call for the errors every guarded operation shares.
EXAMPLE: dict[str, Call] = {}
for _call_ in CALLS:
    if _call_.status == 200:
        EXAMPLE.setdefault(_call_.operation, _call_)
# The answers a broken database gives where the contract is not a 503: Argo keeps measuring, Flagger holds.
BROKEN = {"argoAnalysis": 200, "flaggerGate": 403, "flaggerRollback": 409, "readyz": 503}


async def _call(client: TestClient[Any, Any], call: Call, headers: dict[str, str] | None = None) -> tuple[int, str, Any]:
    kwargs = dict(call.kwargs)
    if headers is not None:
        kwargs["headers"] = {**kwargs.get("headers", {}), **headers}
    response = await client.request(call.method, call.path, **kwargs)
    media = response.headers.get("Content-Type", "").split(";")[0]
    body = await response.json() if media == "application/json" else await response.text()
    return response.status, media, body


async def test_every_route_answers_what_the_generated_document_declares(
    clients: dict[str, TestClient[Any, Any]],
) -> None:
    """Each operation's success and each error status it declares (400, 401, 403, 404, 409, 429, 503) come
    from real calls, and every real body validates against the generated schema for that status."""
    seen: dict[str, set[int]] = {name: set() for name in OPERATIONS}

    async def check(client: str, call: Call, expected: int, headers: dict[str, str] | None = None) -> None:
        status, media, body = await _call(clients[client], call, headers)
        assert status == expected, (client, call, status, body)
        _validate(call, status, media, body)
        seen[call.operation].add(status)

    for call in CALLS:
        await check("open", call, call.status)
    await check("no-admin", Call("manualAction", "POST", "/v1/rollouts/clean/pause", 403), 403, ADMIN_HEADER)
    await check("broken", EXAMPLE["readyz"], 503)
    # Trip the throttle once: every guarded operation from that address is then 429.
    await check("throttled", EXAMPLE["listRollouts"], 401, {"Authorization": "Bearer wrong"})
    for name, (_path, _method, operation) in OPERATIONS.items():
        declared = {int(s) for s in operation["responses"]}
        example = EXAMPLE[name]
        headers = ADMIN_HEADER if example.method == "POST" and name == "manualAction" else None
        if 401 in declared:
            await check("closed", example, 401, {} if headers is None else {"Authorization": "Bearer"})
        if 429 in declared:
            await check("throttled", example, 429, {"Authorization": f"Bearer {READ}"})
        if 503 in declared or name in BROKEN:
            await check("broken", example, BROKEN.get(name, 503), headers)
    letters = (await _call(clients["open"], Call("listDeadLetters", "GET", "/v1/dead-letters", 200)))[2]
    assert letters["counts"] == {"invalid_json": 1, "invalid_field:route": 1}
    assert [d["offset"] for d in letters["dead_letters"]] == [9, 7]
    assert letters["dead_letters"][1]["payload"].endswith("{bad")
    missing = {name: sorted({int(s) for s in op["responses"]} - seen[name])
               for name, (_p, _m, op) in OPERATIONS.items() if {int(s) for s in op["responses"]} - seen[name]}
    assert not missing, f"declared statuses no real call produced: {missing}"


def test_the_document_and_the_router_list_the_same_operations(config: Config, store: SqlVerdictStore) -> None:
    """A route registered without being in the document (or documented without a route) fails here."""
    app = create_app(ApiState(config=config, store=store, metrics=Metrics()))
    registered = set()
    for route in app.router.routes():
        if route.method == "HEAD":
            continue
        assert route.resource is not None
        info = route.resource.get_info()
        path = info.get("path") or info.get("formatter")
        registered.add((re.sub(r"\{(\w+):[^}]*\}", r"{\1}", str(path)), route.method.lower()))
    documented = {(path, method) for path, method, _op in OPERATIONS.values()}
    assert registered == documented
    assert len({op["operationId"] for _p, _m, op in OPERATIONS.values()}) == len(OPERATIONS)


def test_each_route_declares_the_access_the_middleware_enforces() -> None:
    """The `security` the document shows for a route is what the authenticate middleware asks of its path."""
    for operation in operations():
        example = re.sub(r"\{action:[^}]*\}", "pause", operation.path)
        example = re.sub(r"\{(\w+)(:[^}]*)?\}", "x", example)
        assert access_for(example, operation.method) == operation.access, operation.operation_id


def test_the_generated_document_is_valid_openapi() -> None:
    """The generated document passes the OpenAPI 3.1 validator."""
    from openapi_spec_validator import validate

    validate(openapi_document())


def test_the_http_package_has_no_import_cycle() -> None:
    """Modules under shadowd/http/ import one another in one direction only, and none imports the app factory."""
    import ast

    package = Path(__file__).resolve().parents[2] / "shadowd" / "http"
    imports: dict[str, set[str]] = {}
    for path in package.glob("*.py"):
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module == "shadowd.http":
                found |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("shadowd.http."):
                found.add(node.module.removeprefix("shadowd.http."))
        imports[path.stem] = found
    assert all("app" not in found for name, found in imports.items() if name not in ("__init__", "app")), imports
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        for target in imports.get(module, set()) - {"__init__"}:
            assert target not in path, f"import cycle: {' -> '.join((*path, target))}"
            if target not in done:
                visit(target, (*path, target))
        done.add(module)

    for module in imports:
        if module != "__init__":
            visit(module, (module,))
