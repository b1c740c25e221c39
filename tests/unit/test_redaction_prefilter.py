"""The credential prefilter: one search that must never let a credential through unredacted."""

from __future__ import annotations

import io
import json

import structlog

from shadowd.core.redaction import _AUTH_SCHEME, _CREDENTIALS, _MAYBE_CREDENTIAL, _URL_PASSWORD, Redactor
from shadowd.logging import configure_logging

CREDENTIALS = [
    "key sk-ant-api03-AbCdEfGh12345678 end", "sk-proj-abcdefghijklmnopqrstuvwx", "rk-abcdefghijklmnopqrstuvwx",
    "AKIAABCDEFGHIJKLMNOP", "ASIAABCDEFGHIJKLMNOP", "ghp_" + "a1" * 16, "xoxb-1234567890-abcdef",
    "Authorization: Bearer abc.def.ghi", "BEARER tok123456", "bAsIc dXNlcjpwYXNzd29yZA==",
    "postgresql://user:hunter2@db:5432/x", "https://a:b@host/",
]


def test_every_credential_passes_the_prefilter_and_is_redacted() -> None:
    """Golden: each credential shape is seen by the prefilter and redacted as before."""
    redactor = Redactor(personal=False)
    for text in CREDENTIALS:
        assert _MAYBE_CREDENTIAL.search(text), text
        matched = any(p.search(text) for _, p in _CREDENTIALS) or _AUTH_SCHEME.search(text) or _URL_PASSWORD.search(text)
        assert matched, text
        assert "[redacted:" in redactor.text(text), text


def test_plain_text_skips_the_patterns_and_is_unchanged() -> None:
    """Near miss: look-alikes without a credential's prefix stay as they are (and the patterns agree)."""
    redactor = Redactor(personal=False)
    for text in ["req-11-00042", "support-summary", "s k-ant-api03-AbCdEfGh12345678", "bearer", "a:b@host",
                 "AKI AABCDEFGHIJKLMNOP", "gh_" + "a" * 40]:
        assert redactor.text(text) == text
        assert not any(p.search(text) for _, p in _CREDENTIALS) and not _URL_PASSWORD.search(text)


def test_log_lines_still_hide_secret_named_keys_and_credentials() -> None:
    """A log event's secret-named key is hidden whatever its type, and a credential in a value is replaced."""
    stream = io.StringIO()
    configure_logging("info", "json", stream=stream)
    structlog.get_logger("t").info("event", api_key=12345, detail="Bearer abcdefghij", offset=7)
    line = json.loads(stream.getvalue().splitlines()[-1])
    assert line["api_key"] == "[redacted:secret]" and line["offset"] == 7
    assert line["detail"] == "Bearer [redacted:credential]"
