"""The `shadowd` command line (SPEC §4): builds settings, config and adapters, then hands them down."""
# Over 400 lines: the whole command set of SPEC §4 (arguments, exit codes, text and JSON output) in one
# click group; the adapters come from shadowd/wiring.py and the rendering from shadowd/render.py.

from __future__ import annotations

import asyncio
import functools
import json
import os
import shlex
import sys
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any, TypeVar

import click

from shadowd import __version__
from shadowd.clock import utc_now
from shadowd.config import Config, ConfigError, Settings, load_config
from shadowd.core.rollout import RolloutSpec
from shadowd.credentials import redact_url, url_password
from shadowd.logging import configure_logging, register_secrets

T = TypeVar("T")
DEFAULT_DB = "sqlite:///shadowd.db"

EXIT_OK, EXIT_GATE_FAILED, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_INTERNAL = 0, 1, 2, 3, 4
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


class CliError(Exception):
    """A failure the user can act on: printed as one line, exits with its code (SPEC §4)."""

    def __init__(self, message: str, exit_code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# Whether a failure shows its traceback: --log-level debug, or SHADOWD_LOG_LEVEL=debug.
_debug = False


class Context:
    """What every subcommand gets: settings, the config path, the database URL, output mode."""

    def __init__(self, db: str | None, config: Path | None, as_json: bool, log_level: str | None) -> None:
        global _debug
        _debug = (log_level or "").lower() == "debug"
        self.settings = Settings()
        level = log_level or self.settings.log_level
        if level.lower() not in LOG_LEVELS:
            raise CliError(f"SHADOWD_LOG_LEVEL: unknown log level {level!r} (one of {', '.join(LOG_LEVELS)})")
        _debug = level.lower() == "debug"
        self.db_url = db or self.settings.database_url or DEFAULT_DB
        self.config_path = config or self.settings.config
        self.as_json = as_json
        configure_logging(level, self.settings.log_format)
        register_secrets([self.settings.admin_token, self.settings.read_token, url_password(self.db_url)])

    def config(self) -> Config:
        config = load_config(self.config_path, self.settings)
        register_secrets([config.api_key()])
        return config

    def rollout(self, config: Config, name: str) -> RolloutSpec:
        spec = config.rollout(name)
        if spec is None:
            known = ", ".join(r.name for r in config.rollouts) or "none"
            raise click.UsageError(f"no rollout named {name!r} in the config (known: {known})")
        return spec


def common_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """--db, -c and --json after the subcommand's name, as in `shadowd verdicts --rollout X -c f.yaml`."""

    @click.option("--db", "db", envvar="SHADOWD_DATABASE_URL", help="Database URL (default: a local SQLite file).")
    @click.option("-c", "--config", "config", type=click.Path(path_type=Path), envvar="SHADOWD_CONFIG",
                  help="Path to shadowd.yaml.")
    @click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON on stdout.")
    @click.option("--log-level", default=None, type=click.Choice(LOG_LEVELS, case_sensitive=False),
                  help="debug (also shows tracebacks), info, warning, error, critical.")
    @functools.wraps(func)
    def wrapper(db: str | None, config: Path | None, as_json: bool, log_level: str | None, **kwargs: Any) -> Any:
        return func(Context(db, config, as_json, log_level), **kwargs)

    return wrapper


def run_async(coro: Awaitable[T]) -> T:
    try:
        return asyncio.run(coro)  # type: ignore[arg-type]
    except ConfigError as exc:
        click.echo(f"config error: {exc}", err=True)
        sys.exit(EXIT_USAGE)


def emit_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=str))




