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


# code -> severity. Adding a code is an extension; renaming one breaks stored verdicts and users.
CODES: dict[str, Severity] = {
    "format.json_invalid": Severity.CRITICAL,
    "format.json_wrapped": Severity.MAJOR,
    "schema.violation": Severity.CRITICAL,
    "schema.key_missing": Severity.MAJOR,
    "schema.key_added": Severity.MINOR,
    "schema.type_changed": Severity.MAJOR,
    "tool.call_missing": Severity.MAJOR,
    "tool.call_unexpected": Severity.MAJOR,
    "tool.name_changed": Severity.MAJOR,
    "tool.input_invalid": Severity.CRITICAL,
    "tool.count_changed": Severity.MINOR,  # extension: both sides call tools, different counts
    "stop.truncated": Severity.CRITICAL,
    "stop.refusal": Severity.CRITICAL,
    "style.markdown_drift": Severity.MINOR,
    "length.drift": Severity.MINOR,
    "error.candidate": Severity.CRITICAL,
    "value.changed": Severity.MAJOR,  # v1.1: a stable scalar differs (SPEC §8)
    "quality.unacceptable": Severity.MAJOR,  # v1.1: the judge graded only the candidate unacceptable
}


@dataclass(frozen=True, slots=True)
class Finding:
    """One difference. `noise` is True when the baseline shows it against its own second replay."""

    code: str
    severity: Severity
    detail: str
    path: str | None = None
    noise: bool = False

    @classmethod
    def of(cls, code: str, detail: str, path: str | None = None) -> Finding:
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
            code=str(data["code"]),
            severity=Severity(data["severity"]),
            detail=str(data.get("detail", "")),
            path=data.get("path"),
            noise=bool(data.get("noise", False)),
        )
