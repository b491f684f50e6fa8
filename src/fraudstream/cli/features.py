"""Features: offline backfill for training, a customer's live state, housekeeping."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from fraudstream.cli.app import app
from fraudstream.cli.common import ConfigOpt, JsonOpt, connect, console, settings_from
from fraudstream.cli.progress import Status, Steps
from fraudstream.cli.reading import (
    ColumnOpt,
    ColumnsFileOpt,
    DateFormatOpt,
    SkipInvalidOpt,
    read_history,
    read_options,
)

if TYPE_CHECKING:
    import polars as pl

    from fraudstream.config import Settings
    from fraudstream.features import FeatureEngine
    from fraudstream.features.neighbours import Neighbourhood

features_app = typer.Typer(no_args_is_help=True, help="Online features and offline backfill.")
app.add_typer(features_app, name="features")


def feature_engine(settings: Settings) -> FeatureEngine:
    """The online engine as the settings configure it, to inspect or sweep state (it
    computes no batch, so it skips compiling the batch kernels)."""
    from fraudstream.features import FeatureEngine

    return FeatureEngine(
        connect(settings),
        namespace=settings.feature_namespace,
        lateness_s=settings.feature_lateness_s,
        max_future_skew_s=settings.feature_max_future_skew_s,
        ttl_s=settings.feature_ttl_s,
        warm_up=False,
    )


@features_app.command("backfill")
def features_backfill(
    history: Annotated[
        Path,
        typer.Option(
            help="The history: CSV, Parquet or JSON lines, our columns, the Handbook's, a "
            "known public dataset's (Sparkov, PaySim, IEEE-CIS) or mapped with --column, or "
            "a `simulate` folder.",
            exists=True,
        ),
    ],
    out: Annotated[Path, typer.Option(help="Parquet file to write the features to.")],
    labels: Annotated[
        Path | None,
        typer.Option(help="Labels file (default: labels.parquet or .csv beside the history)."),
    ] = None,
    profiles: Annotated[
        Path | None,
        typer.Option(
            help="Customer profiles (e.g. customers.parquet) for the static features, as "
            "loaded online with 'features load-profiles'.",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    neighbours_until: Annotated[
        str | None,
        typer.Option(
            help="Co-visitation neighbourhood of the --neighbours-days before this day "
            "(YYYY-MM-DD), as 'features load-neighbours --until' loads it online "
            "(default: none, the feature is NaN).",
        ),
    ] = None,
    neighbours_days: Annotated[int, typer.Option(min=1, help="See --neighbours-until.")] = 30,
    columns: ColumnsFileOpt = None,
    column: ColumnOpt = None,
    date_format: DateFormatOpt = None,
    skip_invalid: SkipInvalidOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Compute every feature of every transaction, point in time, as the workers would."""
    import time

    from fraudstream.errors import DataFileError
    from fraudstream.features import backfill
    from fraudstream.history import read_labels, read_table

    settings = settings_from(config)
    if not out.parent.is_dir():  # before the backfill's minutes, not after
        raise DataFileError(out.parent, "no such folder (for --out)")
    rejects = out.with_name(f"{out.stem}.rejects.csv")
    frame = read_history(history, read_options(columns, column, date_format, skip_invalid, rejects))
    label_frame = read_labels(history, labels)
    profile_frame = read_table(profiles) if profiles else None
    hood = (
        None
        if neighbours_until is None
        else _neighbourhood(frame, label_frame, neighbours_until, neighbours_days)
    )
    with Status(f"backfilling {frame.height:,} transactions"):
        t0 = time.perf_counter()
        features = backfill(
            frame,
            label_frame,
            lateness_s=settings.feature_lateness_s,
            profiles=profile_frame,
            neighbours=hood,
        )
        seconds = time.perf_counter() - t0
    features.write_parquet(out)
    console.print(
        f"wrote {features.height:,} rows × {features.width - 1} features to {out} "
        f"in {seconds:.1f} s"
    )


@features_app.command("load-profiles")
def features_load_profiles(
    path: Annotated[
        Path,
        typer.Argument(
            help="Parquet or CSV of customer profiles: customer_id and any of segment, "
            "home_lat/home_lon or x/y, preferred_card or card_ids (e.g. the simulator's "
            "customers.parquet).",
            exists=True,
            dir_okay=False,
        ),
    ],
    config: ConfigOpt = None,
) -> None:
    """Load (replace) static customer profiles for the online static features."""
    from fraudstream.features.profiles import load_profiles
    from fraudstream.history import read_table

    settings = settings_from(config)
    frame = read_table(path)
    with Steps("loading profiles", frame.height, unit="customers") as step:
        written = load_profiles(
            connect(settings),
            frame,
            namespace=settings.feature_namespace,
            progress=step.advance,
        )
    console.print(f"loaded {written:,} customer profiles from {path}")


