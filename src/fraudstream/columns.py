"""Which column of a file holds which field, and each field as a typed, checked expression.

A file's columns are mapped onto our fields by, in order: the user's map (``--columns
map.toml`` / ``--column amount=TxnAmt``), a well-known public dataset's layout recognised by
its columns (`fraudstream.layouts`), the Fraud Detection Handbook's names, our own names.
Each field then becomes a typed polars expression plus a *reason* expression (null when the
value is fine, else ``"amount: must be >= 0, got -3"``), so a whole file is validated in one
vectorised pass and every bad row can be named.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from fraudstream.errors import ConfigError
from fraudstream.layouts import Layout, Match, recognise, unscorable
from fraudstream.schema import (
    AMOUNT_CEILING,
    CHANNELS,
    EARLIEST,
    EXACT_INTEGERS,
    GRID_SIZE,
    HANDBOOK_COLUMNS,
)

REQUIRED = ("transaction_id", "timestamp", "customer_id", "terminal_id", "amount")
IDS = ("transaction_id", "customer_id", "terminal_id", "merchant_id", "card_id")
TEXT = ("currency", "channel", "mcc", "product_category", "product_subcategory", "ip")
TEXT_MORE = ("device_id", "email")
FLOATS: dict[str, tuple[float, float]] = {
    "lat": (-90.0, 90.0),
    "lon": (-180.0, 180.0),
    "x": (0.0, GRID_SIZE),
    "y": (0.0, GRID_SIZE),
}
TRUTH = ("is_fraud", "fraud_scenario")
FIELDS = (*REQUIRED, *IDS[3:], *TEXT, *TEXT_MORE, *FLOATS, *TRUTH)
HANDBOOK_TRUTH = {"TX_FRAUD": "is_fraud", "TX_FRAUD_SCENARIO": "fraud_scenario"}
_AWARE = (
    "%Y-%m-%dT%H:%M:%S%.f%#z",
    "%Y-%m-%d %H:%M:%S%.f%#z",
    "%Y-%m-%dT%H:%M%#z",
    "%Y-%m-%d %H:%M%#z",
)
_NAIVE = ("%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%d")
_ISO_MINUTES = ("%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M")
_ISO_FORMS = (*_AWARE, *_NAIVE, *_ISO_MINUTES)
"""What an ISO 8601 time may look like, the one definition both readers use: the extended
calendar form (``2026-01-01T10:00:00Z``, ``T`` or a space, seconds and fraction optional,
``Z``/``z``/``+02:00``/``+0200``/``+02`` or no zone: UTC), or a bare date (midnight UTC).
Basic (``20260101T100000Z``), week (``2026-W01-4``) and ordinal dates are refused: no export
writes them, and accepting them in one reader only is what made the readers disagree."""
_EXPORTS = (
    *_ISO_MINUTES,
    "%Y/%m/%d %H:%M:%S",
    "%Y/%m/%d %H:%M",
    "%d/%m/%Y %H:%M:%S",
    "%d/%m/%Y %H:%M",
    "%m/%d/%Y %H:%M:%S",
    "%m/%d/%Y %H:%M",
    "%d.%m.%Y %H:%M:%S",
    "%d.%m.%Y %H:%M",
)
"""Layouts of spreadsheet and bank exports, naive, tried after ISO 8601 (which they are not)."""
_FORMATS = (*_AWARE, *_NAIVE, *_EXPORTS)
_TWINS = {
    "%d/%m/%Y %H:%M:%S": "%m/%d/%Y %H:%M:%S",
    "%d/%m/%Y %H:%M": "%m/%d/%Y %H:%M",
}
_TWINS |= {month: day for day, month in _TWINS.items()}
"""Day-first and month-first layouts: a date whose day is at most 12 fits both."""
EPOCHS: dict[str, int] = {"epoch": 1_000_000, "epoch_ms": 1_000}
"""``--date-format`` values for numbers counting time since 1970-01-01 UTC (Unix time, as in
many exports' ``unix_time``), each with its microseconds per unit."""
UNIX = "unix"
"""Sniffed for numbers (never given): Unix time, each value in seconds or milliseconds by its
own size, so a column mixing the two reads right in both readers (a median-wide unit turned
the minority into 1970 dates)."""
ISO = "iso"
"""Sniffed, never given: every form of `_ISO_FORMS`, value by value. Slower than one format
(about 3x), so a read uses the sniffed form first and this only when a value did not parse
(`fallback`): a file mixing ``…Z`` and zone-less rows, or minutes and seconds."""
_MILLIS_FROM = 1e11
"""A Unix time this large in seconds would be past the year 5000: it counts milliseconds."""
LATEST = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
"""Python's last instant: a later time (a huge Unix number) cannot become a `Transaction`."""


@dataclass(frozen=True)
class ColumnMap:
    """``sources``: field → the file's column; ``date_format``: strftime of the timestamps
    (default: ISO 8601, with or without an offset)."""

    sources: Mapping[str, str] = field(default_factory=dict)
    date_format: str | None = None

    def __post_init__(self) -> None:
        for name in self.sources:
            if name not in FIELDS:
                raise ConfigError(f"columns.{name}", f"not a field (fields: {', '.join(FIELDS)})")

    def resolve(self, available: Sequence[str]) -> dict[str, str]:
        """Field → source column for every field the file has (`plan`'s map)."""
        return self.plan(available)[0]

    def plan(self, available: Sequence[str]) -> tuple[dict[str, str], Layout | None]:
        """Field → source column for every field the file has, and the known layout
        (`fraudstream.layouts`) the columns are recognised as, if any (all of its signature,
        or more than half with the user's map giving the rest). A layout's derived fields
        name columns `Layout.derive` adds.

        Raises:
            ConfigError: a mapped column is not in the file, or a required field has no column.
        """
        out: dict[str, str] = {}
        for name, source in self.sources.items():
            if source not in available:
                raise ConfigError(
                    f"columns.{name}",
                    f"the file has no column {source!r} (it has {', '.join(available)})",
                )
            out[name] = source
        match = recognise(available)
        private: frozenset[str] = frozenset()
        if match is not None:
            for name, source in match.layout.sources(available).items():
                out.setdefault(name, source)
            private = match.layout.private
        known = {**HANDBOOK_COLUMNS, **HANDBOOK_TRUTH, **{f: f for f in FIELDS}}
        for column in available:
            own = known.get(column) if column not in private else None
            if own is not None and own not in out and column not in out.values():
                out[own] = column
        missing = [f for f in REQUIRED if f not in out]
        if missing and (why := unscorable(available)) is not None:
            raise ConfigError(missing[0], f"required field has no column: this is {why}")
        if missing:
            raise ConfigError(
                missing[0],
                f"required field has no column (the file has {', '.join(available)}; "
                f"map one with --column {missing[0]}=COLUMN){_partly(match, missing[0])}",
            )
        return out, match.layout if match is not None else None


def _partly(match: Match | None, name: str) -> str:
    if match is None or not match.missing:
        return ""
    layout = match.layout
    derived = layout.derived.get(name)
    wanted = derived.inputs if derived is not None else (layout.columns.get(name, ""),)
    lacks = [c for c in wanted if c] or list(match.missing)
    return f"; it looks like the {layout.name} layout, which has {', '.join(lacks)}"


def column_map(file: Path | None, pairs: Iterable[str], date_format: str | None) -> ColumnMap:
    """The map from a TOML file (``[columns]`` field = "Column", optional ``date_format``)
    then ``field=Column`` pairs, the later winning.

    Raises:
        ConfigError: an unreadable file, a pair without ``=``, an unknown field.
    """
    sources: dict[str, str] = {}
    fmt: str | None = None
    if file is not None:
        try:
            data = tomllib.loads(file.read_text())
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError("columns", f"{file}: {exc}") from None
        table = data.get("columns", {})
        if not isinstance(table, dict) or not all(isinstance(v, str) for v in table.values()):
            raise ConfigError("columns", f"{file}: [columns] must map fields to column names")
        sources.update(table)
        fmt = data.get("date_format")
    for pair in pairs:
        name, eq, source = pair.partition("=")
        if not eq or not name.strip() or not source.strip():
            raise ConfigError("column", f"expected FIELD=COLUMN, got {pair!r}")
        sources[name.strip()] = source.strip()
    return ColumnMap(sources, date_format or fmt)


def typed(name: str, raw: pl.Expr, dtype: pl.DataType, date_format: str | None) -> pl.Expr:
    """The field as our type (null where the value does not parse)."""
    if name == "timestamp":
        return _timestamp(raw, dtype, date_format)
    if name in IDS and dtype.is_float():
        return id_text(raw)
    if name in IDS or name in TEXT or name in TEXT_MORE:
        return as_text(raw, dtype)
    if name == "is_fraud":
        if dtype == pl.String:
            text = raw.str.strip_chars().str.to_lowercase()
            return text.replace_strict(_BOOLS, default=None, return_dtype=pl.Boolean)
        return raw.cast(pl.Int8, strict=False).cast(pl.Boolean)
    if name == "fraud_scenario":
        return raw.cast(pl.Int8, strict=False)
    return as_number_text(name, raw, dtype).cast(pl.Float64, strict=False)


def as_number_text(name: str, raw: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    """A number field (``amount``, the coordinates) given as text, in the form a float cast
    reads (`number_text`); any other column, or a typed one, as it is (`typed` casts it, for
    both readers: a float cast takes ``.5``, ``5.`` and ``+5``, which the schema does not)."""
    if dtype != pl.String or (name != "amount" and name not in FLOATS):
        return raw
    return number_text(raw, money=name == "amount")


def id_text(raw: pl.Expr) -> pl.Expr:
    """Float ids as the schema writes them (`fraudstream.schema.id_text`): an integral value
    as its digits (``42.0`` is ``"42"``: a Parquet or JSON column of integer ids with a gap
    comes as floats), any other as its text; so a file's ids are the same on both paths."""
    integral = (raw == raw.round(0)) & (raw.abs() <= EXACT_INTEGERS)
    return pl.when(integral).then(raw.cast(pl.Int64).cast(pl.String)).otherwise(raw.cast(pl.String))


def as_text(raw: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    """A text field as text: bytes (Parquet ``BINARY`` without a UTF-8 annotation, as some
    writers leave strings) decoded, null where they are not UTF-8 (`reason` then names the
    row; a plain cast would fail the whole file naming nothing)."""
    if dtype != pl.Binary:
        return raw.cast(pl.String)
    return raw.map_batches(_utf8, return_dtype=pl.String, is_elementwise=True)


def _utf8(values: pl.Series) -> pl.Series:
    """Vectorised when every value decodes (the usual case), value by value otherwise."""
    try:
        return values.cast(pl.String)
    except pl.exceptions.PolarsError:
        return pl.Series(values.name, [_decoded(v) for v in values], dtype=pl.String)


def _decoded(value: bytes | None) -> str | None:
    try:
        return None if value is None else value.decode()
    except UnicodeDecodeError:
        return None


_BOOLS = {
    **dict.fromkeys(("0", "false", "f", "no", "n"), False),
    **dict.fromkeys(("1", "true", "t", "yes", "y"), True),
}
"""How exports write a fraud flag (compared lower-cased: `True`, `Yes`, `Y`, `t` …)."""


def sniff_date_format(sample: pl.Series, whole: Callable[[], pl.Series] | None = None) -> str:
    """The layout most of ``sample`` (a file's first timestamps, as text) is in: a file has
    one layout, and parsing with one format is five times faster than trying them all on
    every row. Numbers are Unix time (`UNIX`: seconds or milliseconds, value by value).

    The first rows of a time-ordered export often fit day-first and month-first alike (all
    on the first days of a month); ``whole`` (the entire column, read only then) settles it.

    Raises:
        ConfigError: the dates fit both orders throughout.
    """
    text = sample.cast(pl.String).str.strip_chars()
    numbers = text.cast(pl.Float64, strict=False)
    if numbers.len() and numbers.null_count() == 0:
        return UNIX
    parsed = {f: _parsed_count(text, f) for f in _FORMATS}
    best = max(_FORMATS, key=lambda f: parsed[f])
    twin = _TWINS.get(best)
    if twin is None or parsed[best] == 0 or parsed[twin] < parsed[best]:
        return best
    if whole is not None:
        text = whole().cast(pl.String).str.strip_chars()
        counts = {f: _parsed_count(text, f) for f in (best, twin)}
        if counts[best] != counts[twin]:
            return max(counts, key=lambda f: counts[f])
    day, month = (best, twin) if best.startswith("%d") else (twin, best)
    raise ConfigError(
        "timestamp",
        f"every date fits day/month and month/day order (first: {text[0]!r}): "
        f"pass --date-format '{day}' or '{month}'",
    )


def _parsed_count(text: pl.Series, fmt: str) -> int:
    return text.str.to_datetime(fmt, strict=False, time_unit="us").count()


def fallback(date_format: str | None, sniffed: bool) -> str | None:
    """The format to read the timestamps again with when some did not parse: `ISO`, value by
    value, when the sniffed layout was one ISO form (the first rows had ``Z``, later ones none;
    seconds, then minutes). None when there is nothing else to try: the user's
    ``--date-format`` is taken at its word, and a spreadsheet layout is one per file."""
    return ISO if sniffed and date_format in _ISO_FORMS else None


def zone_less(raw: pl.Expr) -> pl.Expr:
    """True where an `ISO` text time has no zone (taken as UTC, which the readers say)."""
    return raw.is_not_null() & ~raw.cast(pl.String).str.strip_chars().str.contains(_ZONE)


_ZONE = r"(?i)(z|[+-]\d\d(:?\d\d)?)$"


def is_naive(dtype: pl.DataType, date_format: str | None) -> bool:
    """Timestamps of this type (and text layout) carry no time zone: they are taken as UTC.
    (`ISO` decides value by value: `zone_less`.)"""
    if isinstance(dtype, pl.Datetime):
        return dtype.time_zone is None
    if date_format in EPOCHS or date_format in (UNIX, ISO):
        return False
    if dtype == pl.String:
        return date_format is not None and not any(z in date_format for z in ("%z", "%#z", "%:z"))
    return True


def _timestamp(raw: pl.Expr, dtype: pl.DataType, date_format: str | None) -> pl.Expr:
    """The instant in UTC, null where the value does not parse (see `bounded`)."""
    if isinstance(dtype, pl.Datetime):
        value = raw.dt.cast_time_unit("us")
        if dtype.time_zone is None:
            value = value.dt.replace_time_zone("UTC")
        else:
            value = value.dt.convert_time_zone("UTC")
    elif dtype == pl.Date:
        value = raw.cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    elif date_format in EPOCHS or date_format == UNIX:
        number = raw.cast(pl.String).str.strip_chars().cast(pl.Float64, strict=False)
        if date_format == UNIX:
            scale = pl.when(number.abs() >= _MILLIS_FROM).then(1_000).otherwise(1_000_000)
            micros = (number * scale).round(0)
        else:
            micros = (number * EPOCHS[date_format]).round(0)
        finite = micros.is_finite() & (micros.abs() < 2.0**62)
        whole = pl.when(finite).then(micros).cast(pl.Int64)
        value = pl.from_epoch(whole, time_unit="us").dt.replace_time_zone("UTC")
    else:
        text = raw.cast(pl.String).str.strip_chars()
        forms = _ISO_FORMS if date_format == ISO else (date_format or _FORMATS[0],)
        parsed = [
            text.str.to_datetime(f, strict=False, time_unit="us", time_zone="UTC").cast(
                pl.Datetime("us", "UTC")
            )
            for f in forms
        ]
        value = parsed[0] if len(parsed) == 1 else pl.coalesce(parsed)
    return value


def bounded(name: str, value: pl.Expr) -> pl.Expr:
    """A parsed field's value, a time past `LATEST` made null (a huge Unix number: Python
    has no such date). Apply it to the parsed column, not the parse: an expression used
    twice in a streaming query is computed twice (parsing a time is the costly part)."""
    return pl.when(value <= LATEST).then(value) if name == "timestamp" else value


def reason(name: str, raw: pl.Expr, value: pl.Expr, dtype: pl.DataType | None = None) -> pl.Expr:
    """Null where the field's value is fine, else ``"field: problem, got <raw>"`` (bytes that
    are not UTF-8 shown in hex)."""
    text = raw.bin.encode("hex") if dtype == pl.Binary else raw.cast(pl.String)
    got = text.fill_null("nothing")
    problems: list[tuple[pl.Expr, str]] = []
    if name in REQUIRED:
        problems.append((raw.is_null() | (got.str.strip_chars() == ""), "required"))
    problems.append((raw.is_not_null() & value.is_null(), _unparsed(name, dtype)))
    problems += _range_checks(name, value)
    whens = [
        pl.when(bad).then(pl.format(f"{name}: {text}, got {{}}", got)) for bad, text in problems
    ]
    return pl.coalesce(whens)


def _range_checks(name: str, value: pl.Expr) -> list[tuple[pl.Expr, str]]:
    """The field's own rules beyond parsing (zero is a valid amount: card verification; no
    event is older than the schema's `EARLIEST`, the message its own)."""
    if name == "timestamp":
        return [(value < EARLIEST, f"must not be before {EARLIEST.isoformat()}")]
    if name == "amount":
        return [
            (value.is_nan() | value.is_infinite(), "must be finite"),
            (value < 0, "must be >= 0"),
            (value > AMOUNT_CEILING, f"must be at most {AMOUNT_CEILING:g}"),
        ]
    bounds = FLOATS.get(name)
    if bounds is not None:
        low, high = bounds
        return [((value < low) | (value > high), f"must be within [{low:g}, {high:g}]")]
    if name == "channel":
        return [(~value.is_in(CHANNELS), f"must be one of {', '.join(CHANNELS)}")]
    if name == "currency":
        return [(~value.str.contains("^[A-Z]{3}$"), "must be a 3-letter code")]
    return []


def _unparsed(name: str, dtype: pl.DataType | None = None) -> str:
    if dtype == pl.Binary:
        return "not UTF-8 text"
    if name == "timestamp":
        return "not a date-time in the file's layout (see --date-format)"
    if name == "is_fraud":
        return "not 0/1, true/false or yes/no"
    return "not a number"


_SIGN_BEFORE = r"^([+-]?)\s*[$€£¥]\s*"
_SIGN_AFTER = r"\s*[$€£¥]$"
_PLAIN = r"^[+-]?\d+(\.\d+)?$"
_DECIMAL_COMMA = r"^[+-]?(\d{1,3}(\.\d{3})+|\d+),\d{1,2}$"
"""``12,50``, ``1.234,50``: a comma before one or two digits is a decimal comma (a thousands
separator is followed by three)."""
_THOUSANDS = r"^[+-]?\d{1,3}(,\d{3})+(\.\d+)?$"
"""``1,234.50``, ``1,234``: commas between groups of three digits."""


def number_text(raw: pl.Expr, *, money: bool) -> pl.Expr:
    """Numbers as spreadsheets and banks write them, as text a float cast reads: a decimal
    comma (``12,50``, ``1.234,50``), thousands commas (``1,234.50``) or a currency sign
    (``$``, ``€``, ``£``, ``¥``, before or after) in amounts; a decimal
    comma in coordinates (``48,8566``). What fits none of these (``1.234.567``) is left as
    it is, and fails to parse, naming its row."""
    text = raw.str.strip_chars()
    if not money:
        return (
            pl.when(text.str.contains(",") & ~text.str.contains(r"\."))
            .then(text.str.replace(",", ".", literal=True))
            .otherwise(text)
        )
    # a currency sign before or after the number: ``$12.50``, ``-$77``, ``12,50 €``
    text = text.str.replace(_SIGN_BEFORE, "${1}").str.replace(_SIGN_AFTER, "")
    european = text.str.replace_all(".", "", literal=True).str.replace(",", ".", literal=True)
    return (
        pl.when(text.str.contains(_PLAIN))
        .then(text)
        .when(text.str.contains(_DECIMAL_COMMA))
        .then(european)
        .when(text.str.contains(_THOUSANDS))
        .then(text.str.replace_all(",", "", literal=True))
        .otherwise(text)
    )
