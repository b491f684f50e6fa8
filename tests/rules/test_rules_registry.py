"""Rule set versions in the real Valkey: publish, activate, list, diff, hot reload."""

from __future__ import annotations

import pytest
import redis

from fraudstream.rules import RegistryError, RuleSchema, UnknownNameError
from fraudstream.rules.registry import RuleRegistry, RuleWatcher, diff_texts
from fraudstream.rules.ruleset import content_version
from rulekit import SCHEMA

pytestmark = pytest.mark.integration

V1 = """mode: all_matched
rules:
  - id: big
    when: amount > 1000
    outcome: review
  - id: gone
    when: amount < 0.01
    outcome: block
"""
V2 = """mode: first_matched
rules:
  - id: big
    when: amount > 500
    outcome: block
  - id: fresh
    when: customer.tx_count_1h > 10
    outcome: review
"""


def test_publish_activate_and_list(client: redis.Redis) -> None:
    registry = RuleRegistry(client, SCHEMA)
    with pytest.raises(RegistryError, match="no active rule set"):
        registry.active()
    v1 = registry.publish(V1, message="first")
    assert v1 == content_version(V1)
    version, rs = registry.active()
    assert version == v1 and rs.version == v1 and [r.id for r in rs.rules] == ["big", "gone"]
    v2 = registry.publish(V2, activate=False)
    assert registry.active_version() == v1
    assert registry.publish(V1) == v1  # same content, same version, no new history entry
    infos = registry.versions()
    assert [(i.version, i.active, i.message) for i in infos] == [
        (v1, True, "first"),
        (v2, False, ""),
    ]
    registry.activate(v2)
    assert registry.active()[1].mode == "first_matched"
    with pytest.raises(RegistryError) as err:
        registry.activate(v2[:-1] + "x")
    assert err.value.hint == f"did you mean '{v2}'?"
    assert client.get("rules:active") == v2.encode()


def test_publish_refuses_invalid_documents(client: redis.Redis) -> None:
    registry = RuleRegistry(client, SCHEMA)
    with pytest.raises(UnknownNameError) as err:
        registry.publish(V1.replace("amount > 1000", "amout > 1000"))
    assert err.value.line == 4
    assert registry.versions() == [] and registry.active_version() is None


def test_diff(client: redis.Redis) -> None:
    registry = RuleRegistry(client, SCHEMA)
    v1, v2 = registry.publish(V1), registry.publish(V2)
    diff = registry.diff(v1, v2)
    assert (diff.added, diff.removed) == (["fresh"], ["gone"])
    assert diff.changed == {
        "big": ["outcome: 'review' -> 'block'", "when: 'amount > 1000' -> 'amount > 500'"]
    }
    assert diff.settings == ["mode: 'all_matched' -> 'first_matched'"]
    assert f"--- {v1}" in diff.text and "+  - id: fresh" in diff.text
    assert registry.diff(v1, v1).empty
    assert diff.to_dict()["added"] == ["fresh"]
    assert diff_texts(V1, V1).empty


def test_watcher_reloads_on_pointer_change(client: redis.Redis) -> None:
    registry = RuleRegistry(client, SCHEMA)
    watcher = RuleWatcher(registry)
    assert not watcher.maybe_reload() and watcher.ruleset is None
    v1 = registry.publish(V1)
    assert watcher.maybe_reload() and watcher.version == v1
    assert not watcher.maybe_reload()  # unchanged: one GET, nothing else
    v2 = registry.publish(V2)
    assert watcher.maybe_reload() and watcher.version == v2
    assert watcher.ruleset is not None and watcher.ruleset.get("fresh")


def test_watcher_keeps_working_rules_when_a_version_no_longer_compiles(
    client: redis.Redis,
) -> None:
    publisher = RuleRegistry(client, SCHEMA)
    v1 = publisher.publish(V1)
    # a worker whose feature list lacks customer_tx_count_1h
    narrow = RuleSchema.build(["customer_amount_mean_30d"])
    watcher = RuleWatcher(RuleRegistry(client, narrow))
    assert watcher.maybe_reload() and watcher.version == v1
    publisher.publish(V2)
    assert not watcher.maybe_reload()
    assert watcher.version == v1 and isinstance(watcher.error, UnknownNameError)
    assert "rules@" in str(watcher.error)
    assert not watcher.maybe_reload()  # the failed version is not retried every batch
    publisher.activate(v1)
    assert not watcher.maybe_reload() and watcher.version == v1
