"""The store suite runs on SQLite and on PostgreSQL: every test taking ``database_url`` runs
once per dialect.

PostgreSQL is a throw-away cluster (`fraudstream.store.scratch`) started once per session on a
temp dir, unix socket only; each test gets a database of its own. ``make test`` installs the
server where it is missing; ``FRAUDSTREAM_TEST_DATABASE_URL`` points the suite at an existing
server instead (its user must be allowed to create databases).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from fraudstream.store.engine import create_engine
from fraudstream.store.scratch import ScratchPostgres


@pytest.fixture(scope="session")
def postgres() -> Iterator[ScratchPostgres | str]:
    """The session's PostgreSQL: a scratch cluster, or the URL of an external server."""
    external = os.environ.get("FRAUDSTREAM_TEST_DATABASE_URL")
    if external:
        yield external
        return
    cluster = ScratchPostgres().start()
    try:
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL of an empty database, SQLite file or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    server: ScratchPostgres | str = request.getfixturevalue("postgres")
    base = server if isinstance(server, str) else server.url
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base).execution_options(isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield sa.make_url(base).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture
def engine(database_url: str) -> Iterator[sa.Engine]:
    made = create_engine(database_url, busy_timeout_ms=200)
    try:
        yield made
    finally:
        made.dispose()
