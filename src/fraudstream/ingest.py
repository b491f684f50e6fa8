"""Transactions from a file for ``produce``: every row validated as the stream will see it.

The format is read from the content and columns are mapped as `fraudstream.history` does
(the user's map, the Handbook's names, ours; extra columns and ground truth are dropped).
Each row then goes through the `Transaction` schema itself, so what is sent is exactly what a
worker accepts; a bad row is kept with its row (data rows from 1, the header not counted;
for JSON lines, the line), its reason and its original values, for the caller to stop on or
write out.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec
import polars as pl

from fraudstream.columns import (
    EPOCHS,
    EXPORT_FORMATS,
    TRUTH,
    ColumnMap,
    as_number_text,
    epoch_format,
    from_epoch,
    sniff_date_format,
    typed,
)
from fraudstream.errors import BadRowsError, DataFileError, SchemaError
from fraudstream.history import csv_dialect, file_format, guarded, scan
from fraudstream.schema import Transaction, transaction_from_record


@dataclass(frozen=True)
class Rejected:
    """A row the schema refused: where, why, and what it held."""

    row: int
    field: str
    """``""`` when the row as a whole is at fault (not JSON, not an object)."""
    reason: str
    record: object


@dataclass(frozen=True)
class Ingested:
    transactions: list[Transaction]
    rejected: list[Rejected]
    layout: str | None = None
    """``the PaySim layout: …`` when the columns were a well-known dataset's."""
    encoding: str | None = None
    """A CSV not in UTF-8: the codec it was read as (`fraudstream.history.csv_dialect`)."""

    def stop_on_bad(self, path: Path) -> None:
        """Raises `BadRowsError` naming the first bad row, if there is one."""
        if self.rejected:
            first = self.rejected[0]
            total = len(self.transactions) + len(self.rejected)
            raise BadRowsError(path, first.row, first.reason, len(self.rejected), total)


def read_transactions(
    path: Path, columns: ColumnMap | None = None, progress: Progress | None = None
) -> Ingested:
    """Validate every row of a file.

    Raises:
        DataFileError: the file is unreadable.
        ConfigError: a required field has no column (CSV, Parquet).
    """
    columns = columns or ColumnMap()
    fmt = file_format(path)
    said: list[str] = []
    if fmt == "jsonl":
        rows = _json_lines(path, columns)
    else:
        rows = _table_rows(path, fmt, columns, said)
    good: list[Transaction] = []
    bad: list[Rejected] = []
    for number, row, original in rows:
        if progress is not None and number % PROGRESS_ROWS == 0:
            progress(number)
        try:
            if isinstance(row, SchemaError):
                raise row
            if not isinstance(row, dict):
                raise SchemaError("", f"expected an object, got {type(row).__name__}")
            good.append(transaction_from_record(_parsed(row, columns.date_format)))
        except SchemaError as exc:
            bad.append(Rejected(number, exc.field, str(exc), original))
    encoding = csv_dialect(path).encoding if fmt == "csv" else None
    return Ingested(good, bad, said[0] if said else None, encoding)


Progress = Callable[[int], None]
"""Called with the rows validated so far, every `PROGRESS_ROWS`."""
PROGRESS_ROWS = 10_000
Row = tuple[int, object, object]
"""(row or line number, the decoded row or why it could not be, the original values)."""


def _table_rows(path: Path, fmt: str, columns: ColumnMap, said: list[str]) -> Iterator[Row]:
    """The rows; ``said`` gets the note on a recognised layout (before the first row)."""
    lazy = scan(path, fmt)
    sources, layout = columns.plan(guarded(path, lazy.collect_schema).names())
    if layout is not None:
        lazy = layout.derive(lazy, sources)
        said.append(f"the {layout.name} layout: {layout.describe(sources)}")
    schema = guarded(path, lazy.collect_schema)
    picked = lazy.select(
        as_number_text(name, pl.col(source), schema[source]).alias(name)
        for name, source in sources.items()
        if name not in TRUTH
    )
    frame = _export_times(guarded(path, picked.collect), columns.date_format)
    for number, row in enumerate(frame.iter_rows(named=True), start=1):
        parsed = row.pop(_PARSED, None)
        yield number, (row if parsed is None else {**row, "timestamp": parsed}), row


_PARSED = "_timestamp"


def _export_times(frame: pl.DataFrame, date_format: str | None) -> pl.DataFrame:
    """``frame`` with its timestamps parsed beside them (`_PARSED`) when, with no
    ``--date-format``, they are in a spreadsheet's layout (`EXPORT_FORMATS`): the history
    reader reads the same files. ISO 8601 and Unix times are parsed row by row; a value that
    does not parse keeps its text, and the row is rejected naming it."""
    stamps = frame.get_column("timestamp", default=None)
    if date_format is not None or stamps is None or stamps.dtype != pl.String:
        return frame
    present = stamps.drop_nulls()
    sniffed = sniff_date_format(present.head(1000), lambda: present)
    if sniffed not in EXPORT_FORMATS:
        return frame
    return frame.with_columns(
        typed("timestamp", pl.col("timestamp"), pl.String(), sniffed).alias(_PARSED)
    )


def _json_lines(path: Path, columns: ColumnMap) -> Iterator[Row]:
    renames = {source: name for name, source in columns.sources.items()}
    with guarded(path, path.open, "rb") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = msgspec.json.decode(line)
            except msgspec.DecodeError as exc:
                yield (
                    number,
                    SchemaError("", f"not valid JSON: {exc}"),
                    line.decode(errors="replace"),
                )
                continue
            if isinstance(row, dict) and renames:
                row = {renames.get(k, k): v for k, v in row.items()}
            yield number, row, row


def _parsed(row: Mapping[str, Any], date_format: str | None) -> Mapping[str, Any]:
    stamp = row.get("timestamp")
    if isinstance(stamp, (str, int, float)) and not isinstance(stamp, bool):
        unit = date_format if date_format in EPOCHS else None
        if date_format is None:
            unit = epoch_format(stamp)
        if unit is not None:
            try:
                return {**row, "timestamp": from_epoch(stamp, unit)}
            except (ValueError, OverflowError):
                raise SchemaError("timestamp", f"not a Unix time, got {stamp!r}") from None
    if date_format is None or not isinstance(stamp, str):
        return row
    try:
        return {**row, "timestamp": datetime.strptime(stamp.strip(), date_format)}
    except ValueError:
        raise SchemaError("timestamp", f"not in {date_format!r}, got {stamp!r}") from None


def write_rejects(rejected: list[Rejected], out: Path) -> None:
    """``row, field, reason, record`` (the row's original values as JSON), one line each.

    Raises:
        DataFileError: the file cannot be written.
    """
    try:
        with out.open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["row", "field", "reason", "record"])
            for r in rejected:
                writer.writerow([r.row, r.field, r.reason, json.dumps(r.record, default=str)])
    except OSError as exc:
        raise DataFileError(out, exc.strerror or str(exc)) from None
