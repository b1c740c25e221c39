"""The small interfaces the pipeline talks through; each has a real adapter and an in-memory twin."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from shadowd.core.adaptation import ReplayRequest
from shadowd.core.results import SideResult
from shadowd.core.retention import Cutoffs, PurgeResult
from shadowd.core.spend import Spend
from shadowd.core.tally import ModelCalls, RolloutTotals
from shadowd.records import DeadLetter, VerdictRecord

# A rollout's stored state: name, baseline, candidate, stage_index, state, stage_started_compared,
# stage_started_at, created_at, updated_at (datetimes in UTC).
RolloutRow = dict[str, Any]
# One audit-trail entry: id, rollout, at (ISO 8601 UTC), kind, actor, action, decision, stage_index,
# canary_percent, reasons, figures.
DecisionRow = dict[str, Any]


class ModelClient(Protocol):
    async def replay_request(
        self, replay: ReplayRequest, api_version: str | None, deadline: float | None = None
    ) -> SideResult:
        """Send one request; failures come back as a SideResult with ok=False, never as exceptions.

        `deadline` (time.monotonic seconds) is when capacity errors stop being retried."""
        ...

    async def close(self) -> None: ...


class StoreRefused(Exception):
    """The store answered and refused what it was given: retrying the same rows can never succeed.

    `what` names the refusal in a few words (`character_not_in_repertoire`, `string_too_long`, ...); it
    becomes the dead-letter reason `unstorable:<what>`.
    """

    def __init__(self, what: str, detail: str) -> None:
        super().__init__(f"{what}: {detail}")
        self.what = what
        self.detail = detail


class StoreUnavailable(Exception):
    """The store could not be reached or could not work just now: the same rows may succeed later."""


@dataclass(frozen=True, slots=True)
class StoredVerdict:
    id: int
    verdict: VerdictRecord

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, **self.verdict.to_dict()}


@dataclass(frozen=True, slots=True)
class VerdictFilter:
    status: str | None = None
    code: str | None = None
    route: str | None = None
    since: datetime | None = None


class VerdictStore(Protocol):
    """Verdicts: idempotent writes, the running totals reports read, and the pages' queries.

    Reads never write: the totals are kept by `save` (and by `roll_up` for rows stored some other way).
    """

    async def save(self, verdict_records: Sequence[VerdictRecord], letters: Sequence[DeadLetter]) -> int:
        """Insert what is absent (idempotent on (rollout, request_id) and on source position); returns inserted
        verdicts. The inserted verdicts are counted into their rollouts' totals in the same transaction.

        Raises StoreRefused when the rows themselves are the problem, StoreUnavailable when the store is;
        anything else is an error the store could not classify.
        """
        ...

    async def existing_verdicts(self, pairs: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        """Which (rollout, request_id) pairs already have a verdict: redelivered records are not replayed."""
        ...

    async def roll_up(self, rollout: str | None = None) -> int:
        """Count verdicts stored without `save` (a bulk load) into the totals; returns how many. A writer."""
        ...

    async def rollout_totals(self, rollout: str) -> RolloutTotals:
        """The rollout's running totals, raw: shadowd.core.figures decides what they mean."""
        ...

    async def model_calls(self, rollout: str) -> ModelCalls:
        """Verdicts that made model calls, how many were noise-checked, and the calls they made."""
        ...

    async def call_spend(self, rollout: str) -> tuple[Spend, int]:
        """The rollout's calls and USD by purpose, and how many gate decisions (promote or rollback) it took."""
        ...

    async def noise_counts(
        self, baseline: str, since: datetime, route: str | None = None
    ) -> dict[str, list[tuple[str, str, int, int]]]:
        """Per route, (kind, key, samples, differed) of the baseline's noise checks since `since`."""
        ...

    async def error_reason_counts(self, rollout: str) -> dict[str, int]: ...

    async def example_request_ids(
        self, rollout: str, codes: Sequence[str], per_code: int = 3
    ) -> dict[str, list[str]]: ...

    async def list_verdicts(
        self, rollout: str, where: VerdictFilter, limit: int = 100, before_id: int | None = None
    ) -> list[StoredVerdict]:
        """Newest first; `before_id` pages on."""
        ...

    async def get_verdict(self, rollout: str, request_id: str) -> StoredVerdict | None: ...

    async def rollout_names(self) -> list[str]:
        """Every rollout with a stored state or a verdict, sorted."""
        ...

    async def route_latencies(self, rollout: str, route: str, limit: int = 20_000) -> dict[str, list[float]]: ...

    async def regression_timeline(self, rollout: str, buckets: int = 48) -> list[dict[str, Any]]: ...

    async def findings_by_code_route(self, rollout: str) -> list[dict[str, Any]]: ...

    async def noisy_paths(self, rollout: str, limit: int = 15) -> list[dict[str, Any]]: ...


