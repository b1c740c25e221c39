"""The fake model server: API shape, rules, determinism, faults and streaming, via the real SDK."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import anthropic
import jsonschema
import pytest

from shadowd.fakemodel import (
    BehaviourError,
    Behaviours,
    FakeModelServer,
    generate_reply,
    load_behaviours,
    parse_behaviours,
    start_fake_model,
    view_request,
)

OPUS_47 = "claude-opus-4-7"
OPUS_46 = "claude-opus-4-6"
SONNET_46 = "claude-sonnet-4-6"

TICKET_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "ticket_id": {"type": "integer", "minimum": 1000, "maximum": 99999},
        "priority": {"enum": ["low", "medium", "high"]},
        "opened_at": {"type": "string", "format": "date-time"},
        "summary": {"type": "string", "minLength": 10, "maxLength": 200},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2, "maxItems": 5},
        "customer": {
            "type": "object",
            "properties": {"name": {"type": "string"}, "vip": {"type": "boolean"}},
            "required": ["name", "vip"],
        },
        "notes": {"type": ["string", "null"]},
    },
    "required": ["ticket_id", "priority", "opened_at", "summary", "tags", "customer"],
    "additionalProperties": False,
}

WEATHER_TOOL: dict[str, Any] = {
    "name": "get_weather",
    "description": "Current weather for a city.",
    "input_schema": {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            "days": {"type": "integer", "minimum": 1, "maximum": 7},
            "coords": {
                "type": "object",
                "properties": {"lat": {"type": "number", "minimum": -90, "maximum": 90}},
                "required": ["lat"],
            },
        },
        "required": ["city", "unit"],
    },
}
REFUND_TOOL: dict[str, Any] = {
    "name": "issue_refund",
    "description": "Refund an order.",
    "input_schema": {
        "type": "object",
        "properties": {
            "order_id": {"type": "string", "minLength": 3},
            "amount_cents": {"type": "integer", "minimum": 1},
            "reasons": {"type": "array", "items": {"enum": ["late", "damaged", "wrong"]}, "minItems": 1},
        },
        "required": ["order_id", "amount_cents"],
    },
}


def text_request(index: int, **extra: Any) -> dict[str, Any]:
    return {
        "model": OPUS_46,
        "max_tokens": 2048,
        "messages": [{"role": "user", "content": f"Summarise incident {index} for the billing team"}],
        **extra,
    }


def json_request(index: int, schema: dict[str, Any] = TICKET_SCHEMA) -> dict[str, Any]:
    system = f"You triage tickets. Reply with JSON only.\nJSON Schema: {json.dumps(schema)}\nBe brief."
    return text_request(index, system=system)


def tool_request(index: int, **extra: Any) -> dict[str, Any]:
    return text_request(index, tools=[WEATHER_TOOL, REFUND_TOOL], **extra)


def sdk_kwargs(body: dict[str, Any]) -> dict[str, Any]:
    """Request fields as SDK keyword arguments (the SDK no longer names sampling params)."""
    return {key: value for key, value in body.items() if key != "stream"}


def comparable(message: anthropic.types.Message) -> dict[str, Any]:
    """The parts of a message two clean models must agree on byte for byte."""
    dumped = message.model_dump(mode="json")
    return {key: dumped[key] for key in ("content", "stop_reason", "usage")}


@pytest.fixture
async def server() -> AsyncIterator[FakeModelServer]:
    behaviours = parse_behaviours(
        {
            "models": {
                "flaky-rate-limited": {
                    "max_output": 8192,
                    "faults": {"rate_limited": 1.0},
                    "retry_after_s": 2,
                },
                "flaky-overloaded": {"max_output": 8192, "faults": {"overloaded": 1.0}},
                "broken": {"max_output": 8192, "faults": {"error": 1.0}},
                "wobbly": {"max_output": 8192, "nondeterminism": 0.5},
                "slow": {"max_output": 8192, "latency_ms": 300},
            }
        }
    )
    fake = await start_fake_model(behaviours)
    try:
        yield fake
    finally:
        await fake.close()


@pytest.fixture
async def client(server: FakeModelServer) -> AsyncIterator[anthropic.AsyncAnthropic]:
    sdk = anthropic.AsyncAnthropic(base_url=server.base_url, api_key="test", max_retries=0)
    try:
        yield sdk
    finally:
        await sdk.close()


# --- determinism ----------------------------------------------------------------------------


@pytest.mark.parametrize("build", [text_request, json_request, tool_request])
async def test_clean_models_answer_identically(client: anthropic.AsyncAnthropic, build: Any) -> None:
    """The same request gives byte-identical content, stop reason and usage on every call and clean model."""
    body = build(7)
    first = await client.messages.create(**sdk_kwargs(body))
    again = await client.messages.create(**sdk_kwargs(body))
    other_model = await client.messages.create(**{**sdk_kwargs(body), "model": SONNET_46})
    assert first.id != again.id
    assert comparable(first) == comparable(again) == comparable(other_model)
    assert other_model.model == SONNET_46


async def test_response_has_the_real_api_shape(server: FakeModelServer) -> None:
    """A raw response carries exactly the Messages API fields, with msg_ ids and full usage."""
    async with aiohttp.ClientSession() as session:
        async with session.post(
            f"{server.base_url}/v1/messages",
            json=text_request(1),
            headers={"anthropic-version": "2023-06-01", "x-api-key": "test"},
        ) as response:
            assert response.status == 200
            body = await response.json()
    assert set(body) == {"id", "type", "role", "model", "content", "stop_reason", "stop_sequence", "usage"}
    assert body["id"].startswith("msg_") and body["type"] == "message" and body["role"] == "assistant"
    assert body["model"] == OPUS_46 and body["stop_sequence"] is None
    assert set(body["usage"]) == {
        "input_tokens",
        "output_tokens",
        "cache_creation_input_tokens",
        "cache_read_input_tokens",
    }


async def test_free_text_is_markdown_within_the_length_range(client: anthropic.AsyncAnthropic) -> None:
    """Free text has a heading and a 3-6 item list, and its output tokens stay within 60-400-ish."""
    for index in range(10):
        message = await client.messages.create(**sdk_kwargs(text_request(index)))
        text = message.content[0].text
        assert text.startswith("## ")
        bullets = [line for line in text.splitlines() if line.startswith("- ")]
        assert 3 <= len(bullets) <= 6
        assert 40 <= message.usage.output_tokens <= 450
        assert message.usage.output_tokens == -(-len(text) // 4)
        assert message.stop_reason == "end_turn"


async def test_small_max_tokens_cuts_the_output(client: anthropic.AsyncAnthropic) -> None:
    """Output never exceeds max_tokens; when it would, it is cut and stops on max_tokens."""
    message = await client.messages.create(**sdk_kwargs(text_request(3, max_tokens=12)))
    assert message.stop_reason == "max_tokens"
    assert message.usage.output_tokens <= 12
    roomy = await client.messages.create(**sdk_kwargs(text_request(3, max_tokens=100)))
    assert roomy.stop_reason == "end_turn" and roomy.usage.output_tokens <= 100


async def test_cache_control_writes_then_reads_the_prefix(client: anthropic.AsyncAnthropic) -> None:
    """A cache breakpoint on a long prefix is written by the first call and read by the next, as the API reports."""
    cached_block = {"type": "text", "text": "Long policy " * 500, "cache_control": {"type": "ephemeral"}}
    body = text_request(4, system=[cached_block])
    first = await client.messages.create(**sdk_kwargs(body))
    again = await client.messages.create(**sdk_kwargs(body))
    plain = await client.messages.create(**sdk_kwargs(text_request(4, system=[{"type": "text", "text": cached_block["text"]}])))
    written = first.usage.cache_creation_input_tokens
    assert written and written >= 1024 and first.usage.cache_read_input_tokens == 0
    assert again.usage.cache_read_input_tokens == written and again.usage.cache_creation_input_tokens == 0
    assert again.usage.input_tokens == first.usage.input_tokens > 0
    total = plain.usage.input_tokens
    assert first.usage.input_tokens + written == total  # the same prompt, split three ways
    assert plain.usage.cache_read_input_tokens == 0 and plain.usage.cache_creation_input_tokens == 0
    answers = [{k: v for k, v in comparable(m).items() if k != "usage"} for m in (first, again, plain)]
    assert answers[0] == answers[1] == answers[2]  # caching never changes the answer


async def test_short_or_other_model_prefix_is_not_cached(client: anthropic.AsyncAnthropic) -> None:
    """A prefix under the minimum cacheable length is never cached, and one model never reads another's cache."""
    short = {"type": "text", "text": "Short policy " * 20, "cache_control": {"type": "ephemeral"}}
    body = text_request(5, system=[short])
    for _ in range(2):
        usage = (await client.messages.create(**sdk_kwargs(body))).usage
        assert usage.cache_creation_input_tokens == 0 and usage.cache_read_input_tokens == 0
    long = {"type": "text", "text": "Long policy " * 500, "cache_control": {"type": "ephemeral"}}
    await client.messages.create(**sdk_kwargs(text_request(6, system=[long])))
    other = await client.messages.create(**sdk_kwargs({**text_request(6, system=[long]), "model": OPUS_47}))
    assert other.usage.cache_read_input_tokens == 0 and other.usage.cache_creation_input_tokens > 0


