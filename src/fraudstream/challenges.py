"""Step-up: a ``step_up`` decision holds the payment until the buyer enters a one-time code.

The flow, end to end:

1. a worker (or the API) decides ``step_up`` (a rule's outcome, or the score band
   ``[step_up_score, review)``) and streams the decision like any other;
2. the alerts consumer sends the code through a channel (the webhook, for the merchant to
   relay by SMS or in-app; or an e-mail to the customer), and the sink opens the challenge
   row (`fraudstream.store.challenges`);
3. the merchant posts what the buyer typed to ``POST /v1/challenges/{transaction_id}/verify``
   (`ChallengeDesk.verify`): the right code approves, the last allowed wrong one blocks, and
   a challenge whose time is up blocks (the sink's `ChallengeDesk.sweep` closes those nobody
   answered);
4. the final outcome is stored (the challenge row) and **streamed** as a second decision of
   the same transaction, with the reasons of the first plus ``challenge:passed`` /
   ``challenge:failed`` / ``challenge:expired``; it also replaces the kept decision, so a
   retried scoring request gets the final answer.

The code is derived, never stored: HMAC-SHA256 of the transaction id under the challenge
secret, as six digits. The alerts consumer that sends it and the API that checks it compute
the same code without sharing a table, a re-delivered step-up alert repeats the same code,
and a database dump reveals none. Six digits with at most ``challenge_attempts`` (3) tries
leave a guesser a 3-in-a-million chance.

Finals are written to the database first, then streamed (an outbox): if the stream write
fails, the row keeps ``streamed_at`` empty and the sink's sweep streams it later.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import redis
import sqlalchemy as sa

from fraudstream.config import Settings
from fraudstream.errors import ConfigError, ConflictError, NotFoundError
from fraudstream.keyfile import read_or_create
from fraudstream.schema import Decision
from fraudstream.store import challenges as table
from fraudstream.store.challenges import Challenge, ChallengeStatus
from fraudstream.store.engine import as_utc
from fraudstream.store.ondemand import OnDemandStore
from fraudstream.store.tables import decisions
from fraudstream.stream.commit import decision_entry
from fraudstream.stream.decided import DecidedStore
from fraudstream.stream.keys import StreamKeys

log = logging.getLogger(__name__)

REASON = "challenge:"
"""Prefix of the reason a final decision adds: ``challenge:passed`` and so on."""
CODE_DIGITS = 6
SECRET_FILE = "challenge.key"
RESTREAM_AFTER = timedelta(seconds=10)
"""A final the API has not marked streamed after this long is streamed by the sweep."""


def challenge_secret(settings: Settings) -> bytes:
    """``challenge_secret``, or the one generated once into ``data_dir/challenge.key``.

    Raises:
        ConfigError: a configured secret shorter than 16 bytes.
    """
    if settings.challenge_secret:
        if len(settings.challenge_secret.encode()) < 16:
            raise ConfigError("challenge_secret", "must be at least 16 bytes")
        return settings.challenge_secret.encode()
    return read_or_create(Path(settings.data_dir) / SECRET_FILE).encode()


def code_for(secret: bytes, transaction_id: str) -> str:
    """The one-time code of a transaction's challenge: six digits, leading zeros kept.

    >>> code_for(b"0123456789abcdef", "tx-1") == code_for(b"0123456789abcdef", "tx-1")
    True
    >>> len(code_for(b"0123456789abcdef", "tx-2"))
    6
    """
    mac = hmac.new(secret, f"challenge:{transaction_id}".encode(), hashlib.sha256).digest()
    return str(int.from_bytes(mac[:8], "big") % 10**CODE_DIGITS).zfill(CODE_DIGITS)


class ChallengeCode(msgspec.Struct, frozen=True, kw_only=True):
    """What a step-up alert carries for the buyer: the code and until when it is good."""

    code: str
    expires_at: datetime


@dataclass(frozen=True)
class Codes:
    """The codes of step-up decisions, as the alerts consumer sends them."""

    secret: bytes
    ttl_s: int

    @classmethod
    def from_settings(cls, settings: Settings) -> Codes:
        return cls(challenge_secret(settings), settings.challenge_ttl_s)

    def of(self, decision: Decision) -> ChallengeCode | None:
        """The code of a ``step_up`` decision (None for any other)."""
        if decision.outcome != "step_up":
            return None
        expires = decision.decided_at + timedelta(seconds=self.ttl_s)
        return ChallengeCode(
            code=code_for(self.secret, decision.transaction_id), expires_at=expires
        )


def is_final(decision: Decision) -> bool:
    """A challenge's final decision (the second decision of a stepped-up transaction)."""
    return bool(decision.reasons) and decision.reasons[-1].startswith(REASON)


