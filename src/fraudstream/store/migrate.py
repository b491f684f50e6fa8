"""Schema migrations (Alembic), applied by the sink on start and by `fraudstream db upgrade`.

The scripts ship inside the package (``fraudstream/store/migrations``) and run on a connection
we hand over, so no ``alembic.ini`` and no second URL setting exist. For a new revision:
``alembic -c src/fraudstream/store/migrations/alembic.ini revision --autogenerate -m …``.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command, context
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from fraudstream.errors import StoreError
from fraudstream.store.engine import describe, first_line
from fraudstream.store.tables import metadata

SCRIPTS = "fraudstream.store:migrations"
LOCK_ID = 0x66737462  # "fstb": the advisory lock migrations take on PostgreSQL
log = logging.getLogger(__name__)


def _config(connection: sa.Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", SCRIPTS)
    config.attributes["connection"] = connection
    return config


def upgrade(engine: sa.Engine, revision: str = "head") -> str | None:
    """Bring the schema to ``revision``; returns the revision it is at afterwards.

    Processes started together on a new database (a sink and an alerts consumer) take turns
    (`_exclusive`): the second finds the schema the first made, instead of failing on a
    table that appeared under it.

    Raises:
        StoreError: the database is unreachable or a migration failed.
    """
    try:
        with _exclusive(engine):
            before = current(engine)
            with engine.begin() as connection:
                if connection.dialect.name == "postgresql":
                    connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({LOCK_ID})")
                command.upgrade(_config(connection), revision)
            after = current(engine)
    except sa.exc.SQLAlchemyError as exc:
        raise StoreError(
            f"database_url: migrating {describe(engine)} failed: {first_line(exc)}"
        ) from exc
    if after != before:
        log.info("schema of %s migrated: %s -> %s", describe(engine), before, after)
    return after


@contextlib.contextmanager
def _exclusive(engine: sa.Engine) -> Iterator[None]:
    """One migrating process at a time on a SQLite file: an advisory lock on a file beside
    it (SQLite runs DDL outside the migration's transaction, so its own locks cannot order
    two migrations). PostgreSQL's transactional DDL is ordered by an advisory lock instead."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        yield
        return
    lock = Path(f"{database}.migrate.lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def current(engine: sa.Engine) -> str | None:
    """The revision the database is at (``None``: never migrated)."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head() -> str | None:
    """The newest revision shipped with this version of fraudstream."""
    return ScriptDirectory.from_config(_config()).get_current_head()


def run_migrations() -> None:
    """Body of ``env.py``: online mode on the handed-over connection (or a URL for the
    ``alembic`` command line, from ``sqlalchemy.url`` of its ini file)."""
    config = context.config
    connection: sa.Connection | None = config.attributes.get("connection")
    options: dict[str, Any] = {"target_metadata": metadata, "render_as_batch": True}
    if connection is not None:
        context.configure(connection=connection, **options)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = sa.create_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.begin() as connection:
        context.configure(connection=connection, **options)
        with context.begin_transaction():
            context.run_migrations()
