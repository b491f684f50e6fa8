"""Making data: simulate a history, generate traffic from it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from fraudstream.cli.app import app
from fraudstream.cli.common import (
    ConfigOpt,
    JsonOpt,
    connect,
    console,
    settings_from,
)
from fraudstream.cli.progress import Steps
from fraudstream.cli.reading import (
    ColumnOpt,
    ColumnsFileOpt,
    DateFormatOpt,
    SkipInvalidOpt,
    read_options,
    tell,
)

if TYPE_CHECKING:
    import polars as pl


@app.command()
def simulate(
    out: Annotated[Path, typer.Option(help="Folder to write the history to.")] = Path("data"),
    profile: Annotated[
        str,
        typer.Option(
            help="handbook (the Handbook's design only) or full (plus e-commerce and modern fraud)."
        ),
    ] = "handbook",
    customers: Annotated[int, typer.Option(help="Customers.", min=1)] = 5_000,
    terminals: Annotated[int, typer.Option(help="Terminals.", min=1)] = 10_000,
    days: Annotated[int, typer.Option(help="Days of history.", min=1)] = 183,
    start_date: Annotated[str, typer.Option(help="First day, YYYY-MM-DD.")] = "2018-04-01",
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same history).")] = 0,
    fmt: Annotated[
        list[str] | None,
        typer.Option("--format", help="parquet and/or csv (repeat the flag for both)."),
    ] = None,
    label_delay_hours: Annotated[float, typer.Option(help="Median chargeback delay.")] = 48.0,
    label_delay_cap_days: Annotated[float, typer.Option(help="Longest delay.")] = 7.0,
    without: Annotated[
        list[str] | None, typer.Option(help="Switch an extension off (full profile; repeatable).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Simulate a payment history with fraud and delayed chargeback labels."""
    from datetime import date

    from fraudstream.simulate import (
        Extensions,
        LabelDelay,
        SimulationConfig,
        summarize,
        summary_table,
        write_history,
    )
    from fraudstream.simulate import simulate as run_simulation

    try:
        first_day = date.fromisoformat(start_date)
    except ValueError:
        raise typer.BadParameter(f"not a date: {start_date!r}", param_hint="--start-date") from None
    formats = tuple(fmt or ["parquet"])
    for f in formats:
        if f not in ("parquet", "csv"):
            raise typer.BadParameter(f"{f!r} is not parquet or csv", param_hint="--format")
    config = SimulationConfig(
        n_customers=customers,
        n_terminals=terminals,
        n_days=days,
        start_date=first_day,
        seed=seed,
        profile=profile,  # type: ignore[arg-type]  # validated by SimulationConfig
        label_delay=LabelDelay(scale_hours=label_delay_hours, cap_days=label_delay_cap_days),
        extensions=Extensions().disabled(without or []),
    )
    if as_json:
        result = run_simulation(config)
    else:
        with Steps("simulating", days + 3, unit="steps") as step:
            result = run_simulation(config, lambda done, total: step.update(done))
    paths = write_history(result, out, formats)
    summary = summarize(result)
    if as_json:
        print(json.dumps({**summary, "files": [str(p) for p in paths]}, default=str))
        return
    console.print(summary_table(summary))
    console.print(f"wrote {', '.join(str(p) for p in paths)}")


