"""The options every command that reads a history shares, and what it says about the read."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from fraudstream.cli.common import err_console

if TYPE_CHECKING:
    import polars as pl

    from fraudstream.history import History, ReadOptions

ColumnsFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--columns",
        help='TOML mapping our fields to your file\'s columns: [columns] amount = "TxnAmt"; '
        "optional date_format.",
        envvar="FRAUDSTREAM_COLUMNS",
        show_envvar=True,
        exists=True,
        dir_okay=False,
    ),
]
ColumnOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--column", help="FIELD=COLUMN, e.g. amount=TxnAmt (repeatable; wins over --columns)."
    ),
]
DateFormatOpt = Annotated[
    str | None,
    typer.Option(
        "--date-format",
        help="strftime layout of the timestamps, e.g. '%d/%m/%Y %H:%M', or epoch / epoch_ms "
        "for Unix time (default: ISO 8601, no offset = UTC; numbers: Unix time).",
    ),
]
SkipInvalidOpt = Annotated[
    bool,
    typer.Option(
        "--skip-invalid",
        help="Leave bad rows out, write them with their reasons to <file>.rejects.csv, say how "
        "many (default: stop at the first, naming its row).",
    ),
]


SourceDatabaseOpt = Annotated[
    str | None,
    typer.Option(
        "--database",
        help="Read the history and labels from the SQL store instead of a file: its URL, or "
        "'default' (database_url; else the SQLite file in the data dir).",
        show_default=False,
    ),
]


def load_history(
    data: Path | None,
    database: str | None,
    labels: Path | None,
    options: ReadOptions | None = None,
    config: Path | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    """The history and its labels from ``--data`` (a file, labels beside it or ``--labels``)
    or from ``--database`` (the store's transactions and labels; ``--labels`` still wins).

    Raises:
        typer.BadParameter: neither or both sources given.
    """
    from fraudstream.history import ReadOptions, read_label_file, read_labels

    if (data is None) == (database is None):
        raise typer.BadParameter("give one history: --data FILE or --database URL")
    if database is None:
        assert data is not None
        return read_history(data, options or ReadOptions()), read_labels(data, labels)
    from fraudstream.cli.common import settings_from
    from fraudstream.store.engine import create_engine, database_url
    from fraudstream.store.history import read_store_history

    url = database_url(settings_from(config)) if database == "default" else database
    history, said = read_store_history(create_engine(url))
    return history, read_label_file(labels) if labels is not None else said


def read_options(
    columns: Path | None,
    column: list[str] | None,
    date_format: str | None,
    skip_invalid: bool,
    rejects: Path | None = None,
) -> ReadOptions:
    """The flags as `ReadOptions` (``rejects``: where skipped rows go, default beside the data)."""
    from fraudstream.columns import column_map
    from fraudstream.history import ReadOptions

    return ReadOptions(column_map(columns, column or [], date_format), skip_invalid, rejects)


def read_history(path: Path, options: ReadOptions) -> pl.DataFrame:
    """The history's valid rows; says once on stderr what the user should know of the read."""
    from fraudstream.history import read_history as read

    history = read(path, options)
    tell(history)
    return history.frame


def tell(history: History) -> None:
    """A recognised public layout, naive times taken as UTC, a text encoding other than
    UTF-8, rows skipped (with where they went) and repeated ids left out (with the rule)."""
    if history.layout:
        tell_layout(history.path, history.layout)
    if history.naive_times:
        err_console.print(
            f"note: {history.path.name}: timestamps have no time zone; taken as UTC",
            highlight=False,
            soft_wrap=True,
        )
    if history.encoding:
        tell_encoding(history.path, history.encoding)
    if history.skipped:
        err_console.print(
            f"skipped {history.skipped:,} invalid rows of {history.path.name}; "
            f"they and their reasons are in {history.rejects}",
            highlight=False,
            soft_wrap=True,
        )
    if history.duplicates:
        n = history.duplicates
        err_console.print(
            f"note: {history.path.name}: left out {n:,} row{'' if n == 1 else 's'} whose "
            f"transaction_id an earlier row has ({history.duplicate}): the first in the file "
            "is kept, as the workers keep the first to arrive",
            highlight=False,
            soft_wrap=True,
        )


def tell_layout(path: Path, layout: str) -> None:
    """``note: fraudTrain.csv: recognised the Sparkov layout: customer_id=cc_num, …``."""
    err_console.print(f"note: {path.name}: recognised {layout}", highlight=False, soft_wrap=True)


def tell_encoding(path: Path, encoding: str) -> None:
    """``note: excel.csv: not UTF-8 text; read as cp1252``."""
    err_console.print(
        f"note: {path.name}: not UTF-8 text; read as {encoding}", highlight=False, soft_wrap=True
    )
