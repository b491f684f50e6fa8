"""Named allow/deny lists in Valkey, and the batched membership lookup of a rule set.

Storage (``list`` prefix, one list = three keys, all single-key commands so a Cluster works):

- ``list:{name}`` — ZSET, member = normalised value, score = expiry (epoch s, ``+inf`` = never).
  One ``ZMSCORE`` answers presence *and* expiry for a whole batch; expired members are
  dropped lazily (`Lists.prune`, run by every `Lists.add`). Chosen over a SET + per-entry
  expiry hash (two lookups) and over a HASH with an expiry field (no range pruning);
  ``benchmarks/bench_rules.py --lists`` measures memory and lookup cost against a plain SET.
- ``list:{name}:cidr`` — ZSET of CIDR ranges (``ip`` lists only), same expiry scores; small,
  loaded client-side and matched with a binary search over merged ranges.
- ``list:{name}:meta`` — HASH: ``kind``, ``description``, ``rev`` (bumped on CIDR changes, so
  a worker reloads its ranges only when they changed).

Kinds normalise values on write and on lookup: ``ip`` (canonical address; CIDRs accepted),
``email`` and ``domain`` (lower-cased), ``string`` (as is). A list that does not exist is empty.

Per batch, `Lists.prepare` builds a `MembershipQuery` whose commands go into the caller's
round trip (the scorer's: `fraudstream.lookup`, sent with the feature read), so lists cost
no extra round trip::

    query = lists.prepare(ruleset, columns)
    n = query.queue(pipe)
    replies = pipe.execute()
    memberships = query.resolve(replies[-n:])

`MembershipQuery.commands` gives the same commands as tuples for a raw connection;
`MembershipQuery.resolve` takes their replies parsed or raw (scores as bytes).
"""

from __future__ import annotations

import bisect
import ipaddress
import math
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import numpy as np
import redis

from fraudstream.rules.compiler import LIST_NAME
from fraudstream.rules.context import BoolArray, RuleContext
from fraudstream.rules.errors import ListError
from fraudstream.rules.ruleset import RuleSet

ListKind = Literal["ip", "email", "domain", "string"]
LIST_KINDS: tuple[ListKind, ...] = get_args(ListKind)
CHUNK = 10_000
"""Members per ZADD / ZREM command when loading big lists."""
MAX_ENTRIES = 1_000_000


@dataclass(frozen=True)
class ListEntry:
    value: str
    expires_at: float | None
    """Epoch seconds, ``None`` = never."""


_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")
"""IPv4-mapped IPv6 addresses (RFC 4291 §2.5.5.2)."""
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def normalize(kind: str, value: str) -> str | None:
    """The stored form of a value, or ``None`` when it cannot be one (a malformed IP).

    An IPv4-mapped IPv6 address is the IPv4 address it carries (a dual-stack server reports
    ``::ffff:198.51.100.7`` for a client at ``198.51.100.7``): stored and looked up as IPv4, or
    it would slip past an IPv4 list.

    >>> normalize("ip", "::ffff:198.51.100.7"), normalize("ip", "2001:DB8::1")
    ('198.51.100.7', '2001:db8::1')
    >>> normalize("email", " A@B.COM "), normalize("ip", "x"), normalize("email", "no-at")
    ('a@b.com', None, None)
    """
    if kind == "ip":
        try:
            return _unmapped(ipaddress.ip_address(value.strip())).compressed
        except ValueError:
            return None
    if kind == "email":  # an address has a name and a domain
        local, _, domain = value.strip().lower().rstrip(".").rpartition("@")
        return f"{local}@{domain}" if local and domain else None
    if kind == "domain":
        return value.strip().lower().rstrip(".") or None
    return value


