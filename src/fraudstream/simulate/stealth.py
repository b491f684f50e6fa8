"""Attacks that only customer, terminal, amount and time reveal (``full`` profile).

The other extensions leave traces in fields the Handbook's data does not have (a new device,
a proxy IP, an unusual category). A bank exporting Handbook-format data sees none of those,
so these three carry their whole signature in the four fields it has, all card present at
physical terminals:

- low-and-slow takeover: a taken-over card used for a few days (2–5), a few payments a day,
  at terminals its customer never uses (drawn uniformly among the others), for amounts drawn
  from the customer's own distribution at the usual hours: nothing is unusual but *where*;
- quiet skimming: a terminal compromised for 14 days; a share (0.3) of its payments in that
  period are fraudulent, for 1.4 times the amount. The Handbook's scenario 2 makes *all* of
  a compromised terminal's payments fraudulent, which a terminal's fraud rate finds at once;
  here the terminal keeps serving genuine payments, so its fraud rate, known a week late,
  reads ~0.3, and the fraudulent payments themselves are only slightly dearer. They are the
  terminal's own payments, turned fraudulent (as the Handbook's scenario 3 turns a
  customer's), never added: the terminal's traffic does not change;
- bust-out: a customer's spending ramps up geometrically day after day (7–10 days), from
  their usual amount to just under `HIGH_AMOUNT_THRESHOLD` (220), which the Handbook's
  scenario 1 (and any amount rule) would flag; each day's payments are dearer than the
  previous day's.

Takeovers and bust-outs are new rows, drawn like the other extensions (`FraudPattern`);
skimming re-tags rows of the genuine history in place, after every pattern has drawn from it.
"""

from __future__ import annotations

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
from fraudstream.simulate.handbook import TIME_OF_DAY_MEAN, TIME_OF_DAY_STD, customer_amounts
from fraudstream.simulate.identities import pick_from
from fraudstream.simulate.options import Extensions
from fraudstream.simulate.profiles import Customers, pick_available
from fraudstream.simulate.scenarios import HIGH_AMOUNT_THRESHOLD, Scenario
from fraudstream.simulate.world import Fresh, World

BUST_OUT_PEAK = (0.9, 0.99)
"""A ramp's last day reaches this share of `HIGH_AMOUNT_THRESHOLD` (drawn uniformly)."""
_REDRAWS = 64


def usual_times(gen: np.random.Generator, n: int) -> IntArray:
    """Seconds into the day as genuine payments have them (the Handbook's normal around
    noon), out-of-day draws drawn again."""
    seconds = gen.normal(TIME_OF_DAY_MEAN, TIME_OF_DAY_STD, n)
    for _ in range(_REDRAWS):
        out = np.flatnonzero((seconds < 0) | (seconds >= SECONDS_PER_DAY))
        if len(out) == 0:
            break
        seconds[out] = gen.normal(TIME_OF_DAY_MEAN, TIME_OF_DAY_STD, len(out))
    return np.clip(np.floor(seconds), 0, SECONDS_PER_DAY - 1).astype(np.int64)


def _days(
    gen: np.random.Generator, n: int, n_days: int, bounds: tuple[int, int], per_day: float
) -> tuple[IntArray, IntArray, IntArray, IntArray]:
    """``n`` events lasting ``bounds`` days from a random day: each event's length, and per
    payment its event, its day, and which day of its event it is (0 first)."""
    length = gen.integers(bounds[0], bounds[1] + 1, n)
    start = gen.integers(0, n_days, n)
    event_day = np.repeat(np.arange(n), length)
    nth = np.arange(len(event_day)) - np.repeat(np.cumsum(length) - length, length)
    count = 1 + gen.poisson(per_day - 1, len(event_day))
    event = np.repeat(event_day, count)
    nth = np.repeat(nth, count)
    return length, event, start[event] + nth, nth


def _victims(gen: np.random.Generator, pool: IntArray, n: int) -> IntArray:
    """``n`` distinct customers of ``pool`` (all of them if fewer): a card is taken over, a
    customer busts out, once, so one customer's events never overlap."""
    victims: IntArray = gen.choice(pool, min(n, len(pool)), replace=False)
    return victims


def is_usual_terminal(customers: Customers, customer: IntArray, terminal: IntArray) -> BoolArray:
    """Whether each terminal is among its customer's available ones (the only terminals a
    customer's genuine card-present payments use): one binary search over (customer,
    terminal) keys, as the available sets are sorted per customer."""
    width = int(max(customers.available.max(initial=0), terminal.max(initial=0))) + 1
    owner = np.repeat(np.arange(len(customers)), customers.nb_terminals)
    keys = owner * width + customers.available
    wanted = customer * width + terminal
    at = np.minimum(np.searchsorted(keys, wanted), max(len(keys) - 1, 0))
    found: BoolArray = (keys[at] == wanted) if len(keys) else np.zeros(len(wanted), np.bool_)
    return found


