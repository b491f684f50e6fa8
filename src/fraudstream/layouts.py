"""The well-known public fraud datasets, recognised by their columns and read with no flags.

Each `Layout` has a name, the *signature* columns that identify it (every column its
required fields are read from), the field → column map, and the fields it derives in polars
from other columns or the row number (PaySim has no id and no time). `fraudstream.columns`
consults `recognise` after the user's own map: a field the user mapped (``--column`` /
``--columns``) keeps the user's column, whatever the layout says. Columns a layout does not
map (names, addresses, birth dates) are never read. docs/data.md explains each choice.

Derived values are the same in every reader (``history`` for the offline commands,
``ingest`` for ``produce``): both number data rows from 1, the header not counted.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import polars as pl

ROW = "__layout_row"
"""The data row (from 1) a layout's derivations may read, added only while they run."""
PAYSIM_ORIGIN = datetime(2017, 1, 1, tzinfo=UTC)
"""PaySim's step 0: its ``step`` counts hours from an unstated start; this one is ours."""
IEEE_ORIGIN = datetime(2017, 12, 1, tzinfo=UTC)
"""IEEE-CIS's ``TransactionDT`` 0: the reference is unpublished; 2017-12-01 is the usual guess."""
_PARTLY = 0.5
"""A file with more than this share of a signature's columns is read with the layout's
columns it has; a required field still missing is named with the layout's column for it."""


@dataclass(frozen=True)
class Derived:
    """A field computed from ``inputs`` (file columns; `ROW` is always there)."""

    inputs: tuple[str, ...]
    expr: Callable[[], pl.Expr]
    shown: str
    """How the note on stderr shows it, e.g. ``paysim-<row>``."""

    def reason(self, name: str, value: pl.Expr) -> pl.Expr:
        """Null where the derived ``value`` is there, else why not, naming the file's column
        it comes from: ``timestamp: step is not a whole number, got x``."""
        if not self.inputs:
            return pl.lit(None, dtype=pl.String)
        source = self.inputs[0]
        raw = pl.col(source).cast(pl.String)
        return (
            pl.when(raw.is_null() | (raw.str.strip_chars() == ""))
            .then(pl.lit(f"{name}: required, {source} is empty"))
            .when(value.is_null())
            .then(pl.format(f"{name}: {source} is not a whole number, got {{}}", raw))
        )


@dataclass(frozen=True)
class Layout:
    name: str
    signature: frozenset[str]
    columns: Mapping[str, str]
    """Field → the file's column (read when present)."""
    derived: Mapping[str, Derived] = field(default_factory=dict)
    private: frozenset[str] = frozenset()
    """The file's columns about a person: never read, even where their name is one of our
    fields (Sparkov's ``lat`` is the cardholder's home)."""

    def column(self, name: str) -> str:
        """The frame column a derived field is computed into."""
        return f"{self.name}:{name}"

    def sources(self, available: Sequence[str]) -> dict[str, str]:
        """Field → column for every field this layout can give from ``available``."""
        out = {f: c for f, c in self.columns.items() if c in available}
        for name, how in self.derived.items():
            if all(c in available for c in how.inputs):
                out[name] = self.column(name)
        return out

    def derive(self, frame: pl.LazyFrame, sources: Mapping[str, str]) -> pl.LazyFrame:
        """``frame`` with the derived fields that ``sources`` still reads (the user's map
        may have replaced them), computed vectorised; unchanged when there are none."""
        wanted = {n: d for n, d in self.derived.items() if sources.get(n) == self.column(n)}
        if not wanted:
            return frame
        numbered = frame.with_row_index(ROW, offset=1)
        return numbered.with_columns(
            d.expr().alias(self.column(n)) for n, d in wanted.items()
        ).drop(ROW)

    def derives(self, name: str, source: str) -> Derived | None:
        """How ``name`` is derived when it is read from ``source`` (None: a file column)."""
        how = self.derived.get(name)
        return how if how is not None and source == self.column(name) else None

    def reads(self, sources: Mapping[str, str]) -> set[str]:
        """The file's columns that reading ``sources`` touches (a derived field's inputs)."""
        out = set(sources.values())
        for name, how in self.derived.items():
            if sources.get(name) == self.column(name):
                out.update(how.inputs)
        return out

    def describe(self, sources: Mapping[str, str]) -> str:
        """``field=column, …`` for the fields read as this layout says (not the user's)."""
        shown = []
        for name, column in sources.items():
            how = self.derived.get(name)
            if how is not None and column == self.column(name):
                shown.append(f"{name}={how.shown}")
            elif self.columns.get(name) == column:
                shown.append(f"{name}={column}")
        return ", ".join(shown)


