"""The HTML report of one rollout (SPEC §11): decision first, then the evidence, as one self-contained page."""
# Over 400 lines: one self-contained HTML page; its sections read top to bottom as the page does.

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from shadowd.adapters.sql_store import SqlVerdictStore
from shadowd.clock import utc_now
from shadowd.config import Config
from shadowd.core.histogram import bucket_value
from shadowd.core.rollout import RolloutSpec
from shadowd.core.stats import PairedCounts, sequential_bounds, wilson_interval
from shadowd.pages import svg
from shadowd.pages.base import page
from shadowd.pages.escape import esc, url_part
from shadowd.pages.spend_section import spend_section
from shadowd.report import SEVERITY_ORDER, build_report
from shadowd.routing import build_routes_table

_MIN_MIXING_SCALE = 0.005  # as the gate (shadowd.core.gate)


async def report_page_data(store: SqlVerdictStore, spec: RolloutSpec, config: Config) -> dict[str, Any]:
    """Everything the page shows, read from the store (the report, history, timeline, breakdowns)."""
    report = await build_report(store, spec, lambda route: config.rules_for(route).value_noise_threshold)
    routes = await build_routes_table(store, config)
    own_routes = set(report["by_route"])
    return {
        "report": report,
        "history": list(reversed(await store.list_decisions(spec.name, limit=200))),
        "timeline": await store.regression_timeline(spec.name),
        "by_code_route": await store.findings_by_code_route(spec.name),
        "noisy_paths": await store.noisy_paths(spec.name),
        "latency": await store.latency_histograms(spec.name),
        "route_figures": await store.route_figures(spec.name),
        "routes": [r for r in routes["items"] if r["route"] in own_routes and r["baseline"] == spec.baseline],
        "tolerance": spec.gate.max_regression_rate_increase,
        "confidence": spec.gate.confidence,
        "generated_at": utc_now(),
    }


def _pct(value: float | None, digits: int = 1) -> str:
    return "—" if value is None or not math.isfinite(value) else f"{value * 100:.{digits}f}%"


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f} ms"


def _usd(value: float | None, digits: int = 5) -> str:
    return "—" if value is None else f"${value:.{digits}f}"


def _verdict_link(link_base: str, request_id: str) -> str:
    return f'<a class="mono" href="{esc(link_base)}{url_part(request_id)}.html">{esc(request_id)}</a>'


def render_report_page(data: dict[str, Any], link_base: str = "verdicts/") -> str:
    """The page; `link_base` prefixes links to verdict pages (relative to the API's report URL by default)."""
    report = data["report"]
    sections = [
        _header(report, data),
        _decision(report),
        _cards(report),
        _timeline_section(data),
        _history_section(data["history"]),
        _findings_section(report, data["by_code_route"], link_base),
        _latency_cost_section(report, data["latency"], _route_costs(data["route_figures"])),
        spend_section(report.get("spend")),
        _routes_section(data["routes"]),
        _noise_section(data["noisy_paths"], report),
        _footnotes(report),
    ]
    return page(f"shadowd report · {report['rollout']}", "".join(sections))


def _header(report: dict[str, Any], data: dict[str, Any]) -> str:
    stages = []
    for i, percent in enumerate(report["stages"]):
        cls = "now" if i == report["stage_index"] else ("done" if i < report["stage_index"] else "")
        stages.append(f'<span class="stage {cls}">{int(percent)}%</span>')
    generated = data["generated_at"].strftime("%Y-%m-%d %H:%M:%S UTC")
    return (
        f"<header><h1>Rollout {esc(report['rollout'])}</h1>"
        f'<p class="sub">baseline <b>{esc(report["baseline"])}</b> → candidate <b>{esc(report["candidate"])}</b>'
        f" · state {esc(report['state'])} · canary {int(report['canary_percent'])}% · {report['total']} verdicts"
        f" · generated {generated}</p>"
        f'<div class="stages" aria-label="stages">{"".join(stages)}</div></header>'
    )