def _card_present(
    world: World,
    scenario: Scenario,
    *,
    seconds: IntArray,
    customer: IntArray,
    terminal: IntArray,
    amount: FloatArray,
    card: IntArray,
) -> TxArrays:
    return TxArrays.build(
        seconds=seconds,
        customer=customer,
        terminal=terminal,
        amount=np.round(amount, 2),
        x=world.terminals.x[terminal],
        y=world.terminals.y[terminal],
        card=card,
        category=world.ids.terminal_category[terminal],
        is_fraud=np.ones(len(seconds), dtype=np.bool_),
        scenario=np.full(len(seconds), int(scenario)),
    )


def low_and_slow_takeover(
    world: World, gen: np.random.Generator, n: int, fresh: Fresh, *, ext: Extensions
) -> TxArrays:
    """``n`` takeovers: a few payments a day, for a few days, away from the customer's
    terminals. Payments still on a usual terminal after the redraws (a world whose
    customers reach every terminal) are left out."""
    del fresh  # a card-present fraud leaves no device, IP or email behind
    victim = _victims(gen, np.arange(len(world.customers)), n)
    card = pick_from(world.ids.card_offsets, victim, gen.random(len(victim)))
    _, event, day, _ = _days(
        gen,
        len(victim),
        world.n_days,
        ext.low_and_slow_takeover_days,
        ext.low_and_slow_takeover_tx_per_day,
    )
    customer = victim[event]
    terminal = gen.integers(0, len(world.terminals), len(event))
    for _ in range(_REDRAWS):
        usual = np.flatnonzero(is_usual_terminal(world.customers, customer, terminal))
        if len(usual) == 0:
            break
        terminal[usual] = gen.integers(0, len(world.terminals), len(usual))
    rows = _card_present(
        world,
        Scenario.LOW_AND_SLOW_TAKEOVER,
        seconds=day * SECONDS_PER_DAY + usual_times(gen, len(event)),
        customer=customer,
        terminal=terminal,
        amount=customer_amounts(gen, world.customers, customer),
        card=card[event],
    )
    return rows.take(~is_usual_terminal(world.customers, customer, terminal))


def bust_out(
    world: World, gen: np.random.Generator, n: int, fresh: Fresh, *, ext: Extensions
) -> TxArrays:
    """``n`` ramps: each day's payments between the day's level / sqrt(growth) and the
    level, so every day's cheapest is dearer than the previous day's dearest."""
    del fresh
    victim = _victims(gen, np.flatnonzero(world.customers.nb_terminals > 0), n)
    card = pick_from(world.ids.card_offsets, victim, gen.random(len(victim)))
    length, event, day, nth = _days(
        gen, len(victim), world.n_days, ext.bust_out_days, ext.bust_out_tx_per_day
    )
    peak = HIGH_AMOUNT_THRESHOLD * gen.uniform(*BUST_OUT_PEAK, len(victim))
    base = np.minimum(world.customers.mean_amount[victim], peak / 2)
    growth = (peak / base) ** (1 / np.maximum(length - 1, 1))
    level = base[event] * growth[event] ** nth
    amount = level * growth[event] ** (-0.5 * gen.random(len(event)))
    customer = victim[event]
    return _card_present(
        world,
        Scenario.BUST_OUT,
        seconds=day * SECONDS_PER_DAY + usual_times(gen, len(event)),
        customer=customer,
        terminal=pick_available(world.customers, customer, gen.random(len(event))),
        amount=np.floor(amount * 100) / 100,
        card=card[event],
    )


def skimmed_windows(
    gen: np.random.Generator, n_terminals: int, n_days: int, ext: Extensions
) -> BoolArray:
    """``windows[t, d]``: terminal ``t`` is quietly skimmed on day ``d`` (a difference array
    over terminals × days, as the Handbook's scenario 2)."""
    n = int(gen.poisson(ext.quiet_skimming_per_day * n_days))
    terminal = gen.integers(0, n_terminals, n)
    start = gen.integers(0, n_days, n)
    delta = np.zeros((n_terminals, n_days + 1), dtype=np.int32)
    np.add.at(delta, (terminal, start), 1)
    np.add.at(delta, (terminal, np.minimum(start + ext.quiet_skimming_days, n_days)), -1)
    windows: BoolArray = np.cumsum(delta, axis=1)[:, :n_days] > 0
    return windows


def skim_quietly(tx: TxArrays, n_terminals: int, n_days: int, seed: int, ext: Extensions) -> None:
    """Turn (in place) a share of the genuine payments at skimmed terminals into frauds of
    a slightly higher amount; payments already fraudulent keep their scenario."""
    if ext.quiet_skimming_per_day == 0:
        return
    gen = rng(seed, Stream.QUIET_SKIMMING)
    windows = skimmed_windows(gen, n_terminals, n_days, ext)
    day = np.minimum(tx.seconds // SECONDS_PER_DAY, n_days - 1)
    candidate = np.flatnonzero((tx.terminal < n_terminals) & ~tx.is_fraud)
    candidate = candidate[windows[tx.terminal[candidate], day[candidate]]]
    picked = candidate[gen.random(len(candidate)) < ext.quiet_skimming_fraction]
    tx.amount[picked] = np.round(tx.amount[picked] * ext.quiet_skimming_amount_factor, 2)
    tx.is_fraud[picked] = True
    tx.scenario[picked] = Scenario.QUIET_SKIMMING
