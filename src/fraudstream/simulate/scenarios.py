"""Fraud scenario numbers: the ground-truth tag every simulated transaction carries.

The numbers are part of the data contract (``fraud_scenario`` in ``transactions.parquet``,
``TX_FRAUD_SCENARIO`` in the Handbook-format file, ``Label.fraud_scenario``), so they never
change meaning: 0 is genuine, 1–3 are the Fraud Detection Handbook's scenarios (so our files
compare one to one with its simulated data), 4 and above are fraudstream's extensions, which
only the ``full`` profile generates. New scenarios take the next number.
"""

from __future__ import annotations

from enum import IntEnum


class Scenario(IntEnum):
    """Why a transaction is fraudulent (or `GENUINE`)."""

    GENUINE = 0
    HIGH_AMOUNT = 1
    """Handbook 1: any amount above `HIGH_AMOUNT_THRESHOLD` is fraud (a sanity baseline)."""
    COMPROMISED_TERMINAL = 2
    """Handbook 2: a skimmed terminal; all its transactions for 28 days are fraud."""
    COMPROMISED_CUSTOMER = 3
    """Handbook 3: leaked credentials; for 14 days a third of the customer's transactions
    are fraud with the amount multiplied by 5."""
    CARD_TESTING = 4
    """A stolen card probed with a burst of tiny e-commerce payments on one merchant."""
    ACCOUNT_TAKEOVER = 5
    """An e-commerce account used from a new device and IP, in an unusual category, for a
    high amount."""
    IMPOSSIBLE_TRAVEL = 6
    """A cloned card used card-present far away, minutes after a genuine use."""
    BOT_BURST = 7
    """One IP paying for many different customers within minutes."""
    LOW_AND_SLOW_TAKEOVER = 8
    """A taken-over card used for a few days, a few times a day, at terminals its customer
    never uses, for the customer's usual amounts at the usual hours."""
    QUIET_SKIMMING = 9
    """A compromised terminal: for 14 days a share of its payments (not all, unlike
    `COMPROMISED_TERMINAL`) are fraudulent, for a slightly higher amount."""
    BUST_OUT = 10
    """A customer's spending ramps up day after day to just under `HIGH_AMOUNT_THRESHOLD`."""


HIGH_AMOUNT_THRESHOLD = 220.0
TERMINAL_COMPROMISE_DAYS = 28
CUSTOMER_COMPROMISE_DAYS = 14
COMPROMISED_CUSTOMER_AMOUNT_FACTOR = 5.0

HANDBOOK_FIGURES: dict[str, float] = {
    "transactions": 1_754_155,
    "frauds": 14_681,
    "fraud_rate": 14_681 / 1_754_155,
}
"""What the Handbook reports for its default simulation (5,000 customers, 10,000 terminals,
183 days from 2018-04-01, r = 5), printed beside ours to show the design is reproduced."""


def scenario_name(value: int) -> str:
    """``"compromised_terminal"`` for 2: the lower-case name used in summaries and files."""
    return Scenario(value).name.lower()
