"""The pages of the HTTP API (SPEC §11): the rollout report, the verdict page and the routing table."""

from __future__ import annotations

from aiohttp import web
from pydantic import Field

from shadowd.http.errors import configured_error, error_response
from shadowd.http.params import configured_names
from shadowd.http.registry import DATABASE_DOWN, UNAUTHORIZED, Operation, error, html
from shadowd.http.rollouts import RolloutPath
from shadowd.http.state import api_state
from shadowd.pages.base import CSP, page
from shadowd.pages.report_page import render_report_page, report_page_data, routes_table_html
from shadowd.pages.verdict_page import render_verdict_page
from shadowd.routing import build_routes_table

_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class VerdictPagePath(RolloutPath):
    request_id: str = Field(min_length=1, max_length=256)


def _html(body: str) -> web.Response:
    return web.Response(text=body, content_type="text/html", charset="utf-8", headers=_HEADERS)


async def report_html(request: web.Request) -> web.Response:
    state = api_state(request)
    name = request.match_info["name"]
    spec = state.config.rollout(name)
    if spec is None:
        return error_response(404, "unknown rollout", configured_error(configured_names(state), name))
    data = await report_page_data(state.store, spec, state.config)
    return _html(render_report_page(data, link_base="verdicts/"))


async def verdict_html(request: web.Request) -> web.Response:
    state = api_state(request)
    name, request_id = request.match_info["name"], request.match_info["request_id"]
    row = await state.store.get_verdict(name, request_id)
    if row is None:
        return error_response(404, "verdict not found", f"no verdict for request {request_id!r} in rollout {name!r}")
    return _html(render_verdict_page(row.verdict, report_link="../report.html"))


async def routes_html(request: web.Request) -> web.Response:
    state = api_state(request)
    table = await build_routes_table(state.store, state.config)
    body = (
        "<h1>Which model for which route</h1><p class=\"note\">Per route and model, over every configured rollout. "
        "A baseline row's regression rate is how often it regresses against its own second replay; a candidate "
        "is <i>not worse</i> when the gate's anytime-valid bound over that route's verdicts keeps its increase "
        "within the rollout's tolerance. ★ marks the cheapest model not worse than the baseline.</p>"
        + routes_table_html(table["items"])
    )
    return _html(page("shadowd routes", body))




def operations() -> list[Operation]:
    """Registered before `/v1/rollouts/{name}/verdicts/{request_id}` so that `.html` reaches the page."""
    return [
        Operation("GET", "/v1/rollouts/{name}/report.html", report_html, "getReportPage", "pages",
                  "The rollout's report as one self-contained HTML page (`shadowd report --html`).", "read",
                  {200: html("The report: decision, charts, findings, stage history, routing table."),
                   404: error("Unknown rollout."), 401: UNAUTHORIZED, 503: DATABASE_DOWN},
                  path_params=RolloutPath),
        Operation("GET", r"/v1/rollouts/{name}/verdicts/{request_id:.+}.html", verdict_html, "getVerdictPage",
                  "pages", "One verdict as a self-contained HTML page (`shadowd show --html`).", "read",
                  {200: html("The request, both answers side by side, the findings, the adaptations."),
                   404: error("No verdict for that request in that rollout."), 401: UNAUTHORIZED,
                   503: DATABASE_DOWN},
                  path_params=VerdictPagePath),
        Operation("GET", "/v1/routes.html", routes_html, "getRoutesPage", "pages",
                  "The route × model table as an HTML page.", "read",
                  {200: html("The routing table."), 401: UNAUTHORIZED, 503: DATABASE_DOWN}),
    ]
