"""`shadowd demo`: generated traffic through a loopback fake model into SQLite, then the gate and report."""

from __future__ import annotations

import json
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

from shadowd.clock import utc_now
from shadowd.config import load_config
from shadowd.credentials import redact_url
from shadowd.demo.traffic import MALFORMED_LINES, generate_envelopes
from shadowd.fakemodel import load_behaviours, start_fake_model
from shadowd.promoter import evaluate_and_apply
from shadowd.replay_file import replay_file
from shadowd.report import build_report
from shadowd.wiring import open_pipeline


def demo_file(name: str) -> Path:
    return Path(str(resources.files("shadowd.demo").joinpath(name)))


def _remove_sqlite_file(db_url: str) -> None:
    if not db_url.startswith("sqlite") or ":memory:" in db_url:
        return
    path = Path(db_url.split("///", 1)[-1])
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


async def run_demo(
    db_url: str,
    *,
    count: int = 300,
    seed: int = 7,
    behaviours: Path | None = None,
    progress: bool = False,
    fresh: bool = False,
) -> dict[str, Any]:
    """Replay demo traffic into `db_url`; `fresh` first deletes that SQLite file (the default demo one only)."""
    config_path = demo_file("shadowd.yaml")
    config = load_config(config_path)
    if fresh:
        _remove_sqlite_file(db_url)
    server = await start_fake_model(load_behaviours(behaviours or demo_file("behaviours.yaml")))
    try:
        with tempfile.TemporaryDirectory(prefix="shadowd-demo-") as folder:
            traffic = Path(folder) / "traffic.jsonl"
            with traffic.open("w", encoding="utf-8") as out:
                for envelope in generate_envelopes(count, seed):
                    out.write(json.dumps(envelope) + "\n")
                for line in MALFORMED_LINES:
                    out.write(line.decode() + "\n")
            async with open_pipeline(config, db_url, base_url=server.base_url) as parts:
                pipeline, writer, store, in_flight = parts.pipeline, parts.writer, parts.store, parts.records_in_flight
                if progress:
                    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

                    with Progress(TextColumn("replaying demo traffic"), BarColumn(), MofNCompleteColumn(),
                                  transient=True) as bar:
                        task = bar.add_task("demo", total=count + len(MALFORMED_LINES))
                        summary = await replay_file(traffic, pipeline, writer, records_in_flight=in_flight,
                                                    on_record=lambda: bar.advance(task))
                else:
                    summary = await replay_file(traffic, pipeline, writer, records_in_flight=in_flight)
                decisions = []
                reports = []
                for spec in config.rollouts:
                    # The report shows the evidence at the current stage; then the gate acts on it.
                    reports.append(await build_report(
                        store, spec, lambda route: config.rules_for(route).value_noise_threshold
                    ))
                    decisions.append((await evaluate_and_apply(store, spec, utc_now())).to_dict())
    finally:
        await server.close()
    return {
        "summary": summary.to_dict(),
        "decisions": decisions,
        "reports": reports,
        "config": str(config_path),
        "db": redact_url(db_url),
    }
