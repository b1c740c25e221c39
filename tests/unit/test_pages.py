"""The HTML report, the verdict page and the routing table, over a real SQLite file, with hostile data."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp.test_utils import TestClient, TestServer

from shadowd.adapters.sql_store import SqlVerdictStore, open_store
from shadowd.config import Config, load_config
from shadowd.core.findings import Finding, Status
from shadowd.core.results import SideResult, Usage
from shadowd.core.storable import escape_text
from shadowd.http import ApiState, create_app
from shadowd.metrics import Metrics
from shadowd.pages.escape import clean, esc, url_part
from shadowd.pages.svg import nice_ticks
from shadowd.pages.verdict_page import json_lines
from shadowd.records import VerdictRecord, summarise_request

NOW = datetime.now(UTC)
ROUTE = "<script>alert(1)</script>[bold]r\x00oute"
STORED_ROUTE = escape_text(ROUTE)  # the store keeps NUL as a visible escape (docs/SPEC.md §1)
HOSTILE_ID = 'req-<img src=x onerror=alert(1)>/"\'&?#x'
CONFIG = """
rollouts:
  - name: regressed
    baseline: claude-opus-4-6
    candidate: claude-opus-4-7
    gate: {min_samples: 5, max_regression_rate_increase: 0.05}
  - name: cheap
    baseline: claude-opus-4-6
    candidate: claude-sonnet-4-6
    gate: {min_samples: 5, max_regression_rate_increase: 0.2}
"""


def _side(model: str, text: str, cost: float, latency: float) -> SideResult:
    return SideResult(model=model, ok=True, content=({"type": "text", "text": text},), stop_reason="end_turn",
                      usage=Usage(100, 40), latency_ms=latency, cost_usd=cost)


def _verdict(rollout: str, index: int, regression: bool, candidate_model: str, cost: float) -> VerdictRecord:
    findings = (Finding.of("schema.key_missing", "key 'summary' </td> is missing", path="/summary"),) \
        if regression else ()
    request = {"model": "claude-opus-4-6", "max_tokens": 100, "system": "<b>system</b>\x00",
               "messages": [{"role": "user", "content": "</pre><script>alert(2)</script>"}],
               "tools": [{"name": "<t>", "description": "d", "input_schema": {"type": "object"}}]}
    return VerdictRecord(
        rollout=rollout,
        request_id=HOSTILE_ID if index == 0 else f"req-{index:03d}",
        route=ROUTE if index % 2 else "plain",
        status=Status.REGRESSION if regression else Status.PASS,
        findings=findings,
        comparator_version="test-1",
        created_at=NOW - timedelta(minutes=160 - index),
        baseline=_side("claude-opus-4-6", '{"summary": "ok </script>", "n": 1}', 0.002, 700.0 + index),
        candidate=_side(candidate_model, '{"n": 1}' if regression else '{"summary": "ok </script>", "n": 1}', cost,
                        500.0 + 3 * index),
        request=summarise_request(request),
        attributes={"tenant": "<x>"},
    )


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqlVerdictStore]:
    opened = await open_store("sqlite:///" + str(tmp_path / "db.sqlite"), upgrade=True)
    records = [_verdict("regressed", i, i % 3 == 0, "claude-opus-4-7", 0.003) for i in range(160)]
    records += [_verdict("cheap", i, False, "claude-sonnet-4-6", 0.0005) for i in range(160)]
    await opened.save(records, [])
    yield opened
    await opened.close()


@pytest.fixture
def config(tmp_path: Path) -> Config:
    path = tmp_path / "shadowd.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    return load_config(path)


@pytest.fixture
async def client(config: Config, store: SqlVerdictStore) -> AsyncIterator[TestClient[Any, Any]]:
    state = ApiState(config=config, store=store, metrics=Metrics())
    test_client: TestClient[Any, Any] = TestClient(TestServer(create_app(state, open_reads=True)))
    await test_client.start_server()
    yield test_client
    await test_client.close()


def _assert_inert(body: str) -> None:
    """No markup from the data survives: no script, no element that fetches, no event handler."""
    assert "<script" not in body.lower()
    assert "<img" not in body.lower() and "onerror=" not in body.lower().replace("onerror=alert", "")
    assert not re.search(r"""\s(?:src|href)\s*=\s*["']?(?:https?:)?//""", body)
    assert "<link" not in body.lower() and "@import" not in body
    assert "\x00" not in body


