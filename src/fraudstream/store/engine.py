"""Which database, and an engine tuned for it: SQLite (WAL) in the data dir, or PostgreSQL.

SQLite is the laptop default (nothing to run); PostgreSQL is for a shared, durable record.
The sink is the only steady writer, so SQLite in WAL mode keeps up and lets readers (an
export, a report) run beside it; ``busy_timeout`` makes a briefly locked file a wait, not an
error.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any, overload

import msgspec
import sqlalchemy as sa

from fraudstream.config import Settings, mask_url
from fraudstream.errors import StoreError

SQLITE_FILE = "fraudstream.db"
BUSY_TIMEOUT_MS = 5_000
_json_encoder = msgspec.json.Encoder()


def database_url(settings: Settings) -> str:
    """``database_url``, or the SQLite file in the data dir when it is empty."""
    if settings.database_url:
        return settings.database_url
    return f"sqlite:///{Path(settings.data_dir).resolve() / SQLITE_FILE}"


def create_engine(url: str, *, busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> sa.Engine:
    """An engine for ``url``; a SQLite file (and its folder) is created on first use.
    ``busy_timeout_ms``: how long a SQLite write waits for a lock before it fails.

    Raises:
        StoreError: ``database_url: …`` when the URL or its driver is not usable.
    """
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError as exc:
        raise StoreError(f"database_url: not a database URL: {mask_url(url)!r} ({exc})") from None
    if parsed.get_backend_name() == "sqlite":
        return _sqlite(parsed, busy_timeout_ms)
    if parsed.get_backend_name() == "postgresql":
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        return _engine(parsed, pool_pre_ping=True)
    raise StoreError(
        f"database_url: only sqlite and postgresql are supported, got {parsed.get_backend_name()}"
    )


def _sqlite(url: sa.URL, busy_timeout_ms: int) -> sa.Engine:
    if url.database and url.database != ":memory:":
        try:
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"database_url: cannot create {url.database}: {exc}") from None
    engine = _engine(url, connect_args={"timeout": busy_timeout_ms / 1000})

    @sa.event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")  # a commit survives power loss: we ack after it
        cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
        cursor.close()

    return engine


def _json(value: Any) -> str:
    """msgspec, not ``json.dumps``: JSON columns are half the cost of a row otherwise."""
    return _json_encoder.encode(value).decode()


def _engine(url: sa.URL, **kwargs: Any) -> sa.Engine:
    try:
        return sa.create_engine(url, json_serializer=_json, **kwargs)
    except ImportError as exc:
        raise StoreError(f"database_url: driver not installed: {exc}") from None
    except sa.exc.ArgumentError as exc:
        raise StoreError(f"database_url: {exc}") from None


def describe(engine: sa.Engine) -> str:
    """The URL with its password hidden, for messages and progress lines."""
    return engine.url.render_as_string(hide_password=True)


def first_line(exc: BaseException) -> str:
    """The driver's own message, first line only (SQLAlchemy wraps it in several more)."""
    cause = getattr(exc, "orig", None) or exc
    return (str(cause).strip().splitlines() or [type(cause).__name__])[0]


@overload
def as_utc(moment: datetime) -> datetime: ...
@overload
def as_utc(moment: None) -> None: ...
def as_utc(moment: datetime | None) -> datetime | None:
    """A time read back from the store, UTC-aware: SQLite gives back naive UTC, PostgreSQL
    the session's zone (``None`` stays ``None``)."""
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
