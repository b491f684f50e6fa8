"""The Typer application and its sub-applications (commands register themselves on them)."""

from __future__ import annotations

import typer

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="Real-time fraud detection and transaction risk scoring.",
)
config_app = typer.Typer(no_args_is_help=True, help="Inspect the effective configuration.")
valkey_app = typer.Typer(no_args_is_help=True, help="Manage the embedded Valkey server.")
app.add_typer(config_app, name="config")
app.add_typer(valkey_app, name="valkey")
