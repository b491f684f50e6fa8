"""Transactions from a file for ``produce``: every row validated as the stream will see it.

The file is loaded as the offline commands load it (`fraudstream.history.load`: the format
from the content, the columns mapped, blank rows skipped, rows numbered alike, and the
timestamps, amounts and coordinates parsed and checked by the same expressions), so both
paths accept and refuse the same values with the same messages; extra columns and ground
truth are dropped (in JSON lines too). Each row then goes through the `Transaction` schema
itself, so what is sent is exactly what a worker accepts. A bad row is kept with its row
(a CSV's data rows from 1, the header not counted, blank lines counted; a JSON lines file's
line), its reason (showing the value) and its original values, for the caller to stop on or
write out. An empty or null optional value is an absent one.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import msgspec
import polars as pl

from fraudstream.columns import FIELDS, FLOATS, TRUTH, ColumnMap
from fraudstream.errors import BadRowsError, DataFileError, SchemaError
from fraudstream.history import (
    BOM,
    ORIGINAL,
    Loaded,
    csv_dialect,
    file_format,
    guarded,
    load,
    typed_rows,
)
from fraudstream.schema import HANDBOOK_COLUMNS, Transaction, transaction_from_record


@dataclass(frozen=True)
class Rejected:
    """A row the schema refused: where, why, and what it held."""

    row: int
    field: str
    """``""`` when the row as a whole is at fault (not JSON, not an object, ragged)."""
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
    path: Path,
    columns: ColumnMap | None = None,
    progress: Progress | None = None,
    check: Callable[[Transaction], object] | None = None,
) -> Ingested:
    """Validate every row of a file (the rejected in row order). ``check`` is what the
    workers also refuse of a valid transaction (`fraudstream.features.FeatureEngine.check`:
    dated too far ahead of the clock): given it, such a row is rejected here, with the
    workers' own message, rather than sent to be dead-lettered.

    Raises:
        DataFileError: the file is unreadable.
        ConfigError: a required field has no column (CSV, Parquet).
    """
    columns = columns or ColumnMap()
    fmt = file_format(path)
    said = None
    if fmt == "jsonl":
        rows = _json_lines(path, columns)
    else:
        loaded = load(path, fmt, columns, as_is=_AS_IS, without=TRUTH, originals=True)
        rows, said = _table_rows(loaded), loaded.said
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
            tx = transaction_from_record(row)
        except SchemaError as exc:
            bad.append(Rejected(number, exc.field, _showing(exc, row), original))
            continue
        try:
            if check is not None:
                check(tx)
        except SchemaError as exc:  # the workers' message, as they would dead-letter it
            bad.append(Rejected(number, exc.field, str(exc), original))
            continue
        good.append(tx)
    bad.sort(key=lambda r: r.row)
    encoding = csv_dialect(path).encoding if fmt == "csv" else None
    return Ingested(good, bad, said, encoding)


Progress = Callable[[int], None]
"""Called with the rows validated so far, every `PROGRESS_ROWS`."""
PROGRESS_ROWS = 10_000
Row = tuple[int, object, object]
"""(row or line number, the decoded row or why it could not be, the original values)."""
_PARSED = ("timestamp", "amount", *FLOATS)
"""Fields `load` parses and checks as the history reader does; the others reach the schema
as the file has them (ids keep their type: the schema decides what a numeric id becomes)."""
_AS_IS = tuple(f for f in FIELDS if f not in _PARSED)
_KNOWN = frozenset({*FIELDS, *HANDBOOK_COLUMNS}) - frozenset(TRUTH)
"""The keys of a JSON line that are read; any other (``is_fraud``, a note) is ignored, as a
CSV's extra columns are."""


def _table_rows(loaded: Loaded) -> Iterator[Row]:
    for number, why in loaded.ragged.iter_rows():
        yield number, SchemaError("", why), None
    for row in loaded.frame.iter_rows(named=True):
        number, why = row.pop("_row"), row.pop("_reason")
        held = {name[: -len(ORIGINAL)]: row.pop(name) for name in list(row) if ORIGINAL in name}
        original = {**row, **held}
        if why is None:
            yield number, row, original
        else:
            field, _, problem = why.partition(": ")
            yield number, SchemaError(field, problem), original


def _json_lines(path: Path, columns: ColumnMap) -> Iterator[Row]:
    """Every line, decoded, then the timestamps of all parsed at once by the history
    reader's rule (`fraudstream.history.typed_rows`)."""
    renames = {source: name for name, source in columns.sources.items()}
    rows: list[Row] = []
    with guarded(path, path.open, "rb") as fh:
        for number, line in enumerate(fh, start=1):
            line = line.removeprefix(BOM) if number == 1 else line
            if not line.strip():
                continue
            try:
                row = msgspec.json.decode(line)
            except msgspec.DecodeError as exc:
                why = SchemaError("", f"not valid JSON: {exc}")
                rows.append((number, why, line.decode(errors="replace")))
                continue
            except RecursionError:  # msgspec recurses per level: ~1,000 deep is its limit
                why = SchemaError("", "not valid JSON: nested too deep to read")
                rows.append((number, why, line[:100].decode(errors="replace") + "…"))
                continue
            original = row
            if isinstance(row, dict):
                row = {renames.get(k) or HANDBOOK_COLUMNS.get(k, k): v for k, v in row.items()}
                row = {k: v for k, v in row.items() if k in _KNOWN}
            rows.append((number, row, original))
    yield from _with_times(path, rows, columns.date_format)


def _with_times(path: Path, rows: list[Row], date_format: str | None) -> list[Row]:
    """``rows`` with each text or number timestamp parsed (or the row's reason why not);
    other values (a boolean, an object) are left for the schema to name."""
    at = [
        i
        for i, (_, row, _) in enumerate(rows)
        if isinstance(row, dict) and _stamp_text(row.get("timestamp")) is not None
    ]
    if not at:
        return rows
    texts = [_stamp_text(rows[i][1]["timestamp"]) for i in at]  # type: ignore[index]
    numbers = [rows[i][0] for i in at]
    lazy = pl.LazyFrame({"_row": numbers, "timestamp": texts}, schema=_STAMPS)
    frame, _ = typed_rows(path, lazy, {"timestamp": "timestamp"}, date_format)
    out = list(rows)
    for i, value, why in zip(at, frame["timestamp"], frame["_reason"], strict=True):
        number, row, original = out[i]
        assert isinstance(row, dict)
        if why is None:
            out[i] = (number, {**row, "timestamp": value}, original)
        else:
            field, _, problem = why.partition(": ")
            out[i] = (number, SchemaError(field, problem), original)
    return out


_STAMPS = {"_row": pl.Int64, "timestamp": pl.String}


def _stamp_text(value: object) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return repr(value)
    return None


def _showing(exc: SchemaError, row: object) -> str:
    """The schema's message with the value it refused, when the message lacks it
    (``amount: expected `float`, got `str` '12,50'``): the user must see what to fix."""
    message = str(exc)
    if not exc.field or not isinstance(row, Mapping) or exc.field not in row:
        return message
    value = row[exc.field]
    shown = repr(value) if len(repr(value)) <= 64 else repr(value)[:63] + "…"
    if re.search(r"got `\w+`$", exc.problem):
        return f"{message} {shown}"
    if ", got " in exc.problem or str(value) in exc.problem or shown in exc.problem:
        return message
    return f"{message}, got {shown}"


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