class RolloutStore(Protocol):
    """Rollout state and its decision audit trail."""

    async def ensure_rollout(self, name: str, baseline: str, candidate: str, now: datetime) -> None: ...

    async def rollout_state(self, name: str) -> RolloutRow | None: ...

    async def record_decision(
        self,
        name: str,
        *,
        at: datetime,
        kind: str,
        actor: str,
        action: str,
        decision: str,
        stage_index: int,
        canary_percent: int,
        reasons: Sequence[str],
        figures: dict[str, Any],
        new_state: str | None = None,
        stage_started_compared: int | None = None,
    ) -> int:
        """Append to the audit trail and move the rollout's state, in one transaction."""
        ...

    async def list_decisions(self, name: str, limit: int = 100) -> list[DecisionRow]:
        """Newest first."""
        ...

    async def latest_decision(self, name: str, decision: str) -> DecisionRow | None: ...


class DeadLetterStore(Protocol):
    """Records that could not become verdicts (written by `VerdictStore.save`, with the verdicts)."""

    async def dead_letter_counts(self) -> dict[str, int]: ...

    async def list_dead_letters(self, limit: int = 100) -> list[dict[str, Any]]: ...


class StoreAdmin(Protocol):
    async def ping(self) -> None:
        """Raise when the store cannot be reached."""
        ...

    async def close(self) -> None: ...

    def leadership(self, name: str) -> Leadership:
        """The role `name` (the promoter's) for one process at a time; see `Leadership`."""
        ...


class Leadership(Protocol):
    """A role held by at most one process: `hold()` takes it or checks it is still held, `release()` gives
    it up. A process that dies loses it (on PostgreSQL, with the connection that holds the lock)."""

    async def hold(self) -> bool: ...

    async def release(self) -> None: ...


class RetentionStore(Protocol):
    """The purge of what retention.* allows (docs/RETENTION.md)."""

    async def purge(
        self,
        cutoffs: Cutoffs,
        *,
        configured: Collection[str] = (),
        dry_run: bool = False,
        deadline: float | None = None,
    ) -> PurgeResult:
        """Purge (or with `dry_run` only count) what the cutoffs allow, stopping between statements once
        time.monotonic() passes `deadline`; `configured` rollouts without a state row keep all verdicts."""
        ...


class RetentionSource(Protocol):
    def retention(self, batch_rows: int) -> RetentionStore:
        """The store's purge, deleting at most `batch_rows` rows per statement."""
        ...


class Store(VerdictStore, RolloutStore, DeadLetterStore, StoreAdmin, Protocol):
    """The whole store: the SQL adapter and its in-memory twin both implement it."""


# What the report reads.
ReportStore = Store

__all__ = [
    "DeadLetterStore",
    "Leadership",
    "ModelClient",
    "RetentionSource",
    "RetentionStore",
    "RolloutStore",
    "Store",
    "StoreAdmin",
    "StoreRefused",
    "StoreUnavailable",
    "StoredVerdict",
    "VerdictFilter",
    "VerdictStore",
]
