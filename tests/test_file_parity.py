"""Hand-written files read by both readers: ``produce``'s (`fraudstream.ingest`) and the
offline commands' (`fraudstream.history`). Whatever a file holds, the two accept the same
rows with the same values, refuse the same rows naming the same row and field, and never
show a traceback. Real files in tmp_path, no mocks."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
import redis

from clikit import run_cli
from fraudstream.errors import BadRowsError, DataFileError
from fraudstream.history import ReadOptions, read_history
from fraudstream.ingest import read_transactions, write_rejects

HEADER = "transaction_id,timestamp,customer_id,terminal_id,amount"
TEN = datetime(2026, 1, 1, 10, tzinfo=UTC)


@dataclass(frozen=True)
class Read:
    """What one reader made of a file: the valid rows' (id, instant, amount) and the bad
    rows' (row, reason)."""

    rows: list[tuple[str, datetime, float]]
    bad: list[tuple[int, str]]


def offline(path: Path) -> Read:
    rejects = path.with_name(path.name + ".offline-rejects.csv")
    history = read_history(path, ReadOptions(skip_invalid=True, rejects=rejects))
    frame = history.frame
    rows = list(zip(frame["transaction_id"], frame["timestamp"], frame["amount"], strict=True))
    bad: list[tuple[int, str]] = []
    if history.skipped:
        with rejects.open() as fh:
            bad = [(int(r["row"]), r["reason"]) for r in csv.DictReader(fh)]
    return Read(rows, bad)


def online(path: Path) -> Read:
    ingested = read_transactions(path)
    rows = [(t.transaction_id, t.timestamp, t.amount) for t in ingested.transactions]
    return Read(rows, [(r.row, r.reason) for r in ingested.rejected])


def both(path: Path) -> Read:
    """What both readers made of ``path``, asserting they agree on it."""
    off, on = offline(path), online(path)
    assert on.rows == off.rows, f"{path.name}: produce {on.rows} != offline {off.rows}"
    assert on.bad == off.bad, f"{path.name}: produce {on.bad} != offline {off.bad}"
    return on


def _csv(path: Path, *rows: str, end: str = "\n") -> Path:
    path.write_bytes((end.join((HEADER, *rows)) + end).encode())
    return path


def _tx(tid: str, stamp: object, **more: object) -> dict[str, object]:
    return {
        "transaction_id": tid,
        "timestamp": stamp,
        "customer_id": "c1",
        "terminal_id": "T1",
        "amount": 10,
        **more,
    }


def _jsonl(path: Path, *records: object, bom: bool = False) -> Path:
    text = "".join(json.dumps(r) + "\n" for r in records)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode())
    return path


# --- 1. a JSON line nested too deep -----------------------------------------------------


def test_a_json_line_nested_100000_deep_is_one_bad_row(tmp_path: Path) -> None:
    path = tmp_path / "deep.jsonl"
    deep = '{"a":' * 100_000 + "1" + "}" * 100_000
    path.write_text(json.dumps(_tx("ok", "2026-01-01T10:00:00Z")) + "\n" + deep + "\n")
    read = read_transactions(path)
    assert [t.transaction_id for t in read.transactions] == ["ok"]
    assert [(r.row, r.reason) for r in read.rejected] == [
        (2, "not valid JSON: nested too deep to read")
    ]


# --- 2. duplicate transaction ids ---------------------------------------------------------


def test_a_repeated_id_is_left_out_offline_saying_so_the_first_in_the_file_kept(
    tmp_path: Path,
) -> None:
    """The workers keep the first of an id to arrive (a later one is scored but changes no
    state), and produce sends in file order: offline keeps the first in the file."""
    path = _csv(
        tmp_path / "dup.csv",
        "t1,2026-01-01T10:00:00Z,c1,T1,10",
        "t1,2026-01-01T11:00:00Z,c1,T1,500",
        "t0,2026-01-01T09:00:00Z,c1,T1,7",
    )
    history = read_history(path)
    assert history.frame["amount"].to_list() == [10.0, 7.0]
    assert history.duplicates == 1 and history.duplicate == "row 2 repeats t1 of row 1"
    assert len(read_transactions(path).transactions) == 3  # the stream's idempotency decides


