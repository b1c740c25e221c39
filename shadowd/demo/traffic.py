"""Realistic mirrored traffic for the demo: three routes, envelopes in `shadowd.mirror/v1`.

Run as `python -m shadowd.demo.traffic --count 300 > traffic.jsonl`.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any

BASELINE_MODEL = "claude-opus-4-6"

_CUSTOMERS = ["Ada Park", "Bruno Silva", "Chen Wei", "Dana Levi", "Emeka Obi", "Fatima Khan", "Goran Ilic"]
_PRODUCTS = ["standing desk", "noise-cancelling headphones", "espresso machine", "trail shoes", "4K monitor"]
_PROBLEMS = [
    "arrived with a cracked panel",
    "was charged twice on my card",
    "has not shipped after ten days",
    "stopped working after a firmware update",
    "is missing the power adapter",
    "was delivered to the wrong address",
]
_QUESTIONS = [
    "Explain the difference between optimistic and pessimistic locking.",
    "Write release notes for a version that adds SSO and fixes two billing bugs.",
    "Summarise the trade-offs of event sourcing for an order service.",
    "Draft an onboarding checklist for a new site reliability engineer.",
    "Compare blue-green and canary deployments for a payments API.",
    "Outline a migration plan from cron jobs to a workflow engine.",
    "Give tips for writing effective incident postmortems.",
]
_ORDER_ASKS = [
    "Where is order {order}? It was due yesterday.",
    "Please refund order {order}, the {product} {problem}.",
    "Can you find me a {product} under 300 dollars?",
    "What's the status of {order} and has it been refunded before?",
    "Thanks, that's everything for today!",
    "I need a replacement {product} for order {order}.",
]
_TOOLS: list[dict[str, Any]] = [
    {
        "name": "get_order_status",
        "description": "Look up the shipping and payment status of an order.",
        "input_schema": {
            "type": "object",
            "properties": {
                "order_id": {"type": "string", "minLength": 10},
                "include_history": {"type": "boolean"},
            },
            "required": ["order_id"],
            "additionalProperties": False,
        },
    },
    {
        "name": "refund_order",
        "description": "Refund all or part of an order.",
        "input_schema": {
            "type": "object",
            "properties": {
                "order_id": {"type": "string", "minLength": 10},
                "amount": {"type": "number", "minimum": 0, "maximum": 5000},
                "reason": {"type": "string", "enum": ["damaged", "late", "wrong_item", "duplicate_charge", "other"]},
            },
            "required": ["order_id", "amount", "reason"],
            "additionalProperties": False,
        },
    },
    {
        "name": "search_products",
        "description": "Search the catalogue.",
        "input_schema": {
            "type": "object",
            "properties": {
                "query": {"type": "string", "minLength": 2},
                "max_results": {"type": "integer", "minimum": 1, "maximum": 20},
            },
            "required": ["query"],
            "additionalProperties": False,
        },
    },
]


def support_schema() -> dict[str, Any]:
    text = resources.files("shadowd.demo").joinpath("schemas/support-summary.json").read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def generate_envelopes(count: int = 300, seed: int = 7, model: str = BASELINE_MODEL) -> list[dict[str, Any]]:
    """`count` envelopes spread over three routes; the same seed always gives the same traffic."""
    rng = random.Random(seed)
    schema_text = json.dumps(support_schema(), indent=1)
    start = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
    envelopes = []
    for index in range(count):
        route = ("support-summary", "order-tools", "chat-assist")[index % 3]
        request: dict[str, Any]
        if route == "support-summary":
            customer, product, problem = rng.choice(_CUSTOMERS), rng.choice(_PRODUCTS), rng.choice(_PROBLEMS)
            request = {
                "model": model,
                "max_tokens": 1024,
                "temperature": 0.2,
                "system": "You triage support tickets. Respond with JSON only, matching this JSON Schema:\n"
                + schema_text,
                "messages": [
                    {
                        "role": "user",
                        "content": f"Ticket T-{10000 + index} from {customer}: my {product} {problem}. "
                        f"I have been a customer for {rng.randint(1, 2000)} days.",
                    }
                ],
            }
        elif route == "order-tools":
            ask = rng.choice(_ORDER_ASKS).format(
                order=f"ORD-{rng.randint(100000, 999999)}", product=rng.choice(_PRODUCTS), problem=rng.choice(_PROBLEMS)
            )
            request = {
                "model": model,
                "max_tokens": 2048,
                "system": "You are the order desk assistant. Use the tools when they help.",
                "tools": _TOOLS,
                "tool_choice": {"type": "auto"},
                "messages": [{"role": "user", "content": f"{ask} (customer {rng.choice(_CUSTOMERS)}, "
                              f"session {rng.randint(1000, 9999)})"}],
            }
            if rng.random() < 0.3:
                request["thinking"] = {"type": "enabled", "budget_tokens": 1024}
                request["max_tokens"] = 4096
        else:
            request = {
                "model": model,
                "max_tokens": rng.choice([1500, 2000, 4000]) if rng.random() > 0.05 else 100_000,
                "temperature": round(rng.uniform(0.3, 1.0), 2),
                "system": "You are a concise engineering assistant. Answer in Markdown.",
                "messages": [
                    {
                        "role": "user",
                        "content": f"{rng.choice(_QUESTIONS)} Our team runs {rng.choice(_PRODUCTS)} orders "
                        f"for {rng.choice(_CUSTOMERS)}'s group, about {rng.randint(2, 900)} a day.",
                    }
                ],
            }
            if rng.random() < 0.2:
                request["top_p"] = 0.9
        captured = start + timedelta(seconds=index * 7)
        envelopes.append(
            {
                "schema": "shadowd.mirror/v1",
                "request_id": f"req-{seed}-{index:05d}",
                "route": route,
                "captured_at": captured.isoformat().replace("+00:00", "Z"),
                "api_version": "2023-06-01",
                "request": request,
                "latency_ms": round(rng.uniform(400, 4000), 1),
                "attributes": {"tenant": rng.choice(["acme", "globex", "initech"]), "region": "eu-west-1"},
            }
        )
    return envelopes


# Lines a real mirror could produce by mistake; each must land in the dead letters with its reason.
MALFORMED_LINES: list[bytes] = [
    b'{"schema": "shadowd.mirror/v1", "request_id": "broken-1", "request": {"model": ',
    b"[1, 2, 3]",
    b'{"schema": "shadowd.mirror/v0", "request_id": "old-1", "request": {}}',
    b'{"schema": "shadowd.mirror/v1", "request": {"model": "claude-opus-4-6", "max_tokens": 10, "messages": []}}',
    b'{"schema": "shadowd.mirror/v1", "request_id": "bad-tokens", "request": '
    b'{"model": "claude-opus-4-6", "max_tokens": "lots", "messages": [{"role": "user", "content": "hi"}]}}',
]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write demo envelopes as JSONL to stdout.")
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--malformed", action="store_true", help="append the malformed sample lines")
    args = parser.parse_args(argv)
    out = sys.stdout
    for envelope in generate_envelopes(args.count, args.seed):
        out.write(json.dumps(envelope) + "\n")
    if args.malformed:
        for line in MALFORMED_LINES:
            out.write(line.decode() + "\n")


if __name__ == "__main__":
    main()