async def test_concurrent_calls_both_write_the_cache(client: anthropic.AsyncAnthropic) -> None:
    """Two calls sent together both write (an entry is readable only once its call answered); a third reads."""
    block = {"type": "text", "text": "Shared rules " * 400, "cache_control": {"type": "ephemeral"}}
    body = {**text_request(7, system=[block]), "model": "slow"}  # 300 ms: both are in flight at once
    first, second = await asyncio.gather(
        client.messages.create(**sdk_kwargs(body)), client.messages.create(**sdk_kwargs(body))
    )
    assert first.usage.cache_creation_input_tokens > 0 and second.usage.cache_creation_input_tokens > 0
    third = await client.messages.create(**sdk_kwargs(body))
    assert third.usage.cache_read_input_tokens == first.usage.cache_creation_input_tokens


# --- schema-driven output -------------------------------------------------------------------


async def test_json_output_satisfies_the_system_schema(client: anthropic.AsyncAnthropic) -> None:
    """Bare JSON answers to a `JSON Schema:` system prompt validate against that schema."""
    for index in range(12):
        message = await client.messages.create(**sdk_kwargs(json_request(index)))
        assert message.stop_reason == "end_turn"
        jsonschema.validate(json.loads(message.content[0].text), TICKET_SCHEMA)


