"""The records that flow through fraudstream: `Transaction` in, `Decision` out, `Label` back.

Typed `msgspec` structs: decoding JSON into a `Transaction` validates it in ~1 µs (see
``benchmarks/bench_schema.py`` for the comparison with pydantic that chose msgspec). Every
validation failure becomes a `SchemaError` naming the field: ``amount: must be >= 0, got -3``.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, get_args

import msgspec

from fraudstream.errors import SchemaError

Id = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
"""Not blank either: `check_ids`."""
Text = Annotated[str, msgspec.Meta(max_length=256)]
AwareDatetime = Annotated[datetime, msgspec.Meta(tz=True)]
Currency = Annotated[str, msgspec.Meta(pattern="^[A-Z]{3}$")]
Channel = Literal["card_present", "ecommerce"]
CHANNELS: tuple[Channel, ...] = get_args(Channel)
Outcome = Literal["approve", "step_up", "review", "block"]
LabelSource = Literal["chargeback", "review", "import"]
OUTCOMES: tuple[Outcome, ...] = ("approve", "step_up", "review", "block")
"""Mildest first. ``step_up`` holds the payment for a one-time code the buyer must enter
(`fraudstream.challenges`); its final outcome, approve or block, follows as a second
decision of the same transaction with a ``challenge:…`` reason."""
GRID_SIZE = 100.0
"""The Handbook's grid is 100 × 100 (the simulator places customers and terminals on it): a
coordinate off it is a unit or encoding error, and its distances would overflow the features."""
GridCoordinate = Annotated[float, msgspec.Meta(ge=0, le=GRID_SIZE)]
TX_IDS = ("transaction_id", "customer_id", "terminal_id", "merchant_id", "card_id")
"""Never blank (`check_ids`), and text even when a file gives numbers (`id_text`)."""
AMOUNT_CEILING = 1e12
"""No payment is larger: above it an amount is a unit or encoding error (and its cents would
leave float64's exact integers). The configurable, lower bound is ``Settings.max_amount``."""


class Transaction(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One payment to score. ``timestamp`` is event time (when it happened), timezone-aware."""

    transaction_id: Id
    timestamp: AwareDatetime
    customer_id: Id
    terminal_id: Id
    merchant_id: Id
    amount: float
    currency: Currency
    channel: Channel
    card_id: Id | None = None
    mcc: Annotated[str, msgspec.Meta(pattern="^[0-9]{4}$")] | None = None
    product_category: Text | None = None
    product_subcategory: Text | None = None
    ip: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    device_id: Text | None = None
    email: Text | None = None
    lat: Annotated[float, msgspec.Meta(ge=-90, le=90)] | None = None
    lon: Annotated[float, msgspec.Meta(ge=-180, le=180)] | None = None
    x: GridCoordinate | None = None
    """Handbook grid coordinates (0–100), when there is no lat/lon."""
    y: GridCoordinate | None = None

    def __post_init__(self) -> None:
        check_ids(self, TX_IDS)
        check_amount(self.amount)
        check_time("timestamp", self.timestamp)
        if self.ip is not None:
            check_ip(self.ip)


def check_ids(record: msgspec.Struct, names: tuple[str, ...]) -> None:
    """Refuse an id that is only whitespace (a blank cell, a padded export): every such
    payment would be one customer, terminal or transaction; the file readers refuse it too.

    Raises:
        ValueError: ``customer_id: …`` (msgspec turns it into a validation error naming it).
    """
    for name in names:
        value = getattr(record, name)
        if value is not None and value.isspace():
            raise ValueError(f"{name}: must not be blank, got {value!r}")


EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
"""No event is older: before the Unix epoch a time is an encoding error (a zero date, year 1),
and event times are kept as microseconds since the epoch."""


def check_time(name: str, value: datetime) -> None:
    """Refuse an event time before `EARLIEST` (the future is judged by the feature engine,
    against its clock and skew).

    Raises:
        ValueError: ``timestamp: …`` (msgspec turns it into a validation error naming it).
    """
    if value.tzinfo is not None and value < EARLIEST:
        raise ValueError(
            f"{name}: must not be before {EARLIEST.isoformat()}, got {value.isoformat()}"
        )


def check_amount(amount: float) -> None:
    """Zero is a valid amount (card verification, and what card testing looks like); a
    negative one (refund, reversal) is not modelled yet.

    Raises:
        ValueError: ``amount: …`` (msgspec turns it into a validation error naming the field).
    """
    if not amount >= 0:
        raise ValueError(f"amount: must be >= 0, got {amount:g}")
    if not math.isfinite(amount):
        raise ValueError(f"amount: must be finite, got {amount:g}")
    if amount > AMOUNT_CEILING:
        raise ValueError(f"amount: must be at most {AMOUNT_CEILING:g}, got {amount:g}")


def check_ip(ip: str) -> None:
    """An address the IP lists and features can use: IPv4 or IPv6, no range, no port.

    Raises:
        ValueError: ``ip: …`` naming the value.
    """
    try:
        ipaddress.ip_address(ip)
    except ValueError:
        raise ValueError(f"ip: not an IPv4 or IPv6 address: {ip[:64]!r}") from None


class Decision(msgspec.Struct, frozen=True, kw_only=True):
    """What fraudstream decided about one transaction, and why."""

    transaction_id: str
    score: Annotated[int, msgspec.Meta(ge=0, le=1000)]
    outcome: Outcome
    reasons: list[str]
    model_version: str
    rules_version: str
    latency_ms: float
    """From the moment the transaction entered fraudstream (stream enqueue or HTTP request)
    to the decision."""
    decided_at: AwareDatetime
    shadow: list[str] = []
    """What shadow rules (``rule:<id>``) and shadow models said; logged, never deciding."""
    stages: dict[str, float] = {}
    """Where ``latency_ms`` went, in ms: ``queue`` (arrival to the start of its batch's
    scoring), then the batch's ``features`` (read, compute, write confirmed), ``model``
    (scores and reason codes) and ``rules``; the rest is the commit and the hand-off."""


class Explanation(msgspec.Struct, frozen=True, kw_only=True):
    """What the model saw behind a flagged decision (step-up, review, block): the value of
    each of its features (``None`` for a missing one) and each feature's contribution to
    its log-odds. Streamed beside the decision (not part of it: a merchant's answer stays
    small) and stored by the sink in the decision's row."""

    features: dict[str, float | None]
    contributions: dict[str, float]


class Label(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Ground truth arriving later: a chargeback, or an analyst's verdict from review."""

    transaction_id: Id
    is_fraud: bool
    reported_at: AwareDatetime
    source: LabelSource = "chargeback"
    customer_id: Id | None = None
    terminal_id: Id | None = None
    tx_timestamp: AwareDatetime | None = None
    """Event time of the labelled transaction, so time-bucketed label features need no lookup."""
    fraud_scenario: int | None = None

    def __post_init__(self) -> None:
        check_ids(self, ("transaction_id", "customer_id", "terminal_id"))
        check_time("reported_at", self.reported_at)
        if self.tx_timestamp is not None:
            check_time("tx_timestamp", self.tx_timestamp)


# --- decoding with field-naming errors ------------------------------------------------------

_AT_PATH = re.compile(r"^(?P<problem>.*) - at `\$\.(?P<field>[^`\[]+)[^`]*`$")
_MISSING = re.compile(r"^Object missing required field `(?P<field>[^`]+)`$")
_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<field>[^`]+)`$")
_OWN = re.compile(r"^(?P<field>[a-z_]+): (?P<problem>.+)$")


def schema_error(exc: msgspec.MsgspecError) -> SchemaError:
    """Turn a msgspec error into a `SchemaError` that names the field and the problem."""
    message = str(exc)
    if isinstance(exc, msgspec.DecodeError) and not isinstance(exc, msgspec.ValidationError):
        return SchemaError("", f"not valid JSON: {message}")
    if m := _AT_PATH.match(message):
        problem = m["problem"]
        choices = CHOICES.get(m["field"]) if problem.startswith("Invalid enum value") else None
        if choices:  # a file's "pos" or "online": say what the field takes
            problem += f" (one of {', '.join(choices)})"
        return SchemaError(m["field"], problem[:1].lower() + problem[1:])
    if m := _MISSING.match(message):
        return SchemaError(m["field"], "required field is missing")
    if m := _UNKNOWN.match(message):
        return SchemaError(m["field"], "unknown field")
    if m := _OWN.match(message):
        return SchemaError(m["field"], m["problem"])
    return SchemaError("", message)


CHOICES: dict[str, tuple[str, ...]] = {
    "channel": CHANNELS,
    "source": get_args(LabelSource),
}
"""The values a field of fixed choices takes, named when a value is not one of them."""


_tx_decoder = msgspec.json.Decoder(Transaction)
_encoder = msgspec.json.Encoder()


def decode_transaction(data: bytes | str) -> Transaction:
    """Decode and validate one JSON transaction.

    Raises:
        SchemaError: naming the field and the problem.
    """
    try:
        return _tx_decoder.decode(data)
    except msgspec.MsgspecError as exc:
        raise schema_error(exc) from None


def encode(record: msgspec.Struct) -> bytes:
    """JSON bytes of any fraudstream record (the stream and HTTP wire format)."""
    return _encoder.encode(record)


def decode_decision(data: bytes | str) -> Decision:
    return msgspec.json.decode(data, type=Decision)


def decode_label(data: bytes | str) -> Label:
    try:
        return msgspec.json.decode(data, type=Label)
    except msgspec.MsgspecError as exc:
        raise schema_error(exc) from None


# --- importing records (Handbook column names, CSV strings, naive datetimes) ----------------

HANDBOOK_COLUMNS: dict[str, str] = {
    "TRANSACTION_ID": "transaction_id",
    "TX_DATETIME": "timestamp",
    "CUSTOMER_ID": "customer_id",
    "TERMINAL_ID": "terminal_id",
    "TX_AMOUNT": "amount",
}
"""The Fraud Detection Handbook's column names and ours. ``TX_FRAUD`` becomes a `Label`;
``TX_TIME_SECONDS``/``TX_TIME_DAYS``/``TX_FRAUD_SCENARIO`` are derived or ground truth."""
HANDBOOK_IGNORED = frozenset({"TX_TIME_SECONDS", "TX_TIME_DAYS", "TX_FRAUD", "TX_FRAUD_SCENARIO"})
EXACT_INTEGERS = 2.0**53
"""Past it a float is not every integer: an id written as ``12345678901234567890.0`` would
read back as another number."""


def normalize_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """Map a Handbook-style or loosely typed row onto our field names and types.

    Handbook rows have integer ids, naive datetimes and no merchant, currency or channel:
    ids become strings (`id_text`), naive times are taken as UTC, the terminal doubles as the
    merchant, and the currency/channel default to EUR / card_present. A null value (an empty
    cell) is an absent one: the default applies.

    Raises:
        SchemaError: a number id that has no exact text, or a timestamp that does not parse.
    """
    out: dict[str, Any] = {}
    for key, value in record.items():
        if value is None or key in HANDBOOK_IGNORED or key.startswith("Unnamed"):
            continue
        out[HANDBOOK_COLUMNS.get(key, key)] = value
    for key in TX_IDS:
        if key in out:
            out[key] = id_text(key, out[key])
    stamp = out.get("timestamp")
    if isinstance(stamp, str):
        try:
            stamp = datetime.fromisoformat(stamp)
        except ValueError:
            raise SchemaError("timestamp", f"not an ISO 8601 datetime: {stamp!r}") from None
    if isinstance(stamp, datetime) and stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    if stamp is not None:
        out["timestamp"] = stamp
    out.setdefault("merchant_id", out.get("terminal_id"))
    out.setdefault("currency", "EUR")
    out.setdefault("channel", "card_present")
    return {k: v for k, v in out.items() if v is not None}


def id_text(name: str, value: Any) -> Any:
    """A number id as text that keeps two ids two (truncating made ``1.5`` and ``1.7`` one
    id, and the second payment a duplicate): an integer as its digits, an integral float too
    (``42.0`` is ``"42"``: a column of float ids is an integer one that had a gap), any other
    number as its shortest text (``1.5`` stays ``"1.5"``, as the history reader reads it).
    Anything else is left to the schema to judge.

    Raises:
        SchemaError: not finite, or an integer too large for a float to hold exactly.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        return value
    if isinstance(value, int):
        return str(value)
    if not math.isfinite(value):
        raise SchemaError(name, f"must be text or a finite number, got {value!r}")
    if not value.is_integer():
        return repr(value)
    if abs(value) > EXACT_INTEGERS:
        raise SchemaError(name, f"a number this large is not exact, give it as text: {value!r}")
    return str(int(value))


def transaction_from_record(record: Mapping[str, Any]) -> Transaction:
    """Validate one imported row (ours or the Handbook's column names).

    Raises:
        SchemaError: naming the field and the problem.
    """
    try:
        return msgspec.convert(normalize_record(record), Transaction, strict=False)
    except msgspec.MsgspecError as exc:
        raise schema_error(exc) from None
