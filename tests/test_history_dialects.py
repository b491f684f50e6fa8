"""CSV files as spreadsheets and banks export them: semicolon or tab separated, Windows-1252
text, amounts with a decimal comma or thousands separators. Each reads with no flag, into
the same values as the plain file; what cannot be told apart is refused naming the row."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from fraudstream.errors import BadRowsError
from fraudstream.history import read_history

HEADER = ["transaction_id", "timestamp", "customer_id", "terminal_id", "amount"]
ROWS = [
    ["t1", "2024-01-02T10:00:00Z", "José", "T1", "12.50"],
    ["t2", "2024-01-02T11:00:00Z", "Zoë", "T2", "1234.5"],
    ["t3", "2024-01-02T12:00:00Z", "c3", "T3", "0"],
]


def _write(path: Path, sep: str, amounts: list[str], encoding: str = "utf-8") -> Path:
    lines = [sep.join(HEADER)]
    for row, amount in zip(ROWS, amounts, strict=True):
        cells = [*row[:4], amount]
        lines.append(sep.join(f'"{c}"' if sep in c else c for c in cells))
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode(encoding))
    return path


def _plain(tmp_path: Path) -> pl.DataFrame:
    return read_history(_write(tmp_path / "plain.csv", ",", [r[4] for r in ROWS])).frame


@pytest.mark.parametrize(
    ("sep", "amounts"),
    [
        (";", ["12,50", "1.234,50", "0"]),
        ("\t", ["12,5", "1234,5", "0,00"]),
        ("|", ["12.50", "1,234.50", "0"]),
        (",", ["12,50", "1,234.50", "0"]),
        (",", ["$12.50", "$1,234.50", "$0.00"]),
        (";", ["12,50 €", "1.234,50 €", "0 €"]),
        ("\t", ["£ 12.50", "+£1234.5", "£0"]),
    ],
    ids=[
        "semicolon-decimal-comma",
        "tab-decimal-comma",
        "pipe-thousands",
        "comma-quoted",
        "dollar-sign",
        "euro-after",
        "pound-spaced",
    ],
)
def test_separators_and_number_formats_read_as_the_plain_file(
    tmp_path: Path, sep: str, amounts: list[str]
) -> None:
    got = read_history(_write(tmp_path / "export.csv", sep, amounts)).frame
    assert got.equals(_plain(tmp_path))


def test_windows_1252_text_is_read_and_said(tmp_path: Path) -> None:
    path = _write(tmp_path / "excel.csv", ";", ["12,50", "1.234,50", "0"], encoding="cp1252")
    history = read_history(path)
    assert history.frame.equals(_plain(tmp_path))
    assert history.encoding == "cp1252"
    assert read_history(_write(tmp_path / "u.csv", ",", ["1", "2", "3"])).encoding is None


def test_an_amount_that_cannot_be_told_apart_is_refused_naming_the_row(tmp_path: Path) -> None:
    path = _write(tmp_path / "odd.csv", ";", ["12,50", "1.234.567", "0"])
    with pytest.raises(BadRowsError) as caught:
        read_history(path)
    assert caught.value.row == 2 and "amount" in str(caught.value)


def test_a_refund_with_a_currency_sign_is_a_negative_amount_named(tmp_path: Path) -> None:
    path = _write(tmp_path / "refund.csv", ",", ["$12.50", "-$77.00", "$0"])
    with pytest.raises(BadRowsError) as caught:
        read_history(path)
    assert caught.value.row == 2 and "amount: must be >= 0, got -$77.00" in str(caught.value)


def test_produce_reads_the_same_values_as_the_history_reader(tmp_path: Path) -> None:
    """`produce` validates row by row through the schema; the numbers reach it as the
    history reader reads them, and a Windows-1252 file is said to be one."""
    from fraudstream.ingest import read_transactions

    path = _write(tmp_path / "excel.csv", ";", ["12,50 €", "1.234,50", "0"], encoding="cp1252")
    ingested = read_transactions(path)
    assert [tx.amount for tx in ingested.transactions] == [12.5, 1234.5, 0.0]
    assert [tx.customer_id for tx in ingested.transactions] == ["José", "Zoë", "c3"]
    assert ingested.encoding == "cp1252" and not ingested.rejected
