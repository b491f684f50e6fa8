"""`fraudstream rules …` and `fraudstream lists …` as a user runs them."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import redis

from clikit import run_cli

RULES = """\
mode: all_matched
rules:
  - id: big_amount
    description: large amount
    when: amount > 220
    outcome: review
  - id: blocked_ip
    description: IP on the blocklist
    when: ip in list("ip_blocklist")
    outcome: block
"""


_run = run_cli


def test_validate_reports_file_line_and_column(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(RULES.replace("amount > 220", "amout > 220"))
    result = _run("rules", "validate", str(bad))
    assert result.returncode == 1
    assert f"{bad}:5:11: rule 'big_amount': unknown name 'amout'" in result.stderr
    assert "did you mean 'amount'" in result.stderr
    good = tmp_path / "good.yaml"
    good.write_text(RULES)
    assert _run("rules", "validate", str(good)).returncode == 0


def test_publish_list_and_test_a_transaction(
    tmp_path: Path, valkey_url: str, client: redis.Redis
) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(RULES)
    published = _run("rules", "publish", str(path), "--message", "first", valkey_url=valkey_url)
    assert published.returncode == 0, published.stderr
    version = published.stdout.split()[-1]
    listed = json.loads(_run("rules", "list", "--json", valkey_url=valkey_url).stdout)
    assert [(v["version"], v["active"], v["message"]) for v in listed] == [(version, True, "first")]
    added = _run(
        "lists", "add", "ip_blocklist", "10.0.0.0/8", "--kind", "ip", valkey_url=valkey_url
    )
    assert added.returncode == 0, added.stderr
    tx = tmp_path / "tx.json"
    tx.write_text(json.dumps({"amount": 50.0, "ip": "10.1.2.3", "channel": "ecommerce"}))
    tested = _run("rules", "test", str(tx), valkey_url=valkey_url)
    assert tested.returncode == 0, tested.stderr
    lines = tested.stdout.splitlines()
    assert any(line.startswith("hit blocked_ip") for line in lines)
    assert any(line.startswith("no big_amount") for line in lines)


def test_lists_show_prints_one_value_a_line_and_an_email_list_refuses_a_non_address(
    valkey_url: str, client: redis.Redis
) -> None:
    def lists(*args: str) -> Any:
        return _run("lists", *args, valkey_url=valkey_url)

    added = lists("add", "mules", "Foo@Example.COM", "--kind", "email")
    assert added.returncode == 0, added.stderr
    refused = lists("add", "mules", "not-an-email")
    assert refused.returncode == 2
    assert refused.stderr.strip() == "error: list 'mules': not a valid email: 'not-an-email'"
    assert lists("add", "mules", "x@y.org", "--ttl", "3600").returncode == 0
    shown = sorted(lists("show", "mules").stdout.splitlines())
    assert shown[0] == "foo@example.com"  # was "ListEntry(value='foo@example.com', …)"
    assert shown[1].startswith("x@y.org  (expires 20") and shown[1].endswith(" UTC)")


def test_rule_published_during_generate_changes_outcomes_within_seconds(
    tmp_path: Path, valkey_url: str, live_change: Callable[..., tuple[float, float, list[Any]]]
) -> None:
    rules = tmp_path / "block.yaml"
    rules.write_text(
        "rules:\n  - id: freeze\n    description: incident\n"
        "    when: amount > 0\n    outcome: block\n"
    )

    def publish() -> None:
        assert _run("rules", "publish", str(rules), valkey_url=valkey_url).returncode == 0

    publishing_at, published_at, decisions = live_change(
        {"FRAUDSTREAM_VALKEY_URL": valkey_url}, publish
    )
    late = [
        d
        for d in decisions
        if datetime.fromisoformat(d["decided_at"]).timestamp() > published_at + 2
    ]
    early = [
        d for d in decisions if datetime.fromisoformat(d["decided_at"]).timestamp() < publishing_at
    ]
    assert late and all("rule:freeze" in d["reasons"] and d["outcome"] == "block" for d in late)
    assert early and not any("rule:freeze" in d["reasons"] for d in early)


def test_a_backtest_of_the_default_store_reads_it_from_the_config_file(tmp_path: Path) -> None:
    """``--database default`` is the config's ``database_url`` (it was the bare default's)."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    config = tmp_path / "fraudstream.toml"
    config.write_text(f'database_url = "sqlite:///{tmp_path}/elsewhere.db"\n')
    env = {"FRAUDSTREAM_DATA_DIR": str(tmp_path / "data")}
    args = ("rules", "backtest", str(rules), "--database", "default", "--config", str(config))
    done = _run(*args, env=env)
    assert done.returncode == 2
    assert f"{tmp_path}/elsewhere.db: not a fraudstream store" in done.stderr
