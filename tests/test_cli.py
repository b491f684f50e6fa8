"""The CLI as a user meets it: subprocesses, real server, exit codes and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import redis

from clikit import run_cli
from fraudstream.stream.keys import StreamKeys

_run = run_cli


def test_help_lists_the_commands() -> None:
    result = _run("--help")
    assert result.returncode == 0
    for command in ("demo", "worker", "produce", "config", "valkey"):
        assert command in result.stdout


def test_every_command_is_listed_with_one_sentence() -> None:
    """The command lists of ``--help`` show a summary, not a docstring's first paragraph
    with its own line breaks."""
    import typer

    from fraudstream.cli import app

    def commands(group: Any) -> list[Any]:
        out: list[Any] = []
        for cmd in group.commands.values():
            out += commands(cmd) if hasattr(cmd, "commands") else [cmd]
        return out

    found = commands(typer.main.get_command(app))
    assert len(found) > 40
    for cmd in found:
        summary = cmd.short_help  # what the command lists show (else the whole paragraph)
        assert summary and "\n" not in summary, cmd.name
        assert summary.endswith((".", "…", ")")), (cmd.name, summary)
        assert ". " not in summary.replace("e.g. ", ""), (cmd.name, summary)


def test_config_show_json_masks_secrets(tmp_path: Path) -> None:
    (tmp_path / "fraudstream.toml").write_text("partitions = 3\n")
    env = {"FRAUDSTREAM_API_KEY": "topsecret", "FRAUDSTREAM_BATCH_SIZE": "42"}
    result = _run("config", "show", "--json", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    view = json.loads(result.stdout)
    assert view["partitions"] == 3 and view["batch_size"] == 42 and view["api_key"] == "****"
    assert "topsecret" not in result.stdout


def test_bad_setting_is_one_line_with_exit_2() -> None:
    result = _run("config", "show", env={"FRAUDSTREAM_PARTITIONS": "0"})
    assert result.returncode == 2
    assert result.stderr.strip() == "error: partitions: must be >= 1, got 0"


def test_bad_flag_names_the_flag() -> None:
    result = _run("demo", "--tps", "-5")
    assert result.returncode == 2
    assert "--tps" in result.stderr


def test_produce_stops_on_bad_lines_or_skips_them_when_told(
    tmp_path: Path, valkey_url: str, client: redis.Redis
) -> None:
    good = {
        "transaction_id": "a",
        "timestamp": "2024-01-01T00:00:00Z",
        "customer_id": "c",
        "terminal_id": "t",
        "merchant_id": "m",
        "amount": 5,
        "currency": "EUR",
        "channel": "ecommerce",
    }
    lines = [
        json.dumps(good),
        json.dumps({**good, "transaction_id": "b", "amount": -3}),
        "{oops",
        json.dumps({**good, "transaction_id": "c"}),
    ]
    path = tmp_path / "txs.jsonl"
    path.write_text("\n".join(lines) + "\n")
    env = {"FRAUDSTREAM_VALKEY_URL": valkey_url}
    keys = StreamKeys("tx", 16)
    stopped = _run("produce", str(path), env=env)
    assert stopped.returncode == 2 and "Traceback" not in stopped.stderr
    assert f"{path}: row 2: amount: must be >= 0, got -3 (2 of 4 rows are bad;" in stopped.stderr
    assert sum(client.xlen(s) for s in keys.inputs()) == 0
    result = _run("produce", str(path), "--skip-invalid", env=env)
    assert result.returncode == 0, result.stderr
    assert "txs.jsonl:2: amount: must be >= 0, got -3" in result.stderr
    assert "txs.jsonl:3: not valid JSON" in result.stderr
    assert "sent 2 transactions, rejected 2" in result.stdout
    assert sum(client.xlen(s) for s in keys.inputs()) == 2
    rejects = (tmp_path / "txs.rejects.csv").read_text().splitlines()
    assert rejects[0] == "row,field,reason,record" and rejects[2].startswith("3,,not valid JSON")


def test_produce_refuses_up_front_what_the_workers_would_dead_letter(
    tmp_path: Path, valkey_url: str, client: redis.Redis
) -> None:
    """Dated years ahead, or over ``max_amount``: the schema allows both, the workers do not;
    produce said "sent 3, rejected 0" and the workers dead-lettered two."""
    path = tmp_path / "ahead.csv"
    path.write_text(
        "transaction_id,timestamp,customer_id,terminal_id,amount\n"
        "f1,2031-01-01T00:00:00Z,c1,T1,10\n"
        "f2,2024-06-01T00:00:00Z,c1,T1,900\n"
        "f3,2024-06-01T00:01:00Z,c1,T1,10\n"
    )
    env = {"FRAUDSTREAM_VALKEY_URL": valkey_url, "FRAUDSTREAM_MAX_AMOUNT": "500"}
    stopped = _run("produce", str(path), env=env)
    assert stopped.returncode == 2
    assert "row 1: timestamp: 2031-01-01T00:00:00+00:00 is " in stopped.stderr
    assert "s in the future (max skew 300 s) (2 of 3 rows are bad;" in stopped.stderr
    result = _run("produce", str(path), "--skip-invalid", env=env)
    assert "ahead.csv:2: amount: must be at most 500 (max_amount), got 900" in result.stderr
    assert "sent 1 transactions, rejected 2" in result.stdout


def test_produce_accepts_handbook_csv(tmp_path: Path, valkey_url: str, client: redis.Redis) -> None:
    path = tmp_path / "handbook.csv"
    path.write_text(
        "TRANSACTION_ID,TX_DATETIME,CUSTOMER_ID,TERMINAL_ID,TX_AMOUNT,TX_FRAUD\n"
        "0,2018-04-01 00:00:31,596,3156,57.16,0\n"
        "1,2018-04-01 00:02:10,4961,3412,81.51,0\n"
    )
    result = _run("produce", str(path), env={"FRAUDSTREAM_VALKEY_URL": valkey_url})
    assert result.returncode == 0, result.stderr
    assert "sent 2 transactions, rejected 0" in result.stdout


def test_produce_maps_a_bank_export(tmp_path: Path, valkey_url: str, client: redis.Redis) -> None:
    path = tmp_path / "bank.csv"
    path.write_text("Ref,When,Client,Pos,Amt\nA1,31/03/2024 23:59,C9,P1,0\n")
    mapped = ["--column", "transaction_id=Ref", "--column", "timestamp=When"]
    mapped += ["--column", "customer_id=Client", "--column", "terminal_id=Pos"]
    env = {"FRAUDSTREAM_VALKEY_URL": valkey_url}
    missing = _run("produce", str(path), *mapped, env=env)
    assert missing.returncode == 2 and "amount: required field has no column" in missing.stderr
    args = [*mapped, "--column", "amount=Amt", "--date-format", "%d/%m/%Y %H:%M"]
    result = _run("produce", str(path), *args, env=env)
    assert result.returncode == 0, result.stderr
    assert "sent 1 transactions, rejected 0" in result.stdout


@pytest.mark.slow
def test_demo_json_accounts_for_every_message(
    tmp_path: Path, valkey_url: str, client: redis.Redis
) -> None:
    env = {
        "FRAUDSTREAM_VALKEY_URL": valkey_url,
        "FRAUDSTREAM_PARTITIONS": "4",
        "FRAUDSTREAM_DATA_DIR": str(tmp_path),
    }
    result = _run(
        "demo",
        "--duration",
        "2",
        "--tps",
        "500",
        "--workers",
        "1",
        "--bad-ratio",
        "0.01",
        "--json",
        env=env,
    )
    assert result.returncode == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    assert report["transactions"] + report["malformed_sent"] == 1000
    assert report["decisions"] == report["transactions"]
    assert report["dead_letters"] == report["malformed_sent"] > 0
    assert sum(report["outcomes"].values()) == report["decisions"]
    lat = report["latency_ms"]
    assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"]
    # the clock starts with the traffic, not with preparing it (here 494 tx/s, was 395)
    assert report["throughput_tps"] >= 0.85 * 500, report["elapsed_s"]
    assert report["model_version"] != "none"  # the first run trains and activates a model
    assert set(report["model_metrics"]) == {"auc_roc", "average_precision", "card_precision_at_100"}
    assert 0 <= report["frauds_flagged"] <= min(report["frauds_sent"], report["flagged"])
    assert report["stored"] == report["decisions"]  # the sink kept every decision
    assert str(tmp_path) in report["store"] or "fraudstream.db" in report["store"]
    blocks = report["outcomes"].get("block", 0)
    assert report["alerts"]["received"] == report["alerts"]["verified"] == blocks
    again = _run("demo", "--duration", "1", "--tps", "200", "--workers", "1", "--json", env=env)
    assert again.returncode == 0, again.stderr
    second = json.loads(again.stdout)
    assert second["model_version"] == report["model_version"] and not second["model_metrics"]
    shown = _run("demo", "--duration", "1", "--tps", "200", "--workers", "1",
                 env={**env, "FRAUDSTREAM_API_PORT": "18999"})  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    last = shown.stdout.splitlines()[-1]  # one line, whatever the width: copied as it is
    assert last.startswith(
        "live console: run `.venv/bin/fraudstream serve`, open http://127.0.0.1:18999/ and "
        f"sign in with the key in {tmp_path}/api.key"
    )
    # the demo's traffic has ended by then: the console moves only with traffic sent meanwhile
    assert "`.venv/bin/fraudstream loadtest --tps 200 --duration 300`" in last


def test_valkey_start_status_stop(tmp_path: Path) -> None:
    env = {"FRAUDSTREAM_DATA_DIR": str(tmp_path), "FRAUDSTREAM_VALKEY_URL": ""}
    started = _run("valkey", "start", env=env)
    assert started.returncode == 0 and "valkey running on 127.0.0.1:" in started.stdout
    try:
        assert _run("valkey", "status", env=env).returncode == 0
        assert (tmp_path / "valkey" / "valkey.port").exists()
    finally:
        stopped = _run("valkey", "stop", env=env)
    assert stopped.returncode == 0 and "valkey stopped" in stopped.stdout
    assert _run("valkey", "status", env=env).returncode == 1
