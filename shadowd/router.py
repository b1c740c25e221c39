"""`shadowd.router.CanaryRouter` (SPEC §10): which model a user or session gets during a canary.

    router = CanaryRouter("http://shadowd:8080", "opus-4-7", baseline="claude-opus-4-6",
                          candidate="claude-opus-4-7")
    model = router.model_for(user_id)

A key's place is a hash of (rollout, key) in [0, 100); it gets the candidate when that place is below
the rollout's `canary_percent`. The place never changes, so raising the share only ever moves keys
from the baseline to the candidate. The share comes from `GET /v1/rollouts/{name}/weights`, cached
for `ttl_s` and refreshed on a background thread; any failure (unreachable, non-200, a body that
does not fit, other models than configured) and a rollback answer the baseline.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

import structlog

log = structlog.get_logger("shadowd.router")


def canary_place(rollout: str, key: str) -> float:
    """The key's fixed place in [0, 100) for this rollout."""
    digest = hashlib.sha256(f"shadowd.router\0{rollout}\0{key}".encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 * 100.0


def takes_candidate(rollout: str, key: str, canary_percent: float) -> bool:
    return canary_place(rollout, key) < canary_percent


@dataclass(frozen=True, slots=True)
class Share:
    canary_percent: float
    state: str
    fetched_at: float  # time.monotonic()
    error: str | None = None


class CanaryRouter:
    """Sticky baseline/candidate assignment from shadowd's current canary share. Never raises, never blocks."""

    def __init__(
        self,
        api_url: str,
        rollout: str,
        *,
        baseline: str,
        candidate: str,
        ttl_s: float = 15.0,
        timeout_s: float = 2.0,
        max_stale_s: float | None = None,
        token: str | None = None,
    ) -> None:
        if ttl_s <= 0 or timeout_s <= 0:
            raise ValueError("ttl_s and timeout_s must be positive")
        self.rollout = rollout
        self.baseline = baseline
        self.candidate = candidate
        self.ttl_s = ttl_s
        self.timeout_s = timeout_s
        # A share older than this (no refresh succeeded meanwhile) no longer counts: baseline.
        self.max_stale_s = max_stale_s if max_stale_s is not None else 4 * ttl_s
        self._url = f"{api_url.rstrip('/')}/v1/rollouts/{urllib.parse.quote(rollout, safe='')}/weights"
        self._token = token if token is not None else os.environ.get("SHADOWD_READ_TOKEN")
        self._share: Share | None = None
        self._lock = threading.Lock()
        self._refreshing = False

    # --- deciding ------------------------------------------------------------------------------------

    def model_for(self, key: str) -> str:
        """The baseline or the candidate for this key; the baseline whenever the share is unknown."""
        try:
            percent = self.canary_percent()
            return self.candidate if percent > 0 and takes_candidate(self.rollout, str(key), percent) else self.baseline
        except Exception:
            return self.baseline

    def canary_percent(self) -> float:
        """The share in use now (0 when unknown, failed, stale or rolled back); starts a refresh when due."""
        share = self._share
        now = time.monotonic()
        if share is None or now - share.fetched_at >= self.ttl_s:
            self._refresh_in_background()
        if share is None or share.error is not None or now - share.fetched_at >= self.max_stale_s:
            return 0.0
        return share.canary_percent

    @property
    def last_share(self) -> Share | None:
        return self._share

    # --- refreshing ----------------------------------------------------------------------------------

    def refresh(self) -> Share:
        """Fetch the share now (blocking, at most `timeout_s`); a failure is recorded as share 0."""
        try:
            body = self._fetch()
            share = Share(canary_percent=self._percent_of(body), state=str(body.get("state", "")),
                          fetched_at=time.monotonic())
        except Exception as exc:  # unreachable, HTTP error, bad JSON, wrong models: the baseline
            share = Share(canary_percent=0.0, state="unknown", fetched_at=time.monotonic(),
                          error=f"{type(exc).__name__}: {exc}"[:300])
            if self._share is None or self._share.error is None:
                log.warning("canary_router_refresh_failed", rollout=self.rollout, url=self._url, error=share.error)
        self._share = share
        return share

    def _refresh_in_background(self) -> None:
        with self._lock:
            if self._refreshing:
                return
            self._refreshing = True

        def work() -> None:
            try:
                self.refresh()
            finally:
                with self._lock:
                    self._refreshing = False

        threading.Thread(target=work, name="shadowd-canary-router", daemon=True).start()

    def _fetch(self) -> dict[str, Any]:
        request = urllib.request.Request(self._url, headers={"Accept": "application/json"})
        if self._token:
            request.add_header("Authorization", f"Bearer {self._token}")
        with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
            body = json.loads(response.read(1024 * 1024))
        if not isinstance(body, dict):
            raise ValueError("the weights answer is not a JSON object")
        return body

    def _percent_of(self, body: dict[str, Any]) -> float:
        baseline, candidate = body.get("baseline"), body.get("candidate")
        if not isinstance(baseline, dict) or not isinstance(candidate, dict):
            raise ValueError("the weights answer lacks baseline/candidate objects")
        if baseline.get("model") != self.baseline or candidate.get("model") != self.candidate:
            raise ValueError(
                f"shadowd's rollout {self.rollout!r} is {baseline.get('model')!r} -> {candidate.get('model')!r}, "
                f"not the configured {self.baseline!r} -> {self.candidate!r}"
            )
        if body.get("state") == "rolled_back":
            return 0.0
        b_weight, c_weight = baseline.get("weight"), candidate.get("weight")
        if not all(isinstance(w, int | float) and not isinstance(w, bool) and 0 <= w for w in (b_weight, c_weight)):
            raise ValueError("weights must be non-negative numbers")
        total = float(b_weight) + float(c_weight)  # type: ignore[arg-type]
        if total <= 0:
            raise ValueError("weights add up to 0")
        return min(100.0, 100.0 * float(c_weight) / total)  # type: ignore[arg-type]
