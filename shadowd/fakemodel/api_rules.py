"""API rules: the request checks the real Messages API makes, with its error shapes."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft202012Validator, SchemaError

from shadowd.fakemodel.behaviours import ModelRules
from shadowd.fakemodel.digest import canonical_json

SAMPLING_PARAMS = ("temperature", "top_p", "top_k")
_MIN_THINKING_BUDGET = 1024


@dataclass(frozen=True, slots=True)
class ApiError:
    """An error answer: HTTP status, error type and message, as the real API sends them."""

    status: int
    type: str
    message: str
    retry_after_s: float | None = None

    def body(self) -> dict[str, Any]:
        return {"type": "error", "error": {"type": self.type, "message": self.message}}

    def headers(self) -> dict[str, str]:
        if self.retry_after_s is None:
            return {}
        return {"retry-after": f"{self.retry_after_s:g}"}


def invalid(message: str) -> ApiError:
    return ApiError(400, "invalid_request_error", message)


def check_headers(headers: Mapping[str, str]) -> ApiError | None:
    """Reject requests without an API version or credentials, as the real API does."""
    if not headers.get("anthropic-version"):
        return invalid("anthropic-version: header is required")
    if not headers.get("x-api-key") and not headers.get("authorization"):
        return ApiError(401, "authentication_error", "x-api-key header is required")
    return None


def check_request(body: Any, rules_for: Callable[[str], ModelRules | None]) -> ApiError | None:
    """The first rule a request body breaks, or None when the model would accept it."""
    if not isinstance(body, dict):
        return invalid("The request body must be a JSON object")
    for name in ("model", "max_tokens", "messages"):
        if name not in body:
            return invalid(f"{name}: Field required")
    model = body["model"]
    if not isinstance(model, str) or not model:
        return invalid("model: Input should be a valid string")
    max_tokens = body["max_tokens"]
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int):
        return invalid("max_tokens: Input should be a valid integer")
    if max_tokens < 1:
        return invalid("max_tokens: Input should be greater than or equal to 1")
    message_error = _check_messages(body["messages"])
    if message_error is not None:
        return message_error

    rules = rules_for(model)
    if rules is None:
        return ApiError(404, "not_found_error", f"model: {model}")
    if max_tokens > rules.max_output:
        return invalid(
            f"max_tokens: {max_tokens} > {rules.max_output}, which is the maximum allowed number "
            f"of output tokens for {model}"
        )
    if rules.reject_sampling_params:
        for name in SAMPLING_PARAMS:
            if body.get(name) is not None:
                return invalid(f"{name}: is not supported with {model}")
    thinking_error = _check_thinking(body.get("thinking"), max_tokens, rules, model)
    if thinking_error is not None:
        return thinking_error
    return _check_tools(body)


def _check_messages(messages: Any) -> ApiError | None:
    if not isinstance(messages, list) or not messages:
        return invalid("messages: Input should be a non-empty list")
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            return invalid(f"messages.{index}: Input should be an object")
        if message.get("role") not in ("user", "assistant"):
            return invalid(f"messages.{index}.role: Input should be 'user' or 'assistant'")
        if not isinstance(message.get("content"), (str, list)):
            return invalid(f"messages.{index}.content: Input should be a string or a list of blocks")
    return None


def _check_thinking(thinking: Any, max_tokens: int, rules: ModelRules, model: str) -> ApiError | None:
    if thinking is None:
        return None
    if not isinstance(thinking, dict) or thinking.get("type") not in ("enabled", "adaptive", "disabled"):
        return invalid("thinking.type: Input should be 'enabled', 'adaptive' or 'disabled'")
    if thinking["type"] != "enabled":
        return None
    if rules.reject_thinking_enabled:
        return invalid(
            f'thinking.type: "enabled" is not supported for {model}; use "adaptive" thinking instead'
        )
    budget = thinking.get("budget_tokens")
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < _MIN_THINKING_BUDGET:
        return invalid(f"thinking.budget_tokens: Input should be an integer >= {_MIN_THINKING_BUDGET}")
    if budget >= max_tokens:
        return invalid("max_tokens must be greater than thinking.budget_tokens")
    return None


def _check_tools(body: dict[str, Any]) -> ApiError | None:
    tools = body.get("tools")
    if tools is not None and not isinstance(tools, list):
        return invalid("tools: Input should be a list")
    names = set()
    for index, tool in enumerate(tools or ()):
        if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
            return invalid(f"tools.{index}.name: Field required")
        names.add(tool["name"])
        if tool.get("type", "custom") == "custom" and "input_schema" in tool:
            schema_error = _input_schema_error(tool["input_schema"])
            if schema_error is not None:
                return invalid(f"tools.{index}.custom.input_schema: {schema_error}")
    choice = body.get("tool_choice")
    if choice is None:
        return None
    if not isinstance(choice, dict) or choice.get("type") not in ("auto", "any", "tool", "none"):
        return invalid("tool_choice.type: Input should be 'auto', 'any', 'tool' or 'none'")
    if not names and choice["type"] != "none":
        return invalid("tool_choice may only be specified while providing tools.")
    if choice["type"] == "tool" and choice.get("name") not in names:
        return invalid(f"tool_choice.name: no tool named {choice.get('name')!r} in tools")
    return None


def _input_schema_error(schema: Any) -> str | None:
    """Why a custom tool's input_schema is refused (not an object, or not a valid JSON Schema), or None."""
    if not isinstance(schema, dict):
        return "Input should be a valid dictionary"
    return _schema_text_error(canonical_json(schema))  # each distinct schema is checked once


@functools.lru_cache(maxsize=1024)
def _schema_text_error(text: str) -> str | None:
    try:
        Draft202012Validator.check_schema(json.loads(text))
    except (SchemaError, RecursionError):
        return "JSON schema is invalid"
    return None
