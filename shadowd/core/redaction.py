"""Redaction of personal data and credentials in text and JSON, before anything is stored or logged.

Built-in redactors find e-mail addresses, phone numbers, payment card numbers (Luhn-checked, so an
order number of the same length survives), API keys and bearer credentials; operators add regexes.
Each match becomes `[redacted:<kind>]`, so a reader still sees that something was there.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from shadowd.core.findings import Finding
from shadowd.core.results import SideResult

StoreOutputs = Literal["full", "redacted", "none"]
STORE_OUTPUTS: tuple[StoreOutputs, ...] = ("full", "redacted", "none")

# Credentials first: a key may contain digit runs that would otherwise look like a phone number.
_CREDENTIALS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("api_key", re.compile(r"\bsk-ant-[A-Za-z0-9_\-]{8,}")),
    ("api_key", re.compile(r"\b(?:sk|pk|rk)-[A-Za-z0-9_\-]{20,}")),
    ("api_key", re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b")),
    ("api_key", re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}\b")),
    ("api_key", re.compile(r"\bxox[abprs]-[A-Za-z0-9\-]{10,}")),
)
# The scheme word stays, the credential goes: "Bearer [redacted:credential]".
_AUTH_SCHEME = re.compile(
    r"\b((?i:bearer))(\s+)[^\s\"',;]{6,}|\b((?i:basic))(\s+)(?=[A-Za-z0-9+/]*(?:[0-9=+/]|[a-z][A-Z]))[A-Za-z0-9+/]{8,}=*"
)
# The password of a URL's user info stays out: postgresql://user:[redacted:credential]@host
_URL_PASSWORD = re.compile(r"(://[^\s:/@]*):[^\s@/]+@")
# What every pattern above needs to find in a text before it can match (each starts with one of these):
# one search instead of seven substitutions for the common text that holds no credential at all.
_MAYBE_CREDENTIAL = re.compile(r"sk-|pk-|rk-|AKIA|ASIA|gh[pousr]_|xox[abprs]-|(?i:bearer|basic)|://")
_EMAIL = re.compile(r"[A-Za-z0-9._%+\-]{1,64}@[A-Za-z0-9\-]{1,63}(?:\.[A-Za-z0-9\-]{1,63})*\.[A-Za-z]{2,24}")
# 13 to 19 digits, optionally grouped by single spaces or dashes; confirmed by the Luhn check.
_CARD = re.compile(r"(?<![\d])\d(?:[ \-]?\d){12,18}(?![\d])")
# International (+CC ...) or grouped national numbers, at least 9 digits in all.
_PHONE = re.compile(
    r"(?<![\w+])(?:\+\d{1,3}[ .\-]?)?(?:\(\d{1,4}\)[ .\-]?)?\d{2,4}(?:[ .\-]\d{2,4}){1,4}(?![\w])"
    r"|(?<![\w+])\+\d{9,15}(?!\w)"
)
# Keys whose values are credentials wherever they appear in a JSON object or a log event.
SECRET_KEY = re.compile(
    r"(?i)(?:^|[_\-.])(?:authorization|token|api[_\-]?key|password|passwd|secret|cookie|credentials?)$"
    r"|^(?:x-api-key|set-cookie|proxy-authorization)$"
)


def luhn_valid(digits: str) -> bool:
    """The payment-card checksum over a string of digits."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if index % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def _digits(text: str) -> str:
    return "".join(c for c in text if c.isdigit())


@dataclass(frozen=True)
class Redactor:
    """Replaces what it recognises in text; `personal` adds the PII patterns to the credential ones.

    `literals` are exact secrets known to the process (its own tokens, its API key).
    """

    personal: bool = True
    patterns: tuple[re.Pattern[str], ...] = ()
    literals: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def with_patterns(cls, patterns: Iterable[str], *, personal: bool = True) -> Redactor:
        """Compile operator regexes; a bad one raises ValueError naming it."""
        compiled = []
        for pattern in patterns:
            try:
                compiled.append(re.compile(pattern))
            except re.error as exc:
                raise ValueError(f"{pattern!r} is not a valid regular expression: {exc}") from None
            if compiled[-1].match(""):
                raise ValueError(f"{pattern!r} matches the empty string, so it would redact nothing useful")
        return cls(personal=personal, patterns=tuple(compiled))

    def text(self, value: str) -> str:
        if not value:
            return value
        for literal in self.literals:
            if literal and literal in value:
                value = value.replace(literal, "[redacted:secret]")
        if _MAYBE_CREDENTIAL.search(value):
            for kind, pattern in _CREDENTIALS:
                value = pattern.sub(f"[redacted:{kind}]", value)
            value = _AUTH_SCHEME.sub(_scheme_kept, value)
            value = _URL_PASSWORD.sub(r"\1:[redacted:credential]@", value)
        for pattern in self.patterns:
            value = pattern.sub("[redacted:custom]", value)
        if self.personal:
            value = _EMAIL.sub("[redacted:email]", value)
            value = _CARD.sub(_card, value)
            value = _PHONE.sub(_phone, value)
        return value

    def json(self, value: Any, depth: int = 0) -> Any:
        """The same value with every string redacted, and every secret-named key's value hidden."""
        if isinstance(value, str):
            return self.text(value)
        if depth > 200:  # deeper than any JSON the pipeline accepts; cut rather than recurse on
            return "[redacted:too_deep]"
        if isinstance(value, dict):
            return {
                key: "[redacted:secret]" if isinstance(key, str) and SECRET_KEY.search(key) and value[key]
                else self.json(item, depth + 1)
                for key, item in value.items()
            }
        if isinstance(value, list | tuple):
            return [self.json(item, depth + 1) for item in value]
        return value


