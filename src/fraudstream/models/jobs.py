"""Retrain jobs: one `fraudstream retrain` at a time, its state in Valkey where every server
process (``serve --workers N``) reads it.

The API queues a job (`RetrainJobs.open`, which takes the one retrain slot) and starts
``fraudstream retrain --job ID`` in its own process; that process records itself running,
renews the slot while it works (`RetrainJobs.beating`), and records its outcome: the new
version and its comparison with the active one, or its error in one line. A process that
dies without a word frees the slot within `LOCK_TTL_S`, and its job reads as failed.

Keys (hash tag ``{models}``, beside the registry's pointers):

- ``{models}:retrain:lock`` — STRING: the id of the job holding the slot, with a TTL.
- ``{models}:retrain:job:{id}`` — STRING: the job as JSON (`RetrainJob`), kept `JOB_TTL_S`
  after its last change.
"""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

import msgspec
import redis

from fraudstream.errors import ConflictError, FraudstreamError, NotFoundError
from fraudstream.stream.leases import RELEASE_LUA, RENEW_LUA

JobState = Literal["queued", "running", "succeeded", "failed"]
FINAL: tuple[JobState, ...] = ("succeeded", "failed")
JOB_ID = re.compile(r"^[0-9a-f]{32}$")
JOB_TTL_S = 7 * 86_400
"""How long a job's record is kept after its last change."""
START_TTL_S = 300
"""The slot's TTL between queueing and the process's first beat (its imports are slow)."""
LOCK_TTL_S = 120
"""The slot's TTL once the process beats: how long a dead process holds it at most."""
BEAT_S = 10.0
LOST = "the retrain process stopped without recording its outcome"


