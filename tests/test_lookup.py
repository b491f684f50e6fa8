"""The look-up rides with the feature read: a batch waits on the server once before it is
scored (then once for its write), on one node and on a cluster, and still follows the
pointers, drops and redoes the lookups of a rule set that moved, and writes nothing when a
lookup fails."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from redis.cluster import ClusterNode

from featkit import FIXED_CLOCK, tx
from fraudstream.features import FeatureEngine
from fraudstream.lookup import LookupQuery
from fraudstream.models import ModelRegistry, ModelWatcher
from fraudstream.rules import RuleSchema
from fraudstream.rules.lists import Lists
from fraudstream.rules.registry import RuleRegistry, RuleWatcher
from fraudstream.scoring import AmountPolicy, Scorer

POLICY = AmountPolicy(review_amount=220, block_amount=5000, review_score=500, block_score=800)
KEY = b"k" * 32


class Trips:
    """What the client's sockets did, in order: ``S`` a send, ``R`` a receive."""

    def __init__(self) -> None:
        self.events: list[str] = []

    def rounds(self) -> int:
        """Round trips: sends that open a new wait (the first, or the first after a
        receive); sends to several connections before any receive make one."""
        return sum(
            1
            for i, e in enumerate(self.events)
            if e == "S" and (i == 0 or self.events[i - 1] == "R")
        )


class _Socket:
    """A real socket, its sends and receives logged in `Trips`."""

    def __init__(self, sock: socket.socket, trips: Trips) -> None:
        self._sock = sock
        self._trips = trips

    def sendall(self, data: Any, *args: Any) -> None:
        self._trips.events.append("S")
        self._sock.sendall(data, *args)

    def recv_into(self, buffer: Any, *args: Any) -> int:
        size = self._sock.recv_into(buffer, *args)
        self._trips.events.append("R")
        return size

    def recv(self, *args: Any) -> bytes:
        data = self._sock.recv(*args)
        self._trips.events.append("R")
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def _counting(trips: Trips) -> type[redis.Connection]:
    class Counting(redis.Connection):
        def _connect(self) -> Any:
            return _Socket(super()._connect(), trips)  # type: ignore[no-untyped-call]

    return Counting


@pytest.fixture
def counted(client: redis.Redis, valkey_url: str) -> Iterator[tuple[redis.Redis, Trips]]:
    """A client on the (flushed) server whose connections log their sends and receives."""
    trips = Trips()
    conn = redis.Redis.from_url(valkey_url, connection_class=_counting(trips))
    try:
        yield conn, trips
    finally:
        conn.close()


@pytest.fixture
def counted_cluster(
    cluster_client: redis.RedisCluster, cluster_nodes: list[redis.Redis]
) -> Iterator[tuple[redis.RedisCluster, Trips]]:
    """As `counted`, on the (flushed) cluster."""
    kwargs = cluster_nodes[0].get_connection_kwargs()
    first = ClusterNode(kwargs["host"], kwargs["port"])  # type: ignore[no-untyped-call]
    trips = Trips()
    conn = redis.RedisCluster(startup_nodes=[first], password=kwargs["password"])
    # a cluster client takes no connection class: its nodes' pools do
    for node in conn.get_nodes():  # type: ignore[no-untyped-call]
        pool = node.redis_connection.connection_pool
        pool.disconnect()
        pool.connection_class = _counting(trips)
        pool.reset()
    try:
        yield conn, trips
    finally:
        conn.close()


def _rules_on(list_name: str) -> str:
    return f"""rules:
  - id: listed
    when: customer_id in list("{list_name}")
    outcome: block
"""


def _scorer(client: Any) -> tuple[Scorer, RuleRegistry]:
    """Every stage that reads Valkey, on ``client``: features, model pointers, rules, lists
    (a list ``blocked`` holding customer ``c1``)."""
    engine = FeatureEngine(client, clock=lambda: FIXED_CLOCK)
    registry = RuleRegistry(client, RuleSchema.build(engine.names))
    Lists(client).create("blocked")
    Lists(client).add("blocked", ["c1"])
    models = ModelWatcher(ModelRegistry(client, KEY))
    scorer = Scorer(
        POLICY, features=engine, models=models, rules=RuleWatcher(registry), lists=Lists(client)
    )
    return scorer, registry


@pytest.mark.parametrize(("where", "writes"), [("counted", 1), ("counted_cluster", 2)])
def test_a_batch_of_one_waits_once_before_it_is_scored(
    where: str, writes: int, request: pytest.FixtureRequest
) -> None:
    """One round trip for the feature read, carrying the pointers' GETs and the list
    lookups (to every node concerned at once on a cluster), then the write's: one on a node
    (confirmed at the end), two on a cluster (the customers' compare-and-set, then the
    shared increments of those stored). The look-up used to be one more, before the read."""
    client, trips = request.getfixturevalue(where)
    scorer, registry = _scorer(client)
    registry.publish(_rules_on("blocked"))
    scorer.score_batch([tx(0)])  # connections opened, the rule set loaded
    trips.events.clear()
    decision = scorer.score_batch([tx(1, minutes=1)])[0]
    assert trips.rounds() == 1 + writes, trips.events
    assert decision.outcome == "block" and "rule:listed" in decision.reasons
    assert scorer.features is not None and scorer.features.stats.processed == 2


