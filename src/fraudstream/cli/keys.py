"""Scoped API keys: create (shown once), list, revoke."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.table import Table

from fraudstream.cli.app import app
from fraudstream.cli.common import ConfigOpt, JsonOpt, connect, console, err_console, settings_from

keys_app = typer.Typer(no_args_is_help=True, help="Scoped keys of the HTTP API.")
app.add_typer(keys_app, name="keys")

ScopeOpt = Annotated[
    list[str],
    typer.Option(
        "--scope",
        help="score, ingest, labels, read, review or admin (repeat for several).",
        show_default=False,
    ),
]


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option("--name", help="Who or what uses the key.")],
    scope: ScopeOpt,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Create a key and print it once: only its hash is stored."""
    from fraudstream.api.keys import KeyStore, check_scopes

    scopes = check_scopes(scope)
    secret = KeyStore(connect(settings_from(config))).create(name, scopes)
    if as_json:
        print(json.dumps({"name": name, "scopes": scopes, "key": secret}))
        return
    err_console.print(f"key {name!r} with scopes {', '.join(scopes)} (shown once, keep it):")
    print(secret)


@keys_app.command("list")
def keys_list(as_json: JsonOpt = False, config: ConfigOpt = None) -> None:
    """The keys (names and scopes; the secrets are not stored)."""
    from fraudstream.api.keys import KeyStore

    keys = KeyStore(connect(settings_from(config))).list()
    if as_json:
        rows = [
            {"name": k.name, "scopes": sorted(k.scopes), "created_at": k.created_at} for k in keys
        ]
        print(json.dumps(rows))
        return
    table = Table("name", "scopes", "created")
    for k in keys:
        created = datetime.fromtimestamp(k.created_at, UTC).strftime("%Y-%m-%d %H:%M UTC")
        table.add_row(k.name, ", ".join(sorted(k.scopes)), created)
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(
    name: Annotated[str, typer.Argument(help="The key's name.")], config: ConfigOpt = None
) -> None:
    """Revoke a key: servers refuse it within seconds."""
    from fraudstream.api.keys import KeyStore
    from fraudstream.errors import ConfigError

    if not KeyStore(connect(settings_from(config))).revoke(name):
        raise ConfigError("name", f"no key named {name!r}")
    console.print(f"key {name!r} revoked")