@pytest.mark.parametrize(
    "schema",
    [
        {
            "type": "array",
            "items": {"type": "integer", "multipleOf": 5, "exclusiveMinimum": 0},
            "minItems": 3,
        },
        {
            "$defs": {
                "item": {"type": "object", "properties": {"sku": {"type": "string"}}, "required": ["sku"]}
            },
            "type": "object",
            "properties": {
                "items": {"type": "array", "items": {"$ref": "#/$defs/item"}, "uniqueItems": True}
            },
            "required": ["items"],
        },
        {
            "anyOf": [
                {"type": "null"},
                {"type": "object", "properties": {"ok": {"const": True}}, "required": ["ok"]},
            ]
        },
        {
            "allOf": [
                {"properties": {"a": {"type": "string", "format": "email"}}, "required": ["a"]},
                {
                    "properties": {"b": {"type": "string", "format": "uuid", "maxLength": 36}},
                    "required": ["b"],
                },
            ]
        },
        {
            "type": "object",
            "properties": {"n": {"type": "number", "exclusiveMaximum": 1, "minimum": 0.99}},
            "required": ["n"],
        },
    ],
    ids=["bounded-integers", "refs", "any-of", "all-of-formats", "exclusive-number"],
)
def test_schema_instances_cover_common_keywords(schema: dict[str, Any]) -> None:
    """Generated JSON satisfies refs, combinators, formats, bounds and array constraints."""
    for index in range(30):
        view = view_request(json_request(index, schema))
        jsonschema.validate(json.loads(generate_reply(view).content[0]["text"]), schema)


