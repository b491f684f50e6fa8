"""The system of record: `sink`, `db upgrade` / `db status`, `history export`."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from fraudstream import metrics
from fraudstream.cli.app import app
from fraudstream.cli.common import ConfigOpt, JsonOpt, connect, console, settings_from
from fraudstream.errors import StoreError
from fraudstream.gcpolicy import freeze_startup
from fraudstream.priority import yield_to_scoring

if TYPE_CHECKING:
    import sqlalchemy as sa

    from fraudstream.config import Settings
    from fraudstream.store.sink import SinkStats

db_app = typer.Typer(no_args_is_help=True, help="The SQL store: schema migrations.")
history_app = typer.Typer(no_args_is_help=True, help="History kept in the SQL store.")
app.add_typer(db_app, name="db")
app.add_typer(history_app, name="history")

DatabaseOpt = Annotated[
    str | None,
    typer.Option(
        "--database",
        help="SQLAlchemy URL (default: the SQLite file in the data dir).",
        envvar="FRAUDSTREAM_DATABASE_URL",
        show_envvar=True,
        show_default=False,
    ),
]


def _engine(settings: Settings) -> sa.Engine:
    from fraudstream.store.engine import create_engine, database_url

    return create_engine(database_url(settings))


@contextmanager
def _one_line(engine: sa.Engine) -> Iterator[None]:
    """A database error as the one-line `StoreError` the CLI prints, not a traceback."""
    import sqlalchemy as sa

    from fraudstream.store.engine import describe, first_line

    try:
        yield
    except sa.exc.SQLAlchemyError as exc:
        raise StoreError(f"database_url: {describe(engine)}: {first_line(exc)}") from None


@app.command()
def sink(
    burst: Annotated[bool, typer.Option(help="Stop once every decision is stored.")] = False,
    batch: Annotated[
        int | None, typer.Option(help="Decisions per database transaction.", min=1)
    ] = None,
    progress_s: Annotated[float, typer.Option(help="Seconds between progress lines.")] = 5.0,
    database: DatabaseOpt = None,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Store every decision and label in the SQL system of record (own consumer group on the
    decisions stream and the label log), queueing review decisions for the analysts,
    migrating the schema first. Prints a progress line with the lag every few
    seconds; stops on SIGTERM / Ctrl-C after the batch in hand."""
    from fraudstream.challenges import ChallengeDesk
    from fraudstream.store.engine import describe
    from fraudstream.store.sink import YOUNG_GC_THRESHOLD, Sink, SinkOptions
    from fraudstream.stream.keys import StreamKeys

    settings = settings_from(config, database_url=database, sink_batch_size=batch)
    nice = yield_to_scoring(settings.sink_nice)
    metrics.setup(settings.data_dir)
    logging.basicConfig(level=settings.log_level, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)  # `migrate` says what changed
    engine = _engine(settings)
    options = SinkOptions(
        batch_size=settings.sink_batch_size,
        block_ms=settings.block_ms,
        claim_idle_ms=settings.claim_idle_ms,
        progress_s=progress_s,
        challenge_ttl_s=settings.challenge_ttl_s,
        challenge_attempts=settings.challenge_attempts,
        linger_ms=settings.sink_linger_ms,
    )
    keys = StreamKeys.of(settings)
    streams = f"{keys.decisions} + {keys.label_log}"
    print(f"sink: {streams} -> {describe(engine)} (nice {nice})", file=sys.stderr, flush=True)
    client = connect(settings)
    runner = Sink(
        client,
        engine,
        keys,
        options,
        on_progress=_ProgressLines(),
        challenges=ChallengeDesk(engine, client, settings),
    )
    freeze_startup(YOUNG_GC_THRESHOLD)
    stats = runner.run(burst=burst)
    if as_json:
        print(json.dumps(_figures(stats)))


class _ProgressLines:
    """One plain line on stderr per tick (a log file or a terminal alike); the rate is the
    one since the previous line, so a stalled database shows as 0/s at once."""

    def __init__(self) -> None:
        self.stored = 0
        self.at = 0.0

    def __call__(self, stats: SinkStats, elapsed_s: float) -> None:
        lag = stats.lag
        behind = "?" if lag is None or lag.entries is None else f"{lag.entries:,}"
        span = elapsed_s - self.at
        rate = (stats.stored - self.stored) / span if span > 0 else 0.0
        metrics.sink_progress(stats.stored - self.stored, lag.entries if lag and lag.entries else 0)
        self.stored, self.at = stats.stored, elapsed_s
        line = (
            f"sink: stored {stats.stored:,} ({stats.duplicates:,} already stored), "
            f"{rate:,.0f}/s, lag {behind} entries, {stats.reviews_opened:,} reviews opened, "
            f"{stats.labels_stored:,} labels stored"
        )
        if stats.db_retries:
            line += f", database retries {stats.db_retries:,}"
        if stats.lost:
            line += f", LOST {stats.lost:,} trimmed from the stream before they were stored"
        print(line, file=sys.stderr, flush=True)


