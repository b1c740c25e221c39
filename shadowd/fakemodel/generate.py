"""Replies: the deterministic content a fake model answers a request with, faults applied."""
# Over 400 lines: every fault the fake model can inject is one small generator; they share the request view
# and vocabulary.

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from random import Random
from typing import Any

from shadowd.fakemodel.digest import seed, unit
from shadowd.fakemodel.request_view import RequestView
from shadowd.fakemodel.schema_instance import CompiledSchema, compiled_tool_schema
from shadowd.fakemodel.words import VOCABULARY, prompt_words

REFUSAL_TEXT = "I can't help with that request."
# The `wrong_answer` fault: fluent, well formed, and wrong. The fake judge finds this invented setting
# in the answer under grading (the only place it can legitimately learn that the answer is wrong).
WRONG_ANSWER_MARKER = "auto_resolve_all"
WRONG_ANSWER_SENTENCES = (
    f"Set `{WRONG_ANSWER_MARKER}: true` in the account settings and the problem resolves itself.",
    f"The quickest fix is the hidden `{WRONG_ANSWER_MARKER}` switch, which skips every check safely.",
    f"Support can always enable `{WRONG_ANSWER_MARKER}` for you, so no further steps are needed.",
)
GRADE_TOOL_NAME = "shadowd_grade"
_MIN_TEXT_TOKENS = 60
_TEXT_TOKEN_SPAN = 340
_MARKDOWN_DRIFTS = ("numbered", "no_heading", "table", "extra_heading")
# A salted (nondeterministic) call mostly keeps the structure, sometimes not, like a real model.
_SALTED_STYLES = ("plain", "plain", "numbered", "no_heading")
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def estimate_tokens(text: str) -> int:
    """The fake tokenizer: four characters per token, rounded up."""
    return -(-len(text) // 4)


@dataclass(frozen=True, slots=True)
class Reply:
    """A generated answer: content blocks, stop reason and usage, ready to send or stream."""

    content: list[dict[str, Any]]
    stop_reason: str
    usage: dict[str, int]
    stop_details: dict[str, Any] | None = None

    def message(self, message_id: str, model: str) -> dict[str, Any]:
        """The non-streaming Messages API response body."""
        body: dict[str, Any] = {
            "id": message_id,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": self.content,
            "stop_reason": self.stop_reason,
            "stop_sequence": None,
            "usage": self.usage,
        }
        if self.stop_details is not None:
            body["stop_details"] = self.stop_details
        return body


def generate_reply(
    view: RequestView,
    fault: str | None = None,
    salt: int = 0,
    noisy_fields: frozenset[str] = frozenset(),
    noisy_salt: int = 0,
) -> Reply:
    """Answer a request; the same view, fault and salts always give the same reply.

    The model id is not an input, so two clean models answer identically; a nonzero salt
    varies free text freely and JSON / tool values only. With `noisy_fields`, the salt varies
    free text alone and `noisy_salt` varies the values of those object keys alone.
    """
    noise = _Noise(salt, noisy_fields, noisy_salt)
    stop_details = None
    if fault == "refusal":
        blocks: list[dict[str, Any]] = [_text_block(REFUSAL_TEXT)]
        stop_reason = "refusal"
        stop_details = {"type": "refusal", "category": None, "explanation": None}
    elif view.kind == "json":
        blocks, stop_reason = [_text_block(_json_answer(view, fault, noise))], "end_turn"
    elif (view.kind == "tool_call" and fault != "tool_call_missing") or fault == "tool_call_unexpected":
        blocks, stop_reason = _tool_call(view, fault, noise), "tool_use"
    else:
        blocks, stop_reason = [_text_block(_free_text(view, fault, salt))], "end_turn"

    if fault == "nul_char":
        blocks = _with_nul(blocks)
    if fault == "truncate":
        blocks, stop_reason = _truncated(blocks, unit(view.digest, "truncate_at")), "max_tokens"
    output_tokens = _output_tokens(blocks)
    if output_tokens > view.max_tokens:
        blocks = _cut_to_tokens(blocks, view.max_tokens)
        stop_reason, output_tokens = "max_tokens", _output_tokens(blocks)
    return Reply(blocks, stop_reason, _usage(view, output_tokens), stop_details)


def _text_block(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def _with_nul(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The first text block with U+0000 after its first word (inside a JSON answer: a raw NUL, invalid)."""
    out = list(blocks)
    for index, block in enumerate(out):
        if block["type"] == "text":
            text = block["text"]
            cut = text.find(" ") + 1 if " " in text else len(text)
            out[index] = _text_block(text[:cut] + "\x00" + text[cut:])
            break
    return out


def _output_tokens(blocks: list[dict[str, Any]]) -> int:
    total = 0
    for block in blocks:
        if block["type"] == "text":
            total += estimate_tokens(block["text"])
        else:
            total += estimate_tokens(json.dumps(block["input"]))
    return total


def _truncated(blocks: list[dict[str, Any]], fraction: float) -> list[dict[str, Any]]:
    text = "".join(block["text"] for block in blocks if block["type"] == "text")
    keep = max(1, int(len(text) * (0.3 + 0.4 * fraction)))
    return [_text_block(text[:keep])]


def _cut_to_tokens(blocks: list[dict[str, Any]], max_tokens: int) -> list[dict[str, Any]]:
    text = "".join(block["text"] for block in blocks if block["type"] == "text")
    return [_text_block(text[: max(1, max_tokens * 4)])]


def _usage(view: RequestView, output_tokens: int) -> dict[str, int]:
    """All input uncached; the server's prompt cache (prompt_cache.py) splits it when the request
    carries cache breakpoints."""
    return {
        "input_tokens": max(1, math.ceil(view.input_chars / 4)),
        "output_tokens": output_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    }


# --- free text ---------------------------------------------------------------------------


class _Writer:
    """Draws words from the vocabulary and the prompt, sized to character budgets."""

    def __init__(self, rng: Random, borrowed: tuple[str, ...]) -> None:
        self.rng = rng
        self.borrowed = borrowed

    def word(self) -> str:
        # One draw per word, split into "borrow from the prompt?" and "which word": this is
        # the hot loop of a load test.
        draw = self.rng.random()
        if self.borrowed:
            if draw < 0.25:
                return self.borrowed[int(draw * 4 * len(self.borrowed))]
            draw = (draw - 0.25) / 0.75
        return VOCABULARY[int(draw * len(VOCABULARY))]

    def phrase(self, chars: float, min_words: int = 2) -> str:
        words = [self.word() for _ in range(min_words)]
        length = sum(map(len, words)) + len(words) - 1
        while length < chars:
            words.append(self.word())
            length += len(words[-1]) + 1
        return " ".join(words).capitalize()

    def paragraph(self, chars: float) -> str:
        sentences = [self.phrase(self.rng.randint(30, 90), 3) + "."]
        length = len(sentences[0])
        while length < chars:
            sentences.append(self.phrase(min(self.rng.randint(30, 90), chars - length), 3) + ".")
            length += len(sentences[-1]) + 1
        return " ".join(sentences)


def _free_text(view: RequestView, fault: str | None, salt: int) -> str:
    rng = Random(seed(view.digest, "text") ^ salt)
    target = _MIN_TEXT_TOKENS + int(rng.random() * _TEXT_TOKEN_SPAN)
    if fault == "length_drift":
        # Shrinking an already short answer would hit the heading-and-list floor, so those grow.
        shorter = target * 0.3 >= 40 and unit(view.digest, "length_drift") < 0.5
        target = int(target * (0.3 if shorter else 3.0))
    # Leave slack under max_tokens: whole words overshoot each budget a little.
    target = max(8, min(target, int(view.max_tokens * 0.85)))

    style = "plain"
    if fault == "markdown_drift":
        style = _MARKDOWN_DRIFTS[int(unit(view.digest, "markdown_drift") * len(_MARKDOWN_DRIFTS))]
    elif salt:
        style = _SALTED_STYLES[salt % len(_SALTED_STYLES)]

    writer = _Writer(rng, prompt_words(view.body.get("messages")))
    # Structure first, words after: a length drift then changes only the length.
    extra_heading_words = rng.randrange(4)
    paragraph_count = 1 + (rng.random() < 0.5)
    bullet_count = rng.randint(3, 6)
    chars = target * 4
    heading = "## " + writer.phrase(0, 2 + (extra_heading_words if chars > 400 else 0))
    remaining = max(0, chars - len(heading) - 2)
    bullet_chars = min(80.0, remaining * 0.3 / bullet_count - 3)
    paragraph_chars = (remaining - (bullet_chars + 3) * bullet_count) / paragraph_count - 2
    paragraphs = [writer.paragraph(paragraph_chars) for _ in range(paragraph_count)]
    if fault == "wrong_answer":
        wrong = WRONG_ANSWER_SENTENCES[int(unit(view.digest, "wrong_answer") * len(WRONG_ANSWER_SENTENCES))]
        paragraphs[0] = f"{wrong} {paragraphs[0]}"
    bullets = [writer.phrase(bullet_chars) for _ in range(bullet_count)]

    parts: list[str] = [] if style == "no_heading" else [heading]
    parts.extend(paragraphs)
    if style == "table":
        rows = [f"| {writer.word()} | {writer.word()} |" for _ in range(3)]
        parts.append("\n".join(["| Item | Status |", "| --- | --- |", *rows]))
    if style == "extra_heading":
        parts.append("### Next steps")
    numbered = style == "numbered"
    parts.append("\n".join(f"{f'{i}.' if numbered else '-'} {b}" for i, b in enumerate(bullets, 1)))
    return "\n\n".join(parts)


# --- JSON --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Noise:
    """How a call's values vary: everything by `salt`, or only `fields` by `field_salt`."""

    salt: int
    fields: frozenset[str]
    field_salt: int

    def instance(self, schema: CompiledSchema, digest: bytes, label: str) -> Any:
        shape_seed, values_seed = seed(digest, f"{label}_shape"), seed(digest, f"{label}_values")
        if not self.fields:
            return schema.instance(Random(shape_seed), Random(values_seed ^ self.salt))
        stable = schema.instance(Random(shape_seed), Random(values_seed))
        if self.field_salt:
            varied = schema.instance(Random(shape_seed), Random(values_seed ^ self.field_salt))
            _take_fields(stable, varied, self.fields)
        return stable


def _take_fields(stable: Any, varied: Any, fields: frozenset[str]) -> None:
    """Copy the values of `fields` from `varied` into `stable` (same shape: same draws of structure)."""
    if isinstance(stable, dict) and isinstance(varied, dict):
        for key in stable:
            if key not in varied:
                continue
            if key in fields:
                stable[key] = varied[key]
            else:
                _take_fields(stable[key], varied[key], fields)
    elif isinstance(stable, list) and isinstance(varied, list):
        for before, after in zip(stable, varied, strict=False):
            _take_fields(before, after, fields)


def _change_a_value(instance: Any, schema: dict[str, Any], u: float, kinds: tuple[str, ...],
                    fields: frozenset[str], noisy: bool) -> bool:
    """Change one scalar value, keeping it valid for `schema`: an enum label to another label, a
    number by a step inside its bounds, a boolean flipped. `noisy` picks among `fields` (where the
    baseline itself varies), else among the other keys. False when nothing fits."""
    slots: list[tuple[Any, Any, dict[str, Any], str]] = []
    stack: list[tuple[Any, dict[str, Any]]] = [(instance, schema)]
    while stack:
        node, node_schema = stack.pop()
        if isinstance(node, dict):
            properties = node_schema.get("properties") if isinstance(node_schema, dict) else None
            properties = properties if isinstance(properties, dict) else {}
            for key, item in node.items():
                found = properties.get(key)
                sub: dict[str, Any] = found if isinstance(found, dict) else {}
                if isinstance(item, dict | list):
                    stack.append((item, sub))
                elif (key in fields) == noisy:
                    kind = _value_kind(item, sub)
                    if kind in kinds:
                        slots.append((node, key, sub, kind))
        elif isinstance(node, list):
            items = node_schema.get("items") if isinstance(node_schema, dict) else None
            for element in node:
                if isinstance(element, dict | list):
                    stack.append((element, items if isinstance(items, dict) else {}))
    if not slots:
        return False
    slots.sort(key=lambda slot: (kinds.index(slot[3]), str(slot[1])))
    first_kind = slots[0][3]
    same_kind = [slot for slot in slots if slot[3] == first_kind]
    node, key, sub, kind = same_kind[int(u * len(same_kind))]
    node[key] = _changed(node[key], sub, kind)
    return True


def _value_kind(value: Any, schema: dict[str, Any]) -> str | None:
    enum = schema.get("enum")
    if isinstance(enum, list) and value in enum and len(enum) > 1:
        return "label"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str) and len(value) <= 64:
        return "string"
    return None


def _changed(value: Any, schema: dict[str, Any], kind: str) -> Any:
    if kind == "label":
        options = [option for option in schema["enum"] if option != value]
        return options[0]
    if kind == "boolean":
        return not value
    if kind == "number":
        step = 1 if isinstance(value, int) else max(1.0, abs(value) * 0.5)
        high, low = schema.get("maximum"), schema.get("minimum")
        if isinstance(high, int | float) and value + step > high:
            step = -step
        if isinstance(low, int | float) and value + step < low:
            return value  # no room either way: leave it (the bounds allow one value only)
        return round(value + step, 2) if isinstance(value, float) else value + step
    return f"{value}-v2" if len(value) < 60 else value[::-1]


_VALUE_FAULTS = {
    "label_changed": ("label", "string"),
    "number_changed": ("number",),
    "tool_argument_changed": ("label", "number", "boolean", "string"),
}


def _json_answer(view: RequestView, fault: str | None, noise: _Noise) -> str:
    schema = view.output_schema
    assert schema is not None
    instance = noise.instance(schema, view.digest, "json")
    if fault in _VALUE_FAULTS:
        _change_a_value(instance, schema.schema, unit(view.digest, fault), _VALUE_FAULTS[fault], noise.fields, False)
    elif fault == "noisy_value_changed":
        _change_a_value(instance, schema.schema, unit(view.digest, fault), ("label", "number", "boolean", "string"),
                        noise.fields, True)
    if fault == "key_missing":
        _drop_key(instance, schema, unit(view.digest, "key_missing"))
    elif fault == "type_changed":
        _change_a_type(instance)
    text = json.dumps(instance)
    if fault == "json_invalid":
        # Models break JSON by stopping early or by leaving a trailing comma.
        if unit(view.digest, "json_invalid") < 0.5 or len(text) < 2:
            return text[:-1] if len(text) > 1 else "{"
        return text[:-1] + "," + text[-1]
    if fault == "json_wrapped":
        pretty = json.dumps(instance, indent=2)
        return f"Here is the requested JSON:\n\n```json\n{pretty}\n```\n\nTell me if anything should change."
    return text


def _drop_key(instance: Any, schema: CompiledSchema, u: float) -> None:
    if not isinstance(instance, dict) or not instance:
        return
    candidates = [key for key in schema.required if key in instance] or list(instance)
    del instance[candidates[int(u * len(candidates))]]


def _change_a_type(instance: Any) -> None:
    # Prefer a number (7730 → "7730"), the drift real models show most; else a bool or string.
    slots: dict[type, tuple[Any, Any]] = {}
    stack: list[Any] = [instance]
    while stack:
        node = stack.pop()
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, item in items:
            if isinstance(item, (dict, list)):
                stack.append(item)
            elif isinstance(item, bool):
                slots.setdefault(bool, (node, key))
            elif isinstance(item, (int, float)):
                slots.setdefault(float, (node, key))
            elif isinstance(item, str):
                slots.setdefault(str, (node, key))
    for kind in (float, bool, str):
        if kind in slots:
            node, key = slots[kind]
            node[key] = retyped(node[key])
            return


def retyped(value: Any) -> Any:
    """The same value as a different JSON type: 7730 → "7730", "12" → 12, true → "true"."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return int(value) if value.isdigit() else len(value)
    if isinstance(value, list):
        return ", ".join(map(str, value))
    if isinstance(value, dict):
        return json.dumps(value)
    return 0


# --- tool calls --------------------------------------------------------------------------


def _tool_call(view: RequestView, fault: str | None, noise: _Noise) -> list[dict[str, Any]]:
    names = view.tool_names
    index = int(unit(view.digest, "tool") * len(names))
    if view.forced_tool is not None:
        index = names.index(view.forced_tool)
    if fault == "tool_name_changed" and len(names) > 1:
        index = (index + 1 + int(unit(view.digest, "tool_swap") * (len(names) - 1))) % len(names)
    tool = view.tools[index]
    schema = compiled_tool_schema(tool.get("input_schema"))
    tool_input = noise.instance(schema, view.digest, "tool")
    if not isinstance(tool_input, dict):
        tool_input = {}
    if fault == "tool_input_invalid":
        _violate(tool_input, schema)
    elif fault == "tool_argument_changed":
        _change_a_value(tool_input, schema.schema, unit(view.digest, fault), _VALUE_FAULTS[fault], noise.fields, False)
    words = Random(seed(view.digest, "tool_text"))
    noun = VOCABULARY[words.randrange(len(VOCABULARY))]
    text = f"I'll use the {tool['name']} tool to look up the {noun} details."
    tool_id = "toolu_01" + _base62(seed(view.digest, "tool_id"), 22)
    blocks = [
        _text_block(text),
        {"type": "tool_use", "id": tool_id, "name": tool["name"], "input": tool_input},
    ]
    if fault == "tool_call_extra" and len(names) > 1:
        # The same call, then one more to another tool: a side effect the baseline never had.
        extra = view.tools[(index + 1) % len(names)]
        extra_schema = compiled_tool_schema(extra.get("input_schema"))
        extra_input = noise.instance(extra_schema, view.digest, "extra_tool")
        blocks.append({
            "type": "tool_use", "id": "toolu_01" + _base62(seed(view.digest, "extra_tool_id"), 22),
            "name": extra["name"], "input": extra_input if isinstance(extra_input, dict) else {},
        })
    return blocks


def _violate(tool_input: dict[str, Any], schema: CompiledSchema) -> None:
    required = [key for key in schema.required if key in tool_input]
    if required:
        del tool_input[required[0]]
    elif tool_input:
        key = next(iter(tool_input))
        tool_input[key] = retyped(tool_input[key])
    elif schema.schema.get("additionalProperties") is False:
        tool_input["unexpected"] = True


def _base62(number: int, width: int) -> str:
    rng = Random(number)
    return "".join(_BASE62[rng.randrange(62)] for _ in range(width))


# --- grading (`shadowd_grade`) ---------------------------------------------------------------


def is_grading_request(view: RequestView) -> bool:
    """A judge call: the one tool forced is shadowd_grade."""
    return view.forced_tool == GRADE_TOOL_NAME


def answer_under_grading(view: RequestView) -> str:
    """The part of the grading prompt after its answer heading: the answer, never the conversation."""
    messages = view.body.get("messages")
    last = messages[-1] if isinstance(messages, list) and messages else {}
    content = last.get("content") if isinstance(last, dict) else ""
    if isinstance(content, list):
        content = "".join(str(b.get("text", "")) for b in content if isinstance(b, dict))
    text = str(content)
    heading = text.rfind("The answer under grading:")
    return text[heading:] if heading >= 0 else text


def grade_reply(view: RequestView, acceptable: bool, malformed: bool) -> Reply:
    """A forced shadowd_grade call: a well-formed grade, or (when `malformed`) tool input that breaks it."""
    u = unit(view.digest, "grade_score")
    grade: dict[str, Any]
    if malformed:
        shapes: list[dict[str, Any]] = [
            {"acceptable": "yes", "reason": "Looks fine."},
            {"score": 4},
            {"acceptable": True, "score": 9, "reason": "Off the scale."},
        ]
        grade = shapes[int(u * len(shapes))]
    elif acceptable:
        grade = {"acceptable": True, "score": 4 + (u < 0.5), "reason": "Correct and complete for the question."}
    else:
        grade = {"acceptable": False, "score": 1 + (u < 0.5),
                 "reason": "Recommends a setting that does not exist; the user would be misled."}
    tool_id = "toolu_01" + _base62(seed(view.digest, "grade_id"), 22)
    blocks = [{"type": "tool_use", "id": tool_id, "name": GRADE_TOOL_NAME, "input": grade}]
    return Reply(blocks, "tool_use", _usage(view, _output_tokens(blocks)))
