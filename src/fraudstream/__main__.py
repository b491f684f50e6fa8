"""`python -m fraudstream` runs the CLI (used for worker subprocesses)."""

from __future__ import annotations

from fraudstream.cli import main

main()
