"""The retrain slot and the jobs' records in Valkey, as the API and `retrain --job` use them."""

from __future__ import annotations

from datetime import date

import pytest
import redis

from fraudstream.errors import ConflictError, NotFoundError, SchemaError
from fraudstream.models.jobs import LOST, RetrainJobs, RetrainOptions, one_line


def test_one_job_holds_the_slot_until_it_records_its_outcome(client: redis.Redis) -> None:
    jobs = RetrainJobs(client)
    job = jobs.open(RetrainOptions(train_days=21))
    with pytest.raises(ConflictError, match=job.job_id):
        jobs.open(RetrainOptions())
    running = jobs.start(job.job_id, pid=4321)
    assert jobs.get(job.job_id) == running and running.state == "running"
    with jobs.beating(job.job_id):
        assert 0 < client.ttl(jobs.lock_key) <= 120  # renewed to the running TTL
    outcome = {"version": "abc", "shadow": True, "active": None}
    done = jobs.finish(running, "succeeded", outcome)
    assert jobs.get(job.job_id) == done and (done.version, done.error) == ("abc", None)
    assert jobs.holder() is None
    assert jobs.open(RetrainOptions()).job_id != job.job_id


def test_a_job_whose_slot_is_gone_reads_as_lost(client: redis.Redis) -> None:
    jobs = RetrainJobs(client)
    job = jobs.open(RetrainOptions())
    jobs.start(job.job_id, pid=1)
    client.delete(jobs.lock_key)  # its TTL ran out: the process died with its server
    lost = jobs.get(job.job_id)
    assert (lost.state, lost.error) == ("failed", LOST)
    assert jobs.fail(job.job_id, "later") == lost  # an outcome is never overwritten
    with pytest.raises(NotFoundError, match="job_id"):
        jobs.get("0" * 32)
    with pytest.raises(NotFoundError, match="job_id"):
        jobs.get("../../etc")


def test_options_are_the_cli_flags_and_errors_are_one_line() -> None:
    options = RetrainOptions(train_end=date(2018, 5, 1), train_days=21)
    assert options.args() == [
        *("--delay-days", "7", "--test-days", "7"),
        *("--train-end", "2018-05-01", "--train-days", "21"),
    ]
    assert one_line(SchemaError("amount", "must be > 0, got -3")) == "amount: must be > 0, got -3"
    assert one_line(ValueError("bad\nsecond line")) == "ValueError: bad"
    assert one_line(KeyboardInterrupt()) == "KeyboardInterrupt"
