"""The store port is the whole store: both adapters implement all of it, and only adapters import SQLAlchemy."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

from shadowd.adapters.memory_store import MemoryStore
from shadowd.adapters.sql_store import SqlVerdictStore
from shadowd.ports import DeadLetterStore, RolloutStore, StoreAdmin, VerdictStore

SHADOWD = Path(__file__).resolve().parents[2] / "shadowd"


def _protocol_methods(protocol: type) -> set[str]:
    return {name for name, value in vars(protocol).items() if callable(value) and not name.startswith("_")}


def test_both_adapters_implement_every_method_of_the_port() -> None:
    """Every method of VerdictStore, RolloutStore, DeadLetterStore and StoreAdmin exists on the SQL store and
    on its twin, with the port's parameter names."""
    nouns = (VerdictStore, RolloutStore, DeadLetterStore, StoreAdmin)
    methods = set().union(*(_protocol_methods(p) for p in nouns))
    assert {"save", "rollout_totals", "record_decision", "list_dead_letters", "leadership"} <= methods
    for adapter in (SqlVerdictStore, MemoryStore):
        for name in sorted(methods):
            implemented = getattr(adapter, name, None)
            assert implemented is not None, f"{adapter.__name__} lacks {name}"
            owner = next(p for p in nouns if name in vars(p))
            wanted = list(inspect.signature(vars(owner)[name]).parameters)
            got = list(inspect.signature(implemented).parameters)
            assert got[: len(wanted)] == wanted, (adapter.__name__, name, got, wanted)


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node except those under `if TYPE_CHECKING:` (type-only imports never run)."""
    nodes: list[ast.AST] = []
    pending = [tree]
    while pending:
        node = pending.pop()
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            pending.extend(node.orelse)
            continue
        nodes.append(node)
        pending.extend(ast.iter_child_nodes(node))
    return nodes


def test_only_adapters_import_sqlalchemy() -> None:
    """No module outside shadowd/adapters/ imports SQLAlchemy when it runs: services and surfaces go through
    the port (a type-only import under TYPE_CHECKING is allowed)."""
    offenders = []
    for path in sorted(SHADOWD.rglob("*.py")):
        if SHADOWD / "adapters" in path.parents:
            continue
        for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(name == "sqlalchemy" or name.startswith("sqlalchemy.") for name in names):
                offenders.append(str(path.relative_to(SHADOWD)))
    assert offenders == []
