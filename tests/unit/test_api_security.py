"""The HTTP API under hostile input: malformed headers and bodies, bad parameters, broken databases,
named tokens, failed-auth throttling, and no credential in any answer or log line."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import structlog
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from shadowd.adapters.sql_store import SqlVerdictStore, open_store
from shadowd.auth import AuthThrottle, TokenFileError, hash_token, load_tokens
from shadowd.config import Config, load_config
from shadowd.http import ApiState, create_app, runner_options
from shadowd.logging import configure_logging, register_secrets
from shadowd.metrics import Metrics
from tests.unit.test_api import CONFIG, _seed

ADMIN, READ, ALICE = "admin-Secr3t-token", "read-Secr3t-token", "alice-Secr3t-token"
SECRETS = (ADMIN, READ, ALICE)
DB_SECRET_TEXT = "password authentication failed for user \"shadowd_owner\" at db.internal.example:5432"

MakeClient = Callable[..., Awaitable[TestClient[Any, Any]]]


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
async def broken_store(tmp_path: Path) -> AsyncIterator[SqlVerdictStore]:
    """A database with no schema: every query fails."""
    opened = await open_store("sqlite:///" + str(tmp_path / "empty.sqlite"))
    yield opened
    await opened.close()


@pytest.fixture
def config(tmp_path: Path) -> Config:
    path = tmp_path / "shadowd.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    return load_config(path)


@pytest.fixture
def log_stream() -> io.StringIO:
    """shadowd's own logging set-up, writing into a buffer the test can search."""
    stream = io.StringIO()
    configure_logging("debug", "json", stream=stream)
    register_secrets(["unrelated-secret-value"])
    return stream


@pytest.fixture
async def make_client(config: Config, store: SqlVerdictStore) -> AsyncIterator[MakeClient]:
    clients: list[TestClient[Any, Any]] = []

    async def make(**overrides: Any) -> TestClient[Any, Any]:
        open_reads = overrides.pop("open_reads", False)
        overrides.setdefault("admin_token", ADMIN)
        overrides.setdefault("metrics", Metrics())
        state = ApiState(config=config, store=overrides.pop("store", store), **overrides)
        server = TestServer(create_app(state, open_reads=open_reads))
        await server.start_server(**runner_options())  # shadowd's server options: protocol errors filtered
        client: TestClient[Any, Any] = TestClient(server)
        await client.start_server()
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _raw_request(client: TestClient[Any, Any], request: bytes) -> tuple[int, bytes]:
    """Send bytes no HTTP client library would produce; answer the status and the body."""
    server = client.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        writer.write(request)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), timeout=30)
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


# --- malformed headers ---------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [b"\r", b"\x7f", b"\x00"])
async def test_malformed_authorization_line_is_400_and_never_logged(
    make_client: MakeClient, log_stream: io.StringIO, caplog: pytest.LogCaptureFixture, bad: bytes
) -> None:
    """A header line aiohttp cannot parse answers 400, and no log line carries the raw line or the token."""
    client = await make_client()
    caplog.set_level(logging.DEBUG)
    request = (
        b"GET /v1/rollouts HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
        + ADMIN.encode()
        + bad
        + b"\r\nConnection: close\r\n\r\n"
    )
    status, _ = await _raw_request(client, request)
    assert status == 400
    logged = log_stream.getvalue() + caplog.text
    # The event is recorded, as a warning with the client's address and the error's class.
    assert "unparsable request from 127.0.0.1: BadHttpMessage" in logged
    assert ADMIN not in logged and "Authorization" not in logged


async def test_undecodable_bearer_token_is_401(make_client: MakeClient) -> None:
    """`Bearer \\xff\\xfe` (bytes that are not text) is a malformed credential: 401, not 500."""
    client = await make_client()
    for path in ("/v1/rollouts", "/v1/rollouts/clean/verdicts", "/api/v1/query?query=vector(1)"):
        status, body = await _raw_request(
            client,
            f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n".encode()
            + b"Authorization: Bearer \xff\xfe\r\n\r\n",
        )
        assert status == 401, path
        assert json.loads(body)["error"] == "unauthorized"
    admin = await client.post("/v1/rollouts/clean/pause", headers={"Authorization": "Bearer \xff\xfe"})
    assert admin.status == 401