def _int(name: str) -> pl.Expr:
    return pl.col(name).cast(pl.String).str.strip_chars().cast(pl.Int64, strict=False)


def _paysim_time() -> pl.Expr:
    # Step hours after the origin, plus the row number in microseconds (at most 6.4 s for
    # the 6.3 M-row file): every row has its own instant, in file order, so no engine needs
    # a rule for ties and a one-hour window never holds both ends of an hour.
    return (
        pl.lit(PAYSIM_ORIGIN).dt.cast_time_unit("us")
        + pl.duration(hours=_int("step"))
        + pl.duration(microseconds=pl.col(ROW).cast(pl.Int64))
    )


def _ieee_time() -> pl.Expr:
    return pl.lit(IEEE_ORIGIN).dt.cast_time_unit("us") + pl.duration(seconds=_int("TransactionDT"))


def _ieee_terminal() -> pl.Expr:
    region = pl.col("addr1").cast(pl.String).str.strip_chars().str.replace(r"\.0$", "")
    return pl.format("{}-{}", pl.col("ProductCD").cast(pl.String), region.fill_null("na"))


SPARKOV = Layout(
    name="Sparkov",
    signature=frozenset({"trans_num", "trans_date_trans_time", "cc_num", "merchant", "amt"}),
    columns={
        "transaction_id": "trans_num",
        "timestamp": "trans_date_trans_time",
        "customer_id": "cc_num",
        "card_id": "cc_num",
        "terminal_id": "merchant",
        "merchant_id": "merchant",
        "amount": "amt",
        "product_category": "category",
        "lat": "merch_lat",
        "lon": "merch_long",
        "is_fraud": "is_fraud",
    },
    private=frozenset(
        {"first", "last", "gender", "street", "city", "state", "zip", "lat", "long", "job", "dob"}
    ),
)
"""Sparkov-generated "credit card transactions fraud detection" (fraudTrain.csv, fraudTest.csv)."""

PAYSIM = Layout(
    name="PaySim",
    signature=frozenset({"step", "nameOrig", "nameDest", "amount", "oldbalanceOrg"}),
    columns={
        "customer_id": "nameOrig",
        "terminal_id": "nameDest",
        "merchant_id": "nameDest",
        "amount": "amount",
        "product_category": "type",
        "is_fraud": "isFraud",
    },
    derived={
        "transaction_id": Derived((), lambda: pl.format("paysim-{}", pl.col(ROW)), "paysim-<row>"),
        "timestamp": Derived(("step",), _paysim_time, "2017-01-01 UTC + step hours + row µs"),
    },
)
"""PaySim "Synthetic Financial Datasets For Fraud Detection" (PS_2017…_log.csv)."""

IEEE_CIS = Layout(
    name="IEEE-CIS",
    signature=frozenset({"TransactionID", "TransactionDT", "TransactionAmt", "ProductCD", "card1"}),
    columns={
        "transaction_id": "TransactionID",
        "customer_id": "card1",
        "card_id": "card1",
        "merchant_id": "ProductCD",
        "amount": "TransactionAmt",
        "product_category": "ProductCD",
        "email": "P_emaildomain",
        "is_fraud": "isFraud",
    },
    derived={
        "timestamp": Derived(
            ("TransactionDT",), _ieee_time, "2017-12-01 UTC + TransactionDT seconds"
        ),
        "terminal_id": Derived(("ProductCD", "addr1"), _ieee_terminal, "ProductCD-addr1"),
    },
)
"""IEEE-CIS Fraud Detection (train_transaction.csv, test_transaction.csv)."""


