"""A streamed Messages answer put back together from its events, as the SDK's stream helper would.

The result is the dict `MessageStream.get_final_message().to_dict()` gives for the same events
(tests/unit/test_message_stream.py holds the two equal through the real SDK), built from the events'
JSON without a typed model per event. Text, thinking and tool-input deltas are joined once at the end
rather than appended delta by delta, and a tool's input is parsed once, as the SDK's last delta leaves
it: partially, where the answer stopped inside it.
"""

from __future__ import annotations

from typing import Any

from jiter import from_json

# Blocks whose `input_json_delta`s build their `input` (the SDK's TRACKS_TOOL_INPUT).
_TOOL_INPUT_BLOCKS = frozenset({"tool_use", "server_tool_use"})
# Usage counts a message_delta carries as totals; input and cache counts only when it has them.
_LATER_USAGE = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens", "server_tool_use",
                "output_tokens_details")


class StreamedMessage:
    """Feed it each event's JSON in order (`add`), then take the message (`result`)."""

    __slots__ = ("_joined", "_message", "_parts")

    def __init__(self) -> None:
        self._message: dict[str, Any] | None = None
        # Per content index: the field being joined ("text", "thinking" or the tool's JSON) and its parts.
        self._parts: dict[int, tuple[str, list[str]]] = {}
        self._joined = False

    def add(self, event: Any) -> bool:
        """One event; True when it is a content delta (the first one marks the time to first token).
        Events before `message_start` are passed over, as the SDK's helper passes them over. Raises
        ValueError for an event that cannot be applied."""
        if not isinstance(event, dict):
            raise ValueError(f"a stream event that is not a JSON object: {type(event).__name__}")
        kind = event.get("type")
        message = self._message
        if message is None:
            if kind != "message_start":
                return kind == "content_block_delta"
            start = event.get("message")
            if not isinstance(start, dict):
                raise ValueError("a message_start event without a message")
            message = self._message = dict(start)
            content = message.get("content")
            message["content"] = [dict(block) for block in content] if isinstance(content, list) else []
            if isinstance(message.get("usage"), dict):
                message["usage"] = dict(message["usage"])
            return False
        if kind == "content_block_delta":
            self._delta(message["content"], event)
            return True
        if kind == "content_block_start":
            block = event.get("content_block")
            if not isinstance(block, dict):
                raise ValueError("a content_block_start event without a content block")
            message["content"].append(dict(block))
        elif kind == "message_delta":
            self._message_delta(message, event)
        return False

    def _delta(self, content: list[dict[str, Any]], event: dict[str, Any]) -> None:
        index, delta = event.get("index"), event.get("delta")
        if not isinstance(index, int) or not 0 <= index < len(content) or not isinstance(delta, dict):
            raise ValueError(f"a content_block_delta for no content block (index {index!r})")
        block = content[index]
        block_type, delta_type = block.get("type"), delta.get("type")
        if delta_type == "text_delta" and block_type == "text":
            self._part(index, "text", delta.get("text"))
        elif delta_type == "input_json_delta" and block_type in _TOOL_INPUT_BLOCKS:
            self._part(index, "input", delta.get("partial_json"))
        elif delta_type == "thinking_delta" and block_type == "thinking":
            self._part(index, "thinking", delta.get("thinking"))
        elif delta_type == "signature_delta" and block_type == "thinking":
            block["signature"] = delta.get("signature")
        elif delta_type == "citations_delta" and block_type == "text":
            block["citations"] = [*(block.get("citations") or ()), delta.get("citation")]

    def _part(self, index: int, field: str, text: Any) -> None:
        if not isinstance(text, str):
            raise ValueError(f"a content delta without its text (block {index}, {field})")
        entry = self._parts.get(index)
        if entry is None:
            self._parts[index] = (field, [text])
        else:
            entry[1].append(text)

    @staticmethod
    def _message_delta(message: dict[str, Any], event: dict[str, Any]) -> None:
        found = event.get("delta")
        delta: dict[str, Any] = found if isinstance(found, dict) else {}
        message["stop_reason"] = delta.get("stop_reason")
        message["stop_sequence"] = delta.get("stop_sequence")
        message["stop_details"] = delta.get("stop_details")
        if delta.get("container") is not None:
            message["container"] = delta["container"]
        usage = event.get("usage")
        if isinstance(usage, dict):
            totals = message.get("usage")
            if not isinstance(totals, dict):
                totals = message["usage"] = {}
            totals["output_tokens"] = usage.get("output_tokens")
            for name in _LATER_USAGE:
                if usage.get(name) is not None:
                    totals[name] = usage[name]

    def result(self) -> dict[str, Any]:
        """The message so far, its deltas joined. Raises ValueError when nothing started a message or a
        tool's input is not (the start of) JSON."""
        message = self._message
        if message is None:
            raise ValueError("the stream ended before 'message_start'")
        if not self._joined:
            self._joined = True
            content = message["content"]
            for index, (field, parts) in self._parts.items():
                block = content[index]
                if field == "input":
                    joined = "".join(parts).encode()
                    if joined:
                        try:
                            block["input"] = from_json(joined, partial_mode=True)
                        except ValueError as exc:
                            raise ValueError(f"tool input in block {index} is not JSON: {exc}") from exc
                else:
                    start = block.get(field)
                    block[field] = (start if isinstance(start, str) else "") + "".join(parts)
        return message
