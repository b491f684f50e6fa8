"""A batch as columns: `RuleContext`, and the helpers that build one.

Columns are numpy arrays, one per flat name (``amount``, ``customer_tx_count_1h``):

- numbers: ``float64`` with ``NaN`` for null (ints and bools are converted);
- strings: ``object`` arrays with ``None`` for null (``str`` arrays are converted);
- flags: ``bool`` arrays, or floats (1.0 / 0.0 / NaN) when they can be missing.

List memberships (``ip in list("ip_blocklist")``) arrive resolved, as bool arrays keyed by
`fraudstream.rules.compiler.ListRef.key` (see `fraudstream.rules.lists`). Conversions are done
once per column per batch and cached, so fifty rules reading ``amount`` convert it once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from fraudstream.rules.errors import RuleEvaluationError
from fraudstream.rules.types import TRANSACTION_FIELDS, RuleSchema, Type
from fraudstream.schema import Transaction

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
ObjectArray = npt.NDArray[np.object_]


class RuleContext:
    """One batch: columns by flat name, list memberships by key, and ``n`` rows."""

    __slots__ = ("_cache", "columns", "memberships", "n")

    def __init__(
        self,
        columns: Mapping[str, Any],
        memberships: Mapping[str, BoolArray] | None = None,
        n: int | None = None,
    ) -> None:
        self.columns = columns
        self.memberships = memberships or {}
        if n is None:
            first = next(iter(columns.values()), None)
            n = 0 if first is None else len(first)
        self.n = n
        self._cache: dict[tuple[str, str], Any] = {}

    def _raw(self, column: str) -> npt.NDArray[Any]:
        try:
            value = self.columns[column]
        except KeyError:
            raise RuleEvaluationError(f"the batch has no column '{column}'") from None
        arr = np.asarray(value)
        if arr.shape != (self.n,):
            raise RuleEvaluationError(
                f"column '{column}' has shape {arr.shape}, expected ({self.n},)"
            )
        return arr

    def number(self, column: str) -> FloatArray:
        key = (column, "n")
        if key not in self._cache:
            self._cache[key] = _as_float(self._raw(column), column)
        out: FloatArray = self._cache[key]
        return out

    def string(self, column: str) -> ObjectArray:
        key = (column, "s")
        if key not in self._cache:
            arr = self._raw(column)
            if arr.dtype.kind in "US":
                arr = arr.astype(object)
            elif arr.dtype != object:
                raise RuleEvaluationError(f"column '{column}' holds {arr.dtype}, not strings")
            self._cache[key] = arr
        out: ObjectArray = self._cache[key]
        return out

    def flag(self, column: str) -> BoolArray:
        """A bool column with null read as false."""
        key = (column, "b")
        if key not in self._cache:
            arr = self._raw(column)
            if arr.dtype != np.bool_:
                arr = _as_float(arr, column) == 1.0
            self._cache[key] = arr
        out: BoolArray = self._cache[key]
        return out

    def null(self, column: str, type_: Type) -> BoolArray:
        key = (column, "null")
        if key not in self._cache:
            if type_ is Type.STRING:
                mask = is_none(self.string(column))
            else:
                arr = self._raw(column)
                mask = (
                    np.zeros(self.n, bool)
                    if arr.dtype == np.bool_
                    else np.isnan(_as_float(arr, column))
                )
            self._cache[key] = mask
        out: BoolArray = self._cache[key]
        return out

    def memo(self, key: str, fn: Any) -> Any:
        """``fn(self)`` computed once per batch for ``key`` (a sub-expression's text): rules
        sharing ``lower(email)`` or ``mcc in [...]`` pay for the per-element work once."""
        slot = (key, "memo")
        if slot not in self._cache:
            self._cache[slot] = fn(self)
        return self._cache[slot]

    def membership(self, key: str) -> BoolArray:
        try:
            return np.asarray(self.memberships[key], dtype=bool)
        except KeyError:
            raise RuleEvaluationError(
                f"list membership '{key}' was not resolved for this batch"
            ) from None


def is_none(values: Any) -> Any:
    """Elementwise ``v is None`` of an object array (or of a scalar)."""
    return np.equal(values, None)  # type: ignore[call-overload]


def not_none(values: Any) -> Any:
    """Elementwise ``v is not None`` of an object array (or of a scalar)."""
    return np.not_equal(values, None)  # type: ignore[call-overload]


def _as_float(arr: npt.NDArray[Any], column: str) -> FloatArray:
    if arr.dtype == np.float64:
        return arr
    if arr.dtype.kind in "biuf":
        return arr.astype(np.float64)
    if arr.dtype == object:
        try:
            return np.array([np.nan if v is None else float(v) for v in arr], dtype=np.float64)
        except (TypeError, ValueError):
            pass
    raise RuleEvaluationError(f"column '{column}' holds {arr.dtype}, not numbers")


def _email_domain(email: str | None) -> str | None:
    if not email or "@" not in email:
        return None
    return email.rsplit("@", 1)[1].strip().lower() or None


def _epoch(stamp: datetime) -> float:
    return stamp.timestamp()


def transaction_columns(
    transactions: Sequence[Transaction], names: Iterable[str] | None = None
) -> dict[str, Any]:
    """Columns of the transaction fields (all, or only ``names`` — pass ``ruleset.columns``).

    >>> from fraudstream.schema import transaction_from_record
    >>> tx = transaction_from_record({"transaction_id": "t1", "customer_id": "c",
    ...     "terminal_id": "t", "amount": 12.5, "timestamp": "2024-05-01T10:00:00+00:00",
    ...     "email": "A@Mail.Example"})
    >>> cols = transaction_columns([tx], ["amount", "email_domain", "hour", "customer_tx"])
    >>> cols["amount"].tolist(), cols["email_domain"].tolist(), cols["hour"].tolist()
    ([12.5], ['mail.example'], [10.0])
    """
    wanted = TRANSACTION_FIELDS.keys() if names is None else set(names) & TRANSACTION_FIELDS.keys()
    n = len(transactions)
    out: dict[str, Any] = {}
    for name in wanted:
        type_ = TRANSACTION_FIELDS[name]
        if name == "email_domain":
            values: Iterable[Any] = (_email_domain(tx.email) for tx in transactions)
        elif name == "hour":
            values = (float(_utc_hour(tx.timestamp)) for tx in transactions)
        elif name == "timestamp":
            values = (_epoch(tx.timestamp) for tx in transactions)
        else:
            values = (getattr(tx, name) for tx in transactions)
        out[name] = _column(values, type_, n)
    return out


def _utc_hour(stamp: datetime) -> int:
    return int(stamp.timestamp() // 3600 % 24)


def _column(values: Iterable[Any], type_: Type, n: int) -> npt.NDArray[Any]:
    if type_ is Type.STRING:
        return np.fromiter(values, dtype=object, count=n)
    return np.fromiter(
        (np.nan if v is None else float(v) for v in values), dtype=np.float64, count=n
    )


def columns_from_records(
    records: Sequence[Mapping[str, Any]], schema: RuleSchema
) -> dict[str, Any]:
    """Columns for every schema field from plain dicts (JSON): flat (``customer_tx_count_1h``),
    dotted (``"customer.tx_count_1h"``) or nested (``{"customer": {"tx_count_1h": 3}}``) keys.

    Missing values are null. Used by ``rules test`` and by tests; workers build columns from
    `transaction_columns` and the feature engine's arrays instead.
    """
    flat = [_flatten(r) for r in records]
    for row in flat:
        if isinstance(row.get("timestamp"), str):
            row["timestamp"] = datetime.fromisoformat(row["timestamp"]).timestamp()
        if "email_domain" not in row and isinstance(row.get("email"), str):
            row["email_domain"] = _email_domain(row["email"])
        if "hour" not in row and isinstance(row.get("timestamp"), int | float):
            row["hour"] = float(int(row["timestamp"] // 3600 % 24))
    out: dict[str, Any] = {}
    for column, field in schema.fields.items():
        values = [row.get(column) for row in flat]
        if field.type is Type.BOOL:
            out[column] = np.array(
                [np.nan if v is None else float(bool(v)) for v in values], dtype=np.float64
            )
        else:
            out[column] = _column(values, field.type, len(flat))
    return out


def _flatten(record: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in record.items():
        name = f"{prefix}{str(key).replace('.', '_')}"
        if isinstance(value, Mapping):
            out.update(_flatten(value, name + "_"))
        else:
            out[name] = value
    return out