def final_decision(first: Decision, status: ChallengeStatus, now: datetime) -> Decision:
    """The decision a closed challenge streams: the first one's score, versions and reasons,
    the final outcome, ``challenge:<status>`` last among the reasons; ``latency_ms`` runs
    from the transaction's arrival to now, and ``stages["challenge"]`` is the buyer's part."""
    waited = max(0.0, (now - first.decided_at).total_seconds() * 1000)
    return msgspec.structs.replace(
        first,
        outcome="approve" if status == "passed" else "block",
        reasons=[*first.reasons, f"{REASON}{status}"],
        latency_ms=first.latency_ms + waited,
        decided_at=now,
        stages={**first.stages, "challenge": waited},
    )


class ChallengeState(msgspec.Struct, frozen=True, kw_only=True):
    """What a verification (or a look) tells the merchant."""

    transaction_id: str
    status: ChallengeStatus
    outcome: str
    """``step_up`` while pending, then the final outcome (approve or block)."""
    attempts_left: int
    expires_at: datetime

    @classmethod
    def of(cls, challenge: Challenge) -> ChallengeState:
        return cls(
            transaction_id=challenge.transaction_id,
            status=challenge.status,
            outcome=challenge.final_outcome or "step_up",
            attempts_left=challenge.attempts_left,
            expires_at=challenge.expires_at,
        )


