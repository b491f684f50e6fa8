"""`fraudstream …` commands. Heavy imports live inside commands so `--help` stays instant."""

from __future__ import annotations

import sys

from fraudstream.cli import (  # noqa: F401  (the modules register their commands)
    admin,
    alerts,
    cluster,
    data,
    drift,
    features,
    keys,
    loadtest,
    models,
    pipeline,
    reviews,
    rules,
    store,
)
from fraudstream.cli.app import app, summarize
from fraudstream.cli.common import err_console
from fraudstream.errors import FraudstreamError

__all__ = ["app", "main"]

summarize(app)


def main() -> None:
    """Entry point: every deliberate error is one line on stderr, exit status 2."""
    try:
        app()
    except FraudstreamError as exc:
        err_console.print(f"[red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except OSError as exc:
        # A file or folder that cannot be read or written (an unwritable --out, a full
        # disk): the path and the reason are all the user needs, not a traceback.
        where = f"{exc.filename}: " if exc.filename else ""
        err_console.print(
            f"[red]error:[/] {where}{exc.strerror or exc}", highlight=False, soft_wrap=True
        )
        sys.exit(2)
