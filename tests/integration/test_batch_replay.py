"""`replay_mode: batch` through `shadowd replay`: real CLI, real fake-model process, real SDK, SQLite."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shadowd.demo.traffic import generate_envelopes
from tests.daemon_harness import fake_model_stats
from tests.helpers import fake_model_process, run_cli, run_cli_json, write_config

COUNT = 90
BATCH_SETTINGS = "batch: {window_records: 500, window_s: 0.5, poll_initial_s: 0.2, poll_max_s: 1.0}"
# Deterministic models: the same request always gets the same answer, so live and batch replays of
# one file must reach the same verdicts. The candidate's content faults and first-attempt capacity
# faults are decided by a hash of the request, so both modes meet the same ones.
DETERMINISTIC = {
    "batches": {"delay_s": 0.5},
    "models": {
        "claude-opus-4-6": {"latency_ms": 5, "nondeterminism": 0.0},
        "claude-sonnet-4-6": {"latency_ms": 5, "nondeterminism": 0.0},
        "claude-opus-4-7": {
            "latency_ms": 5,
            "nondeterminism": 0.0,
            "faults": {
                "json_invalid": 0.06, "key_missing": 0.06, "type_changed": 0.06, "tool_call_missing": 0.06,
                "tool_call_unexpected": 0.1, "truncate": 0.05, "refusal": 0.05, "markdown_drift": 0.1,
                "length_drift": 0.08, "rate_limited": 0.1, "overloaded": 0.05,
            },
        },
    },
}
# Individual batch results that errored (a persistent server fault) or expired.
FAILING = {
    "batches": {"delay_s": 0.3, "expired": 0.15},
    "models": {
        "claude-opus-4-6": {"nondeterminism": 0.0},
        "claude-sonnet-4-6": {"nondeterminism": 0.0},
        "claude-opus-4-7": {"nondeterminism": 0.0, "faults": {"error": 0.25}},
    },
}


@pytest.fixture(scope="module")
def deterministic_model(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A `shadowd fake-model` process whose models answer each request the same way every time."""
    path = tmp_path_factory.mktemp("behaviours") / "deterministic.yaml"
    path.write_text(json.dumps(DETERMINISTIC))
    with fake_model_process(path) as base_url:
        yield base_url


def _traffic(folder: Path) -> Path:
    path = folder / "traffic.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in generate_envelopes(COUNT, seed=41)))
    return path


def _batch_config(folder: Path, base_url: str) -> Path:
    config = write_config(folder, base_url, extra=BATCH_SETTINGS)
    text = config.read_text().replace("    gate: {min_samples: 50}", "    gate: {min_samples: 50}\n    replay_mode: batch")
    config.write_text(text)
    assert text.count("replay_mode: batch") == 2
    return config


def _verdicts(config: Path, db: str) -> dict[tuple[str, str], dict[str, Any]]:
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for rollout in ("opus-4-7", "sonnet-4-6"):
        page = run_cli_json("verdicts", "--rollout", rollout, "--limit", "1000", "-c", str(config), "--db", db)
        assert page["next_cursor"] is None
        for row in page["items"]:
            found[(rollout, row["request_id"])] = row
    return found


def _codes(row: dict[str, Any]) -> list[str]:
    return sorted(f["code"] for f in row.get("findings") or [] if not f.get("noise"))


