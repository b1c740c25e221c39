"""Imports only point down the layers (docs/ARCHITECTURE.md): core, ports, adapters, services, surfaces, wiring.

Every module under shadowd/ is placed in LAYER below (shadowd/core/ by its directory); a new module
fails test_every_module_is_placed until it is given a layer. Imports are read from the source (as
test_core_purity.py does), including imports inside functions.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "shadowd"

CORE, PORTS, ADAPTERS, SERVICES, SURFACES, WIRING, ENTRY = range(7)
NAMES = ("core", "ports", "adapters", "services", "surfaces", "wiring", "entry")

# Module -> layer. shadowd.core.* is CORE by its directory (test_core_purity.py keeps it pure).
LAYER: dict[str, int] = {
    "shadowd": CORE,  # the package itself: the version string
    # ports: the protocols outside systems are reached through, and the plain types, settings,
    # clock and logging set-up that every layer above speaks in.
    "shadowd.ports": PORTS,
    "shadowd.ports_kafka": PORTS,
    "shadowd.records": PORTS,
    "shadowd.clock": PORTS,
    "shadowd.config": PORTS,
    "shadowd.retention_config": PORTS,
    "shadowd.credentials": PORTS,
    "shadowd.auth": PORTS,
    "shadowd.metrics": PORTS,
    "shadowd.logging": PORTS,
    "shadowd.timeparse": PORTS,
    # adapters: one per outside system (PostgreSQL/SQLite, Kafka, the Messages API).
    "shadowd.adapters": ADAPTERS,
    "shadowd.adapters.anthropic_client": ADAPTERS,
    "shadowd.adapters.database_url": ADAPTERS,
    "shadowd.adapters.kafka": ADAPTERS,
    "shadowd.adapters.kafka_sink": ADAPTERS,
    "shadowd.adapters.memory_kafka": ADAPTERS,
    "shadowd.adapters.messages_wire": ADAPTERS,
    "shadowd.adapters.sql_batches": ADAPTERS,
    "shadowd.adapters.sql_retention": ADAPTERS,
    "shadowd.adapters.sql_schema": ADAPTERS,
    "shadowd.adapters.sql_store": ADAPTERS,
    "shadowd.adapters.sql_store.base": ADAPTERS,
    "shadowd.adapters.sql_store.dead_letters": ADAPTERS,
    "shadowd.adapters.sql_store.engine": ADAPTERS,
    "shadowd.adapters.sql_store.errors": ADAPTERS,
    "shadowd.adapters.sql_store.reads": ADAPTERS,
    "shadowd.adapters.sql_store.rollouts": ADAPTERS,
    "shadowd.adapters.sql_store.rows": ADAPTERS,
    "shadowd.adapters.sql_store.writes": ADAPTERS,
    "shadowd.adapters.memory_store": ADAPTERS,  # the store's in-memory twin
    # The mirror client library applications embed (its Kafka producer is its adapter).
    "shadowd.mirror": ADAPTERS,
    "shadowd.mirror.assemble": ADAPTERS,
    "shadowd.mirror.clients": ADAPTERS,
    "shadowd.mirror.publisher": ADAPTERS,
    "shadowd.mirror.demo_traffic": ADAPTERS,
    "shadowd.demo": ADAPTERS,
    "shadowd.demo.traffic": ADAPTERS,  # a source of envelopes for the demo and benchmarks
    # The fake Messages API: a stand-in for an outside system, a program of its own.
    "shadowd.fakemodel": ADAPTERS,
    "shadowd.fakemodel.api_rules": ADAPTERS,
    "shadowd.fakemodel.batch_plan": ADAPTERS,
    "shadowd.fakemodel.batches": ADAPTERS,
    "shadowd.fakemodel.behaviours": ADAPTERS,
    "shadowd.fakemodel.capacity": ADAPTERS,
    "shadowd.fakemodel.digest": ADAPTERS,
    "shadowd.fakemodel.generate": ADAPTERS,
    "shadowd.fakemodel.prompt_cache": ADAPTERS,
    "shadowd.fakemodel.replies": ADAPTERS,
    "shadowd.fakemodel.request_view": ADAPTERS,
    "shadowd.fakemodel.schema_instance": ADAPTERS,
    "shadowd.fakemodel.server": ADAPTERS,
    "shadowd.fakemodel.words": ADAPTERS,
    # services: the daemon's and the CLI's work, over ports and adapters.
    "shadowd.pipeline": SERVICES,
    "shadowd.record_guard": SERVICES,
    "shadowd.consumer": SERVICES,
    "shadowd.commit_tracker": SERVICES,
    "shadowd.dlq_publisher": SERVICES,
    "shadowd.writer": SERVICES,
    "shadowd.promoter": SERVICES,
    "shadowd.batch": SERVICES,
    "shadowd.judge": SERVICES,
    "shadowd.report": SERVICES,
    "shadowd.retention": SERVICES,
    "shadowd.routing": SERVICES,
    "shadowd.router": SERVICES,
    "shadowd.replay_file": SERVICES,
    # surfaces: what people and controllers read (HTTP API, HTML pages, terminal tables, LiteLLM).
    "shadowd.render": SURFACES,
    "shadowd.pages": SURFACES,
    "shadowd.pages.base": SURFACES,
    "shadowd.pages.escape": SURFACES,
    "shadowd.pages.report_page": SURFACES,
    "shadowd.pages.site": SURFACES,
    "shadowd.pages.spend_section": SURFACES,
    "shadowd.pages.svg": SURFACES,
    "shadowd.pages.verdict_page": SURFACES,
    "shadowd.http": SURFACES,
    "shadowd.http.app": SURFACES,
    "shadowd.http.argo": SURFACES,
    "shadowd.http.contracts": SURFACES,
    "shadowd.http.control": SURFACES,
    "shadowd.http.dead_letters": SURFACES,
    "shadowd.http.errors": SURFACES,
    "shadowd.http.flagger": SURFACES,
    "shadowd.http.health": SURFACES,
    "shadowd.http.middleware": SURFACES,
    "shadowd.http.models": SURFACES,
    "shadowd.http.openapi": SURFACES,
    "shadowd.http.pages": SURFACES,
    "shadowd.http.params": SURFACES,
    "shadowd.http.prometheus": SURFACES,
    "shadowd.http.registry": SURFACES,
    "shadowd.http.rollouts": SURFACES,
    "shadowd.http.state": SURFACES,
    "shadowd.http.verdicts": SURFACES,
    "shadowd.integrations": SURFACES,
    "shadowd.integrations.litellm": SURFACES,
    "shadowd.integrations.litellm_proxy": SURFACES,
    # wiring: builds the adapters and services and runs them.
    "shadowd.wiring": WIRING,
    "shadowd.daemon": WIRING,
    "shadowd.serve": WIRING,
    "shadowd.demo.run": WIRING,
    # entry: the command line parses arguments and hands them to the wiring (its query commands
    # are a surface too, but it must sit above the wiring it calls).
    "shadowd.cli": ENTRY,
    "shadowd.__main__": ENTRY,
}

# (module, imported module or outside package) -> why it is still allowed. Each is work left over.
KNOWN_EXCEPTIONS: dict[tuple[str, str], str] = {}

# Import cycles (sorted module names) -> why they are still there.
KNOWN_CYCLES: dict[tuple[str, ...], str] = {}

OUTSIDE_ADAPTERS_ONLY = ("sqlalchemy", "alembic", "aiokafka")
MAX_LINES = 400
# A longer file states why on one of its first lines: `# Over 400 lines: <reason>`.
LONG_FILE_MARK = "Over 400 lines:"
KNOWN_LONG_FILES: dict[str, str] = {}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


MODULES = _modules()


def layer_of(module: str) -> int | None:
    if module == "shadowd.core" or module.startswith("shadowd.core."):
        return CORE
    return LAYER.get(module)


def imports(module: str, path: Path) -> Iterator[tuple[int, str]]:
    """(line, name) for every import in a module: shadowd modules as module names (a submodule
    imported by `from package import name` counts as that submodule), others by top-level package."""
    yield from ((line, name) for line, name, _ in imports_typed(module, path))


def imports_typed(module: str, path: Path) -> Iterator[tuple[int, str, bool]]:
    """imports(), each with whether it sits under `if TYPE_CHECKING:` (no import at run time)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    type_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for statement in node.body
        for inner in ast.walk(statement)
    }
    for line, name, node_id in _imports(module, path, tree):
        yield line, name, node_id in type_only