def _decision(report: dict[str, Any]) -> str:
    decision = str(report["decision"])
    reasons = "".join(f"<li>{esc(reason)}</li>" for reason in report["reasons"])
    return (
        f'<section class="decision d-{esc(decision)}" id="decision"><div class="verdict">'
        f"Decision: {esc(decision.upper())}</div><ul>{reasons}</ul></section>"
    )


def _card(key: str, value: str, note: str = "") -> str:
    return f'<div class="card"><div class="k">{key}</div><div class="v">{value}</div><div class="n">{note}</div></div>'


def _cards(report: dict[str, Any]) -> str:
    low, high = report["regression_rate_ci"]
    figures = report.get("gate_figures") or {}
    level = f"{report['confidence']:.0%}"
    ratio = report["cost_usd"].get("ratio")
    return '<div class="cards">' + "".join([
        _card("compared verdicts", f"{report['compared']:,}", f"of {report['total']:,}; {report['stage_samples']:,} "
              "in this stage"),
        _card("regression rate", _pct(report["regression_rate"]), f"{level} interval {_pct(low)} – {_pct(high)} ¹"),
        _card("increase over noise", _pct(figures.get("rate_increase")),
              f"gate's interval {_pct(figures.get('rate_increase_lower'))} – "
              f"{_pct(figures.get('rate_increase_upper'))}, tolerance {_pct(figures.get('max_regression_rate_increase'))} ²"),
        _card("baseline noise rate", _pct(report["baseline_noise_rate"]), "baseline vs its own replay ³"),
        _card("noise verdicts", _pct(report["noise_rate"]), "differences the baseline also shows ⁴"),
        _card("latency p95 ratio",
              "not judged" if report.get("latency_judged") is False
              else f"{report['latency_p95_ratio']:.2f}" if report["latency_p95_ratio"] else "—",
              "replay_mode: batch" if report.get("latency_judged") is False else "candidate / baseline"),
        _card("cost ratio", f"{ratio:.2f}" if ratio else "—", "candidate / baseline"),
    ]) + "</div>"


def _timeline_series(data: dict[str, Any]) -> dict[str, list[float | None]]:
    """Cumulative figures at the end of each time bucket: rates, their intervals and the gate's bound."""
    level, tolerance = data["confidence"], data["tolerance"]
    out: dict[str, list[float | None]] = {k: [] for k in (
        "x", "rate", "rate_low", "rate_high", "noise", "limit", "increase", "increase_low", "increase_high")}
    n = cand = base = both = 0
    for bucket in data["timeline"]:
        n += bucket["n"]
        cand += bucket["candidate"]
        base += bucket["baseline"]
        both += bucket["both"]
        low, high = wilson_interval(cand, n, level)
        bounds = sequential_bounds(PairedCounts.from_totals(n=n, candidate=cand, baseline=base, both=both), level,
                                   max(tolerance, _MIN_MIXING_SCALE))
        out["x"].append(bucket["end"])
        out["rate"].append(cand / n)
        out["rate_low"].append(low)
        out["rate_high"].append(high)
        out["noise"].append(base / n)
        out["limit"].append(base / n + tolerance)
        out["increase"].append(bounds.estimate)
        out["increase_low"].append(max(bounds.lower, -1.0))
        out["increase_high"].append(min(bounds.upper, 1.0))
    return out


