"""Static customer profiles: what the bank knows of a customer before any transaction.

The reference pipelines split features into *static* (the customer's profile), *dynamic*
(windows over history) and *derived*; these are the static ones. A profile is one fixed
29-byte record per customer at ``{ns}:{c:ID}:p``, with the hash tag of the customer's state,
so the online engine reads it in the batch's one ``MGET``. `load_profiles` writes them
(``fraudstream features load-profiles``); the backfill takes the same frame, so both paths
see the same profile. A profile is static: reloading replaces it, nothing expires it.

Columns of a profile frame, all but ``customer_id`` optional:

- ``segment``: the customer's segment, an integer code >= 0 (the simulator's: 0 everyday,
  1 standard, 2 high spender, by usual amount) or a label (``"gold"``, ``"SME"``): a bank's
  file names its segments. A label is coded by a hash of its text (`segment_codes`), so it
  gets the same code in every file, online and in the backfill, whatever other labels the
  file holds: a model trained on one profile file scores right with the next;
- ``home_lat`` / ``home_lon`` (degrees), else ``x`` / ``y`` (the Handbook's grid): the
  declared home;
- ``preferred_card``, else the first of ``card_ids`` (a list in Parquet; in a CSV, ids
  separated by ``;``, ``,``, ``|`` or spaces): the card the customer usually pays with.

A transaction of a customer without a profile (or a profile without the field) gets NaN.
A bad value is refused naming its column and its row (data rows counted from 1).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl
from numpy.typing import NDArray

from fraudstream.columns import FLOATS
from fraudstream.errors import SchemaError
from fraudstream.features.layout import GRID, LATLON
from fraudstream.features.route import wire_for
from fraudstream.features.seen import value_hashes
from fraudstream.features.wire import Client, FeatureStoreError, first_error

PROFILE_VERSION = 1
PROFILE = np.dtype(
    [
        ("version", "<u2"),
        ("segment", "<i4"),
        ("home_sys", "u1"),
        ("home_a", "<f8"),
        ("home_b", "<f8"),
        ("card", "<u8"),
    ]
)
"""One profile: ``segment`` -1 = none, ``home_sys`` 0 = none, ``card`` 0 = none (the 64-bit
hash of the preferred card's id, `seen.value_hashes`)."""
NO_SEGMENT = -1


def profile_key(namespace: str, customer_id: str) -> str:
    return f"{namespace}:{{c:{customer_id}}}:p"


def empty_profiles(n: int) -> np.ndarray:
    out = np.zeros(n, dtype=PROFILE)
    out["version"] = PROFILE_VERSION
    out["segment"] = NO_SEGMENT
    return out


def profile_records(frame: pl.DataFrame) -> tuple[list[str], np.ndarray]:
    """Customer ids and their records, validated.

    Raises:
        SchemaError: naming the column and the first row at fault (missing ``customer_id``,
            a missing, blank or repeated id, a negative or fractional segment code, a
            half-given home, a coordinate that is not a number or is out of range).
    """
    if "customer_id" not in frame.columns:
        raise SchemaError("customer_id", "required in a profile file")
    ids = frame["customer_id"].cast(pl.String).str.strip_chars()
    missing = ids.is_null() | (ids == "")
    if missing.any():
        raise SchemaError("customer_id", f"missing {_rows(missing)}")
    repeated = ids.is_duplicated()
    if repeated.any():
        dup = ids.filter(repeated)[0]
        raise SchemaError("customer_id", f"{dup!r} repeated ({_rows(ids == dup, 2)})")
    out = empty_profiles(len(frame))
    if "segment" in frame.columns:
        out["segment"] = segment_codes(frame["segment"])
    home = _home(frame)
    if home is not None:
        sys_code, a, b = home
        located = ~(np.isnan(a) | np.isnan(b))
        out["home_sys"] = np.where(located, sys_code, 0)
        out["home_a"] = np.where(located, a, 0.0)
        out["home_b"] = np.where(located, b, 0.0)
    cards = _preferred_cards(frame)
    if cards is not None:
        has = cards.is_not_null().to_numpy()
        hashes = value_hashes(cards.fill_null("").to_list())
        out["card"] = np.where(has, hashes, np.uint64(0))
    return ids.to_list(), out


SEGMENT_LABEL_BITS = 30
"""A label's code is this many bits of its text's hash, plus ``1 << SEGMENT_LABEL_BITS``:
above every integer code accepted, within the record's int32."""


def segment_codes(seg: pl.Series) -> NDArray[np.int32]:
    """Per profile, its segment's code (`NO_SEGMENT` where empty): integer codes as given
    (also as digits in a text column), labels by `value_hashes` of their text (trimmed; case
    kept: "Gold" and "gold" may be two segments of a bank's own).

    Raises:
        SchemaError: a negative or fractional code, or a type that is neither.
    """
    if seg.dtype == pl.String:
        labels = seg.str.strip_chars().replace("", None)
        digits = labels.str.contains(r"^\d{1,9}$").fill_null(False)
        names = labels.filter(~digits).drop_nulls().unique().to_list()
        top = np.uint64(64 - SEGMENT_LABEL_BITS)
        hashed = (value_hashes(names) >> top).astype(np.int64) + (1 << SEGMENT_LABEL_BITS)
        codes = dict(zip(names, hashed.tolist(), strict=True))
        coded = labels.replace_strict(codes, default=NO_SEGMENT, return_dtype=pl.Int64)
        # "2" in a text column is code 2, as in a numeric one
        coded = pl.select(
            pl.when(digits).then(labels.cast(pl.Int64, strict=False)).otherwise(coded)
        ).to_series()
        return coded.to_numpy().astype(np.int32)
    if seg.dtype.is_float():
        fractional = seg.is_not_null() & (seg.is_nan() | (seg.round(0) != seg))
        if fractional.any():
            bad = seg.filter(fractional)[0]
            raise SchemaError(
                "segment", f"must be an integer code or a label, got {bad} {_rows(fractional)}"
            )
        seg = seg.cast(pl.Int64)
    elif not seg.dtype.is_integer():
        raise SchemaError("segment", f"must be an integer code or a label, got {seg.dtype}")
    negative = seg.fill_null(0) < 0
    if negative.any():
        raise SchemaError("segment", f"must be >= 0 {_rows(negative)}")
    if (seg.fill_null(0) >= 1 << SEGMENT_LABEL_BITS).any():
        raise SchemaError(
            "segment",
            f"codes must be below {1 << SEGMENT_LABEL_BITS:,} "
            f"{_rows(seg.fill_null(0) >= 1 << SEGMENT_LABEL_BITS)}",
        )
    return seg.fill_null(NO_SEGMENT).to_numpy().astype(np.int32)


def _rows(mask: pl.Series, show: int = 1) -> str:
    """Where ``mask`` holds: ``in row 3``, ``in rows 3, 7 (and 2 more)``."""
    at = [i + 1 for i in mask.arg_true().head(show).to_list()]
    more = int(mask.sum()) - len(at)
    where = f"in row {at[0]}" if len(at) == 1 else "in rows " + ", ".join(map(str, at))
    return where + (f" (and {more:,} more)" if more else "")


def _home(frame: pl.DataFrame) -> tuple[int, NDArray[np.float64], NDArray[np.float64]] | None:
    for (ca, cb), sys_code, bounds in (
        (("home_lat", "home_lon"), LATLON, (FLOATS["lat"], FLOATS["lon"])),
        (("x", "y"), GRID, (FLOATS["x"], FLOATS["y"])),
    ):
        present = [c for c in (ca, cb) if c in frame.columns]
        if not present:
            continue
        if len(present) == 1:
            missing = cb if present[0] == ca else ca
            raise SchemaError(missing, f"a home needs both {ca} and {cb}")
        a, b = (
            _coordinate(frame[c], c, lo, hi) for c, (lo, hi) in zip((ca, cb), bounds, strict=True)
        )
        return sys_code, a, b
    return None


def _coordinate(column: pl.Series, name: str, lo: float, hi: float) -> NDArray[np.float64]:
    """The column as floats, NaN where empty.

    Raises:
        SchemaError: a value that is not a number, or is outside ``lo``..``hi``.
    """
    values = column.cast(pl.Float64, strict=False)
    text = column.cast(pl.String).str.strip_chars()
    unreadable = values.is_null() & text.is_not_null() & (text != "")
    if unreadable.any():
        bad = column.filter(unreadable)[0]
        raise SchemaError(name, f"not a number: {bad!r} {_rows(unreadable)}")
    out = values.fill_null(np.nan).to_numpy()
    outside = pl.Series(~np.isnan(out) & ((out < lo) | (out > hi) | ~np.isfinite(out)))
    if outside.any():
        bad_value = out[outside.arg_true()[0]]
        raise SchemaError(
            name, f"must be within {lo:g}..{hi:g}, got {bad_value:g} {_rows(outside)}"
        )
    return out


def _preferred_cards(frame: pl.DataFrame) -> pl.Series | None:
    if "preferred_card" in frame.columns:
        return frame["preferred_card"].cast(pl.String).str.strip_chars().replace("", None)
    if "card_ids" not in frame.columns:
        return None
    cards = frame["card_ids"]
    if cards.dtype == pl.String:  # a CSV cannot hold a list: ids separated by ; , | or spaces
        return cards.str.strip_chars().str.extract(r"^([^;,|\s]+)", 1)
    if isinstance(cards.dtype, pl.List):
        return cards.list.first().cast(pl.String)
    return cards.cast(pl.String)


def decode_profiles(raws: Sequence[bytes | None]) -> tuple[np.ndarray, NDArray[np.bool_]]:
    """Records of stored profiles, and which were unreadable (another size: corrupt, or
    written by another release; reload the profiles). Those, like absent ones, read as
    "no profile"."""
    out = empty_profiles(len(raws))
    bad = np.zeros(len(raws), dtype=bool)
    for i, raw in enumerate(raws):
        if raw is None:
            continue
        if len(raw) != PROFILE.itemsize:
            bad[i] = True
            continue
        out[i] = np.frombuffer(raw, dtype=PROFILE)[0]
    return out, bad


def load_profiles(
    client: Client,
    frame: pl.DataFrame,
    *,
    namespace: str = "fs",
    chunk: int = 5000,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Write (replace) the profiles of ``frame``; returns how many were written.

    Raises:
        SchemaError: the frame is invalid (nothing is written then).
        FeatureStoreError: Valkey refused a write.
    """
    ids, records = profile_records(frame)
    wire = wire_for(client)
    size = PROFILE.itemsize
    for lo in range(0, len(ids), chunk):
        packed = records[lo : lo + chunk].tobytes()
        commands = [
            ("SET", profile_key(namespace, cid), packed[j * size : (j + 1) * size])
            for j, cid in enumerate(ids[lo : lo + chunk])
        ]
        if (err := first_error(wire.run(commands))) is not None:
            raise FeatureStoreError(f"writing profiles failed: {err}")
        if progress is not None:
            progress(len(commands))
    return len(ids)


@dataclass
class StaticInputs:
    """Per transaction: its customer's profile and its own card hash (0 = none)."""

    segment: NDArray[np.int64]
    home_sys: NDArray[np.uint8]
    home_a: NDArray[np.float64]
    home_b: NDArray[np.float64]
    preferred_card: NDArray[np.uint64]
    card: NDArray[np.uint64]

    @classmethod
    def of(cls, records: np.ndarray, card: NDArray[np.uint64]) -> StaticInputs:
        """``records``: one profile per transaction (gathered by its customer)."""
        return cls(
            segment=records["segment"].astype(np.int64),
            home_sys=records["home_sys"].astype(np.uint8),
            home_a=records["home_a"].astype(np.float64),
            home_b=records["home_b"].astype(np.float64),
            preferred_card=records["card"].astype(np.uint64),
            card=card,
        )

    @classmethod
    def none(cls, n: int) -> StaticInputs:
        return cls.of(empty_profiles(n), np.zeros(n, dtype=np.uint64))
