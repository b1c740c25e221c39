"""`replay_mode: batch`: replays gathered into windows and sent through the Message Batches API.

A rollout in batch mode hands each of its model calls to a BatchReplayer instead of the live
client. The call waits in the current window; the window is submitted as one Message Batch when it
holds `batch.window_records` calls or `batch.window_s` after it opened. The batch id and the
identity of every call in it go to the ledger before anything else happens, then the batch is
polled with backoff until it ends, and each waiting call gets its own individual result. The
record's verdicts are stored, and its offset committed, only after that (the consumer's usual
order), so a daemon that dies while a batch runs loses nothing: the redelivered record asks for
the same calls, whose custom ids the ledger finds in the stored batch, and polling resumes there.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

import anthropic
import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge

from shadowd.clock import utc_now
from shadowd.core.adaptation import ReplayRequest
from shadowd.core.batching import ENDED, BatchItem, BatchWindow, PollBackoff, Slot, batch_side, custom_id
from shadowd.core.profiles import ModelProfile
from shadowd.core.results import SideResult

log = structlog.get_logger("shadowd.batch")

# Errors worth trying again (the API busy or away, or a server fault); anything else is final.
_TRANSIENT = (anthropic.APIConnectionError, anthropic.RateLimitError, anthropic.InternalServerError)
_RETRY_MAX_S = 60.0
# Ended batches are kept this long (the API keeps results 29 days), then dropped from the ledger,
# checked at most once per FORGET_EVERY_S.
KEEP_ENDED = timedelta(days=30)
FORGET_EVERY_S = 3600.0
_RESULT_KINDS = frozenset({"succeeded", "errored", "expired", "canceled", "missing"})


class BatchLedger(Protocol):
    async def record(self, batch_id: str, items: Sequence[BatchItem], created_at: datetime) -> None:
        """Store a submitted batch and the identity of every call in it."""
        ...

    async def find(self, custom_ids: Sequence[str]) -> dict[str, str]:
        """custom id -> the stored batch that holds it (not one the API lost)."""
        ...

    async def mark(self, batch_id: str, state: str, at: datetime) -> None:
        """`ended` once its results were read; `lost` when the API no longer knows the batch."""
        ...

    async def forget_before(self, cutoff: datetime) -> int:
        """Drop batches that ended (or were lost) before `cutoff`; returns how many."""
        ...


@dataclass(slots=True)
class MemoryBatchLedger:
    """The ledger's in-memory twin (for tests, and for runs without a database)."""

    batches: dict[str, dict[str, Any]] = field(default_factory=dict)
    items: dict[str, list[BatchItem]] = field(default_factory=dict)

    async def record(self, batch_id: str, items: Sequence[BatchItem], created_at: datetime) -> None:
        self.batches[batch_id] = {"state": "submitted", "created_at": created_at, "requests": len(items)}
        self.items[batch_id] = list(items)

    async def find(self, custom_ids: Sequence[str]) -> dict[str, str]:
        wanted = set(custom_ids)
        found: dict[str, str] = {}
        for batch_id, batch in sorted(self.batches.items(), key=lambda kv: kv[1]["created_at"]):
            if batch["state"] == "lost":
                continue
            for item in self.items[batch_id]:
                if item.custom_id in wanted:
                    found[item.custom_id] = batch_id
        return found

    async def mark(self, batch_id: str, state: str, at: datetime) -> None:
        self.batches[batch_id].update(state=state, ended_at=at)

    async def forget_before(self, cutoff: datetime) -> int:
        gone = [batch_id for batch_id, batch in self.batches.items()
                if batch["state"] != "submitted" and batch.get("ended_at") is not None and batch["ended_at"] < cutoff]
        for batch_id in gone:
            del self.batches[batch_id], self.items[batch_id]
        return len(gone)