async def test_tool_input_satisfies_the_input_schema(client: anthropic.AsyncAnthropic) -> None:
    """Tool calls name a given tool and carry input valid against its input_schema."""
    schemas = {tool["name"]: tool["input_schema"] for tool in (WEATHER_TOOL, REFUND_TOOL)}
    calls = 0
    for index in range(20):
        message = await client.messages.create(**sdk_kwargs(tool_request(index)))
        uses = [block for block in message.content if block.type == "tool_use"]
        if message.stop_reason == "tool_use":
            calls += 1
            assert len(uses) == 1 and uses[0].id.startswith("toolu_")
            jsonschema.validate(uses[0].input, schemas[uses[0].name])
        else:
            assert message.stop_reason == "end_turn" and not uses
    assert 8 <= calls <= 19  # about 70% of requests with tools call one


async def test_tool_choice_forces_the_named_tool(client: anthropic.AsyncAnthropic) -> None:
    """tool_choice `tool` always calls that tool; `none` never calls one."""
    for index in range(8):
        forced = await client.messages.create(
            **sdk_kwargs(tool_request(index, tool_choice={"type": "tool", "name": "issue_refund"}))
        )
        assert forced.stop_reason == "tool_use" and forced.content[-1].name == "issue_refund"
        silent = await client.messages.create(**sdk_kwargs(tool_request(index, tool_choice={"type": "none"})))
        assert silent.stop_reason == "end_turn"


def _nested(leaf: dict[str, Any], depth: int) -> dict[str, Any]:
    schema = leaf
    for _ in range(depth):
        schema = {"type": "object", "properties": {"x": schema}}
    return schema


@pytest.mark.parametrize(
    ("input_schema", "words"),
    [
        ({"type": "object", "properties": {"order_id": {"type": 12}}}, "JSON schema is invalid"),
        ({"type": "object", "required": "order_id"}, "JSON schema is invalid"),
        ({"type": "object", "properties": []}, "JSON schema is invalid"),
        (["not", "an", "object"], "valid dictionary"),
        (_nested({"type": "object"}, 400), "JSON schema is invalid"),  # deeper than the checker recurses
    ],
)
async def test_a_tool_schema_that_breaks_the_metaschema_is_a_400(
    client: anthropic.AsyncAnthropic, input_schema: Any, words: str
) -> None:
    """As the real API: a custom tool whose input_schema is not a JSON Schema is refused, not answered."""
    tool = {**REFUND_TOOL, "input_schema": input_schema}
    body = text_request(1, tools=[WEATHER_TOOL, tool], tool_choice={"type": "tool", "name": "issue_refund"})
    with pytest.raises(anthropic.BadRequestError) as caught:
        await client.messages.create(**sdk_kwargs(body))
    assert caught.value.status_code == 400
    assert caught.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    assert "tools.1.custom.input_schema" in caught.value.message and words in caught.value.message


async def test_an_unusual_but_valid_tool_schema_is_answered(client: anthropic.AsyncAnthropic) -> None:
    """The near miss: $defs, $ref, anyOf and a format keyword are valid JSON Schema, so the tool is called."""
    schema = {
        "type": "object",
        "$defs": {"id": {"type": "string", "pattern": "^o-[0-9]+$"}},
        "properties": {"order_id": {"$ref": "#/$defs/id"}, "when": {"type": "string", "format": "date"},
                       "amount": {"anyOf": [{"type": "integer"}, {"type": "null"}]}},
        "required": ["order_id"],
    }
    tool = {**REFUND_TOOL, "input_schema": schema}
    body = text_request(2, tools=[tool], tool_choice={"type": "tool", "name": "issue_refund"})
    message = await client.messages.create(**sdk_kwargs(body))
    assert message.stop_reason == "tool_use" and message.content[-1].name == "issue_refund"