# --- bodies and parameters -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/flagger/gate", "/v1/flagger/rollback"])
async def test_deeply_nested_json_is_400(make_client: MakeClient, path: str) -> None:
    """JSON nested 5,000 levels deep is refused as 400 before parsing, never a RecursionError 500."""
    client = await make_client()
    body = b'{"name": "x", "metadata": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    response = await client.post(path, data=body, headers={"Content-Type": "application/json"})
    assert response.status == 400
    answer = await response.json()
    assert answer["parameter"] == "body" and "nested deeper" in answer["reason"]
    # Brackets inside strings are text, not nesting.
    fine = {"name": "clean", "metadata": {"hook": "post-rollout", "note": "[" * 100}}
    assert (await client.post(path.replace("rollback", "gate"), json=fine)).status == 200


async def test_oversized_body_is_a_json_413(make_client: MakeClient) -> None:
    """A body over the size limit answers a JSON 413."""
    client = await make_client()
    response = await client.post("/v1/flagger/gate", data=b"x" * (2 * 1024 * 1024))
    assert response.status == 413
    assert (await response.json())["error"]


@pytest.mark.parametrize(
    "since",
    ["9999999999d", "0001-01-01T00:00:00+23:59", "9999-12-31T23:59:59-23:59", "1969-12-31T23:00:00Z", "soon"],
)
async def test_out_of_range_since_is_400(make_client: MakeClient, since: str) -> None:
    """A `since` that overflows or lies outside 1970..9998 answers 400 naming `since`."""
    client = await make_client(open_reads=True)
    response = await client.get("/v1/rollouts/clean/verdicts", params={"since": since})
    assert response.status == 400
    assert (await response.json())["parameter"] == "since"
    assert (await client.get("/v1/rollouts/clean/verdicts", params={"since": "7d"})).status == 200


async def test_multipart_query_without_boundary_is_400(make_client: MakeClient) -> None:
    """POST /api/v1/query with a multipart type but no boundary answers 400 bad_data."""
    client = await make_client()
    response = await client.post(
        "/api/v1/query", data=b"query=vector(1)", headers={"Content-Type": "multipart/form-data"}
    )
    assert response.status == 400
    assert (await response.json())["errorType"] == "bad_data"


@pytest.mark.parametrize(
    ("path", "parameter"),
    [
        ("/v1/rollouts/clean/verdicts?route=%00", "route"),
        ("/v1/rollouts/clean/verdicts?route=a%0Ab", "route"),
        ("/v1/rollouts/clean/verdicts/%00", "request_id"),
        ("/v1/rollouts/clean/verdicts/a%01b", "request_id"),
    ],
)
async def test_text_the_database_cannot_compare_is_400(make_client: MakeClient, path: str, parameter: str) -> None:
    """NUL, control characters and invalid Unicode in a filter or id are 400, never a database error."""
    client = await make_client(open_reads=True)
    response = await client.get(path)
    assert response.status == 400
    body = await response.json()
    assert body["parameter"] == parameter
    assert "SQL" not in json.dumps(body)


async def test_unusable_rollout_name_never_reaches_the_database(
    make_client: MakeClient, broken_store: SqlVerdictStore
) -> None:
    """A rollout name no rollout can have (NUL) is an unknown rollout (404) without a database query."""
    client = await make_client(open_reads=True, store=broken_store)
    response = await client.get("/v1/rollouts/a%00b/verdicts")
    assert response.status == 404


@pytest.mark.parametrize(("method", "path", "status"), [
    ("GET", "/nope", 404), ("GET", "/v1/nope", 404), ("DELETE", "/v1/rollouts", 405), ("POST", "/healthz", 405),
])
async def test_router_errors_are_json(make_client: MakeClient, method: str, path: str, status: int) -> None:
    """404 and 405 on any path answer JSON with a reason (405 with Allow)."""
    client = await make_client()
    response = await client.request(method, path)
    assert response.status == status
    assert response.content_type == "application/json"
    assert (await response.json())["reason"]
    if status == 405:
        assert response.headers["Allow"]


# --- no database text in answers -----------------------------------------------------------------------


