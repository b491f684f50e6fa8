"""The Handbook's transactions and its three fraud scenarios, vectorised with numpy.

Le Borgne et al., *Reproducible Machine Learning for Credit Card Fraud Detection*, section
3.2, describes the generator; this is our own implementation of that description, not its code.
Every customer, every day: a Poisson number of transactions, times of day around noon, amounts
around the customer's mean, terminals among those within reach. Then three rules turn some of
them into fraud, each later rule overriding the tag of the earlier ones:

1. any amount above 220 is fraud;
2. each day two random terminals are compromised: all their transactions in the next 28 days
   are fraud;
3. each day three random customers are compromised: over the next 14 days a third of their
   transactions, chosen at random, are fraud and their amount is multiplied by 5.

One loop iteration per simulated day (183), never one per transaction.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from fraudstream.simulate.arrays import (
    SECONDS_PER_DAY,
    BoolArray,
    FloatArray,
    IntArray,
    Stream,
    TxArrays,
    rng,
)
from fraudstream.simulate.profiles import Customers, Terminals, pick_available
from fraudstream.simulate.scenarios import (
    COMPROMISED_CUSTOMER_AMOUNT_FACTOR,
    CUSTOMER_COMPROMISE_DAYS,
    HIGH_AMOUNT_THRESHOLD,
    TERMINAL_COMPROMISE_DAYS,
    Scenario,
)

TIME_OF_DAY_MEAN = SECONDS_PER_DAY / 2
TIME_OF_DAY_STD = 20_000.0
TERMINALS_COMPROMISED_PER_DAY = 2
CUSTOMERS_COMPROMISED_PER_DAY = 3


def generate_transactions(
    customers: Customers,
    terminals: Terminals,
    n_days: int,
    seed: int,
    on_day: Callable[[int], None] | None = None,
) -> TxArrays:
    """Genuine card-present transactions of every customer, day by day (unsorted)."""
    gen = rng(seed, Stream.DAILY)
    reach = customers.nb_terminals > 0
    ids = np.arange(len(customers), dtype=np.int64)
    seconds: list[IntArray] = []
    who: list[IntArray] = []
    where: list[IntArray] = []
    amounts: list[FloatArray] = []
    for day in range(n_days):
        counts = np.where(reach, gen.poisson(customers.mean_nb_tx_per_day), 0)
        customer = np.repeat(ids, counts)
        time_of_day = np.floor(gen.normal(TIME_OF_DAY_MEAN, TIME_OF_DAY_STD, len(customer)))
        amount = customer_amounts(gen, customers, customer)
        terminal = pick_available(customers, customer, gen.random(len(customer)))
        keep = (time_of_day >= 0) & (time_of_day < SECONDS_PER_DAY)
        seconds.append(day * SECONDS_PER_DAY + time_of_day[keep].astype(np.int64))
        who.append(customer[keep])
        where.append(terminal[keep])
        amounts.append(amount[keep])
        if on_day is not None:
            on_day(day + 1)
    terminal = np.concatenate(where)
    return TxArrays.build(
        seconds=np.concatenate(seconds),
        customer=np.concatenate(who),
        terminal=terminal,
        amount=np.concatenate(amounts),
        x=terminals.x[terminal],
        y=terminals.y[terminal],
    )


def customer_amounts(
    gen: np.random.Generator, customers: Customers, customer: IntArray
) -> FloatArray:
    """Normal around the customer's mean; a negative draw is redrawn as U(0, 2 × mean)."""
    mean = customers.mean_amount[customer]
    amount = gen.normal(mean, customers.std_amount[customer])
    negative = amount < 0
    amount[negative] = gen.uniform(0, 2 * mean[negative])
    return np.maximum(np.round(amount, 2), 0.01)


def apply_handbook_frauds(
    tx: TxArrays, n_customers: int, n_terminals: int, n_days: int, seed: int
) -> None:
    """Tag (in place) the frauds of the Handbook's three scenarios, in order."""
    high = tx.amount > HIGH_AMOUNT_THRESHOLD
    _tag(tx, high, Scenario.HIGH_AMOUNT)
    _tag(
        tx, compromised_terminal_mask(tx, n_terminals, n_days, seed), Scenario.COMPROMISED_TERMINAL
    )
    picked = compromised_customer_picks(tx, n_customers, n_days, seed)
    factor = np.ones(len(tx))
    np.multiply.at(factor, picked, COMPROMISED_CUSTOMER_AMOUNT_FACTOR)  # compounds repeats
    tx.amount[:] = np.round(tx.amount * factor, 2)
    tx.is_fraud[picked] = True
    tx.scenario[picked] = Scenario.COMPROMISED_CUSTOMER


def _tag(tx: TxArrays, mask: BoolArray, scenario: Scenario) -> None:
    tx.is_fraud |= mask
    tx.scenario[mask] = scenario


def compromised_terminal_windows(n_terminals: int, n_days: int, seed: int) -> BoolArray:
    """``windows[t, d]`` is True when terminal ``t`` is compromised on day ``d``.

    A difference array (+1 on the day of compromise, -1 28 days later) summed along the days:
    one pass over a (terminals × days) matrix instead of a filter per compromise.
    """
    gen = rng(seed, Stream.COMPROMISED_TERMINALS)
    per_day = min(TERMINALS_COMPROMISED_PER_DAY, n_terminals)
    delta = np.zeros((n_terminals, n_days + 1), dtype=np.int32)
    for day in range(n_days):
        chosen = gen.choice(n_terminals, per_day, replace=False)
        delta[chosen, day] += 1
        delta[chosen, min(day + TERMINAL_COMPROMISE_DAYS, n_days)] -= 1
    return np.cumsum(delta, axis=1)[:, :n_days] > 0


def compromised_terminal_mask(tx: TxArrays, n_terminals: int, n_days: int, seed: int) -> BoolArray:
    """Transactions made on a terminal during one of its compromised windows."""
    windows = compromised_terminal_windows(n_terminals, n_days, seed)
    day = np.minimum(tx.seconds // SECONDS_PER_DAY, n_days - 1)
    physical = tx.terminal < n_terminals
    mask = np.zeros(len(tx), dtype=np.bool_)
    mask[physical] = windows[tx.terminal[physical], day[physical]]
    return mask


def compromised_customer_picks(tx: TxArrays, n_customers: int, n_days: int, seed: int) -> IntArray:
    """Positions of the scenario-3 frauds, one entry per (compromise, transaction) pick.

    Transactions are sorted by (customer, time) once, so each compromised customer's 14-day
    window is a slice found by binary search. A transaction picked by two overlapping
    compromises appears twice (its amount is multiplied twice), as in the Handbook.
    """
    gen = rng(seed, Stream.COMPROMISED_CUSTOMERS)
    order = np.lexsort((tx.seconds, tx.customer))
    sorted_seconds = tx.seconds[order]
    starts = np.searchsorted(tx.customer[order], np.arange(n_customers + 1))
    per_day = min(CUSTOMERS_COMPROMISED_PER_DAY, n_customers)
    picks: list[IntArray] = []
    for day in range(n_days):
        window = np.array([day, day + CUSTOMER_COMPROMISE_DAYS]) * SECONDS_PER_DAY
        candidates = []
        for customer in gen.choice(n_customers, per_day, replace=False):
            lo, hi = starts[customer], starts[customer + 1]
            a, b = lo + np.searchsorted(sorted_seconds[lo:hi], window)
            candidates.append(order[a:b])
        pool = np.concatenate(candidates)
        picks.append(gen.choice(pool, len(pool) // 3, replace=False))
    return np.concatenate(picks) if picks else np.empty(0, dtype=np.int64)
