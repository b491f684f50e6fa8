"""Alembic's entry point: run the migrations on the connection `migrate.upgrade` hands over."""

from __future__ import annotations

from fraudstream.store.migrate import run_migrations

run_migrations()
