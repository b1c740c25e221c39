"""The pages of the HTTP API (SPEC §11): the rollout report, the verdict page, and the routing table."""

from __future__ import annotations

from aiohttp import web

from shadowd.api import STATE_KEY
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


def add_page_routes(router: web.UrlDispatcher) -> None:
    """Registered before `/v1/rollouts/{name}/verdicts/{request_id}` so that `.html` reaches the page."""
    router.add_get("/v1/rollouts/{name}/report.html", report_html)
    router.add_get(r"/v1/rollouts/{name}/verdicts/{request_id:.+}.html", verdict_html)
    router.add_get("/v1/routes", routes_json)
    router.add_get("/v1/routes.html", routes_html)


def _html(body: str) -> web.Response:
    return web.Response(text=body, content_type="text/html", charset="utf-8", headers=_HEADERS)


def _not_found(error: str, reason: str) -> web.Response:
    return web.json_response({"error": error, "reason": reason}, status=404)


async def report_html(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    name = request.match_info["name"]
    spec = state.config.rollout(name)
    if spec is None:
        known = ", ".join(r.name for r in state.config.rollouts) or "none"
        return _not_found("unknown rollout", f"no rollout named {name!r} in the config (known: {known})")
    data = await report_page_data(state.store, spec, state.config)
    return _html(render_report_page(data, link_base="verdicts/"))


async def verdict_html(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    name, request_id = request.match_info["name"], request.match_info["request_id"]
    row = await state.store.get_verdict(name, request_id)
    if row is None:
        return _not_found("verdict not found", f"no verdict for request {request_id!r} in rollout {name!r}")
    return _html(render_verdict_page(row.verdict, report_link="../report.html"))


async def routes_json(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    return web.json_response(await build_routes_table(state.store, state.config))


async def routes_html(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    table = await build_routes_table(state.store, state.config)
    body = (
        "<h1>Which model for which route</h1><p class=\"note\">Per route and model, over every configured rollout. "
        "A baseline row's regression rate is how often it regresses against its own second replay; a candidate "
        "is <i>not worse</i> when the gate's anytime-valid bound over that route's verdicts keeps its increase "
        "within the rollout's tolerance. ★ marks the cheapest model not worse than the baseline.</p>"
        + routes_table_html(table["items"])
    )
    return _html(page("shadowd routes", body))