def _unmapped(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> IPAddress:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _network(raw: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """A CIDR range; one inside ``::ffff:0:0/96`` is the IPv4 range it maps.

    >>> str(_network("::ffff:203.0.113.0/120")), str(_network("203.0.113.7/24"))
    ('203.0.113.0/24', '203.0.113.0/24')

    Raises:
        ValueError: not a range.
    """
    net = ipaddress.ip_network(raw.strip(), strict=False)
    if isinstance(net, ipaddress.IPv6Network) and net.prefixlen >= 96 and net.subnet_of(_MAPPED):
        first = net.network_address.ipv4_mapped
        assert first is not None
        return ipaddress.IPv4Network((first, net.prefixlen - 96))
    return net


@dataclass
class _CidrSet:
    """Merged, sorted live ranges of one list: binary search per address."""

    rev: str | None = None
    ranges: list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, float]] = field(
        default_factory=list
    )
    v4: tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]] = field(
        default_factory=lambda: (np.empty(0, np.uint64), np.empty(0, np.uint64))
    )
    v6: tuple[list[int], list[int]] = field(default_factory=lambda: ([], []))
    valid_until: float = math.inf

    def rebuild(self, now: float) -> None:
        live = [(net, exp) for net, exp in self.ranges if exp > now]
        self.valid_until = min((exp for _, exp in live), default=math.inf)
        v4 = _merge([(int(n[0]), int(n[-1])) for n, _ in live if n.version == 4])
        v6 = _merge([(int(n[0]), int(n[-1])) for n, _ in live if n.version == 6])
        self.v4 = (
            np.array([s for s, _ in v4], dtype=np.uint64),
            np.array([e for _, e in v4], dtype=np.uint64),
        )
        self.v6 = ([s for s, _ in v6], [e for _, e in v6])

    def contains(self, address: str) -> bool:
        ip = _unmapped(ipaddress.ip_address(address))
        value = int(ip)
        if ip.version == 4:
            starts, ends = self.v4
            i = int(np.searchsorted(starts, np.uint64(value), side="right")) - 1
            return i >= 0 and int(ends[i]) >= value
        starts6, ends6 = self.v6
        j = bisect.bisect_right(starts6, value) - 1
        return j >= 0 and ends6[j] >= value


def _merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for start, end in sorted(ranges):
        if out and start <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