class ShadowdGroup(click.Group):
    """Turns every failure into one line on stderr and its exit code; the traceback only at debug level."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort, SystemExit):
            raise
        except Exception as exc:  # the one place every failure is classified
            code, message = classify_failure(exc)
            if _debug or os.environ.get("SHADOWD_LOG_LEVEL", "").lower() == "debug":
                import traceback

                traceback.print_exception(exc)
            click.echo(f"shadowd: {message}", err=True)
            sys.exit(code)


def classify_failure(exc: BaseException) -> tuple[int, str]:
    """(exit code, one-line message) for a failure: 2 bad usage, config or input; 3 unreachable; 4 a bug."""
    from pydantic import ValidationError

    from shadowd.adapters.database_url import DatabaseUrlError
    from shadowd.adapters.sql_store import SchemaNotReady
    from shadowd.adapters.sql_store.errors import database_failure

    if isinstance(exc, CliError):
        return exc.exit_code, str(exc)
    if isinstance(exc, SchemaNotReady):
        return EXIT_UNREACHABLE, str(exc)
    if isinstance(exc, DatabaseUrlError):
        return EXIT_USAGE, f"bad database URL (--db / SHADOWD_DATABASE_URL): {exc}"
    if isinstance(exc, ConfigError):
        return EXIT_USAGE, f"config error: {exc}"
    if isinstance(exc, ValidationError):
        problems = "; ".join(
            f"SHADOWD_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}" for e in exc.errors()
        )
        return EXIT_USAGE, f"bad setting: {problems}"
    database = database_failure(exc)
    if database is not None:
        return (EXIT_USAGE if database[0] == "url" else EXIT_UNREACHABLE), database[1]
    name = type(exc).__name__
    if name in ("KafkaConnectionError", "KafkaTimeoutError", "APIConnectionError", "APITimeoutError"):
        return EXIT_UNREACHABLE, f"{'Kafka' if name.startswith('Kafka') else 'model API'} unreachable: {first_line(exc)}"
    return EXIT_INTERNAL, f"internal error: {name}: {first_line(exc)} (--log-level debug shows the traceback)"


def first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return (lines[0] if lines else type(exc).__name__)[:300]


@click.group(cls=ShadowdGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="shadowd")
def main() -> None:
    """Shadow-test a candidate Claude model on mirrored production traffic and gate its canary."""


# --- the pipeline ------------------------------------------------------------------------------


@main.command()
@common_options
@click.option("--http", "http", default=None, help="Serve the HTTP API on HOST:PORT (e.g. 0.0.0.0:8080).")
@click.option("--drain-timeout", default=60.0, show_default=True, help="Seconds to finish in-flight work on SIGTERM.")
@click.option("--no-promoter", is_flag=True, help="Do not take part in the promoter election.")
@click.option("--promoter-interval", default=30.0, show_default=True, help="Seconds between gate evaluations.")
@click.option("--open-reads", is_flag=True,
              help="Let the HTTP API answer report and verdict reads without a token (when no read token is set).")
def run(ctx: Context, http: str | None, drain_timeout: float, no_promoter: bool, promoter_interval: float,
        open_reads: bool) -> None:
    """The daemon: Kafka in, verdicts out, promoter, HTTP API."""
    from shadowd.daemon import DaemonOptions, run_daemon

    config = _config_or_exit(ctx)
    options = DaemonOptions(
        http=http, drain_timeout_s=drain_timeout, promoter=not no_promoter, promoter_interval_s=promoter_interval,
        open_reads=open_reads, tokens=_tokens_or_exit(ctx),
    )
    sys.exit(run_daemon(config, ctx.settings, ctx.db_url, options))


@main.command()
@common_options
@click.option("--http", "http", default="127.0.0.1:8080", show_default=True, help="HOST:PORT to serve the API on.")
@click.option("--promoter", is_flag=True, help="Also run the promoter (gate evaluations) over this database.")
@click.option("--promoter-interval", default=30.0, show_default=True, help="Seconds between gate evaluations.")
@click.option("--open-reads", is_flag=True,
              help="Answer report and verdict reads without a token on a non-loopback address too "
                   "(loopback is open unless a read token is set).")
def serve(ctx: Context, http: str, promoter: bool, promoter_interval: float, open_reads: bool) -> None:
    """The HTTP API (and with --promoter the promoter) over a database, without Kafka."""
    from shadowd.serve import run_serve

    config = _config_or_exit(ctx)
    sys.exit(run_serve(config, ctx.settings, ctx.db_url, http, promoter=promoter,
                       promoter_interval_s=promoter_interval, open_reads=True if open_reads else None,
                       tokens=_tokens_or_exit(ctx)))


@main.command()
@common_options
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: when stderr is a terminal).")
def replay(ctx: Context, file: Path, progress: bool | None) -> None:
    """Replay a JSONL file of envelopes through the pipeline; print a summary."""
    config = _config_or_exit(ctx)
    summary = run_async(_replay(ctx, config, file, progress, base_url=None))
    if ctx.as_json:
        emit_json(summary.to_dict())
    else:
        _print_summary(summary.to_dict())


async def _replay(ctx: Context, config: Config, file: Path, progress: bool | None, base_url: str | None) -> Any:
    from shadowd.replay_file import count_records, replay_file
    from shadowd.wiring import open_pipeline

    async with open_pipeline(config, ctx.db_url, base_url=base_url) as parts:
        pipeline, writer, records_in_flight = parts.pipeline, parts.writer, parts.records_in_flight
        for spec in config.rollouts:
            await parts.store.ensure_rollout(spec.name, spec.baseline, spec.candidate, utc_now())
        show = sys.stderr.isatty() if progress is None else progress
        if not show:
            return await replay_file(file, pipeline, writer, records_in_flight=records_in_flight)
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        with Progress(TextColumn("replaying"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                      transient=True) as bar:
            task = bar.add_task("replay", total=count_records(file))
            return await replay_file(
                file, pipeline, writer, records_in_flight=records_in_flight,
                on_record=lambda: bar.advance(task),
            )


@main.command()
@common_options
@click.option("--count", default=300, show_default=True, help="Envelopes of demo traffic to generate.")
@click.option("--seed", default=7, show_default=True)
@click.option("--behaviours", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="A fake-model behaviour file instead of the demo's.")
@click.option("--serve", "serve_api", is_flag=True, help="Then serve the HTTP API over the demo database (no Kafka).")
@click.option("--http", "http", default="127.0.0.1:8080", show_default=True, help="HOST:PORT for --serve.")
def demo(ctx: Context, count: int, seed: int, behaviours: Path | None, serve_api: bool, http: str) -> None:
    """Everything embedded: sample traffic, fake baseline and regressed candidate, SQLite, report."""
    from shadowd.demo.run import run_demo

    # The demo writes to a database only when --db names one on its command line (never to the one in
    # SHADOWD_DATABASE_URL), and only its own file is started afresh.
    source = click.get_current_context().get_parameter_source("db")
    own_file = source is not click.core.ParameterSource.COMMANDLINE
    db_url = "sqlite:///shadowd-demo.db" if own_file else ctx.db_url
    result = run_async(run_demo(db_url, count=count, seed=seed, behaviours=behaviours,
                                progress=sys.stderr.isatty() and not ctx.as_json, fresh=own_file))
    from shadowd.adapters.sql_store import sqlite_file

    # The pages go next to the demo's SQLite file (the working directory for the default one).
    db_file = sqlite_file(db_url)
    folder = (db_file.parent if db_file is not None else Path(".")) / "shadowd-demo-report"
    pages = run_async(_demo_pages(ctx, db_url, Path(result["config"]), folder))
    result["html_reports"] = [str(page.resolve()) for page in pages]
    if ctx.as_json:
        emit_json(result)
        if serve_api:
            _serve_demo(ctx, db_url, Path(result["config"]), http, quiet=True)
        return
    from shadowd.render import print_report

    _print_summary(result["summary"])
    for report, decision in zip(result["reports"], result["decisions"], strict=True):
        print_report(report)
        click.echo(f"canary decision for {decision['rollout']}: {decision['decision'].upper()} "
                   f"(canary now {decision['canary_percent']}%)\n")
    # A URL with a password is shown without it; the hints then read it from the environment.
    shown = redact_url(db_url)
    db_arg = db_url if shown == db_url else '"$SHADOWD_DATABASE_URL"'
    click.echo(f"\nVerdicts are in {shown}. Look closer with, for example:")
    click.echo(f"  shadowd verdicts --rollout opus-4-7 --status regression --db {db_arg} -c {result['config']}")
    examples = [ids[0] for report in result["reports"] if report["rollout"] == "opus-4-7"
                for ids in report.get("examples", {}).values() if ids]
    if examples:
        click.echo(f"  shadowd show --rollout opus-4-7 {shlex.quote(examples[0])} --db {db_arg} -c {result['config']}")
    click.echo("\nThe HTML reports (open in a browser; example request ids link to their verdict pages):")
    for page in pages:
        click.echo(f"  {page.resolve()}")
    if serve_api:
        _serve_demo(ctx, db_url, Path(result["config"]), http)


async def _demo_pages(ctx: Context, db_url: str, config_path: Path, folder: Path) -> list[Path]:
    from shadowd.config import load_config
    from shadowd.pages.site import write_rollout_site
    from shadowd.wiring import open_query_store

    config = load_config(config_path)
    async with open_query_store(db_url) as store:
        return [await write_rollout_site(store, spec, config, folder / spec.name) for spec in config.rollouts]


def _serve_demo(ctx: Context, db_url: str, config_path: Path, http: str, quiet: bool = False) -> None:
    from shadowd.serve import run_serve

    config = load_config(config_path, ctx.settings)
    if not quiet:
        click.echo(f"\nServing the API over {redact_url(db_url)} on http://{http} (Ctrl-C to stop), e.g.")
        click.echo(f"  curl http://{http}/v1/rollouts/opus-4-7")
        click.echo(f"  curl http://{http}/v1/rollouts/opus-4-7/weights")
        click.echo(f"  http://{http}/v1/rollouts/opus-4-7/report.html (the HTML report, in a browser)")
    sys.exit(run_serve(config, ctx.settings, db_url, http, promoter=False, promoter_interval_s=30.0,
                       tokens=_tokens_or_exit(ctx)))


# --- reading verdicts ----------------------------------------------------------------------------


@main.command()
@common_options
@click.option("--rollout", "rollout_name", default=None, help="Rollout name (default: every rollout in the config).")
@click.option("--check", is_flag=True, help="Exit 1 when the gate says roll back.")
@click.option("--html", "html_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the rollout's self-contained HTML report to this file (needs --rollout).")
@click.option("--link-base", default="verdicts/", show_default=True,
              help="Where the HTML report links example request ids: BASE + ID + '.html' "
                   "(e.g. http://shadowd:8080/v1/rollouts/NAME/verdicts/).")
def report(ctx: Context, rollout_name: str | None, check: bool, html_file: Path | None, link_base: str) -> None:
    """Counts, rates with confidence intervals, by code and route, latency, cost, stage and decision."""
    from shadowd.render import print_report

    config = _config_or_exit(ctx)
    specs = [ctx.rollout(config, rollout_name)] if rollout_name else list(config.rollouts)
    if not specs:
        raise click.UsageError("the config declares no rollouts")
    if html_file is not None and not rollout_name:
        raise click.UsageError("--html writes one rollout's report: name it with --rollout")
    if html_file is not None:
        write_report_html(ctx, config, specs[0], html_file, link_base)
    reports = run_async(_reports(ctx, specs, lambda route: config.rules_for(route).value_noise_threshold))
    if ctx.as_json:
        emit_json(reports[0] if rollout_name else reports)
    else:
        for item in reports:
            print_report(item)
    if check and any(item["decision"] == "rollback" for item in reports):
        sys.exit(EXIT_GATE_FAILED)


def write_report_html(ctx: Context, config: Config, spec: RolloutSpec, file: Path, link_base: str) -> None:
    from shadowd.pages.report_page import render_report_page, report_page_data

    async def build() -> dict[str, Any]:
        async with _store(ctx) as store:
            return await report_page_data(store, spec, config)

    page = render_report_page(run_async(build()), link_base=link_base)
    try:
        file.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise CliError(f"--html: cannot write {file}: {exc.strerror or exc}") from None
    click.echo(f"HTML report written to {file}", err=True)


async def _reports(
    ctx: Context, specs: list[RolloutSpec], threshold_for: Callable[[str], float] | None = None
) -> list[dict[str, Any]]:
    from shadowd.report import build_report

    async with _store(ctx) as store:
        return [await build_report(store, spec, threshold_for) for spec in specs]


@main.command()
@common_options
@click.option("--rollout", "rollout_name", required=True)
@click.option("--status", type=click.Choice(["pass", "regression", "noise", "error", "skipped"]))
@click.option("--code", help="A finding code, e.g. schema.key_missing.")
@click.option("--route")
@click.option("--since", help="RFC 3339 time or a duration ago such as 2h, 30m, 7d.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--cursor", type=click.IntRange(min=1), default=None,
              help="Show verdicts older than this id (the `next_cursor` of the previous page).")
@click.option("--all", "every", is_flag=True,
              help="Every matching verdict, newest first, as JSON lines (one object a line), ignoring --limit.")
def verdicts(ctx: Context, rollout_name: str, status: str | None, code: str | None, route: str | None,
             since: str | None, limit: int, cursor: int | None, every: bool) -> None:
    """List verdicts, newest first, with filters."""
    from shadowd.adapters.sql_store import VerdictFilter
    from shadowd.render import print_verdicts
    from shadowd.timeparse import parse_since

    try:
        since_at = parse_since(since, utc_now()) if since else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--since") from None
    where = VerdictFilter(status=status, code=code, route=route, since=since_at)

    if every:
        async def stream() -> int:
            written = 0
            before = cursor
            async with _store(ctx) as store:
                while True:
                    rows = await store.list_verdicts(rollout_name, where, limit=1000, before_id=before)
                    for row in rows:
                        sys.stdout.write(json.dumps(row.to_dict(), default=str) + "\n")
                    written += len(rows)
                    if len(rows) < 1000:
                        return written
                    before = rows[-1].id

        run_async(stream())
        return

    async def fetch() -> Any:
        async with _store(ctx) as store:
            # One more than asked tells whether an older page exists, as in the HTTP API.
            return await store.list_verdicts(rollout_name, where, limit=limit + 1, before_id=cursor)

    rows = run_async(fetch())
    page = rows[:limit]
    next_cursor = page[-1].id if len(rows) > limit else None
    if ctx.as_json:
        emit_json({"items": [row.to_dict() for row in page], "next_cursor": next_cursor})
    else:
        print_verdicts(page, next_cursor)


@main.command()
@common_options
@click.option("--rollout", "rollout_name", required=True)
@click.argument("request_id")
@click.option("--html", "html_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the verdict's self-contained HTML page to this file instead of printing it.")
def show(ctx: Context, rollout_name: str, request_id: str, html_file: Path | None) -> None:
    """One verdict side by side: both outputs, the findings, the adaptations."""
    from shadowd.render import print_verdict

    async def fetch() -> Any:
        async with _store(ctx) as store:
            return await store.get_verdict(rollout_name, request_id)

    row = run_async(fetch())
    if row is None:
        click.echo(f"no verdict for request {request_id!r} in rollout {rollout_name!r}", err=True)
        sys.exit(EXIT_USAGE)
    if html_file is not None:
        from shadowd.pages.verdict_page import render_verdict_page

        try:
            html_file.write_text(render_verdict_page(row.verdict, report_link=None), encoding="utf-8")
        except OSError as exc:
            raise CliError(f"--html: cannot write {html_file}: {exc.strerror or exc}") from None
        click.echo(f"HTML verdict page written to {html_file}", err=True)
    elif ctx.as_json:
        emit_json(row.verdict.to_dict() | {"outputs": _outputs(row.verdict)})
    else:
        print_verdict(row.verdict)


def _outputs(verdict: Any) -> dict[str, Any]:
    return {
        side: (getattr(verdict, side).to_dict()["content"] if getattr(verdict, side) else None)
        for side in ("baseline", "candidate", "baseline_repeat")
    }


@main.command()
@common_options
def routes(ctx: Context) -> None:
    """The route × model table: regression rate, latency, cost, and the cheapest model not worse than the baseline."""
    from shadowd.render import print_routes
    from shadowd.routing import build_routes_table

    config = _config_or_exit(ctx)

    async def fetch() -> dict[str, Any]:
        async with _store(ctx) as store:
            return await build_routes_table(store, config)

    table = run_async(fetch())
    if ctx.as_json:
        emit_json(table)
    else:
        print_routes(table["items"])


@main.command("dead-letters")
@common_options
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 10_000))
def dead_letters_command(ctx: Context, limit: int) -> None:
    """Records that could not be used, with their reason and original bytes."""

    async def fetch() -> Any:
        async with _store(ctx) as store:
            return await store.dead_letter_counts(), await store.list_dead_letters(limit)

    counts, rows = run_async(fetch())
    if ctx.as_json:
        emit_json({"counts": counts, "dead_letters": rows})
        return
    click.echo("by reason: " + (", ".join(f"{k}={v}" for k, v in sorted(counts.items())) or "none"))
    for row in rows:
        click.echo(f"{row['source']}#{row['partition']}@{row['offset']}  {row['reason']}  {row['detail'][:100]}")


# --- rollout control -----------------------------------------------------------------------------


@main.group()
def rollout() -> None:
    """Manual control of a rollout, recorded in the audit trail."""


@rollout.command("status")
@common_options
@click.argument("name")
def rollout_status(ctx: Context, name: str) -> None:
    """The stage, state, gate decision and recent audit entries."""
    config = _config_or_exit(ctx)
    spec = ctx.rollout(config, name)

    async def fetch() -> Any:
        from shadowd.report import build_report

        async with _store(ctx) as store:
            return (await build_report(store, spec, lambda route: config.rules_for(route).value_noise_threshold),
                    await store.list_decisions(name, limit=10))

    report_obj, history = run_async(fetch())
    if ctx.as_json:
        emit_json(report_obj | {"history": history})
        return
    from shadowd.render import print_history, print_report

    print_report(report_obj)
    print_history(history)


def _manual(action: str) -> Callable[..., None]:
    @common_options
    @click.argument("name")
    @click.option("--actor", default=None, help="Who does this (default: $USER).")
    @click.option("--reason", default=None, help="A note recorded with the action in the audit trail.")
    def command(ctx: Context, name: str, actor: str | None, reason: str | None) -> None:
        from shadowd.promoter import ManualActionError, apply_manual

        config = _config_or_exit(ctx)
        spec = ctx.rollout(config, name)
        who = actor or f"cli:{os.environ.get('USER', 'unknown')}"

        async def act() -> Any:
            async with _store(ctx) as store:
                return await apply_manual(store, spec, action, who, utc_now(), reason)  # type: ignore[arg-type]

        try:
            applied = run_async(act())
        except ManualActionError as exc:
            click.echo(f"{action} refused: {exc}", err=True)
            sys.exit(EXIT_USAGE)
        if ctx.as_json:
            emit_json(applied.to_dict())
        else:
            click.echo(f"{name}: {applied.decision} — stage {applied.stage_index + 1}, "
                       f"canary {applied.canary_percent}% ({'; '.join(applied.reasons)})")

    command.__doc__ = (
        "Begin a rolled-back rollout again from its first stage (manual, audited)." if action == "restart"
        else f"{action.capitalize()} the rollout (manual, audited)."
    )
    return command


for _action in ("pause", "resume", "promote", "rollback", "restart"):
    rollout.command(_action)(_manual(_action))


# --- operations ----------------------------------------------------------------------------------


@main.group()
def db() -> None:
    """Database schema management."""


@db.command("upgrade")
@common_options
@click.option("--revision", default="head", show_default=True)
def db_upgrade(ctx: Context, revision: str) -> None:
    """Alembic migrations to head (works from an installed wheel)."""
    from shadowd.adapters.sql_store import create_engine, current_revision, upgrade_database

    async def upgrade() -> str | None:
        engine = create_engine(checked_db_url(ctx.db_url))
        try:
            await upgrade_database(engine, revision)
            return await current_revision(engine)
        finally:
            await engine.dispose()

    reached = run_async(upgrade())
    if ctx.as_json:
        emit_json({"upgraded_to": revision, "revision": reached})
    else:
        click.echo(f"database upgraded to {reached}" + (" (head)" if revision == "head" else ""))


@db.command("current")
@common_options
def db_current(ctx: Context) -> None:
    """The schema revision of the database and this shadowd's head (exit 3 when there is no schema)."""
    from shadowd.adapters.sql_store import create_engine, current_revision, head_revision, sqlite_file

    url = checked_db_url(ctx.db_url)
    file = sqlite_file(url)
    if url.startswith("sqlite") and (file is None or not file.exists()):
        raise CliError(f"no database at {url}: create it with `shadowd db upgrade`", EXIT_UNREACHABLE)

    async def read() -> str | None:
        engine = create_engine(url)
        try:
            return await current_revision(engine)
        finally:
            await engine.dispose()

    revision, head = run_async(read()), head_revision()
    if ctx.as_json:
        emit_json({"current": revision, "head": head, "up_to_date": revision == head})
    elif revision is None:
        raise CliError("the database has no shadowd schema: create it with `shadowd db upgrade`", EXIT_UNREACHABLE)
    else:
        click.echo(f"{revision} ({'head' if revision == head else f'head is {head}: run `shadowd db upgrade`'})")


