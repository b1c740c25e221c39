"""Query latency with 1,000,000 verdicts in PostgreSQL: the rollout report and filtered verdict pages.

    python benchmarks/queries_bench.py --db postgresql+asyncpg://USER:PW@HOST:PORT/DB [--verdicts 1000000]

Makes a fresh database on that server, migrates it (`upgrade_database`, as `shadowd db upgrade` does),
bulk-loads verdicts and findings with COPY (secondary indexes and constraints dropped for the load and
rebuilt after, so the final schema is exactly the migrated one), runs ANALYZE, then times repeated
requests. With `shadowd/http/` present the requests go over HTTP to the real aiohttp app on a
loopback port; without it the same store calls the routes make (`build_report`, `list_verdicts`) are
timed directly. Prints one JSON object; drops the database at the end (unless --keep).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import asyncpg_dsn, create_database, drop_database, free_port, log, percentile

ROLLOUT = "big"
OTHER = "other"
ROUTES = ("support-summary", "order-tools", "chat-assist")
# Status mix of a candidate that mostly agrees: 5% regressions (1–2 findings each), noise with noise findings.
STATUSES = (("pass", 0.85), ("regression", 0.05), ("noise", 0.06), ("error", 0.02), ("skipped", 0.02))
REGRESSION_CODES = (
    ("schema.key_missing", "major"), ("schema.type_changed", "major"), ("format.json_invalid", "critical"),
    ("tool.call_missing", "major"), ("tool.input_invalid", "critical"), ("stop.truncated", "critical"),
)
MINOR_CODES = (("length.drift", "minor"), ("style.markdown_drift", "minor"), ("schema.key_added", "minor"))
WORDS = ("order refund customer shipment delayed card charged twice replacement warehouse courier invoice payment "
         "pending approved escalation priority agent tracking address damaged adapter firmware account").split()


VERDICT_COLUMNS = frozenset({
    "id", "rollout", "request_id", "route", "status", "reason", "findings", "baseline", "candidate",
    "baseline_repeat", "adaptations", "attributes", "comparator_version", "baseline_noise_blocking",
    "baseline_model", "candidate_model", "baseline_latency_ms", "candidate_latency_ms", "baseline_cost_usd",
    "candidate_cost_usd", "baseline_output_tokens", "candidate_output_tokens", "source", "partition", "offset",
    "captured_at", "created_at",
})


def _text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words))


def side_documents(rng: random.Random, model: str, count: int) -> list[str]:
    """Serialised SideResult.to_dict() documents, about 1.5 KB each, to pick from per row."""
    from shadowd.core.results import SideResult, Usage

    documents = []
    for _ in range(count):
        answer = {"summary": _text(rng, 60), "category": rng.choice(["billing", "shipping"]),
                  "priority": rng.choice(["low", "high"]), "actions": [_text(rng, 12) for _ in range(3)]}
        usage = Usage(input_tokens=rng.randint(300, 3000), output_tokens=rng.randint(80, 900))
        side = SideResult(
            model=model, ok=True, content=({"type": "text", "text": json.dumps(answer)},),
            stop_reason="end_turn", usage=usage, latency_ms=rng.uniform(400, 4000), cost_usd=rng.uniform(0.001, 0.05),
        )
        documents.append(json.dumps(side.to_dict()))
    return documents


def build_rows(
    rollout: str, count: int, first_id: int, seed: int, columns: list[str]
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Verdict rows (in `columns` order) and findings rows (verdict_id, rollout, code, severity, path,
    detail, noise) for one rollout."""
    rng = random.Random(seed)
    baselines = side_documents(rng, "claude-opus-4-6", 400)
    candidates = side_documents(rng, "claude-opus-4-7", 400)
    start = datetime(2026, 11, 1, tzinfo=UTC)
    statuses = [s for s, _ in STATUSES]
    weights = [w for _, w in STATUSES]
    verdict_rows: list[tuple[Any, ...]] = []
    finding_rows: list[tuple[Any, ...]] = []
    attributes = [json.dumps({"tenant": t, "region": "eu-west-1"}) for t in ("acme", "globex", "initech")]
    for index in range(count):
        verdict_id = first_id + index
        status = rng.choices(statuses, weights)[0]
        found: list[dict[str, Any]] = []
        if status == "regression":
            for code, severity in rng.sample(REGRESSION_CODES, rng.randint(1, 2)):
                found.append({"code": code, "severity": severity, "path": f"/{rng.choice(WORDS)}",
                              "detail": f"{code}: {_text(rng, 8)}", "noise": False})
        elif status == "noise":
            code, severity = rng.choice(REGRESSION_CODES)
            found.append({"code": code, "severity": severity, "path": f"/{rng.choice(WORDS)}",
                          "detail": f"{code}: {_text(rng, 8)}", "noise": True})
        elif status == "pass" and rng.random() < 0.1:
            code, severity = rng.choice(MINOR_CODES)
            found.append({"code": code, "severity": severity, "path": None, "detail": _text(rng, 8), "noise": False})
        compared = status in ("pass", "regression", "noise")
        created = start + timedelta(seconds=1.2 * verdict_id)  # a million verdicts over two weeks
        values = {
            "id": verdict_id,
            "rollout": rollout,
            "request_id": f"req-{verdict_id:09d}",
            "route": ROUTES[verdict_id % 3],
            "status": status,
            "reason": None if compared else ("sampled out" if status == "skipped" else "baseline failed: HTTP 500"),
            "findings": json.dumps(found),
            "baseline": rng.choice(baselines) if status != "skipped" else None,
            "candidate": rng.choice(candidates) if status != "skipped" else None,
            "baseline_repeat": None,
            "adaptations": '["sampling_param_dropped:temperature"]' if verdict_id % 3 == 0 else "[]",
            "attributes": attributes[verdict_id % 3],
            "comparator_version": "2026.11.1",
            "baseline_noise_blocking": compared and rng.random() < 0.02,
            "baseline_model": "claude-opus-4-6",
            "candidate_model": "claude-opus-4-7",
            "baseline_latency_ms": rng.uniform(400, 4000) if compared else None,
            "candidate_latency_ms": rng.uniform(400, 4500) if compared else None,
            "baseline_cost_usd": rng.uniform(0.001, 0.05) if compared else None,
            "candidate_cost_usd": rng.uniform(0.001, 0.05) if compared else None,
            "baseline_output_tokens": rng.randint(80, 900) if compared else None,
            "candidate_output_tokens": rng.randint(80, 900) if compared else None,
            "source": "llm.mirror",
            "partition": verdict_id % 6,
            "offset": verdict_id // 6,
            "captured_at": created - timedelta(seconds=5),
            "created_at": created,
        }
        verdict_rows.append(tuple(values.get(c) for c in columns))
        for finding in found:
            finding_rows.append((verdict_id, rollout, finding["code"], finding["severity"], finding["path"],
                                 finding["detail"], finding["noise"]))
    return verdict_rows, finding_rows


