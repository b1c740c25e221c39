"""Which rollouts a mirrored request belongs to, sampling, and the shadow spend cap."""

from __future__ import annotations

import hashlib
from collections import deque
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Literal

from shadowd.core.envelope import Envelope
from shadowd.core.gate import GateConfig
from shadowd.core.noise import noise_checked

BaselineSource = Literal["replay", "recorded"]
ReplayMode = Literal["live", "batch"]
# What makes a route pattern a glob rather than one route's name (fnmatch).
_GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True, slots=True)
class RolloutSpec:
    name: str
    baseline: str
    candidate: str
    baseline_source: BaselineSource = "replay"
    noise_check: float = 1.0  # share of requests whose baseline is replayed a second time
    routes: tuple[str, ...] = ("*",)
    sample_rate: float = 1.0
    stages: tuple[int, ...] = (1, 5, 25, 50, 100)
    gate: GateConfig = field(default_factory=GateConfig)
    budget_usd_per_hour: float | None = None
    replay_mode: ReplayMode = "live"  # batch: replays go through the Message Batches API
    # (route, mode) for each route with its own `routes.<name>.replay_mode`: it wins over the rollout's.
    route_modes: tuple[tuple[str, ReplayMode], ...] = ()

    def replay_mode_for(self, route: str) -> ReplayMode:
        """How this rollout's calls for `route` are made: the route's own mode, else the rollout's."""
        return next((mode for name, mode in self.route_modes if name == route), self.replay_mode)

    def replay_modes(self) -> frozenset[ReplayMode]:
        """The modes this rollout's calls can take: each covered route's own, and the rollout's unless
        every route pattern is a plain name of a route with a mode of its own (a glob may match any route)."""
        own = dict(self.route_modes)
        modes = {mode for route, mode in own.items() if any(fnmatchcase(route, p) for p in self.routes)}
        if any(_GLOB_CHARS.intersection(p) or p not in own for p in self.routes):
            modes.add(self.replay_mode)
        return frozenset(modes)

    @property
    def latency_judged(self) -> bool:
        """Batch replays wait for their batch, so their latency says nothing of the model: latency is
        judged only when some of the rollout's calls can be live (then on those alone)."""
        return "live" in self.replay_modes()

    @property
    def uses_batches(self) -> bool:
        """Whether some of the rollout's calls can go through the Message Batches API."""
        return "batch" in self.replay_modes()

    def applies_to(self, envelope: Envelope) -> bool:
        return envelope.model == self.baseline and any(fnmatchcase(envelope.route, p) for p in self.routes)

    def sampled_in(self, request_id: str) -> bool:
        """Deterministic per (rollout, request): a redelivered record gets the same answer."""
        if self.sample_rate >= 1.0:
            return True
        digest = hashlib.sha256(f"{self.name}\0{request_id}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64 < self.sample_rate


    def noise_checked(self, request_id: str) -> bool:
        """Whether this request's baseline gets its second replay (SPEC §8): by a hash, so stable."""
        return noise_checked(self.name, request_id, self.noise_check)


@dataclass(slots=True)
class SpendWindow:
    """Shadow spend over the last hour; the caller supplies the times (seconds, any monotonic origin)."""

    horizon_s: float = 3600.0
    _entries: deque[tuple[float, float]] = field(default_factory=deque)
    _total: float = 0.0

    def add(self, at_s: float, usd: float) -> None:
        self._entries.append((at_s, usd))
        self._total += usd

    def spent(self, now_s: float) -> float:
        while self._entries and self._entries[0][0] <= now_s - self.horizon_s:
            _, usd = self._entries.popleft()
            self._total -= usd
        return max(self._total, 0.0)