@db.command("downgrade")
@common_options
@click.option("--revision", default="-1", show_default=True, help="Target revision; -1 is one step down.")
@click.option("--yes", is_flag=True, help="Do it: a downgrade drops what later revisions added.")
def db_downgrade(ctx: Context, revision: str, yes: bool) -> None:
    """Alembic migrations down (one step by default); needs --yes."""
    from shadowd.adapters.sql_store import create_engine, current_revision, downgrade_database

    if not yes:
        raise CliError("db downgrade drops what later schema revisions added; repeat with --yes to do it")
    url = checked_db_url(ctx.db_url)

    async def downgrade() -> str | None:
        engine = create_engine(url)
        try:
            if await current_revision(engine) is None:
                raise CliError("the database has no shadowd schema to downgrade", EXIT_UNREACHABLE)
            await downgrade_database(engine, revision)
            return await current_revision(engine)
        finally:
            await engine.dispose()

    reached = run_async(downgrade())
    if ctx.as_json:
        emit_json({"downgraded_to": reached})
    else:
        click.echo(f"database downgraded to {reached or 'base (no shadowd tables)'}")


@db.command("purge")
@common_options
@click.option("--dry-run", is_flag=True, help="Count what would be purged; change nothing.")
def db_purge(ctx: Context, dry_run: bool) -> None:
    """Purge what the config's retention.* allows (verdicts, their outputs, dead letters) and, retention set
    or not, the learned-noise buckets no reader uses, in bounded batches."""
    from shadowd.core.retention import NOISE_COUNTS_KEPT
    from shadowd.retention import purge

    config = _config_or_exit(ctx)
    retention = config.retention

    async def run() -> Any:
        async with _store(ctx) as store:
            return await purge(store, retention, utc_now(), configured=[r.name for r in config.rollouts],
                               dry_run=dry_run)

    result = run_async(run())
    off = None if retention.enabled else (
        "retention is off: the config sets none of retention.verdicts_days, outputs_days, dead_letters_days; "
        "only learned-noise buckets no reader uses go"
    )
    if ctx.as_json:
        emit_json({**result.to_dict(), "enabled": retention.enabled, "retention": retention.model_dump(),
                   **({"message": off} if off else {})})
        return
    if off:
        click.echo(off)
    verb = "would purge" if dry_run else "purged"
    days = {"verdicts": retention.verdicts_days, "findings": retention.verdicts_days,
            "verdict_outputs": retention.outputs_days, "dead_letters": retention.dead_letters_days}
    click.echo(f"{'dry run: ' if dry_run else ''}{verb} (rows older than retention.*_days; a row exactly that old is kept)")
    for table, figures in result.tables.items():
        kept = figures.oldest_kept.isoformat() if figures.oldest_kept else "none"
        if table == "noise_counts":
            limit = f"buckets after {NOISE_COUNTS_KEPT.total_seconds() / 3600:g} h, twice the noise window"
        else:
            limit = "kept forever" if days[table] is None else f"after {days[table]:g} days"
        what = ("to empty" if dry_run else "emptied") if table == "verdict_outputs" else \
            ("to delete" if dry_run else "deleted")
        click.echo(f"  {table:<16} {figures.rows:>10} {what:<8} ({limit}); oldest kept: {kept}")
    if result.protected_verdicts:
        click.echo(f"  kept although older: {result.protected_verdicts} verdicts of rollouts still deciding on them "
                   "(an active or paused rollout's current stage, or a configured rollout not yet evaluated)")
    if dry_run:
        click.echo(f"counted in {result.elapsed_s:.2f}s; nothing changed")
        return
    longest = f" ({result.longest_statement})" if result.longest_statement else ""
    click.echo(f"{result.statements} statements in {result.elapsed_s:.2f}s, "
               f"longest {result.longest_statement_s:.3f}s{longest}")