async def load(db_url: str, total: int, other: int, chunk: int = 50_000) -> dict[str, Any]:
    """Migrate, drop secondary indexes and constraints, COPY, rebuild them, ANALYZE."""
    import asyncpg

    from shadowd.adapters.sql_store import create_engine, upgrade_database

    engine = create_engine(db_url)
    await upgrade_database(engine)
    await engine.dispose()

    dsn = asyncpg_dsn(db_url)
    connection = await asyncpg.connect(dsn)
    timings: dict[str, float] = {}
    try:
        # The columns this loader fills (any other column, e.g. a rollup flag, takes its default).
        columns = [r["column_name"] for r in await connection.fetch(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'verdicts' ORDER BY ordinal_position"
        ) if r["column_name"] in VERDICT_COLUMNS]
        # Everything but the primary keys is dropped for the load and recreated from its own definition.
        constraints = await connection.fetch(
            "SELECT conrelid::regclass::text AS tbl, conname, pg_get_constraintdef(oid) AS def FROM pg_constraint"
            " WHERE conrelid IN ('verdicts'::regclass, 'findings'::regclass) AND contype IN ('u', 'f')"
        )
        indexes = await connection.fetch(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename IN ('verdicts', 'findings')"
            " AND indexname NOT IN (SELECT conname FROM pg_constraint) "
        )
        for row in constraints:
            if row["def"].startswith("FOREIGN KEY"):
                await connection.execute(f'ALTER TABLE {row["tbl"]} DROP CONSTRAINT "{row["conname"]}"')
        for row in constraints:
            if not row["def"].startswith("FOREIGN KEY"):
                await connection.execute(f'ALTER TABLE {row["tbl"]} DROP CONSTRAINT "{row["conname"]}"')
        for row in indexes:
            await connection.execute(f'DROP INDEX "{row["indexname"]}"')
    finally:
        await connection.close()

    started = time.perf_counter()
    plan = [(ROLLOUT, total, 1, 1), (OTHER, other, total + 1, 2)]
    findings_total = 0
    verdicts_total = 0

    async def copy_part(rollout: str, count: int, first_id: int, seed: int, part: int) -> tuple[int, int]:
        # Each part in its own connection: generation in Python overlaps COPY work in the server.
        rows, finding_rows = build_rows(rollout, count, first_id, seed * 1000 + part, columns)
        conn = await asyncpg.connect(dsn)
        try:
            await conn.copy_records_to_table("verdicts", records=rows, columns=columns)
            await conn.copy_records_to_table(
                "findings", records=finding_rows,
                columns=["verdict_id", "rollout", "code", "severity", "path", "detail", "noise"],
            )
        finally:
            await conn.close()
        return len(rows), len(finding_rows)

    jobs = []
    for rollout, count, first_id, seed in plan:
        for part, offset in enumerate(range(0, count, chunk)):
            jobs.append((rollout, min(chunk, count - offset), first_id + offset, seed, part))
    pending: set[asyncio.Task[tuple[int, int]]] = set()
    for job in jobs:
        while len(pending) >= 2:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                v, f = task.result()
                verdicts_total += v
                findings_total += f
        pending.add(asyncio.create_task(copy_part(*job)))
        if len(jobs) > 4 and jobs.index(job) % 5 == 0:
            log(f"queries: loading part {jobs.index(job) + 1}/{len(jobs)}")
    for task in asyncio.as_completed(pending):
        v, f = await task
        verdicts_total += v
        findings_total += f
    timings["copy_s"] = round(time.perf_counter() - started, 1)

    started = time.perf_counter()
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute("SET maintenance_work_mem = '512MB'")
        for row in constraints:
            if not row["def"].startswith("FOREIGN KEY"):
                await connection.execute(f'ALTER TABLE {row["tbl"]} ADD CONSTRAINT "{row["conname"]}" {row["def"]}')
        for row in indexes:
            await connection.execute(row["indexdef"])
        for row in constraints:
            if row["def"].startswith("FOREIGN KEY"):
                await connection.execute(f'ALTER TABLE {row["tbl"]} ADD CONSTRAINT "{row["conname"]}" {row["def"]}')
        await connection.execute("SELECT setval(pg_get_serial_sequence('verdicts', 'id'), (SELECT max(id) FROM verdicts))")
        await connection.execute("SELECT setval(pg_get_serial_sequence('findings', 'id'), (SELECT max(id) FROM findings))")
        timings["indexes_s"] = round(time.perf_counter() - started, 1)
        started = time.perf_counter()
        await connection.execute("VACUUM ANALYZE verdicts")
        await connection.execute("VACUUM ANALYZE findings")
        timings["analyze_s"] = round(time.perf_counter() - started, 1)
        size = await connection.fetchval("SELECT pg_size_pretty(pg_database_size(current_database()))")
        by_status = {r["status"]: int(r["n"]) for r in await connection.fetch(
            "SELECT status, count(*) AS n FROM verdicts WHERE rollout = $1 GROUP BY status", ROLLOUT)}
    finally:
        await connection.close()
    return {"verdicts": verdicts_total, "findings": findings_total, "database_size": size,
            "statuses": by_status, "columns": columns, **timings}