# --- streaming ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "build",
    [text_request, json_request, lambda i: tool_request(i, tool_choice={"type": "any"})],
    ids=["text", "json", "tool_use"],
)
async def test_streaming_reassembles_the_non_streaming_message(
    client: anthropic.AsyncAnthropic, build: Any
) -> None:
    """The SDK's stream helper and raw `stream=True` rebuild the non-streaming content and usage."""
    body = build(11)
    plain = await client.messages.create(**sdk_kwargs(body))
    async with client.messages.stream(**sdk_kwargs(body)) as stream:
        streamed = await stream.get_final_message()
    assert comparable(streamed) == comparable(plain)

    raw_events = await client.messages.create(**sdk_kwargs(body), stream=True)
    types = [event.type async for event in raw_events]
    assert types[0] == "message_start" and types[-2:] == ["message_delta", "message_stop"]
    assert types.count("content_block_start") == types.count("content_block_stop") == len(plain.content)


async def test_streaming_delays_the_first_delta(client: anthropic.AsyncAnthropic) -> None:
    """A streamed answer's first delta arrives after part of the latency, the end after all of it."""
    body = {**text_request(2), "model": "slow"}
    started = time.perf_counter()
    first_delta = None
    async with client.messages.stream(**sdk_kwargs(body)) as stream:
        async for event in stream:
            if event.type == "content_block_delta" and first_delta is None:
                first_delta = time.perf_counter() - started
    total = time.perf_counter() - started
    assert first_delta is not None
    # Sleeps only guarantee minimums, so check lower bounds: robust on a loaded machine.
    assert first_delta >= 0.3 * 0.3 - 0.01
    assert total - first_delta >= 0.7 * 0.3 - 0.01


# --- API rules ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ({"extra_body": {"temperature": 0.2}}, "temperature"),
        ({"extra_body": {"top_p": 0.9}}, "top_p"),
        ({"thinking": {"type": "enabled", "budget_tokens": 2048}}, "thinking"),
    ],
)
@pytest.mark.filterwarnings("ignore:Using Claude with:UserWarning")
async def test_opus_4_7_rejects_sampling_and_enabled_thinking(
    client: anthropic.AsyncAnthropic, extra: dict[str, Any], needle: str
) -> None:
    """claude-opus-4-7 answers 400 to sampling parameters and enabled thinking; opus-4-6 accepts them."""
    body = {**text_request(1, max_tokens=4096), "model": OPUS_47}
    with pytest.raises(anthropic.BadRequestError) as caught:
        await client.messages.create(**sdk_kwargs(body), **extra)
    assert caught.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    assert needle in caught.value.message
    accepted = await client.messages.create(**{**sdk_kwargs(body), "model": OPUS_46}, **extra)
    assert accepted.stop_reason == "end_turn"
    adaptive = await client.messages.create(**sdk_kwargs(body), thinking={"type": "adaptive"})
    assert adaptive.stop_reason == "end_turn"


async def test_max_tokens_above_the_model_limit_is_rejected(client: anthropic.AsyncAnthropic) -> None:
    """max_tokens above a model's max output is a 400; at the limit it streams fine."""
    body = {**text_request(1), "model": SONNET_46}
    with pytest.raises(anthropic.BadRequestError) as caught:
        await client.messages.create(**{**sdk_kwargs(body), "max_tokens": 64_001}, stream=True)
    assert "64000" in caught.value.message
    async with client.messages.stream(**{**sdk_kwargs(body), "max_tokens": 64_000}) as stream:
        assert (await stream.get_final_message()).stop_reason == "end_turn"


async def test_unknown_model_is_not_found(client: anthropic.AsyncAnthropic) -> None:
    """An unknown model id answers 404 not_found_error."""
    with pytest.raises(anthropic.NotFoundError) as caught:
        await client.messages.create(**{**sdk_kwargs(text_request(1)), "model": "claude-imaginary-9"})
    assert caught.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]


@pytest.mark.parametrize(
    ("body", "headers", "status"),
    [
        ({"max_tokens": 10, "messages": [{"role": "user", "content": "x"}]}, {}, 400),
        ({"model": OPUS_46, "messages": [{"role": "user", "content": "x"}]}, {}, 400),
        ({"model": OPUS_46, "max_tokens": 10}, {}, 400),
        (text_request(1), {"anthropic-version": ""}, 400),
        (text_request(1), {"x-api-key": ""}, 401),
        (text_request(1), {}, 200),
    ],
    ids=["no-model", "no-max-tokens", "no-messages", "no-version", "no-key", "ok"],
)
async def test_required_fields_and_headers(
    server: FakeModelServer, body: dict[str, Any], headers: dict[str, str], status: int
) -> None:
    """Missing model, max_tokens, messages or anthropic-version give the real error shape."""
    sent = {"anthropic-version": "2023-06-01", "x-api-key": "test", **headers}
    sent = {key: value for key, value in sent.items() if value}
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{server.base_url}/v1/messages", json=body, headers=sent) as response:
            assert response.status == status
            answer = await response.json()
    if status != 200:
        assert answer["type"] == "error" and set(answer["error"]) == {"type", "message"}


