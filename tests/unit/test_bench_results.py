"""benchmarks/bench.py reads each figure script's JSON result from the script's last stdout line."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench.py"


def load() -> Any:
    spec = importlib.util.spec_from_file_location("shadowd_bench", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["shadowd_bench"] = module
    path = list(sys.path)
    try:
        spec.loader.exec_module(module)  # puts benchmarks/ on sys.path for its own imports
    finally:
        sys.path[:] = path
    return module


def test_the_judge_bench_result_reaches_run_json_whole() -> None:
    """A small judge_bench run prints its result on one line, so `figure_judge`'s run_json parses it."""
    bench = load()
    result = bench.run_json([sys.executable, str(bench.BENCH_DIR / "judge_bench.py"), "--requests", "4",
                             "--rates", "0.5"], timeout_s=120)
    assert result["judge"] == "claude-haiku-4-5" and [row["sample_rate"] for row in result["rates"]] == [0.5]
    assert result["rates"][0]["compared"] == 4
