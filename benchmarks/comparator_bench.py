"""Comparator throughput on one core: `compare()` against a plain full DeepDiff on the same pairs.

    python benchmarks/comparator_bench.py [--seconds 2.5] [--cpu 0]

Pairs look like a structured-output route: a ~4 KB JSON text answer (about 35 keys, nested objects and
lists) plus one tool_use block, checked against the route's output_schema and the request's tool
schemas. Classes: identical (byte-equal text, new tool_use id), reformatted (same values, other
whitespace and key order), reworded (same shape, other values and list lengths: what two models that
agree look like) and differing (a missing key, a type change, a wrapped answer, a renamed tool...).
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import os
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deepdiff import DeepDiff

from shadowd.core.compare import RouteRules, compare
from shadowd.core.results import SideResult, Usage

WORDS = (
    "order refund customer shipment delayed card charged twice replacement warehouse courier invoice "
    "payment pending approved escalation priority agent follow-up tracking address damaged panel adapter "
    "firmware update account subscription renewal discount voucher apology policy exception manager"
).split()

TOOLS: list[dict[str, Any]] = [
    {
        "name": "refund_order",
        "description": "Refund all or part of an order.",
        "input_schema": {
            "type": "object",
            "properties": {
                "order_id": {"type": "string", "minLength": 10},
                "amount": {"type": "number", "minimum": 0, "maximum": 5000},
                "reason": {"type": "string", "enum": ["damaged", "late", "wrong_item", "duplicate_charge", "other"]},
                "notify_customer": {"type": "boolean"},
            },
            "required": ["order_id", "amount", "reason"],
            "additionalProperties": False,
        },
    },
    {
        "name": "get_order_status",
        "description": "Look up the shipping and payment status of an order.",
        "input_schema": {
            "type": "object",
            "properties": {"order_id": {"type": "string", "minLength": 10}, "include_history": {"type": "boolean"}},
            "required": ["order_id"],
            "additionalProperties": False,
        },
    },
]

_ISSUE = {
    "type": "object",
    "properties": {
        "kind": {"type": "string", "enum": ["billing", "shipping", "product", "account"]},
        "order_id": {"type": "string"},
        "amount": {"type": "number"},
        "evidence": {"type": "string"},
        "resolved": {"type": "boolean"},
    },
    "required": ["kind", "order_id", "evidence"],
}
OUTPUT_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "properties": {
        "ticket_id": {"type": "string"},
        "customer": {
            "type": "object",
            "properties": {
                "name": {"type": "string"}, "tier": {"type": "string", "enum": ["free", "silver", "gold"]},
                "tenure_days": {"type": "integer", "minimum": 0}, "email": {"type": "string"},
                "region": {"type": "string"},
            },
            "required": ["name", "tier"],
        },
        "category": {"type": "string"},
        "priority": {"type": "string", "enum": ["low", "normal", "high", "urgent"]},
        "sentiment": {"type": "number", "minimum": -1, "maximum": 1},
        "language": {"type": "string"},
        "summary": {"type": "string", "maxLength": 2000},
        "issues": {"type": "array", "items": _ISSUE, "minItems": 1},
        "actions": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"step": {"type": "integer"}, "owner": {"type": "string"},
                               "description": {"type": "string"}},
                "required": ["step", "owner", "description"],
            },
        },
        "refund": {
            "type": "object",
            "properties": {"eligible": {"type": "boolean"}, "amount": {"type": "number"},
                           "currency": {"type": "string"}, "reason": {"type": "string"}},
            "required": ["eligible"],
        },
        "tags": {"type": "array", "items": {"type": "string"}},
        "follow_up": {
            "type": "object",
            "properties": {"required": {"type": "boolean"}, "due_in_hours": {"type": "integer"},
                           "channel": {"type": "string"}},
        },
        "confidence": {"type": "number"},
        "escalate": {"type": "boolean"},
        "generated_at": {"type": "string"},
        "model_notes": {"type": "string"},
        "related_tickets": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["ticket_id", "customer", "category", "priority", "summary", "issues", "actions"],
}
RULES = RouteRules(output_schema=OUTPUT_SCHEMA, ignore_paths=("$.generated_at",))


def _sentence(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words)).capitalize() + "."


def make_answer(rng: random.Random) -> dict[str, Any]:
    """One structured answer: ~4 KB once serialised, 35 distinct keys."""
    order = f"ORD-{rng.randint(100000, 999999)}"
    return {
        "ticket_id": f"T-{rng.randint(10000, 99999)}",
        "customer": {
            "name": rng.choice(["Ada Park", "Bruno Silva", "Chen Wei", "Dana Levi"]),
            "tier": rng.choice(["free", "silver", "gold"]),
            "tenure_days": rng.randint(1, 3000),
            "email": f"user{rng.randint(1, 9999)}@example.com",
            "region": rng.choice(["eu-west-1", "us-east-1", "ap-south-1"]),
        },
        "category": rng.choice(["billing", "shipping", "product"]),
        "priority": rng.choice(["low", "normal", "high", "urgent"]),
        "sentiment": round(rng.uniform(-1, 1), 2),
        "language": "en",
        "summary": " ".join(_sentence(rng, 16) for _ in range(7)),
        "issues": [
            {
                "kind": rng.choice(["billing", "shipping", "product"]),
                "order_id": order,
                "amount": round(rng.uniform(5, 900), 2),
                "evidence": " ".join(_sentence(rng, 14) for _ in range(3)),
                "resolved": rng.random() < 0.3,
            }
            for _ in range(rng.randint(2, 4))
        ],
        "actions": [
            {"step": i + 1, "owner": rng.choice(["agent", "customer", "warehouse"]), "description": _sentence(rng, 16)}
            for i in range(rng.randint(3, 5))
        ],
        "refund": {"eligible": True, "amount": round(rng.uniform(5, 900), 2), "currency": "EUR",
                   "reason": "duplicate_charge"},
        "tags": rng.sample(WORDS, 5),
        "follow_up": {"required": True, "due_in_hours": rng.choice([4, 24, 48]), "channel": "email"},
        "confidence": round(rng.uniform(0.5, 1), 3),
        "escalate": rng.random() < 0.2,
        "generated_at": f"2026-11-2{rng.randint(0, 9)}T1{rng.randint(0, 9)}:00:00Z",
        "model_notes": _sentence(rng, 25),
        "related_tickets": [f"T-{rng.randint(10000, 99999)}" for _ in range(rng.randint(0, 3))],
    }


def tool_call(rng: random.Random, answer: dict[str, Any], name: str = "refund_order") -> dict[str, Any]:
    return {
        "type": "tool_use",
        "id": f"toolu_{rng.getrandbits(64):016x}",
        "name": name,
        "input": {"order_id": answer["issues"][0]["order_id"], "amount": answer["refund"]["amount"],
                  "reason": "duplicate_charge", "notify_customer": True},
    }


def side(model: str, text: str, call: dict[str, Any] | None, output_tokens: int) -> SideResult:
    content: list[dict[str, Any]] = [{"type": "text", "text": text}]
    if call is not None:
        content.append(call)
    return SideResult(
        model=model, ok=True, content=tuple(content), stop_reason="tool_use" if call else "end_turn",
        usage=Usage(input_tokens=1800, output_tokens=output_tokens), latency_ms=2100.0, cost_usd=0.02,
    )


def reword(rng: random.Random, answer: dict[str, Any]) -> dict[str, Any]:
    """Same keys and types, other values: what a candidate that agrees with the baseline writes."""
    other = make_answer(rng)
    # Keep the candidate's shape as the baseline's, except list lengths (which shapes ignore).
    other["related_tickets"] = other["related_tickets"] or [f"T-{rng.randint(10000, 99999)}"]
    if not answer["related_tickets"]:
        other["related_tickets"] = []
    return other


def spoil(rng: random.Random, answer: dict[str, Any], how: str) -> tuple[str, dict[str, Any] | None]:
    """A regressed candidate: returns its text and its tool call."""
    changed = copy.deepcopy(answer)
    call = tool_call(rng, answer)
    if how == "key_missing":
        del changed["priority"]
        del changed["customer"]["tier"]
    elif how == "type_changed":
        changed["customer"]["tenure_days"] = str(changed["customer"]["tenure_days"])
        changed["issues"][0]["amount"] = str(changed["issues"][0]["amount"])
    elif how == "wrapped":
        return "Here is the triage:\n```json\n" + json.dumps(changed, indent=2) + "\n```", call
    elif how == "tool_renamed":
        call = tool_call(rng, answer, "get_order_status")
        call["input"] = {"order_id": answer["issues"][0]["order_id"]}
    elif how == "tool_missing":
        call = None
    return json.dumps(changed), call


def build_pairs(count: int, seed: int) -> dict[str, list[tuple[SideResult, SideResult, Any, Any]]]:
    """Per class: (baseline, candidate, baseline object, candidate object) for DeepDiff."""
    rng = random.Random(seed)
    classes: dict[str, list[tuple[SideResult, SideResult, Any, Any]]] = {
        "identical": [], "reformatted": [], "reworded": [], "differing": [],
    }
    spoils = ["key_missing", "type_changed", "wrapped", "tool_renamed", "tool_missing"]
    for index in range(count):
        answer = make_answer(rng)
        text = json.dumps(answer)
        base_call = tool_call(rng, answer)
        baseline = side("claude-opus-4-6", text, base_call, len(text) // 4)

        def obj(text: str, call: dict[str, Any] | None) -> dict[str, Any]:
            try:
                parsed: Any = json.loads(text)
            except ValueError:
                parsed = text
            return {"output": parsed, "tool_calls": [] if call is None else [{"name": call["name"],
                                                                                "input": call["input"]}]}

        base_obj = obj(text, base_call)
        # identical
        call = {**base_call, "id": f"toolu_{rng.getrandbits(64):016x}"}
        classes["identical"].append((baseline, side("claude-opus-4-7", text, call, len(text) // 4),
                                     base_obj, obj(text, call)))
        # reformatted: same values, other key order and whitespace
        keys = list(answer)
        rng.shuffle(keys)
        other_text = json.dumps({k: answer[k] for k in keys}, indent=2)
        classes["reformatted"].append((baseline, side("claude-opus-4-7", other_text, call, len(text) // 4),
                                       base_obj, obj(other_text, call)))
        # reworded
        other = reword(rng, answer)
        other_text = json.dumps(other)
        other_call = tool_call(rng, other)
        classes["reworded"].append((baseline, side("claude-opus-4-7", other_text, other_call, len(other_text) // 4),
                                    base_obj, obj(other_text, other_call)))
        # differing
        spoiled_text, spoiled_call = spoil(rng, answer, spoils[index % len(spoils)])
        classes["differing"].append((baseline, side("claude-opus-4-7", spoiled_text, spoiled_call,
                                                    len(spoiled_text) // 4),
                                     base_obj, obj(spoiled_text, spoiled_call)))
    return classes


def rate(work: Callable[[Any], Any], pairs: list[Any], seconds: float) -> tuple[float, int]:
    """Calls per second of `work` over the pairs, cycling until `seconds` have passed (after a warm-up)."""
    for pair in pairs[: min(20, len(pairs))]:
        work(pair)
    gc.collect()
    calls = 0
    started = time.perf_counter()
    deadline = started + seconds
    while True:
        for pair in pairs:
            work(pair)
        calls += len(pairs)
        now = time.perf_counter()
        if now >= deadline:
            return calls / (now - started), calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=100, help="distinct pairs per class")
    parser.add_argument("--seconds", type=float, default=2.5, help="timing per class and method")
    parser.add_argument("--deepdiff-seconds", type=float, default=2.0)
    parser.add_argument("--cpu", type=int, default=None, help="pin to this CPU (default: the last one)")
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()

    cpu = args.cpu if args.cpu is not None else max(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    classes = build_pairs(args.pairs, args.seed)
    tools = TOOLS

    statuses: dict[str, dict[str, int]] = {}
    for name, pairs in classes.items():
        counts: dict[str, int] = {}
        for baseline, candidate, _, _ in pairs:
            status = compare(baseline, candidate, None, rules=RULES, tools=tools).status.value
            counts[status] = counts.get(status, 0) + 1
        statuses[name] = counts

    def run_compare(pair: Any) -> Any:
        return compare(pair[0], pair[1], None, rules=RULES, tools=tools)

    def run_deepdiff(pair: Any) -> Any:
        return DeepDiff(pair[2], pair[3])

    sizes = [len(p[0].text) for p in classes["identical"]]
    results: dict[str, Any] = {
        "cpu": cpu,
        "pairs_per_class": args.pairs,
        "text_bytes_mean": round(sum(sizes) / len(sizes)),
        "distinct_keys": _distinct_keys(json.loads(classes["identical"][0][0].text)),
        "statuses": statuses,
        "compare_per_s": {},
        "deepdiff_per_s": {},
    }
    for name, pairs in classes.items():
        results["compare_per_s"][name] = round(rate(run_compare, pairs, args.seconds)[0])
        results["deepdiff_per_s"][name] = round(rate(run_deepdiff, pairs, args.deepdiff_seconds)[0], 1)
    # A realistic mix between two different models: few byte-identical answers, most agreeing in shape.
    mix = {"identical": 0.10, "reformatted": 0.15, "reworded": 0.60, "differing": 0.15}
    results["mix"] = mix
    results["compare_per_s_mix"] = round(1 / sum(w / results["compare_per_s"][k] for k, w in mix.items()))
    results["deepdiff_per_s_mix"] = round(1 / sum(w / results["deepdiff_per_s"][k] for k, w in mix.items()), 1)
    matching = ("identical", "reformatted", "reworded")
    results["speedup_vs_deepdiff"] = {
        k: round(results["compare_per_s"][k] / results["deepdiff_per_s"][k], 1) for k in classes
    }
    results["min_speedup_on_matching"] = min(results["speedup_vs_deepdiff"][k] for k in matching)
    print(json.dumps(results))


def _distinct_keys(value: Any) -> int:
    keys: set[str] = set()

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for key, child in node.items():
                keys.add(f"{prefix}/{key}")
                walk(child, f"{prefix}/{key}")
        elif isinstance(node, list):
            for child in node:
                walk(child, f"{prefix}/*")

    walk(value, "")
    return len(keys)


if __name__ == "__main__":
    main()
