"""The verdict page (SPEC §11): one request, both answers side by side, the differences marked where found."""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterator, Sequence
from typing import Any

from shadowd.core.shape import escape_token
from shadowd.pages.base import page
from shadowd.pages.escape import esc

# A side's answer beyond this many characters is cut on the page, and the cut is said.
ANSWER_LIMIT = 100_000


def _json_of(text: str) -> Any | None:
    """The JSON in a text answer (bare, or one fenced block), or None."""
    stripped = text.strip()
    fenced = re.fullmatch(r"```(?:json)?\s*\n(.*)\n```", stripped, re.DOTALL)
    body = fenced.group(1) if fenced else stripped
    if body[:1] not in ("{", "["):
        return None
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return None


def json_lines(value: Any, pointer: str = "", indent: int = 0, key: str | None = None,
               last: bool = True) -> Iterator[tuple[str, str]]:
    """Pretty-printed JSON as (line, JSON pointer of the value the line belongs to)."""
    pad = "  " * indent
    label = f"{json.dumps(key, ensure_ascii=False)}: " if key is not None else ""
    comma = "" if last else ","
    if isinstance(value, dict) and value:
        yield f"{pad}{label}{{", pointer
        items = list(value.items())
        for i, (k, v) in enumerate(items):
            yield from json_lines(v, f"{pointer}/{escape_token(str(k))}", indent + 1, str(k), i == len(items) - 1)
        yield f"{pad}}}{comma}", pointer
    elif isinstance(value, list) and value:
        yield f"{pad}{label}[", pointer
        for i, v in enumerate(value):
            yield from json_lines(v, f"{pointer}/{i}", indent + 1, None, i == len(value) - 1)
        yield f"{pad}]{comma}", pointer
    else:
        yield f"{pad}{label}{json.dumps(value, ensure_ascii=False, default=str)}{comma}", pointer


def _at(pointer: str, paths: Sequence[str]) -> bool:
    return any(path and (pointer == path or pointer.startswith(path + "/")) for path in paths)


def _side_lines(side: Any) -> tuple[list[tuple[str, str]], int]:
    """A side's text answer as (line, pointer) pairs, JSON pretty-printed; and how many characters were cut."""
    if side is None:
        return [], 0
    text = side.text
    cut = max(len(text) - ANSWER_LIMIT, 0)
    parsed = _json_of(text) if not cut else None
    if parsed is not None:
        return list(json_lines(parsed)), 0
    return [(line, "") for line in text[:ANSWER_LIMIT].splitlines()], cut


def _changed(mine: list[str], theirs: list[str], tags: tuple[str, ...]) -> set[int]:
    matcher = difflib.SequenceMatcher(a=mine, b=theirs, autojunk=False)
    changed: set[int] = set()
    for tag, i1, i2, _, _ in matcher.get_opcodes():
        if tag in tags:
            changed.update(range(i1, i2))
    return changed


def _pre(lines: list[tuple[str, str]], changed: set[int], diff_class: str, paths: Sequence[str]) -> str:
    out = []
    for i, (line, pointer) in enumerate(lines):
        classes = []
        if i in changed:
            classes.append(diff_class)
        if pointer and _at(pointer, paths):
            classes.append("at-finding")
        attr = f' class="{" ".join(classes)}"' if classes else ""
        title = f' title="{esc(pointer)}"' if pointer and classes else ""
        out.append(f"<span{attr}{title}>{esc(line) or ' '}</span>" if classes else esc(line))
    return "\n".join(out)


def _flatten(value: Any, pointer: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict) and value:
        for k, v in value.items():
            yield from _flatten(v, f"{pointer}/{escape_token(str(k))}")
    elif isinstance(value, list) and value and all(isinstance(v, dict | list) for v in value):
        for i, v in enumerate(value):
            yield from _flatten(v, f"{pointer}/{i}")
    else:
        yield pointer or "/", value


def _tool_tables(side: Any, other: Any, paths: Sequence[str]) -> str:
    if side is None:
        return ""
    theirs = {call.get("name"): call.get("input") for call in (other.tool_calls if other is not None else [])}
    out = []
    for index, block in enumerate(side.content):
        if block.get("type") != "tool_use":
            continue
        name = str(block.get("name", ""))
        base = f"/content/{index}/input"
        other_input = dict(_flatten(theirs.get(name))) if name in theirs else {}
        rows = []
        mine = dict(_flatten(block.get("input")))
        absent = object()
        for pointer in [*mine, *(p for p in other_input if p not in mine)]:
            value = mine.get(pointer, absent)
            full = base + ("" if pointer == "/" else pointer)
            marks = []
            if _at(full, paths) or base in paths:
                marks.append("at-finding")
            if name not in theirs or other_input.get(pointer, absent) != value:
                marks.append("changed")
            cls = f' class="{" ".join(marks)}"' if marks else ""
            shown = ('<span class="note">(absent)</span>' if value is absent
                     else esc(json.dumps(value, ensure_ascii=False, default=str)))
            rows.append(f'<tr{cls}><td class="mono">{esc(pointer)}</td><td class="mono">{shown}</td></tr>')
        unmatched = "" if name in theirs else ' <span class="sev sev-major">not called by the other side</span>'
        out.append(
            f'<div class="tool"><h4>tool call <code>{esc(name)}</code>{unmatched}</h4><table class="kv"><thead><tr>'
            f'<th>input path</th><th>value</th></tr></thead><tbody>{"".join(rows)}</tbody></table></div>'
        )
    return "".join(out)


