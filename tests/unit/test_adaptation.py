"""Request adaptation to the replaying model's capabilities, and cost from usage."""

from __future__ import annotations

from typing import Any

import pytest

from shadowd.core.adaptation import STREAMING_THRESHOLD_TOKENS, adapt_request
from shadowd.core.profiles import BUILTIN_PROFILES, ProfileError, resolve_profiles
from shadowd.core.results import Usage

OPUS_47 = BUILTIN_PROFILES["claude-opus-4-7"]
OPUS_46 = BUILTIN_PROFILES["claude-opus-4-6"]
SONNET_46 = BUILTIN_PROFILES["claude-sonnet-4-6"]


def request(**extra: Any) -> dict[str, Any]:
    return {"model": "claude-opus-4-6", "max_tokens": 1000, "messages": [{"role": "user", "content": "hi"}], **extra}


@pytest.mark.parametrize(
    ("extra", "profile", "adaptations", "expect"),
    [
        ({}, OPUS_47, (), {}),
        ({"temperature": 0.3}, OPUS_47, ("sampling_param_dropped:temperature",), {"temperature": None}),
        ({"temperature": 0.3, "top_p": 0.9, "top_k": 5}, OPUS_47,
         ("sampling_param_dropped:temperature", "sampling_param_dropped:top_p", "sampling_param_dropped:top_k"), {}),
        ({"temperature": 0.3}, OPUS_46, (), {"temperature": 0.3}),
        ({"thinking": {"type": "enabled", "budget_tokens": 2000}}, OPUS_47, ("thinking_enabled_to_adaptive",),
         {"thinking": {"type": "adaptive"}}),
        ({"thinking": {"type": "enabled", "budget_tokens": 2000}}, SONNET_46, (),
         {"thinking": {"type": "enabled", "budget_tokens": 2000}}),
        ({"thinking": {"type": "adaptive"}}, OPUS_47, (), {"thinking": {"type": "adaptive"}}),
        ({"max_tokens": 100_000}, SONNET_46, ("max_tokens_clamped",), {"max_tokens": 64_000}),
        ({"max_tokens": 64_000}, SONNET_46, (), {"max_tokens": 64_000}),
    ],
)
def test_adaptations_are_made_and_recorded(
    extra: dict[str, Any], profile: Any, adaptations: tuple[str, ...], expect: dict[str, Any]
) -> None:
    """Each capability mismatch is adapted and named; anything the model accepts is left alone."""
    replay = adapt_request(request(**extra), profile.model, profile)
    assert replay.adaptations == adaptations
    assert replay.body["model"] == profile.model
    for key, value in expect.items():
        assert replay.body.get(key) == value


def test_unknown_fields_are_kept_verbatim_and_original_untouched() -> None:
    """Fields shadowd does not know are forwarded as they are, and the production request is not mutated."""
    original = request(metadata={"user_id": "u"}, stop_sequences=["END"], temperature=0.5)
    replay = adapt_request(original, "claude-opus-4-7", OPUS_47)
    assert replay.body["metadata"] == {"user_id": "u"} and replay.body["stop_sequences"] == ["END"]
    assert original["temperature"] == 0.5 and original["model"] == "claude-opus-4-6"


@pytest.mark.parametrize(
    ("extra", "stream"),
    [({}, False), ({"stream": True}, True), ({"max_tokens": STREAMING_THRESHOLD_TOKENS + 1}, True),
     ({"max_tokens": STREAMING_THRESHOLD_TOKENS}, False)],
)
def test_streaming_when_the_request_needs_it(extra: dict[str, Any], stream: bool) -> None:
    """Large max_tokens or a streaming production call is replayed with streaming; `stream` is not forwarded."""
    replay = adapt_request(request(**extra), "claude-opus-4-6", OPUS_46)
    assert replay.stream is stream
    assert "stream" not in replay.body


def test_cost_counts_cache_writes_and_reads() -> None:
    """Cost uses the profile's prices, cache writes at 1.25x input and cache reads at 0.1x input."""
    usage = Usage(input_tokens=1_000_000, output_tokens=1_000_000, cache_creation_input_tokens=1_000_000,
                  cache_read_input_tokens=1_000_000)
    assert OPUS_47.cost_usd(usage) == pytest.approx(5 + 25 + 6.25 + 0.5)
    assert SONNET_46.cost_usd(Usage(input_tokens=2_000, output_tokens=1_000)) == pytest.approx(0.006 + 0.015)


def test_profile_overrides_and_their_errors() -> None:
    """Overrides change built-in fields, new models need prices, and bad fields name their key."""
    profiles = resolve_profiles({"claude-sonnet-4-6": {"usd_per_mtok_input": 2.5},
                                 "my-model": {"context_window": 1000, "max_output_tokens": 100,
                                              "usd_per_mtok_input": 1, "usd_per_mtok_output": 2}})
    assert profiles["claude-sonnet-4-6"].usd_per_mtok_input == 2.5
    assert profiles["my-model"].max_output_tokens == 100
    with pytest.raises(ProfileError) as caught:
        resolve_profiles({"other": {"context_window": 10}})
    assert caught.value.key.startswith("models.profiles.other.")
    with pytest.raises(ProfileError) as caught:
        resolve_profiles({"claude-opus-4-7": {"colour": "red"}})
    assert caught.value.key == "models.profiles.claude-opus-4-7.colour"