class ChallengeDesk(OnDemandStore):
    """Challenges in ``engine``'s database; finals streamed to ``keys.decisions`` and kept in
    ``decided`` (the same store the idempotent replay reads)."""

    def __init__(
        self,
        engine: sa.Engine,
        client: redis.Redis,
        settings: Settings,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        super().__init__(engine)
        self.client = client
        self.settings = settings
        self.secret = challenge_secret(settings)
        self.keys = StreamKeys.of(settings)
        self.decided = DecidedStore(client, settings.stream_prefix, settings.decision_ttl_s)
        self.clock = clock

    # --- what the API offers ----------------------------------------------------------------

    def look(self, transaction_id: str) -> ChallengeState:
        """Raises:
        NotFoundError: no challenge for that transaction (and no step-up decision kept).
        ConflictError: the transaction was decided without a step-up.
        """
        return ChallengeState.of(self.in_transaction(lambda c: self._challenge(c, transaction_id)))

    def verify(self, transaction_id: str, code: str) -> ChallengeState:
        """Check the buyer's code; a final answer is stored, then streamed.

        Raises:
            NotFoundError: no challenge for that transaction.
            ConflictError: the transaction was not stepped up, or its challenge is closed.
        """
        closed = self.in_transaction(lambda c: self._attempt(c, transaction_id, code))
        if closed.final_outcome is not None:
            self.publish([closed])
        return ChallengeState.of(closed)

    # --- what the sink runs -----------------------------------------------------------------

    def sweep(self, limit: int = 500) -> int:
        """Expire the challenges whose time is up, and stream every final not streamed yet
        (the ones just expired, and any the API left behind); returns how many it streamed."""
        now = self.clock()
        with self.database(), self.engine.begin() as connection:
            table.expire_due(connection, now)
            behind = table.unstreamed(connection, now, limit)
        left_behind = now - RESTREAM_AFTER
        fresh = [
            c for c in behind if c.status == "expired" or (c.resolved_at or now) <= left_behind
        ]
        self.publish(fresh)
        return len(fresh)

    def publish(self, closed: Sequence[Challenge]) -> None:
        """Stream the finals of ``closed``, replace their kept decisions, then mark them
        streamed. A Valkey failure leaves them unmarked, for the next sweep."""
        if not closed:
            return
        now = self.clock()
        firsts = self._first_decisions([c.transaction_id for c in closed])
        finals = [
            final_decision(firsts[c.transaction_id], c.status, c.resolved_at or now)
            for c in closed
            if c.transaction_id in firsts
        ]
        try:
            pipe = self.client.pipeline(transaction=False)
            for final in finals:
                pipe.xadd(
                    self.keys.decisions,
                    decision_entry(final, None),
                    maxlen=self.settings.decisions_maxlen,
                    approximate=True,
                )
            self.decided.queue_replace(pipe, finals)
            pipe.execute()
        except redis.RedisError as exc:
            log.warning("challenge finals not streamed yet (%s); the sink's sweep retries", exc)
            return
        lost = [c.transaction_id for c in closed if c.transaction_id not in firsts]
        if lost:  # kept nowhere any more (the store never had it, Valkey's copy expired)
            log.warning("no first decision for %d closed challenges: not streamed", len(lost))
        with self.database(), self.engine.begin() as connection:
            done = [f.transaction_id for f in finals] + lost  # neither is tried again
            table.mark_streamed(connection, done, now)

    # --- inside a database transaction --------------------------------------------------------

    def _attempt(self, connection: sa.Connection, transaction_id: str, code: str) -> Challenge:
        """Spend one attempt of the challenge (compare-and-set on the attempts read)."""
        right = hmac.compare_digest(code.encode(), code_for(self.secret, transaction_id).encode())
        while True:
            seen = self._challenge(connection, transaction_id)
            if seen.status != "pending":
                raise ConflictError(
                    "transaction_id",
                    f"the challenge of {transaction_id!r} is {seen.status} already"
                    f" (final outcome {seen.final_outcome})",
                )
            now = self.clock()
            attempts = seen.attempts + 1
            status: ChallengeStatus
            if now >= seen.expires_at:
                status, attempts = "expired", seen.attempts
            elif right:
                status = "passed"
            else:
                status = "failed" if attempts >= seen.max_attempts else "pending"
            if table.settle(connection, seen, status, attempts, now):
                return self._challenge(connection, transaction_id)

    def _challenge(self, connection: sa.Connection, transaction_id: str) -> Challenge:
        """The stored challenge; opened here from the kept decision when the sink has not
        opened it yet (the merchant may be quicker than the sink)."""
        found = table.get_challenge(connection, transaction_id)
        if found is not None:
            return found
        first = self._first_decisions([transaction_id], connection).get(transaction_id)
        if first is None:  # no step-up: decided otherwise, or not at all
            kept = self.decided.get(transaction_id)
            if kept is None:
                raise NotFoundError("transaction_id", f"no challenge for {transaction_id!r}")
            raise ConflictError(
                "transaction_id",
                f"{transaction_id!r} was decided {kept.outcome}, without a step-up challenge",
            )
        table.open_challenges(
            connection,
            [first],
            self.settings.challenge_ttl_s,
            self.settings.challenge_attempts,
        )
        opened = table.get_challenge(connection, transaction_id)
        assert opened is not None  # just inserted, or inserted by a racing opener
        return opened

    def _first_decisions(
        self, transaction_ids: list[str], connection: sa.Connection | None = None
    ) -> dict[str, Decision]:
        """The stored step-up decisions of these transactions (the sink's rows), else the
        kept ones (the decisions the workers and the API keep in Valkey)."""
        query = sa.select(decisions).where(
            decisions.c.transaction_id.in_(transaction_ids), decisions.c.outcome == "step_up"
        )

        def rows_of(c: sa.Connection) -> list[sa.RowMapping]:
            return list(c.execute(query).mappings())

        rows = rows_of(connection) if connection is not None else self.read(rows_of)
        found = {row["transaction_id"]: _decision(row) for row in rows}
        missing = [t for t in transaction_ids if t not in found]
        for tx, kept in zip(missing, self.decided.get_many(missing), strict=True):
            if kept is not None and kept.outcome == "step_up":
                found[tx] = kept
        return found


def _decision(row: sa.RowMapping) -> Decision:
    """A stored decision as the stream carried it (times UTC-aware on both dialects)."""
    return Decision(
        transaction_id=row["transaction_id"],
        score=row["score"],
        outcome=row["outcome"],
        reasons=list(row["reasons"]),
        model_version=row["model_version"],
        rules_version=row["rules_version"],
        latency_ms=row["latency_ms"],
        decided_at=as_utc(row["decided_at"]),
        shadow=list(row["shadow"] or []),
        stages=dict(row["stage_ms"] or {}),
    )
