"""Bad files given to `fraudstream rules …`: one line naming the file and the field (or the
line:column), exit status 2, never a traceback; a BOM is simply accepted."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from clikit import run_cli

RULES = """\
rules:
  - id: big
    description: big amount
    when: amount > 1000
    outcome: review
  - id: first_device
    description: new device
    when: is_first_seen.device and model.score > 500
    outcome: block
"""
TX = {
    "transaction_id": "r1",
    "timestamp": "2026-02-10T10:00:00Z",
    "customer_id": "c",
    "terminal_id": "t",
    "merchant_id": "m",
    "amount": 5000,
    "currency": "EUR",
    "channel": "ecommerce",
}


def _one_error(result: subprocess.CompletedProcess[str]) -> str:
    """The single line a refused input prints (exit status 2, nothing else on stderr)."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    return lines[0].removeprefix("error: ")


def _tx(**change: object) -> bytes:
    return json.dumps({**TX, **change}).encode()


REFUSED: dict[str, tuple[bytes, str]] = {
    # name: (file content, what follows "error: <file>")
    "an array": (b"[1,2]", ": expected one transaction as a JSON object, got an array"),
    "a string": (b'"tx"', ': expected one transaction as a JSON object, got "tx"'),
    "amount as text": (b'{"amount":"abc"}', ': amount: must be a number, got "abc"'),
    "amount as a numeric string": (_tx(amount="5000"), ': amount: must be a number, got "5000"'),
    "model score as text": (
        _tx(model={"score": "x"}),
        ': model.score: must be a number, got "x"',
    ),
    "feature as text under features": (
        _tx(features={"customer.amount_mean_30d": "abc"}),
        ': features.customer.amount_mean_30d: must be a number, got "abc"',
    ),
    "not JSON": (b"not json", ":1:1: not valid JSON: expecting value"),
    "JSON cut short": (b'{\n  "amount": 1,\n', ":3:1: not valid JSON: expecting property name"),
    "empty": (b"", ": empty file: expected one transaction as a JSON object"),
    "blank": (b" \n\t\n", ": empty file: expected one transaction as a JSON object"),
    "an object for a number": (
        _tx(amount={"value": 5}),
        ": amount: must be a number, got an object",
    ),
    "an array for a number": (_tx(amount=[5]), ": amount: must be a number, got an array"),
    "a boolean for a number": (_tx(amount=True), ": amount: must be a number, got true"),
    "NaN": (b'{"amount": NaN}', ": amount: must be a finite number, got NaN"),
    "Infinity": (b'{"model": {"score": -Infinity}}', ": model.score: must be a finite number"),
    "a float too large": (b'{"amount": 1e999}', ": amount: must be a finite number, got Infinity"),
    "an integer too long": (
        b'{"amount": ' + b"9" * 5000 + b"}",
        ": not valid JSON: a number of 5,000 digits",
    ),
    "a number for a string": (_tx(customer_id=42), ": customer_id: must be a string, got 42"),
    "a string for a flag": (
        _tx(**{"is_first_seen.device": "false"}),
        ': is_first_seen.device: must be true or false, got "false"',
    ),
    "a count for a flag": (
        _tx(**{"is_first_seen.device": 3}),
        ": is_first_seen.device: must be true or false (or 1 or 0), got 3",
    ),
    "features not an object": (_tx(features=[1]), ": features: must be an object"),
    "an unknown field": (b'{"amout": 5}', ": amout: unknown field (did you mean 'amount'?)"),
    "an unknown nested field": (
        b'{"model": {"scor": 5}}',
        ": model.scor: unknown field (did you mean 'model.score'?)",
    ),
    "a repeated key": (b'{"amount": 1, "amount": 2000}', ": amount: given twice in one object"),
    "a field flat and nested": (
        b'{"customer.tx_count_1h": 1, "customer": {"tx_count_1h": 2}}',
        ": customer.tx_count_1h: given twice (dotted and nested)",
    ),
    "not a time": (_tx(timestamp="yesterday"), ": timestamp: not an ISO 8601 datetime"),
    "a negative amount": (_tx(amount=-5), ": amount: must be >= 0, got -5"),
    "not an IP": (_tx(ip="10.0.0"), ": ip: not an IPv4 or IPv6 address: '10.0.0'"),
    "an unknown channel": (
        _tx(channel="web"),
        ': channel: must be one of card_present, ecommerce, got "web"',
    ),
    "nested a hundred thousand deep": (b"[" * 100_000, ": not valid JSON: nested too deeply"),
    "not UTF-8": (b'{"email": "caf\xe9"}', ":1:15: not UTF-8 text (byte 0xe9)"),
    "UTF-16": (
        '{"amount": 1}'.encode("utf-16"),
        ": UTF-16 text, not UTF-8: save the file as UTF-8",
    ),
}


