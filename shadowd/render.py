"""Terminal rendering of reports and verdicts with rich: tables a release manager can scan.

Every piece of stored data (routes, request ids, outputs, finding details, reasons) reaches rich as a
`Text` object, never as markup, after `printable()` has made it safe for a terminal.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Sequence
from typing import Any

from rich.columns import Columns
from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from shadowd.core.spend import spend_lines

_DECISION_STYLE = {"promote": "bold green", "complete": "bold green", "hold": "bold yellow", "rollback": "bold red"}
_STATUS_STYLE = {"pass": "green", "regression": "red", "noise": "yellow", "error": "magenta", "skipped": "dim"}
_SEVERITY_STYLE = {"critical": "bold red", "major": "yellow", "minor": ""}
# C0/C1 controls (except tab and newline) would move the cursor or recolour the terminal.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# Output bodies longer than this are cut in the terminal, and the cut is said; --json has them whole.
BODY_LIMIT = 6000
SIDE_BY_SIDE_WIDTH = 120
PIPE_WIDTH = 200


def printable(value: Any) -> str:
    """Any stored value as text a terminal shows literally: lone surrogates replaced, controls as escapes."""
    text = str(value)
    text = text.encode("utf-8", "replace").decode("utf-8")  # a lone surrogate becomes "?"
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def plain(value: Any, style: str = "") -> Text:
    """User data as a rich Text: never parsed as markup."""
    return Text(printable(value), style=style)


def _console() -> Console:
    import sys

    # In a pipe rich would assume 80 columns and cut or fold ids; a reader of a pipe gets whole lines.
    width = None if sys.stdout.isatty() else PIPE_WIDTH
    return Console(highlight=False, soft_wrap=False, emoji=False, width=width)


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f} ms"


def _usd(value: float | None) -> str:
    return "—" if value is None else f"${value:.5f}"


def print_report(report: dict[str, Any]) -> None:
    console = _console()
    decision = report["decision"]
    stages = Text()
    for i, percent in enumerate(report["stages"]):
        if i:
            stages.append(" → ")
        stages.append(f"{percent}%", style="reverse" if i == report["stage_index"] else "")
    header = Text.assemble(
        plain(report["rollout"], "bold"), "  ", plain(report["baseline"]), " → ", plain(report["candidate"]), "\n",
        "stages ", stages, f"   state {printable(report['state'])}   canary {report['canary_percent']}%\n",
        "decision ", (printable(decision).upper(), _DECISION_STYLE.get(decision, "bold")),
    )
    console.print(Panel(header, expand=False))
    for reason in report["reasons"]:
        console.print(Text.assemble("  • ", plain(reason)))

    counts = report["counts"]
    summary = Table(title="verdicts", show_header=True, header_style="bold")
    for status in ("pass", "regression", "noise", "error", "skipped"):
        summary.add_column(status, justify="right", style=_STATUS_STYLE[status])
    summary.add_row(*(str(counts.get(s, 0)) for s in ("pass", "regression", "noise", "error", "skipped")))
    low, high = report["regression_rate_ci"]
    rates = Table(title="rates", show_header=False)
    level = f"{report.get('confidence', 0.95):.0%}"
    rates.add_row("regression rate", f"{_pct(report['regression_rate'])}  [{_pct(low)}, {_pct(high)}] ¹")
    figures = report.get("gate_figures") or {}
    if figures.get("rate_increase_upper") is not None:
        rates.add_row(
            "increase over noise",
            f"{_pct(figures.get('rate_increase'))}  [{_pct(figures.get('rate_increase_lower'))}, "
            f"{_pct(figures.get('rate_increase_upper'))}] ² (tolerance {_pct(figures.get('max_regression_rate_increase'))})",
        )
    rates.add_row("baseline noise rate ³", _pct(report["baseline_noise_rate"]))
    rates.add_row("noise verdicts ⁴", _pct(report["noise_rate"]))
    console.print(Columns([summary, rates]))
    console.print(Text(
        f"¹ {level} Wilson interval of the candidate's regression rate over {report['compared']} compared verdicts: "
        "where the rate itself lies.\n"
        f"² the gate's {level} anytime-valid interval for how much the candidate regresses more than the baseline "
        "disagrees with itself; valid however often it is looked at, so wider. The gate rolls back when its lower "
        "end exceeds the tolerance and promotes only when its upper end is within it.\n"
        "³ share of compared requests where the baseline, replayed twice, regressed against itself: the noise the "
        "gate subtracts.\n"
        "⁴ share of compared requests whose every difference the baseline also showed against itself: counted as "
        "noise, not as regressions.",
        style="dim",
    ))
    if report.get("errors_by_reason"):
        errors = Table(title="errors by reason", caption="not counted by the gate", header_style="bold")
        errors.add_column("reason")
        errors.add_column("verdicts", justify="right")
        for reason, count in report["errors_by_reason"].items():
            errors.add_row(plain(reason), str(count))
        console.print(errors)

    if report["by_code"]:
        examples = report.get("examples") or {}
        codes = Table(title="findings by code (not explained by noise), most severe first", header_style="bold")
        for column, justify in (("code", "left"), ("severity", "left"), ("verdicts", "right"), ("rate", "right"),
                                ("examples", "left")):
            codes.add_column(column, justify=justify)  # type: ignore[arg-type]
        for code, entry in report["by_code"].items():
            codes.add_row(
                plain(code), plain(entry["severity"], _SEVERITY_STYLE.get(entry["severity"], "")),
                str(entry["count"]), _pct(entry["rate"]), plain(", ".join(examples.get(code, []))),
            )
        console.print(codes)

    routes = Table(title="by route", header_style="bold")
    for column in ("route", "total", "pass", "regression", "noise", "error", "regression rate"):
        routes.add_column(column, justify="left" if column == "route" else "right")
    for route, entry in report["by_route"].items():
        c = entry["counts"]
        routes.add_row(plain(route), str(entry["total"]),
                       *(str(c.get(s, 0)) for s in ("pass", "regression", "noise", "error")),
                       _pct(entry["regression_rate"]))
    perf = Table(title="latency and cost", header_style="bold")
    for column in ("side", "p50", "p95", "cost"):
        perf.add_column(column, justify="right")
    for side in ("baseline", "candidate"):
        latency = report["latency_ms"][side]
        perf.add_row(side, _ms(latency["p50"]), _ms(latency["p95"]), f"${report['cost_usd'][side]:.4f}")
    ratio = report["cost_usd"].get("ratio")
    perf.caption = (
        "p95 ratio not judged (batch)" if report.get("latency_judged") is False
        else f"p95 ratio {report['latency_p95_ratio']:.2f}" if report["latency_p95_ratio"] else "p95 ratio —"
    ) + (f", cost ratio {ratio:.2f}" if ratio else "")
    console.print(Columns([routes, perf]))
    _print_noise(console, report)
    if report.get("judge"):
        _print_judge(console, report["judge"], report["cost_usd"].get("grading", 0.0))


def _print_judge(console: Console, judge: dict[str, Any], cost: float) -> None:
    table = Table(title="answer quality (the judge, graded blind)", header_style="bold")
    for column in ("route", "judged", "graded", "ungraded", "baseline acceptable", "candidate acceptable",
                   "candidate worse", "candidate better"):
        table.add_column(column, justify="left" if column == "route" else "right")

    def row(name: str, entry: dict[str, Any]) -> None:
        sides = entry["acceptability"]
        cells = [
            f"{_pct(sides[s]['rate'])}  [{_pct(sides[s]['ci'][0])}, {_pct(sides[s]['ci'][1])}]"
            for s in ("baseline", "candidate")
        ]
        table.add_row(plain(name), str(entry["judged"]), f"{entry['graded']} ({_pct(entry['graded_share'])})",
                      str(entry["ungraded_failed"]), *cells, str(entry["discordant"]["candidate_worse"]),
                      str(entry["discordant"]["candidate_better"]))

    for route, entry in judge["by_route"].items():
        row(route, entry)
    if len(judge["by_route"]) > 1:
        row("all", judge)
    table.caption = f"grading spend ${cost:.4f} (part of the shadow budget)" + (
        f"; judge silent: last {judge['failed_streak']} gradings failed" if judge.get("silent") else ""
    )
    console.print(table)


def _print_noise(console: Console, report: dict[str, Any]) -> None:
    check = report.get("noise_check")
    if check:
        per = check["model_calls_per_compared"]
        console.print(
            f"noise check: {check['fraction']:.0%} of requests configured, "
            f"{_pct(check['noise_checked_share'])} replayed twice; "
            f"{'—' if per is None else f'{per:.2f}'} model calls per compared verdict"
        )
    for line in spend_lines(report.get("spend")):
        console.print(line, markup=False, highlight=False)
    noisiest = report.get("noisiest") or {}
    if not any(entry["paths"] or entry["codes"] for entry in noisiest.values()):
        return
    table = Table(title="noisiest paths and codes (the baseline against its own second replay)",
                  header_style="bold")
    for column in ("route", "path or code", "rate", "differed / checked", "treated as noise"):
        table.add_column(column, justify="right" if column in ("rate", "differed / checked") else "left")
    for route, entry in noisiest.items():
        for item in [*entry["paths"], *entry["codes"]]:
            table.add_row(
                plain(route), plain(item.get("path") or item.get("code") or ""), _pct(item["rate"]),
                f"{item['differed']} / {item['samples']}", "yes" if item["noise"] else "",
            )
    console.print(table)


def print_verdicts(rows: Sequence[Any], next_cursor: int | None) -> None:
    console = _console()
    table = Table(header_style="bold")
    widest_id = max((len(printable(row.verdict.request_id)) for row in rows), default=10)
    table.add_column("id", no_wrap=True)
    # Request ids are what a reader copies into `show`: never cut, never folded.
    table.add_column("request_id", no_wrap=True, min_width=widest_id, overflow="ignore")
    table.add_column("route", overflow="fold")
    table.add_column("status", no_wrap=True)
    table.add_column("findings", overflow="fold")
    for column in ("b ms", "c ms"):
        table.add_column(column, justify="right", no_wrap=True)
    table.add_column("created", no_wrap=True)
    for row in rows:
        v = row.verdict
        codes = ", ".join(sorted({f.code + ("~" if f.noise else "") for f in v.findings})) or v.reason or ""
        table.add_row(
            str(row.id), plain(v.request_id), plain(v.route),
            plain(v.status.value, _STATUS_STYLE.get(v.status.value, "")), plain(codes),
            _ms(v.baseline.latency_ms if v.baseline else None),
            _ms(v.candidate.latency_ms if v.candidate else None), v.created_at.strftime("%Y-%m-%d %H:%M:%S"),
        )
    console.print(table)
    more = f"; older ones with --cursor {next_cursor}" if next_cursor is not None else "; no older ones"
    console.print(Text(f"{len(rows)} shown{more}; ~ marks noise", style="dim"))


def _pretty(text: str) -> str:
    """JSON (bare or in one fenced block) pretty-printed; anything else as it is."""
    stripped = text.strip()
    fenced = re.fullmatch(r"```(?:json)?\s*\n(.*)\n```", stripped, re.DOTALL)
    candidate = fenced.group(1) if fenced else stripped
    if candidate[:1] in ("{", "["):
        try:
            return json.dumps(json.loads(candidate), indent=2, ensure_ascii=False)
        except ValueError:
            return text
    return text


def side_body(side: Any) -> str:
    """One side's answer as a reader would compare it: pretty JSON text, then each tool call."""
    if side is None:
        return ""
    if not side.ok:
        return f"call failed: {side.error}"
    parts = [_pretty(side.text)] if side.text else []
    for call in side.tool_calls:
        parts.append(
            f"tool_use {call.get('name')}\n" + json.dumps(call.get("input"), indent=2, ensure_ascii=False, default=str)
        )
    return "\n".join(parts)


