"""One wiring place: adapters are built in shadowd/wiring.py only, with one records-in-flight budget."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from shadowd.config import Settings, load_config
from shadowd.core.in_flight import calls_per_record, records_in_flight
from shadowd.demo.run import demo_file
from shadowd.wiring import open_pipeline, records_in_flight_for

SHADOWD = Path(__file__).resolve().parents[2] / "shadowd"

# Constructors and openers of adapters and services, and the modules allowed to call them.
BUILDERS = {
    "AnthropicModelClient": {"wiring.py"},
    "open_store": {"wiring.py"},
    "open_existing_store": {"wiring.py"},
    "make_consumer": {"wiring.py"},
    "make_producer": {"wiring.py"},
    "ShadowPipeline": {"wiring.py"},
    "BatchWriter": {"wiring.py"},
    "PromoterLoop": {"wiring.py"},
    "ApiState": {"wiring.py"},
    "KafkaRecordSource": {"wiring.py"},
    "KafkaRecordPublisher": {"wiring.py"},
    "MirrorConsumer": {"wiring.py"},
    "DeadLetterPublisher": {"wiring.py"},
}


def _calls(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            names.add(func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else "")
    return names


def test_adapters_are_built_in_the_wiring_only() -> None:
    """No module but shadowd/wiring.py constructs a store, model client, Kafka client, pipeline, writer,
    promoter or HTTP state (adapter modules may build their own internals)."""
    offenders = []
    for path in sorted(SHADOWD.rglob("*.py")):
        relative = path.relative_to(SHADOWD).as_posix()
        if relative.startswith("adapters/"):
            continue
        for name in _calls(ast.parse(path.read_text(encoding="utf-8"))) & BUILDERS.keys():
            if relative not in BUILDERS[name]:
                offenders.append(f"{relative} calls {name}()")
    assert offenders == []


def test_the_records_in_flight_formula_is_written_once() -> None:
    """`max_concurrency // calls per record` appears only in shadowd/core/in_flight.py."""
    copies = [
        path.relative_to(SHADOWD).as_posix()
        for path in SHADOWD.rglob("*.py")
        if "max_calls_per_record()" in path.read_text(encoding="utf-8") and "max_concurrency" in
        path.read_text(encoding="utf-8")
    ]
    assert copies == []


async def test_replay_and_demo_use_the_budget_run_uses(tmp_path: Path) -> None:
    """The pipeline `replay` and `demo` open reports the same records-in-flight budget `run` computes."""
    config = load_config(demo_file("shadowd.yaml"), Settings())
    expected = records_in_flight(config.models.max_concurrency, calls_per_record(config.rollouts))
    assert records_in_flight_for(config) == expected
    async with open_pipeline(config, f"sqlite:///{tmp_path / 'w.db'}", base_url="http://127.0.0.1:9") as parts:
        assert parts.records_in_flight == expected
        assert parts.pipeline.max_calls_per_record() == calls_per_record(config.rollouts)
        pipeline, writer, store, models = parts  # still unpacks as it always did
        assert store is parts.store and writer is parts.writer and pipeline is parts.pipeline


@pytest.mark.parametrize("builder", sorted(BUILDERS))
def test_every_listed_builder_exists(builder: str) -> None:
    """The list above names real constructors (a renamed one would make the first test pass vacuously)."""
    found = any(
        f"class {builder}" in path.read_text(encoding="utf-8") or f"def {builder}(" in path.read_text(encoding="utf-8")
        for path in SHADOWD.rglob("*.py")
    )
    assert found, builder
