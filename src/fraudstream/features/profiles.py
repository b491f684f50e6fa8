"""Static customer profiles: what the bank knows of a customer before any transaction.

The reference pipelines split features into *static* (the customer's profile), *dynamic*
(windows over history) and *derived*; these are the static ones. A profile is one fixed
29-byte record per customer at ``{ns}:{c:ID}:p``, with the hash tag of the customer's state,
so the online engine reads it in the batch's one ``MGET``. `load_profiles` writes them
(``fraudstream features load-profiles``); the backfill takes the same frame, so both paths
see the same profile. A profile is static: reloading replaces it, nothing expires it.

Columns of a profile frame, all but ``customer_id`` optional:

- ``segment``: the customer's segment as an integer code >= 0 (the simulator's: 0 everyday,
  1 standard, 2 high spender, by usual amount);
- ``home_lat`` / ``home_lon`` (degrees), else ``x`` / ``y`` (the Handbook's grid): the
  declared home;
- ``preferred_card``, else the first of ``card_ids``: the card the customer usually pays with.

A transaction of a customer without a profile (or a profile without the field) gets NaN.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl
from numpy.typing import NDArray

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
        SchemaError: naming the column (missing ``customer_id``, a null or repeated id, a
            negative or non-integer segment, a half-given home, coordinates out of range).
    """
    if "customer_id" not in frame.columns:
        raise SchemaError("customer_id", "required in a profile file")
    ids = frame["customer_id"].cast(pl.String)
    if ids.null_count():
        raise SchemaError("customer_id", f"{ids.null_count()} profiles have no customer_id")
    if ids.n_unique() != len(ids):
        dup = ids.filter(ids.is_duplicated())[0]
        raise SchemaError("customer_id", f"repeated in the profile file: {dup!r}")
    out = empty_profiles(len(frame))
    if "segment" in frame.columns:
        seg = frame["segment"]
        if not seg.dtype.is_integer():
            raise SchemaError("segment", f"must be an integer code, got {seg.dtype}")
        if (seg.fill_null(0) < 0).any():
            raise SchemaError("segment", "must be >= 0")
        out["segment"] = seg.fill_null(NO_SEGMENT).to_numpy()
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


def _home(frame: pl.DataFrame) -> tuple[int, NDArray[np.float64], NDArray[np.float64]] | None:
    for (ca, cb), sys_code, bounds in (
        (("home_lat", "home_lon"), LATLON, (90.0, 180.0)),
        (("x", "y"), GRID, (None, None)),
    ):
        present = [c for c in (ca, cb) if c in frame.columns]
        if not present:
            continue
        if len(present) == 1:
            missing = cb if present[0] == ca else ca
            raise SchemaError(missing, f"a home needs both {ca} and {cb}")
        a = frame[ca].cast(pl.Float64).fill_null(np.nan).to_numpy()
        b = frame[cb].cast(pl.Float64).fill_null(np.nan).to_numpy()
        for col, values, bound in ((ca, a, bounds[0]), (cb, b, bounds[1])):
            if bound is not None and (np.abs(values[~np.isnan(values)]) > bound).any():
                raise SchemaError(col, f"must be within ±{bound:g}")
        return sys_code, a, b
    return None


def _preferred_cards(frame: pl.DataFrame) -> pl.Series | None:
    if "preferred_card" in frame.columns:
        return frame["preferred_card"].cast(pl.String)
    if "card_ids" in frame.columns:
        return frame["card_ids"].list.first().cast(pl.String)
    return None


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