# --- call faults ----------------------------------------------------------------------------


async def test_rate_limit_then_success(client: anthropic.AsyncAnthropic) -> None:
    """A rate_limited request gets 429 with retry-after on its first attempt and succeeds after."""
    body = {**text_request(5), "model": "flaky-rate-limited"}
    with pytest.raises(anthropic.RateLimitError) as caught:
        await client.messages.create(**sdk_kwargs(body))
    assert caught.value.response.headers["retry-after"] == "2"
    assert caught.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
    retried = await client.messages.create(**sdk_kwargs(body))
    assert retried.stop_reason == "end_turn"


async def test_overloaded_then_success(client: anthropic.AsyncAnthropic) -> None:
    """An overloaded request gets 529 overloaded_error with retry-after once, then succeeds."""
    body = {**text_request(6), "model": "flaky-overloaded"}
    with pytest.raises(anthropic.APIStatusError) as caught:
        await client.messages.create(**sdk_kwargs(body))
    assert caught.value.status_code == 529
    assert "retry-after" in caught.value.response.headers
    assert (await client.messages.create(**sdk_kwargs(body))).stop_reason == "end_turn"


async def test_error_fault_persists(client: anthropic.AsyncAnthropic) -> None:
    """An `error` fault answers 500 api_error on every attempt for that request."""
    body = {**text_request(8), "model": "broken"}
    for _ in range(3):
        with pytest.raises(anthropic.InternalServerError) as caught:
            await client.messages.create(**sdk_kwargs(body))
        assert caught.value.body["error"]["type"] == "api_error"  # type: ignore[index]


# --- content faults -------------------------------------------------------------------------

RATES = {
    "json_invalid": 0.04, "json_wrapped": 0.03, "key_missing": 0.05, "type_changed": 0.03,
    "tool_input_invalid": 0.05, "tool_call_missing": 0.03, "tool_call_unexpected": 0.06,
    "tool_name_changed": 0.04, "truncate": 0.02, "refusal": 0.02, "markdown_drift": 0.08,
    "length_drift": 0.04, "error": 0.02,
}  # fmt: skip


def test_fault_rates_match_the_configuration() -> None:
    """Over ~2,000 requests per output kind, each fault's rate is within 1.5 points of its setting."""
    behaviours = parse_behaviours({"models": {OPUS_47: {"faults": RATES}}})
    builders: dict[str, Any] = {"json": json_request, "text": text_request, "tool": tool_request}
    for kind, build in builders.items():
        requests = [build(index) for index in range(2000)]
        plans = [behaviours.plan_faults(OPUS_47, body) for body in requests]
        errors = sum(plan.error for plan in plans) / len(plans)
        assert abs(errors - RATES["error"]) < 0.015, kind
        counts = Counter(plan.content for plan in plans)
        kinds = Counter(view_request(body).kind for body in requests)
        for fault, count in counts.items():
            if fault is None:
                continue
            # Tool faults apply to the share of requests whose clean answer they can spoil.
            eligible = {
                "tool_input_invalid": kinds["tool_call"], "tool_call_missing": kinds["tool_call"],
                "tool_name_changed": kinds["tool_call"], "tool_call_unexpected": kinds["tool_text"],
                "markdown_drift": kinds["tool_text"] + kinds["text"],
                "length_drift": kinds["tool_text"] + kinds["text"],
            }.get(fault, len(requests))  # fmt: skip
            assert abs(count / eligible - RATES[fault]) < 0.015, (kind, fault, count / eligible)
        assert set(counts) - {None} <= {
            "json": {"json_invalid", "json_wrapped", "key_missing", "type_changed", "truncate", "refusal"},
            "text": {"markdown_drift", "length_drift", "truncate", "refusal"},
            "tool": set(RATES) - {"json_invalid", "json_wrapped", "key_missing", "type_changed", "error"},
        }[kind]
        outcomes = Counter(behaviours.decide_fault(OPUS_47, body) for body in requests)
        assert outcomes["error"] == sum(plan.error for plan in plans)