def _meta(side: Any) -> str:
    if side is None:
        return "no call"
    cost = "—" if side.cost_usd is None else f"${side.cost_usd:.5f}"
    latency = "—" if side.latency_ms is None else f"{side.latency_ms:,.0f} ms"
    parts = [f"stop {esc(side.stop_reason or '—')}", latency, f"in {side.usage.input_tokens:,} / out "
             f"{side.usage.output_tokens:,} tokens", cost, f"{side.attempts} attempt{'s' if side.attempts != 1 else ''}",
             esc(side.source)]
    return " · ".join(parts)


def _answers(v: Any, paths_by_side: dict[str, list[str]]) -> str:
    b_lines, b_cut = _side_lines(v.baseline)
    c_lines, c_cut = _side_lines(v.candidate)
    b_text, c_text = [line for line, _ in b_lines], [line for line, _ in c_lines]
    b_changed = _changed(b_text, c_text, ("replace", "delete"))
    c_changed = _changed(c_text, b_text, ("replace", "delete"))
    columns = []
    for title, side, other, lines, changed, cls, cut in (
        ("baseline", v.baseline, v.candidate, b_lines, b_changed, "diff-b", b_cut),
        ("candidate", v.candidate, v.baseline, c_lines, c_changed, "diff-c", c_cut),
    ):
        paths = paths_by_side[title]
        if side is None:
            body = '<pre class="body">—</pre>'
        elif not side.ok:
            body = f'<pre class="body"><span class="diff-{title[0]}">call failed: {esc(side.error)}</span></pre>'
        else:
            text = _pre(lines, changed, cls, paths) if lines else '<span class="note">(no text)</span>'
            body = f'<pre class="body">{text}</pre>'
            if cut:
                body += f'<div class="cut">… {cut:,} more characters not shown (the JSON API returns them all)</div>'
            body += _tool_tables(side, other, paths)
        model = esc(side.model) if side is not None else ""
        columns.append(f'<div class="side"><h3>{title} · <span class="mono">{model}</span></h3>'
                       f'<div class="meta">{_meta(side)}</div>{body}</div>')
    return (
        '<section id="answers"><h2>The answers</h2><p class="note">JSON pretty-printed. Lines that differ from the '
        "other side are shaded (red on the baseline, green on the candidate); lines at a finding's path are "
        f'outlined.</p><div class="grid2">{"".join(columns)}</div></section>'
    )


def _request(v: Any) -> str:
    request = v.request
    if not request:
        return ('<section id="request"><h2>The request</h2><p class="note">Not stored with this verdict (verdicts '
                "made before shadowd kept the request).</p></section>")
    parts = [
        '<section id="request"><h2>The request</h2>',
        f'<p class="sub">model <span class="mono">{esc(request.get("model"))}</span> · max_tokens '
        f'{esc(request.get("max_tokens"))} · {esc(request.get("messages"))} message(s)</p>',
    ]
    if request.get("system"):
        parts.append(f'<h3>System</h3><pre class="req">{esc(request["system"])}</pre>')
        if request.get("system_cut"):
            parts.append(f'<div class="cut">… {int(request["system_cut"]):,} more characters not kept</div>')
    parts.append(f'<h3>Last user turn</h3><pre class="req">{esc(request.get("last_user") or "—")}</pre>')
    if request.get("last_user_cut"):
        parts.append(f'<div class="cut">… {int(request["last_user_cut"]):,} more characters not kept</div>')
    tools = request.get("tools") or []
    if tools:
        rows = []
        for tool in tools:
            schema = tool.get("input_schema")
            shown = (f'<details><summary>input_schema</summary><pre class="req">'
                     f'{esc(json.dumps(schema, indent=2, ensure_ascii=False, default=str))}</pre></details>'
                     if schema is not None else '<span class="note">(schema not kept)</span>')
            rows.append(f'<tr><td class="mono">{esc(tool.get("name"))}</td><td>{esc(tool.get("description"))}</td>'
                        f"<td>{shown}</td></tr>")
        more = int(request.get("tools_total") or 0) - len(tools)
        parts.append(
            f'<h3>Tools ({int(request.get("tools_total") or len(tools))})</h3><table><thead><tr><th>name</th>'
            f'<th>description</th><th>schema</th></tr></thead><tbody>{"".join(rows)}</tbody></table>'
            + (f'<div class="cut">… {more} more tools not kept</div>' if more > 0 else "")
        )
    parts.append("</section>")
    return "".join(parts)