@app.command()
def generate(
    tps: Annotated[float, typer.Option(help="Target tx/s; 0 = unthrottled.", min=0)] = 1000,
    duration: Annotated[float, typer.Option(help="Seconds to run.", min=0.1)] = 10,
    pattern: Annotated[str, typer.Option(help="constant, wave, spike or random.")] = "constant",
    fraud_ratio: Annotated[
        float | None, typer.Option(help="Share of fraud to send (default: the history's own).")
    ] = None,
    run_id: Annotated[
        str | None, typer.Option(help="Prefix of this run's transaction ids (default: random).")
    ] = None,
    history: Annotated[
        Path | None,
        typer.Option(
            help="A labelled history (is_fraud / TX_FRAUD; any format, see --column) or a "
            "`fraudstream simulate` folder; default: a small world simulated now."
        ),
    ] = None,
    columns: ColumnsFileOpt = None,
    column: ColumnOpt = None,
    date_format: DateFormatOpt = None,
    skip_invalid: SkipInvalidOpt = False,
    speedup: Annotated[
        float | None,
        typer.Option(
            help="Replay event time this many times faster than real time (ignores --tps).",
            min=0.000001,
        ),
    ] = None,
    labels: Annotated[
        bool, typer.Option(help="Also send the chargebacks of sent frauds to the labels stream.")
    ] = False,
    seed: Annotated[int, typer.Option(help="Seed for sampling and patterns.")] = 0,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Send simulated transactions into the input stream at a rate and traffic pattern."""
    import secrets

    from fraudstream import generate as gen
    from fraudstream.simulate.patterns import PATTERNS
    from fraudstream.stream.keys import StreamKeys
    from fraudstream.stream.producer import Producer

    if pattern not in PATTERNS:
        raise typer.BadParameter(
            f"{pattern!r} is not one of {', '.join(PATTERNS)}", param_hint="--pattern"
        )
    settings = settings_from(config)
    options = gen.GenerateOptions(
        tps=tps,
        duration=duration,
        pattern=pattern,
        fraud_ratio=fraud_ratio,
        speedup=speedup,
        run_id=run_id or secrets.token_hex(4),
        labels=labels,
        seed=seed,
        batch_size=settings.batch_size,
    )
    keys = StreamKeys.of(settings)
    reading = read_options(columns, column, date_format, skip_invalid)
    transactions, label_frame = gen.load_history(history, seed=seed, read=reading, told=tell)
    picked = gen.select(transactions, options.rows_needed(), options)
    rows = gen.encode_rows(picked, label_frame, keys, labels, settings.batch_size)
    producer = Producer(connect(settings), keys, batch_size=settings.batch_size)
    if as_json:
        stats = gen.run(producer, rows, options)
    else:
        with Steps(f"run {options.run_id}", duration, unit="s") as step:
            stats = gen.run(
                producer,
                rows,
                options,
                lambda sent, elapsed: step.update(
                    min(elapsed, duration), f"run {options.run_id}: {sent:,} sent"
                ),
            )
    summary = {
        "run_id": options.run_id,
        "pattern": pattern,
        "sent": stats.sent,
        "elapsed_s": round(stats.elapsed, 3),
        "target_tps": round(stats.target_tps, 1),
        "achieved_tps": round(stats.achieved_tps, 1),
        "expected": round(stats.expected),
        "fraud_sent": int(picked.head(stats.sent)["is_fraud"].sum()),
    }
    if as_json:
        print(json.dumps(summary))
        return
    table = Table("run", "pattern", "sent", "frauds", "elapsed", "target tx/s", "achieved tx/s")
    table.add_row(
        options.run_id,
        pattern,
        f"{stats.sent:,}",
        f"{summary['fraud_sent']:,}",
        f"{stats.elapsed:.2f} s",
        f"{stats.target_tps:,.0f}",
        f"{stats.achieved_tps:,.0f}",
    )
    console.print(table)


def features_for_history(
    history: pl.DataFrame, labels: pl.DataFrame | None, date_from: str | None, date_to: str | None
) -> pl.DataFrame:
    """A history with its point-in-time features (offline backfill, ``labels`` counted as
    reported), restricted to ``[date_from, date_to]`` after the features are computed on all
    of it."""
    from datetime import date, timedelta

    import polars as pl

    from fraudstream.features import backfill

    frame = history.join(backfill(history, labels), on="transaction_id", how="left")
    for flag, value, op in (("--from", date_from, "ge"), ("--to", date_to, "le")):
        if value is None:
            continue
        try:
            day = date.fromisoformat(value)
        except ValueError:
            raise typer.BadParameter(f"not a date: {value!r}", param_hint=flag) from None
        bound = day if op == "ge" else day + timedelta(days=1)
        stamp = pl.col("timestamp").dt.date()
        frame = frame.filter(stamp >= bound if op == "ge" else stamp < bound)
    return frame
