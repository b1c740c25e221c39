"""Prompt caching: whether a request carries cache breakpoints, and what caching saved (SPEC §7)."""

from __future__ import annotations

from typing import Any


def has_cache_breakpoint(request: dict[str, Any]) -> bool:
    """True when the request marks a prompt-cache breakpoint (`cache_control`) at the top level or on
    a block of `tools`, `system` or a message's content: a second identical call can then read the
    cache the first one wrote."""
    if "cache_control" in request:
        return True
    tools = request.get("tools")
    if isinstance(tools, list) and any(isinstance(t, dict) and "cache_control" in t for t in tools):
        return True
    system = request.get("system")
    if isinstance(system, list) and any(isinstance(b, dict) and "cache_control" in b for b in system):
        return True
    messages = request.get("messages")
    for message in messages if isinstance(messages, list) else ():
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list) and any(isinstance(b, dict) and "cache_control" in b for b in content):
            return True
    return False
