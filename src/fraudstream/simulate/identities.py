"""Who pays online with what: cards, devices, IPs, emails and shopping habits (``full`` only).

The Handbook's customers only have a location and a spending profile. To make e-commerce and
identity fraud possible (account takeover needs a *new* device, bot bursts a *shared* IP), the
``full`` profile gives every customer 1–2 cards, 1–2 habitual devices, a home IP, an email and
2–4 habitual product categories, and turns a share of the genuine transactions into online
purchases at e-commerce merchants consistent with those habits.

Cards and devices are numbered consecutively per customer (compressed rows, like available
terminals), so "one of this customer's cards" is one vectorised draw.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fraudstream.simulate.arrays import (
    CARD_PRESENT,
    ECOMMERCE,
    BoolArray,
    FloatArray,
    IntArray,
    Stream,
    TxArrays,
    rng,
)
from fraudstream.simulate.catalog import (
    CATEGORIES,
    EMAIL_DOMAIN_WEIGHTS,
    EMAIL_DOMAINS,
    IN_STORE,
    random_subcategory,
)
from fraudstream.simulate.profiles import Customers

MAX_HABITS = 4
HOME_IP_SHARE = 0.9
"""Share of a customer's online purchases made from the home IP (the rest: mobile networks)."""
_HOME_OCTETS = np.array([31, 37, 46, 62, 77, 78, 79, 80, 81, 82, 83, 84, 86, 88, 90, 92, 94, 109])
_MOBILE_OCTETS = np.array([100, 176, 178, 188, 193, 194, 212, 213, 217])
_PROXY_OCTETS = np.array([45, 103, 104, 139, 146, 156, 162, 198, 199])
"""First octets of addresses fraudsters use (hosting and proxy ranges), disjoint from homes."""


def random_ips(gen: np.random.Generator, n: int, first_octets: IntArray) -> IntArray:
    """``n`` IPv4 addresses as integers, with a first octet drawn from ``first_octets``."""
    first = gen.choice(first_octets, n).astype(np.int64)
    return (first << 24) | gen.integers(1, 1 << 24, n, dtype=np.int64)


def proxy_ips(gen: np.random.Generator, n: int) -> IntArray:
    return random_ips(gen, n, _PROXY_OCTETS)


def _offsets(counts: IntArray) -> IntArray:
    return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)


def pick_from(offsets: IntArray, owner: IntArray, u: FloatArray) -> IntArray:
    """Uniformly one of the owner's consecutive ids (cards, devices)."""
    count = offsets[owner + 1] - offsets[owner]
    pick: IntArray = offsets[owner] + np.minimum((u * count).astype(np.int64), count - 1)
    return pick


@dataclass(frozen=True)
class Identities:
    """Everything the ``full`` profile adds to customers, terminals and merchants."""

    card_offsets: IntArray
    device_offsets: IntArray
    home_ip: IntArray
    email_domain: IntArray
    habits: IntArray
    """(customers × `MAX_HABITS`) category indices; the first ``n_habits[c]`` are used."""
    n_habits: IntArray
    terminal_category: IntArray
    merchant_category: IntArray
    n_terminals: int
    merchant_offsets: IntArray = field(init=False)
    """Merchants grouped by category: those of category k are ``merchant_order[o[k]:o[k+1]]``."""
    merchant_order: IntArray = field(init=False)

    def __post_init__(self) -> None:
        order = np.argsort(self.merchant_category, kind="stable").astype(np.int64)
        counts = np.bincount(self.merchant_category, minlength=len(CATEGORIES))
        object.__setattr__(self, "merchant_order", order)
        object.__setattr__(self, "merchant_offsets", _offsets(counts))

    @property
    def n_devices(self) -> int:
        return int(self.device_offsets[-1])

    def merchant_terminal(self, gen: np.random.Generator, category: IntArray) -> IntArray:
        """A merchant selling ``category`` (uniformly), as its virtual terminal id."""
        merchant = self.merchant_order[
            pick_from(self.merchant_offsets, category, gen.random(len(category)))
        ]
        return self.n_terminals + merchant

    def habitual(self, gen: np.random.Generator, customer: IntArray) -> IntArray:
        """One of each customer's habitual categories."""
        column = (gen.random(len(customer)) * self.n_habits[customer]).astype(np.int64)
        return self.habits[customer, column]

    def is_habitual(self, customer: IntArray, category: IntArray) -> BoolArray:
        used = np.arange(MAX_HABITS)[None, :] < self.n_habits[customer, None]
        habitual: BoolArray = ((self.habits[customer] == category[:, None]) & used).any(axis=1)
        return habitual


def make_identities(n_customers: int, n_terminals: int, n_merchants: int, seed: int) -> Identities:
    gen = rng(seed, Stream.IDENTITIES)
    n_categories = len(CATEGORIES)
    merchant_category = np.concatenate(
        [np.arange(min(n_merchants, n_categories)), gen.integers(0, n_categories, n_merchants)]
    )[:n_merchants]
    return Identities(
        card_offsets=_offsets(1 + (gen.random(n_customers) < 0.35)),
        device_offsets=_offsets(1 + (gen.random(n_customers) < 0.4)),
        home_ip=random_ips(gen, n_customers, _HOME_OCTETS),
        email_domain=gen.choice(len(EMAIL_DOMAINS), n_customers, p=EMAIL_DOMAIN_WEIGHTS),
        habits=np.argsort(gen.random((n_customers, n_categories)), axis=1)[:, :MAX_HABITS],
        n_habits=gen.integers(2, MAX_HABITS + 1, n_customers),
        terminal_category=gen.choice(IN_STORE, n_terminals),
        merchant_category=merchant_category.astype(np.int64),
        n_terminals=n_terminals,
    )


def assign_channels(
    tx: TxArrays, ids: Identities, customers: Customers, share: float, seed: int
) -> None:
    """Give every transaction a card and category; move a ``share`` of them online (in place).

    An online purchase keeps its time and amount but happens at an e-commerce merchant of one
    of the customer's habitual categories, from one of their devices, from home (mostly); its
    location (x, y) becomes the customer's home, where the IP geolocates.
    """
    gen = rng(seed, Stream.ECOMMERCE)
    n = len(tx)
    tx.card[:] = pick_from(ids.card_offsets, tx.customer, gen.random(n))
    tx.category[:] = ids.terminal_category[np.minimum(tx.terminal, ids.n_terminals - 1)]
    tx.channel[:] = CARD_PRESENT
    online = np.flatnonzero(gen.random(n) < share)
    who = tx.customer[online]
    category = ids.habitual(gen, who)
    tx.channel[online] = ECOMMERCE
    tx.category[online] = category
    tx.subcategory[online] = random_subcategory(gen, category)
    tx.terminal[online] = ids.merchant_terminal(gen, category)
    tx.x[online] = customers.x[who]
    tx.y[online] = customers.y[who]
    tx.device[online] = pick_from(ids.device_offsets, who, gen.random(len(online)))
    home = gen.random(len(online)) < HOME_IP_SHARE
    tx.ip[online] = np.where(home, ids.home_ip[who], random_ips(gen, len(online), _MOBILE_OCTETS))
    tx.email[online] = who
