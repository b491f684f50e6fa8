"""Transactions as columns of numpy arrays while they are being simulated.

Every step of the simulator works on whole columns (vectorised), never on one transaction at a
time: generating 1.75 million transactions row by row in Python would take minutes. Entities
are integer codes here (customer 17, device 4211, IP as a 32-bit number); they become strings
only once, when the final polars frame is built (see `frames`). ``-1`` means "none" in the
optional columns.

Random numbers come from one independent stream per simulation step (`rng`), so switching
an extension on or off never changes what the other steps draw.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import IntEnum

import numpy as np
from numpy.typing import NDArray

IntArray = NDArray[np.int64]
FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]

SECONDS_PER_DAY = 86_400
CARD_PRESENT, ECOMMERCE = 0, 1
CHANNELS = ("card_present", "ecommerce")


class Stream(IntEnum):
    """One random stream per simulation step (the second word of the seed)."""

    CUSTOMERS = 1
    TERMINALS = 2
    DAILY = 3
    COMPROMISED_TERMINALS = 4
    COMPROMISED_CUSTOMERS = 5
    IDENTITIES = 6
    ECOMMERCE = 7
    CARD_TESTING = 8
    ACCOUNT_TAKEOVER = 9
    IMPOSSIBLE_TRAVEL = 10
    BOT_BURSTS = 11
    LABELS = 12
    LOW_AND_SLOW_TAKEOVER = 13
    QUIET_SKIMMING = 14
    BUST_OUT = 15


def rng(seed: int, stream: Stream) -> np.random.Generator:
    """The generator of one step: same seed and step, same numbers, whatever else runs."""
    return np.random.default_rng([seed, int(stream)])


def none_like(n: int) -> IntArray:
    return np.full(n, -1, dtype=np.int64)


@dataclass
class TxArrays:
    """A set of transactions, column by column (all arrays have the same length)."""

    seconds: IntArray
    """Event time in whole seconds since the start of day 0 (the Handbook's TX_TIME_SECONDS)."""
    customer: IntArray
    terminal: IntArray
    """A physical terminal, or ``n_terminals + m`` for e-commerce merchant ``m``."""
    amount: FloatArray
    x: FloatArray
    y: FloatArray
    channel: NDArray[np.int8]
    card: IntArray
    device: IntArray
    ip: IntArray
    """IPv4 address as an integer; -1 for card-present."""
    email: IntArray
    """Index into the email table (customers first, then fraudsters' addresses)."""
    category: IntArray
    subcategory: IntArray
    is_fraud: BoolArray
    scenario: NDArray[np.int8]

    def __len__(self) -> int:
        return len(self.seconds)

    @classmethod
    def build(
        cls,
        *,
        seconds: IntArray,
        customer: IntArray,
        terminal: IntArray,
        amount: FloatArray,
        x: FloatArray,
        y: FloatArray,
        **optional: NDArray[np.generic],
    ) -> TxArrays:
        """Transactions from the required columns; the optional ones default to none/genuine."""
        n = len(seconds)
        columns: dict[str, NDArray[np.generic]] = {
            "channel": np.zeros(n, dtype=np.int8),
            "card": none_like(n),
            "device": none_like(n),
            "ip": none_like(n),
            "email": none_like(n),
            "category": none_like(n),
            "subcategory": none_like(n),
            "is_fraud": np.zeros(n, dtype=np.bool_),
            "scenario": np.zeros(n, dtype=np.int8),
        }
        for name, values in optional.items():
            if name not in columns:
                raise TypeError(f"unknown column {name!r}")
            columns[name] = np.asarray(values).astype(columns[name].dtype)
        return cls(
            seconds=seconds.astype(np.int64),
            customer=customer.astype(np.int64),
            terminal=terminal.astype(np.int64),
            amount=amount.astype(np.float64),
            x=x.astype(np.float64),
            y=y.astype(np.float64),
            **columns,  # type: ignore[arg-type]
        )

    def take(self, index: IntArray | BoolArray) -> TxArrays:
        """The rows at ``index`` (integer positions or a mask), as a new set."""
        return TxArrays(**{f.name: getattr(self, f.name)[index] for f in dataclasses.fields(self)})

    @classmethod
    def concat(cls, parts: list[TxArrays]) -> TxArrays:
        names = [f.name for f in dataclasses.fields(cls)]
        return cls(**{name: np.concatenate([getattr(p, name) for p in parts]) for name in names})