def _findings(v: Any) -> str:
    if not v.findings:
        return '<section id="findings"><h2>Findings</h2><p class="note">None.</p></section>'
    order = {"critical": 0, "major": 1, "minor": 2}
    rows = []
    for f in sorted(v.findings, key=lambda f: (order.get(f.severity.value, 3), f.code)):
        rows.append(
            f'<tr><td class="mono">{esc(f.code)}</td><td><span class="sev sev-{esc(f.severity.value)}">'
            f'{esc(f.severity.value)}</span></td><td class="mono">{esc(f.path or "")}</td><td>{esc(f.detail)}</td>'
            f'<td>{"noise: the baseline shows it too" if f.noise else ""}</td></tr>'
        )
    return (
        '<section id="findings"><h2>Findings</h2><table><thead><tr><th>code</th><th>severity</th><th>path</th>'
        f'<th>detail</th><th></th></tr></thead><tbody>{"".join(rows)}</tbody></table></section>'
    )


def _grades(v: Any) -> str:
    """The judge's grade of each answer (SPEC §8), when the route has a judge."""
    grading = getattr(v, "grading", None)
    if grading is None:
        return ""
    rows = []
    for side in ("baseline", "candidate"):
        grade = getattr(grading, side, None)
        if grade is None:
            rows.append(f"<tr><td>{side}</td><td colspan=\"3\" class=\"note\">not graded</td></tr>")
            continue
        verdict = ("acceptable" if grade.acceptable else "unacceptable") if grade.acceptable is not None else "—"
        cls = "st-pass" if grade.acceptable else ("st-regression" if grade.acceptable is False else "")
        detail = esc(grade.reason or "") if not grade.error else f"error: {esc(grade.error)}"
        rows.append(f'<tr><td>{side}</td><td class="{cls}">{verdict}</td>'
                    f'<td class="num">{esc(grade.score) if grade.score is not None else "—"}</td><td>{detail}</td></tr>')
    return (
        f'<section id="grades"><h2>Grades</h2><p class="sub">judge <span class="mono">{esc(grading.judge_model)}'
        f"</span> · {esc(grading.status)}</p><table><thead><tr><th>answer</th><th>grade</th>"
        f'<th class="num">score</th><th>reason</th></tr></thead><tbody>{"".join(rows)}</tbody></table></section>'
    )


def render_verdict_page(v: Any, report_link: str | None = "../report.html") -> str:
    """The page of one stored verdict (a shadowd.records.VerdictRecord)."""
    status = v.status.value
    tags = "".join(f"<span>{esc(k)}={esc(val)}</span>" for k, val in sorted(v.attributes.items()))
    adaptations = ", ".join(esc(a) for a in v.adaptations) or "none"
    # Findings about tool calls point into the candidate's content blocks; those about JSON text, into the JSON
    # of both answers.
    paths = [f.path for f in v.findings if f.path]
    text_paths = [path for path in paths if not path.startswith("/content/")]
    header = (
        f'<header><h1 class="mono">{esc(v.request_id)}</h1><p class="sub">rollout <b>{esc(v.rollout)}</b> · route '
        f'<b>{esc(v.route)}</b> · status <b class="st-{esc(status)}">{esc(status)}</b> · comparator '
        f'{esc(v.comparator_version)} · verdict {esc(v.created_at.isoformat()[:19].replace("T", " "))} UTC'
        + (f' · captured {esc(v.captured_at.isoformat()[:19].replace("T", " "))} UTC' if v.captured_at else "")
        + (f' · <a href="{esc(report_link)}">rollout report</a>' if report_link else "")
        + "</p>"
        + (f'<p class="tags">{tags}</p>' if tags else "")
        + (f"<p><b>reason:</b> {esc(v.reason)}</p>" if v.reason else "")
        + f"<p><b>adaptations:</b> {adaptations}</p></header>"
    )
    body = header + _findings(v) + _answers(v, {"baseline": text_paths, "candidate": paths}) + _request(v) + _grades(v)
    if v.baseline_repeat is not None:
        repeat_lines, _ = _side_lines(v.baseline_repeat)
        body += (
            '<section id="repeat"><h2>The baseline\'s second replay</h2><details><summary>What the noise check '
            f'compared against (<span class="mono">{esc(v.baseline_repeat.model)}</span>)</summary>'
            f'<pre class="req">{esc(chr(10).join(line for line, _ in repeat_lines))}</pre></details></section>'
        )
    body += '<footer class="foot"><p>Generated by shadowd. This page is self-contained: it loads nothing and runs no ' \
            "script.</p></footer>"
    return page(f"shadowd verdict · {v.request_id}", body)
