"""Charts as hand-built inline SVG: no plotting library, no script, nothing fetched, crisp when printed."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from shadowd.pages.escape import esc

WIDTH, HEIGHT = 1000, 250
LEFT, RIGHT, TOP, BOTTOM = 62, 18, 16, 52
_ids = itertools.count(1)  # clip-path ids unique within a page
PALETTE = {"baseline": "#4c6ef5", "candidate": "#e8590c", "noise": "#868e96", "limit": "#c92a2a", "ok": "#2b8a3e"}


@dataclass
class Series:
    label: str
    xs: Sequence[float]
    ys: Sequence[float | None]
    colour: str
    dashed: bool = False
    step: bool = False
    width: float = 2.0


@dataclass
class Band:
    label: str
    xs: Sequence[float]
    lows: Sequence[float | None]
    highs: Sequence[float | None]
    colour: str
    opacity: float = 0.18


@dataclass
class Rule:
    """A horizontal (or with `vertical`, vertical) reference line with a label."""

    label: str
    at: float
    colour: str
    vertical: bool = False
    dashed: bool = True


@dataclass
class Chart:
    title: str
    x_label: str
    y_label: str
    series: list[Series] = field(default_factory=list)
    bands: list[Band] = field(default_factory=list)
    rules: list[Rule] = field(default_factory=list)
    x_format: Callable[[float], str] = lambda v: f"{v:g}"
    y_format: Callable[[float], str] = lambda v: f"{v:g}"
    x_log: bool = False
    y_min: float | None = None
    y_max: float | None = None


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values spanning [low, high]."""
    if not math.isfinite(low) or not math.isfinite(high):
        return [0.0]
    if high <= low:
        high = low + (abs(low) or 1.0)
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.floor(low / step) * step
    ticks = []
    value = first
    while value <= high + step * 1e-9:
        if value >= low - step * 1e-9:
            ticks.append(round(value, 12))
        value += step
    return ticks


def _log_ticks(low: float, high: float) -> list[float]:
    ticks = []
    exponent = math.floor(math.log10(max(low, 1e-9)))
    while 10**exponent <= high * 1.0001:
        for mantissa in (1, 2, 5):
            value = mantissa * 10**exponent
            if low <= value <= high:
                ticks.append(float(value))
        exponent += 1
    return ticks or [low, high]


def _finite(values: Sequence[float | None]) -> list[float]:
    return [v for v in values if v is not None and math.isfinite(v)]


def render(chart: Chart) -> str:
    """The chart as an <svg> element sized by its viewBox (it scales to the page's width)."""
    xs = [x for s in chart.series for x in s.xs] + [x for b in chart.bands for x in b.xs]
    xs += [r.at for r in chart.rules if r.vertical]
    ys = [y for s in chart.series for y in _finite(s.ys)] + [y for b in chart.bands for y in _finite(b.lows)]
    ys += [y for b in chart.bands for y in _finite(b.highs)] + [r.at for r in chart.rules if not r.vertical]
    title = f'<title>{esc(chart.title)}</title>'
    if not xs or not ys:
        return (f'<svg class="chart" viewBox="0 0 {WIDTH} 80" role="img" xmlns="http://www.w3.org/2000/svg">{title}'
                f'<text x="{WIDTH / 2}" y="44" text-anchor="middle" class="empty">no data yet</text></svg>')
    x_low, x_high = min(xs), max(xs)
    if chart.x_log:
        x_low, x_high = max(x_low, 1e-3), max(x_high, x_low * 1.5)
    elif x_high == x_low:
        x_low, x_high = x_low - 1, x_high + 1
    y_low = chart.y_min if chart.y_min is not None else min(ys)
    y_high = chart.y_max if chart.y_max is not None else max(ys)
    y_ticks = nice_ticks(y_low, y_high)
    y_low, y_high = min(y_ticks[0], y_low), max(y_ticks[-1], y_high)
    if y_high == y_low:
        y_high = y_low + 1
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def px(x: float) -> float:
        if chart.x_log:
            x = max(x, x_low)
            return LEFT + plot_w * (math.log(x) - math.log(x_low)) / (math.log(x_high) - math.log(x_low))
        return LEFT + plot_w * (x - x_low) / (x_high - x_low)

    def py(y: float) -> float:
        return TOP + plot_h * (1 - (y - y_low) / (y_high - y_low))

    clip = f"clip{next(_ids)}"
    parts = [f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" xmlns="http://www.w3.org/2000/svg">',
             title, f'<defs><clipPath id="{clip}"><rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}"/>'
             f'</clipPath></defs>', f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" class="plot"/>']
    for tick in y_ticks:
        y = py(tick)
        parts.append(f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        parts.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">'
                     f'{esc(chart.y_format(tick))}</text>')
    x_ticks = _log_ticks(x_low, x_high) if chart.x_log else nice_ticks(x_low, x_high, 6)
    for tick in x_ticks:
        x = px(tick)
        if LEFT - 0.5 <= x <= LEFT + plot_w + 0.5:
            parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{TOP + plot_h}" y2="{TOP + plot_h + 4}" class="axis"/>')
            parts.append(f'<text x="{x:.1f}" y="{TOP + plot_h + 17}" text-anchor="middle" class="tick">'
                         f'{esc(chart.x_format(tick))}</text>')
    parts.append(f'<text x="{LEFT + plot_w / 2}" y="{HEIGHT - 8}" text-anchor="middle" class="label">'
                 f'{esc(chart.x_label)}</text>')
    parts.append(f'<text transform="translate(14 {TOP + plot_h / 2}) rotate(-90)" text-anchor="middle" '
                 f'class="label">{esc(chart.y_label)}</text>')
    parts.append(f'<g clip-path="url(#{clip})">')
    for band in chart.bands:
        points = [(x, lo, hi) for x, lo, hi in zip(band.xs, band.lows, band.highs, strict=True)
                  if lo is not None and hi is not None]
        if len(points) >= 2:
            upper = " ".join(f"{px(x):.1f},{py(hi):.1f}" for x, _, hi in points)
            lower = " ".join(f"{px(x):.1f},{py(lo):.1f}" for x, lo, _ in reversed(points))
            parts.append(f'<polygon points="{upper} {lower}" fill="{band.colour}" fill-opacity="{band.opacity}" '
                         f'stroke="none"><title>{esc(band.label)}</title></polygon>')
        elif len(points) == 1:
            x, lo, hi = points[0]
            parts.append(f'<line x1="{px(x):.1f}" x2="{px(x):.1f}" y1="{py(lo):.1f}" y2="{py(hi):.1f}" '
                         f'stroke="{band.colour}" stroke-opacity="0.5" stroke-width="8"/>')
    for rule in chart.rules:
        dash = ' stroke-dasharray="6 4"' if rule.dashed else ""
        if rule.vertical:
            x = px(rule.at)
            parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{TOP}" y2="{TOP + plot_h}" stroke="{rule.colour}" '
                         f'stroke-width="1.2"{dash}/>')
        else:
            y = py(rule.at)
            parts.append(f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="{rule.colour}" '
                         f'stroke-width="1.5"{dash}/>')
            parts.append(f'<text x="{LEFT + plot_w - 4}" y="{y - 5:.1f}" text-anchor="end" class="rule" '
                         f'fill="{rule.colour}">{esc(rule.label)}</text>')
    for series in chart.series:
        line = [(x, y) for x, y in zip(series.xs, series.ys, strict=True) if y is not None and math.isfinite(y)]
        if not line:
            continue
        if series.step:
            coords: list[str] = []
            for i, (x, y) in enumerate(line):
                if i:
                    coords.append(f"{px(x):.1f},{py(line[i - 1][1]):.1f}")
                coords.append(f"{px(x):.1f},{py(y):.1f}")
        else:
            coords = [f"{px(x):.1f},{py(y):.1f}" for x, y in line]
        dash = ' stroke-dasharray="5 4"' if series.dashed else ""
        parts.append(f'<polyline points="{" ".join(coords)}" fill="none" stroke="{series.colour}" '
                     f'stroke-width="{series.width}"{dash} stroke-linejoin="round"><title>{esc(series.label)}'
                     f'</title></polyline>')
        if len(line) == 1:
            x, y = line[0]
            parts.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="4" fill="{series.colour}"/>')
    parts.append("</g></svg>")
    return "".join(parts)


