"""Named lists in the real Valkey: kinds, expiry, CIDR ranges, batched lookups for a rule set."""

from __future__ import annotations

import time

import numpy as np
import pytest
import redis

from fraudstream.rules import (
    ListError,
    evaluate_batch,
    parse_ruleset,
)
from fraudstream.rules.lists import ListEntry, Lists
from rulekit import SCHEMA, batch

pytestmark = pytest.mark.integration

RULES = """
rules:
  - id: bad_ip
    when: ip in list("ip_blocklist")
    outcome: block
  - id: throwaway
    when: email_domain in list("disposable") or lower(email) in list("bad_emails")
    outcome: review
  - id: not_allowed
    when: ip not in list("ip_blocklist") and device_id in list("devices")
    outcome: review
"""


def test_exact_values_with_kinds(client: redis.Redis) -> None:
    lists = Lists(client)
    lists.create("bad_emails", "email")
    assert lists.add("bad_emails", ["Fraud@Example.com", "x@y.z"]) == 2
    assert lists.contains_many("bad_emails", ["fraud@example.COM", "no@x.y", None]) == [
        True,
        False,
        False,
    ]
    assert lists.remove("bad_emails", ["X@Y.Z"]) == 1
    assert sorted(e.value for e in lists.entries("bad_emails")) == ["fraud@example.com"]
    assert lists.names() == ["bad_emails"] and lists.kind("bad_emails") == "email"
    with pytest.raises(ListError, match="already exists with kind email"):
        lists.create("bad_emails", "ip")
    with pytest.raises(ListError, match="unknown list"):
        lists.add("nope", ["x"])
    assert lists.contains_many("nope", ["x"]) == [False]  # a missing list is empty


def test_expiry(client: redis.Redis) -> None:
    lists = Lists(client)
    lists.create("devices")
    now = 1_000_000.0
    lists.add("devices", ["d1"], ttl=60, now=now)
    lists.add("devices", ["d2"], expires_at=now + 10, now=now)
    lists.add("devices", ["d3"], now=now)
    assert lists.contains_many("devices", ["d1", "d2", "d3"], now=now + 5) == [True, True, True]
    assert lists.contains_many("devices", ["d1", "d2", "d3"], now=now + 30) == [True, False, True]
    assert lists.contains_many("devices", ["d1", "d2", "d3"], now=now + 61) == [False, False, True]
    assert {e.value: e.expires_at for e in lists.entries("devices", now=now + 30)} == {
        "d1": now + 60,
        "d3": None,
    }
    assert lists.prune("devices", now=now + 30) == 1
    assert lists.size("devices") == 2
    with pytest.raises(ListError, match="ttl"):
        lists.add("devices", ["d4"], ttl=0)


def test_real_clock_expiry(client: redis.Redis) -> None:
    lists = Lists(client)
    lists.create("cards")
    lists.add("cards", ["c1"], ttl=0.2)
    assert lists.contains_many("cards", ["c1"]) == [True]
    time.sleep(0.3)
    assert lists.contains_many("cards", ["c1"]) == [False]


def test_ip_lists_with_cidr_ranges(client: redis.Redis) -> None:
    lists = Lists(client)
    lists.create("ip_blocklist", "ip")
    lists.add("ip_blocklist", ["10.0.0.0/8", "192.168.1.7", "2001:db8::/32", "172.16.0.1/32"])
    lists.add("ip_blocklist", ["203.0.113.0/24"], expires_at=time.time() + 3600)
    probe = [
        "10.200.3.4",
        "11.0.0.1",
        "192.168.1.7",
        "192.168.1.8",
        "2001:db8:1::5",
        "2001:db9::1",
        "172.16.0.1",
        "203.0.113.99",
        "not an ip",
        None,
    ]
    expected = [True, False, True, False, True, False, True, True, False, False]
    assert lists.contains_many("ip_blocklist", probe) == expected
    # a second client sees range changes (revision bump), and expired ranges stop matching
    other = Lists(client)
    assert other.contains_many("ip_blocklist", ["10.1.1.1"]) == [True]
    lists.remove("ip_blocklist", ["10.0.0.0/8"])
    assert other.contains_many("ip_blocklist", ["10.1.1.1"]) == [False]
    later = time.time() + 7200
    assert other.contains_many("ip_blocklist", ["203.0.113.99"], now=later) == [False]
    entries = set(lists.entries("ip_blocklist"))
    assert ListEntry("2001:db8::/32", None) in entries
    with pytest.raises(ListError, match="not an IP range"):
        lists.add("ip_blocklist", ["10.0.0.0/99"])
    with pytest.raises(ListError, match="not a valid ip"):
        lists.add("ip_blocklist", ["10.0.0.300"])