def _scheme_kept(match: re.Match[str]) -> str:
    scheme, space = (match.group(1), match.group(2)) if match.group(1) else (match.group(3), match.group(4))
    return f"{scheme}{space}[redacted:credential]"


def _card(match: re.Match[str]) -> str:
    digits = _digits(match.group(0))
    return "[redacted:card]" if 13 <= len(digits) <= 19 and luhn_valid(digits) else match.group(0)


def _phone(match: re.Match[str]) -> str:
    text = match.group(0)
    digits = _digits(text)
    if not 9 <= len(digits) <= 15:
        return text
    # A date (2024-01-15) or a time is not a phone number; a dotted version rarely is either.
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text) or re.fullmatch(r"\d+(?:\.\d+)+", text):
        return text
    return "[redacted:phone]"


def cap_bytes(payload: bytes, max_bytes: int) -> tuple[bytes, bool]:
    """At most `max_bytes` of `payload`, cut on a UTF-8 character boundary; and whether it was cut."""
    if len(payload) <= max_bytes:
        return payload, False
    cut = payload[:max_bytes]
    # Step back over a partial multi-byte character (at most 3 continuation bytes).
    for back in range(min(3, len(cut))):
        byte = cut[len(cut) - 1 - back]
        if byte & 0xC0 != 0x80:
            if byte >= 0xC0:  # a lead byte whose continuation was cut off
                cut = cut[: len(cut) - 1 - back]
            break
    return cut, True


def redact_payload(payload: bytes, redactor: Redactor) -> bytes:
    """Raw record bytes with their text redacted (invalid UTF-8 kept as escapes, never dropped silently)."""
    text = payload.decode("utf-8", errors="backslashreplace")
    return redactor.text(text).encode("utf-8", errors="backslashreplace")


def protect_side(side: SideResult | None, mode: StoreOutputs, redactor: Redactor) -> SideResult | None:
    """What of one side may be stored: everything (`full`), its text and tool inputs redacted
    (`redacted`), or no content at all (`none`; model, usage, latency, cost and errors stay)."""
    if side is None or mode == "full":
        return side
    content: tuple[dict[str, Any], ...] = ()
    if mode == "redacted":
        content = tuple(redactor.json(block) for block in side.content)
    error = redactor.text(side.error) if side.error else side.error
    return replace(side, content=content, error=error)


def protect_findings(findings: tuple[Finding, ...], mode: StoreOutputs, redactor: Redactor) -> tuple[Finding, ...]:
    """Finding details quote the outputs; outside `full` they are redacted (codes and paths stay)."""
    if mode == "full":
        return findings
    return tuple(replace(f, detail=redactor.text(f.detail)) for f in findings)


def protect_dead_letter(payload: bytes, mode: StoreOutputs, redactor: Redactor, max_bytes: int) -> tuple[bytes, str]:
    """A dead letter's payload as it may be kept, and a note for its detail ('' when kept whole).

    `full` keeps the bytes, `redacted` redacts their text (the bytes are unchanged when nothing
    matched), `none` keeps no payload; in every mode the result is cut to `max_bytes`.
    """
    notes = []
    kept = payload
    if mode == "none" and payload:
        kept = b""
        notes.append(f"payload of {len(payload)} bytes not kept (dead_letters.payload: none)")
    elif mode == "redacted":
        redacted = redact_payload(payload, redactor)
        if redacted != payload.decode("utf-8", errors="backslashreplace").encode("utf-8", errors="backslashreplace"):
            kept = redacted
            notes.append("payload redacted")
    kept, cut = cap_bytes(kept, max_bytes)
    if cut:
        notes.append(f"payload cut to {len(kept)} of {len(payload)} bytes")
    return kept, "; ".join(notes)


__all__ = [
    "SECRET_KEY",
    "STORE_OUTPUTS",
    "Redactor",
    "StoreOutputs",
    "cap_bytes",
    "luhn_valid",
    "protect_dead_letter",
    "protect_findings",
    "protect_side",
    "redact_payload",
]