def legend(entries: Sequence[tuple[str, str, str]]) -> str:
    """A legend under a chart: (label, colour, kind) with kind line, dashed or band."""
    items = []
    for label, colour, kind in entries:
        if kind == "band":
            swatch = f'<span class="swatch band" style="background:{colour}"></span>'
        else:
            style = "dashed" if kind == "dashed" else "solid"
            swatch = f'<span class="swatch line" style="border-top:2px {style} {colour}"></span>'
        items.append(f"<li>{swatch}{esc(label)}</li>")
    return f'<ul class="legend">{"".join(items)}</ul>'


def bar_chart(title: str, groups: Sequence[tuple[str, Sequence[tuple[str, float | None, str]]]],
              value_format: Callable[[float], str]) -> str:
    """Horizontal grouped bars: groups of (label, [(series label, value, colour)])."""
    rows = sum(max(len(bars), 1) for _, bars in groups)
    row_h, gap, label_w = 22, 10, 220
    height = TOP + rows * row_h + gap * len(groups) + 12
    values = [v for _, bars in groups for _, v, _ in bars if v is not None and math.isfinite(v)]
    top = max(values, default=0.0) or 1.0
    plot_w = WIDTH - label_w - 200
    parts = [f'<svg class="chart" viewBox="0 0 {WIDTH} {height}" role="img" xmlns="http://www.w3.org/2000/svg">'
             f'<title>{esc(title)}</title>']
    y = TOP
    for group, bars in groups:
        parts.append(f'<text x="{label_w - 8}" y="{y + row_h * len(bars) / 2 + 4:.1f}" text-anchor="end" '
                     f'class="tick">{esc(group)}</text>')
        for series_label, value, colour in bars:
            width = 0.0 if value is None else plot_w * max(value, 0.0) / top
            parts.append(f'<rect x="{label_w}" y="{y + 2}" width="{width:.1f}" height="{row_h - 5}" fill="{colour}">'
                         f'<title>{esc(series_label)}: {esc(value_format(value) if value is not None else "—")}'
                         f'</title></rect>')
            shown = "—" if value is None else value_format(value)
            parts.append(f'<text x="{label_w + width + 6:.1f}" y="{y + row_h - 6}" class="tick">'
                         f'{esc(series_label)} {esc(shown)}</text>')
            y += row_h
        y += gap
    parts.append("</svg>")
    return "".join(parts)


def time_format(span_s: float) -> Callable[[float], str]:
    """Tick labels for epoch seconds: clock time within a day, date and time beyond."""
    pattern = "%H:%M:%S" if span_s < 600 else ("%H:%M" if span_s < 86_400 else "%m-%d %H:%M")

    def fmt(value: float) -> str:
        try:
            return datetime.fromtimestamp(value, UTC).strftime(pattern)
        except (OverflowError, OSError, ValueError):
            return ""

    return fmt


def percent(value: float) -> str:
    return f"{value * 100:.0f}%" if abs(value) >= 0.1 or value == 0 else f"{value * 100:.1f}%"