def test_fault_choice_is_pure_and_per_model() -> None:
    """decide_fault depends only on the model and the request, and differs across model ids."""
    behaviours = parse_behaviours({"models": {"default": {"faults": {"markdown_drift": 0.5}}}})
    requests = [text_request(index) for index in range(200)]
    first = [behaviours.decide_fault(OPUS_47, body) for body in requests]
    assert first == [behaviours.decide_fault(OPUS_47, body) for body in requests]
    assert first != [behaviours.decide_fault(OPUS_46, body) for body in requests]
    assert all(Behaviours().decide_fault(OPUS_47, body) is None for body in requests)


def _first_with_kind(build: Any, kind: str) -> Any:
    return next(view for view in map(view_request, map(build, range(100))) if view.kind == kind)


def test_content_faults_spoil_the_answer_as_named() -> None:
    """Each content fault changes the clean answer the way its finding code describes."""
    json_view = _first_with_kind(json_request, "json")
    clean = json.loads(generate_reply(json_view).content[0]["text"])

    broken = generate_reply(json_view, "json_invalid").content[0]["text"]
    with pytest.raises(ValueError):
        json.loads(broken)
    wrapped = generate_reply(json_view, "json_wrapped").content[0]["text"]
    assert "```json" in wrapped and json.loads(wrapped.split("```json")[1].split("```")[0]) == clean
    missing = json.loads(generate_reply(json_view, "key_missing").content[0]["text"])
    assert set(clean) - set(missing) and (set(clean) - set(missing)) <= set(TICKET_SCHEMA["required"])
    changed = json.loads(generate_reply(json_view, "type_changed").content[0]["text"])
    assert changed != clean and set(changed) == set(clean)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(changed, TICKET_SCHEMA)

    call_view = _first_with_kind(tool_request, "tool_call")
    call = generate_reply(call_view)
    invalid = generate_reply(call_view, "tool_input_invalid").content[-1]
    with pytest.raises(jsonschema.ValidationError):
        schema = {"get_weather": WEATHER_TOOL, "issue_refund": REFUND_TOOL}[invalid["name"]]["input_schema"]
        jsonschema.validate(invalid["input"], schema)
    assert generate_reply(call_view, "tool_call_missing").stop_reason == "end_turn"
    assert generate_reply(call_view, "tool_name_changed").content[-1]["name"] != call.content[-1]["name"]
    text_view = _first_with_kind(tool_request, "tool_text")
    assert generate_reply(text_view, "tool_call_unexpected").stop_reason == "tool_use"

    for view in (json_view, call_view, text_view):
        assert generate_reply(view, "truncate").stop_reason == "max_tokens"
        refusal = generate_reply(view, "refusal")
        assert refusal.stop_reason == "refusal" and len(refusal.content) == 1


@pytest.mark.parametrize("index", range(25))
def test_free_text_drifts(index: int) -> None:
    """markdown_drift changes the heading/list/table structure; length_drift only leaves the 0.5x-2x band."""
    view = view_request(text_request(index))
    clean = generate_reply(view)
    drifted = generate_reply(view, "markdown_drift").content[0]["text"]

    def structure(text: str) -> list[str]:
        return [line.split(" ")[0] for line in text.splitlines() if line[:1] in "#-|" or line[:2] == "1."]

    assert structure(drifted) != structure(clean.content[0]["text"])
    resized = generate_reply(view, "length_drift")
    ratio = resized.usage["output_tokens"] / clean.usage["output_tokens"]
    assert ratio < 0.5 or ratio > 2, ratio
    assert structure(resized.content[0]["text"]) == structure(clean.content[0]["text"])


# --- nondeterminism -------------------------------------------------------------------------