def _imports(module: str, path: Path, tree: ast.Module) -> Iterator[tuple[int, str, int]]:
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, _known(alias.name), id(node)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            if not source.startswith("shadowd"):
                yield node.lineno, source.split(".")[0], id(node)
                continue
            submodules = [f"{source}.{a.name}" for a in node.names if f"{source}.{a.name}" in MODULES]
            if submodules and len(submodules) == len(node.names):
                yield from ((node.lineno, sub, id(node)) for sub in submodules)
            else:
                yield node.lineno, _known(source), id(node)


def _known(name: str) -> str:
    """A dotted shadowd name cut back to the module it lives in; another package's top level."""
    if not name.startswith("shadowd"):
        return name.split(".")[0]
    while name not in MODULES and "." in name:
        name = name.rpartition(".")[0]
    return name


def _graph() -> dict[str, set[str]]:
    """Who imports whom at run time (imports only for type checkers make no cycle)."""
    return {
        module: {
            name for _, name, type_only in imports_typed(module, path)
            if name in MODULES and name != module and not type_only
        }
        for module, path in MODULES.items()
    }


def test_every_module_is_placed() -> None:
    """Every module under shadowd/ has a layer, and the table names no module that is gone."""
    unplaced = sorted(module for module in MODULES if layer_of(module) is None)
    assert unplaced == [], f"give these modules a layer in LAYER in tests/unit/test_layers.py: {unplaced}"
    stale = sorted(set(LAYER) - set(MODULES))
    assert stale == [], f"LAYER names modules that no longer exist: {stale}"


