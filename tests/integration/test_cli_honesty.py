"""The CLI never lies about what happened: literal user data, one exit code per outcome, read-only reads."""

from __future__ import annotations

import html
import json
import socket
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from shadowd.demo.traffic import generate_envelopes
from tests.helpers import fake_model_process, run_cli, run_cli_json, write_config

HOSTILE_ROUTE = "r[/]oute[bold]"
HOSTILE_IDS = ("req-[bold]1[/]", "req-[link=https://example.invalid]2[/link]", "req-[/]3")
HOSTILE_TEXT = "[bold]loud[/] and [link=https://example.invalid]click[/link] [/]"
RECORDED_ROLLOUT = """
  - name: recorded
    baseline: claude-opus-4-6
    candidate: claude-sonnet-4-6
    baseline_source: recorded
    noise_check: false
    gate: {min_samples: 50}
"""


@pytest.fixture(scope="module")
def fake_model() -> Iterator[str]:
    """The demo's fake models served by `shadowd fake-model` in its own process."""
    with fake_model_process() as base_url:
        yield base_url


def hostile_traffic(folder: Path) -> Path:
    """Envelopes whose route, request id and recorded answer are full of rich markup."""
    path = folder / "hostile.jsonl"
    with path.open("w") as out:
        for request_id in HOSTILE_IDS:
            envelope = {
                "schema": "shadowd.mirror/v1",
                "request_id": request_id,
                "route": HOSTILE_ROUTE,
                "request": {
                    "model": "claude-opus-4-6",
                    "max_tokens": 256,
                    "messages": [{"role": "user", "content": f"Repeat {HOSTILE_TEXT}"}],
                },
                "response": {
                    "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-opus-4-6",
                    "content": [{"type": "text", "text": HOSTILE_TEXT}], "stop_reason": "end_turn",
                    "usage": {"input_tokens": 12, "output_tokens": 9},
                },
                "latency_ms": 120.0,
            }
            out.write(json.dumps(envelope) + "\n")
    return path


def test_every_command_prints_markup_in_user_data_literally(tmp_path: Path, fake_model: str) -> None:
    """Routes, request ids and outputs containing [bold], [/] and [link=...] print literally in every command."""
    config = str(write_config(tmp_path, fake_model, rollouts=RECORDED_ROLLOUT))
    db = f"sqlite:///{tmp_path / 'v.db'}"
    replayed = run_cli_json("replay", str(hostile_traffic(tmp_path)), "-c", config, "--db", db)
    assert replayed["verdicts"] == len(HOSTILE_IDS)
    common = ("-c", config, "--db", db)

    outputs: dict[str, str] = {}
    for name, args in {
        "report": ("report", "--rollout", "recorded"),
        "verdicts": ("verdicts", "--rollout", "recorded"),
        "routes": ("routes",),
        "status": ("rollout", "status", "recorded"),
    }.items():
        result = run_cli(*args, *common)
        assert result.returncode == 0, f"{name}: {result.stderr[-2000:]}"
        assert "MarkupError" not in result.stderr
        outputs[name] = result.stdout
    for name in ("report", "verdicts", "routes", "status"):
        assert HOSTILE_ROUTE in outputs[name], name
    for request_id in HOSTILE_IDS:
        assert request_id in outputs["verdicts"]
    # The report's example request ids name the hostile ids literally too (if the candidate differed).
    listed = run_cli_json("verdicts", "--rollout", "recorded", *common)
    assert {row["request_id"] for row in listed["items"]} == set(HOSTILE_IDS)
    assert {row["route"] for row in listed["items"]} == {HOSTILE_ROUTE}

    for request_id in HOSTILE_IDS:
        shown = run_cli("show", "--rollout", "recorded", request_id, *common, env={"COLUMNS": "200"})
        assert shown.returncode == 0, shown.stderr[-2000:]
        assert request_id in shown.stdout and HOSTILE_ROUTE in shown.stdout
        assert HOSTILE_TEXT in shown.stdout

    # The HTML pages show the same data, escaped for HTML (brackets are not HTML markup).
    page = tmp_path / "report.html"
    assert run_cli("report", "--rollout", "recorded", "--html", str(page), *common).returncode == 0
    assert html.escape(HOSTILE_ROUTE) in page.read_text()
    verdict_page = tmp_path / "verdict.html"
    shown_html = run_cli("show", "--rollout", "recorded", HOSTILE_IDS[1], "--html", str(verdict_page), *common)
    assert shown_html.returncode == 0, shown_html.stderr
    text = verdict_page.read_text()
    assert html.escape(HOSTILE_IDS[1]) in text and html.escape(HOSTILE_TEXT) in text


