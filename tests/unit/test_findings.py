"""Finding codes: the StrEnum holds exactly the codes SPEC fixes, and findings serialise as plain text."""

from __future__ import annotations

import json
import re
from pathlib import Path

from shadowd.core.findings import CODES, Code, Finding, Severity

SPEC = Path(__file__).resolve().parents[2] / "docs" / "SPEC.md"
# A row of a codes table: | `schema.key_missing` | major | when ... |  (a version tag may follow the code)
_ROW = re.compile(r"^\| `([a-z]+\.[a-z_]+)`(?: \*v[\d.]+\*)? \| (critical|major|minor) \|", re.MULTILINE)


def test_codes_are_the_specs() -> None:
    """Every code and severity in SPEC's tables is a Code with that severity, and there are no others."""
    table = {code: Severity(severity) for code, severity in _ROW.findall(SPEC.read_text(encoding="utf-8"))}
    # tool.count_changed is defined in SPEC §8's prose ("is `tool.count_changed` (minor)"), not a table.
    table["tool.count_changed"] = Severity.MINOR
    assert len(table) >= 18
    assert {code.value: severity for code, severity in CODES.items()} == table
    assert set(CODES) == set(Code)


def test_finding_json_is_plain_text() -> None:
    """A finding's JSON shows its code as the same string as before codes became an enum."""
    finding = Finding.of(Code.SCHEMA_KEY_MISSING, "customer.tier is gone", "/customer/tier")
    assert json.dumps(finding.to_dict()) == (
        '{"code": "schema.key_missing", "severity": "major", "path": "/customer/tier", '
        '"detail": "customer.tier is gone", "noise": false}'
    )
    assert f"{finding.code}" == str(finding.code) == "schema.key_missing"


def test_stored_findings_read_back_as_codes() -> None:
    """A stored finding reads back with its Code; a code this version does not know stays its text."""
    known = Finding.from_dict({"code": "value.changed", "severity": "major", "detail": "x"})
    assert known.code is Code.VALUE_CHANGED
    unknown = Finding.from_dict({"code": "text.changed", "severity": "minor", "detail": "x"})
    assert unknown.code == "text.changed" and not isinstance(unknown.code, Code)