async def test_database_errors_never_reach_the_answer(
    make_client: MakeClient, broken_store: SqlVerdictStore
) -> None:
    """With a broken database, reads, Argo, Flagger and the query API answer without SQL or driver text."""
    client = await make_client(store=broken_store, open_reads=True)
    flagger = {"name": "clean", "metadata": {"hook": "confirm-promotion"}}
    answers = [
        await client.get("/v1/rollouts/clean"),
        await client.get("/v1/rollouts/clean/verdicts"),
        await client.get("/v1/rollouts/clean/analysis"),
        await client.get("/api/v1/query", params={"query": 'shadowd_rollback{rollout="clean"}'}),
        await client.post("/v1/flagger/gate", json=flagger),
        await client.post("/v1/flagger/rollback", json=flagger),
    ]
    for response in answers:
        assert response.status < 500 or response.status == 503
        text = await response.text()
        for leak in ("SQL", "SELECT", "sqlite", "OperationalError", "no such table", str(broken_store)):
            assert leak not in text, (response.url, leak, text)


async def test_readiness_names_the_check_but_not_the_cause(make_client: MakeClient) -> None:
    """/readyz says which dependency is down; hosts, users and authentication errors stay in the log."""

    async def failing() -> None:
        raise ConnectionError(DB_SECRET_TEXT)

    async def ok() -> None:
        return None

    client = await make_client(readiness={"database": failing, "kafka": ok})
    response = await client.get("/readyz")
    assert response.status == 503
    body = await response.json()
    assert body["checks"] == {"database": "unreachable: see the server log", "kafka": "ok"}
    assert "shadowd_owner" not in await response.text() and "db.internal" not in await response.text()


# --- tokens --------------------------------------------------------------------------------------------


def _tokens_file(tmp_path: Path, entries: dict[str, Any]) -> Path:
    path = tmp_path / "tokens.yaml"
    path.write_text(json.dumps(entries), encoding="utf-8")
    return path


async def test_named_tokens_make_the_audit_actor(make_client: MakeClient, tmp_path: Path) -> None:
    """A token from the tokens file acts under its own name; the body's actor is only a note."""
    path = _tokens_file(tmp_path, {"alice": {"sha256": hash_token(ALICE), "role": "admin"}})
    assert ALICE not in path.read_text(encoding="utf-8")  # only the hash is at rest
    tokens = load_tokens(path, admin_token=ADMIN, read_token=READ)
    assert sorted(tokens.names()) == ["admin", "alice", "read"]
    client = await make_client(tokens=tokens)
    response = await client.post("/v1/rollouts/clean/pause", json={"actor": "bob"}, headers=_bearer(ALICE))
    assert response.status == 200
    applied = await response.json()
    assert applied["actor"] == "api:alice"
    assert "stated actor: bob" in " ".join(applied["reasons"])
    by_admin = await client.post("/v1/rollouts/clean/resume", headers=_bearer(ADMIN))
    assert (await by_admin.json())["actor"] == "api:admin"
    assert (await client.get("/v1/rollouts/clean", headers=_bearer(READ))).status == 200


@pytest.mark.parametrize(
    ("entries", "key"),
    [
        ({"alice": {"sha256": "abc", "role": "admin"}}, "alice.sha256"),
        ({"alice": {"sha256": "a" * 64, "role": "root"}}, "alice.role"),
        ({"alice": {"token": "clear", "role": "read"}}, "alice"),
        ({"bad name!": {"sha256": "a" * 64}}, "bad name!"),
        ({"admin": {"sha256": "a" * 64}}, "admin"),
        ([], "(top level)"),
    ],
)
def test_bad_tokens_file_names_the_entry(tmp_path: Path, entries: Any, key: str) -> None:
    """A tokens file entry that cannot be used stops start-up with the file and the entry named."""
    path = _tokens_file(tmp_path, entries)
    with pytest.raises(TokenFileError) as raised:
        load_tokens(path, admin_token=ADMIN)
    assert raised.value.key == key and raised.value.file == path