async def test_nondeterministic_model_varies_only_some_answers(client: anthropic.AsyncAnthropic) -> None:
    """A model with nondeterminism varies some answers call to call; a clean model never does."""
    varied = 0
    for index in range(16):
        body = text_request(index)
        runs = [await client.messages.create(**{**sdk_kwargs(body), "model": "wobbly"}) for _ in range(2)]
        varied += comparable(runs[0]) != comparable(runs[1])
        clean = [await client.messages.create(**sdk_kwargs(body)) for _ in range(2)]
        assert comparable(clean[0]) == comparable(clean[1])
    assert 2 <= varied <= 14


async def test_nondeterminism_keeps_json_structure(client: anthropic.AsyncAnthropic) -> None:
    """Nondeterministic JSON answers vary in values but keep their keys and stay schema-valid."""
    varied = 0
    for index in range(12):
        body = {**json_request(index), "model": "wobbly"}
        answers = [
            json.loads((await client.messages.create(**sdk_kwargs(body))).content[0].text)
            for _ in range(2)
        ]
        assert set(answers[0]) == set(answers[1])
        for answer in answers:
            jsonschema.validate(answer, TICKET_SCHEMA)
        varied += answers[0] != answers[1]
    assert varied >= 1


# --- server plumbing ------------------------------------------------------------------------


async def test_stats_count_requests_and_peak_concurrency(
    server: FakeModelServer, client: anthropic.AsyncAnthropic
) -> None:
    """GET /stats reports requests served, in flight and the peak of concurrent calls."""
    body = {**text_request(1), "model": "slow"}
    await asyncio.gather(*(client.messages.create(**sdk_kwargs(body)) for _ in range(20)))
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{server.base_url}/stats") as response:
            stats = await response.json()
        async with session.get(f"{server.base_url}/healthz") as response:
            assert response.status == 200
    assert stats["requests_served"] == 20 and stats["in_flight"] == 0
    assert stats["peak_in_flight"] == 20 == server.stats.peak_in_flight
    assert stats["by_status"] == {"200": 20}


def test_behaviour_file_errors_name_the_key_and_file(tmp_path: Path) -> None:
    """A bad behaviour file raises BehaviourError naming the offending key and the file."""
    cases = {
        "models:\n  claude-opus-4-7:\n    faults: {refusal: 2}\n": f"models.{OPUS_47}.faults.refusal",
        "models:\n  claude-opus-4-7:\n    faults: {meltdown: 0.1}\n": f"models.{OPUS_47}.faults.meltdown",
        "models:\n  default:\n    latency: 5\n": "models.default.latency",
        "models:\n  my-model:\n    latency_ms: 5\n": "models.my-model.max_output",
        "models: [1, 2]\n": "models",
    }
    for index, (text, key) in enumerate(cases.items()):
        path = tmp_path / f"behaviours-{index}.yaml"
        path.write_text(text)
        with pytest.raises(BehaviourError) as caught:
            load_behaviours(path)
        assert key in str(caught.value) and str(path) in str(caught.value)


def test_behaviour_file_loads_models_and_defaults(tmp_path: Path) -> None:
    """A valid file sets per-model behaviour, a default for unlisted models, and new model rules."""
    path = tmp_path / "behaviours.yaml"
    path.write_text(
        "models:\n"
        "  claude-opus-4-7:\n    latency_ms: 40\n    latency_jitter_ms: 10\n    faults: {refusal: 0.02}\n"
        "  my-model:\n    max_output: 4096\n    reject_sampling_params: true\n"
        "  default:\n    latency_ms: 5\n"
    )
    behaviours = load_behaviours(path)
    view = view_request(text_request(1))
    assert 0.030 <= behaviours.latency_s(OPUS_47, view) <= 0.050
    assert behaviours.latency_s(SONNET_46, view) == 0.005
    rules = behaviours.rules_for("my-model")
    assert rules is not None and rules.max_output == 4096 and rules.reject_sampling_params
    assert behaviours.rules_for("claude-opus-4-7") is not None and behaviours.rules_for("nope") is None
    assert load_behaviours(None).latency_s(OPUS_47, view) == 0