def test_batch_replay_reaches_the_live_verdicts_at_half_the_price(tmp_path: Path, deterministic_model: str) -> None:
    """A file replayed in batch mode gets the same verdict status and finding codes per request as in live
    mode, with no latency measured and the batch discount applied to every side's cost."""
    traffic = _traffic(tmp_path)
    live_dir, batch_dir = tmp_path / "live", tmp_path / "batch"
    live_dir.mkdir()
    batch_dir.mkdir()
    live_config = write_config(live_dir, deterministic_model)
    batch_config = _batch_config(batch_dir, deterministic_model)
    live_db, batch_db = f"sqlite:///{live_dir / 'v.db'}", f"sqlite:///{batch_dir / 'v.db'}"

    before = fake_model_stats(deterministic_model)
    live = run_cli_json("replay", str(traffic), "-c", str(live_config), "--db", live_db)
    middle = fake_model_stats(deterministic_model)
    batch = run_cli_json("replay", str(traffic), "-c", str(batch_config), "--db", batch_db)
    after = fake_model_stats(deterministic_model)

    assert live["verdicts"] == batch["verdicts"] == 2 * COUNT
    assert middle["batch_requests"] == before["batch_requests"]  # live mode never batches
    assert after["requests_served"] == middle["requests_served"]  # batch mode makes no live call
    assert after["batches_created"] > middle["batches_created"]
    assert after["batch_requests"] - middle["batch_requests"] >= 2 * COUNT

    live_rows, batch_rows = _verdicts(live_config, live_db), _verdicts(batch_config, batch_db)
    assert set(live_rows) == set(batch_rows) and len(live_rows) == 2 * COUNT
    statuses = {row["status"] for row in live_rows.values()}
    assert {"pass", "regression"} <= statuses  # the comparison has both outcomes to agree on
    for key, live_row in live_rows.items():
        batch_row = batch_rows[key]
        assert (batch_row["status"], _codes(batch_row)) == (live_row["status"], _codes(live_row)), key
        assert batch_row["candidate"]["latency_ms"] is None
        assert live_row["candidate"]["latency_ms"] is not None
        live_cost, batch_cost = live_row["candidate"]["cost_usd"], batch_row["candidate"]["cost_usd"]
        assert batch_cost == pytest.approx(live_cost * 0.5), key

    # The report, its JSON and its HTML page say latency is not judged for the batch rollout only.
    batch_report = run_cli_json("report", "--rollout", "opus-4-7", "-c", str(batch_config), "--db", batch_db)
    live_report = run_cli_json("report", "--rollout", "opus-4-7", "-c", str(live_config), "--db", live_db)
    batch_report, live_report = _one(batch_report), _one(live_report)
    assert batch_report["latency_judged"] is False and batch_report["latency_p95_ratio"] is None
    assert live_report["latency_judged"] is True and live_report["latency_p95_ratio"] is not None
    assert any("latency p95 not judged" in reason for reason in batch_report["reasons"])
    assert batch_report["cost_usd"]["candidate"] == pytest.approx(live_report["cost_usd"]["candidate"] * 0.5)
    text = run_cli("report", "--rollout", "opus-4-7", "-c", str(batch_config), "--db", batch_db)
    assert text.returncode == 0 and "not judged" in text.stdout
    page = batch_dir / "report.html"
    assert run_cli("report", "--rollout", "opus-4-7", "--html", str(page), "-c", str(batch_config),
                   "--db", batch_db).returncode == 0
    assert "not judged" in page.read_text()


def _one(report: Any) -> dict[str, Any]:
    """The single rollout's report out of `report --json` (a list of one, or the report itself)."""
    if isinstance(report, dict) and "rollouts" in report:
        report = report["rollouts"]
    if isinstance(report, list):
        assert len(report) == 1
        report = report[0]
    assert isinstance(report, dict)
    return report


def test_errored_and_expired_batch_results_are_error_verdicts_never_regressions(tmp_path: Path) -> None:
    """Each side whose individual batch result errored or expired makes its verdict `error` with
    error_reason batch_result and a reason naming what happened; none of them is a regression."""
    behaviours = tmp_path / "failing.yaml"
    behaviours.write_text(json.dumps(FAILING))
    with fake_model_process(behaviours) as base_url:
        config = _batch_config(tmp_path, base_url)
        db = f"sqlite:///{tmp_path / 'v.db'}"
        summary = run_cli_json("replay", str(_traffic(tmp_path)), "-c", str(config), "--db", db)
        rows = _verdicts(config, db)

    assert summary["verdicts"] == 2 * COUNT == len(rows)
    failed_sides = 0
    reasons: set[str] = set()
    for key, row in rows.items():
        sides = [row["baseline"], row["candidate"]]
        if all(side["ok"] for side in sides):
            assert row["error_reason"] != "batch_result", key
            continue
        failed_sides += 1
        assert row["status"] == "error", key
        assert row["error_reason"] == "batch_result", key
        assert row["findings"] == [], key
        reasons.add("expired" if "expired before it was processed" in row["reason"] else
                    "errored" if "batch request errored: api_error" in row["reason"] else row["reason"])
    assert reasons == {"expired", "errored"}
    assert failed_sides >= 10
    assert any(row["status"] == "pass" for row in rows.values())
