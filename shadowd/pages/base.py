"""The page shell shared by the report and the verdict page: one file, inline CSS, no script, no fetches."""

from __future__ import annotations

from shadowd import __version__
from shadowd.pages.escape import esc

# default-src 'none': even a bug that let markup through could not load or run anything.
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"

CSS = """
:root { --ink:#1d2433; --muted:#5c6577; --line:#d9dee7; --soft:#f4f6fa; --red:#c92a2a; --amber:#b35c00;
  --green:#2b8a3e; --blue:#4c6ef5; --orange:#e8590c; }
* { box-sizing: border-box; }
body { margin:0; font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;
  color:var(--ink); background:#fff; }
main { max-width:1120px; margin:0 auto; padding:24px 28px 48px; }
h1 { font-size:24px; margin:0 0 4px; } h2 { font-size:18px; margin:34px 0 10px; padding-bottom:4px;
  border-bottom:1px solid var(--line); } h3 { font-size:15px; margin:18px 0 6px; }
.sub { color:var(--muted); margin:0 0 14px; }
code, pre, .mono { font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,"Liberation Mono",monospace; font-size:13px; }
.decision { border-radius:10px; padding:16px 20px; margin:16px 0 10px; border:1px solid; }
.decision .verdict { font-size:22px; font-weight:700; letter-spacing:.02em; }
.decision ul { margin:8px 0 0; padding-left:20px; }
.d-rollback { background:#fff0f0; border-color:#f1a9a9; } .d-rollback .verdict { color:var(--red); }
.d-hold { background:#fff8e6; border-color:#f0cf85; } .d-hold .verdict { color:var(--amber); }
.d-promote, .d-complete { background:#ebfbee; border-color:#9bd3a7; }
.d-promote .verdict, .d-complete .verdict { color:var(--green); }
.stages { display:flex; gap:6px; flex-wrap:wrap; margin:8px 0; }
.stage { padding:2px 10px; border-radius:12px; background:var(--soft); color:var(--muted); font-size:13px; }
.stage.done { background:#dbe4ff; color:#2c3e8f; } .stage.now { background:var(--ink); color:#fff; font-weight:600; }
.cards { display:grid; grid-template-columns:repeat(auto-fill,minmax(190px,1fr)); gap:10px; margin:14px 0; }
.card { background:var(--soft); border-radius:8px; padding:10px 12px; }
.card .k { color:var(--muted); font-size:12px; text-transform:uppercase; letter-spacing:.04em; }
.card .v { font-size:20px; font-weight:650; } .card .n { color:var(--muted); font-size:12px; }
table { border-collapse:collapse; width:100%; margin:6px 0 4px; font-size:14px; }
th, td { text-align:left; padding:5px 8px; border-bottom:1px solid var(--line); vertical-align:top; }
th { background:var(--soft); font-weight:600; font-size:13px; }
td.num, th.num { text-align:right; font-variant-numeric:tabular-nums; white-space:nowrap; }
.sev { display:inline-block; padding:0 7px; border-radius:9px; font-size:12px; font-weight:600; }
.sev-critical { background:#ffe3e3; color:var(--red); } .sev-major { background:#fff3bf; color:#8a5a00; }
.sev-minor { background:#e9ecef; color:#495057; }
.st-pass { color:var(--green); } .st-regression { color:var(--red); font-weight:600; } .st-noise { color:#8a5a00; }
.st-error { color:#862e9c; } .st-skipped { color:var(--muted); }
.heat { text-align:right; font-variant-numeric:tabular-nums; }
.nowrap { white-space:nowrap; } .best { background:#ebfbee; } .mark { color:var(--green); font-weight:700; }
.j-worse { color:var(--red); font-weight:600; } .j-notworse { color:var(--green); font-weight:600; }
.j-undecided { color:var(--amber); } .j-baseline { color:var(--muted); }
svg.chart { width:100%; height:auto; display:block; margin:4px 0; }
svg .plot { fill:#fbfcfe; stroke:var(--line); } svg .grid { stroke:#e9ecf2; } svg .axis { stroke:#98a0ae; }
svg .tick { font-size:11px; fill:#5c6577; } svg .label { font-size:12px; fill:#5c6577; }
svg .rule { font-size:11px; font-weight:600; } svg .empty { font-size:13px; fill:#98a0ae; }
.legend { list-style:none; display:flex; flex-wrap:wrap; gap:16px; padding:0; margin:0 0 8px; font-size:13px;
  color:var(--muted); }
.swatch { display:inline-block; width:22px; margin-right:6px; vertical-align:middle; }
.swatch.band { height:10px; opacity:.3; border-radius:2px; }
.grid2 { display:grid; grid-template-columns:1fr 1fr; gap:18px; }
.note { color:var(--muted); font-size:13px; }
.foot { color:var(--muted); font-size:12px; margin-top:36px; border-top:1px solid var(--line); padding-top:10px; }
a { color:#364fc7; }
.side { border:1px solid var(--line); border-radius:8px; overflow:hidden; min-width:0; }
.side h3 { margin:0; padding:8px 12px; background:var(--soft); font-size:14px; }
.side .meta { padding:6px 12px; color:var(--muted); font-size:12px; border-bottom:1px solid var(--line); }
pre.body { margin:0; padding:10px 12px; white-space:pre-wrap; word-break:break-word; background:#fff; }
pre.body .diff-b { background:#ffe3e3; } pre.body .diff-c { background:#d3f9d8; }
pre.body span.diff-b, pre.body span.diff-c, pre.body span.at-finding { display:inline-block; width:100%; }
h1.mono { font-size:21px; word-break:break-all; }
pre.body .at-finding { outline:2px solid var(--red); outline-offset:-1px; }
pre.req { background:var(--soft); padding:10px 12px; border-radius:6px; white-space:pre-wrap;
  word-break:break-word; max-height:420px; overflow:auto; margin:4px 0; }
.cut { color:var(--amber); font-size:12px; padding:4px 12px; }
.tool { padding:6px 12px 10px; border-top:1px solid var(--line); } .tool h4 { margin:4px 0; font-size:13px; }
table.kv td { font-size:12.5px; padding:3px 6px; } tr.changed td { background:#fff3bf; }
tr.at-finding td:first-child { box-shadow:inset 3px 0 0 var(--red); }
details summary { cursor:pointer; color:#364fc7; font-size:13px; }
.tags span { display:inline-block; background:var(--soft); border-radius:9px; padding:0 8px; margin:0 4px 4px 0;
  font-size:13px; }
@media (max-width:820px) { .grid2 { grid-template-columns:1fr; } main { padding:16px; } }
@media print {
  main { max-width:none; padding:0; } body { font-size:12px; }
  h2 { break-after:avoid; } section, table, svg.chart, .side { break-inside:avoid; }
  a { color:inherit; text-decoration:none; } pre.req { max-height:none; overflow:visible; }
  .grid2 { grid-template-columns:1fr 1fr; }
}
"""


def page(title: str, body: str) -> str:
    """A complete HTML document; `title` is escaped here, `body` must already be escaped HTML."""
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta name="generator" content="shadowd {esc(__version__)}">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head>"
        f"<body><main>{body}</main></body></html>\n"
    )
