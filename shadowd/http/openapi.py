"""The OpenAPI 3.1 document of the HTTP API, written from the route declarations and their pydantic
models (`shadowd.http.registry`), served at `GET /openapi.json`. Nothing in it is written by hand but
the texts the routes carry."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from shadowd import __version__
from shadowd.http.registry import JSON, Operation, Reply, absent_not_null

REF = "#/components/schemas/{model}"
_SECURITY: dict[str, list[dict[str, list[str]]]] = {
    "open": [{}],
    "controller": [{"bearerAuth": []}, {}],  # the read token when one is configured, otherwise open
    "read": [{"bearerAuth": []}, {}],
    "admin": [{"bearerAuth": []}],
}
TAGS = ("rollouts", "verdicts", "dead letters", "pages", "canary controllers", "operations")


def build_document(operations: list[Operation]) -> dict[str, Any]:
    """The whole document: one path item per route path, one operation per declared method."""
    models: list[type[BaseModel]] = []
    for op in operations:
        if op.body is not None and op.body_media == JSON:
            models.append(op.body)
        models.extend(r.model for r in op.responses.values() if r.model is not None)
    unique = list(dict.fromkeys(models))
    _keys, defs = models_json_schema([(m, "validation") for m in unique], ref_template=REF)
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        paths.setdefault(op.doc_path, {})[op.method.lower()] = _operation(op)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "shadowd",
            "version": __version__,
            "description": "Shadow-tests a candidate Claude model on mirrored production traffic, stores one "
            "verdict per request and gates the canary. Read endpoints need the read token when one is "
            "configured; manual actions need the admin token.",
        },
        "tags": [{"name": n} for n in TAGS],
        "security": _SECURITY["read"],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "SHADOWD_READ_TOKEN (reads, when set) or SHADOWD_ADMIN_TOKEN (reads and "
                    "manual actions).",
                }
            },
            "schemas": _clean(defs.get("$defs", {}), in_mapping=True),
        },
    }


def _operation(op: Operation) -> dict[str, Any]:
    item: dict[str, Any] = {
        "operationId": op.operation_id,
        "tags": [op.tag],
        "summary": op.summary,
        "security": _SECURITY[op.access],
    }
    if op.description:
        item["description"] = op.description
    parameters = _parameters(op.path_params, "path") + _parameters(op.query, "query")
    if parameters:
        item["parameters"] = parameters
    if op.body is not None:
        if op.body_media == JSON:
            schema: dict[str, Any] = {"$ref": REF.format(model=op.body.__name__)}
        else:  # a form: its fields inline
            schema = _clean(op.body.model_json_schema(ref_template=REF))
        item["requestBody"] = {"required": op.body_required, "content": {op.body_media: {"schema": schema}}}
    item["responses"] = {str(status): _reply(reply) for status, reply in sorted(op.responses.items())}
    item.update(op.extra)
    return item


def _reply(reply: Reply) -> dict[str, Any]:
    if reply.model is not None:
        schema: dict[str, Any] = {"$ref": REF.format(model=reply.model.__name__)}
    else:
        schema = dict(reply.schema or {})
    answer: dict[str, Any] = {"description": reply.description, "content": {reply.media: {"schema": schema}}}
    if reply.headers:
        answer["headers"] = dict(reply.headers)
    return answer


def _parameters(model: type[BaseModel] | None, where: str) -> list[dict[str, Any]]:
    """One parameter per field. A parameter is absent, never null: `str | None = None` is a `string`."""
    if model is None:
        return []
    schema = model.model_json_schema(ref_template=REF)
    required = set(schema.get("required", ()))
    out = []
    for name, prop in schema.get("properties", {}).items():
        prop = _clean(dict(prop))
        description = prop.pop("description", None)
        if "anyOf" in prop and {"type": "null"} in prop["anyOf"]:
            default = prop.get("default")
            absent_not_null(prop)
            if default is not None:
                prop["default"] = default
        parameter: dict[str, Any] = {"name": name, "in": where, "required": where == "path" or name in required}
        if description:
            parameter["description"] = description
        parameter["schema"] = prop
        out.append(parameter)
    return out


def _clean(node: Any, in_mapping: bool = False) -> Any:
    """pydantic's schema without its generated `title`s (a property named `title` stays)."""
    if isinstance(node, dict):
        return {
            key: _clean(value, in_mapping=key in ("properties", "$defs") and not in_mapping)
            for key, value in node.items()
            if in_mapping or not (key == "title" and isinstance(value, str))
        }
    if isinstance(node, list):
        return [_clean(v) for v in node]
    return node
