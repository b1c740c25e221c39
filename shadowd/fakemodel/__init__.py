"""`shadowd fake-model`: a Messages-API-compatible test server with scripted behaviours."""

from shadowd.fakemodel.behaviours import (
    BUILTIN_RULES,
    FAULT_NAMES,
    BehaviourError,
    Behaviours,
    FaultPlan,
    ModelBehaviour,
    ModelRules,
    load_behaviours,
    parse_behaviours,
)
from shadowd.fakemodel.generate import estimate_tokens, generate_reply
from shadowd.fakemodel.request_view import view_request
from shadowd.fakemodel.server import FakeModelServer, ServerStats, serve_forever, start_fake_model

__all__ = [
    "BUILTIN_RULES",
    "FAULT_NAMES",
    "BehaviourError",
    "Behaviours",
    "FakeModelServer",
    "FaultPlan",
    "ModelBehaviour",
    "ModelRules",
    "ServerStats",
    "estimate_tokens",
    "generate_reply",
    "load_behaviours",
    "parse_behaviours",
    "serve_forever",
    "start_fake_model",
    "view_request",
]
