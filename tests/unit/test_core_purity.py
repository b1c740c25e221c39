"""shadowd/core stays pure: standard library and small pure libraries only, no I/O, clock or randomness."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[2] / "shadowd" / "core"

# Standard-library modules that reach outside the process, read the clock or draw randomness.
BANNED_STDLIB = frozenset(
    {
        "_thread",
        "asyncio",
        "concurrent",
        "ctypes",
        "dbm",
        "fileinput",
        "ftplib",
        "glob",
        "http",
        "importlib",
        "io",
        "logging",  # the core returns data; adapters log it
        "mmap",
        "multiprocessing",
        "os",
        "pathlib",
        "random",
        "secrets",
        "select",
        "selectors",
        "shelve",
        "shutil",
        "signal",
        "smtplib",
        "socket",
        "socketserver",
        "sqlite3",
        "ssl",
        "subprocess",
        "sys",
        "tempfile",
        "threading",
        "time",
        "urllib",
        "uuid",
        "webbrowser",
        "xmlrpc",
    }
)
# jsonschema_rs: the comparator's fast schema check (pure: schemas compile with offline=True); orjson: the
# hot path's JSON (fastjson.py, pure parsing and writing); jiter: a streamed tool input's partial JSON, parsed
# as the SDK parses it (message_stream.py). deepdiff is only a benchmark dependency, so the core may not
# import it.
ALLOWED_THIRD_PARTY = frozenset({"jiter", "jsonschema", "jsonschema_rs", "orjson"})
# Calls that read the clock or do I/O even though their module is allowed (datetime parses, too).
BANNED_CALL_ATTRIBUTES = frozenset({"now", "utcnow", "today"})
BANNED_BUILTINS = frozenset({"open", "input", "print", "eval", "exec", "__import__", "breakpoint"})


def _allowed(module: str) -> bool:
    top = module.split(".")[0]
    if module == "shadowd.core" or module.startswith("shadowd.core."):
        return True
    if top in ALLOWED_THIRD_PARTY:
        return True
    return top in sys.stdlib_module_names and top not in BANNED_STDLIB


def _resolve(node: ast.ImportFrom, package: str) -> str:
    if node.level == 0:
        return node.module or ""
    parts = package.split(".")
    base = parts[: len(parts) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def impurities(source: str, package: str = "shadowd.core") -> list[str]:
    """Every banned import or call in one module's source, as 'line: what'."""
    problems: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            problems += [f"{node.lineno}: import {a.name}" for a in node.names if not _allowed(a.name)]
        elif isinstance(node, ast.ImportFrom):
            module = _resolve(node, package)
            if module == "shadowd":  # `from shadowd import core` is fine; other siblings are not
                problems += [
                    f"{node.lineno}: from shadowd import {a.name}" for a in node.names if a.name != "core"
                ]
            elif not _allowed(module):
                problems.append(f"{node.lineno}: from {module} import ...")
        elif isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Attribute) and func.attr in BANNED_CALL_ATTRIBUTES:
                problems.append(f"{node.lineno}: .{func.attr}() reads the clock")
            elif isinstance(func, ast.Name) and func.id in BANNED_BUILTINS:
                problems.append(f"{node.lineno}: {func.id}()")
    return problems


def _core_modules() -> list[Path]:
    return sorted(CORE.rglob("*.py"))


def test_core_has_modules() -> None:
    """The purity scan looks at a real shadowd/core, not an empty folder."""
    assert any(path.name == "compare.py" for path in _core_modules())


@pytest.mark.parametrize("path", _core_modules(), ids=lambda path: str(path.relative_to(CORE)))
def test_core_module_is_pure(path: Path) -> None:
    """A core module imports only the allowed standard library, jsonschema, jsonschema_rs and shadowd.core."""
    package = ".".join(("shadowd", "core", *path.relative_to(CORE).parent.parts))
    assert impurities(path.read_text(encoding="utf-8"), package) == []


@pytest.mark.parametrize(
    "source",
    [
        "import asyncio",
        "import os.path",
        "from time import monotonic",
        "import uuid",
        "from random import random",
        "import anthropic",
        "from sqlalchemy import select",
        "from shadowd.adapters import kafka",
        "from shadowd import config",
        "from deepdiff import DeepDiff",
        "from .. import config",
        "from datetime import datetime\nstamp = datetime.now()",
        "data = open('x').read()",
    ],
)
def test_checker_flags_impure_source(source: str) -> None:
    """The checker itself catches banned imports, sibling packages, clock reads and file I/O."""
    assert impurities(source) != []


@pytest.mark.parametrize(
    "source",
    [
        "import json\nimport re\nfrom dataclasses import dataclass",
        "from jsonschema.validators import validator_for",
        "import jsonschema_rs",
        "from shadowd.core.findings import Finding",
        "from . import findings",
        "from .findings import Finding",
        "from datetime import datetime\nparsed = datetime.fromisoformat('2026-01-01T00:00:00+00:00')",
    ],
)
def test_checker_allows_pure_source(source: str) -> None:
    """The checker does not flag pure imports, relative core imports or clock-free datetime use."""
    assert impurities(source) == []
