"""The PromQL endpoint answers from the last figures read while the database cannot be read, as Argo's
analysis and Flagger's webhooks do, and says how old they are."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from shadowd.adapters.sql_store import SqlVerdictStore, open_store
from shadowd.config import Config
from shadowd.http import ApiState, create_app, runner_options
from shadowd.metrics import Metrics
from tests.unit.test_api import _verdict
from tests.unit.test_api import config as config

QUERY = '/api/v1/query?query=shadowd_regression_rate{rollout="regressed"}'


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


async def test_prometheus_query_answers_from_the_last_figures_while_the_database_is_down(
    tmp_path: Path, config: Config, store: SqlVerdictStore
) -> None:
    """After one good read, a database that fails gives the same sample with a warning naming its age; once
    those figures are older than `last_report_max_age_s`, the answer is 503 `unavailable` (nothing to go on)."""
    broken = await open_store("sqlite:///" + str(tmp_path / "empty.sqlite"))  # no schema: every query fails
    state = ApiState(config=config, store=store, metrics=Metrics())
    server = TestServer(create_app(state, open_reads=True))
    await server.start_server(**runner_options())
    client: TestClient[Any, Any] = TestClient(server)
    await client.start_server()
    try:
        fresh = await client.get(QUERY)
        fresh_body = await fresh.json()
        assert fresh.status == 200 and "warnings" not in fresh_body
        assert fresh_body["data"]["result"][0]["value"][1] == "0.6"

        state.store = broken
        stale = await client.get(QUERY)
        stale_body = await stale.json()
        assert stale.status == 200, stale_body
        assert stale_body["data"]["result"][0]["value"][1] == "0.6"
        assert len(stale_body["warnings"]) == 1
        assert stale_body["warnings"][0].startswith("rollout 'regressed': last known figures, 0 s old")

        never_read = await client.get('/api/v1/query?query=shadowd_regression_rate{rollout="clean"}')
        assert never_read.status == 503 and (await never_read.json())["errorType"] == "unavailable"

        state.last_report_max_age_s = 0.0
        too_old = await client.get(QUERY)
        too_old_body = await too_old.json()
        assert too_old.status == 503 and too_old_body == {
            "status": "error", "errorType": "unavailable",
            "error": "shadowd cannot read its database now; the server log has the cause",
        }
        assert (await client.get("/api/v1/query?query=vector(1)")).status == 200  # needs no database
    finally:
        await client.close()
        await broken.close()
