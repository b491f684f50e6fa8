"""Configuration and the embedded server."""

from __future__ import annotations

import json

import typer
from rich.table import Table

from fraudstream.cli.app import config_app, valkey_app
from fraudstream.cli.common import (
    ConfigOpt,
    JsonOpt,
    console,
    settings_from,
)
from fraudstream.config import public_view


@config_app.command("show")
def config_show(as_json: JsonOpt = False, config: ConfigOpt = None) -> None:
    """Print the effective settings (defaults <- file <- environment), secrets masked."""
    view = public_view(settings_from(config))
    if as_json:
        print(json.dumps(view))
        return
    table = Table("setting", "value", "environment variable")
    for key, value in view.items():
        table.add_row(key, str(value), f"FRAUDSTREAM_{key.upper()}")
    console.print(table)


@valkey_app.command("start")
def valkey_start(config: ConfigOpt = None) -> None:
    """Start the embedded server (or report the running one)."""
    from fraudstream.valkey import embedded

    settings = settings_from(config)
    if settings.valkey_url:
        raise typer.BadParameter(
            "valkey_url is set: fraudstream starts no server", param_hint="FRAUDSTREAM_VALKEY_URL"
        )
    info = embedded(settings).ensure()
    console.print(
        f"valkey running on {info.host}:{info.port} (pid {info.pid}), "
        f"data in {settings.data_path / 'valkey'}"
    )


@valkey_app.command("stop")
def valkey_stop(config: ConfigOpt = None) -> None:
    """Stop the embedded server (its AOF is flushed)."""
    from fraudstream.valkey import embedded

    stopped = embedded(settings_from(config)).stop()
    console.print("valkey stopped" if stopped else "valkey was not running")


@valkey_app.command("status")
def valkey_status(config: ConfigOpt = None) -> None:
    """Say whether the embedded server is running, and where."""
    from fraudstream.valkey import embedded

    info = embedded(settings_from(config)).status()
    if info is None:
        console.print("valkey is not running")
        raise typer.Exit(1)
    console.print(f"valkey running on {info.host}:{info.port} (pid {info.pid})")
