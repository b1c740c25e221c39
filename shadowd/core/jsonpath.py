"""Route `ignore_paths` and `value_paths` (SPEC §3, §8): a JSONPath subset compiled to a regex over shape keys."""

from __future__ import annotations

import functools
import re

from shadowd.core.shape import ARRAY_ITEM, shape_token

_PATH_TOKEN = re.compile(
    r"""(?P<descend>\.\.)
      | \.(?P<star>\*)
      | \.(?P<name>[^.\[\]]+)
      | \[\s*(?P<bstar>\*)\s*\]
      | \[\s*(?P<index>-?\d+)\s*\]
      | \[\s*'(?P<sq>(?:[^'\\]|\\.)*)'\s*\]
      | \[\s*"(?P<dq>(?:[^"\\]|\\.)*)"\s*\]""",
    re.VERBOSE,
)
_ANY_SEGMENT = "[^/]+"


def ignore_path_pattern(expr: str) -> str | None:
    """The regex (over shape keys) for one ignore_paths entry; None when it is not understood.

    Accepts `$.a.b`, `$.a[*].b`, `$['x']`, `$.a.b[0]` (an index means every item: shapes do not
    tell items apart), `.*` (any child) and `..name` (at any depth). The leading `$` is optional.
    """
    if not isinstance(expr, str):
        return None
    rest = expr.strip()
    if rest.startswith("$"):
        rest = rest[1:]
    elif rest and rest[0] not in ".[":
        rest = "." + rest
    parts: list[str] = []
    descend = False
    pos = 0
    while pos < len(rest):
        match = _PATH_TOKEN.match(rest, pos)
        if match is None:
            return None
        pos = match.end()
        if match.group("descend"):
            if descend:
                return None
            descend = True
            if pos < len(rest) and rest[pos] not in ".[":
                rest = rest[:pos] + "." + rest[pos:]  # "$..name" is "any depth" then ".name"
            continue
        if match.group("star") or match.group("bstar"):
            segment = _ANY_SEGMENT
        elif match.group("index") is not None:
            segment = re.escape(ARRAY_ITEM)
        else:
            raw = match.group("name")
            if raw is None:
                quoted = match.group("sq") if match.group("sq") is not None else match.group("dq")
                raw = re.sub(r"\\(.)", r"\1", quoted)
            segment = re.escape(shape_token(raw))
        parts.append(f"(?:/{_ANY_SEGMENT})*/{segment}" if descend else f"/{segment}")
        descend = False
    if descend:
        return None
    return "".join(parts) + "(?:/|$)"


@functools.lru_cache(maxsize=1024)
def compile_ignore_paths(exprs: tuple[str, ...]) -> re.Pattern[str] | None:
    """One regex matching a shape key that any entry covers (the entry's path or below it)."""
    patterns = [p for p in (ignore_path_pattern(expr) for expr in exprs) if p is not None]
    if not patterns:
        return None
    return re.compile("|".join(f"(?:{p})" for p in patterns))