@pytest.mark.parametrize("where", ["client", "cluster_client"])
def test_a_rule_set_moved_by_the_read_has_its_lists_looked_up_again(
    where: str, request: pytest.FixtureRequest
) -> None:
    """The lookups that rode with the read were for the rule set in force before it: when
    the pointer moves, they are dropped and the new rule set's are looked up."""
    client = request.getfixturevalue(where)
    scorer, registry = _scorer(client)
    Lists(client).create("elsewhere")
    assert scorer.score_batch([tx(0)])[0].outcome == "approve"  # no rule set yet
    registry.publish(_rules_on("blocked"))  # moves in the read: looked up again after it
    first = scorer.score_batch([tx(1, minutes=1)])[0]
    assert first.outcome == "block" and "rule:listed" in first.reasons
    again = scorer.score_batch([tx(2, minutes=2)])[0]  # unchanged: with the read
    assert again.outcome == "block" and again.rules_version == first.rules_version
    registry.publish(_rules_on("elsewhere"))
    assert scorer.score_batch([tx(3, minutes=3)])[0].outcome == "approve"


@pytest.mark.parametrize("where", ["client", "cluster_client"])
def test_expired_and_ip_entries_read_the_same_with_the_feature_read(
    where: str, request: pytest.FixtureRequest
) -> None:
    """The lookups' replies come raw (scores as bytes) with the read: an expired entry is
    not listed, a live one and a CIDR range are."""
    client = request.getfixturevalue(where)
    scorer, registry = _scorer(client)
    lists = Lists(client)
    lists.create("ips", "ip")
    lists.add("ips", ["203.0.113.0/24", "198.51.100.7"])
    lists.add("ips", ["192.0.2.1"], expires_at=FIXED_CLOCK - 1, now=FIXED_CLOCK - 10)
    registry.publish('rules:\n  - id: ip\n    when: ip in list("ips")\n    outcome: block\n')
    got = [
        scorer.score_batch([tx(i, minutes=i, ip=ip)])[0].outcome
        for i, ip in enumerate(["203.0.113.9", "198.51.100.7", "192.0.2.1", "192.0.2.2"])
    ]
    assert got == ["block", "block", "approve", "approve"]


@pytest.mark.parametrize("where", ["client", "cluster_client"])
def test_a_failed_lookup_fails_the_batch_and_writes_nothing(
    where: str, request: pytest.FixtureRequest
) -> None:
    """A list key of the wrong type: the batch raises the server's error, as the look-up's
    own pipeline did, and no feature state of it is written (it can be retried)."""
    client = request.getfixturevalue(where)
    scorer, registry = _scorer(client)
    registry.publish(_rules_on("blocked"))
    scorer.score_batch([tx(0)])
    client.delete("list:blocked")
    client.set("list:blocked", "not a sorted set")
    engine = scorer.features
    assert engine is not None
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        scorer.score_batch([tx(1, minutes=1, customer="c2")])
    assert client.exists(engine.customer_key("c2")) == 0
    assert engine.stats.processed == 1


@pytest.mark.parametrize("where", ["client", "cluster_client"])
def test_an_empty_batch_sends_the_riders_alone(where: str, request: pytest.FixtureRequest) -> None:
    """`FeatureEngine.submit` of no transaction still delivers the riders' replies."""
    client = request.getfixturevalue(where)
    scorer, registry = _scorer(client)
    registry.publish(_rules_on("blocked"))
    assert scorer.rules is not None and scorer.features is not None
    query = LookupQuery([tx(0)], scorer.models, scorer.rules, scorer.lists)
    assert scorer.features.submit([], (), query).shape == (0, len(scorer.features.names))
    lookup = query.resolve()  # the rule set moved: its lookups are left to the scorer
    assert lookup.ruleset is scorer.rules.ruleset and lookup.memberships is None
    again = LookupQuery([tx(0), tx(1, customer="c2")], None, scorer.rules, scorer.lists)
    scorer.features.submit([], (), again)
    memberships = again.resolve().memberships
    assert memberships is not None and len(memberships) == 1
    assert list(memberships.values())[0].tolist() == [True, False]


def test_stages_on_another_client_look_up_in_a_round_trip_of_their_own(
    counted: tuple[redis.Redis, Trips], client: redis.Redis
) -> None:
    """The look-up rides with the feature read only on the feature engine's client: rules
    and lists on another connection are looked up on it, before the read."""
    counting, trips = counted
    engine = FeatureEngine(client, clock=lambda: FIXED_CLOCK)
    registry = RuleRegistry(counting, RuleSchema.build(engine.names))
    Lists(counting).create("blocked")
    Lists(counting).add("blocked", ["c1"])
    registry.publish(_rules_on("blocked"))
    scorer = Scorer(POLICY, features=engine, rules=RuleWatcher(registry), lists=Lists(counting))
    scorer.score_batch([tx(0)])
    trips.events.clear()
    decision = scorer.score_batch([tx(1, minutes=1)])[0]
    assert trips.rounds() == 1 and decision.outcome == "block"
