"""`fraudstream cluster up|status|down` as a user runs them: subprocesses on a temp data dir."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.cluster import ClusterNode

from clikit import run_cli
from fraudstream.cluster import Layout, LocalCluster, NodeSpec, parse_cluster_url
from fraudstream.errors import ValkeyError
from fraudstream.valkey import alive


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    """A data dir whose cluster, whatever the test left running, is stopped afterwards."""
    folder = tmp_path / "data"
    try:
        yield folder
    finally:
        LocalCluster(folder).down(purge=True)


def cluster(data_dir: Path, *args: str) -> Any:
    return run_cli("cluster", *args, env={"FRAUDSTREAM_DATA_DIR": str(data_dir)}, timeout=60)


def status(data_dir: Path) -> dict[str, Any]:
    result = cluster(data_dir, "status", "--json", "--show-url")
    assert result.returncode == 0, result.stdout + result.stderr
    out: dict[str, Any] = json.loads(result.stdout)
    return out


def client_for(url: str) -> redis.RedisCluster:
    password, nodes = parse_cluster_url(url)
    startup = [ClusterNode(host, port) for host, port in nodes]  # type: ignore[no-untyped-call]
    return redis.RedisCluster(startup_nodes=startup, password=password, socket_timeout=5)


def test_up_three_primaries_serves_keys_across_slots_and_down_stops_every_node(
    data_dir: Path,
) -> None:
    up = cluster(data_dir, "up", "--nodes", "3")
    assert up.returncode == 0, up.stderr
    assert "redis+cluster://:****@127.0.0.1:" in up.stdout  # the URL, its password masked
    password = (data_dir / "cluster" / "password").read_text().strip()
    assert password not in up.stdout
    assert (data_dir / "cluster" / "password").stat().st_mode & 0o777 == 0o600

    view = status(data_dir)
    assert view["ok"] is True and len(view["nodes"]) == 3
    assert {n["role"] for n in view["nodes"]} == {"primary"}
    assert sum(n["slot_count"] for n in view["nodes"]) == 16384
    client = client_for(view["url"])
    for i in range(200):
        client.set(f"k{i}", i)
    assert [int(client.get(f"k{i}")) for i in range(200)] == list(range(200))  # type: ignore[arg-type]
    client.close()
    for node in view["nodes"]:  # the keys spread over every primary
        assert redis.Redis(port=node["port"], password=password).dbsize() > 0

    down = cluster(data_dir, "down")
    assert down.returncode == 0 and "3 nodes stopped" in down.stdout
    assert not any(alive(n["pid"]) for n in view["nodes"])

    again = cluster(data_dir, "up")  # the same nodes on their data (AOF, nodes.conf)
    assert again.returncode == 0, again.stderr
    client = client_for(status(data_dir)["url"])
    assert client.get("k7") == b"7"
    client.close()
    assert cluster(data_dir, "down", "--purge").returncode == 0
    assert not (data_dir / "cluster").exists()


def test_up_with_one_replica_per_primary_and_a_second_up_is_refused(data_dir: Path) -> None:
    up = cluster(data_dir, "up", "--replicas", "1")
    assert up.returncode == 0, up.stderr
    nodes = status(data_dir)["nodes"]
    assert len(nodes) == 6 and {n["state"] for n in nodes} == {"ok"}
    primaries = {n["port"] for n in nodes if n["role"] == "primary"}
    followed = sorted(n["primary_port"] for n in nodes if n["role"] == "replica")
    assert len(primaries) == 3 and followed == sorted(primaries)  # one replica each

    second = cluster(data_dir, "up")
    assert second.returncode == 2
    assert second.stderr.strip().splitlines() == [
        f"error: a cluster is already running from {data_dir / 'cluster'} (6 nodes; "
        "`fraudstream cluster status`)"
    ]
    assert [n["pid"] for n in status(data_dir)["nodes"]] == [n["pid"] for n in nodes]


def test_status_with_nothing_running_is_one_line_and_exit_1(data_dir: Path) -> None:
    result = cluster(data_dir, "status")
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        f"no cluster is running from {data_dir / 'cluster'} (fraudstream cluster up)"
    ]


def test_up_without_the_binary_is_one_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "valkey-server"
    with pytest.raises(
        ValkeyError, match=f"^cannot start the cluster: binary not found at {missing}$"
    ):
        LocalCluster(tmp_path, binary=missing).up()
    assert not (tmp_path / "cluster").exists()


def test_down_kills_a_node_that_no_longer_answers(data_dir: Path) -> None:
    """SHUTDOWN cannot reach a frozen node: SIGTERM, then SIGKILL after the timeout, stop it."""
    cluster_ = LocalCluster(data_dir)
    nodes = cluster_.up()
    frozen = nodes[1].pid
    assert frozen is not None
    os.kill(frozen, signal.SIGSTOP)
    assert cluster_.down(timeout_s=1) == 3
    assert not any(alive(n.pid) for n in nodes if n.pid)


def test_a_stale_pid_file_never_signals_another_process(tmp_path: Path) -> None:
    """After a crash the pid in a node's pid file may belong to any process."""
    folder = tmp_path / "cluster" / "1"
    folder.mkdir(parents=True)
    layout = Layout(3, 0, (NodeSpec(1, 2), NodeSpec(3, 4), NodeSpec(5, 6)))
    (tmp_path / "cluster" / "cluster.json").write_text(layout.to_json())
    bystander = subprocess.Popen(["sleep", "30"])
    try:
        (folder / "valkey.pid").write_text(f"{bystander.pid}\n")
        assert LocalCluster(tmp_path).down(timeout_s=1) == 0
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()
