"""The small interfaces the pipeline talks through; each has a real adapter and an in-memory twin."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from shadowd.core.adaptation import ReplayRequest
from shadowd.core.results import SideResult
from shadowd.records import DeadLetter, VerdictRecord


class ModelClient(Protocol):
    async def replay_request(
        self, replay: ReplayRequest, api_version: str | None, deadline: float | None = None
    ) -> SideResult:
        """Send one request; failures come back as a SideResult with ok=False, never as exceptions.

        `deadline` (time.monotonic seconds) is when capacity errors stop being retried."""
        ...

    async def close(self) -> None: ...


class VerdictStore(Protocol):
    async def save(self, verdicts: Sequence[VerdictRecord], dead_letters: Sequence[DeadLetter]) -> int:
        """Insert what is absent (idempotent on (rollout, request_id) and on source position); returns inserted verdicts."""
        ...

    async def ping(self) -> None:
        """Raise when the store cannot be reached."""
        ...

    async def existing_verdicts(self, pairs: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        """Which (rollout, request_id) pairs already have a verdict: redelivered records are not replayed."""
        ...
