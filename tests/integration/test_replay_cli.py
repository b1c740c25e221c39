"""`shadowd replay` end to end: real CLI process, real fake-model process, real SDK, SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from shadowd.demo.traffic import MALFORMED_LINES, generate_envelopes
from tests.helpers import fake_model_process, run_cli, run_cli_json, write_config

COUNT = 60
EXPECTED_REASONS = {
    "invalid_json": 1,
    "not_an_object": 1,
    "unsupported_schema": 1,
    "missing_field:request_id": 1,
    "invalid_field:request.max_tokens": 1,
}


@pytest.fixture(scope="module")
def fake_model() -> Iterator[str]:
    """The demo's fake models served by `shadowd fake-model` in its own process."""
    with fake_model_process() as base_url:
        yield base_url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test runs on SQLite and on a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'verdicts.db'}"
    return str(request.getfixturevalue("fresh_database_url"))


def traffic_file(folder: Path) -> Path:
    path = folder / "traffic.jsonl"
    with path.open("w") as out:
        for envelope in generate_envelopes(COUNT, seed=11):
            out.write(json.dumps(envelope) + "\n")
        out.write("\n")  # a blank line is not a record
        for line in MALFORMED_LINES:
            out.write(line.decode() + "\n")
    return path


def test_replay_twice_stores_one_verdict_per_request_and_dead_letters_bad_lines(
    tmp_path: Path, fake_model: str, db_url: str
) -> None:
    """Replaying a file twice leaves exactly one verdict per (rollout, request), and each bad line is a dead letter."""
    config = write_config(tmp_path, fake_model)
    traffic = traffic_file(tmp_path)

    first = run_cli_json("replay", str(traffic), "-c", str(config), "--db", db_url)
    assert first["records"] == COUNT + len(MALFORMED_LINES)
    assert first["verdicts"] == 2 * COUNT
    assert first["dead_letters"] == EXPECTED_REASONS

    second = run_cli_json("replay", str(traffic), "-c", str(config), "--db", db_url)
    assert second["verdicts"] == 0
    assert second["already_present"] == 2 * COUNT

    for rollout in ("opus-4-7", "sonnet-4-6"):
        page = run_cli_json("verdicts", "--rollout", rollout, "--limit", "1000", "-c", str(config), "--db", db_url)
        assert page["next_cursor"] is None  # nothing is older than a page that holds them all
        rows = page["items"]
        ids = [row["request_id"] for row in rows]
        assert len(ids) == COUNT and len(set(ids)) == COUNT
        for row in rows:
            assert row["comparator_version"]
            assert set(row["candidate"]) >= {"model", "latency_ms", "input_tokens", "output_tokens", "stop_reason",
                                             "cost_usd"}

    letters = run_cli_json("dead-letters", "--limit", "100", "-c", str(config), "--db", db_url)
    assert letters["counts"] == EXPECTED_REASONS
    assert {row["payload"] for row in letters["dead_letters"]} == {line.decode() for line in MALFORMED_LINES}

    report = run_cli_json("report", "--rollout", "opus-4-7", "-c", str(config), "--db", db_url)
    assert sum(report["counts"].values()) == COUNT
    assert report["counts"]["regression"] > 0
    assert report["by_code"], "the regressed candidate must show findings by code"
    assert report["latency_ms"]["candidate"]["p95"] > 0
    clean = run_cli_json("report", "--rollout", "sonnet-4-6", "-c", str(config), "--db", db_url)
    assert clean["counts"]["regression"] == 0


def test_show_and_filters_read_back_what_replay_stored(tmp_path: Path, fake_model: str, db_url: str) -> None:
    """`verdicts` filters by status and code, and `show` returns both outputs side by side."""
    config = write_config(tmp_path, fake_model)
    run_cli_json("replay", str(traffic_file(tmp_path)), "-c", str(config), "--db", db_url)
    regressions = run_cli_json("verdicts", "--rollout", "opus-4-7", "--status", "regression", "--limit", "500",
                               "-c", str(config), "--db", db_url)["items"]
    assert regressions and all(row["status"] == "regression" for row in regressions)
    code = regressions[0]["findings"][0]["code"]
    by_code = run_cli_json("verdicts", "--rollout", "opus-4-7", "--code", code, "-c", str(config), "--db", db_url)[
        "items"]
    assert by_code and all(any(f["code"] == code for f in row["findings"]) for row in by_code)

    shown = run_cli_json("show", "--rollout", "opus-4-7", regressions[0]["request_id"], "-c", str(config),
                         "--db", db_url)
    assert shown["request_id"] == regressions[0]["request_id"]
    assert shown["outputs"]["baseline"] is not None
    missing = run_cli("show", "--rollout", "opus-4-7", "no-such-request", "-c", str(config), "--db", db_url)
    assert missing.returncode == 2 and "no verdict" in missing.stderr


def test_bad_config_exits_2_naming_key_and_file(tmp_path: Path) -> None:
    """A config error stops the command with exit code 2 and names the key and the file."""
    config = tmp_path / "shadowd.yaml"
    config.write_text("models:\n  timeout_s: soon\n")
    result = run_cli("replay", str(config), "-c", str(config), "--db", f"sqlite:///{tmp_path / 'x.db'}")
    assert result.returncode == 2
    assert "models.timeout_s" in result.stderr and str(config) in result.stderr
