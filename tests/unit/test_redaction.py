"""The redactors: what they hide (golden cases) and what they leave alone (near misses)."""

from __future__ import annotations

import pytest

from shadowd.core.redaction import Redactor, cap_bytes, luhn_valid, redact_payload


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("write to bob.smith+x@example.co.uk today", "write to [redacted:email] today"),
        ("card 4111 1111 1111 1111 ok", "card [redacted:card] ok"),
        ("card 4111-1111-1111-1111", "card [redacted:card]"),
        ("call +44 20 7946 0958", "call [redacted:phone]"),
        ("call (415) 555-0132 now", "call [redacted:phone] now"),
        ("key sk-ant-api03-abcdefghijklmnop_-123", "key [redacted:api_key]"),
        ("Authorization: Bearer abc.def-ghi", "Authorization: Bearer [redacted:credential]"),
        ("Basic dXNlcjpwYXNz", "Basic [redacted:credential]"),
        ("postgresql://shadowd:pa55w0rd@db:5432/x", "postgresql://shadowd:[redacted:credential]@db:5432/x"),
    ],
)
def test_redactor_hides(text: str, expected: str) -> None:
    """Each built-in redactor replaces what it recognises with a marker naming the kind."""
    assert Redactor().text(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "card 4111 1111 1111 1112",  # fails the Luhn check: an order number, not a card
        "order 123456789012",  # an ungrouped digit run
        "on 2024-01-15 at 12:30",  # a date and a time
        "version 1.2.3.4",
        "the bearer of news",  # a word, not a credential
        "basic knowledge",
        "user@localhost",  # no domain: not an address anyone can write to
        "offset 42 of 1234567",
    ],
)
def test_redactor_leaves_near_misses(text: str) -> None:
    """Text that only resembles personal data or a credential is kept as it is."""
    assert Redactor().text(text) == text


def test_custom_patterns_and_json_keys() -> None:
    """Operator regexes apply; in JSON, values under secret-named keys are hidden, numbers stay."""
    redactor = Redactor.with_patterns([r"ACCT-\d{6}"])
    value = {
        "text": "account ACCT-123456 of a@b.io",
        "api_key": "anything",
        "max_tokens": 5,
        "items": [{"password": "x"}, "call +1 415 555 0132"],
    }
    assert redactor.json(value) == {
        "text": "account [redacted:custom] of [redacted:email]",
        "api_key": "[redacted:secret]",
        "max_tokens": 5,
        "items": [{"password": "[redacted:secret]"}, "call [redacted:phone]"],
    }


@pytest.mark.parametrize("pattern", ["(unclosed", "a*"])
def test_bad_custom_pattern_is_refused(pattern: str) -> None:
    """A regex that does not compile, or matches the empty string, is refused with its text."""
    with pytest.raises(ValueError, match="is not a valid|matches the empty string"):
        Redactor.with_patterns([pattern])


def test_personal_off_keeps_pii_but_hides_credentials() -> None:
    """The logging redactor (personal=False) hides credentials and known literals only."""
    redactor = Redactor(personal=False, literals=frozenset({"s3cret-value"}))
    assert redactor.text("a@b.io s3cret-value Bearer abcdefgh") == "a@b.io [redacted:secret] Bearer [redacted:credential]"


def test_luhn() -> None:
    """The Luhn check accepts a valid card number and refuses one digit off."""
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")


def test_cap_bytes_cuts_on_a_character_boundary() -> None:
    """A capped payload is at most the limit and still valid UTF-8; small payloads are untouched."""
    payload = ("é" * 10).encode()
    cut, was_cut = cap_bytes(payload, 5)
    assert was_cut and len(cut) <= 5 and cut.decode("utf-8") == "éé"
    assert cap_bytes(b"abc", 5) == (b"abc", False)


def test_redact_payload_keeps_invalid_bytes_visible() -> None:
    """Raw record bytes are redacted as text; bytes that are not UTF-8 stay as escapes, not dropped."""
    assert redact_payload(b'{"to": "a@b.io"}\xff', Redactor()) == b'{"to": "[redacted:email]"}\\xff'