async def vacuum(db_url: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(asyncpg_dsn(db_url))
    try:
        await connection.execute("VACUUM ANALYZE verdicts")
    finally:
        await connection.close()


def write_config(folder: Path) -> Path:
    import yaml

    document = {
        "rollouts": [
            {"name": ROLLOUT, "baseline": "claude-opus-4-6", "candidate": "claude-opus-4-7", "noise_check": False},
            {"name": OTHER, "baseline": "claude-opus-4-6", "candidate": "claude-sonnet-4-6"},
        ]
    }
    path = folder / "queries.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


async def time_calls(
    name: str, call: Any, repeats: int, budget_s: float, before_each: Any = None
) -> dict[str, Any]:
    """Latency of `call()` (awaited): one warm-up, then up to `repeats` calls or `budget_s` seconds;
    `before_each()`, when given, runs untimed before every call."""
    await call()
    samples: list[float] = []
    deadline = time.monotonic() + budget_s
    while len(samples) < repeats and (not samples or time.monotonic() < deadline):
        if before_each is not None:
            await before_each()
        started = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - started) * 1000)
    result = {"n": len(samples), "p50_ms": round(percentile(samples, 0.5), 1),
              "p95_ms": round(percentile(samples, 0.95), 1), "max_ms": round(max(samples), 1)}
    log(f"queries: {name}: {result}")
    return result


