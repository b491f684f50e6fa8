"""`fraudstream loadtest` (traffic at a pattern + workers, measured and stored) and
`fraudstream monitor` (the stored runs)."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from fraudstream.cli.app import app
from fraudstream.cli.common import ConfigOpt, JsonOpt, connect, console, err_console, settings_from
from fraudstream.cli.store import DatabaseOpt
from fraudstream.loadtest.patterns import PATTERN_HELP

if TYPE_CHECKING:
    import sqlalchemy as sa

    from fraudstream.loadtest.record import RunRecord
    from fraudstream.loadtest.runner import LoadTest, LoadTestOptions
    from fraudstream.loadtest.stats import Snapshot

PIPE_WIDTH = 120
LINE_EVERY_S = 2.0
"""Seconds between the plain progress lines when the output is not a terminal."""


@contextmanager
def _store(database: str | None, config: Path | None) -> Iterator[sa.Engine]:
    """The store's engine, disposed at the end (its pool closed)."""
    from fraudstream.store.engine import create_engine, database_url

    engine = create_engine(database_url(settings_from(config, database_url=database)))
    try:
        yield engine
    finally:
        engine.dispose()


@app.command()
def loadtest(
    tps: Annotated[float, typer.Option(help="Target transactions per second (> 0).")] = 1000,
    duration: Annotated[float, typer.Option(help="Seconds of traffic (> 0).")] = 30,
    pattern: Annotated[str, typer.Option(help=PATTERN_HELP)] = "constant",
    run_id: Annotated[
        str | None,
        typer.Option(help="Name of the run (new; prefixes its transaction ids). Default: random."),
    ] = None,
    processes: Annotated[
        int, typer.Option(help="Worker processes (`fraudstream worker --processes`).")
    ] = 2,
    seed: Annotated[int, typer.Option(help="Seed of the traffic and the random pattern.")] = 0,
    database: DatabaseOpt = None,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Send simulated traffic at a pattern through worker processes, show target vs achieved
    tx/s, latency and lag live, and store the run's statistics (see `fraudstream monitor`).
    Ctrl-C stops the sending, waits briefly for the decisions in flight and still stores
    the run (status interrupted)."""
    import secrets

    from fraudstream.loadtest.runner import LoadTest
    from fraudstream.store import migrate, runs
    from fraudstream.store.engine import describe

    options = _options(tps, duration, pattern, run_id or secrets.token_hex(4), processes, seed)
    settings = settings_from(config, database_url=database)
    with _store(database, config) as engine:
        migrate.upgrade(engine)
        if runs.exists(engine, options.run_id):
            raise typer.BadParameter(
                f"a run {options.run_id!r} is already stored; choose another id",
                param_hint="--run-id",
            )
        test = LoadTest(settings, connect(settings), options)
        err_console.print(
            f"loadtest {options.run_id}: {options.pattern} around {options.tps:g} tx/s for "
            f"{options.duration:g} s, {options.processes} worker process(es), "
            f"{settings.partitions} partitions; preparing traffic and starting the workers",
            highlight=False,
        )
        record = _run_with_display(test, options, live=console.is_terminal and not as_json)
        runs.save(engine, record)
        if as_json:
            print(json.dumps(record.as_dict()))
            return
        _print_run(record)
        console.print(f"stored in {describe(engine)} (fraudstream monitor --run {record.run_id})")


def _options(
    tps: float, duration: float, pattern: str, run_id: str, processes: int, seed: int
) -> LoadTestOptions:
    """The options, each bad value refused naming its flag."""
    from fraudstream.loadtest.runner import MAX_RUN_ID, LoadTestOptions
    from fraudstream.simulate.patterns import PATTERNS

    checks = [
        ("--tps", tps > 0, f"must be > 0, got {tps:g}"),
        ("--duration", duration > 0, f"must be > 0, got {duration:g}"),
        ("--pattern", pattern in PATTERNS,
         f"{pattern!r} is not one of {', '.join(PATTERNS)}"),
        ("--processes", processes >= 1, f"must be >= 1, got {processes}"),
        ("--run-id", bool(run_id) and len(run_id) <= MAX_RUN_ID and run_id.isprintable()
         and not any(c.isspace() for c in run_id),
         f"must be a word of 1 to {MAX_RUN_ID} characters, got {run_id!r}"),
    ]  # fmt: skip
    for flag, ok, problem in checks:
        if not ok:
            raise typer.BadParameter(problem, param_hint=flag)
    return LoadTestOptions(
        run_id=run_id,
        tps=tps,
        duration=duration,
        pattern=pattern,  # type: ignore[arg-type]  # checked against PATTERNS above
        processes=processes,
        seed=seed,
    )


def _run_with_display(test: LoadTest, options: LoadTestOptions, *, live: bool) -> RunRecord:
    """Run with a Rich live table on a terminal, a plain line on stderr every few seconds
    otherwise; SIGINT / SIGTERM stop the run (a second one stops waiting for decisions)."""
    from rich.live import Live

    from fraudstream.loadtest.display import live_table, plain_line

    def stop(_signum: int, _frame: Any) -> None:
        test.stop()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        if live:
            with Live(console=console, auto_refresh=False) as screen:

                def show(snap: Snapshot) -> None:
                    table = live_table(snap, options.run_id, options.pattern, options.duration)
                    screen.update(table, refresh=True)

                return test.run(show)
        next_line = [time.monotonic()]

        def line(snap: Snapshot) -> None:
            if time.monotonic() >= next_line[0]:
                err_console.print(plain_line(snap, options.run_id), highlight=False)
                next_line[0] = time.monotonic() + LINE_EVERY_S

        return test.run(line)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _print_run(record: RunRecord) -> None:
    from fraudstream.loadtest.report import run_tables

    for table in run_tables(record):
        _print(table)


def _print(table: Any) -> None:
    """Into a pipe (a log, CI) Rich assumes 80 columns; these tables need ~100."""
    from rich.console import Console

    (console if console.is_terminal else Console(width=PIPE_WIDTH)).print(table)


@app.command()
def monitor(
    list_runs: Annotated[bool, typer.Option("--runs", help="A table of the stored runs.")] = False,
    latest: Annotated[bool, typer.Option("--latest", help="The newest run's statistics.")] = False,
    run: Annotated[str | None, typer.Option("--run", help="One run's statistics.")] = None,
    stats: Annotated[
        bool, typer.Option("--stats", help="Aggregates across runs, per pattern.")
    ] = False,
    plot: Annotated[
        Path | None,
        typer.Option(
            help="Write a PNG of the run (--run, or the newest): latency percentiles and "
            "throughput, second by second."
        ),
    ] = None,
    limit: Annotated[int, typer.Option(help="Runs listed by --runs.", min=1)] = 50,
    database: DatabaseOpt = None,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Load-test runs stored by `fraudstream loadtest` (default: --runs)."""
    from fraudstream.store import runs
    from fraudstream.store.engine import describe

    chosen = [flag for flag, on in (("--runs", list_runs), ("--latest", latest),
              ("--run", run is not None), ("--stats", stats)) if on]  # fmt: skip
    if len(chosen) > 1:
        raise typer.BadParameter(
            f"choose one of --runs, --latest, --run, --stats (got {' and '.join(chosen)})",
            param_hint=chosen[1],
        )
    if plot is not None and (list_runs or stats):
        raise typer.BadParameter(
            "plots one run: use it with --run ID or --latest", param_hint="--plot"
        )
    with _store(database, config) as engine:
        where = describe(engine)
        if stats:
            rows = runs.aggregates(engine)
            _show(rows, lambda: _stats_table(rows, where), as_json)
        elif run is not None or latest or plot is not None:
            record = _one_run(engine, run)
            if plot is not None:
                from fraudstream.loadtest.plot import plot_run

                err_console.print(f"wrote {plot_run(record, plot)}", highlight=False)
                if run is None and not latest:
                    return
            if as_json:
                print(json.dumps(record.as_dict()))
            else:
                _print_run(record)
        else:
            rows = runs.summaries(engine, limit)
            _show(rows, lambda: _runs_table(rows, where), as_json)


def _one_run(engine: sa.Engine, run_id: str | None) -> RunRecord:
    from fraudstream.store import runs

    if run_id is None:
        run_id = runs.latest(engine)
        if run_id is None:
            raise typer.BadParameter("no load-test run is stored yet", param_hint="--latest")
    record = runs.load(engine, run_id)
    if record is None:
        raise typer.BadParameter(
            f"no run {run_id!r} is stored (`fraudstream monitor --runs` lists them)",
            param_hint="--run",
        )
    return record


def _show(rows: list[dict[str, Any]], table: Any, as_json: bool) -> None:
    if as_json:
        print(json.dumps(rows, default=_isoformat))
    elif not rows:
        console.print("no load-test run stored yet (run `fraudstream loadtest`)")
    else:
        _print(table())


def _isoformat(value: Any) -> str:
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def _runs_table(rows: list[dict[str, Any]], where: str) -> Any:
    from fraudstream.loadtest.report import runs_table

    return runs_table(rows, where)


def _stats_table(rows: list[dict[str, Any]], where: str) -> Any:
    from fraudstream.loadtest.report import stats_table

    return stats_table(rows, where)