def _marked(body: str, other: str, style: str) -> tuple[Text, str]:
    """The body with lines absent from the other side highlighted, cut at BODY_LIMIT with the cut said."""
    shown = body[:BODY_LIMIT]
    others = set(other.splitlines())
    text = Text()
    for line in shown.splitlines(keepends=True):
        text.append(printable(line.rstrip("\n")) + ("\n" if line.endswith("\n") else ""),
                    style=style if line.rstrip("\n") not in others else "")
    cut = len(body) - len(shown)
    note = f"… {cut:,} more characters not shown (shadowd show --json prints them all)" if cut > 0 else ""
    return text, note


def print_verdict(v: Any) -> None:
    console = _console()
    header = Text.assemble(
        plain(v.request_id, "bold"), "  rollout ", plain(v.rollout), "  route ", plain(v.route), "  status ",
        plain(v.status.value, _STATUS_STYLE.get(v.status.value, "")), "  comparator ", plain(v.comparator_version),
    )
    if v.reason:
        header.append_text(Text.assemble("\nreason: ", plain(v.reason)))
    console.print(Panel(header, expand=False))
    bodies = {"baseline": side_body(v.baseline), "candidate": side_body(v.candidate)}
    panels = []
    for title, side, other, style in (
        ("baseline", v.baseline, "candidate", "on dark_red"),
        ("candidate", v.candidate, "baseline", "on dark_green"),
    ):
        if side is None:
            panels.append(Panel(Text("—"), title=title))
            continue
        body, note = _marked(bodies[title], bodies[other], style)
        meta = Text.assemble(
            plain(side.model), f"  stop {printable(side.stop_reason)}  {_ms(side.latency_ms)}  "
            f"in {side.usage.input_tokens} / out {side.usage.output_tokens} tok  {_usd(side.cost_usd)}",
        )
        content: list[Any] = [body]
        if note:
            content.append(Text(note, style="italic dim"))
        panels.append(Panel(Group(*content), title=title, subtitle=meta))
    if console.width >= SIDE_BY_SIDE_WIDTH:
        grid = Table.grid(expand=True, padding=(0, 1))
        grid.add_column(ratio=1)
        grid.add_column(ratio=1)
        grid.add_row(*panels)
        console.print(grid)
    else:
        for panel in panels:
            console.print(panel)
    console.print(Text("highlighted lines differ from the other side", style="dim"))
    if v.findings:
        table = Table(title="findings", header_style="bold")
        for column in ("code", "severity", "path", "detail", "noise"):
            table.add_column(column, overflow="fold")
        for f in v.findings:
            table.add_row(plain(f.code), plain(f.severity.value, _SEVERITY_STYLE.get(f.severity.value, "")),
                          plain(f.path or ""), plain(f.detail), "yes" if f.noise else "")
        console.print(table)
    console.print(Text.assemble("adaptations: ", plain(", ".join(v.adaptations) or "none")))
    grading = getattr(v, "grading", None)
    if grading is not None:
        _print_grades(console, grading)


