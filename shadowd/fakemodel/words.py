"""The fixed vocabulary the fake model writes with, plus words borrowed from the prompt."""

from __future__ import annotations

import re
from typing import Any

VOCABULARY: tuple[str, ...] = tuple(
    """
    account action agent analysis answer approach area balance baseline batch billing
    budget cache canary capacity case change check claim client cluster context contract
    cost customer data decision default delivery detail device draft error estimate event
    evidence feature feedback field file flow forecast format gate goal group history
    incident input issue item latency ledger limit list log margin metric model module
    network note order outcome output owner partner payment plan policy priority process
    product profile queue quota rate record region release report request result review
    risk route rule sample schedule scope segment service signal source stage status step
    summary support system task team tenant ticket timeline topic trend update usage user
    value vendor version volume window workflow
    accurate active brief careful clear current direct early final formal general helpful
    internal known large likely main minor new open overall primary quick recent regular
    relevant reliable safe short simple small stable steady strong typical useful valid
    adjust apply assess build collect compare confirm connect consider deliver document
    ensure expand explain follow handle improve include keep measure monitor note prepare
    reduce resolve review share track update verify
    """.split()
)

_WORD = re.compile(r"[A-Za-z][a-z]{2,11}")
# Function words would read as stutter ("for for") when echoed into the answer.
_STOP_WORDS = frozenset(
    """
    about after also and any are but can could did does for from had has have her his how its
    may not now our out please should some than that the their them then there these they this
    those was were what when where which while who why will with would you your
    """.split()
)
_MAX_PROMPT_WORDS = 40


def prompt_words(messages: Any) -> tuple[str, ...]:
    """Distinct lower-case words of the last user turn's text, so answers echo the prompt."""
    if not isinstance(messages, list):
        return ()
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            text = _text_of(message.get("content"))
            found: dict[str, None] = {}
            for match in _WORD.finditer(text):
                word = match.group().lower()
                if word not in _STOP_WORDS:
                    found.setdefault(word, None)
                if len(found) >= _MAX_PROMPT_WORDS:
                    break
            return tuple(found)
    return ()


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            block["text"]
            for block in content
            if isinstance(block, dict) and isinstance(block.get("text"), str)
        )
    return ""