def test_gate_failing_exits_1_and_passing_exits_0(tmp_path: Path, fake_model: str) -> None:
    """`report --check` exits 1 when the gate says roll back (a regressed candidate) and 0 for a clean one."""
    # The fake model answers at once, so both sides' latencies are the machine's scheduling noise (a
    # loaded CI machine once put the clean candidate's p95 at 1.7x the baseline's): this test is about
    # regressions, so latency is given a bound it cannot reach.
    gate = "{min_samples: 50, max_latency_p95_ratio: 1000}"
    rollouts = f"""
  - name: opus-4-7
    baseline: claude-opus-4-6
    candidate: claude-opus-4-7
    gate: {gate}
  - name: sonnet-4-6
    baseline: claude-opus-4-6
    candidate: claude-sonnet-4-6
    gate: {gate}
"""
    config = str(write_config(tmp_path, fake_model, rollouts=rollouts))
    db = f"sqlite:///{tmp_path / 'v.db'}"
    traffic = tmp_path / "traffic.jsonl"
    traffic.write_text("".join(json.dumps(e) + "\n" for e in generate_envelopes(120, seed=5)))
    run_cli_json("replay", str(traffic), "-c", config, "--db", db)

    failing = run_cli("report", "--rollout", "opus-4-7", "--check", "-c", config, "--db", db)
    assert failing.returncode == 1, failing.stdout[-3000:]
    assert "ROLLBACK" in failing.stdout and "Traceback" not in failing.stderr
    passing = run_cli("report", "--rollout", "sonnet-4-6", "--check", "-c", config, "--db", db)
    assert passing.returncode == 0, passing.stdout[-3000:]

    # After a rollback the reasons explain the rollback, not what would hold a live rollout.
    run_cli_json("rollout", "rollback", "opus-4-7", "--reason", "[bold]too many regressions[/]", "-c", config,
                 "--db", db)
    status = run_cli("rollout", "status", "opus-4-7", "-c", config, "--db", db)
    assert status.returncode == 0
    assert "rolled back at" in status.stdout and "[bold]too many regressions[/]" in status.stdout
    assert "not yet shown within tolerance" not in status.stdout.split("verdicts")[0]


def test_verdict_pages_offer_a_cursor_only_when_older_ones_exist(tmp_path: Path, fake_model: str) -> None:
    """`verdicts --json` is {items, next_cursor} like the API; the last page has none; --all streams JSON lines."""
    config = str(write_config(tmp_path, fake_model))
    db = f"sqlite:///{tmp_path / 'v.db'}"
    traffic = tmp_path / "traffic.jsonl"
    traffic.write_text("".join(json.dumps(e) + "\n" for e in generate_envelopes(12, seed=3)))
    run_cli_json("replay", str(traffic), "-c", config, "--db", db)
    common = ("--rollout", "opus-4-7", "-c", config, "--db", db)

    first = run_cli_json("verdicts", "--limit", "5", *common)
    assert len(first["items"]) == 5 and first["next_cursor"] == first["items"][-1]["id"]
    seen = [row["request_id"] for row in first["items"]]
    cursor = first["next_cursor"]
    while cursor is not None:
        page = run_cli_json("verdicts", "--limit", "5", "--cursor", str(cursor), *common)
        seen += [row["request_id"] for row in page["items"]]
        cursor = page["next_cursor"]
    assert len(seen) == len(set(seen)) == 12

    text = run_cli("verdicts", "--limit", "12", *common)
    assert "no older ones" in text.stdout and "--cursor" not in text.stdout
    streamed = run_cli("verdicts", "--all", *common)
    lines = [json.loads(line) for line in streamed.stdout.splitlines()]
    assert sorted(row["request_id"] for row in lines) == sorted(seen)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(
    ("args", "env", "code", "says"),
    [
        (("report", "--db", "mysql://u@h/db"), {}, 2, "unsupported database 'mysql'"),
        (("report", "--log-level", "bogus"), {}, 2, "bogus"),
        (("report",), {"SHADOWD_LOG_LEVEL": "bogus"}, 2, "SHADOWD_LOG_LEVEL"),
        (("report",), {"SHADOWD_LOG_FORMAT": "xml"}, 2, "SHADOWD_LOG_FORMAT"),
        (("verdicts", "--rollout", "x", "--since", "yesterday-ish"), {}, 2, "--since"),
        (("report", "--db", "postgresql://u@127.0.0.1:{port}/x"), {}, 3, "database unreachable"),
        (("verdicts", "--rollout", "x", "--db", "postgresql://u@127.0.0.1:{port}/x"), {}, 3, "database unreachable"),
        (("rollout", "pause", "opus-4-7", "--db", "postgresql://u@127.0.0.1:{port}/x"), {}, 3,
         "database unreachable"),
    ],
)
def test_each_failure_has_its_exit_code_and_one_line(
    tmp_path: Path, args: tuple[str, ...], env: dict[str, str], code: int, says: str
) -> None:
    """Bad usage, config or input exits 2 and an unreachable database 3, each with one line and no traceback."""
    config = write_config(tmp_path, "http://127.0.0.1:9")
    port = str(_closed_port())
    argv = [a.replace("{port}", port) for a in args]
    if "--db" not in argv:
        argv += ["--db", f"sqlite:///{tmp_path / 'absent.db'}"]
    result = run_cli(*argv, "-c", str(config), env=env)
    assert result.returncode == code, result.stderr
    assert says in result.stderr
    assert "Traceback" not in result.stderr
    # One line says what is wrong (click's usage errors add their "Usage:" and "Try" lines around it).
    said = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith(("Usage:", "Try "))]
    assert len(said) == 1, result.stderr