def _neighbourhood(
    frame: pl.DataFrame, label_frame: pl.DataFrame | None, until: str | None, days: int
) -> Neighbourhood:
    """The neighbourhood of the ``days`` before ``until`` (default: the day after the
    history's last), frauds known by then (``label_frame`` as `read_labels` gave it, taken
    as `train` takes it) left out."""
    from datetime import UTC, date, datetime, time, timedelta

    from fraudstream.errors import SchemaError
    from fraudstream.features.neighbours import build_neighbourhood
    from fraudstream.models.dataset import labels_for

    if until is not None:
        try:
            end_day = date.fromisoformat(until)
        except ValueError:
            raise SchemaError("until", f"not a date (YYYY-MM-DD): {until!r}") from None
    else:
        end_day = frame["timestamp"].max().date() + timedelta(days=1)  # type: ignore[union-attr]
    if label_frame is not None or "is_fraud" in frame.columns:
        label_frame = labels_for(frame, label_frame)
    hood = build_neighbourhood(
        frame, datetime.combine(end_day, time(), UTC), days=days, labels=label_frame
    )
    if not hood.terminals:
        last = end_day - timedelta(days=1)
        raise SchemaError("history", f"no transactions in {hood.start:%Y-%m-%d}..{last}")
    return hood


@features_app.command("load-neighbours")
def features_load_neighbours(
    history: Annotated[
        Path,
        typer.Option(
            help="The history: CSV, Parquet or JSON lines, our columns, the Handbook's, a "
            "known public dataset's or mapped with --column, or a `simulate` folder.",
            exists=True,
        ),
    ],
    days: Annotated[
        int, typer.Option(min=1, help="Days of history before --until the neighbourhood covers.")
    ] = 30,
    until: Annotated[
        str | None,
        typer.Option(
            help="End of the period (exclusive), YYYY-MM-DD: to serve a model, its first "
            "training day (what train and evaluate use). Default: the day after the "
            "history's last.",
        ),
    ] = None,
    labels: Annotated[
        Path | None,
        typer.Option(
            help="Labels file (default: labels beside the history, else is_fraud / "
            "TX_FRAUD known 7 days later): frauds known by --until are left out."
        ),
    ] = None,
    columns: ColumnsFileOpt = None,
    column: ColumnOpt = None,
    date_format: DateFormatOpt = None,
    skip_invalid: SkipInvalidOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Load (replace) the co-visitation neighbourhood of terminals for the online
    terminal_covisit_share feature."""
    from datetime import timedelta

    from fraudstream.features.neighbours import load_neighbours
    from fraudstream.history import read_labels

    settings = settings_from(config)
    rejects = history.with_name(f"{history.stem}.rejects.csv")
    frame = read_history(history, read_options(columns, column, date_format, skip_invalid, rejects))
    hood = _neighbourhood(frame, read_labels(history, labels), until, days)
    n = len(hood.customers) + len(hood.terminals)
    with Steps("loading neighbourhoods", n, unit="records") as step:
        written = load_neighbours(
            connect(settings), hood, namespace=settings.feature_namespace, progress=step.advance
        )
    console.print(
        f"loaded {written:,} neighbourhood records ({len(hood.customers):,} customers, "
        f"{len(hood.terminals):,} terminals of which {int(hood.hub.sum()):,} hubs) from "
        f"{hood.start:%Y-%m-%d}..{hood.end - timedelta(days=1):%Y-%m-%d}"
    )


@features_app.command("show")
def features_show(
    customer: Annotated[str, typer.Option("--customer", help="Customer id.")],
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """A customer's live feature state."""
    state = feature_engine(settings_from(config)).customer_state(customer)
    if as_json:
        print(json.dumps(state, default=str))
        return
    table = Table("field", "value", title=f"customer {customer}")
    for key, value in state.items():
        table.add_row(key, str(value))
    console.print(table)


@features_app.command("sweep")
def features_sweep(config: ConfigOpt = None) -> None:
    """Delete feature blocks no window can reach any more (after replaying old history)."""
    removed = feature_engine(settings_from(config)).sweep()
    console.print(f"removed {removed:,} stale blocks")