def _tabformer_time() -> pl.Expr:
    # Year, Month, Day and an HH:MM Time in four columns: minutes, local time (taken as UTC).
    parts = [pl.col(c).cast(pl.String).str.strip_chars() for c in ("Year", "Month", "Day")]
    text = pl.format("{}-{}-{} {}", *parts, pl.col("Time").cast(pl.String).str.strip_chars())
    return text.str.to_datetime("%Y-%m-%d %H:%M", strict=False, time_unit="us")


def _online(column: str) -> Callable[[], pl.Expr]:
    """``ecommerce`` where ``column`` says ``Online Transaction``, else ``card_present``
    (swipe and chip)."""

    def channel() -> pl.Expr:
        online = pl.col(column).cast(pl.String).str.strip_chars() == "Online Transaction"
        return pl.when(online).then(pl.lit("ecommerce")).otherwise(pl.lit("card_present"))

    return channel


TABFORMER = Layout(
    name="IBM TabFormer",
    signature=frozenset(
        {"User", "Card", "Year", "Month", "Day", "Time", "Amount", "Use Chip", "Merchant Name"}
    ),
    columns={
        "customer_id": "User",
        "terminal_id": "Merchant Name",
        "merchant_id": "Merchant Name",
        "amount": "Amount",
        "mcc": "MCC",
        "is_fraud": "Is Fraud?",
    },
    derived={
        "transaction_id": Derived(
            (), lambda: pl.format("tabformer-{}", pl.col(ROW)), "tabformer-<row>"
        ),
        "timestamp": Derived(
            ("Time", "Year", "Month", "Day"), _tabformer_time, "Year-Month-Day Time (minutes)"
        ),
        "card_id": Derived(
            ("Card", "User"),
            lambda: pl.format("{}-{}", pl.col("User"), pl.col("Card")),
            "User-Card",
        ),
        "channel": Derived(("Use Chip",), _online("Use Chip"), "Use Chip (Online: ecommerce)"),
    },
)
"""IBM's synthetic credit card transactions (TabFormer: card_transaction.v1.csv,
credit_card_transactions-ibm_v2.csv)."""

FINANCIAL = Layout(
    name="Financial Transactions",
    signature=frozenset(
        {"id", "date", "client_id", "card_id", "amount", "use_chip", "merchant_id"}
    ),
    columns={
        "transaction_id": "id",
        "timestamp": "date",
        "customer_id": "client_id",
        "card_id": "card_id",
        "terminal_id": "merchant_id",
        "merchant_id": "merchant_id",
        "amount": "amount",
        "mcc": "mcc",
    },
    derived={
        "channel": Derived(("use_chip",), _online("use_chip"), "use_chip (Online: ecommerce)"),
    },
)
"""The "Financial Transactions Dataset" (transactions_data.csv; its fraud labels come apart,
as JSON, and are not read)."""

LAYOUTS = (SPARKOV, PAYSIM, IEEE_CIS, TABFORMER, FINANCIAL)


@dataclass(frozen=True)
class Match:
    layout: Layout
    missing: tuple[str, ...]
    """Signature columns the file lacks (empty: recognised)."""


def recognise(available: Sequence[str]) -> Match | None:
    """The layout whose signature the columns hold, or the one they mostly hold (more than
    half), else None."""
    have = set(available)
    best: Match | None = None
    for layout in LAYOUTS:
        present = layout.signature & have
        if len(present) <= _PARTLY * len(layout.signature):
            continue
        match = Match(layout, tuple(sorted(layout.signature - have)))
        if best is None or len(match.missing) < len(best.missing):
            best = match
    return best


_UNSCORABLE = {
    frozenset({"Time", "Amount", "Class", *(f"V{i}" for i in range(1, 29))}): (
        "the ULB credit-card dataset (creditcard.csv): its V1–V28 are anonymised components "
        "with no customer or terminal, which every history feature is keyed on, so it "
        "cannot be scored as a payment stream"
    ),
}
"""Public datasets whose columns lack what fraudstream needs, and why (named when refused)."""


def unscorable(available: Sequence[str]) -> str | None:
    """Why a well-known dataset the columns are cannot be read (None: not one of them)."""
    have = set(available)
    return next((why for cols, why in _UNSCORABLE.items() if cols <= have), None)
