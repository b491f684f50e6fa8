"""A local Valkey Cluster from the embedded binary: up, status, down."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from fraudstream.cli.app import app
from fraudstream.cli.common import ConfigOpt, JsonOpt, console, err_console, settings_from

if TYPE_CHECKING:
    from fraudstream.cluster import LocalCluster, NodeStatus
    from fraudstream.config import Settings

cluster_app = typer.Typer(
    no_args_is_help=True, help="A local Valkey Cluster (embedded binary) in data_dir/cluster."
)
app.add_typer(cluster_app, name="cluster")

ShowUrlOpt = Annotated[
    bool, typer.Option("--show-url", help="Print the URL with its password (a secret).")
]


def _local(settings: Settings) -> LocalCluster:
    from fraudstream.cluster import LocalCluster

    return LocalCluster(
        settings.data_path, host=settings.valkey_host, appendfsync=settings.valkey_appendfsync
    )


@cluster_app.command("up")
def cluster_up(
    nodes: Annotated[
        int | None,
        typer.Option("--nodes", help="Primaries (default 3, or the data dir's).", min=3),
    ] = None,
    replicas: Annotated[
        int | None,
        typer.Option("--replicas", help="Replicas per primary (default 0).", min=0),
    ] = None,
    show_url: ShowUrlOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Start the cluster (or restart it on its data) and wait until every node is ok."""
    cluster = _local(settings_from(config))
    statuses = cluster.up(nodes, replicas)
    table = Table("node", "port", "role", "slots", "pid")
    for s in statuses:
        table.add_row(s.node_id[:8], str(s.port), _role(s), s.slot_text, str(s.pid or "-"))
    console.print(table)
    _print_url(cluster, show_url)


@cluster_app.command("status")
def cluster_status(
    as_json: JsonOpt = False, show_url: ShowUrlOpt = False, config: ConfigOpt = None
) -> None:
    """Every node's role, state, slots and links; exit status 1 unless all are ok."""
    cluster = _local(settings_from(config))
    statuses = cluster.status() or []
    running = any(s.pid for s in statuses)
    ok = running and all(s.state == "ok" for s in statuses)
    if as_json:
        url = cluster.url(show_password=show_url) if statuses else ""
        print(json.dumps({"ok": ok, "url": url, "nodes": [s.as_dict() for s in statuses]}))
    elif not running:
        held = f"its {len(statuses)} nodes are stopped; " if statuses else ""
        err_console.print(
            f"no cluster is running from {cluster.dir} ({held}fraudstream cluster up)",
            highlight=False,
            soft_wrap=True,
        )
    else:
        console.print(_status_table(statuses))
        _print_url(cluster, show_url)
    if not ok:
        raise typer.Exit(1)


@cluster_app.command("down")
def cluster_down(
    purge: Annotated[
        bool, typer.Option("--purge", help="Also delete the nodes' data and the password.")
    ] = False,
    config: ConfigOpt = None,
) -> None:
    """Stop every node (SHUTDOWN, then SIGTERM, then SIGKILL); the data stays for `up`."""
    cluster = _local(settings_from(config))
    stopped = cluster.down(purge=purge)
    what = f"{stopped} node{'s' if stopped != 1 else ''} stopped" if stopped else "none was running"
    console.print(f"cluster: {what}" + (f", {cluster.dir} removed" if purge else ""))


def _role(status: NodeStatus) -> str:
    if status.role == "replica" and status.primary_port:
        return f"replica of {status.primary_port}"
    return status.role


def _status_table(statuses: list[NodeStatus]) -> Table:
    table = Table("port", "role", "state", "slots", "connected", "pid")
    for s in statuses:
        links = f"{s.connected}/{s.peers}" if s.pid else "-"
        pid = str(s.pid or "-")
        table.add_row(str(s.port), _role(s), s.state, s.slot_text, links, pid)
    return table


def _print_url(cluster: LocalCluster, show_url: bool) -> None:
    console.print(f"url: {cluster.url(show_password=show_url)}", highlight=False, soft_wrap=True)
    if not show_url:
        console.print("(--show-url prints it with the password)", style="dim")
