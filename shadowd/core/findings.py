"""The closed set of finding codes and verdict statuses (SPEC §3)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Severity(StrEnum):
    CRITICAL = "critical"
    MAJOR = "major"
    MINOR = "minor"


class Status(StrEnum):
    PASS = "pass"
    REGRESSION = "regression"
    NOISE = "noise"
    ERROR = "error"
    SKIPPED = "skipped"


class Code(StrEnum):
    """The finding codes SPEC §3 fixes. Adding one is an extension; renaming one breaks stored
    verdicts and users. A member is its string: JSON, SQL and metrics see the same text as before."""

    FORMAT_JSON_INVALID = "format.json_invalid"
    FORMAT_JSON_WRAPPED = "format.json_wrapped"
    SCHEMA_VIOLATION = "schema.violation"
    SCHEMA_KEY_MISSING = "schema.key_missing"
    SCHEMA_KEY_ADDED = "schema.key_added"
    SCHEMA_TYPE_CHANGED = "schema.type_changed"
    TOOL_CALL_MISSING = "tool.call_missing"
    TOOL_CALL_UNEXPECTED = "tool.call_unexpected"
    TOOL_NAME_CHANGED = "tool.name_changed"
    TOOL_INPUT_INVALID = "tool.input_invalid"
    TOOL_COUNT_CHANGED = "tool.count_changed"  # extension: both sides call tools, different counts
    STOP_TRUNCATED = "stop.truncated"
    STOP_REFUSAL = "stop.refusal"
    STYLE_MARKDOWN_DRIFT = "style.markdown_drift"
    LENGTH_DRIFT = "length.drift"
    ERROR_CANDIDATE = "error.candidate"
    VALUE_CHANGED = "value.changed"  # v1.1: a stable scalar differs (SPEC §8)
    QUALITY_UNACCEPTABLE = "quality.unacceptable"  # v1.1: the judge graded only the candidate unacceptable


CODES: dict[Code, Severity] = {
    Code.FORMAT_JSON_INVALID: Severity.CRITICAL,
    Code.FORMAT_JSON_WRAPPED: Severity.MAJOR,
    Code.SCHEMA_VIOLATION: Severity.CRITICAL,
    Code.SCHEMA_KEY_MISSING: Severity.MAJOR,
    Code.SCHEMA_KEY_ADDED: Severity.MINOR,
    Code.SCHEMA_TYPE_CHANGED: Severity.MAJOR,
    Code.TOOL_CALL_MISSING: Severity.MAJOR,
    Code.TOOL_CALL_UNEXPECTED: Severity.MAJOR,
    Code.TOOL_NAME_CHANGED: Severity.MAJOR,
    Code.TOOL_INPUT_INVALID: Severity.CRITICAL,
    Code.TOOL_COUNT_CHANGED: Severity.MINOR,
    Code.STOP_TRUNCATED: Severity.CRITICAL,
    Code.STOP_REFUSAL: Severity.CRITICAL,
    Code.STYLE_MARKDOWN_DRIFT: Severity.MINOR,
    Code.LENGTH_DRIFT: Severity.MINOR,
    Code.ERROR_CANDIDATE: Severity.CRITICAL,
    Code.VALUE_CHANGED: Severity.MAJOR,
    Code.QUALITY_UNACCEPTABLE: Severity.MAJOR,
}


@dataclass(frozen=True, slots=True)
class Finding:
    """One difference. `noise` is True when the baseline shows it against its own second replay."""

    code: str  # a Code; typed str so a stored verdict with a code this version lacks still reads
    severity: Severity
    detail: str
    path: str | None = None
    noise: bool = False

    @classmethod
    def of(cls, code: Code, detail: str, path: str | None = None) -> Finding:
        return cls(code=code, severity=CODES[code], detail=detail, path=path)

    @property
    def blocking(self) -> bool:
        """Critical or major and not explained by noise: what makes a verdict a regression."""
        return self.severity is not Severity.MINOR and not self.noise

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "severity": self.severity.value,
            "path": self.path,
            "detail": self.detail,
            "noise": self.noise,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Finding:
        return cls(
            code=_code(str(data["code"])),
            severity=Severity(data["severity"]),
            detail=str(data.get("detail", "")),
            path=data.get("path"),
            noise=bool(data.get("noise", False)),
        )


def _code(text: str) -> str:
    return Code(text) if text in Code._value2member_map_ else text