class RetrainOptions(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Body of ``POST /v1/models/retrain``: the `fraudstream retrain` options an API caller
    may set (the store is always the server's own)."""

    train_end: date | None = None
    """Last training day (default: from the data's end)."""
    train_days: Annotated[int, msgspec.Meta(ge=1, le=3650)] | None = None
    """Training window in days (default: 56, or as many as the data holds, at least 7)."""
    delay_days: Annotated[int, msgspec.Meta(ge=0, le=365)] = 7
    """Delay period dropped between train and test."""
    test_days: Annotated[int, msgspec.Meta(ge=1, le=365)] = 7
    """Test period in days."""

    def args(self) -> list[str]:
        """The same options as `fraudstream retrain` flags."""
        out = ["--delay-days", str(self.delay_days), "--test-days", str(self.test_days)]
        if self.train_end is not None:
            out += ["--train-end", self.train_end.isoformat()]
        if self.train_days is not None:
            out += ["--train-days", str(self.train_days)]
        return out


class RetrainJob(msgspec.Struct, frozen=True, omit_defaults=True):
    """A retrain's state: queued, running, then succeeded (with the new version) or failed
    (with its error)."""

    job_id: str
    state: JobState
    options: RetrainOptions
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    pid: int | None = None
    """The retrain process, once running."""
    version: str | None = None
    """The version trained (succeeded)."""
    shadow: bool | None = None
    """Whether it became the shadow (false: it is the active version's very artifact)."""
    active: str | None = None
    """The active version it was compared with."""
    comparison: dict[str, Any] | None = None
    """Active (a) vs new (b) on the latest labelled weeks, as `fraudstream retrain --json`."""
    error: str | None = None
    """Why it failed, in one line."""


class RetrainJobs:
    """The retrain slot and the jobs' records on ``client`` (any Valkey or Cluster)."""

    def __init__(self, client: redis.Redis, prefix: str = "models") -> None:
        self.client = client
        tag = "{" + prefix + "}"
        self.lock_key = f"{tag}:retrain:lock"
        self._job_prefix = f"{tag}:retrain:job:"
        # The slot is a lease: renewed or freed only by the job holding it.
        self._renew = client.register_script(RENEW_LUA)
        self._release = client.register_script(RELEASE_LUA)

    def job_key(self, job_id: str) -> str:
        return self._job_prefix + job_id

    def open(self, options: RetrainOptions) -> RetrainJob:
        """Queue a job holding the retrain slot.

        Raises:
            ConflictError: another job holds the slot (naming it).
        """
        job = RetrainJob(uuid.uuid4().hex, "queued", options, _now())
        if not self.client.set(self.lock_key, job.job_id, nx=True, ex=START_TTL_S):
            holder = _text(self.client.get(self.lock_key))
            raise ConflictError("retrain", f"retrain job {holder} is running: one at a time")
        self._write(job)
        return job

    def get(self, job_id: str) -> RetrainJob:
        """The job; one still queued or running whose process no longer holds the slot is
        recorded failed (`LOST`).

        Raises:
            NotFoundError: ``job_id`` (unknown, or expired).
        """
        job = self._read(job_id)
        if job.state not in FINAL and self.holder() != job_id:
            job = self._read(job_id)  # its process writes the outcome before freeing the slot
            if job.state not in FINAL:
                job = self.finish(job, "failed", {"error": LOST})
        return job

    def holder(self) -> str | None:
        raw = self.client.get(self.lock_key)
        return None if raw is None else _text(raw)

    def start(self, job_id: str, pid: int) -> RetrainJob:
        """Record the job running in process ``pid``.

        Raises:
            NotFoundError: ``job_id``.
            ConflictError: the job is over, or another holds the slot.
        """
        job = self._read(job_id)
        if job.state in FINAL or self.holder() != job_id:
            raise ConflictError("job_id", f"retrain job {job_id} is not queued: {job.state}")
        running = msgspec.structs.replace(job, state="running", pid=pid, started_at=_now())
        self._write(running)
        return running

    def finish(self, job: RetrainJob, state: JobState, outcome: Mapping[str, Any]) -> RetrainJob:
        """Record the outcome (``version``, ``shadow``, ``active``, ``comparison``, or
        ``error``), then free the slot if the job holds it."""
        fields = {k: outcome.get(k) for k in ("version", "shadow", "active", "comparison", "error")}
        done = msgspec.structs.replace(job, state=state, finished_at=_now(), **fields)
        self._write(done)
        self._release(keys=[self.lock_key], args=[job.job_id])
        return done

    def fail(self, job_id: str, error: str) -> RetrainJob | None:
        """Record a job failed unless it is over already, and free its slot; its record."""
        try:
            job = self._read(job_id)
        except NotFoundError:
            job = None
        if job is not None and job.state not in FINAL:
            return self.finish(job, "failed", {"error": error})
        self._release(keys=[self.lock_key], args=[job_id])
        return job

    @contextmanager
    def beating(self, job_id: str) -> Iterator[None]:
        """Renew the job's slot every `BEAT_S` seconds while the block runs (in a thread:
        training holds this one for minutes)."""
        stop = threading.Event()

        def beat() -> None:
            while True:
                try:
                    self._renew(keys=[self.lock_key], args=[job_id, LOCK_TTL_S * 1000])
                except redis.RedisError:
                    pass  # the next beat tries again; the TTL covers a few misses
                if stop.wait(BEAT_S):
                    return

        thread = threading.Thread(target=beat, name=f"retrain-beat-{job_id[:8]}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def _read(self, job_id: str) -> RetrainJob:
        raw = self.client.get(self.job_key(job_id)) if JOB_ID.match(job_id) else None
        if raw is None:
            raise NotFoundError("job_id", f"no retrain job {job_id[:40]!r}")
        return msgspec.json.decode(raw, type=RetrainJob)

    def _write(self, job: RetrainJob) -> None:
        self.client.set(self.job_key(job.job_id), msgspec.json.encode(job), ex=JOB_TTL_S)


def one_line(exc: BaseException) -> str:
    """An error as the job records it: the CLI's one line for a deliberate error, else the
    exception's type and first line."""
    format_message = getattr(exc, "format_message", None)  # click's usage errors
    text = str(format_message() if callable(format_message) else exc).strip()
    first = text.splitlines()[0] if text else ""
    if isinstance(exc, FraudstreamError) or callable(format_message):
        return first or type(exc).__name__
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def _now() -> datetime:
    return datetime.now(UTC)


def _text(raw: Any) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)