def upward_imports(modules: dict[str, Path] = MODULES) -> list[str]:
    problems = []
    for module, path in modules.items():
        own = layer_of(module)
        for line, name in imports(module, path):
            target = layer_of(name) if name in MODULES else None
            if own is None or target is None or target <= own or (module, name) in KNOWN_EXCEPTIONS:
                continue
            problems.append(f"{path.name}:{line}: {module} ({NAMES[own]}) imports {name} ({NAMES[target]})")
    return problems


def test_layers_only_point_down() -> None:
    """No module imports a module of a higher layer."""
    assert upward_imports() == []


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(graph) + 100))
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph.get(node, ())):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle() -> None:
    """No two modules import each other, directly or through others."""
    assert [c for c in cycles(_graph()) if tuple(c) not in KNOWN_CYCLES] == []


def test_known_cycles_are_still_cycles() -> None:
    """Every listed cycle still exists, so the list shrinks when one is broken."""
    gone = sorted(set(KNOWN_CYCLES) - {tuple(c) for c in cycles(_graph())})
    assert gone == [], f"broken: remove them from KNOWN_CYCLES in tests/unit/test_layers.py: {gone}"


def outside_imports(modules: dict[str, Path] = MODULES) -> list[str]:
    problems = []
    for module, path in modules.items():
        if module.startswith("shadowd.adapters."):
            continue
        for line, name in imports(module, path):
            if name in OUTSIDE_ADAPTERS_ONLY and (module, name) not in KNOWN_EXCEPTIONS:
                problems.append(f"{path.name}:{line}: {module} imports {name}")
    return problems


def test_sqlalchemy_alembic_and_aiokafka_only_in_adapters() -> None:
    """Only shadowd/adapters/ imports SQLAlchemy, Alembic or aiokafka."""
    assert outside_imports() == []


