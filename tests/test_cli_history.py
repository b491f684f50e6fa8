"""Commands that read a history, run as a user runs them: any file, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from clikit import run_cli
from historykit import set_fields, tiny_handbook_csv, zero_amounts

# A clean keyspace for each test: a model registered by an earlier test would make `train`
# ask for that registry's key before it reads the file under test.
pytestmark = pytest.mark.usefixtures("client")

CARD_TESTING = """\
mode: all_matched
rules:
  - id: zero_amount_burst
    when: amount == 0 and customer_tx_count_1h >= 1
    outcome: review
    score: 300
"""


@pytest.fixture
def handbook(tmp_path: Path) -> Path:
    path = tiny_handbook_csv(tmp_path / "handbook.csv")
    zero_amounts(path, [2, 10, 11, 12])
    return path


def _one_error_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[0]


def test_backfill_reads_a_handbook_csv_with_zero_amounts(handbook: Path, tmp_path: Path) -> None:
    out = tmp_path / "features.parquet"
    result = run_cli("features", "backfill", "--history", str(handbook), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("taken as UTC") == 1
    features = pl.read_parquet(out)
    assert features.height == len(handbook.read_text().splitlines()) - 1


def test_a_bad_row_stops_backfill_naming_file_row_field_and_count(
    handbook: Path, tmp_path: Path
) -> None:
    set_fields(handbook, {3: {"TX_AMOUNT": "-5"}, 7: {"TX_AMOUNT": "abc"}})
    out = tmp_path / "features.parquet"
    result = run_cli("features", "backfill", "--history", str(handbook), "--out", str(out))
    assert result.returncode == 2
    line = _one_error_line(result.stderr)
    assert f"{handbook}: row 3: amount: must be >= 0, got -5 (2 of " in line
    assert not out.exists()


def test_skip_invalid_backfill_writes_rejects_beside_the_output(
    handbook: Path, tmp_path: Path
) -> None:
    set_fields(handbook, {3: {"TX_AMOUNT": "-5"}, 7: {"TX_AMOUNT": "abc"}})
    out = tmp_path / "out" / "features.parquet"
    out.parent.mkdir()
    result = run_cli(
        "features", "backfill", "--history", str(handbook), "--out", str(out), "--skip-invalid"
    )
    assert result.returncode == 0, result.stderr
    rejects = out.with_name("features.rejects.csv")
    told = f"skipped 2 invalid rows of handbook.csv; they and their reasons are in {rejects}"
    assert told in result.stderr
    assert pl.read_csv(rejects)["row"].to_list() == [3, 7]


def test_rules_backtest_on_a_handbook_csv_with_zero_amounts(handbook: Path, tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(CARD_TESTING)
    result = run_cli("rules", "backtest", str(rules), "--history", str(handbook), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["set"]["n"] == len(handbook.read_text().splitlines()) - 1
    assert report["rules"][0]["hits"] == 4  # the four zero amounts


def test_a_mapped_bank_export_is_backfilled(tmp_path: Path) -> None:
    path = tmp_path / "bank.csv"
    path.write_text(
        "TxnRef,When,Client,Pos,TxnAmt\n"
        "A1,31/03/2024 23:59,C9,P1,12.50\nA2,01/04/2024 08:05,C9,P2,0\n"
    )
    out = tmp_path / "f.parquet"
    mapped = [f"--column={f}={c}" for f, c in (("transaction_id", "TxnRef"), ("timestamp", "When"))]
    mapped += ["--column", "customer_id=Client", "--column", "terminal_id=Pos"]
    args = ["features", "backfill", "--history", str(path), "--out", str(out), *mapped]
    missing = run_cli(*args)
    assert missing.returncode == 2
    assert "amount: required field has no column" in _one_error_line(missing.stderr)
    result = run_cli(*args, "--column", "amount=TxnAmt", "--date-format", "%d/%m/%Y %H:%M")
    assert result.returncode == 0, result.stderr
    assert pl.read_parquet(out)["tx_amount"].to_list() == [12.5, 0.0]


def test_unreadable_files_are_one_line_naming_the_file(
    tmp_path: Path, handbook: Path, valkey_url: str
) -> None:
    corrupt = tmp_path / "corrupt.parquet"
    corrupt.write_bytes(b"PAR1" + b"\x00" * 64)
    named = tmp_path / "named.parquet"
    named.write_bytes(handbook.read_bytes())
    no = tmp_path / "no"
    for args, where in (
        (("train", "--data", str(corrupt)), corrupt),
        (("generate", "--history", str(corrupt), "--duration", "1"), corrupt),
        (("features", "backfill", "--history", str(named), "--out", str(tmp_path / "f")), named),
        (("simulate", "--out", str(handbook / "sub"), "--days", "1"), handbook),
        (("features", "backfill", "--history", str(handbook), "--out", str(no / "f")), no),
    ):
        result = run_cli(*args, valkey_url=valkey_url)
        assert result.returncode == 2, (args, result.stderr)
        assert str(where) in _one_error_line(result.stderr), args
