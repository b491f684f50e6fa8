"""One error root, a subclass per subsystem.

Every error fraudstream raises on purpose derives from `FraudstreamError`, so the CLI and the
API can turn any of them into a one-line message (or one HTTP status) without a traceback.
Messages name the field and the value: ``amount: must be >= 0, got -3``.
"""

from __future__ import annotations


class FraudstreamError(Exception):
    """Root of every deliberate fraudstream error."""


class ConfigError(FraudstreamError):
    """A setting is missing, malformed or contradictory."""

    def __init__(self, key: str, problem: str) -> None:
        self.key = key
        self.problem = problem
        super().__init__(f"{key}: {problem}")


class SchemaError(FraudstreamError):
    """A record does not match its schema; `field` names where (``""`` for the whole record)."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}" if field else problem)


class ValkeyError(FraudstreamError):
    """The Valkey server could not be started, reached or stopped."""


class StoreError(FraudstreamError):
    """The SQL store could not be reached, migrated, written or read."""


class AlertError(FraudstreamError):
    """An alert could not be delivered on its channel (after its retries, or not at all)."""


class NotFoundError(FraudstreamError):
    """What a request names does not exist (an unknown review id); `field` names the part of
    the request that named it."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


class ConflictError(FraudstreamError):
    """The request contradicts the state it meets (a review claimed by someone else, or
    resolved already); asking again will not help."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


class DriftError(FraudstreamError):
    """Drift figures cannot be computed from what was given (empty or mismatched bins)."""


class StreamError(FraudstreamError):
    """A stream operation failed in a way the worker cannot absorb."""


class DataFileError(FraudstreamError):
    """A data file cannot be read or written, or its columns do not fit; names the file."""

    def __init__(self, path: object, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path}: {problem}")


class BadRowsError(DataFileError):
    """Rows of a data file break the schema: the first one (data rows from 1, the header not
    counted) and how many there are."""

    def __init__(
        self, path: object, row: int, reason: str, bad: int, total: int, *, skippable: bool = True
    ) -> None:
        self.row = row
        self.field, _, _ = reason.partition(":")
        self.reason = reason
        self.bad = bad
        self.total = total
        skip = "; --skip-invalid skips them and writes them to a rejects file" if skippable else ""
        super().__init__(path, f"row {row}: {reason} ({bad:,} of {total:,} rows are bad{skip})")