def _print_grades(console: Console, grading: Any) -> None:
    # Reasons come from a model: printed as plain Text, never as markup.
    console.print(plain(f"grades ({grading.status}, judge {grading.judge_model}, ${grading.cost_usd:.5f})"))
    for side in ("baseline", "candidate"):
        grade = getattr(grading, side)
        if grade is None:
            continue
        if grade.ok:
            verdict = "acceptable" if grade.acceptable else "UNACCEPTABLE"
            score = "" if grade.score is None else f" {grade.score}/5"
            console.print(plain(f"  {side}: {verdict}{score}: {grade.reason or ''}"))
        else:
            console.print(plain(f"  {side}: ungraded: {grade.error}"))


def unified_diff(v: Any) -> list[str]:
    """The line diff of the two answers, as `show` highlights it (used by the HTML page too)."""
    return list(difflib.unified_diff(side_body(v.baseline).splitlines(), side_body(v.candidate).splitlines(),
                                     "baseline", "candidate", lineterm=""))


def print_history(history: Sequence[dict[str, Any]]) -> None:
    console = _console()
    table = Table(title="recent decisions", header_style="bold")
    for column in ("at", "actor", "action", "decision", "stage", "canary", "reasons"):
        table.add_column(column, overflow="fold")
    for row in history:
        table.add_row(row["at"][:19], plain(row["actor"]), plain(row["action"]), plain(row["decision"]),
                      str(row["stage_index"] + 1), f"{row['canary_percent']}%", plain("; ".join(row["reasons"])))
    console.print(table)


