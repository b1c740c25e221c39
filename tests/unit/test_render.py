"""Terminal rendering shows stored data literally, whatever it contains."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shadowd.core.findings import Finding, Status
from shadowd.core.results import SideResult, Usage
from shadowd.records import VerdictRecord
from shadowd.render import BODY_LIMIT, print_verdict, printable
from shadowd.report import severity_then_count


def test_printable_neutralises_terminal_controls_and_lone_surrogates() -> None:
    """NUL, ESC sequences and lone surrogates become visible escapes or '?', so printing never fails or recolours."""
    shown = printable("a\x00b\x1b[31mc\ud800d\n\te")
    assert shown == "a\\x00b\\x1b[31mc?d\n\te"
    shown.encode("utf-8")  # printable text always encodes


def _verdict(text_b: str, text_c: str, detail: str) -> VerdictRecord:
    def side(model: str, text: str) -> SideResult:
        return SideResult(model=model, ok=True, content=({"type": "text", "text": text},), stop_reason="end_turn",
                          usage=Usage(10, 10), latency_ms=12.0, cost_usd=0.001)

    return VerdictRecord(
        rollout="r[bold]1", request_id="req-[/]x", route="[link=https://example.invalid]r[/link]",
        status=Status.REGRESSION, findings=(Finding.of("tool.name_changed", detail),), comparator_version="v",
        created_at=datetime(2026, 1, 1, tzinfo=UTC), baseline=side("b", text_b), candidate=side("c", text_c),
    )


def test_show_prints_markup_literally_and_says_when_it_cuts(capsys: pytest.CaptureFixture[str]) -> None:
    """Markup in ids, routes, outputs and details prints as typed; a body over the limit says how much is cut."""
    detail = "baseline called [get_order_status]; candidate [search_products]"
    print_verdict(_verdict("[bold]hi[/]", "x" * (BODY_LIMIT + 500), detail))
    out = capsys.readouterr().out
    for literal in ("req-[/]x", "r[bold]1", "[link=https://example.invalid]r[/link]", "[bold]hi[/]",
                    "[get_order_status]", "[search_products]"):
        assert literal in out
    assert "500 more characters not shown" in out


def test_findings_sort_by_severity_then_count() -> None:
    """A critical code comes before a more frequent minor one."""
    by_code = {"style.markdown_drift": {"severity": "minor", "count": 90},
               "format.json_invalid": {"severity": "critical", "count": 3},
               "schema.key_missing": {"severity": "major", "count": 5},
               "stop.refusal": {"severity": "critical", "count": 7}}
    ordered = [code for code, _ in sorted(by_code.items(), key=severity_then_count)]
    assert ordered == ["stop.refusal", "format.json_invalid", "schema.key_missing", "style.markdown_drift"]


def test_request_summary_is_bounded_and_storable() -> None:
    """The stored request keeps the system, the last user turn and the tools, cut to bounds, without NUL."""
    from shadowd.records import REQUEST_TEXT_LIMIT, summarise_request

    summary = summarise_request({
        "model": "m", "max_tokens": 5,
        "system": [{"type": "text", "text": "s\x00" + "x" * (REQUEST_TEXT_LIMIT + 10)}],
        "messages": [{"role": "user", "content": "first"}, {"role": "assistant", "content": "a"},
                     {"role": "user", "content": [{"type": "text", "text": "last"}, {"type": "image"}]}],
        "tools": [{"name": "t", "input_schema": {"type": "object"}}, "not a tool"],
    })
    assert summary["last_user"] == "last\n[image]" and summary["messages"] == 3
    assert len(summary["system"]) == REQUEST_TEXT_LIMIT and summary["system_cut"] == 12
    assert "\x00" not in summary["system"]
    assert summary["tools"] == [{"name": "t", "description": "", "input_schema": {"type": "object"}}]
    assert summary["tools_total"] == 2