async def test_failed_auth_is_counted_logged_and_throttled(make_client: MakeClient, log_stream: io.StringIO) -> None:
    """Wrong tokens are counted and logged without the token; past the limit the address gets 429,
    even with the right token, until the window passes."""
    now = [1000.0]
    throttle = AuthThrottle(max_failures=5, window_s=60, clock=lambda: now[0])
    metrics = Metrics()
    client = await make_client(read_token=READ, throttle=throttle, metrics=metrics)
    for attempt in range(5):
        response = await client.get("/v1/rollouts", headers=_bearer(f"wrong-token-{attempt}"))
        assert response.status == 401
    throttled = await client.get("/v1/rollouts", headers=_bearer(READ))
    assert throttled.status == 429 and int(throttled.headers["Retry-After"]) >= 1
    assert (await client.get("/healthz")).status == 200  # open endpoints are not throttled
    assert (await client.post("/v1/flagger/gate", json={"name": "clean", "metadata": {"hook": "event"}})).status == 200
    now[0] += 61
    assert (await client.get("/v1/rollouts", headers=_bearer(READ))).status == 200
    assert metrics.registry.get_sample_value("shadowd_auth_failures_total", {"reason": "unknown_token"}) == 5
    assert metrics.registry.get_sample_value("shadowd_auth_failures_total", {"reason": "throttled"}) == 1
    lines = [json.loads(line) for line in log_stream.getvalue().splitlines() if line.startswith("{")]
    failures = [line for line in lines if line.get("event") == "auth_failed"]
    assert len(failures) == 5 and all(f["reason"] == "unknown_token" and f["remote"] for f in failures)
    assert "wrong-token" not in log_stream.getvalue()


# --- nothing leaks into the logs -----------------------------------------------------------------------


async def test_no_token_or_key_in_any_log_line(
    make_client: MakeClient, broken_store: SqlVerdictStore, log_stream: io.StringIO, caplog: pytest.LogCaptureFixture
) -> None:
    """Every hostile request above, with the tokens and an API key in play: no log line shows any of them."""
    api_key = "sk-ant-api03-" + "K" * 40
    register_secrets([ADMIN, READ, ALICE, api_key])
    caplog.set_level(logging.DEBUG)
    client = await make_client(read_token=READ, throttle=AuthThrottle(max_failures=3))
    broken = await make_client(read_token=READ, store=broken_store)
    for bad in (b"\r", b"\x7f", b"\x00"):
        await _raw_request(client, b"GET / HTTP/1.1\r\nAuthorization: Bearer " + ADMIN.encode() + bad + b"\r\n\r\n")
    await _raw_request(
        client, b"GET /v1/rollouts HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer \xff\xfe\r\n\r\n"
    )
    await _raw_request(client, f"GET /v1/rollouts HTTP/1.1\r\nX-Api-Key: {api_key}\x00\r\n\r\n".encode())
    for token in (ALICE, api_key, "Bearer " + READ):
        await client.get("/v1/rollouts", headers={"Authorization": f"Bearer {token}"})
    await client.post("/v1/rollouts/clean/pause", headers=_bearer(READ), json={"actor": api_key})
    await client.post("/v1/flagger/gate", data=b"[" * 5000)
    for path in ("/v1/rollouts/clean", "/v1/rollouts/clean/analysis", "/api/v1/query?query=shadowd_stage"):
        await broken.get(path, headers=_bearer(READ))
    structlog.get_logger("shadowd.test").warning("config_seen", api_key=api_key, url=f"http://u:{READ}@h/")
    logging.getLogger("shadowd.test").error("stdlib line with %s and Bearer %s", api_key, ADMIN)
    logged = log_stream.getvalue() + caplog.text
    assert "auth_failed" in logged and "api_database_error" in logged and "unparsable request" in logged
    for secret in (ADMIN, READ, ALICE, api_key):
        assert secret not in logged, secret


def test_app_factory_defaults_to_closed_reads(config: Config) -> None:
    """create_app without open_reads keeps reads closed: the `run` default; open reads is explicit."""
    state = ApiState(config=config, store=None, metrics=Metrics())  # type: ignore[arg-type]
    from shadowd.http import OPEN_READS_KEY

    assert create_app(state)[OPEN_READS_KEY] is False
    assert create_app(state, open_reads=True)[OPEN_READS_KEY] is True
    assert isinstance(create_app(state), web.Application)
