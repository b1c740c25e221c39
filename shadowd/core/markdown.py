"""The structure of a markdown answer (headings, lists, tables, code fences), for style.markdown_drift."""

from __future__ import annotations

import re
from dataclasses import dataclass

_ATX_HEADING = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]|$)")
_SETEXT_UNDERLINE = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_BULLET = re.compile(r"^[ \t]*[-*+][ \t]+\S")
_ORDERED = re.compile(r"^[ \t]*\d{1,9}[.)][ \t]+\S")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_TABLE_DELIMITER = re.compile(r"^[ \t]*\|?[ \t]*:?-+:?[ \t]*(?:\|[ \t]*:?-+:?[ \t]*)+\|?[ \t]*$")
_THEMATIC_BREAK = re.compile(r"^ {0,3}(?:(?:-[ \t]*){3,}|(?:\*[ \t]*){3,}|(?:_[ \t]*){3,})$")


@dataclass(frozen=True, slots=True)
class MarkdownSignature:
    heading_levels: frozenset[int] = frozenset()
    bullet_list: bool = False
    ordered_list: bool = False
    table: bool = False
    code_fence: bool = False

    def changes_to(self, other: MarkdownSignature) -> list[str]:
        """Human phrases for what `other` does differently; empty when the structures match."""
        changes: list[str] = []
        if self.heading_levels != other.heading_levels:
            changes.append(
                f"heading levels {_levels(self.heading_levels)} -> {_levels(other.heading_levels)}"
            )
        for label, before, after in (
            ("bullet list", self.bullet_list, other.bullet_list),
            ("numbered list", self.ordered_list, other.ordered_list),
            ("table", self.table, other.table),
            ("code fence", self.code_fence, other.code_fence),
        ):
            if before != after:
                changes.append(f"{label} {'added' if after else 'removed'}")
        return changes


def _levels(levels: frozenset[int]) -> str:
    return "{" + ", ".join(f"h{level}" for level in sorted(levels)) + "}" if levels else "none"


def markdown_signature(text: str) -> MarkdownSignature:
    """What structure a markdown text uses. Lines inside code fences count only as a fence."""
    levels: set[int] = set()
    bullet = ordered = table = fence = False
    open_fence: str | None = None
    previous = ""  # the previous line outside fences, for setext headings and table headers
    for line in text.splitlines():
        fence_match = _FENCE.match(line)
        if open_fence is not None:
            if (
                fence_match
                and fence_match.group(1)[0] == open_fence[0]
                and (len(fence_match.group(1)) >= len(open_fence))
            ):
                open_fence = None
            previous = ""
            continue
        if fence_match:
            open_fence = fence_match.group(1)
            fence = True
            previous = ""
            continue

        heading = _ATX_HEADING.match(line)
        if heading:
            levels.add(len(heading.group(1)))
        elif "|" in previous and "-" in line and _TABLE_DELIMITER.match(line):
            table = True
        elif previous.strip() and _SETEXT_UNDERLINE.match(line) and not _is_list_item(previous):
            levels.add(1 if line.strip()[0] == "=" else 2)
        elif _THEMATIC_BREAK.match(line):
            pass  # "***" or "- - -" is a rule, not a bullet
        elif _BULLET.match(line):
            bullet = True
        elif _ORDERED.match(line):
            ordered = True
        previous = line
    return MarkdownSignature(frozenset(levels), bullet, ordered, table, fence)


def _is_list_item(line: str) -> bool:
    return bool(_BULLET.match(line) or _ORDERED.match(line))