def test_ipv4_mapped_ipv6_addresses_match_ipv4_entries(client: redis.Redis) -> None:
    """A dual-stack server reports ``::ffff:a.b.c.d``: the same client, the same list entry."""
    lists = Lists(client)
    lists.create("ip_blocklist", "ip")
    lists.add("ip_blocklist", ["198.51.100.7", "203.0.113.0/24", "::ffff:192.0.2.9"])
    lists.add("ip_blocklist", ["::FFFF:100.64.0.0/112"])  # a mapped range is the IPv4 /16
    probe = [
        "::ffff:198.51.100.7",
        "::ffff:c633:6407",  # the same address in hex groups
        "::ffff:203.0.113.9",
        "192.0.2.9",
        "100.64.200.1",
        "::ffff:100.65.0.1",
        "::ffff:198.51.100.8",
        "64:ff9b::198.51.100.7",  # NAT64 is another address, not a mapping
    ]
    expected = [True, True, True, True, True, False, False, False]
    assert lists.contains_many("ip_blocklist", probe) == expected
    stored = {e.value for e in lists.entries("ip_blocklist")}
    assert {"192.0.2.9", "100.64.0.0/16"} <= stored
    rs = parse_ruleset(RULES, SCHEMA)
    cols = batch(
        ip=["::ffff:198.51.100.7", "::ffff:203.0.113.9", "198.51.100.7", "8.8.8.8"],
        email=["a@example.org"] * 4,
        email_domain=["example.org"] * 4,
        device_id=["d1"] * 4,
    )
    hits = [r.hits for r in evaluate_batch(rs, cols, lists.memberships(rs, cols))]
    assert hits == [("bad_ip",), ("bad_ip",), ("bad_ip",), ()]


def test_batched_memberships_for_a_rule_set(client: redis.Redis) -> None:
    lists = Lists(client)
    lists.create("ip_blocklist", "ip")
    lists.create("disposable", "domain")
    lists.create("bad_emails", "email")
    lists.add("ip_blocklist", ["10.0.0.0/8", "1.2.3.4"])
    lists.add("disposable", ["mailinator.com"])
    lists.add("bad_emails", ["evil@example.org"])
    rs = parse_ruleset(RULES, SCHEMA)
    cols = batch(
        ip=["10.9.9.9", "1.2.3.4", "8.8.8.8", None],
        email=["a@mailinator.com", "EVIL@example.org", "ok@example.org", None],
        email_domain=["mailinator.com", "example.org", "example.org", None],
        device_id=["d1", "d1", "d1", "d1"],
    )
    query = lists.prepare(rs, cols)
    pipe = client.pipeline(transaction=False)
    pipe.ping()  # the caller's own commands (features) share the round trip
    n = query.queue(pipe)
    replies = pipe.execute()
    assert n == 2 * 4 and replies[0] is True
    memberships = query.resolve(replies[1:])
    assert memberships["ip_blocklist|ip"].tolist() == [True, True, False, False]
    assert memberships["devices|device_id"].tolist() == [False] * 4  # missing list: empty
    results = evaluate_batch(rs, cols, memberships)
    assert [r.hits for r in results] == [("bad_ip", "throwaway"), ("bad_ip", "throwaway"), (), ()]
    assert lists.memberships(rs, cols).keys() == memberships.keys()


def test_big_list_loads_in_chunks(client: redis.Redis) -> None:
    lists = Lists(client)
    lists.create("big")
    values = [f"card-{i}" for i in range(25_000)]
    assert lists.add("big", values) == 25_000
    probe = np.array(values[::5000] + ["card-x"], dtype=object)
    assert lists.contains_many("big", list(probe)) == [True] * 5 + [False]
    assert lists.remove("big", values[:12_345]) == 12_345
    assert lists.size("big") == 25_000 - 12_345
