"""The store's in-memory twin: the whole store port (`shadowd.ports.Store`) in dicts, for fast tests.

Same semantics as the SQL adapter, proved by tests/integration/test_store_contract.py: saves are
idempotent on (rollout, request_id) and on a dead letter's source position; the running totals are kept
by `save` with the same core rules (shadowd.core.tally); text is escaped as the SQL store escapes it,
so what reads back is what PostgreSQL would have returned. Setting `unavailable` makes every call raise
StoreUnavailable, as a database outage would.

Over 400 lines: the whole port in one file, read method by method against the SQL package.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from shadowd.core.findings import Finding, Status
from shadowd.core.judge import Grading
from shadowd.core.results import SideResult
from shadowd.core.spend import Spend
from shadowd.core.storable import escape_text, finite_or_none, storable_json
from shadowd.core.tally import (
    COMPARED_STATUSES,
    CodeTotal,
    GradeTotals,
    ModelCalls,
    RolloutTotals,
    StatusTotals,
    tally,
)
from shadowd.ports import DecisionRow, RolloutRow, Store, StoredVerdict, StoreUnavailable, VerdictFilter
from shadowd.records import DeadLetter, VerdictRecord, verdict_facts

JUDGE_STREAK_WINDOW = 200


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _stored(v: VerdictRecord) -> VerdictRecord:
    """The verdict as the SQL store reads it back: text escaped, non-finite figures nulled, as JSON holds it."""

    def side(result: SideResult | None) -> SideResult | None:
        return SideResult.from_dict(storable_json(result.to_dict())) if result is not None else None

    request = storable_json(v.request)
    return replace(
        v,
        route=escape_text(v.route),
        reason=escape_text(v.reason) if v.reason is not None else None,
        source=escape_text(v.source) if v.source is not None else None,
        findings=tuple(Finding.from_dict(f) for f in storable_json([f.to_dict() for f in v.findings])),
        baseline=side(v.baseline),
        candidate=side(v.candidate),
        baseline_repeat=side(v.baseline_repeat),
        adaptations=tuple(storable_json(list(v.adaptations))),
        attributes=dict(storable_json(dict(v.attributes))),
        request=request if isinstance(request, dict) else None,
        grading=Grading.from_dict(storable_json(v.grading.to_dict())) if v.grading else None,
        created_at=_utc(v.created_at),
        captured_at=_utc(v.captured_at) if v.captured_at else None,
        noise_observation=None,
    )


@dataclass(slots=True)
class _Totals:
    status: dict[tuple[str, str], StatusTotals] = field(default_factory=dict)
    codes: dict[tuple[str, bool], CodeTotal] = field(default_factory=dict)
    grades: dict[str, GradeTotals] = field(default_factory=dict)
    latency: dict[tuple[str, int], int] = field(default_factory=dict)


class MemoryLeadership:
    """The role within one store: one holder at a time (a twin has no other process to lose it to)."""

    def __init__(self, store: MemoryStore, name: str) -> None:
        self.store = store
        self.name = name

    async def hold(self) -> bool:
        self.store._check()
        holder = self.store._leaders.setdefault(self.name, self)
        return holder is self

    async def release(self) -> None:
        if self.store._leaders.get(self.name) is self:
            del self.store._leaders[self.name]


class MemoryStore:
    """Everything the SQL store keeps, in memory."""

    def __init__(self) -> None:
        self.unavailable = False
        self.closed = False
        self._verdicts: dict[int, VerdictRecord] = {}
        self._verdict_ids: dict[tuple[str, str], int] = {}
        self._letters: dict[tuple[str, int, int], tuple[int, DeadLetter]] = {}
        self._totals: dict[str, _Totals] = {}
        self._noise: dict[tuple[str, str, str, str, datetime], list[int]] = {}
        self._calls: dict[str, ModelCalls] = {}
        self._spend: dict[str, Spend] = {}
        self._rollouts: dict[str, RolloutRow] = {}
        self._decisions: list[DecisionRow] = []
        self._leaders: dict[str, MemoryLeadership] = {}
        self._next_id = 1

    def _check(self) -> None:
        if self.unavailable:
            raise StoreUnavailable("the in-memory store is set unavailable")

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id - 1

    # --- admin -----------------------------------------------------------------------------------

    async def ping(self) -> None:
        self._check()

    async def close(self) -> None:
        self.closed = True

    def leadership(self, name: str) -> MemoryLeadership:
        return MemoryLeadership(self, name)

    # --- verdict writes ----------------------------------------------------------------------------

    async def save(self, verdict_records: Sequence[VerdictRecord], letters: Sequence[DeadLetter]) -> int:
        self._check()
        inserted: list[VerdictRecord] = []
        for record in verdict_records:
            key = (record.rollout, record.request_id)
            if key in self._verdict_ids:
                continue
            identity = self._new_id()
            self._verdict_ids[key] = identity
            self._verdicts[identity] = _stored(record)
            inserted.append(record)
        delta = tally(verdict_facts(v) for v in inserted)
        for (rollout, route, status), add in delta.status.items():
            totals = self._totals.setdefault(rollout, _Totals())
            totals.status[(route, status)] = totals.status.get((route, status), StatusTotals()) + add
        for (rollout, code, noise), code_total in delta.codes.items():
            totals = self._totals.setdefault(rollout, _Totals())
            existing = totals.codes.get((code, noise))
            totals.codes[(code, noise)] = existing + code_total if existing else code_total
        for (rollout, route), grades in delta.grades.items():
            totals = self._totals.setdefault(rollout, _Totals())
            totals.grades[route] = totals.grades.get(route, GradeTotals()) + grades
        for (rollout, side, bucket), n in delta.latency.items():
            totals = self._totals.setdefault(rollout, _Totals())
            totals.latency[(side, bucket)] = totals.latency.get((side, bucket), 0) + n
        for record in inserted:
            self._count_noise_and_calls(record)
        for letter in letters:
            capped = letter.capped()
            position = (escape_text(capped.source)[:512], capped.partition, capped.offset)
            if position not in self._letters:
                self._letters[position] = (self._new_id(), capped)
        return len(inserted)

    def _count_noise_and_calls(self, record: VerdictRecord) -> None:
        if record.model_calls:
            calls = self._calls.get(record.rollout, ModelCalls())
            self._calls[record.rollout] = ModelCalls(
                calls.replayed + 1,
                calls.noise_checked + (record.baseline_repeat is not None),
                calls.model_calls + record.model_calls,
            )
            if record.spend is not None:
                self._spend[record.rollout] = self._spend.get(record.rollout, Spend()) + record.spend
        observation = record.noise_observation
        if observation is None or record.baseline is None:
            return
        bucket = _utc(record.created_at).replace(minute=0, second=0, microsecond=0)
        for kind, key, differed in observation.rows():
            counts = self._noise.setdefault(
                (escape_text(record.baseline.model)[:128], escape_text(record.route)[:256], kind,
                 escape_text(key)[:512], bucket), [0, 0],
            )
            counts[0] += 1
            counts[1] += differed

    async def existing_verdicts(self, pairs: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        self._check()
        return {pair for pair in pairs if pair in self._verdict_ids}

    async def roll_up(self, rollout: str | None = None) -> int:
        """Nothing is ever pending here: `save` counts every verdict it stores."""
        self._check()
        return 0

    # --- verdict reads ------------------------------------------------------------------------------

    def _of(self, rollout: str) -> list[tuple[int, VerdictRecord]]:
        """The rollout's verdicts, newest first."""
        return sorted(((i, v) for i, v in self._verdicts.items() if v.rollout == rollout), key=lambda e: -e[0])

    async def rollout_totals(self, rollout: str) -> RolloutTotals:
        self._check()
        totals = self._totals.get(rollout, _Totals())
        streak, error = 0, None
        attempts = [v for _, v in self._of(rollout) if v.grading and v.grading.status in ("graded", "failed")]
        for verdict in attempts[:JUDGE_STREAK_WINDOW]:
            if verdict.grading is None or verdict.grading.status != "failed":
                break
            streak += 1
        if streak and attempts[0].grading is not None:
            error = attempts[0].grading.error
        return RolloutTotals(
            status=dict(totals.status), codes=dict(totals.codes), grades=dict(totals.grades),
            latency=dict(totals.latency), judge_failed_streak=streak, judge_last_error=error,
        )

    async def model_calls(self, rollout: str) -> ModelCalls:
        self._check()
        return self._calls.get(rollout, ModelCalls())

    async def call_spend(self, rollout: str) -> tuple[Spend, int]:
        self._check()
        taken = sum(1 for row in self._decisions if row["rollout"] == rollout and row["kind"] == "gate"
                    and row["decision"] in ("promote", "rollback"))
        return self._spend.get(rollout, Spend()), taken

    async def noise_counts(
        self, baseline: str, since: datetime, route: str | None = None
    ) -> dict[str, list[tuple[str, str, int, int]]]:
        self._check()
        summed: dict[tuple[str, str, str], list[int]] = {}
        for (model, at_route, kind, key, bucket), (samples, differed) in self._noise.items():
            if model != baseline or bucket < since or (route is not None and at_route != route):
                continue
            entry = summed.setdefault((at_route, kind, key), [0, 0])
            entry[0] += samples
            entry[1] += differed
        result: dict[str, list[tuple[str, str, int, int]]] = {}
        for (at_route, kind, key), (samples, differed) in summed.items():
            result.setdefault(at_route, []).append((kind, key, samples, differed))
        return result

    async def error_reason_counts(self, rollout: str) -> dict[str, int]:
        self._check()
        counts: dict[str, int] = {}
        for _, v in self._of(rollout):
            if v.status is Status.ERROR:
                reason = str(v.error_reason or "unknown")
                counts[reason] = counts.get(reason, 0) + 1
        return counts

    async def example_request_ids(self, rollout: str, codes: Sequence[str], per_code: int = 3) -> dict[str, list[str]]:
        self._check()
        newest = self._of(rollout)
        return {
            code: [v.request_id for _, v in newest if any(f.code == code and not f.noise for f in v.findings)][:per_code]
            for code in codes
        }

    async def list_verdicts(
        self, rollout: str, where: VerdictFilter, limit: int = 100, before_id: int | None = None
    ) -> list[StoredVerdict]:
        self._check()
        rows: list[StoredVerdict] = []
        for identity, v in self._of(rollout):
            if before_id is not None and identity >= before_id:
                continue
            if where.status and v.status.value != where.status:
                continue
            if where.route and v.route != where.route:
                continue
            if where.since and v.created_at < where.since:
                continue
            if where.code and not any(f.code == where.code for f in v.findings):
                continue
            rows.append(StoredVerdict(identity, v))
            if len(rows) >= limit:
                break
        return rows

    async def get_verdict(self, rollout: str, request_id: str) -> StoredVerdict | None:
        self._check()
        identity = self._verdict_ids.get((rollout, request_id))
        return StoredVerdict(identity, self._verdicts[identity]) if identity is not None else None

    async def rollout_names(self) -> list[str]:
        self._check()
        return sorted(set(self._rollouts) | {v.rollout for v in self._verdicts.values()})

    def _compared(self, rollout: str) -> list[VerdictRecord]:
        return [v for _, v in self._of(rollout) if v.status.value in COMPARED_STATUSES]

    async def route_latencies(self, rollout: str, route: str, limit: int = 20_000) -> dict[str, list[float]]:
        self._check()
        newest = [v for v in self._compared(rollout) if v.route == route][:limit]
        result: dict[str, list[float]] = {"baseline": [], "candidate": []}
        for v in newest:
            for side, result_side in (("baseline", v.baseline), ("candidate", v.candidate)):
                value = finite_or_none(result_side.latency_ms) if result_side else None
                if value is not None:
                    result[side].append(float(value))
        return result

    async def regression_timeline(self, rollout: str, buckets: int = 48) -> list[dict[str, Any]]:
        """Compared verdicts per time bucket: n, candidate regressions, baseline noise, both (as the SQL store)."""
        self._check()
        compared = self._compared(rollout)
        if not compared:
            return []
        stamps = [v.created_at.timestamp() for v in compared]
        start, end = min(stamps), max(stamps)
        width = max((end - start) / buckets, 1e-3)
        counts: dict[int, list[int]] = {}
        for v, stamp in zip(compared, stamps, strict=True):
            index = min(math.floor((stamp - start) / width), buckets - 1)
            entry = counts.setdefault(index, [0, 0, 0, 0])
            regressed = v.status is Status.REGRESSION
            entry[0] += 1
            entry[1] += regressed
            entry[2] += v.baseline_noise_blocking
            entry[3] += regressed and v.baseline_noise_blocking
        return [
            {"start": start + width * b, "end": start + width * (b + 1), "n": e[0], "candidate": e[1],
             "baseline": e[2], "both": e[3]}
            for b, e in sorted(counts.items())
        ]

    async def findings_by_code_route(self, rollout: str) -> list[dict[str, Any]]:
        self._check()
        merged: dict[tuple[str, str, str], set[str]] = {}
        for _, v in reversed(self._of(rollout)):
            for f in v.findings:
                if not f.noise:
                    merged.setdefault((f.code, f.severity.value, v.route), set()).add(v.request_id)
        return [{"code": code, "severity": severity, "route": route, "count": len(ids)}
                for (code, severity, route), ids in merged.items()]

    async def noisy_paths(self, rollout: str, limit: int = 15) -> list[dict[str, Any]]:
        self._check()
        merged: dict[tuple[str, str, str | None], set[str]] = {}
        for _, v in self._of(rollout):
            for f in v.findings:
                if f.noise:
                    merged.setdefault((v.route, f.code, f.path), set()).add(v.request_id)
        ranked = sorted(merged.items(), key=lambda e: (-len(e[1]), e[0][0], e[0][1]))
        return [{"route": route, "code": code, "path": path, "count": len(ids)}
                for (route, code, path), ids in ranked[:limit]]

    # --- rollouts and decisions -----------------------------------------------------------------------

    async def ensure_rollout(self, name: str, baseline: str, candidate: str, now: datetime) -> None:
        self._check()
        self._rollouts.setdefault(name, {
            "name": name, "baseline": baseline, "candidate": candidate, "stage_index": 0, "state": "active",
            "stage_started_compared": 0, "stage_started_at": _utc(now), "created_at": _utc(now),
            "updated_at": _utc(now),
        })

    async def rollout_state(self, name: str) -> RolloutRow | None:
        self._check()
        row = self._rollouts.get(name)
        return dict(row) if row is not None else None

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
        self._check()
        row = self._rollouts.get(name)
        if row is not None:
            row.update(stage_index=stage_index, updated_at=_utc(at))
            if new_state is not None:
                row["state"] = new_state
            if stage_started_compared is not None:
                row.update(stage_started_compared=stage_started_compared, stage_started_at=_utc(at))
        identity = self._new_id()
        self._decisions.append({
            "id": identity, "rollout": name, "at": _utc(at), "kind": kind, "actor": actor, "action": action,
            "decision": decision, "stage_index": stage_index, "canary_percent": canary_percent,
            "reasons": list(reasons), "figures": _jsonable(figures),
        })
        return identity

    async def list_decisions(self, name: str, limit: int = 100) -> list[DecisionRow]:
        self._check()
        rows = [row for row in reversed(self._decisions) if row["rollout"] == name][:limit]
        return [{**row, "at": row["at"].isoformat()} for row in rows]

    async def latest_decision(self, name: str, decision: str) -> DecisionRow | None:
        self._check()
        for row in reversed(self._decisions):
            if row["rollout"] == name and row["decision"] == decision:
                return {**row, "at": row["at"].isoformat()}
        return None

    # --- dead letters ---------------------------------------------------------------------------------

    async def dead_letter_counts(self) -> dict[str, int]:
        self._check()
        counts: dict[str, int] = {}
        for _, letter in self._letters.values():
            reason = escape_text(letter.reason)[:128]
            counts[reason] = counts.get(reason, 0) + 1
        return counts

    async def list_dead_letters(self, limit: int = 100) -> list[dict[str, Any]]:
        self._check()
        newest = sorted(self._letters.items(), key=lambda e: -e[1][0])[:limit]
        return [
            {
                "id": identity,
                "source": position[0],
                "partition": letter.partition,
                "offset": letter.offset,
                "reason": escape_text(letter.reason)[:128],
                "detail": escape_text(letter.detail[:4000]),
                "payload": letter.payload.decode("utf-8", errors="replace"),
                "payload_truncated": letter.payload_truncated,
                "created_at": _utc(letter.created_at).isoformat(),
            }
            for position, (identity, letter) in newest
        ]


def _jsonable(value: Any) -> Any:
    """As the decision's figures read back from a JSON column: non-finite numbers become null."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


__all__ = ["MemoryLeadership", "MemoryStore"]


def _implements_the_port(store: MemoryStore) -> Store:
    """mypy checks here that the twin implements the whole store port."""
    return store
