"""Terminal rendering of reports and verdicts with rich: tables a release manager can scan."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.columns import Columns
from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

_DECISION_STYLE = {"promote": "bold green", "complete": "bold green", "hold": "bold yellow", "rollback": "bold red"}
_STATUS_STYLE = {"pass": "green", "regression": "red", "noise": "yellow", "error": "magenta", "skipped": "dim"}


def _console() -> Console:
    return Console(highlight=False, soft_wrap=False)


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f} ms"


def print_report(report: dict[str, Any]) -> None:
    console = _console()
    decision = report["decision"]
    stages = " → ".join(
        f"[reverse]{p}%[/reverse]" if i == report["stage_index"] else f"{p}%" for i, p in enumerate(report["stages"])
    )
    header = Text.from_markup(
        f"[bold]{report['rollout']}[/bold]  {report['baseline']} → {report['candidate']}\n"
        f"stages {stages}   state {report['state']}   canary {report['canary_percent']}%\n"
        f"decision [{_DECISION_STYLE.get(decision, 'bold')}]{decision.upper()}[/]"
    )
    console.print(Panel(header, expand=False))
    for reason in report["reasons"]:
        console.print(f"  • {reason}")

    counts = report["counts"]
    summary = Table(title="verdicts", show_header=True, header_style="bold")
    for status in ("pass", "regression", "noise", "error", "skipped"):
        summary.add_column(status, justify="right", style=_STATUS_STYLE[status])
    summary.add_row(*(str(counts.get(s, 0)) for s in ("pass", "regression", "noise", "error", "skipped")))
    low, high = report["regression_rate_ci"]
    rates = Table(title="rates", show_header=False)
    rates.add_row("regression rate", f"{_pct(report['regression_rate'])}  [{_pct(low)}, {_pct(high)}]")
    rates.add_row("baseline noise rate", _pct(report["baseline_noise_rate"]))
    rates.add_row("noise verdicts", _pct(report["noise_rate"]))
    console.print(Columns([summary, rates]))

    if report["by_code"]:
        codes = Table(title="findings by code (not explained by noise)", header_style="bold")
        codes.add_column("code")
        codes.add_column("severity")
        codes.add_column("verdicts", justify="right")
        codes.add_column("rate", justify="right")
        for code, entry in report["by_code"].items():
            style = {"critical": "red", "major": "yellow"}.get(entry["severity"], "")
            codes.add_row(code, Text(entry["severity"], style=style), str(entry["count"]), _pct(entry["rate"]))
        console.print(codes)

    routes = Table(title="by route", header_style="bold")
    for column in ("route", "total", "pass", "regression", "noise", "error", "regression rate"):
        routes.add_column(column, justify="left" if column == "route" else "right")
    for route, entry in report["by_route"].items():
        c = entry["counts"]
        routes.add_row(route, str(entry["total"]), *(str(c.get(s, 0)) for s in ("pass", "regression", "noise", "error")),
                       _pct(entry["regression_rate"]))
    perf = Table(title="latency and cost", header_style="bold")
    for column in ("side", "p50", "p95", "cost"):
        perf.add_column(column, justify="right")
    for side in ("baseline", "candidate"):
        latency = report["latency_ms"][side]
        perf.add_row(side, _ms(latency["p50"]), _ms(latency["p95"]), f"${report['cost_usd'][side]:.4f}")
    ratio = report["cost_usd"].get("ratio")
    perf.caption = (
        f"p95 ratio {report['latency_p95_ratio']:.2f}" if report["latency_p95_ratio"] else "p95 ratio —"
    ) + (f", cost ratio {ratio:.2f}" if ratio else "")
    console.print(Columns([routes, perf]))
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
        table.add_row(Text(name), str(entry["judged"]), f"{entry['graded']} ({_pct(entry['graded_share'])})",
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


def print_verdicts(rows: Sequence[Any]) -> None:
    console = _console()
    table = Table(header_style="bold")
    for column in ("id", "request_id", "route", "status", "findings", "b ms", "c ms", "created"):
        table.add_column(column)
    for row in rows:
        v = row.verdict
        codes = ", ".join(sorted({f.code + ("~" if f.noise else "") for f in v.findings})) or v.reason or ""
        table.add_row(
            str(row.id), v.request_id, v.route, Text(v.status.value, style=_STATUS_STYLE.get(v.status.value, "")),
            codes, _ms(v.baseline.latency_ms if v.baseline else None),
            _ms(v.candidate.latency_ms if v.candidate else None), v.created_at.strftime("%Y-%m-%d %H:%M:%S"),
        )
    console.print(table)
    if rows:
        console.print(f"[dim]{len(rows)} shown; older ones with --cursor {rows[-1].id}; ~ marks noise[/dim]")


def print_verdict(v: Any) -> None:
    console = _console()
    console.print(Panel(Text.from_markup(
        f"[bold]{v.request_id}[/bold]  rollout {v.rollout}  route {v.route}  "
        f"status [{_STATUS_STYLE.get(v.status.value, '')}]{v.status.value}[/]  comparator {v.comparator_version}"
        + (f"\nreason: {v.reason}" if v.reason else "")
    ), expand=False))
    panels = []
    for title, side in (("baseline", v.baseline), ("candidate", v.candidate)):
        if side is None:
            panels.append(Panel("—", title=title))
            continue
        body = side.text or ""
        for call in side.tool_calls:
            body += f"\n[tool_use] {call.get('name')}({call.get('input')})"
        if not side.ok:
            body = f"call failed: {side.error}"
        meta = (f"{side.model}  stop {side.stop_reason}  {_ms(side.latency_ms)}  "
                f"in {side.usage.input_tokens} / out {side.usage.output_tokens} tok  ${side.cost_usd or 0:.5f}")
        panels.append(Panel(Text(body[:3000]), title=title, subtitle=meta))
    console.print(Columns(panels, equal=True, expand=True))
    if v.findings:
        table = Table(title="findings", header_style="bold")
        for column in ("code", "severity", "path", "detail", "noise"):
            table.add_column(column)
        for f in v.findings:
            table.add_row(f.code, f.severity.value, f.path or "", f.detail, "yes" if f.noise else "")
        console.print(table)
    console.print("adaptations: " + (", ".join(v.adaptations) or "none"))
    grading = getattr(v, "grading", None)
    if grading is not None:
        _print_grades(console, grading)


def _print_grades(console: Console, grading: Any) -> None:
    # Reasons come from a model: printed as plain Text, never as markup.
    line = Text(f"grades ({grading.status}, judge {grading.judge_model}, ${grading.cost_usd:.5f})")
    console.print(line)
    for side in ("baseline", "candidate"):
        grade = getattr(grading, side)
        if grade is None:
            continue
        if grade.ok:
            verdict = "acceptable" if grade.acceptable else "UNACCEPTABLE"
            score = "" if grade.score is None else f" {grade.score}/5"
            console.print(Text(f"  {side}: {verdict}{score}: {grade.reason or ''}"))
        else:
            console.print(Text(f"  {side}: ungraded: {grade.error}"))


def print_history(history: Sequence[dict[str, Any]]) -> None:
    console = _console()
    table = Table(title="recent decisions", header_style="bold")
    for column in ("at", "actor", "action", "decision", "stage", "canary", "reasons"):
        table.add_column(column)
    for row in history:
        table.add_row(row["at"][:19], row["actor"], row["action"], row["decision"], str(row["stage_index"] + 1),
                      f"{row['canary_percent']}%", "; ".join(row["reasons"])[:120])
    console.print(table)