def _figures(stats: SinkStats) -> dict[str, object]:
    lag = stats.lag
    return {
        "stored": stats.stored,
        "duplicates": stats.duplicates,
        "reviews_opened": stats.reviews_opened,
        "labels_stored": stats.labels_stored,
        "dead_lettered": stats.dead_lettered,
        "batches": stats.batches,
        "db_retries": stats.db_retries,
        "lag": None if lag is None else lag.entries,
        "lost": stats.lost,
    }


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
    database: DatabaseOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Apply the schema migrations (the sink also does on start)."""
    from fraudstream.store import migrate
    from fraudstream.store.engine import describe

    engine = _engine(settings_from(config, database_url=database))
    with _one_line(engine):
        at = migrate.upgrade(engine, revision)
    console.print(f"{describe(engine)}: schema at revision {at}", highlight=False)


@db_app.command("status")
def db_status(
    database: DatabaseOpt = None, as_json: JsonOpt = False, config: ConfigOpt = None
) -> None:
    """The schema revision of the database and the newest one shipped."""
    from fraudstream.store import migrate
    from fraudstream.store.engine import describe

    engine = _engine(settings_from(config, database_url=database))
    with _one_line(engine):
        figures = {
            "database": describe(engine),
            "current": migrate.current(engine),
            "head": migrate.head(),
        }
    if as_json:
        print(json.dumps(figures))
        return
    console.print(
        f"{figures['database']}: revision {figures['current'] or 'none (not migrated)'}, "
        f"newest {figures['head']}",
        highlight=False,
    )


@db_app.command("load-customers")
def db_load_customers(
    path: Annotated[
        Path,
        typer.Argument(
            help="customer_id plus any of name, email, phone, segment: CSV, Parquet or JSON "
            "lines (e.g. the customers.parquet `simulate` writes).",
            exists=True,
            dir_okay=False,
        ),
    ],
    database: DatabaseOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Load (or update) who the customers are, for alerts and the review queue."""
    from fraudstream.history import read_table
    from fraudstream.store import migrate
    from fraudstream.store.customers import customer_rows, upsert_customers
    from fraudstream.store.engine import describe

    rows = customer_rows(read_table(path))
    engine = _engine(settings_from(config, database_url=database))
    with _one_line(engine):
        migrate.upgrade(engine)
        with engine.begin() as connection:
            upsert_customers(connection, rows)
    console.print(f"{describe(engine)}: {len(rows):,} customers loaded", highlight=False)


def _moment(value: str | None, flag: str) -> datetime | None:
    """An ISO date or date-time; without a zone it is UTC."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(
            f"not an ISO date or date-time: {value!r}", param_hint=flag
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@history_app.command("export")
def history_export(
    out: Annotated[Path, typer.Option("--out", help="Parquet file to write.")],
    date_from: Annotated[
        str | None, typer.Option("--from", help="First decision time (ISO, UTC if no zone).")
    ] = None,
    date_to: Annotated[
        str | None, typer.Option("--to", help="Decisions before this time (ISO).")
    ] = None,
    database: DatabaseOpt = None,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Write the decisions of a period, with their transactions and labels, to Parquet."""
    from fraudstream.store import migrate
    from fraudstream.store.export import export_history

    start, end = _moment(date_from, "--from"), _moment(date_to, "--to")
    if start and end and start >= end:
        raise typer.BadParameter(
            f"must be after --from ({date_from}), got {date_to}", param_hint="--to"
        )
    engine = _engine(settings_from(config, database_url=database))
    with _one_line(engine):
        if migrate.current(engine) is None:
            migrate.upgrade(engine)  # an empty store exports an empty history, not an error
        rows = export_history(engine, out, start=start, end=end)
    if as_json:
        print(json.dumps({"rows": rows, "out": str(out)}))
        return
    console.print(f"{rows:,} decisions written to {out}", highlight=False)
