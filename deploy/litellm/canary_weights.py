"""The canary share in a LiteLLM Router: copy shadowd's weights into the router's deployments on a timer.

    python deploy/litellm/canary_weights.py --shadowd http://shadowd:8080 --rollout opus-4-7 \\
        --api-base http://fake-model:8787 --calls 200

Two deployments share the model name `claude`: one serves the rollout's baseline, the other its
candidate. Every `--interval` seconds the weights from `GET /v1/rollouts/{name}/weights` are written
into their `litellm_params.weight`; when shadowd cannot be read, the baseline gets all the traffic.
With `--calls N` the script then makes N calls through the router and prints, as JSON, how many each
model answered (the test in tests/unit/test_litellm_weights.py runs it so).
"""

from __future__ import annotations

import argparse
import json
import os
import threading
from collections import Counter
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no network fetch of LiteLLM's price list

import litellm

from shadowd.integrations.litellm import apply_canary_weights, fetch_weights

MODEL_NAME = "claude"


def build_router(baseline: str, candidate: str, api_base: str | None) -> Any:
    extra = {"api_base": api_base} if api_base else {}
    return litellm.Router(model_list=[
        {"model_name": MODEL_NAME, "litellm_params": {"model": f"anthropic/{baseline}", "weight": 100, **extra}},
        {"model_name": MODEL_NAME, "litellm_params": {"model": f"anthropic/{candidate}", "weight": 0, **extra}},
    ], num_retries=0)


def sync_once(router: Any, shadowd: str, rollout: str, baseline: str, candidate: str, token: str | None) -> dict[str, Any]:
    """Copy the weights once; on any failure send everything to the baseline."""
    try:
        weights = fetch_weights(shadowd, rollout, token)
    except Exception as exc:  # unreachable, 401/404, bad JSON: the baseline takes all the traffic
        weights = {"baseline": {"model": baseline, "weight": 100}, "candidate": {"model": candidate, "weight": 0},
                   "error": f"{type(exc).__name__}: {exc}"}
    apply_canary_weights(router, weights, MODEL_NAME)
    return weights


def keep_in_sync(router: Any, args: argparse.Namespace, stop: threading.Event) -> None:
    while not stop.wait(args.interval):
        sync_once(router, args.shadowd, args.rollout, args.baseline, args.candidate, args.token)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shadowd", required=True, help="shadowd's HTTP API, e.g. http://shadowd:8080")
    parser.add_argument("--rollout", required=True)
    parser.add_argument("--baseline", default="claude-opus-4-6")
    parser.add_argument("--candidate", default="claude-opus-4-7")
    parser.add_argument("--api-base", default=os.environ.get("ANTHROPIC_BASE_URL"))
    parser.add_argument("--token", default=os.environ.get("SHADOWD_READ_TOKEN"))
    parser.add_argument("--interval", type=float, default=15.0)
    parser.add_argument("--calls", type=int, default=0)
    args = parser.parse_args()
    router = build_router(args.baseline, args.candidate, args.api_base)
    weights = sync_once(router, args.shadowd, args.rollout, args.baseline, args.candidate, args.token)
    stop = threading.Event()
    threading.Thread(target=keep_in_sync, args=(router, args, stop), daemon=True).start()
    answered: Counter[str] = Counter()
    for i in range(args.calls):
        response = router.completion(model=MODEL_NAME, max_tokens=20,
                                     messages=[{"role": "user", "content": f"canary call {i}"}])
        answered[str(response.model).rpartition("/")[2]] += 1
    stop.set()
    print(json.dumps({"weights": weights, "answered": dict(answered)}))


if __name__ == "__main__":
    main()
