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

import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from fraudstream.errors import SchemaError
from fraudstream.rules.errors import RuleEvaluationError
from fraudstream.rules.types import TRANSACTION_FIELDS, RuleSchema, Type
from fraudstream.schema import CHANNELS, Transaction, check_amount, check_ip

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
    dotted (``"customer.tx_count_1h"``) or nested (``{"customer": {"tx_count_1h": 3}}``) keys,
    features also under a ``"features"`` object. See `record_values` for what is refused.

    Missing values are null. Used by ``rules test`` and by tests; workers build columns from
    `transaction_columns` and the feature engine's arrays instead.

    Raises:
        SchemaError: naming the field (and the row, ``(row N)``, when there are several).
    """
    flat: list[dict[str, Any]] = []
    for i, record in enumerate(records):
        try:
            flat.append(record_values(record, schema))
        except SchemaError as exc:
            if len(records) == 1:
                raise
            raise SchemaError(exc.field, f"{exc.problem} (row {i + 1})") from None
    out: dict[str, Any] = {}
    for column, field in schema.fields.items():
        values = [row.get(column) for row in flat]
        out[column] = _column(
            values, Type.NUMBER if field.type is Type.BOOL else field.type, len(flat)
        )
    return out


FEATURES_KEY = "features"
"""A top-level object whose keys are read as if written at the top level."""


def record_values(record: object, schema: RuleSchema) -> dict[str, Any]:
    """Flat column -> value of one transaction (numbers and flags as floats, strings as str).

    What is refused would otherwise turn silently into a null or a wrong value and show a rule
    that does not hit, so the analyst would trust a wrong answer: a name the schema does not
    know (a typo), a name given twice (flat and nested), a value of the wrong type (``"abc"``,
    ``"5000"``, ``true`` or an object as an amount), a non-finite number, and the values the
    stream refuses (a negative amount, an IP that is not one, an unknown channel).

    Raises:
        SchemaError: naming the field as written (``model.score``) and the value.
    """
    if not isinstance(record, Mapping):
        raise SchemaError("", f"expected one transaction as a JSON object, got {_shown(record)}")
    out: dict[str, Any] = {}
    written: dict[str, str] = {}
    # (path as written, name without the features wrapper, value); a stack, not recursion:
    # the depth is the user's
    todo: list[tuple[str, str, Any]] = []
    for key, value in reversed(list(record.items())):
        key = str(key)
        if key != FEATURES_KEY or key in schema.fields:
            todo.append((key, key, value))
        elif isinstance(value, Mapping):
            todo.extend((f"{key}.{k}", str(k), v) for k, v in reversed(list(value.items())))
        elif value is not None:
            raise SchemaError(key, f"must be an object of feature values, got {_shown(value)}")
    while todo:
        shown, name, value = todo.pop()
        column = name.replace(".", "_")
        field = schema.fields.get(column)
        if isinstance(value, Mapping) and (
            field is None or any(c.startswith(column + "_") for c in schema.fields)
        ):
            todo.extend(
                (f"{shown}.{k}", f"{name}.{k}", v) for k, v in reversed(list(value.items()))
            )
            continue
        if field is None:
            close = schema.suggest(name)
            hint = f" (did you mean '{close}'?)" if close else ""
            raise SchemaError(_cut(shown), f"unknown field{hint}")
        if column in written:
            first = written[column]
            how = "dotted and nested" if first == shown else f"also as '{_cut(first)}'"
            raise SchemaError(_cut(shown), f"given twice ({how})")
        written[column] = shown
        out[column] = _checked(shown, column, field.type, value)
    _derive(out)
    return out


def _checked(shown: str, column: str, type_: Type, value: Any) -> Any:
    """The value as its column holds it, or `SchemaError` naming the field."""
    if value is None:
        return None
    if column == "timestamp" and isinstance(value, str):
        return _stamp(value)
    if type_ is Type.STRING:
        if not isinstance(value, str):
            raise SchemaError(_cut(shown), f"must be a string, got {_shown(value)}")
        if column == "ip":
            _stream_check(shown, check_ip, value)
        elif column == "channel" and value not in CHANNELS:
            raise SchemaError(
                _cut(shown), f"must be one of {', '.join(CHANNELS)}, got {_shown(value)}"
            )
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        if type_ is Type.BOOL:
            if isinstance(value, bool):
                return float(value)
            raise SchemaError(_cut(shown), f"must be true or false, got {_shown(value)}")
        what = "an ISO 8601 time or epoch seconds" if column == "timestamp" else "a number"
        raise SchemaError(_cut(shown), f"must be {what}, got {_shown(value)}")
    number = float(value) if not isinstance(value, int) or abs(value) < 1e300 else math.inf
    if not math.isfinite(number):
        raise SchemaError(_cut(shown), f"must be a finite number, got {_shown(value)}")
    if type_ is Type.BOOL and number not in (0.0, 1.0):
        raise SchemaError(_cut(shown), f"must be true or false (or 1 or 0), got {_shown(value)}")
    if column == "amount":
        _stream_check(shown, check_amount, number)
    return number


def _stamp(text: str) -> float:
    """Epoch seconds of an ISO 8601 time; one without a zone is UTC, as imports read it."""
    try:
        stamp = datetime.fromisoformat(text)
    except ValueError:
        raise SchemaError(
            "timestamp", f"not an ISO 8601 datetime (nor epoch seconds): {_shown(text)}"
        ) from None
    return (stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)).timestamp()


def _stream_check(shown: str, check: Callable[[Any], None], value: Any) -> None:
    """What the stream refuses, refused here with its words (they start with the field)."""
    try:
        check(value)
    except ValueError as exc:
        raise SchemaError(_cut(shown), str(exc).partition(": ")[2]) from None


def _derive(row: dict[str, Any]) -> None:
    if row.get("email_domain") is None and isinstance(row.get("email"), str):
        row["email_domain"] = _email_domain(row["email"])
    if row.get("hour") is None and row.get("timestamp") is not None:
        row["hour"] = float(int(row["timestamp"] // 3600 % 24))


def _cut(text: str, limit: int = 64) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _shown(value: Any) -> str:
    """A value as JSON spells it, cut short: messages echo what the user wrote."""
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else "Infinity" if value > 0 else "-Infinity"
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 1e300:
        return "a number too large"
    return _cut(json.dumps(value, ensure_ascii=False), 40)
