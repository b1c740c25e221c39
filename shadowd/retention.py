"""Retention (config `retention:`): the cutoffs from the config and the clock, and the purge the promoter
runs on its tick, with its metrics. The SQL is in shadowd.adapters.sql_retention; docs/RETENTION.md says
what is kept and why the gate cannot be fooled by what is gone."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import structlog

from shadowd.clock import utc_now
from shadowd.core.retention import NOISE_COUNTS_KEPT, Cutoffs, PurgeResult
from shadowd.metrics import Metrics
from shadowd.ports import RetentionSource, RetentionStore
from shadowd.retention_config import RetentionConfig

if TYPE_CHECKING:
    from shadowd.config import Config

log = structlog.get_logger("shadowd.retention")

# A purge on the promoter's tick stops after this long and resumes on the next tick, so the gate's
# evaluations are never held up for long behind a large first purge.
TICK_BUDGET_S = 10.0
# With no retention.*_days set, only the learned-noise buckets age out, and they are hourly: a purge an
# hour keeps that table at about NOISE_COUNTS_KEPT of buckets without a query on every tick.
NOISE_ONLY_EVERY = timedelta(hours=1)


def cutoffs(config: RetentionConfig, now: datetime) -> Cutoffs:
    """Rows created strictly before `now - days` are purged: a row exactly `days` old is kept. Noise-count
    buckets have no setting: those starting before `now - NOISE_COUNTS_KEPT` go whenever a purge runs."""
    now = now.astimezone(UTC) if now.tzinfo else now.replace(tzinfo=UTC)

    def before(days: float | None) -> datetime | None:
        return None if days is None else now - timedelta(days=days)

    return Cutoffs(
        verdicts_before=before(config.verdicts_days),
        outputs_before=before(config.outputs_days),
        dead_letters_before=before(config.dead_letters_days),
        noise_counts_before=now - NOISE_COUNTS_KEPT,
    )


async def purge(
    store: RetentionSource,
    config: RetentionConfig,
    now: datetime,
    *,
    configured: Collection[str] = (),
    dry_run: bool = False,
    deadline: float | None = None,
) -> PurgeResult:
    """One purge (or dry run) under `config` at `now`."""
    return await store.retention(config.batch_rows).purge(cutoffs(config, now), configured=configured, dry_run=dry_run, deadline=deadline)


class RetentionTask:
    """The purge as the promoter runs it after each tick: bounded in time, never raising, measured."""

    def __init__(
        self,
        store: RetentionStore,
        config: RetentionConfig,
        *,
        configured: Collection[str] = (),
        metrics: Metrics | None = None,
        clock: Callable[[], datetime] | None = None,
        budget_s: float = TICK_BUDGET_S,
    ) -> None:
        self.store = store
        self.config = config
        self.configured = tuple(configured)
        self.metrics = metrics
        self.clock = clock or utc_now
        self.budget_s = budget_s
        self.last: PurgeResult | None = None
        self._noise_only_next: datetime | None = None

    async def run_once(self) -> PurgeResult | None:
        """Purge what the config allows, for at most the budget. With retention off, that is the
        learned-noise buckets past NOISE_COUNTS_KEPT (which no reader uses and which would otherwise grow
        forever), at most once per NOISE_ONLY_EVERY. None when there was nothing to run or it failed (a
        failure is logged and tried again next tick: the database may be away)."""
        now = self.clock()
        if not self.config.enabled and self._noise_only_next is not None and now < self._noise_only_next:
            return None
        started = time.monotonic()
        try:
            result = await self.store.purge(cutoffs(self.config, now), configured=self.configured,
                                            deadline=started + self.budget_s)
        except Exception as exc:
            log.error("retention_purge_failed", error=f"{type(exc).__name__}: {exc}"[:500])
            return None
        self.last = result
        if not self.config.enabled and result.complete:
            self._noise_only_next = now + NOISE_ONLY_EVERY
        if self.metrics is not None:
            for table, figures in result.tables.items():
                if figures.rows:
                    self.metrics.retention_purged.labels(table).inc(figures.rows)
            self.metrics.retention_duration.observe(result.elapsed_s)
            self.metrics.retention_longest_statement.set(result.longest_statement_s)
            self.metrics.retention_last_success.set(time.time())
        if any(f.rows for f in result.tables.values()) or not result.complete:
            log.info(
                "retention_purged",
                **{table: figures.rows for table, figures in result.tables.items()},
                complete=result.complete,
                statements=result.statements,
                longest_statement_s=round(result.longest_statement_s, 3),
                elapsed_s=round(result.elapsed_s, 3),
            )
        return result


def retention_task(store: RetentionSource, config: Config, metrics: Metrics | None = None) -> RetentionTask:
    """The purge for the promoter of a process running `config` (the configured rollouts are protected)."""
    return RetentionTask(store.retention(config.retention.batch_rows), config.retention,
                         configured=[r.name for r in config.rollouts], metrics=metrics)