async def run(args: argparse.Namespace) -> dict[str, Any]:
    db_url = await create_database(args.db, "shadowd_bench_queries")
    workdir = Path(args.workdir)
    try:
        log(f"queries: loading {args.verdicts:,} verdicts (+{args.other:,} in a second rollout)")
        loaded = await load(db_url, args.verdicts, args.other)
        log(f"queries: loaded {loaded}")
        result: dict[str, Any] = {"loaded": loaded}
        result.update(await measure(db_url, workdir, args, loaded["columns"]))
        return result
    finally:
        if not args.keep:
            await drop_database(db_url)


class Trickle:
    """New verdicts of the benchmarked rollout, COPYed in between two timed requests (outside the timing),
    so each report has freshly stored verdicts to fold in, as it has while the daemon runs."""

    def __init__(self, db_url: str, first_id: int, columns: list[str], per_request: int) -> None:
        self.dsn = asyncpg_dsn(db_url)
        self.next_id = first_id
        self.columns = columns
        self.per_request = per_request

    async def add(self) -> None:
        import asyncpg

        rows, finding_rows = build_rows(ROLLOUT, self.per_request, self.next_id, self.next_id, self.columns)
        self.next_id += self.per_request
        connection = await asyncpg.connect(self.dsn)
        try:
            await connection.copy_records_to_table("verdicts", records=rows, columns=self.columns)
            await connection.copy_records_to_table(
                "findings", records=finding_rows,
                columns=["verdict_id", "rollout", "code", "severity", "path", "detail", "noise"],
            )
        finally:
            await connection.close()


