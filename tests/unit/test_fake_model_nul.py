"""The fake model can answer with U+0000, as real models sometimes do, through the real SDK."""

from __future__ import annotations

import anthropic

from shadowd.fakemodel import generate_reply, parse_behaviours, start_fake_model, view_request

BODY = {
    "model": "nul-model",
    "max_tokens": 1000,
    "messages": [{"role": "user", "content": "Explain canary deployments for a payments API."}],
}


def test_nul_char_fault_puts_one_nul_in_the_text() -> None:
    """Golden: `nul_char` adds exactly one U+0000 to the answer's text; near miss: the clean answer has none."""
    view = view_request(BODY)
    clean = generate_reply(view).content[0]["text"]
    spoiled = generate_reply(view, "nul_char").content[0]["text"]
    assert "\x00" not in clean
    assert spoiled.count("\x00") == 1 and spoiled.replace("\x00", "") == clean


async def test_nul_reaches_the_sdk_caller_plain_and_streamed() -> None:
    """A model configured with nul_char: 1.0 answers with U+0000, non-streaming and streaming alike."""
    behaviours = parse_behaviours({"models": {"nul-model": {"max_output": 8192, "faults": {"nul_char": 1.0}}}})
    fake = await start_fake_model(behaviours)
    sdk = anthropic.AsyncAnthropic(base_url=fake.base_url, api_key="test", max_retries=0)
    try:
        message = await sdk.messages.create(**BODY)  # type: ignore[call-overload]
        text = "".join(block.text for block in message.content if block.type == "text")
        assert "\x00" in text
        async with sdk.messages.stream(**BODY) as stream:  # type: ignore[arg-type]
            streamed = await stream.get_final_message()
        assert "".join(b.text for b in streamed.content if b.type == "text") == text
    finally:
        await sdk.close()
        await fake.close()
