"""Schemathesis against the live HTTP API (a subprocess over a seeded PostgreSQL database): every
check, generated valid and invalid requests, and no token in the server's log."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from shadowd.http import openapi_document

ROOT = Path(__file__).resolve().parents[2]
ADMIN, READ = "st-admin-Tok3n-value", "st-read-Tok3n-value"


@pytest.fixture
def api_server(tmp_path: Path, fresh_database_url: str) -> Iterator[tuple[str, Path]]:
    """The API serving on a free loopback port over a fresh, seeded PostgreSQL database; yields its base
    URL and its log file."""
    log = tmp_path / "server.log"
    env = {**os.environ, "SHADOWD_ADMIN_TOKEN": ADMIN, "SHADOWD_READ_TOKEN": READ}
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.api_server", str(tmp_path), "--db", fresh_database_url],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True,
        )
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + 120  # a loaded machine imports slowly
        line = ""
        while time.monotonic() < deadline and not line.startswith("listening"):
            line = process.stdout.readline()
            if not line and process.poll() is not None:
                pytest.fail(f"the API server exited: {log.read_text()[-2000:]}")
        port = int(line.split()[1])
        yield f"http://127.0.0.1:{port}", log
    finally:
        process.terminate()
        process.wait(timeout=30)


async def test_schemathesis_finds_no_server_error_or_conformance_failure(api_server: tuple[str, Path]) -> None:
    """Every schemathesis check (server errors, status codes, content types, response schemas, valid
    data accepted, invalid data rejected, auth) passes over every operation; the log shows no token."""
    base_url, log = api_server
    command = [
        sys.executable, "-m", "schemathesis.cli",
        "--config-file", str(ROOT / "tests" / "schemathesis.toml"),
        "run", f"{base_url}/openapi.json",
        "--checks", "all",
        "--max-examples", "25",
        "--seed", "20261201",
        "--header", f"Authorization: Bearer {ADMIN}",
        "--no-color",
    ]
    result = await asyncio.to_thread(
        # Run in the test's folder: schemathesis keeps its example cache under the working directory.
        subprocess.run, command, cwd=log.parent, capture_output=True, text=True, timeout=1200
    )
    output = result.stdout + result.stderr
    summary = output[-4000:]
    assert result.returncode == 0, summary
    selected, tested = re.search(r"Selected: (\d+)/(\d+)", output), re.search(r"Tested: (\d+)", output)
    assert selected and tested, summary
    # Every operation of the document was selected and tested.
    assert selected.group(1) == selected.group(2) == tested.group(1), summary
    assert int(tested.group(1)) >= len(openapi_document()["paths"]) - 2, summary
    assert " passed" in output and "failure" not in output and "Missing test data" not in output, summary
    server_log = log.read_text(encoding="utf-8")
    assert ADMIN not in server_log and READ not in server_log


@pytest.mark.parametrize(
    ("path", "parameter"),
    [
        ("/v1/rollouts/clean/verdicts?route=%00", "route"),
        ("/v1/rollouts/clean/verdicts/%00", "request_id"),
        ("/v1/rollouts/clean/verdicts?since=9999999999d", "since"),
        ("/v1/rollouts/clean/verdicts?since=0001-01-01T00:00:00%2B23:59", "since"),
        ("/v1/rollouts/clean/verdicts?since=9999-12-31T23:59:59-23:59", "since"),
    ],
)
async def test_postgresql_never_sees_text_it_cannot_hold(
    api_server: tuple[str, Path], path: str, parameter: str
) -> None:
    """On PostgreSQL, NUL and out-of-range times are 400 naming the parameter, never a 503 with driver text."""
    import aiohttp

    base_url, log = api_server
    async with aiohttp.ClientSession() as session:
        async with session.get(base_url + path, headers={"Authorization": f"Bearer {READ}"}) as response:
            body = await response.json()
            assert response.status == 400, body
            assert body["parameter"] == parameter
        async with session.get(base_url + "/v1/rollouts/clean/verdicts", headers={"Authorization": f"Bearer {READ}"}) as ok:
            assert ok.status == 200 and len((await ok.json())["items"]) == 40
    assert "DBAPIError" not in log.read_text(encoding="utf-8")