def _timeline_section(data: dict[str, Any]) -> str:
    series = _timeline_series(data)
    xs = [x for x in series["x"] if x is not None]
    span = (max(xs) - min(xs)) if xs else 0.0
    time_fmt = svg.time_format(span)
    level = f"{data['confidence']:.0%}"
    tolerance = data["tolerance"]
    rate_chart = svg.Chart(
        title="Regression rate over time", x_label="verdict time (UTC)", y_label="share of compared verdicts",
        bands=[svg.Band(f"{level} Wilson interval", xs, series["rate_low"], series["rate_high"],
                        svg.PALETTE["candidate"])],
        series=[
            svg.Series("baseline noise rate", xs, series["noise"], svg.PALETTE["noise"], width=1.6),
            svg.Series("tolerated: noise + tolerance", xs, series["limit"], svg.PALETTE["limit"], dashed=True,
                       width=1.5),
            svg.Series("candidate regression rate", xs, series["rate"], svg.PALETTE["candidate"], width=2.4),
        ],
        x_format=time_fmt, y_format=svg.percent, y_min=0.0,
    )
    # The first slices hold few verdicts and very wide intervals: scale to the settled part, clip the rest.
    settled = slice(len(xs) // 4, None)
    visible = [v for v in (series["increase_low"][settled] + series["increase_high"][settled]) if v is not None]
    visible += [0.0, tolerance * 1.5]
    increase_chart = svg.Chart(
        title="Increase over baseline noise with the gate's interval", x_label="verdict time (UTC)",
        y_label="candidate − baseline noise",
        bands=[svg.Band(f"{level} anytime-valid interval", xs, series["increase_low"], series["increase_high"],
                        svg.PALETTE["baseline"])],
        series=[svg.Series("estimated increase", xs, series["increase"], svg.PALETTE["baseline"], width=2.4)],
        rules=[svg.Rule(f"tolerance {_pct(tolerance)}", tolerance, svg.PALETTE["limit"]),
               svg.Rule("", 0.0, "#98a0ae", dashed=False)],
        x_format=time_fmt, y_format=svg.percent, y_min=min(visible) - 0.01, y_max=max(visible) + 0.01,
    )
    return (
        '<section id="timeline"><h2>Regression rate over time</h2>'
        '<p class="note">Cumulative over the rollout, at the end of each time slice. The gate rolls back when the '
        "lower end of the blue interval rises above the tolerance line, and promotes only when its upper end is "
        "below it.</p><div>"
        + svg.render(rate_chart)
        + svg.legend([("candidate regression rate", svg.PALETTE["candidate"], "line"),
                      (f"{level} interval ¹", svg.PALETTE["candidate"], "band"),
                      ("baseline noise rate ³", svg.PALETTE["noise"], "line"),
                      ("noise + tolerance", svg.PALETTE["limit"], "dashed")])
        + "<h3>Increase over baseline noise, as the gate sees it</h3>"
        + svg.render(increase_chart)
        + svg.legend([("estimated increase", svg.PALETTE["baseline"], "line"),
                      (f"gate's {level} anytime-valid interval ²", svg.PALETTE["baseline"], "band"),
                      (f"tolerance {_pct(tolerance)}", svg.PALETTE["limit"], "dashed")])
        + "</div></section>"
    )


def _history_section(history: Sequence[dict[str, Any]]) -> str:
    if not history:
        return ('<section id="history"><h2>Stage history</h2><p class="note">No decision recorded yet: the promoter '
                "has not evaluated this rollout.</p></section>")
    rows = []
    for row in history:
        decision = str(row["decision"])
        rows.append(
            f"<tr><td class=\"mono\">{esc(str(row['at'])[:19].replace('T', ' '))}</td><td>{esc(row['actor'])}</td>"
            f"<td>{esc(row['action'])}</td><td class=\"st-{'regression' if decision == 'rollback' else 'pass'}\">"
            f"{esc(decision)}</td><td class=\"num\">{int(row['stage_index']) + 1}</td>"
            f"<td class=\"num\">{int(row['canary_percent'])}%</td>"
            f"<td>{'<br>'.join(esc(r) for r in row['reasons'][:3])}</td></tr>"
        )
    return (
        '<section id="history"><h2>Stage history</h2><table><thead><tr><th>at (UTC)</th><th>actor</th><th>action'
        '</th><th>decision</th><th class="num">stage</th><th class="num">canary</th><th>reasons</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></section>"
    )


def _findings_section(report: dict[str, Any], cells: Sequence[dict[str, Any]], link_base: str) -> str:
    by_code = report["by_code"]
    if not by_code:
        return ('<section id="findings"><h2>Findings by code and route</h2><p class="note">No finding that the '
                "baseline's noise does not explain.</p></section>")
    routes = sorted(report["by_route"])
    route_totals = {r: sum(e["counts"].get(s, 0) for s in ("pass", "regression", "noise"))
                    for r, e in report["by_route"].items()}
    grid = {(c["code"], c["route"]): c["count"] for c in cells}
    top = max(grid.values(), default=1) or 1
    examples = report.get("examples") or {}
    head = "".join(f'<th class="num">{esc(r)}</th>' for r in routes)
    rows = []
    codes = sorted(by_code.items(), key=lambda item: (SEVERITY_ORDER.get(item[1]["severity"], 3),
                                                      -(item[1]["rate"] or 0), item[0]))
    for code, entry in codes:
        severity = str(entry["severity"])
        cols = []
        for route in routes:
            count = grid.get((code, route), 0)
            share = count / route_totals[route] if route_totals.get(route) else None
            alpha = 0.08 + 0.5 * count / top if count else 0
            style = f' style="background:rgba(201,42,42,{alpha:.2f})"' if count else ""
            cols.append(f'<td class="heat"{style}>{count or ""}'
                        + (f' <span class="note">({_pct(share, 0)})</span>' if count else "") + "</td>")
        links = ", ".join(_verdict_link(link_base, rid) for rid in examples.get(code, []))
        rows.append(
            f'<tr><td class="mono">{esc(code)}</td><td><span class="sev sev-{esc(severity)}">{esc(severity)}</span>'
            f'</td><td class="num">{int(entry["count"])}</td><td class="num">{_pct(entry["rate"])}</td>'
            f"{''.join(cols)}<td>{links}</td></tr>"
        )
    return (
        '<section id="findings"><h2>Findings by code and route</h2><p class="note">Verdicts with at least one finding '
        "of the code that the baseline's own noise does not explain; critical codes first, then by rate. Cells "
        "give the count and the share of the route's compared verdicts. Example request ids open the verdict "
        "page.</p><table><thead><tr><th>code</th><th>severity</th><th class=\"num\">verdicts</th>"
        f'<th class="num">rate</th>{head}<th>examples</th></tr></thead><tbody>{"".join(rows)}</tbody></table>'
        "</section>"
    )


def _cdf(histogram: dict[int, int]) -> tuple[list[float], list[float | None]]:
    total = sum(histogram.values())
    xs: list[float] = []
    ys: list[float | None] = []
    seen = 0
    for bucket in sorted(histogram):
        seen += histogram[bucket]
        xs.append(bucket_value(bucket))
        ys.append(seen / total)
    return xs, ys


def _route_costs(figures: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Per route, the rollout's cost per request on each side."""
    return [
        {"route": route, **{side: (entry["cost_usd"][side] / entry["samples"] if entry["samples"] else None)
                            for side in ("baseline", "candidate")}}
        for route, entry in sorted(figures.items())
    ]


def _latency_cost_section(report: dict[str, Any], histograms: dict[str, dict[int, int]],
                          route_rows: Sequence[dict[str, Any]]) -> str:
    series = []
    rules = []
    for side in ("baseline", "candidate"):
        histogram = histograms.get(side) or {}
        if histogram:
            xs, ys = _cdf(histogram)
            series.append(svg.Series(f"{side} latency", xs, ys, svg.PALETTE[side], step=True, width=2.2))
        p95 = report["latency_ms"][side]["p95"]
        if p95:
            rules.append(svg.Rule(f"{side} p95", p95, svg.PALETTE[side], vertical=True))
    chart = svg.Chart(title="Latency distribution per side", x_label="latency (ms, log scale)",
                      y_label="share of calls at most this fast", series=series, rules=rules, x_log=True,
                      x_format=lambda v: f"{v:,.0f}", y_format=svg.percent, y_min=0.0, y_max=1.0)
    compared = report["compared"] or 0
    per_request = {side: (report["cost_usd"][side] / compared if compared else None)
                   for side in ("baseline", "candidate")}
    groups: list[tuple[str, list[tuple[str, float | None, str]]]] = [
        ("all routes", [("baseline", per_request["baseline"], svg.PALETTE["baseline"]),
                        ("candidate", per_request["candidate"], svg.PALETTE["candidate"])])]
    for row in route_rows:
        groups.append((row["route"], [("baseline", row["baseline"], svg.PALETTE["baseline"]),
                                      ("candidate", row["candidate"], svg.PALETTE["candidate"])]))
    cost = svg.bar_chart("Cost per request per side", groups, lambda v: f"${v:.5f}")
    table = "".join(
        f"<tr><td>{side}</td><td class=\"num\">{_ms(report['latency_ms'][side]['p50'])}</td>"
        f"<td class=\"num\">{_ms(report['latency_ms'][side]['p95'])}</td>"
        f"<td class=\"num\">{_usd(per_request[side])}</td><td class=\"num\">{_usd(report['cost_usd'][side], 4)}</td>"
        "</tr>"
        for side in ("baseline", "candidate")
    )
    return (
        '<section id="latency"><h2>Latency and cost per side</h2>'
        + svg.render(chart)
        + svg.legend([("baseline", svg.PALETTE["baseline"], "line"), ("candidate", svg.PALETTE["candidate"], "line"),
                      ("p95 of each side", "#98a0ae", "dashed")])
        + "<h3>Cost per request</h3>" + cost
        + '<table><thead><tr><th>side</th><th class="num">p50</th><th class="num">p95</th>'
          '<th class="num">cost / request</th><th class="num">cost in all</th></tr></thead>'
        + f"<tbody>{table}</tbody></table>"
        + '<p class="note">Over compared verdicts. Cumulative distribution: the further left a line, the faster '
          "that side.</p></section>"
    )


def routes_table_html(rows: Sequence[dict[str, Any]]) -> str:
    """The route × model table as HTML (the report's section and the API's `GET /v1/routes` page)."""
    body = []
    for row in rows:
        low, high = row["regression_rate_ci"]
        judgement = str(row["judgement"])
        cls = {"not worse": "j-notworse", "worse": "j-worse", "undecided": "j-undecided"}.get(judgement, "j-baseline")
        acceptable = _pct(row["acceptability"]) if row.get("acceptability") is not None else "—"
        body.append(
            f'<tr class="{"best" if row["recommended"] else ""}"><td class="nowrap">{esc(row["route"])}</td>'
            f'<td class="mono nowrap">{esc(row["model"])}</td><td>{esc(row["rollout"]) if row["role"] == "candidate" else "baseline"}'
            f'</td><td class="num">{int(row["verdicts"]):,}</td>'
            f'<td class="num">{_pct(row["regression_rate"])} <span class="note">[{_pct(low)}, {_pct(high)}]</span></td>'
            f'<td class="{cls}">{esc(judgement)}</td><td class="num">{acceptable}</td>'
            f'<td class="num">{_ms(row["latency_ms"]["p50"])}</td><td class="num">{_ms(row["latency_ms"]["p95"])}</td>'
            f'<td class="num">{_usd(row["cost_per_request_usd"])}</td>'
            f'<td class="mark nowrap">{"★ cheapest" if row["recommended"] else ""}</td></tr>'
        )
    return (
        '<table><thead><tr><th>route</th><th>model</th><th>rollout</th><th class="num">verdicts</th>'
        '<th class="num">regression rate</th><th>vs baseline</th><th class="num">acceptable</th>'
        '<th class="num">p50</th><th class="num">p95</th><th class="num">cost / request</th><th></th></tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>"
    )


def _routes_section(rows: Sequence[dict[str, Any]]) -> str:
    if not rows:
        return ""
    return (
        '<section id="routes"><h2>Which model for which route</h2><p class="note">Every rollout that replays these '
        "routes against the same baseline. A baseline row's regression rate is how often it regresses against its "
        "own second replay. A candidate is <i>not worse</i> when the gate's anytime-valid bound over that route's "
        "verdicts keeps its increase within the rollout's tolerance; <i>undecided</i> needs more verdicts. ★ marks "
        "the cheapest model not worse than the baseline.</p>" + routes_table_html(rows) + "</section>"
    )


def _noise_section(paths: Sequence[dict[str, Any]], report: dict[str, Any]) -> str:
    """The learned noise rates per route (paths and codes) when kept; otherwise the noise findings per path."""
    learned = report.get("noisiest") or {}
    rows = []
    for route, entry in learned.items():
        for item in [*entry.get("paths", []), *entry.get("codes", [])]:
            key = item.get("path") or item.get("code") or ""
            rows.append(
                f"<tr><td>{esc(route)}</td><td class=\"mono\">{esc(key)}</td>"
                f"<td class=\"num\">{_pct(item['rate'])}</td>"
                f"<td class=\"num\">{int(item['differed']):,} / {int(item['samples']):,}</td>"
                f"<td>{'treated as noise' if item.get('noise') else ''}</td></tr>"
            )
    if rows:
        return (
            '<section id="noise"><h2>The noisiest paths</h2><p class="note">How often the baseline, replayed twice, '
            "disagrees with itself at each path or finding code, per route, over the recent window. A path above the "
            "route's threshold is treated as noise: a candidate differing there is not held against it.</p>"
            '<table><thead><tr><th>route</th><th>path or code</th><th class="num">rate</th>'
            '<th class="num">differed / checked</th><th></th></tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table></section>"
        )
    if not paths:
        return ""
    compared = report["compared"] or 0
    fallback = "".join(
        f"<tr><td>{esc(p['route'])}</td><td class=\"mono\">{esc(p['code'])}</td>"
        f"<td class=\"mono\">{esc(p['path'] or '(whole answer)')}</td><td class=\"num\">{int(p['count'])}</td>"
        f"<td class=\"num\">{_pct(p['count'] / compared if compared else None)}</td></tr>"
        for p in paths
    )
    return (
        '<section id="noise"><h2>The noisiest paths</h2><p class="note">Differences the baseline also shows against '
        "its own second replay, so they are not held against the candidate: candidates for a route's "
        "<code>ignore_paths</code> when they are expected to vary.</p><table><thead><tr><th>route</th><th>code</th>"
        f'<th>path</th><th class="num">verdicts</th><th class="num">share</th></tr></thead><tbody>{fallback}</tbody>'
        "</table></section>"
    )


def _footnotes(report: dict[str, Any]) -> str:
    level = f"{report['confidence']:.0%}"
    return (
        '<footer class="foot"><p>¹ The regression rate\'s interval is the '
        f"{level} Wilson interval of the candidate's share of regressions over the compared verdicts: where the "
        "rate itself lies.</p>"
        f"<p>² The gate's interval is a {level} anytime-valid interval for how much more often the candidate "
        "regresses than the baseline disagrees with itself. It stays valid however often it is looked at, which is "
        "why it is wider than ¹.</p>"
        "<p>³ The baseline noise rate is the share of compared requests where the baseline, replayed twice, "
        "regressed against itself: the noise the gate subtracts.</p>"
        "<p>⁴ Noise verdicts are requests whose every difference the baseline also showed against itself; they "
        "are counted as noise, not as regressions.</p>"
        "<p>Generated by shadowd. This page is self-contained: it loads nothing and runs no script.</p></footer>"
    )