async def test_report_page_is_self_contained_and_escapes_data(client: TestClient[Any, Any]) -> None:
    """GET report.html answers one HTML page with the decision, charts and escaped routes, loading nothing."""
    response = await client.get("/v1/rollouts/regressed/report.html")
    assert response.status == 200 and response.content_type == "text/html"
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]
    body = await response.text()
    _assert_inert(body)
    assert esc(STORED_ROUTE) in body
    assert "Decision: ROLLBACK" in body
    assert body.count("<svg") >= 4 and "<polyline" in body and "<polygon" in body
    for section in ("timeline", "history", "findings", "latency", "routes"):
        assert f'id="{section}"' in body
    # Example request ids (the newest with the code) link to their verdict pages.
    assert 'href="verdicts/req-159.html"' in body


async def test_verdict_page_shows_both_sides_escaped(client: TestClient[Any, Any]) -> None:
    """GET …/verdicts/ID.html shows the request, both answers and the finding's path, all escaped."""
    response = await client.get(f"/v1/rollouts/regressed/verdicts/{quote(HOSTILE_ID, safe='')}.html")
    assert response.status == 200, await response.text()
    body = await response.text()
    _assert_inert(body)
    assert esc(HOSTILE_ID) in body and esc("</pre><script>alert(2)</script>") in body
    assert 'class="diff-b at-finding"' in body or 'class="at-finding"' in body  # the /summary line is marked
    assert esc('"summary": "ok </script>",') in body
    assert "&lt;t&gt;" in body  # the tool's name

    json_response = await client.get("/v1/rollouts/regressed/verdicts/req-003")
    assert (await json_response.json())["request_id"] == "req-003"  # the JSON route still answers
    missing = await client.get("/v1/rollouts/regressed/verdicts/nope.html")
    assert missing.status == 404


async def test_routes_table_marks_the_cheapest_model_not_worse(client: TestClient[Any, Any]) -> None:
    """GET /v1/routes: the regressed candidate is worse, and the cheap clean one is marked on each route."""
    table = await (await client.get("/v1/routes")).json()
    rows = {(r["route"], r["model"]): r for r in table["items"]}
    for route in ("plain", STORED_ROUTE):
        assert rows[(route, "claude-opus-4-7")]["judgement"] == "worse"
        assert rows[(route, "claude-sonnet-4-6")]["judgement"] == "not worse"
        marked = [r["model"] for r in table["items"] if r["route"] == route and r["recommended"]]
        assert marked == ["claude-sonnet-4-6"]
        assert rows[(route, "claude-sonnet-4-6")]["cost_per_request_usd"] == pytest.approx(0.0005)
    page = await client.get("/v1/routes.html")
    _assert_inert(await page.text())


def test_escaping_handles_nul_and_lone_surrogates() -> None:
    """NUL and other controls become visible escapes, lone surrogates U+FFFD, and markup is escaped."""
    assert clean("a\x00b\x1bc") == "a\\x00b\\x1bc"
    assert "\ud800" not in clean("x\ud800y") and clean("x\ud800y").startswith("x")
    clean("x\ud800y").encode("utf-8")
    assert esc('<a href="x">') == "&lt;a href=&quot;x&quot;&gt;"
    segment = url_part(HOSTILE_ID)
    assert not set(segment) & set("/<>\"' #?")


def test_json_lines_carry_the_pointer_of_each_value() -> None:
    """The pretty-printer tags each line with its JSON pointer, so a finding's path marks the right line."""
    lines = dict((line.strip(), pointer) for line, pointer in json_lines({"a": {"b/c": [1, 2]}, "d": "x"}))
    assert lines['"d": "x"'] == "/d"
    assert lines["1,"] == "/a/b~1c/0"


@pytest.mark.parametrize(("low", "high"), [(0.0, 0.37), (-0.2, 0.05), (1e6, 1.9e6), (5.0, 5.0)])
def test_axis_ticks_cover_the_range(low: float, high: float) -> None:
    """Axis ticks are increasing and span the data's range."""
    ticks = nice_ticks(low, high)
    assert ticks == sorted(ticks) and len(ticks) >= 2
    assert ticks[0] <= low + 1e-9 and ticks[-1] >= min(high, ticks[-1])
