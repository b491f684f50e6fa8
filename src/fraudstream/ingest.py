"""Reading transactions from files: JSON lines, CSV or Parquet, ours or Handbook columns.

Every row is validated on its own; a bad row is reported with its line (or row number) and the
field at fault, and the good rows still go through.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import msgspec

from fraudstream.errors import SchemaError
from fraudstream.schema import Transaction, transaction_from_record

Rejected = list[tuple[int, str]]
"""(line or row number, 1-based; error message)."""


def read_transactions(path: Path) -> tuple[list[Transaction], Rejected]:
    """Validate every row of a file.

    Raises:
        SchemaError: the file type is not one we read.
    """
    suffix = path.suffix.lower()
    if suffix in {".jsonl", ".ndjson", ".json"}:
        return _from_rows(_json_lines(path))
    if suffix in {".csv", ".parquet", ".pq"}:
        import polars as pl

        frame = pl.read_csv(path) if suffix == ".csv" else pl.read_parquet(path)
        return _from_rows(enumerate(frame.iter_rows(named=True), start=1))
    raise SchemaError("path", f"unsupported file type {suffix!r} (use .jsonl, .csv or .parquet)")


def _json_lines(path: Path) -> list[tuple[int, object]]:
    rows: list[tuple[int, object]] = []
    with path.open("rb") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                rows.append((number, msgspec.json.decode(line)))
            except msgspec.DecodeError as exc:
                rows.append((number, SchemaError("", f"not valid JSON: {exc}")))
    return rows


def _from_rows(rows: Iterable[tuple[int, object]]) -> tuple[list[Transaction], Rejected]:
    good: list[Transaction] = []
    bad: Rejected = []
    for number, row in rows:
        try:
            if isinstance(row, SchemaError):
                raise row
            if not isinstance(row, dict):
                raise SchemaError("", f"expected an object, got {type(row).__name__}")
            good.append(transaction_from_record(row))
        except SchemaError as exc:
            bad.append((number, str(exc)))
    return good, bad