@dataclass(frozen=True, slots=True)
class BatchCall:
    """Who a batch call is for: the rollout, the request, which side, and where the record came from."""

    rollout: str
    request_id: str
    slot: Slot
    source: str | None = None
    partition: int | None = None
    offset: int | None = None


class BatchMetrics:
    """The Prometheus series of batch mode, in the daemon's registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry()
        self.in_flight = Gauge("shadowd_batches_in_flight", "Message Batches being polled.", registry=r)
        self.batches = Counter("shadowd_batches_total", "Message Batches by event (created, resumed, ended, lost).",
                               ["event"], registry=r)
        self.results = Counter("shadowd_batch_results_total", "Individual batch results handed to waiting calls "
                               "(succeeded, errored, expired, canceled, missing).", ["result"], registry=r)


class BatchReplayer:
    """Model calls of `replay_mode: batch` rollouts, answered from Message Batches (see the module doc)."""

    def __init__(
        self,
        client: anthropic.AsyncAnthropic,
        ledger: BatchLedger,
        *,
        profiles: dict[str, ModelProfile],
        price_multiplier: float = 0.5,
        window_records: int = 1000,
        window_s: float = 60.0,
        backoff: PollBackoff | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        metrics: BatchMetrics | None = None,
    ) -> None:
        self._client = client
        self.metrics = metrics or BatchMetrics()
        self._ledger = ledger
        self._profiles = profiles
        self._price_multiplier = price_multiplier
        self._window_records = window_records
        self._window_s = window_s
        self._backoff = backoff or PollBackoff()
        self._sleep = sleep
        self._monotonic = monotonic
        # One window per anthropic-version: a batch is one API call, sent under one version.
        self._windows: dict[str | None, BatchWindow] = {}
        self._timers: dict[str | None, asyncio.Task[None]] = {}
        self._waiting: dict[str, asyncio.Future[dict[str, Any] | None]] = {}
        self._members: dict[str, set[str]] = {}  # batch id -> custom ids waiting on it in this process
        self._tasks: set[asyncio.Task[None]] = set()
        self._watching: set[str] = set()
        self._forgot_at: float | None = None
        self.batches_created = 0
        self.batches_resumed = 0
        self.requests_submitted = 0

    async def replay(self, replay: ReplayRequest, api_version: str | None, call: BatchCall) -> SideResult:
        """One side, from its individual batch result; never raises for API trouble."""
        model = str(replay.body.get("model", ""))
        cid = custom_id(call.request_id, model, call.slot)
        future = self._waiting.get(cid)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            self._waiting[cid] = future
            try:
                stored = (await self._ledger.find([cid])).get(cid)
            except Exception as exc:  # the ledger is down: submit anew (costs a call, loses nothing)
                log.warning("batch_ledger_unavailable", error=repr(exc)[:300])
                stored = None
            if stored is not None:
                log.info("batch_resumed", batch_id=stored, custom_id=cid, request_id=call.request_id[:200])
                self._members.setdefault(stored, set()).add(cid)
                self._watch(stored, resumed=True)
            else:
                params = {k: v for k, v in replay.body.items() if k != "stream"}
                item = BatchItem(cid, call.rollout, call.request_id, model, call.slot, params,
                                 call.source, call.partition, call.offset)
                self._enqueue(api_version, item)
        result = await asyncio.shield(future)
        return batch_side(model, result, self._profiles.get(model), self._price_multiplier)

    async def close(self) -> None:
        """Stop polling (the ledger keeps the batches for the next start) and close the client."""
        for task in [*self._timers.values(), *self._tasks]:
            task.cancel()
        for task in [*self._timers.values(), *self._tasks]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for future in self._waiting.values():
            if not future.done():
                future.cancel()
        await self._client.close()

    def _enqueue(self, api_version: str | None, item: BatchItem) -> None:
        window = self._windows.get(api_version)
        if window is None:
            window = self._windows[api_version] = BatchWindow(self._window_records, self._window_s)
        window.add(item, self._monotonic())
        if window.full():
            self._submit(api_version)
        elif api_version not in self._timers:
            self._timers[api_version] = asyncio.create_task(self._submit_when_due(api_version))

    async def _submit_when_due(self, api_version: str | None) -> None:
        window = self._windows[api_version]
        while True:
            left = window.seconds_left(self._monotonic())
            if left is None:
                return
            if left <= 0:
                break
            await self._sleep(left)
        self._timers.pop(api_version, None)
        self._submit(api_version)

    def _submit(self, api_version: str | None) -> None:
        timer = self._timers.pop(api_version, None)
        if timer is not None and timer is not asyncio.current_task():
            timer.cancel()
        items = self._windows[api_version].take()
        if items:
            self._spawn(self._create(api_version, items))

    def _spawn(self, work: Awaitable[None]) -> None:
        async def run() -> None:
            await work

        task = asyncio.create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _create(self, api_version: str | None, items: list[BatchItem]) -> None:
        """Submit, store the batch id and its calls, then watch it; a refusal fails every call in it."""
        requests: list[Any] = [{"custom_id": item.custom_id, "params": item.params} for item in items]
        headers = {"anthropic-version": api_version} if api_version else None
        attempt = 0
        while True:
            try:
                batch = await self._client.messages.batches.create(requests=requests, extra_headers=headers)
                break
            except _TRANSIENT as exc:
                attempt += 1
                delay = min(_RETRY_MAX_S, self._backoff.delay_s(attempt))
                log.warning("batch_create_retry", requests=len(items), error=repr(exc)[:300], retry_in_s=delay)
                await self._sleep(delay)
            except anthropic.AnthropicError as exc:
                log.error("batch_create_refused", requests=len(items), error=repr(exc)[:500])
                refusal = {"type": "errored", "error": {"type": "error", "error": {
                    "type": "batch_refused", "message": f"the batch was refused: {exc}"[:500]}}}
                for item in items:
                    self._resolve(item.custom_id, refusal)
                return
        self.batches_created += 1
        self.requests_submitted += len(items)
        self.metrics.batches.labels("created").inc()
        cids = {item.custom_id for item in items}
        self._members.setdefault(batch.id, set()).update(cids)
        attempt = 0
        while True:
            try:
                await self._ledger.record(batch.id, items, utc_now())
                break
            except Exception as exc:  # the store is down: the calls keep waiting, nothing is committed
                attempt += 1
                delay = min(_RETRY_MAX_S, self._backoff.delay_s(attempt))
                log.warning("batch_ledger_write_retry", batch_id=batch.id, error=repr(exc)[:300], retry_in_s=delay)
                await self._sleep(delay)
        log.info("batch_submitted", batch_id=batch.id, requests=len(items))
        self._watch(batch.id, resumed=False)

    def _watch(self, batch_id: str, *, resumed: bool) -> None:
        if batch_id in self._watching:
            return
        self._watching.add(batch_id)
        if resumed:
            self.batches_resumed += 1
            self.metrics.batches.labels("resumed").inc()
        self.metrics.in_flight.set(len(self._watching))
        self._spawn(self._poll(batch_id))

    async def _poll(self, batch_id: str) -> None:
        """Wait for the batch to end (backing off), then hand every waiting call its result."""
        polls = 0
        try:
            while True:
                await self._sleep(self._backoff.delay_s(polls))
                polls += 1
                try:
                    batch = await self._client.messages.batches.retrieve(batch_id)
                except anthropic.NotFoundError:
                    await self._lost(batch_id)
                    return
                except _TRANSIENT as exc:
                    log.warning("batch_poll_failed", batch_id=batch_id, error=repr(exc)[:300])
                    continue
                if batch.processing_status != ENDED:
                    continue
                try:
                    results = await self._client.messages.batches.results(batch_id)
                    async for line in results:
                        self._resolve(line.custom_id, line.result.to_dict())
                except (*_TRANSIENT, anthropic.NotFoundError) as exc:
                    log.warning("batch_results_failed", batch_id=batch_id, error=repr(exc)[:300])
                    continue
                break
            for cid in self._members.pop(batch_id, set()):
                self._resolve(cid, None)  # the batch ended without this call's result
            with contextlib.suppress(Exception):
                await self._ledger.mark(batch_id, "ended", utc_now())
            self.metrics.batches.labels("ended").inc()
            log.info("batch_ended", batch_id=batch_id, polls=polls)
            await self._forget_old()
        finally:
            self._watching.discard(batch_id)
            self.metrics.in_flight.set(len(self._watching))

    async def _forget_old(self) -> None:
        """Drop long-ended batches from the ledger, at most once per FORGET_EVERY_S."""
        now = self._monotonic()
        if self._forgot_at is not None and now - self._forgot_at < FORGET_EVERY_S:
            return
        self._forgot_at = now
        try:
            dropped = await self._ledger.forget_before(utc_now() - KEEP_ENDED)
        except Exception as exc:  # the ledger is down: try again next time
            log.warning("batch_ledger_forget_failed", error=repr(exc)[:300])
            return
        if dropped:
            log.info("batch_ledger_forgot", batches=dropped, older_than_days=KEEP_ENDED.days)

    async def _lost(self, batch_id: str) -> None:
        """The API does not know the batch (archived, another key): its calls fail; a redelivery resubmits."""
        log.error("batch_lost", batch_id=batch_id)
        self.metrics.batches.labels("lost").inc()
        with contextlib.suppress(Exception):
            await self._ledger.mark(batch_id, "lost", utc_now())
        lost = {"type": "errored", "error": {"type": "error", "error": {
            "type": "not_found_error", "message": f"batch {batch_id} is no longer known to the API"}}}
        for cid in self._members.pop(batch_id, set()):
            self._resolve(cid, lost)

    def _resolve(self, cid: str, result: dict[str, Any] | None) -> None:
        future = self._waiting.pop(cid, None)
        if future is not None and not future.done():
            kind = result.get("type") if result is not None else "missing"
            self.metrics.results.labels(kind if kind in _RESULT_KINDS else "other").inc()
            future.set_result(result)
        for members in self._members.values():
            members.discard(cid)


def price_multiplier(discount: float) -> float:
    """What a batch token costs against the list price, from `models.batch_discount`."""
    return 1.0 - discount


def attach_batches(pipeline: Any, config: Any, store: Any, base_url: str | None = None) -> BatchReplayer | None:
    """Give `pipeline` a BatchReplayer when some rollout's calls can be batched (its own `replay_mode:
    batch` or a covered route's); None otherwise.

    The replayer has its own SDK client (batch calls are few and long-lived) and keeps its ledger in
    the store's database (migration 0007_replay_batches), or in memory for a store without one.
    """
    if not any(r.uses_batches for r in config.rollouts):
        return None
    from shadowd.adapters.sql_batches import SqlBatchLedger

    engine = getattr(store, "engine", None)
    ledger: BatchLedger = SqlBatchLedger(engine) if engine is not None else MemoryBatchLedger()
    settings = config.batch
    client = anthropic.AsyncAnthropic(
        base_url=base_url or config.models.base_url, api_key=config.api_key() or "unset", max_retries=0,
        timeout=config.models.timeout_s, open_telemetry=config.models.sdk_open_telemetry,
    )
    replayer = BatchReplayer(
        client, ledger, profiles=config.profiles, price_multiplier=price_multiplier(config.models.batch_discount),
        window_records=settings.window_records, window_s=settings.window_s,
        backoff=PollBackoff(settings.poll_initial_s, settings.poll_max_s),
        metrics=BatchMetrics(pipeline.metrics.registry),
    )
    pipeline.batches = replayer
    return replayer
