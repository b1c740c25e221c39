"""Summarise a py-spy `--format raw` profile (collapsed stacks): where the daemon's CPU time goes.

    python benchmarks/profile_summary.py PROFILE.txt [--top 25]

Prints the CPU share by area (SDK, comparator,
store, Kafka, logging, ...) and the functions with the most inclusive and self time.
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

# A sample is charged to the first area (in this order) that any frame of its stack belongs to, so the
# SDK's own aiohttp or pydantic work counts as SDK, and SQLAlchemy under the pipeline counts as store.
AREAS: list[tuple[str, re.Pattern[str]]] = [
    ("anthropic SDK + its HTTP stack (httpx2/httpcore2 or aiohttp, pydantic)", re.compile(r"anthropic/")),
    ("verdict store (SQLAlchemy + asyncpg)", re.compile(r"sqlalchemy/|asyncpg/|shadowd/adapters/sql_store")),
    ("comparator (shadowd.core + jsonschema)", re.compile(r"shadowd/core/|jsonschema/|referencing/")),
    ("Kafka (aiokafka)", re.compile(r"aiokafka/")),
    ("logging (structlog)", re.compile(r"structlog/|shadowd/logging")),
    ("metrics (prometheus_client)", re.compile(r"prometheus_client/")),
    ("HTTP API server (aiohttp.web)", re.compile(r"aiohttp/web")),
    ("shadowd wiring (pipeline, consumer, writer)",
     re.compile(r"shadowd/(pipeline|consumer|writer|records|wiring|promoter|report|api|adapters/(anthropic_client|kafka))")),
]
_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^():]+)(?::(?P<line>\d+))?\)$")


def parse(path: Path) -> list[tuple[list[str], int]]:
    stacks = []
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        stacks.append((stack.split(";"), int(count)))
    return stacks


def _name(frame: str) -> str:
    match = _FRAME.match(frame)
    if not match:
        return frame
    return f"{match['func']} ({match['file']})"


def _is_idle(frames: list[str]) -> bool:
    # py-spy without --idle still reports a thread-pool worker blocked on its queue now and then.
    return frames[-1].startswith("_worker (concurrent/futures/thread.py")


def summarise(path: Path, top: int = 25) -> dict[str, Any]:
    stacks = parse(path)
    total = sum(count for _, count in stacks)
    idle = sum(count for frames, count in stacks if _is_idle(frames))
    busy = total - idle
    areas: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    self_time: Counter[str] = Counter()
    for frames, count in stacks:
        if _is_idle(frames):
            continue
        stack = ";".join(frames)
        area = next((name for name, pattern in AREAS if pattern.search(stack)), "event loop and socket I/O (asyncio)")
        areas[area] += count
        for name in {_name(f) for f in frames}:
            inclusive[name] += count
        self_time[_name(frames[-1])] += count

    def share(n: int) -> float:
        return round(100.0 * n / busy, 1) if busy else 0.0

    boring = re.compile(r"runpy|click/|shadowd/cli\.py|shadowd/__main__|asyncio/runners|run_until_complete|"
                        r"run_forever|_run_once|events\.py|shadowd/daemon\.py|<module>")
    return {
        "samples": total,
        "idle_percent": round(100.0 * idle / total, 1) if total else 0.0,
        "busy_by_area_percent": {name: share(n) for name, n in areas.most_common()},
        "top_inclusive_percent": [
            (name, share(n)) for name, n in inclusive.most_common(200) if not boring.search(name)
        ][:top],
        "top_self_percent": [(name, share(n)) for name, n in self_time.most_common(top)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    summary = summarise(args.profile, args.top)
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    print(f"samples {summary['samples']} (idle thread-pool samples left out: {summary['idle_percent']}%)")
    print("\nbusy time by area (% of non-idle samples):")
    for name, pct in summary["busy_by_area_percent"].items():
        print(f"  {pct:5.1f}  {name}")
    print("\ntop functions, inclusive (% of non-idle samples):")
    for name, pct in summary["top_inclusive_percent"]:
        print(f"  {pct:5.1f}  {name}")
    print("\ntop functions, self:")
    for name, pct in summary["top_self_percent"]:
        print(f"  {pct:5.1f}  {name}")


if __name__ == "__main__":
    main()
