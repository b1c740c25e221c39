"""The held-out value/noise/tool corpus (benchmarks/heldout_values.py) meets the issue's bar."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "heldout_values.py"


def load() -> object:
    spec = importlib.util.spec_from_file_location("heldout_values", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["heldout_values"] = module
    spec.loader.exec_module(module)
    return module


def test_heldout_corpus_accuracy_findings_and_rollback() -> None:
    """On the generated corpus: status accuracy ≥ 0.99, every injected regression found, and the
    heavily regressed candidate rolled back before 200 compared verdicts."""
    heldout = load()
    outcome = heldout.run(20261201, 1500, heldout.INJECTED_SHARE, gate=False)  # type: ignore[attr-defined]
    assert outcome.correct / outcome.total >= 0.99, outcome.confusion
    assert outcome.injected > 100 and outcome.found == outcome.injected, outcome.by_kind
    heavy = heldout.run(20261202, 400, heldout.HEAVY_SHARE, gate=True)  # type: ignore[attr-defined]
    assert heavy.rollback_at is not None and heavy.rollback_at < 200