class Lists:
    """Named lists in Valkey: manage them, and look up a batch in one pipeline."""

    def __init__(self, client: redis.Redis, prefix: str = "list") -> None:
        self.client = client
        self.prefix = prefix
        self._kinds: dict[str, str | None] = {}
        self._cidrs: dict[str, _CidrSet] = {}

    # --- keys ---------------------------------------------------------------------------

    def key(self, name: str) -> str:
        return f"{self.prefix}:{name}"

    def _cidr_key(self, name: str) -> str:
        return f"{self.prefix}:{name}:cidr"

    def _meta_key(self, name: str) -> str:
        return f"{self.prefix}:{name}:meta"

    @property
    def _index(self) -> str:
        return f"{self.prefix}s"

    # --- management ---------------------------------------------------------------------

    def create(self, name: str, kind: ListKind = "string", description: str = "") -> None:
        """Declare a list (idempotent for the same kind)."""
        _check_name(name)
        if kind not in LIST_KINDS:
            raise ListError(f"list kind must be one of {', '.join(LIST_KINDS)}, got {kind!r}")
        current = self.kind(name)
        if current is not None and current != kind:
            raise ListError(f"list '{name}' already exists with kind {current}, not {kind}")
        pipe = self.client.pipeline(transaction=False)
        pipe.hset(self._meta_key(name), mapping={"kind": kind, "description": description})
        pipe.hsetnx(self._meta_key(name), "rev", 0)
        pipe.sadd(self._index, name)
        pipe.execute()
        self._kinds[name] = kind

    def kind(self, name: str) -> str | None:
        raw = self.client.hget(self._meta_key(name), "kind")
        return None if raw is None else _text(raw)

    def names(self) -> list[str]:
        return sorted(_text(n) for n in self.client.smembers(self._index))

    def delete(self, name: str) -> None:
        self.client.delete(self.key(name), self._cidr_key(name), self._meta_key(name))
        self.client.srem(self._index, name)
        self._kinds.pop(name, None)
        self._cidrs.pop(name, None)

    def _existing_kind(self, name: str) -> str:
        kind = self.kind(name)
        if kind is None:
            raise ListError(f"unknown list '{name}': create it first (with its kind)")
        return kind

    def _split(self, name: str, values: Iterable[str]) -> tuple[list[str], list[str]]:
        """Normalised exact values and CIDR ranges; malformed values raise."""
        kind = self._existing_kind(name)
        exact: list[str] = []
        cidrs: list[str] = []
        for raw in values:
            if kind == "ip" and "/" in raw:
                try:
                    net = _network(raw)
                except ValueError:
                    raise ListError(f"list '{name}': not an IP range: {raw!r}") from None
                if net.num_addresses == 1:
                    exact.append(str(net.network_address))
                else:
                    cidrs.append(net.with_prefixlen)
                continue
            value = normalize(kind, raw)
            if value is None:
                raise ListError(f"list '{name}': not a valid {kind}: {raw!r}")
            exact.append(value)
        return exact, cidrs

    def add(
        self,
        name: str,
        values: Iterable[str],
        *,
        ttl: float | None = None,
        expires_at: float | None = None,
        now: float | None = None,
    ) -> int:
        """Add (or re-add with a new expiry) values; returns how many were new.

        Args:
            ttl: seconds from now until the entries expire; ``expires_at``: epoch seconds.
                Neither: permanent.
        """
        now = time.time() if now is None else now
        if ttl is not None:
            if ttl <= 0:
                raise ListError(f"ttl must be > 0, got {ttl}")
            expires_at = now + ttl
        score = math.inf if expires_at is None else float(expires_at)
        exact, cidrs = self._split(name, values)
        if self.size(name) + len(exact) > MAX_ENTRIES:
            raise ListError(f"list '{name}' would exceed {MAX_ENTRIES} entries")
        pipe = self.client.pipeline(transaction=False)
        for start in range(0, len(exact), CHUNK):
            pipe.zadd(self.key(name), dict.fromkeys(exact[start : start + CHUNK], score))
        if cidrs:
            pipe.zadd(self._cidr_key(name), dict.fromkeys(cidrs, score))
            pipe.hincrby(self._meta_key(name), "rev", 1)
        added = sum(int(r) for r in pipe.execute()[: (len(exact) + CHUNK - 1) // CHUNK])
        self.prune(name, now=now)
        return added + len(cidrs)

    def remove(self, name: str, values: Iterable[str]) -> int:
        exact, cidrs = self._split(name, values)
        pipe = self.client.pipeline(transaction=False)
        for start in range(0, len(exact), CHUNK):
            pipe.zrem(self.key(name), *exact[start : start + CHUNK])
        if cidrs:
            pipe.zrem(self._cidr_key(name), *cidrs)
            pipe.hincrby(self._meta_key(name), "rev", 1)
        replies = pipe.execute()
        removed = sum(int(r) for r in replies[: (len(exact) + CHUNK - 1) // CHUNK])
        return removed + (int(replies[-2]) if cidrs else 0)

    def prune(self, name: str, *, now: float | None = None) -> int:
        """Drop expired entries (lookups already ignore them)."""
        now = time.time() if now is None else now
        pipe = self.client.pipeline(transaction=False)
        pipe.zremrangebyscore(self.key(name), "-inf", f"({now}")
        pipe.zremrangebyscore(self._cidr_key(name), "-inf", f"({now}")
        exact, cidrs = pipe.execute()
        if cidrs:
            self.client.hincrby(self._meta_key(name), "rev", 1)
        return int(exact) + int(cidrs)

    def size(self, name: str) -> int:
        return int(self.client.zcard(self.key(name))) + int(self.client.zcard(self._cidr_key(name)))

    def entries(self, name: str, *, now: float | None = None) -> Iterator[ListEntry]:
        """Live entries (exact values, then CIDR ranges), streamed with ZSCAN."""
        now = time.time() if now is None else now
        for key in (self.key(name), self._cidr_key(name)):
            for member, score in self.client.zscan_iter(key):
                if score > now:
                    yield ListEntry(_text(member), None if math.isinf(score) else score)

    def contains_many(
        self, name: str, values: Sequence[str | None], *, now: float | None = None
    ) -> list[bool]:
        """Membership of each value (one round trip, plus a CIDR reload when they changed)."""
        column = np.array(list(values), dtype=object)
        now = time.time() if now is None else now
        query = MembershipQuery(self, [("values", name, column)], now)
        pipe = self.client.pipeline(transaction=False)
        query.queue(pipe)
        result: list[bool] = query.resolve(pipe.execute())["values"].tolist()
        return result

    # --- batched lookups ----------------------------------------------------------------

    def prepare(
        self,
        ruleset: RuleSet,
        columns: RuleContext | Mapping[str, Any],
        *,
        now: float | None = None,
    ) -> MembershipQuery:
        """The lookups a batch needs for ``ruleset`` (evaluates the looked-up expressions)."""
        ctx = columns if isinstance(columns, RuleContext) else RuleContext(columns)
        wanted = []
        with np.errstate(all="ignore"):
            for ref in ruleset.lists:
                values = ref.values.fn(ctx)
                if not isinstance(values, np.ndarray):
                    values = np.full(ctx.n, values, dtype=object)
                wanted.append((ref.key, ref.list_name, values))
        return MembershipQuery(self, wanted, time.time() if now is None else now)

    def memberships(
        self, ruleset: RuleSet, columns: RuleContext | Mapping[str, Any]
    ) -> dict[str, BoolArray]:
        """`prepare` + its own pipeline: for callers without a round trip to share."""
        query = self.prepare(ruleset, columns)
        if not query.refs:
            return {}
        pipe = self.client.pipeline(transaction=False)
        query.queue(pipe)
        return query.resolve(pipe.execute())


class MembershipQuery:
    """The list lookups of one batch: `queue` them into a pipeline, `resolve` the replies."""

    def __init__(
        self, lists: Lists, refs: Sequence[tuple[str, str, np.ndarray[Any, Any]]], now: float
    ) -> None:
        """Args: refs: (membership key, list name, values) per lookup."""
        self.lists = lists
        self.refs = list(refs)
        self.now = now
        self.names = sorted({name for _, name, _ in self.refs})
        self._normalized: dict[str, list[Any]] = {}
        self._uniques: dict[str, list[str]] = {}
        self._prepare()

    def _prepare(self) -> None:
        uniques: dict[str, dict[str, None]] = {name: {} for name in self.names}
        for key, name, values in self.refs:
            kind = self.lists._kinds.get(name) or "string"
            raw = values.tolist()
            if kind == "string":  # the common case, without a call per value
                normalized = [v if isinstance(v, str) else None for v in raw]
            else:
                normalized = [normalize(kind, v) if isinstance(v, str) else None for v in raw]
            self._normalized[key] = normalized
            uniques[name].update((v, None) for v in normalized if v is not None)
        self._uniques = {name: list(u) for name, u in uniques.items()}

    def commands(self) -> list[tuple[Any, ...]]:
        """The lookups, two single-key commands per list: its kind and CIDR revision, and
        the scores of the batch's values (``EXISTS`` without values: two replies still)."""
        out: list[tuple[Any, ...]] = []
        for name in self.names:
            out.append(("HMGET", self.lists._meta_key(name), "kind", "rev"))
            values = self._uniques[name]
            if values:
                out.append(("ZMSCORE", self.lists.key(name), *values))
            else:
                out.append(("EXISTS", self.lists.key(name)))
        return out

    def queue(self, pipe: Any) -> int:
        """Add the `commands` to ``pipe``; returns how many replies they produce."""
        commands = self.commands()
        for command in commands:
            pipe.execute_command(*command)
        return len(commands)

    def resolve(self, replies: Sequence[Any]) -> dict[str, BoolArray]:
        """Membership columns keyed by `ListRef.key` from the replies of `queue`'s commands."""
        if len(replies) != 2 * len(self.names):
            raise ListError(f"expected {2 * len(self.names)} replies, got {len(replies)}")
        stale = False
        found: dict[str, dict[str, bool]] = {}
        for i, name in enumerate(self.names):
            kind_raw, rev_raw = list(replies[2 * i])
            kind = None if kind_raw is None else _text(kind_raw)
            if self.lists._kinds.get(name) != kind:
                stale = stale or kind not in (None, "string")
                self.lists._kinds[name] = kind
            scores = replies[2 * i + 1]
            values = self._uniques[name]
            hits = {}
            if values and isinstance(scores, list):
                pairs = zip(values, scores, strict=True)
                hits = {v: s is not None and float(s) > self.now for v, s in pairs}
            if kind == "ip":
                self._cidr_hits(name, None if rev_raw is None else _text(rev_raw), hits)
            found[name] = hits
        if stale:  # a list was (re)created with a normalising kind since we last looked
            self._prepare()
            pipe = self.lists.client.pipeline(transaction=False)
            self.queue(pipe)
            return self.resolve(pipe.execute())
        out: dict[str, BoolArray] = {}
        for key, name, _ in self.refs:
            hits = found[name]  # never holds None: a null is never listed
            out[key] = np.array([hits.get(v, False) for v in self._normalized[key]], dtype=bool)
        return out

    def _cidr_hits(self, name: str, rev: str | None, hits: dict[str, bool]) -> None:
        cidrs = self.lists._cidrs.setdefault(name, _CidrSet())
        if cidrs.rev != rev:
            raw: list[Any] = self.lists.client.zrange(
                self.lists._cidr_key(name), 0, -1, withscores=True
            )
            cidrs.ranges = [(ipaddress.ip_network(_text(m)), float(s)) for m, s in raw]
            cidrs.rev = rev
            cidrs.rebuild(self.now)
        elif self.now >= cidrs.valid_until:
            cidrs.rebuild(self.now)
        if not cidrs.ranges:
            return
        for value in self._uniques[name]:
            if not hits.get(value):
                hits[value] = cidrs.contains(value)


def _text(raw: Any) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def _check_name(name: str) -> None:
    if not LIST_NAME.match(name):
        raise ListError(f"bad list name {name!r}: letters, digits and _ . : - (at most 100)")