def print_routes(table_rows: Sequence[dict[str, Any]]) -> None:
    """The route × model table (SPEC §11): the cheapest model not worse than the baseline is marked ★."""
    console = _console()
    table = Table(title="routes × models: ★ marks the cheapest model not worse than the baseline",
                  header_style="bold")
    right = ("verdicts", "p50", "p95", "cost/request")
    for column in ("route", "model", "rollout", "verdicts", "regression rate", "vs baseline", "acceptable", "p50",
                   "p95", "cost/request", ""):
        table.add_column(column, justify="right" if column in right else "left", overflow="fold")
    previous = None
    for row in table_rows:
        low, high = row["regression_rate_ci"]
        rate = f"{_pct(row['regression_rate'])} [{_pct(low)}, {_pct(high)}]" if row["regression_rate"] is not None \
            else "—"
        judgement = row["judgement"]
        style = {"not worse": "green", "worse": "red", "undecided": "yellow"}.get(judgement, "dim")
        acceptable = _pct(row["acceptability"]) if row.get("acceptability") is not None else "—"
        if previous is not None and previous != row["route"]:
            table.add_section()
        previous = row["route"]
        table.add_row(
            plain(row["route"]), plain(row["model"]), plain(row["rollout"]), str(row["verdicts"]), rate,
            plain(judgement, style), acceptable, _ms(row["latency_ms"]["p50"]), _ms(row["latency_ms"]["p95"]),
            _usd(row["cost_per_request_usd"]), Text("★", style="bold green") if row["recommended"] else Text(""),
        )
    console.print(table)
    console.print(Text(
        "A baseline row's regression rate is how often it regresses against its own second replay. A candidate is "
        "'not worse' when the gate's anytime-valid bound over that route's verdicts keeps its regression-rate "
        "increase within the rollout's tolerance; 'undecided' needs more verdicts.",
        style="dim",
    ))