async def measure(db_url: str, workdir: Path, args: argparse.Namespace, columns: list[str]) -> dict[str, Any]:
    from shadowd.adapters.sql_store import VerdictFilter, open_store
    from shadowd.config import load_config

    config = load_config(write_config(workdir))
    store = await open_store(db_url)
    spec = config.rollout(ROLLOUT)
    assert spec is not None
    now = datetime.now(UTC)
    for rollout in config.rollouts:
        await store.ensure_rollout(rollout.name, rollout.baseline, rollout.candidate, now)
    out: dict[str, Any] = {"queries": {}}
    roll_up = getattr(store, "roll_up", None)
    if roll_up is not None:
        # The bulk load bypassed the daemon, so nothing is folded yet: fold it all once (in production the
        # promoter and the report fold a few seconds' worth at a time), and time that.
        started = time.perf_counter()
        folded = await roll_up()
        fold_s = time.perf_counter() - started
        out["fold"] = {"verdicts": folded, "seconds": round(fold_s, 1),
                       "verdicts_per_s": round(folded / fold_s) if fold_s > 0 else None}
        log(f"queries: folded {folded:,} verdicts into the rollups in {fold_s:.1f} s")
        # Folding a million verdicts at once leaves a million dead entries in the pending-rows index
        # until autovacuum visits; in production the fold runs every promoter tick over a few seconds'
        # worth, which autovacuum keeps up with. Vacuum once, as autovacuum would, before timing.
        started = time.perf_counter()
        await vacuum(db_url)
        out["fold"]["vacuum_s"] = round(time.perf_counter() - started, 1)
    trickle = Trickle(db_url, args.verdicts + args.other + 1, columns, args.pending)
    middle_id = args.verdicts // 2
    report_path = f"/v1/rollouts/{ROLLOUT}"
    queries: dict[str, tuple[str, Any, Any]] = {
        "report": (report_path, None, None),
        f"report, {args.pending} new verdicts pending": (report_path, None, trickle.add),
        "page: status+route": (f"/v1/rollouts/{ROLLOUT}/verdicts?status=regression&route=support-summary&limit=50",
                               (VerdictFilter(status="regression", route="support-summary"), 50, None), None),
        "page: code": (f"/v1/rollouts/{ROLLOUT}/verdicts?code=schema.key_missing&limit=50",
                       (VerdictFilter(code="schema.key_missing"), 50, None), None),
        "page: status, cursor mid-table": (
            f"/v1/rollouts/{ROLLOUT}/verdicts?status=regression&limit=50&cursor={middle_id}",
            (VerdictFilter(status="regression"), 50, middle_id), None),
    }
    try:
        import shadowd.http.app  # noqa: F401

        has_routes = True
    except ImportError:
        has_routes = False
    out["via"] = "http" if has_routes else "store"
    try:
        if has_routes:
            out["queries"] = await _over_http(config, store, queries, args)
        else:
            from shadowd.report import build_report

            for name, (_, page, before_each) in queries.items():
                if page is None:
                    call = lambda: build_report(store, spec)  # noqa: E731
                else:
                    where, limit, before = page
                    call = lambda w=where, lim=limit, b=before: store.list_verdicts(ROLLOUT, w, lim, b)  # noqa: E731
                out["queries"][name] = await time_calls(name, call, args.repeats, args.budget_s, before_each)
    finally:
        await store.close()
    return out


async def _over_http(config: Any, store: Any, queries: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    import aiohttp

    from shadowd.http import ApiState, create_app, start_http
    from shadowd.metrics import Metrics

    port = free_port()
    runner = await start_http(create_app(ApiState(config=config, store=store, metrics=Metrics()), open_reads=True),
                              f"127.0.0.1:{port}")
    results: dict[str, Any] = {}
    try:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as session:
            for name, (path, _, before_each) in queries.items():
                async def call(p: str = path) -> None:
                    async with session.get(p) as response:
                        body = await response.read()
                        if response.status != 200:
                            raise RuntimeError(f"GET {p}: {response.status} {body[:300]!r}")

                results[name] = await time_calls(name, call, args.repeats, args.budget_s, before_each)
    finally:
        await runner.cleanup()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True, help="SQLAlchemy URL of any database on the server to use")
    parser.add_argument("--verdicts", type=int, default=1_000_000)
    parser.add_argument("--other", type=int, default=50_000, help="verdicts of a second rollout")
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--pending", type=int, default=250,
                        help="verdicts stored before each request of the 'pending' report variant")
    parser.add_argument("--budget-s", type=float, default=60.0, help="stop repeating one query after this")
    parser.add_argument("--workdir", default="/tmp/shadowd-bench-queries")
    parser.add_argument("--keep", action="store_true", help="keep the database (its URL is logged)")
    args = parser.parse_args()
    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    print(json.dumps(asyncio.run(run(args))))


if __name__ == "__main__":
    main()
