"""The models routes' work, off the event loop: list the versions, promote one (the
registry's `promote`, as `fraudstream models promote`), and retrain in a process of its own.

A retrain is ``python -m fraudstream retrain --job ID`` with this server's settings as its
environment: the scoring processes never train, and the job's state is in Valkey
(`fraudstream.models.jobs`), where every ``serve --workers N`` child reads it. The process
records its own outcome; a thread of the server process that started it only reaps it, and
records it failed (its last line on stderr) if it exited without doing so.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import msgspec
import redis

from fraudstream.config import Settings, to_environ
from fraudstream.errors import ConflictError, NotFoundError
from fraudstream.features import default_feature_set
from fraudstream.models.errors import (
    MissingKeyError,
    ModelError,
    NothingToPromoteError,
    UnknownVersionError,
)
from fraudstream.models.jobs import RetrainJob, RetrainJobs, RetrainOptions
from fraudstream.models.registry import VersionInfo, host_registry

MAX_VERSION = 64
"""Longer path segments name no version (ids are 12 hex digits)."""


class ModelList(msgspec.Struct, frozen=True):
    """The stored versions, oldest first, as `fraudstream models list --json` lists them."""

    active: str | None
    shadow: str | None
    versions: list[VersionInfo]


class ModelDesk:
    """The registry and the retrain jobs of ``settings``'s host, on ``client``."""

    def __init__(self, settings: Settings, client: redis.Redis) -> None:
        self.settings = settings
        self.registry = host_registry(settings, client)
        self.jobs = RetrainJobs(client)

    def listing(self) -> ModelList:
        """Raises: MissingKeyError: versions are stored and this host has no key."""
        self.registry.check_key()
        active, shadow = self.registry.pointers()
        return ModelList(active, shadow, self.registry.versions())

    def promote(self, version: str | None) -> ModelList:
        """Make ``version`` (default: the shadow) active once it loads and verifies here.

        Raises:
            NotFoundError: ``version`` is not stored.
            ConflictError: no shadow to promote, or the version does not load (signature,
                features): no pointer moved.
        """
        if version is not None and len(version) > MAX_VERSION:
            raise NotFoundError("version", f"unknown model version {version[:32]!r}…")
        self.registry.check_key()
        try:
            self.registry.promote(version, default_feature_set())
        except UnknownVersionError as exc:
            raise NotFoundError("version", str(exc)) from None
        except NothingToPromoteError as exc:
            raise ConflictError("version", str(exc)) from None
        except MissingKeyError:
            raise
        except ModelError as exc:
            raise ConflictError("version", f"refused: {exc}") from None
        return self.listing()

    def retrain(self, options: RetrainOptions) -> RetrainJob:
        """Queue a retrain and start its process.

        Raises:
            ConflictError: a retrain is running.
            ModelError: the process could not be started (the job is recorded failed).
        """
        job = self.jobs.open(options)
        command = [sys.executable, "-m", "fraudstream", "retrain", "--json", "--job", job.job_id]
        try:
            process = subprocess.Popen(
                [*command, *options.args()],
                env={**os.environ, **to_environ(self.settings)},
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                start_new_session=True,  # a server stopping does not stop the retrain
            )
        except OSError as exc:
            self.jobs.fail(job.job_id, f"cannot start the retrain process: {exc}")
            raise ModelError(f"retrain: cannot start its process: {exc}") from None
        reaper = threading.Thread(
            target=self._reap, args=(process, job.job_id), name="retrain-reaper", daemon=True
        )
        reaper.start()
        return job

    def _reap(self, process: subprocess.Popen[bytes], job_id: str) -> None:
        """Wait for the process; record the job failed if it exited without an outcome."""
        _, err = process.communicate()
        lines = [line for line in err.decode(errors="replace").splitlines() if line.strip()]
        code = process.returncode
        if code < 0:
            last = f"the retrain process was killed by signal {-code}"
        else:
            last = lines[-1].strip().removeprefix("error: ") if lines else f"exit status {code}"
        try:
            self.jobs.fail(job_id, last)
        except redis.RedisError:
            pass  # the slot's TTL frees it; a GET then reads the job as lost

    def job(self, job_id: str) -> RetrainJob:
        """Raises: NotFoundError: ``job_id``."""
        return self.jobs.get(job_id)
