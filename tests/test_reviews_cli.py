"""`fraudstream reviews list|claim|resolve` as a user runs them: a table, one-line errors."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import redis

from clikit import run_cli
from fraudstream.schema import decode_label
from fraudstream.store import migrate
from fraudstream.store.engine import create_engine
from fraudstream.store.reviews import open_reviews
from fraudstream.store.write import store_decisions
from fraudstream.stream.keys import PAYLOAD
from storekit import make_decisions


def _store(tmp_path: Path) -> str:
    """A SQLite store holding 6 decisions, two of them reviews (tx-1, tx-4)."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    engine = create_engine(url)
    migrate.upgrade(engine)
    with engine.begin() as connection:
        batch = make_decisions(6)
        store_decisions(connection, batch)
        open_reviews(connection, batch)
    engine.dispose()
    return url


def _cli(tmp_path: Path, valkey_url: str) -> Callable[..., tuple[int, str, str]]:
    """``fraudstream reviews …`` on a fresh store; returns the exit code, stdout, stderr."""
    env = {"FRAUDSTREAM_DATABASE_URL": _store(tmp_path), "COLUMNS": "200"}

    def cli(*args: str) -> tuple[int, str, str]:
        done = run_cli("reviews", *args, env=env, valkey_url=valkey_url)
        assert "Traceback" not in done.stderr, done.stderr
        return done.returncode, done.stdout, done.stderr

    return cli


def test_an_analyst_lists_claims_and_resolves_from_the_terminal(
    tmp_path: Path, valkey_url: str, client: redis.Redis
) -> None:
    cli = _cli(tmp_path, valkey_url)
    code, out, err = cli("list")
    assert code == 0 and "tx-1" in out and "tx-4" in out and "amount_policy" in out, err
    code, out, _ = cli("claim", "1", "--as", "alice")
    assert code == 0 and "claimed by alice" in out
    code, out, _ = cli("resolve", "1", "--verdict", "genuine", "--note", "ok", "--as", "alice")
    assert code == 0 and "resolved: genuine, label published" in out
    code, out, _ = cli("list", "--status", "resolved", "--json", "--limit", "1")
    [resolved] = json.loads(out)
    assert (resolved["verdict"], resolved["note"]) == ("genuine", "ok")
    entries: list[tuple[bytes, dict[bytes, bytes]]] = client.xrange("tx.labels")  # type: ignore[assignment]
    [label] = [decode_label(fields[PAYLOAD]) for _, fields in entries]
    assert (label.transaction_id, label.source, label.is_fraud) == ("tx-1", "review", False)


def test_every_refusal_is_one_line(tmp_path: Path, valkey_url: str) -> None:
    cli = _cli(tmp_path, valkey_url)
    assert cli("claim", "1", "--as", "alice")[0] == 0
    code, _, err = cli("claim", "1", "--as", "bob")
    assert code == 2 and err.strip() == "error: review_id: review 1 is claimed by 'alice'"
    code, _, err = cli("resolve", "1", "--verdict", "maybe", "--as", "alice")
    assert code == 2 and "--verdict" in err and "must be one of fraud, genuine" in err
    assert cli("resolve", "1", "--verdict", "genuine", "--as", "alice")[0] == 0
    code, _, err = cli("resolve", "1", "--verdict", "fraud", "--as", "alice")
    assert code == 2 and "review 1 is resolved already (genuine by 'alice')" in err
    code, _, err = cli("claim", "99")
    assert code == 2 and err.strip() == "error: review_id: no review 99"
    code, _, err = cli("list", "--status", "done")
    assert code == 2 and "--status" in err


def test_a_database_that_cannot_be_reached_is_one_line(tmp_path: Path, valkey_url: str) -> None:
    url = f"sqlite:///{tmp_path / 'missing' / 'dir' / 'x.db'}"
    (tmp_path / "missing").write_text("a file where the folder should be")
    done = run_cli("reviews", "list", env={"FRAUDSTREAM_DATABASE_URL": url}, valkey_url=valkey_url)
    assert done.returncode == 2 and done.stderr.startswith("error: database_url:")
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
