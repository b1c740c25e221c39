"""The HTTP API, one module per resource (see docs/HTTP.md): `app` builds the aiohttp application from
the routes each module declares, and the OpenAPI document from the same declarations."""

from shadowd.http.app import create_app, create_starting_app, openapi_document, runner_options, start_http
from shadowd.http.state import OPEN_READS_KEY, STATE_KEY, ApiState, NotReady

__all__ = [
    "OPEN_READS_KEY",
    "STATE_KEY",
    "ApiState",
    "NotReady",
    "create_app",
    "create_starting_app",
    "openapi_document",
    "runner_options",
    "start_http",
]
