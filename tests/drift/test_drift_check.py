"""`fraudstream drift check` against the fleet's windows in Valkey and a real webhook
receiver: one alert per episode, a new one after the drift has passed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import redis

from alertkit import SECRET, webhook_receiver
from clikit import run_cli
from driftkit import made_reference, window
from fraudstream.drift.fleet import fleet_figures, publish, windows_key


def test_the_fleet_sums_live_windows_and_drops_stale_ones(client: redis.Redis) -> None:
    rng = np.random.default_rng(5)
    ref = made_reference(rng)
    publish(client, "tx", "w1", window(ref, rng, 0.0))
    publish(client, "tx", "w2", window(ref, rng, 0.0))
    client.hset(windows_key("tx"), "w3", b"not json")
    [figures] = fleet_figures(client, "tx")
    worst = figures.worst()
    assert figures.rows == 4_000 and worst is not None and worst < 0.1
    assert set(client.hkeys(windows_key("tx"))) == {b"w1", b"w2"}
    assert fleet_figures(client, "tx", stale_s=-1.0) == []
    assert client.hlen(windows_key("tx")) == 0


def test_drift_check_alerts_once_per_episode(
    client: redis.Redis, valkey_url: str, tmp_path: Path
) -> None:
    rng = np.random.default_rng(6)
    ref = made_reference(rng)
    with webhook_receiver() as receiver:
        env = {
            "FRAUDSTREAM_DATA_DIR": str(tmp_path),
            "FRAUDSTREAM_ALERTS_WEBHOOK_URL": receiver.url,
            "FRAUDSTREAM_ALERTS_WEBHOOK_SECRET": SECRET,
        }
        publish(client, "tx", "w1", window(ref, rng, 1.5))
        first = run_cli("drift", "check", "--json", env=env, valkey_url=valkey_url)
        again = run_cli("drift", "check", "--json", env=env, valkey_url=valkey_url)
        assert (first.returncode, again.returncode) == (1, 1), first.stderr
        [checked] = json.loads(first.stdout)
        assert checked["over"] == ["a"] and checked["sent"] == ["webhook"]
        assert json.loads(again.stdout)[0]["sent"] == []
        publish(client, "tx", "w1", window(ref, rng, 0.0))  # calm again: the episode ends
        calm = run_cli("drift", "check", env=env, valkey_url=valkey_url)
        assert calm.returncode == 0 and "stable" in calm.stdout, calm.stderr
        publish(client, "tx", "w1", window(ref, rng, 1.5))
        assert run_cli("drift", "check", env=env, valkey_url=valkey_url).returncode == 1
        received = receiver.wait_for(2)
    assert len(received) == 2 and all(r.verified for r in received)
    assert json.loads(received[0].body)["feature_psi"]["a"] > 0.25