def test_debug_level_shows_the_traceback(tmp_path: Path) -> None:
    """With --log-level debug an unreachable database still exits 3 but prints the traceback too."""
    url = f"postgresql://u@127.0.0.1:{_closed_port()}/x"
    result = run_cli("report", "--db", url, "--log-level", "debug", "-c", str(write_config(tmp_path, "http://x")))
    assert result.returncode == 3
    assert "Traceback" in result.stderr and "database unreachable" in result.stderr


def test_read_only_commands_never_create_or_migrate_sqlite(tmp_path: Path) -> None:
    """A missing database file or one without the schema is exit 3 naming `shadowd db upgrade`, and stays as it was."""
    config = str(write_config(tmp_path, "http://127.0.0.1:9"))
    missing = tmp_path / "typo.db"
    for args in (("report",), ("verdicts", "--rollout", "opus-4-7"), ("show", "--rollout", "opus-4-7", "r1"),
                 ("routes",), ("rollout", "status", "opus-4-7"), ("db", "current")):
        result = run_cli(*args, "-c", config, "--db", f"sqlite:///{missing}")
        assert result.returncode == 3, (args, result.stderr)
        assert "shadowd db upgrade" in result.stderr
        assert not missing.exists()

    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    result = run_cli("report", "-c", config, "--db", f"sqlite:///{empty}")
    assert result.returncode == 3 and "no shadowd schema" in result.stderr
    with sqlite3.connect(empty) as connection:
        assert connection.execute("SELECT count(*) FROM sqlite_master").fetchone() == (0,)


def test_db_upgrade_current_and_downgrade(tmp_path: Path) -> None:
    """`db upgrade` creates the schema, `db current` names it, `db downgrade --yes` steps down, reads then refuse."""
    config = str(write_config(tmp_path, "http://127.0.0.1:9"))
    db = f"sqlite:///{tmp_path / 'v.db'}"
    upgraded = run_cli_json("db", "upgrade", "-c", config, "--db", db)
    current = run_cli_json("db", "current", "-c", config, "--db", db)
    assert current["current"] == current["head"] == upgraded["revision"] and current["up_to_date"]
    assert run_cli("report", "-c", config, "--db", db).returncode == 0

    refused = run_cli("db", "downgrade", "-c", config, "--db", db)
    assert refused.returncode == 2 and "--yes" in refused.stderr
    run_cli_json("db", "downgrade", "--yes", "-c", config, "--db", db)
    after = run_cli("report", "-c", config, "--db", db)
    assert after.returncode == 3 and "shadowd db upgrade" in after.stderr


def test_read_only_commands_never_migrate_postgresql(fresh_database_url: str, tmp_path: Path) -> None:
    """On an empty PostgreSQL database `report` exits 3 and leaves it without tables."""
    import asyncio

    import asyncpg

    config = str(write_config(tmp_path, "http://127.0.0.1:9"))
    result = run_cli("report", "-c", config, "--db", fresh_database_url)
    assert result.returncode == 3 and "shadowd db upgrade" in result.stderr

    async def tables() -> int:
        connection = await asyncpg.connect(fresh_database_url.replace("+asyncpg", ""))
        try:
            return int(await connection.fetchval(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"))
        finally:
            await connection.close()

    assert asyncio.run(tables()) == 0


def test_restart_begins_a_rolled_back_rollout_again_from_its_first_stage(tmp_path: Path) -> None:
    """`rollout restart` works only on a rolled-back rollout, moves it to stage 1, and is in the audit trail."""
    config = str(write_config(tmp_path, "http://127.0.0.1:9"))
    db = f"sqlite:///{tmp_path / 'v.db'}"
    run_cli_json("db", "upgrade", "-c", config, "--db", db)
    early = run_cli("rollout", "restart", "opus-4-7", "-c", config, "--db", db)
    assert early.returncode == 2 and "only a rolled-back one" in early.stderr

    run_cli_json("rollout", "promote", "opus-4-7", "-c", config, "--db", db)
    run_cli_json("rollout", "rollback", "opus-4-7", "-c", config, "--db", db)
    restarted = run_cli_json("rollout", "restart", "opus-4-7", "--actor", "alice", "-c", config, "--db", db)
    assert restarted["stage"] == 1 and restarted["action"] == "restart" and restarted["actor"] == "alice"
    status = run_cli_json("rollout", "status", "opus-4-7", "-c", config, "--db", db)
    assert status["state"] == "active" and status["stage"] == 1
    assert status["history"][0]["action"] == "restart"
