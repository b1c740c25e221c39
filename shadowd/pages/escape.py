"""Stored data into HTML: escaped, with NUL, other controls and lone surrogates made visible and harmless."""

from __future__ import annotations

import html
import re
from typing import Any
from urllib.parse import quote

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def clean(value: Any) -> str:
    """Text a browser shows literally: lone surrogates become U+FFFD, controls visible escapes."""
    text = str(value).encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def esc(value: Any) -> str:
    """Escaped for HTML text and attribute values (quotes included)."""
    return html.escape(clean(value), quote=True)


def url_part(value: Any) -> str:
    """One path segment of a link (a request id may hold '/', '?', '#' or spaces)."""
    return esc(quote(clean(value), safe=""))
