"""The review desk: what an analyst does with the queue, the same for the API and the CLI.

A verdict is stored (the review and its `Label`, in one database transaction) and published
to the labels stream, so the online features learn from it as from a chargeback. The label
is published before the commit: if the commit then fails, the caller retries and publishes
it again, which the feature state and the label store both absorb (a label is counted once
per transaction); the other order could commit a verdict whose label never reaches the
workers.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import msgspec
import sqlalchemy as sa

from fraudstream.schema import Label
from fraudstream.store import reviews as queue
from fraudstream.store.ondemand import OnDemandStore
from fraudstream.store.reviews import Review, ReviewStatus, Verdict
from fraudstream.stream.producer import Producer


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


class ReviewDesk(OnDemandStore):
    """The queue in ``engine``'s database; verdicts published through ``producer``."""

    def __init__(
        self,
        engine: sa.Engine,
        producer: Producer,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        super().__init__(engine)
        self.producer = producer
        self.clock = clock

    def queue(self, status: ReviewStatus = "open", limit: int = 100) -> list[Review]:
        return self.read(lambda c: queue.list_reviews(c, status, limit))

    def claim(self, review_id: int, assignee: str) -> Review:
        """Raises:
        NotFoundError, ConflictError: see `fraudstream.store.reviews.claim`.
        """
        return self.in_transaction(
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

        return self.in_transaction(store_and_publish)
