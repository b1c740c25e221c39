"""The HTML report and the verdict page in a real headless Chromium (Debian's package), served by the API."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from shadowd.adapters.sql_store import open_existing_store
from shadowd.config import load_config
from shadowd.demo.run import demo_file
from shadowd.http import ApiState, create_app
from shadowd.metrics import Metrics
from tests.helpers import run_cli_json

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
                  "--disable-extensions", "--disable-background-networking", "--enable-logging=stderr", "--v=0"]


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        message = "chromium is not installed; `bash scripts/services.sh deps` installs Debian's package"
        if os.environ.get("SHADOWD_REQUIRE_SERVICES") == "1":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return found


async def _chromium_run(binary: str, profile: Path, *args: str) -> tuple[str, str]:
    process = await asyncio.create_subprocess_exec(
        binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=180)
    except TimeoutError:
        process.kill()
        raise
    assert process.returncode == 0, stderr.decode(errors="replace")[-3000:]
    return stdout.decode(errors="replace"), stderr.decode(errors="replace")


def _console_errors(log: str) -> list[str]:
    """Console messages and CSP violations Chromium logged for the page (errors of the page, not the browser)."""
    return [line for line in log.splitlines()
            if "CONSOLE" in line or "Content Security Policy" in line or "Refused to" in line]


async def test_report_and_verdict_pages_render_in_chromium(tmp_path: Path) -> None:
    """Both pages load in headless Chromium with no console error, request nothing but themselves, draw
    non-empty SVG charts, and each leaves a screenshot in the test's output folder."""
    binary = _chromium()
    db = f"sqlite:///{tmp_path / 'demo.db'}"
    demo = run_cli_json("demo", "--count", "150", "--db", db)
    example = next(ids[0] for report in demo["reports"] if report["rollout"] == "opus-4-7"
                   for ids in report["examples"].values() if ids)

    config = load_config(demo_file("shadowd.yaml"))
    store = await open_existing_store(db)
    seen: list[str] = []

    @web.middleware
    async def record(request: web.Request, handler: Any) -> web.StreamResponse:
        seen.append(request.path)
        return await handler(request)

    app = create_app(ApiState(config=config, store=store, metrics=Metrics()), open_reads=True)
    app.middlewares.insert(0, record)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    out = tmp_path / "browser"
    out.mkdir()
    try:
        pages = {
            "report": "/v1/rollouts/opus-4-7/report.html",
            "verdict": f"/v1/rollouts/opus-4-7/verdicts/{example}.html",
        }
        for name, path in pages.items():
            url = str(server.make_url(path))
            seen.clear()
            dom, log = await _chromium_run(binary, tmp_path / f"profile-{name}", "--dump-dom", url)
            assert _console_errors(log) == [], _console_errors(log)
            assert [p for p in seen if p != "/favicon.ico"] == [path], seen  # nothing else was fetched
            assert "<script" not in dom and not re.search(r"""(?:src|href)=["']?(?:https?:)?//""", dom)
            charts = re.findall(r"<svg[^>]*class=\"chart\".*?</svg>", dom, re.DOTALL)
            if name == "report":
                assert len(charts) >= 4
                assert all(re.search(r"<(polyline|polygon|rect)[^>]*(points=\"[^\"]+\"|width=\"[1-9])", c)
                           for c in charts)
                assert "Decision:" in dom and 'id="findings"' in dom and 'id="routes"' in dom
            else:
                assert example in dom and 'id="answers"' in dom and 'class="side"' in dom
            shot = out / f"{name}.png"
            _, log = await _chromium_run(binary, tmp_path / f"profile-shot-{name}", "--window-size=1280,2400",
                                         f"--screenshot={shot}", url)
            assert _console_errors(log) == [], _console_errors(log)
            assert shot.stat().st_size > 20_000  # a rendered page, not a blank one
    finally:
        await server.close()
        await store.close()
