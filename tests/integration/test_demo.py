"""`shadowd demo` as a newcomer runs it: every injected fault shows up under its finding code."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.helpers import DEMO_BEHAVIOURS, DEMO_CONFIG, run_cli, run_cli_json

# Behaviour-file fault -> the finding code it must produce in the report.
FAULT_CODES = {
    "json_invalid": "format.json_invalid",
    "json_wrapped": "format.json_wrapped",
    "key_missing": "schema.key_missing",
    "type_changed": "schema.type_changed",
    "tool_input_invalid": "tool.input_invalid",
    "tool_call_missing": "tool.call_missing",
    "tool_call_unexpected": "tool.call_unexpected",
    "tool_name_changed": "tool.name_changed",
    "truncate": "stop.truncated",
    "refusal": "stop.refusal",
    "error": "error.candidate",
    "markdown_drift": "style.markdown_drift",
    "length_drift": "length.drift",
    "label_changed": "value.changed",
    "number_changed": "value.changed",
    "tool_argument_changed": "value.changed",
    "tool_call_extra": "tool.call_unexpected",
    "wrong_answer": "quality.unacceptable",
}


def test_demo_reports_every_injected_fault_and_no_regression_for_the_clean_candidate(tmp_path: Path) -> None:
    """The demo's regressed candidate shows each fault under its code; the unchanged one shows no regression."""
    db = f"sqlite:///{tmp_path / 'demo.db'}"
    result = run_cli_json("demo", "--count", "450", "--db", db)
    reports = {report["rollout"]: report for report in result["reports"]}

    regressed = reports["opus-4-7"]
    faults = yaml.safe_load(DEMO_BEHAVIOURS.read_text())["models"]["claude-opus-4-7"]["faults"]
    for fault, code in FAULT_CODES.items():
        assert fault in faults, f"the demo behaviour file should inject {fault}"
        assert code in regressed["by_code"], f"{fault} injected but {code} missing from {sorted(regressed['by_code'])}"
    assert regressed["counts"]["regression"] > 0
    assert regressed["decision"] in ("hold", "rollback")
    judge = regressed["judge"]["acceptability"]
    assert judge["candidate"]["rate"] < judge["baseline"]["rate"]
    assert regressed["judge"]["graded"] > 0 and regressed["cost_usd"]["grading"] > 0

    clean = reports["sonnet-4-6"]
    assert clean["counts"]["regression"] == 0
    assert clean["counts"]["pass"] + clean["counts"]["noise"] == 450
    assert result["summary"]["dead_letters"], "the demo's malformed lines must land in the dead letters"


def test_demo_shows_value_changes_on_stable_fields_only(tmp_path: Path) -> None:
    """Scripted label and number changes are value.changed regressions; the summary, which the
    baseline rewords on every call, is never one, and the report lists it among the noisy paths."""
    db = f"sqlite:///{tmp_path / 'demo.db'}"
    result = run_cli_json("demo", "--count", "300", "--db", db)
    report = next(r for r in result["reports"] if r["rollout"] == "opus-4-7")
    assert report["by_code"]["value.changed"]["count"] > 0
    rows = run_cli_json("verdicts", "--rollout", "opus-4-7", "--code", "value.changed", "--limit", "1000",
                        "--db", db, "-c", str(DEMO_CONFIG))["items"]
    blocking = [f for row in rows for f in row["findings"] if f["code"] == "value.changed" and not f["noise"]]
    assert blocking and {f["path"] for f in blocking} & {"/priority", "/sentiment", "/customer/tier"}
    assert not [f for f in blocking if f["path"] in ("/summary", "/generated_at")]
    noisy = {entry["path"] for entry in report["noisiest"]["support-summary"]["paths"]}
    assert "$.summary" in noisy and "$.priority" not in noisy


def test_demo_rates_roughly_match_the_behaviour_file(tmp_path: Path) -> None:
    """Rates of route-specific codes land near the configured fault rates among the requests they apply to."""
    db = f"sqlite:///{tmp_path / 'demo.db'}"
    report = next(r for r in run_cli_json("demo", "--count", "600", "--db", db)["reports"] if r["rollout"] == "opus-4-7")
    routes = report["by_route"]
    # Every third request is a support-summary (JSON under a schema); json_invalid is injected at 6 %
    # of them, so the code's share of all verdicts is about 2 %.
    json_share = report["by_code"]["format.json_invalid"]["count"] / routes["support-summary"]["total"]
    assert 0.01 <= json_share <= 0.15
    refusals = report["by_code"]["stop.refusal"]["count"] / report["total"]
    assert 0.005 <= refusals <= 0.08


def test_demo_text_output_has_the_report_and_decision(tmp_path: Path) -> None:
    """The human output prints both rollouts' reports and their canary decisions."""
    result = run_cli("demo", "--count", "90", "--db", f"sqlite:///{tmp_path / 'demo.db'}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "canary decision for opus-4-7" in result.stdout
    assert "canary decision for sonnet-4-6" in result.stdout
    assert "findings by code" in result.stdout
