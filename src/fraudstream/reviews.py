"""The review desk: what an analyst does with the queue, the same for the API and the CLI.

A verdict is stored (the review and its `Label`, in one database transaction) and published
to the labels stream, so the online features learn from it as from a chargeback. The label
is published before the commit: if the commit then fails, the caller retries and publishes
it again, which the feature state and the label store both absorb (a label is counted once
per transaction); the other order could commit a verdict whose label never reaches the
workers.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TypeVar

import msgspec
import sqlalchemy as sa

from fraudstream.errors import StoreError
from fraudstream.schema import Label
from fraudstream.store import migrate
from fraudstream.store import reviews as queue
from fraudstream.store.engine import describe, first_line
from fraudstream.store.reviews import Review, ReviewStatus, Verdict
from fraudstream.stream.producer import Producer

T = TypeVar("T")


class Resolution(msgspec.Struct, frozen=True):
    review: Review
    label: Label
    published: bool
    """False for a fraud verdict on a transaction whose terminal and time the store does not
    hold: the workers would refuse that label (see ``Scorer.validate_label``), so it is only
    stored."""


def usable_by_workers(label: Label) -> bool:
    """What the online features need of a label: a fraud label names its terminal and time."""
    return not label.is_fraud or (label.terminal_id is not None and label.tx_timestamp is not None)


class ReviewDesk:
    """The queue in ``engine``'s database; verdicts published through ``producer``.

    An empty database (never migrated: the server started before any sink) gets the schema
    on first use, as ``history export`` does, so the queue is empty rather than an error; a
    database at an older revision is left to ``fraudstream db upgrade``.
    """

    def __init__(
        self,
        engine: sa.Engine,
        producer: Producer,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.engine = engine
        self.producer = producer
        self.clock = clock
        self._schema_checked = False
        self._schema_lock = threading.Lock()

    def queue(self, status: ReviewStatus = "open", limit: int = 100) -> list[Review]:
        return self.read(lambda c: queue.list_reviews(c, status, limit))

    def read(self, action: Callable[[sa.Connection], T]) -> T:
        """Any read of the store (the console's drill-down too), with the desk's schema
        check and its one-line `StoreError`."""
        with self._database(), self.engine.connect() as connection:
            return action(connection)

    def claim(self, review_id: int, assignee: str) -> Review:
        """Raises:
        NotFoundError, ConflictError: see `fraudstream.store.reviews.claim`.
        """
        return self._in_transaction(
            lambda c: queue.claim(c, review_id, assignee, self.clock()),
        )

    def resolve(self, review_id: int, assignee: str, verdict: Verdict, note: str) -> Resolution:
        """Raises:
        NotFoundError, ConflictError: see `fraudstream.store.reviews.resolve`.
        """

        def store_and_publish(connection: sa.Connection) -> Resolution:
            review, label = queue.resolve(
                connection, review_id, assignee, verdict, note, self.clock()
            )
            published = usable_by_workers(label)
            if published:
                self.producer.send_labels([label])
            return Resolution(review, label, published)

        return self._in_transaction(store_and_publish)

    def _in_transaction(self, action: Callable[[sa.Connection], T]) -> T:
        with self._database(), self.engine.begin() as connection:
            return action(connection)

    @contextmanager
    def _database(self) -> Iterator[None]:
        """A database error as a one-line `StoreError` (the API answers 503, the CLI prints
        it): the store is down, locked, or not migrated yet."""
        try:
            self._ensure_schema()
            yield
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(f"database_url: {describe(self.engine)}: {first_line(exc)}") from None

    def _ensure_schema(self) -> None:
        with self._schema_lock:
            if not self._schema_checked:
                if migrate.current(self.engine) is None:
                    migrate.upgrade(self.engine)
                self._schema_checked = True