def test_known_exceptions_are_still_needed() -> None:
    """Every listed exception is still an import somewhere, so the list shrinks as the work lands."""
    seen = {(module, name) for module, path in MODULES.items() for _, name in imports(module, path)}
    gone = sorted(set(KNOWN_EXCEPTIONS) - seen)
    assert gone == [], f"no longer needed: remove them from KNOWN_EXCEPTIONS in tests/unit/test_layers.py: {gone}"


def long_files() -> list[str]:
    problems = []
    for path in MODULES.values():
        lines = path.read_text(encoding="utf-8").splitlines()
        relative = str(path.relative_to(ROOT))
        if len(lines) <= MAX_LINES or relative in KNOWN_LONG_FILES:
            continue
        stated = [line for line in lines[:12] if LONG_FILE_MARK in line]
        if not stated or len(stated[0].split(LONG_FILE_MARK, 1)[1].strip()) < 20:
            problems.append(f"{relative}: {len(lines)} lines and no `# {LONG_FILE_MARK} <reason>` at its top")
    return problems


def test_long_files_state_why() -> None:
    """A file under shadowd/ over 400 lines says why in its first lines."""
    assert long_files() == []


def test_known_long_files_are_still_long() -> None:
    """A file listed as long is still over the limit (a split file leaves the list)."""
    short = [
        name for name in KNOWN_LONG_FILES
        if not (ROOT / name).exists() or len((ROOT / name).read_text(encoding="utf-8").splitlines()) <= MAX_LINES
    ]
    assert short == [], f"under the limit now: remove them from KNOWN_LONG_FILES in tests/unit/test_layers.py: {short}"


# --- the checks themselves can fail -------------------------------------------------------------


def test_cycle_finder_finds_cycles() -> None:
    """The cycle check reports a two-module and a three-module loop and passes a chain."""
    assert cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


@pytest.mark.parametrize(
    ("module", "source", "expected"),
    [
        ("shadowd.pipeline", "from shadowd.http import app", ["shadowd.http.app"]),
        ("shadowd.http.verdicts", "from . import errors\nfrom .state import ApiState",
         ["shadowd.http.errors", "shadowd.http.state"]),
        ("shadowd.core.compare", "from ..adapters.sql_store import SqlVerdictStore", ["shadowd.adapters.sql_store"]),
        ("shadowd.cli", "def f():\n    from sqlalchemy.exc import DBAPIError", ["sqlalchemy"]),
    ],
    ids=["submodule", "relative", "up-two", "inside-function"],
)
def test_import_reader_resolves_names(module: str, source: str, expected: list[str], tmp_path: Path) -> None:
    """Absolute, relative and function-local imports resolve to the module they name."""
    path = tmp_path / "module.py"
    path.write_text(source)
    assert [name for _, name in imports(module, path)] == expected


def test_layer_and_outside_checks_flag_violations(tmp_path: Path) -> None:
    """An upward import and a SQLAlchemy import outside the adapters are both reported."""
    upward = tmp_path / "upward.py"
    upward.write_text("from shadowd.daemon import run_daemon\n")
    assert upward_imports({"shadowd.pipeline": upward}) == [
        "upward.py:1: shadowd.pipeline (services) imports shadowd.daemon (wiring)"
    ]
    outside = tmp_path / "outside.py"
    outside.write_text("import sqlalchemy\nfrom aiokafka import AIOKafkaConsumer\n")
    assert outside_imports({"shadowd.writer": outside}) == [
        "outside.py:1: shadowd.writer imports sqlalchemy", "outside.py:2: shadowd.writer imports aiokafka"
    ]
    assert outside_imports({"shadowd.adapters.sql_store": outside}) == []


def test_the_clock_is_read_in_one_place() -> None:
    """Only shadowd/clock.py reads the wall clock (the fake model, a program of its own, keeps its own)."""
    readers = [
        f"{path.relative_to(ROOT)}:{node.lineno}"
        for module, path in MODULES.items()
        if module != "shadowd.clock" and not module.startswith("shadowd.fakemodel")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
        and node.func.attr in ("now", "utcnow", "today") and "datetime" in ast.unparse(node.func.value)
    ]
    assert readers == []
