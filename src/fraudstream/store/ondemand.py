"""`OnDemandStore`: the store as the API and the CLI's desks (reviews, challenges) use it."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import sqlalchemy as sa

from fraudstream.errors import StoreError
from fraudstream.store import migrate
from fraudstream.store.engine import describe, first_line

T = TypeVar("T")


class OnDemandStore:
    """What a desk of the API and the CLI (reviews, challenges) needs of ``engine``: a
    database error as one line, and a schema created on first use.

    An empty database (never migrated: the server started before any sink) gets the schema
    on first use, as ``history export`` does, so a queue is empty rather than an error; a
    database at an older revision is left to ``fraudstream db upgrade``.
    """

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self._schema_checked = False
        self._schema_lock = threading.Lock()

    def read(self, action: Callable[[sa.Connection], T]) -> T:
        """Any read of the store (the console's drill-down too), with the schema check and
        the one-line `StoreError`."""
        with self.database(), self.engine.connect() as connection:
            return action(connection)

    def in_transaction(self, action: Callable[[sa.Connection], T]) -> T:
        with self.database(), self.engine.begin() as connection:
            return action(connection)

    @contextmanager
    def database(self) -> Iterator[None]:
        """A database error as a one-line `StoreError` (the API answers 503, the CLI prints
        it): the store is down, locked, or not migrated yet."""
        try:
            with self._schema_lock:
                if not self._schema_checked:
                    if migrate.current(self.engine) is None:
                        migrate.upgrade(self.engine)
                    self._schema_checked = True
            yield
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(f"database_url: {describe(self.engine)}: {first_line(exc)}") from None