def test_backfill_says_how_many_repeated_ids_it_left_out(tmp_path: Path) -> None:
    path = _csv(
        tmp_path / "dup.csv",
        "t1,2026-01-01T10:00:00Z,c1,T1,10",
        "t1,2026-01-01T11:00:00Z,c1,T1,500",
        "t0,2026-01-01T09:00:00Z,c1,T1,7",
    )
    out = tmp_path / "features.parquet"
    result = run_cli("features", "backfill", "--history", str(path), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert (
        "note: dup.csv: left out 1 row whose transaction_id an earlier row has (row 2 repeats "
        "t1 of row 1): the first in the file is kept, as the workers keep the first to arrive"
    ) in result.stderr
    assert "backfilling 2 transactions" in result.stderr
    assert pl.read_parquet(out).height == 2


# --- 3. Unix seconds and milliseconds in one column --------------------------------------


def test_unix_seconds_and_milliseconds_in_one_column_read_alike(tmp_path: Path) -> None:
    path = _csv(tmp_path / "mix.csv", "t1,1767261600,c1,T1,10", "t2,1767261600000,c1,T1,10")
    read = both(path)
    assert [stamp for _, stamp, _ in read.rows] == [TEN, TEN]


# --- 4. valid rows produce refused --------------------------------------------------------


def test_an_empty_or_null_optional_value_is_absent(tmp_path: Path) -> None:
    path = tmp_path / "opt.csv"
    path.write_text(f"{HEADER},merchant_id,ip\nt1,2026-01-01T10:00:00Z,c1,T1,10,,\n")
    read = read_transactions(path)
    assert not read.rejected and read.transactions[0].merchant_id == "T1"
    both(path)
    jsonl = _jsonl(tmp_path / "opt.jsonl", _tx("j1", "2026-01-01T10:00:00Z", merchant_id=None))
    read = read_transactions(jsonl)
    assert not read.rejected and read.transactions[0].merchant_id == "T1"


def test_amounts_a_float_reads_are_accepted_and_a_refusal_shows_the_value(
    tmp_path: Path,
) -> None:
    path = _csv(
        tmp_path / "amounts.csv",
        "t1,2026-01-01T10:00:00Z,c1,T1,.5",
        "t2,2026-01-01T10:00:00Z,c1,T1,5.",
        "t3,2026-01-01T10:00:00Z,c1,T1,+5",
        "t4,2026-01-01T10:00:00Z,c1,T1,1.234.567",
        "t5,2026-01-01T10:00:00Z,c1,T1,NaN",
    )
    read = both(path)
    assert [amount for _, _, amount in read.rows] == [0.5, 5.0, 5.0]
    assert read.bad == [
        (4, "amount: not a number, got 1.234.567"),
        (5, "amount: must be finite, got NaN"),
    ]
    jsonl = _jsonl(tmp_path / "text.jsonl", _tx("j1", "2026-01-01T10:00:00Z", amount="12,50"))
    assert read_transactions(jsonl).rejected[0].reason.endswith("got `str` '12,50'")


def test_a_parquet_date_column_is_midnight_utc(tmp_path: Path) -> None:
    path = tmp_path / "dates.parquet"
    pl.DataFrame(
        {
            "transaction_id": ["a"],
            "timestamp": [datetime(2026, 1, 1).date()],
            "customer_id": ["c"],
            "terminal_id": ["t"],
            "amount": [1.0],
        }
    ).write_parquet(path)
    assert both(path).rows == [("a", datetime(2026, 1, 1, tzinfo=UTC), 1.0)]


def test_json_lines_ignore_ground_truth_and_extra_keys_as_csv_does(tmp_path: Path) -> None:
    path = _jsonl(
        tmp_path / "extra.jsonl",
        _tx("j1", "2026-01-01T10:00:00Z", is_fraud=1, foo={"a": [1, 2]}),
    )
    assert both(path).rows == [("j1", TEN, 10.0)]


# --- 5. one definition of a timestamp -----------------------------------------------------

SAME = datetime(2026, 1, 1, 10, tzinfo=UTC)
UNPARSED = "timestamp: not a date-time in the file's layout (see --date-format), got "
EARLY = "timestamp: must not be before 1970-01-01T00:00:00+00:00, got "
TIMES: list[tuple[tuple[object, ...], list[datetime] | str]] = [
    # (the values, one per row): the instants both readers give, or why both refuse row 1
    (("2026-01-01T10:00:00Z",), [SAME]),
    (("2026-01-01T10:00Z",), [SAME]),
    (("2026-01-01T10:00:00z",), [SAME]),
    (("2026-01-01 12:00:00+02:00",), [SAME]),
    (("2026-01-01T12:00:00+0200",), [SAME]),
    (("2026-01-01T10:00:00.000Z",), [SAME]),
    (("2026-01-01T10:00:00",), [SAME]),
    (("2026-01-01 10:00",), [SAME]),
    (("2026-01-01",), [datetime(2026, 1, 1, tzinfo=UTC)]),
    (("2026-01-01T10:00:00Z", "2026-01-01T10:00:00"), [SAME, SAME]),
    (("2026-01-01T10:00:00", "2026-01-01T10:00:00Z"), [SAME, SAME]),
    (("2026-01-01T10:00:00Z", "2026-01-01T10:00Z"), [SAME, SAME]),
    ((1767261600,), [SAME]),
    ((1767261600000,), [SAME]),
    ((1767261600, 1767261600000), [SAME, SAME]),
    (("20260101T100000Z",), UNPARSED + "20260101T100000Z"),
    (("2026-W01-4",), UNPARSED + "2026-W01-4"),
    (("2026-001",), UNPARSED + "2026-001"),
    (("1900-01-01",), EARLY + "1900-01-01"),
    (("1969-12-31T23:59:59Z",), EARLY + "1969-12-31T23:59:59Z"),
    ((-1,), EARLY + "-1"),
]


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
@pytest.mark.parametrize(("values", "expected"), TIMES, ids=lambda v: repr(v)[:40])
def test_both_readers_read_a_timestamp_alike(
    tmp_path: Path, fmt: str, values: tuple[object, ...], expected: list[datetime] | str
) -> None:
    if fmt == "csv":
        path = _csv(tmp_path / "t.csv", *(f"t{i},{v},c1,T1,10" for i, v in enumerate(values)))
    else:
        path = _jsonl(tmp_path / "t.jsonl", *(_tx(f"t{i}", v) for i, v in enumerate(values)))
    read = both(path)
    if isinstance(expected, str):
        assert read.bad[:1] == [(1, expected)]
    else:
        assert [stamp for _, stamp, _ in read.rows] == expected and not read.bad


# --- 6. blank lines -----------------------------------------------------------------------


@pytest.mark.parametrize("end", ["\n", "\r\n"])
def test_blank_lines_are_skipped_and_later_rows_keep_their_numbers(
    tmp_path: Path, end: str
) -> None:
    """Row N is the file's line N+1 (the header is line 1), blank lines counted: what an
    editor shows."""
    path = _csv(
        tmp_path / "blank.csv",
        "t1,2026-01-01T10:00:00Z,c1,T1,10",
        "",
        "t2,2026-01-01T10:00:00Z,c1,T1,-20",
        "",
        "",
        end=end,
    )
    read = both(path)
    assert [tid for tid, _, _ in read.rows] == ["t1"]
    assert read.bad == [(3, "amount: must be >= 0, got -20")]
    trailing = _csv(tmp_path / "trailing.csv", "t1,2026-01-01T10:00:00Z,c1,T1,10", "", end=end)
    assert [tid for tid, _, _ in both(trailing).rows] == ["t1"]
    read_history(trailing)  # no --skip-invalid needed


def test_blank_lines_in_json_lines_keep_the_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "blank.jsonl"
    good = json.dumps(_tx("a", "2026-01-01T10:00:00Z"))
    bad = json.dumps(_tx("b", "2026-01-01T10:00:00Z", amount=-1))
    path.write_text(f"\n{good}\n\n\n{bad}\n\n")
    assert both(path).bad == [(5, "amount: must be >= 0, got -1")]


# --- 7. rows polars cannot split ----------------------------------------------------------

RAGGED = (
    "6 values where the header has 5 columns (a value holding ',' must be quoted, e.g. \"12,5\")"
)


def test_a_row_with_more_values_than_columns_is_named_and_skippable(tmp_path: Path) -> None:
    path = _csv(
        tmp_path / "ragged.csv",
        "t1,2026-01-01T10:00:00Z,c1,T1,10",
        "t2,2026-01-01T11:00:00Z,c1,T1,12,5",
        "t3,2026-01-01T11:00:00Z,c1,T1,-1",
        "t4,2026-01-01T12:00:00Z,c1,T1,10",
    )
    read = both(path)
    assert [tid for tid, _, _ in read.rows] == ["t1", "t4"]
    assert read.bad == [(2, RAGGED), (3, "amount: must be >= 0, got -1")]
    with pytest.raises(BadRowsError) as stopped:
        read_history(path)
    assert str(stopped.value) == f"{path}: row 2: {RAGGED} (2 of 4 rows are bad; " + (
        "--skip-invalid skips them and writes them to a rejects file)"
    )
    out = tmp_path / "produce.rejects.csv"
    write_rejects(read_transactions(path).rejected, out)
    assert out.read_text().splitlines()[1].startswith('2,,"6 values where')


def test_produce_skip_invalid_sends_the_rows_around_a_ragged_one(
    tmp_path: Path, valkey_url: str, client: redis.Redis
) -> None:
    path = _csv(
        tmp_path / "ragged.csv",
        "t1,2026-01-01T10:00:00Z,c1,T1,10",
        "t2,2026-01-01T11:00:00Z,c1,T1,12,5",
        "t3,2026-01-01T12:00:00Z,c1,T1,10",
    )
    env = {"FRAUDSTREAM_VALKEY_URL": valkey_url}
    stopped = run_cli("produce", str(path), env=env)
    assert stopped.returncode == 2 and "Traceback" not in stopped.stderr
    assert f"{path}: row 2: 6 values where the header has 5 columns" in stopped.stderr
    result = run_cli("produce", str(path), "--skip-invalid", env=env)
    assert result.returncode == 0, result.stderr
    assert "sent 2 transactions, rejected 1" in result.stdout
    rejects = (tmp_path / "ragged.rejects.csv").read_text().splitlines()
    assert rejects[1].startswith('2,,"6 values where the header has 5 columns')


def test_a_quote_that_never_closes_names_its_row_and_field(tmp_path: Path) -> None:
    path = _csv(
        tmp_path / "quote.csv",
        "t0,2026-01-01T09:00:00Z,c1,T1,1",
        't1,2026-01-01T10:00:00Z,"c1,T1,10',
        "t2,2026-01-01T11:00:00Z,c1,T1,5",
    )
    said = f'{path}: row 2: customer_id: a quote (") opens here and is never closed'
    for read in (read_transactions, read_history):
        with pytest.raises(DataFileError) as caught:
            read(path)
        assert str(caught.value).startswith(said)


def test_bytes_that_are_not_utf8_in_a_parquet_column_name_row_and_field(tmp_path: Path) -> None:
    path = tmp_path / "binary.parquet"
    pl.DataFrame(
        {
            "transaction_id": ["a", "b"],
            "timestamp": [TEN, TEN],
            "customer_id": ["c", "c"],
            "terminal_id": [b"\x00\xff", b"ok"],
            "amount": [1.0, 2.0],
        }
    ).write_parquet(path)
    read = both(path)
    assert [tid for tid, _, _ in read.rows] == ["b"]
    assert read.bad == [(1, "terminal_id: not UTF-8 text, got 00ff")]


# --- 8. smaller ---------------------------------------------------------------------------


def test_json_lines_after_a_byte_order_mark_are_json_lines(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "bom.jsonl", _tx("j1", "2026-01-01T10:00:00Z"), bom=True)
    assert both(path).rows == [("j1", TEN, 10.0)]


@pytest.mark.parametrize("name", ["empty.jsonl", "empty.csv", "blank.jsonl"])
def test_an_empty_file_is_said_to_be_empty(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text("\n\n" if name.startswith("blank") else "")
    for read in (read_transactions, read_history):
        with pytest.raises(DataFileError) as caught:
            read(path)
        assert str(caught.value) == f"{path}: the file is empty (no rows)"


def test_a_time_too_far_ahead_is_refused_with_the_workers_rule_and_message(
    tmp_path: Path, client: redis.Redis
) -> None:
    from fraudstream.features import FeatureEngine

    path = _csv(
        tmp_path / "future.csv",
        "fut1,9999-12-31T00:00:00Z,cf,T1,10",
        "fut2,2031-01-01T00:00:00Z,cf,T1,10",
        "ok,2026-01-01T10:00:00Z,cf,T1,10",
    )
    now = datetime(2026, 1, 2, tzinfo=UTC).timestamp()
    engine = FeatureEngine(client, max_future_skew_s=300, clock=lambda: now, warm_up=False)
    read = read_transactions(path, check=engine.check)
    assert [t.transaction_id for t in read.transactions] == ["ok"]
    assert [(r.row, r.field) for r in read.rejected] == [(1, "timestamp"), (2, "timestamp")]
    assert read.rejected[1].reason == (
        "timestamp: 2031-01-01T00:00:00+00:00 is 157680000 s in the future (max skew 300 s)"
    )


def test_float_ids_read_alike_on_both_paths(tmp_path: Path) -> None:
    """A JSON lines or Parquet column of integer ids with a gap comes as floats: 42.0 is id
    "42" on both paths (offline read "42.0", so its features went to another transaction),
    1.5 stays "1.5"."""
    stamp = "2026-01-01T10:00:00Z"
    records = [_tx(42.0, stamp), _tx(1.5, "2026-01-01T10:01:00Z")]  # type: ignore[arg-type]
    read = both(_jsonl(tmp_path / "floats.jsonl", *records))
    assert [r[0] for r in read.rows] == ["42", "1.5"]
    parquet = tmp_path / "floats.parquet"
    pl.DataFrame(
        {
            "transaction_id": [42.0, 1.5],
            "timestamp": [datetime(2026, 1, 1, 10, tzinfo=UTC), datetime(2026, 1, 1, 10, 1)],
            "customer_id": ["c1", "c1"],
            "terminal_id": ["T1", "T1"],
            "amount": [10.0, 10.0],
        },
        schema_overrides={"timestamp": pl.Datetime("us", "UTC")},
    ).write_parquet(parquet)
    assert [r[0] for r in both(parquet).rows] == ["42", "1.5"]


def test_grid_coordinates_off_the_grid_are_refused_on_both_paths(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "grid.jsonl", _tx("a", "2026-01-01T10:00:00Z", x=5.0, y=150.0))
    for read in (offline(path), online(path)):  # in words of their own (the schema's, online)
        assert read.rows == [] and read.bad[0][0] == 1 and read.bad[0][1].startswith("y: ")
