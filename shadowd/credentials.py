"""Secrets come only from the environment: secret-looking config keys are refused, URLs print without passwords."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

# A key is secret when one of its words is one of these, or two adjacent words form a pair below.
_SECRET_WORDS = frozenset({
    "password", "passwd", "pwd", "passphrase", "secret", "token", "apikey", "credential", "credentials",
})
_SECRET_PAIRS = frozenset({("api", "key"), ("private", "key"), ("access", "key"), ("secret", "key"),
                           ("auth", "key"), ("client", "secret")})
# Mapping keys chosen by the operator (route names, model names) are names, not settings.
_NAMED_CHILDREN = (("routes",), ("models", "profiles"))


def is_secret_key(key: str) -> bool:
    """True for `password`, `sasl_plain_password`, `apiKey`, `ssl-password`...; never for a `*_env` key."""
    words = [w for w in re.split(r"[^a-z0-9]+", re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", key).lower()) if w]
    if not words or words[-1] == "env":
        return False
    if any(word in _SECRET_WORDS for word in words):
        return True
    return any(pair in _SECRET_PAIRS for pair in zip(words, words[1:], strict=False))


def secret_keys(raw: Any) -> Iterator[str]:
    """The dotted path of every secret-looking key in a parsed YAML document, in document order."""
    yield from _walk(raw, ())


def _walk(node: Any, path: tuple[str, ...]) -> Iterator[str]:
    if isinstance(node, dict):
        names_only = path in _NAMED_CHILDREN
        for key, value in node.items():
            if not names_only and isinstance(key, str) and is_secret_key(key):
                yield ".".join((*path, key))
            yield from _walk(value, (*path, str(key)))
    elif isinstance(node, list):
        for index, item in enumerate(node):
            label = path[:-1] + (f"{path[-1]}[{index}]",) if path else (f"[{index}]",)
            yield from _walk(item, label)


def env_form(key: str) -> str:
    """`kafka.client.sasl_plain_password` -> `sasl_plain_password_env: NAME_OF_ENV_VAR`."""
    return f"{key.rsplit('.', 1)[-1]}_env: NAME_OF_ENV_VAR"


# The password runs to the last `@` before the query, so an unescaped `@` or `/` in it is hidden too.
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<password>[^\s?#]*)@")
_QUERY_SECRET = re.compile(r"(?P<key>[?&][A-Za-z_]*(?:password|secret|token)=)[^&#\s]*", re.IGNORECASE)


def url_password(url: str) -> str | None:
    """The password in a URL's userinfo, so the log redactor can also hide it where it appears alone."""
    match = _USERINFO.search(url)
    return match["password"] or None if match else None


def redact_url(url: str) -> str:
    """The URL with any password (userinfo or query) replaced by `***`; works on URLs no parser accepts."""
    url = _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:***@", url)
    return _QUERY_SECRET.sub(lambda m: f"{m['key']}***", url)


__all__ = ["env_form", "is_secret_key", "redact_url", "secret_keys", "url_password"]
