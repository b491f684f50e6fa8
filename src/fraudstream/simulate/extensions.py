"""Fraud patterns beyond the Handbook (``full`` profile), injected as new transactions.

Each pattern is drawn as a number of *events* (Poisson, ``rate × days``), each event expanded
into its transactions with `numpy.repeat`, so the cost is a few array operations per pattern
whatever the volume. Every injected transaction is fraud, tagged with its own `Scenario`:

- card testing: a stolen card probed with 5–20 payments of 0.50–2.00 on one digital-goods
  merchant, seconds apart, from a proxy IP and a new device; half the time followed within the
  hour by a large purchase in a risky category (the cash-out);
- account takeover: a customer's account (their card and email) used from a new device and a
  proxy IP, in a category they never buy, for 3–10 times their usual amount (at least 150);
- impossible travel: a cloned card used card-present at a terminal at least 50 grid units away,
  2–30 minutes after a genuine card-present payment;
- bot bursts: one IP paying for 20–40 different customers at 1–3 merchants within 10 minutes,
  rotating device ids;
- low-and-slow takeover and bust-out, whose whole signature is customer, terminal, amount
  and time (see `fraudstream.simulate.stealth`, with quiet skimming).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np

from fraudstream.simulate.arrays import (
    CARD_PRESENT,
    ECOMMERCE,
    FloatArray,
    IntArray,
    Stream,
    TxArrays,
    rng,
)
from fraudstream.simulate.catalog import CATEGORIES, RISKY, TESTING_CATEGORY, random_subcategory
from fraudstream.simulate.identities import Identities, pick_from, proxy_ips
from fraudstream.simulate.options import Extensions
from fraudstream.simulate.profiles import GRID_SIZE, Terminals
from fraudstream.simulate.scenarios import Scenario
from fraudstream.simulate.stealth import bust_out, low_and_slow_takeover
from fraudstream.simulate.world import Fresh, World

IMPOSSIBLE_TRAVEL_DISTANCE = 50.0


FraudPattern = Callable[[World, np.random.Generator, int, Fresh], TxArrays]
"""Draws ``n`` events of one pattern as transactions."""


def inject_frauds(world: World, ext: Extensions) -> TxArrays:
    """All extension frauds (new rows only), within the simulated period.

    Each pattern draws its number of events and everything else from its own random stream,
    so switching one off leaves the others' events as they were (new device ids and fraudster
    emails are numbered in pattern order, so those shift).
    """
    fresh = Fresh(world.ids.n_devices, len(world.customers))
    patterns: list[tuple[float, Stream, FraudPattern]] = [
        (ext.card_testing_per_day, Stream.CARD_TESTING, card_testing),
        (ext.account_takeover_per_day, Stream.ACCOUNT_TAKEOVER, account_takeover),
        (ext.impossible_travel_per_day, Stream.IMPOSSIBLE_TRAVEL, impossible_travel),
        (ext.bot_bursts_per_day, Stream.BOT_BURSTS, bot_bursts),
        (
            ext.low_and_slow_takeover_per_day,
            Stream.LOW_AND_SLOW_TAKEOVER,
            partial(low_and_slow_takeover, ext=ext),
        ),
        (ext.bust_out_per_day, Stream.BUST_OUT, partial(bust_out, ext=ext)),
    ]
    parts = []
    for per_day, stream, pattern in patterns:
        gen = rng(world.seed, stream)
        n_events = int(gen.poisson(per_day * world.n_days))
        parts.append(pattern(world, gen, n_events, fresh))
    injected = TxArrays.concat(parts)
    return injected.take(injected.seconds < world.horizon)


def _burst_offsets(gen: np.random.Generator, sizes: IntArray, mean_gap: float) -> IntArray:
    """Seconds since the first transaction of its event, for every row of every event."""
    gaps = np.floor(gen.exponential(mean_gap, int(sizes.sum()))) + 1
    elapsed = np.cumsum(gaps)
    first = np.cumsum(sizes) - sizes
    event = np.repeat(np.arange(len(sizes)), sizes)
    offsets: IntArray = (elapsed - elapsed[first][event]).astype(np.int64)
    return offsets


def _online(
    gen: np.random.Generator,
    world: World,
    scenario: Scenario,
    *,
    seconds: IntArray,
    customer: IntArray,
    category: IntArray,
    amount: FloatArray,
    location: tuple[FloatArray, FloatArray],
    terminal: IntArray | None = None,
    **identity: IntArray,
) -> TxArrays:
    """E-commerce fraud rows: a merchant of ``category`` unless ``terminal`` is given."""
    if terminal is None:
        terminal = world.ids.merchant_terminal(gen, category)
    return TxArrays.build(
        seconds=seconds,
        customer=customer,
        terminal=terminal,
        amount=np.round(amount, 2),
        x=location[0],
        y=location[1],
        channel=np.full(len(seconds), ECOMMERCE),
        category=category,
        subcategory=random_subcategory(gen, category),
        is_fraud=np.ones(len(seconds), dtype=np.bool_),
        scenario=np.full(len(seconds), int(scenario)),
        **identity,
    )


def _card_of(gen: np.random.Generator, world: World, customer: IntArray) -> IntArray:
    return pick_from(world.ids.card_offsets, customer, gen.random(len(customer)))


def _place(gen: np.random.Generator, n: int) -> tuple[FloatArray, FloatArray]:
    return gen.uniform(0, GRID_SIZE, n), gen.uniform(0, GRID_SIZE, n)


def card_testing(world: World, gen: np.random.Generator, n: int, fresh: Fresh) -> TxArrays:
    """``n`` bursts of probes on a digital-goods merchant, half of them then cashed out."""
    sizes = 5 + np.minimum(gen.poisson(7, n), 15)
    event = np.repeat(np.arange(n), sizes)
    start = gen.integers(0, world.horizon, n)
    owner = gen.integers(0, len(world.customers), n)
    card, ip, device, email = (
        _card_of(gen, world, owner),
        proxy_ips(gen, n),
        fresh.devices(n),
        fresh.emails(n),
    )
    x, y = _place(gen, n)
    merchant = world.ids.merchant_terminal(gen, np.full(n, TESTING_CATEGORY))
    offsets = _burst_offsets(gen, sizes, mean_gap=20.0)
    probes = _online(
        gen,
        world,
        Scenario.CARD_TESTING,
        seconds=start[event] + offsets,
        customer=owner[event],
        category=np.full(len(event), TESTING_CATEGORY),
        terminal=merchant[event],
        amount=gen.uniform(0.5, 2.0, len(event)),
        location=(x[event], y[event]),
        card=card[event],
        ip=ip[event],
        device=device[event],
        email=email[event],
    )
    last = np.cumsum(sizes) - 1
    cash = np.flatnonzero(gen.random(n) < 0.5)
    cash_out = _online(
        gen,
        world,
        Scenario.CARD_TESTING,
        seconds=start[cash] + offsets[last[cash]] + gen.integers(300, 3600, len(cash)),
        customer=owner[cash],
        category=gen.choice(RISKY, len(cash)),
        amount=gen.uniform(150, 800, len(cash)),
        location=(x[cash], y[cash]),
        card=card[cash],
        ip=ip[cash],
        device=device[cash],
        email=email[cash],
    )
    return TxArrays.concat([probes, cash_out])


def unusual_categories(gen: np.random.Generator, ids: Identities, customer: IntArray) -> IntArray:
    """A risky category the customer never buys, or any non-habitual one (rejection sampling)."""
    category = gen.choice(RISKY, len(customer))
    for attempt in range(64):
        bad = np.flatnonzero(ids.is_habitual(customer, category))
        if len(bad) == 0:
            break
        pool = RISKY if attempt < 8 else np.arange(len(CATEGORIES))
        category[bad] = gen.choice(pool, len(bad))
    return category


def account_takeover(world: World, gen: np.random.Generator, n: int, fresh: Fresh) -> TxArrays:
    """``n`` sessions of 1–4 purchases on a victim's account from a fraudster's device."""
    sizes = 1 + np.minimum(gen.poisson(0.8, n), 3)
    event = np.repeat(np.arange(n), sizes)
    victim = gen.integers(0, len(world.customers), n)
    start = gen.integers(0, world.horizon, n)
    card, ip, device = _card_of(gen, world, victim), proxy_ips(gen, n), fresh.devices(n)
    x, y = _place(gen, n)
    who = victim[event]
    usual = world.customers.mean_amount[who]
    return _online(
        gen,
        world,
        Scenario.ACCOUNT_TAKEOVER,
        seconds=start[event] + _burst_offsets(gen, sizes, mean_gap=600.0),
        customer=who,
        category=unusual_categories(gen, world.ids, who),
        amount=np.maximum(150.0, usual * gen.uniform(3, 10, len(event))),
        location=(x[event], y[event]),
        card=card[event],
        ip=ip[event],
        device=device[event],
        email=who,
    )


def far_terminals(
    gen: np.random.Generator, terminals: Terminals, x: FloatArray, y: FloatArray, distance: float
) -> IntArray:
    """For each point, a random terminal at least ``distance`` away (rejection sampling)."""
    pick = gen.integers(0, len(terminals), len(x))
    for _ in range(200):
        near = np.flatnonzero(np.hypot(terminals.x[pick] - x, terminals.y[pick] - y) < distance)
        if len(near) == 0:
            break
        pick[near] = gen.integers(0, len(terminals), len(near))
    return pick.astype(np.int64)


def impossible_travel(world: World, gen: np.random.Generator, n: int, fresh: Fresh) -> TxArrays:
    """``n`` cloned-card payments, each shadowing a genuine card-present one."""
    del fresh  # a cloned card leaves no device, IP or email behind
    history = world.history
    genuine = np.flatnonzero((history.channel == CARD_PRESENT) & ~history.is_fraud)
    base = gen.choice(genuine, min(n, len(genuine)), replace=False)
    far = far_terminals(
        gen, world.terminals, history.x[base], history.y[base], IMPOSSIBLE_TRAVEL_DISTANCE
    )
    return TxArrays.build(
        seconds=history.seconds[base] + gen.integers(120, 1801, len(base)),
        customer=history.customer[base],
        terminal=far,
        amount=np.round(gen.uniform(30, 400, len(base)), 2),
        x=world.terminals.x[far],
        y=world.terminals.y[far],
        card=history.card[base],
        category=world.ids.terminal_category[far],
        is_fraud=np.ones(len(base), dtype=np.bool_),
        scenario=np.full(len(base), int(Scenario.IMPOSSIBLE_TRAVEL)),
    )


def bot_bursts(world: World, gen: np.random.Generator, n: int, fresh: Fresh) -> TxArrays:
    """``n`` bursts of payments for distinct customers from one IP, rotating devices."""
    sizes = np.minimum(20 + np.minimum(gen.poisson(20, n), 40), len(world.customers))
    event = np.repeat(np.arange(n), sizes)
    rows = len(event)
    start = gen.integers(0, world.horizon, n)
    category = gen.choice(RISKY, n)
    shops = np.stack([world.ids.merchant_terminal(gen, category) for _ in range(3)], axis=1)
    n_shops = gen.integers(1, 4, n)
    column = (gen.random(rows) * n_shops[event]).astype(np.int64)
    # distinct customers within a burst: one draw per event (a few dozen events a run)
    victims = [gen.choice(len(world.customers), size, replace=False) for size in sizes]
    victim = np.concatenate(victims) if victims else np.empty(0, dtype=np.int64)
    ip = proxy_ips(gen, n)
    x, y = _place(gen, n)
    return _online(
        gen,
        world,
        Scenario.BOT_BURST,
        seconds=start[event] + gen.integers(0, 600, rows),
        customer=victim,
        category=category[event],
        terminal=shops[event, column],
        amount=gen.uniform(10, 150, rows),
        location=(x[event], y[event]),
        card=_card_of(gen, world, victim),
        ip=ip[event],
        device=fresh.devices(rows),
        email=victim,
    )