@main.command("fake-model")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8787, show_default=True, type=click.IntRange(0, 65535))
@click.option("--behaviours", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="YAML behaviour file (default: every model clean).")
@click.option("--log-level", default="info", type=click.Choice(LOG_LEVELS, case_sensitive=False))
def fake_model(host: str, port: int, behaviours: Path | None, log_level: str) -> None:
    """A Messages-API-compatible test server with scripted behaviours."""
    from shadowd.fakemodel import BehaviourError, load_behaviours, serve_forever

    configure_logging(log_level)
    try:
        loaded = load_behaviours(behaviours)
    except BehaviourError as exc:
        click.echo(f"behaviour file error: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    serve_forever(loaded, host, port)


@main.group()
def token() -> None:
    """Named API tokens for SHADOWD_TOKENS_FILE (stored there as SHA-256 hashes only)."""


@token.command("new")
@click.argument("name")
@click.option("--role", type=click.Choice(["read", "admin"]), default="read", show_default=True)
def token_new(name: str, role: str) -> None:
    """Print a fresh random token (give it to the caller) and the entry for the tokens file (keep that)."""
    import secrets

    from shadowd.auth import hash_token

    value = secrets.token_urlsafe(32)
    click.echo(f"token (shown once): {value}", err=True)
    click.echo(f"{name}: {{sha256: {hash_token(value)}, role: {role}}}")


@token.command("hash")
def token_hash() -> None:
    """Read a token on stdin and print its SHA-256, as the tokens file stores it."""
    from shadowd.auth import hash_token

    value = sys.stdin.readline().strip()
    if not value:
        raise click.UsageError("give the token on stdin, e.g. `printf %s \"$TOKEN\" | shadowd token hash`")
    click.echo(hash_token(value))


# --- helpers -------------------------------------------------------------------------------------


def checked_db_url(url: str) -> str:
    """The database URL if shadowd can use it; a bad one is exit 2 with the reason (no password shown)."""
    from shadowd.adapters.database_url import DatabaseUrlError, engine_target

    try:
        parsed = engine_target(url).url
    except DatabaseUrlError as exc:
        raise CliError(f"--db: {exc} (use postgresql://USER@HOST/DB or sqlite:///FILE)") from None
    if parsed.drivername not in ("postgresql+asyncpg", "sqlite+aiosqlite"):
        raise CliError(f"--db: unsupported database {parsed.drivername.split('+')[0]!r} "
                       "(use postgresql://USER@HOST/DB or sqlite:///FILE)")
    return url


def _config_or_exit(ctx: Context) -> Config:
    try:
        return ctx.config()
    except ConfigError as exc:
        click.echo(f"config error: {exc}", err=True)
        sys.exit(EXIT_USAGE)


def _tokens_or_exit(ctx: Context) -> Any:
    from shadowd.auth import TokenFileError, load_tokens

    try:
        return load_tokens(ctx.settings.tokens_file, ctx.settings.admin_token, ctx.settings.read_token)
    except (TokenFileError, ValueError) as exc:
        click.echo(f"config error: {exc}", err=True)
        sys.exit(EXIT_USAGE)


def _store(ctx: Context) -> AbstractAsyncContextManager[Any]:
    """`async with _store(ctx) as store`: the wiring's store for reads, over a checked URL.

    It never creates or migrates a database (SPEC §4): a missing database or schema is exit 3 naming
    `shadowd db upgrade` (see `classify_failure`); only `run`, `replay`, `demo` and `db upgrade` migrate.
    """
    from shadowd.wiring import open_query_store

    return open_query_store(checked_db_url(ctx.db_url))


def _print_summary(summary: dict[str, Any]) -> None:
    letters = summary["dead_letters"]
    click.echo(
        f"{summary['records']} records in {summary['elapsed_s']:.1f}s: {summary['verdicts']} verdicts "
        f"({', '.join(f'{k} {v}' for k, v in sorted(summary['statuses'].items())) or 'none'}), "
        f"{summary['already_present']} already present, {summary['unmatched']} matched no rollout, "
        f"{sum(letters.values())} dead letters"
        + (f" ({', '.join(f'{k} {v}' for k, v in sorted(letters.items()))})" if letters else "")
    )
    errors = summary.get("errors_by_reason") or {}
    if errors:
        click.echo(f"error verdicts by reason: {', '.join(f'{k} {v}' for k, v in sorted(errors.items()))}")
