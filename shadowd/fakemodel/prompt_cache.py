"""Prompt caching as the Messages API reports it: cache writes, cache reads, the rest as input.

A request marks cache breakpoints with `cache_control` on a block of `tools`, `system` or a
message's content (or at the top level, which marks the last block of the prompt). The prefix up
to a breakpoint, in the API's order tools → system → messages, is cached per model once it is at
least `MIN_CACHEABLE_TOKENS` long. A later request whose prefix matches reads it
(`cache_read_input_tokens`); the part between the longest cached prefix and the last breakpoint
is written (`cache_creation_input_tokens`); `input_tokens` is what follows the last breakpoint. An
entry can be read only once the response that wrote it has been produced (two requests sent at
the same moment both write), and lives `TTL_S` seconds after its last use.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from shadowd.fakemodel.digest import canonical_json, strip_cache_control

MIN_CACHEABLE_TOKENS = 1024
TTL_S = 300.0
MAX_ENTRIES = 100_000
MAX_BREAKPOINTS = 4


@dataclass(frozen=True, slots=True)
class Breakpoint:
    """A cacheable prefix: its hash (with the model) and its length in tokens."""

    key: bytes
    tokens: int


def _blocks(body: dict[str, Any]) -> Iterator[tuple[Any, bool]]:
    """Every block of the prompt in cache order, with whether a breakpoint follows it."""
    tools = body.get("tools")
    for tool in tools if isinstance(tools, list) else ():
        yield tool, isinstance(tool, dict) and "cache_control" in tool
    system = body.get("system")
    if isinstance(system, list):
        for block in system:
            yield block, isinstance(block, dict) and "cache_control" in block
    elif system is not None:
        yield system, False
    messages = body.get("messages")
    for message in messages if isinstance(messages, list) else ():
        content = message.get("content") if isinstance(message, dict) else None
        role = message.get("role") if isinstance(message, dict) else None
        if isinstance(content, list):
            for block in content:
                yield [role, block], isinstance(block, dict) and "cache_control" in block
        else:
            yield [role, content], False


def breakpoints(model: str, body: dict[str, Any]) -> list[Breakpoint]:
    """The request's cacheable prefixes, shortest first (at most four, like the API)."""
    automatic = "cache_control" in body
    digest = hashlib.sha256(model.encode())
    chars = 0
    found: list[Breakpoint] = []
    blocks = list(_blocks(body))
    for index, (block, marked) in enumerate(blocks):
        text = canonical_json(strip_cache_control(block))
        digest.update(text.encode("utf-8", "surrogatepass"))
        chars += len(text) + 1
        if marked or (automatic and index == len(blocks) - 1):
            found.append(Breakpoint(digest.copy().digest(), math.ceil(chars / 4)))
    return found[-MAX_BREAKPOINTS:]


class PromptCache:
    """One fake model server's prompt cache, shared by every model it serves (keys carry the model)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, min_tokens: int = MIN_CACHEABLE_TOKENS) -> None:
        self._entries: OrderedDict[bytes, float] = OrderedDict()  # key -> expiry
        self._clock = clock
        self.min_tokens = min_tokens

    def plan(self, model: str, body: dict[str, Any], total_input: int) -> tuple[dict[str, int], list[bytes]]:
        """The usage split of a request's `total_input` tokens, and the prefixes to store once answered."""
        points = [p for p in breakpoints(model, body) if p.tokens >= self.min_tokens]
        if not points:
            return {"input_tokens": total_input, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}, []
        now = self._clock()
        read = 0
        for point in points:
            expiry = self._entries.get(point.key)
            if expiry is not None and expiry > now:
                read = point.tokens
        last = min(points[-1].tokens, total_input)
        read = min(read, last)
        usage = {
            "input_tokens": max(total_input - last, 0),
            "cache_creation_input_tokens": last - read,
            "cache_read_input_tokens": read,
        }
        return usage, [p.key for p in points]

    def store(self, keys: list[bytes]) -> None:
        """Make the prefixes readable (written, or read and so refreshed) for the next TTL_S seconds."""
        expiry = self._clock() + TTL_S
        for key in keys:
            self._entries[key] = expiry
            self._entries.move_to_end(key)
        while len(self._entries) > MAX_ENTRIES:
            self._entries.popitem(last=False)
