"""The parts of a Messages API request that decide what the fake model answers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from shadowd.fakemodel.digest import digest_request, unit
from shadowd.fakemodel.schema_instance import CompiledSchema, schema_in_text, system_text

# What a clean model answers with; faults are chosen among those applicable to the kind.
OutputKind = Literal["tool_call", "tool_text", "json", "text"]

TOOL_CALL_RATE = 0.7


@dataclass(frozen=True, slots=True)
class RequestView:
    """A request body digested once: its hash, tools, forced tool and output schema."""

    body: dict[str, Any]
    digest: bytes
    tools: tuple[dict[str, Any], ...]
    forced_tool: str | None  # the tool named by tool_choice {"type": "tool"}
    output_schema: CompiledSchema | None
    kind: OutputKind
    input_chars: int  # length of the canonical JSON of system, messages and tools
    cache_control: bool  # a cache breakpoint anywhere in the request

    @property
    def max_tokens(self) -> int:
        value = self.body.get("max_tokens")
        return value if isinstance(value, int) and not isinstance(value, bool) else 4096

    @property
    def tool_names(self) -> tuple[str, ...]:
        return tuple(str(tool["name"]) for tool in self.tools)


def view_request(body: dict[str, Any]) -> RequestView:
    """Digest a request body; pure, so the same body always gives the same view."""
    digest, canonical, marked = digest_request(body)
    tools = tuple(
        tool
        for tool in (body.get("tools") or ())
        if isinstance(tool, dict) and isinstance(tool.get("name"), str)
    )
    tool_choice = body.get("tool_choice")
    choice_type = tool_choice.get("type") if isinstance(tool_choice, dict) else None
    forced_tool = None
    if choice_type == "tool" and isinstance(tool_choice, dict):
        name = tool_choice.get("name")
        forced_tool = name if isinstance(name, str) and any(t["name"] == name for t in tools) else None
    output_schema = schema_in_text(system_text(body.get("system")))

    kind: OutputKind
    if tools and choice_type != "none":
        forced = choice_type in ("any", "tool")
        kind = "tool_call" if forced or unit(digest, "tool_call") < TOOL_CALL_RATE else "tool_text"
    elif output_schema is not None:
        kind = "json"
    else:
        kind = "text"
    cache_control = "cache_control" in body or marked
    return RequestView(body, digest, tools, forced_tool, output_schema, kind, len(canonical), cache_control)
