"""Instructions per comparison, for A/B of comparator changes on a machine whose speed drifts.

    valgrind --tool=callgrind --callgrind-out-file=/dev/null python benchmarks/comparator_icount.py reworded 0
    valgrind --tool=callgrind --callgrind-out-file=/dev/null python benchmarks/comparator_icount.py reworded 5

Runs `compare` over the comparator benchmark's 40 pairs of one class (comparator_bench.py) once to warm
its caches, then `reps` more times. The difference of the two runs' "Collected" counts divided by
40 x reps is the instructions of one comparison: the same count whatever else the machine is doing.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import comparator_bench as bench

from shadowd.core.compare import compare


def main() -> None:
    name, reps = sys.argv[1], int(sys.argv[2])
    pairs = bench.build_pairs(40, 5)[name]
    for _ in range(1 + reps):
        for baseline, candidate, _, _ in pairs:
            compare(baseline, candidate, None, rules=bench.RULES, tools=bench.TOOLS)


if __name__ == "__main__":
    main()