@pytest.mark.parametrize("content, said", REFUSED.values(), ids=REFUSED.keys())
def test_rules_test_refuses_a_bad_transaction_in_one_line(
    tmp_path: Path, valkey_url: str, content: bytes, said: str
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    tx = tmp_path / "tx.json"
    tx.write_bytes(content)
    line = _one_error(
        run_cli(
            "rules", "test", str(tx), "--rules", str(rules), valkey_url=valkey_url, cwd=tmp_path
        )
    )
    assert line.startswith(f"{tx}{said}"), line


def test_rules_test_reads_a_bom_features_nulls_and_flags(tmp_path: Path, valkey_url: str) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    tx = tmp_path / "tx.json"
    record = {
        **TX,
        "timestamp": "2026-02-10T23:30:00",  # no zone: UTC, as imports read it
        "ip": None,
        "features": {"is_first_seen.device": True, "customer.amount_mean_30d": 12.5},
        "model": {"score": 700},
    }
    tx.write_bytes(b"\xef\xbb\xbf" + json.dumps(record).encode())
    result = run_cli(
        "rules", "test", str(tx), "--rules", str(rules), valkey_url=valkey_url, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith("hit big") for line in lines), result.stdout
    assert any(line.startswith("hit first_device") for line in lines), result.stdout
    assert "model.score = 700.0" in result.stdout


RULES_REFUSED: dict[str, tuple[bytes, str]] = {
    "not UTF-8": (
        RULES.replace("big amount", "gro\xdf").encode("latin-1"),
        ":3:21: not UTF-8 text (byte 0xdf): save the file as UTF-8",
    ),
    "UTF-16": (RULES.encode("utf-16"), ": UTF-16 text, not UTF-8: save the file as UTF-8"),
    "a NUL character": (
        RULES.replace("big amount", "big\0amount").encode(),
        ":3:21: invalid YAML: character #x0000 is not allowed in a rule set",
    ),
    "a list": (b"- 1\n- 2\n", ":1:1: the rule set must be a mapping"),
}


@pytest.mark.parametrize("content, said", RULES_REFUSED.values(), ids=RULES_REFUSED.keys())
def test_every_rules_command_refuses_a_bad_rule_file_in_one_line(
    tmp_path: Path, valkey_url: str, content: bytes, said: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_bytes(content)
    tx = tmp_path / "tx.json"
    tx.write_bytes(_tx())
    history = tmp_path / "history.csv"
    history.write_text(
        "transaction_id,timestamp,customer_id,terminal_id,amount,is_fraud\n"
        "t1,2024-05-01T10:00:00Z,c1,t1,2000,1\n"
    )
    for args in (
        ("publish", str(path)),
        ("test", str(tx), "--rules", str(path)),
        ("backtest", str(path), "--history", str(history)),
        (
            "backtest",
            str(tx.with_name("ok.yaml")),
            "--history",
            str(history),
            "--baseline",
            str(path),
        ),
    ):
        tx.with_name("ok.yaml").write_text(RULES)
        line = _one_error(run_cli("rules", *args, valkey_url=valkey_url, cwd=tmp_path))
        assert line == f"{path}{said}", (args, line)
    validated = run_cli("rules", "validate", str(path), cwd=tmp_path)
    assert validated.returncode == 1
    assert validated.stderr.strip() == f"{path}{said}"
    assert "Traceback" not in validated.stderr


def test_a_rule_file_with_a_bom_is_the_same_rule_set(tmp_path: Path, valkey_url: str) -> None:
    plain, bom = tmp_path / "plain.yaml", tmp_path / "bom.yaml"
    plain.write_text(RULES)
    bom.write_bytes(b"\xef\xbb\xbf" + RULES.encode())
    assert run_cli("rules", "validate", str(bom), cwd=tmp_path).stdout.strip() == f"{bom}: valid"
    versions = [
        run_cli("rules", "publish", str(p), valkey_url=valkey_url, cwd=tmp_path).stdout.split()[-1]
        for p in (plain, bom)
    ]
    assert versions[0] == versions[1]


def test_publish_names_the_file_of_a_bad_rule(tmp_path: Path, valkey_url: str) -> None:
    path = tmp_path / "typo.yaml"
    path.write_text(RULES.replace("amount > 1000", "amout > 1000"))
    line = _one_error(run_cli("rules", "publish", str(path), valkey_url=valkey_url, cwd=tmp_path))
    assert line.startswith(f"{path}:4:11: rule 'big': unknown name 'amout'"), line


def test_backtest_names_a_history_without_labels(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    history = tmp_path / "history.csv"
    history.write_text(
        "transaction_id,timestamp,customer_id,terminal_id,amount\n"
        "t1,2024-05-01T10:00:00Z,c1,t1,2000\n"
    )
    line = _one_error(
        run_cli("rules", "backtest", str(rules), "--history", str(history), cwd=tmp_path)
    )
    assert line.startswith(f"{history}: no is_fraud column: a backtest needs labelled"), line
