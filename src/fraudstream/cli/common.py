"""What every command shares: consoles, common options, settings and the connection."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from fraudstream.config import Settings, load_settings

if TYPE_CHECKING:
    import redis

console = Console()
err_console = Console(stderr=True)

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="TOML config file (default ./fraudstream.toml).",
        envvar="FRAUDSTREAM_CONFIG",
        show_envvar=True,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print figures as one JSON object.")]


def settings_from(config: Path | None, **overrides: Any) -> Settings:
    """Settings from the four layers; ``overrides`` are the command's own flags."""
    return load_settings(config_file=config, overrides=overrides)


def connect(settings: Settings, *, timeout_s: float | None = None) -> redis.Redis:
    from fraudstream.valkey import connect as valkey_connect

    return valkey_connect(settings, timeout_s=timeout_s)
