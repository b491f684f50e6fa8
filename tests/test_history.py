"""Reading histories: formats by content, Handbook quirks, bad rows, column maps."""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from fraudstream.columns import ColumnMap, column_map
from fraudstream.errors import BadRowsError, ConfigError, DataFileError
from fraudstream.features import backfill
from fraudstream.history import ReadOptions, read_history, read_labels
from historykit import set_fields, tiny_handbook_csv, zero_amounts


@pytest.fixture
def handbook(tmp_path: Path) -> Path:
    return tiny_handbook_csv(tmp_path / "handbook.csv")


def test_handbook_csv_with_zero_amounts_is_read(handbook: Path) -> None:
    zero_amounts(handbook, [2, 5])
    history = read_history(handbook)
    frame = history.frame
    assert history.naive_times and history.skipped == 0
    assert frame.schema["timestamp"] == pl.Datetime("us", "UTC")
    assert frame.schema["customer_id"] == pl.String
    assert not any(c.startswith("TX_") for c in frame.columns)
    assert frame["amount"][1] == 0.0 and frame["amount"][4] == 0.0
    assert (frame["merchant_id"] == frame["terminal_id"]).all()
    assert set(frame["currency"]) == {"EUR"} and set(frame["channel"]) == {"card_present"}


def test_zero_amounts_give_no_infinite_feature(handbook: Path) -> None:
    zero_amounts(handbook, range(1, 40))
    frame = read_history(handbook).frame
    features = backfill(frame, None)
    values = features.drop("transaction_id").cast(pl.Float64).to_numpy()
    assert not np.isinf(values).any()
    zero = features.filter(frame["amount"] == 0)
    for name in ("tx_amount", "customer_tx_count_1h", "customer_amount_sum_24h"):
        assert zero[name].is_finite().all(), name


def test_bad_rows_stop_with_file_row_field_reason_and_count(handbook: Path) -> None:
    set_fields(handbook, {3: {"TX_AMOUNT": "-5"}, 7: {"TX_DATETIME": "yesterday"}})
    with pytest.raises(BadRowsError) as caught:
        read_history(handbook)
    err = caught.value
    assert (err.row, err.field, err.bad) == (3, "amount", 2)
    assert str(err).startswith(f"{handbook}: row 3: amount: must be >= 0, got -5 (2 of ")


def test_skip_invalid_writes_the_rejects_with_reasons_and_values(handbook: Path) -> None:
    total = len(handbook.read_text().splitlines()) - 1
    set_fields(handbook, {3: {"TX_AMOUNT": "-5"}, 7: {"TX_DATETIME": "yesterday"}})
    set_fields(handbook, {9: {"CUSTOMER_ID": ""}})
    history = read_history(handbook, ReadOptions(skip_invalid=True))
    assert history.skipped == 3 and history.frame.height == total - 3
    assert history.rejects == handbook.with_name("handbook.rejects.csv")
    rows = list(csv.DictReader(history.rejects.read_text().splitlines()))
    assert [(r["row"], r["field"]) for r in rows] == [
        ("3", "amount"),
        ("7", "timestamp"),
        ("9", "customer_id"),
    ]
    assert rows[0]["TX_AMOUNT"] == "-5" and rows[1]["TX_DATETIME"] == "yesterday"
    assert "not a date-time" in rows[1]["reason"]


def test_format_is_read_from_the_content(tmp_path: Path, handbook: Path) -> None:
    frame = pl.read_csv(handbook)
    parquet_named_csv = tmp_path / "really_parquet.csv"
    frame.write_parquet(parquet_named_csv)
    assert read_history(parquet_named_csv).frame.height == frame.height
    jsonl = tmp_path / "h.jsonl"
    frame.write_ndjson(jsonl)
    assert read_history(jsonl).frame.height == frame.height
    csv_named_parquet = tmp_path / "h.parquet"
    csv_named_parquet.write_bytes(handbook.read_bytes())
    with pytest.raises(DataFileError, match=r"h\.parquet: not a Parquet file .*CSV"):
        read_history(csv_named_parquet)


def test_corrupt_parquet_is_one_line_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"PAR1" + b"\x00" * 64)
    with pytest.raises(DataFileError) as caught:
        read_history(path)
    assert str(caught.value).startswith(f"{path}: ") and "\n" not in str(caught.value)


BANK = (
    "TxnRef;When;Client;Pos;TxnAmt;Branch\n"
    "A1;31/03/2024 23:59;C9;P1;12.50;Leeds\n"
    "A2;01/04/2024 08:05;C9;P2;0;Leeds\n"
)


def test_a_bank_export_is_mapped_by_a_toml_file(tmp_path: Path) -> None:
    path = tmp_path / "bank.csv"
    path.write_text(BANK.replace(";", ","))
    mapping = tmp_path / "map.toml"
    mapping.write_text(
        'date_format = "%d/%m/%Y %H:%M"\n[columns]\ntransaction_id = "TxnRef"\n'
        'timestamp = "When"\ncustomer_id = "Client"\nterminal_id = "Pos"\n'
    )
    columns = column_map(mapping, ["amount=TxnAmt"], None)
    frame = read_history(path, ReadOptions(columns)).frame
    assert frame["transaction_id"].to_list() == ["A1", "A2"]
    assert frame["timestamp"][0] == datetime(2024, 3, 31, 23, 59, tzinfo=UTC)
    assert frame["amount"].to_list() == [12.5, 0.0] and "Branch" not in frame.columns


def test_a_missing_field_is_named_before_any_row_is_read(tmp_path: Path) -> None:
    path = tmp_path / "bank.csv"
    path.write_text(BANK.replace(";", ","))
    columns = ColumnMap({"transaction_id": "TxnRef", "timestamp": "When", "amount": "TxnAmt"})
    with pytest.raises(ConfigError, match=r"^customer_id: required field has no column"):
        read_history(path, ReadOptions(columns))
    with pytest.raises(ConfigError, match=r"columns\.amount: the file has no column 'Amt'"):
        read_history(path, ReadOptions(ColumnMap({"amount": "Amt"})))
    with pytest.raises(ConfigError, match=r"columns\.amout: not a field"):
        ColumnMap({"amout": "TxnAmt"})
    with pytest.raises(ConfigError, match="expected FIELD=COLUMN"):
        column_map(None, ["amount"], None)


def test_labels_beside_the_history_may_be_csv(tmp_path: Path, handbook: Path) -> None:
    assert read_labels(handbook) is None
    pl.DataFrame({"transaction_id": ["1"], "reported_at": ["2018-04-09T00:00:00Z"]}).write_csv(
        tmp_path / "labels.csv"
    )
    labels = read_labels(handbook)
    assert labels is not None and labels.schema["reported_at"] == pl.Datetime("us", "UTC")


UNIX = (
    "trans_num,unix_time,cc_num,merchant,amt\n"
    "t1,1546300800,4000,M1,12.50\n"
    "t2,1546304400.5,4000,M2,0\n"
)


def test_unix_times_are_read_as_seconds_or_milliseconds(tmp_path: Path) -> None:
    path = tmp_path / "unix.csv"
    path.write_text(UNIX)
    pairs = ["transaction_id=trans_num", "timestamp=unix_time", "customer_id=cc_num"]
    pairs += ["terminal_id=merchant", "amount=amt"]
    first = datetime(2019, 1, 1, tzinfo=UTC)
    second = datetime(2019, 1, 1, 1, 0, 0, 500_000, tzinfo=UTC)
    # sniffed from the numbers, then named
    for fmt in (None, "epoch"):
        frame = read_history(path, ReadOptions(column_map(None, pairs, fmt))).frame
        assert frame["timestamp"].to_list() == [first, second]
    millis = tmp_path / "millis.csv"
    millis.write_text(UNIX.replace("1546300800,", "1546300800000,").replace(".5,", "500,"))
    for fmt in (None, "epoch_ms"):
        frame = read_history(millis, ReadOptions(column_map(None, pairs, fmt))).frame
        assert frame["timestamp"].to_list() == [first, second]
    # a row that is not a number is named like any other bad timestamp
    path.write_text(UNIX + "t3,soon,4000,M1,1\n")
    with pytest.raises(BadRowsError, match=r"row 3: timestamp: not a date-time"):
        read_history(path, ReadOptions(column_map(None, pairs, "epoch")))


def test_unix_times_reach_the_stream_reader_too(tmp_path: Path) -> None:
    from fraudstream.ingest import read_transactions

    path = tmp_path / "unix.csv"
    path.write_text(UNIX)
    pairs = ["transaction_id=trans_num", "timestamp=unix_time", "customer_id=cc_num"]
    pairs += ["terminal_id=merchant", "amount=amt"]
    for fmt in (None, "epoch"):
        read = read_transactions(path, column_map(None, pairs, fmt))
        assert not read.rejected, read.rejected
        stamps = [t.timestamp for t in read.transactions]
        assert stamps == [
            datetime(2019, 1, 1, tzinfo=UTC),
            datetime(2019, 1, 1, 1, 0, 0, 500_000, tzinfo=UTC),
        ]


# The same three instants written as exports write them: 13 January 2019 00:03, 13 January
# 2019 13:45 and 2 February 2019 09:30 (the 13th tells day-first from month-first).
LAYOUTS = {
    "minutes": ("2019-01-13 00:03", "2019-01-13 13:45", "2019-02-02 09:30"),
    "iso minutes": ("2019-01-13T00:03", "2019-01-13T13:45", "2019-02-02T09:30"),
    "slashes": ("2019/01/13 00:03:00", "2019/01/13 13:45:00", "2019/02/02 09:30:00"),
    "day first": ("13/01/2019 00:03", "13/01/2019 13:45", "02/02/2019 09:30"),
    "day first, seconds": ("13/01/2019 00:03:00", "13/01/2019 13:45:00", "02/02/2019 09:30:00"),
    "month first": ("01/13/2019 00:03", "01/13/2019 13:45", "02/02/2019 09:30"),
    "month first, seconds": ("01/13/2019 00:03:00", "01/13/2019 13:45:00", "02/02/2019 09:30:00"),
    "dots": ("13.01.2019 00:03", "13.01.2019 13:45", "02.02.2019 09:30"),
}
INSTANTS = [
    datetime(2019, 1, 13, 0, 3, tzinfo=UTC),
    datetime(2019, 1, 13, 13, 45, tzinfo=UTC),
    datetime(2019, 2, 2, 9, 30, tzinfo=UTC),
]


def _export(path: Path, stamps: tuple[str, ...]) -> Path:
    rows = [f"t{i},{s},c{i % 2},T{i},{10 * i}.5" for i, s in enumerate(stamps)]
    path.write_text("transaction_id,timestamp,customer_id,terminal_id,amount\n" + "\n".join(rows))
    return path


@pytest.mark.parametrize("layout", LAYOUTS)
def test_common_export_date_layouts_are_read_without_a_date_format(
    tmp_path: Path, layout: str
) -> None:
    from fraudstream.ingest import read_transactions

    path = _export(tmp_path / "export.csv", LAYOUTS[layout])
    assert read_history(path).frame["timestamp"].to_list() == INSTANTS
    read = read_transactions(path)
    assert not read.rejected, read.rejected
    assert [t.timestamp for t in read.transactions] == INSTANTS


def test_day_and_month_order_is_settled_by_the_whole_column(tmp_path: Path) -> None:
    """The first rows of a time-ordered export fit both orders; a later one does not."""
    from fraudstream.ingest import read_transactions

    early = tuple(f"0{d}/01/2019 10:00" for d in range(1, 10)) * 200
    path = _export(tmp_path / "export.csv", (*early, "25/01/2019 10:00"))
    assert read_history(path).frame["timestamp"][-1] == datetime(2019, 1, 25, 10, tzinfo=UTC)
    assert read_transactions(path).transactions[-1].timestamp == datetime(
        2019, 1, 25, 10, tzinfo=UTC
    )


def test_an_ambiguous_day_and_month_order_is_refused_naming_the_option(tmp_path: Path) -> None:
    from fraudstream.ingest import read_transactions

    path = _export(tmp_path / "export.csv", ("01/02/2019 10:00", "03/04/2019 11:00"))
    for read in (read_history, read_transactions):
        with pytest.raises(ConfigError) as caught:
            read(path)
        message = str(caught.value)
        assert message.startswith("timestamp: ") and "--date-format" in message
        assert "%d/%m/%Y %H:%M" in message and "%m/%d/%Y %H:%M" in message
    frame = read_history(path, ReadOptions(ColumnMap(date_format="%m/%d/%Y %H:%M"))).frame
    assert frame["timestamp"][0] == datetime(2019, 1, 2, 10, tzinfo=UTC)


def test_a_pickle_an_archive_or_a_compressed_file_is_named_not_misread(tmp_path: Path) -> None:
    import gzip
    import pickle
    import zipfile

    pickled = tmp_path / "2018-04-01.pkl"
    pickled.write_bytes(pickle.dumps({"TX_AMOUNT": [1.0]}, protocol=4))
    zipped = tmp_path / "creditcard.csv.zip"
    with zipfile.ZipFile(zipped, "w") as archive:
        archive.writestr("creditcard.csv", "Time,Amount\n0,1.5\n")
    gzipped = tmp_path / "history.csv.gz"
    gzipped.write_bytes(gzip.compress(b"transaction_id,timestamp\n"))
    expected = {
        pickled: "a Python pickle",
        zipped: "a ZIP archive",
        gzipped: "gzip-compressed",
    }
    for path, kind in expected.items():
        with pytest.raises(DataFileError) as caught:
            read_history(path)
        assert str(caught.value).startswith(f"{path}: {kind}"), str(caught.value)
        assert "\n" not in str(caught.value)


def test_a_folder_without_our_file_names_what_it_holds(tmp_path: Path, handbook: Path) -> None:
    days = tmp_path / "days"
    days.mkdir()
    with pytest.raises(DataFileError, match=r"days: no transactions\.parquet .*it is empty$"):
        read_history(days)
    for day in ("2018-04-01", "2018-04-02", "2018-04-03", "2018-04-04"):
        (days / f"{day}.csv").write_bytes(handbook.read_bytes())
    with pytest.raises(DataFileError) as caught:
        read_history(days)
    assert str(caught.value).endswith(
        "it holds 4 files (2018-04-01.csv, 2018-04-02.csv, 2018-04-03.csv, …): "
        "pass one file, or join them into one first"
    )
    (days / "transactions.csv").write_bytes(handbook.read_bytes())
    assert read_history(days).frame.height == read_history(handbook).frame.height


def test_the_ulb_credit_card_dataset_is_refused_saying_why(tmp_path: Path) -> None:
    header = ["Time", *(f"V{i}" for i in range(1, 29)), "Amount", "Class"]
    path = tmp_path / "creditcard.csv"
    path.write_text(",".join(header) + "\n" + ",".join(["0"] * 29 + ["149.62", "0"]) + "\n")
    with pytest.raises(ConfigError) as caught:
        read_history(path)
    message = str(caught.value)
    assert message.startswith("transaction_id: required field has no column: this is the ULB")
    assert "no customer or terminal" in message and "\n" not in message


def test_fraud_flags_are_read_as_exports_write_them(tmp_path: Path) -> None:
    flags = ["Yes", "No", "Y", "n", "TRUE", "false", "1", "0", "t", "F"]
    rows = [f"t{i},2019-01-01 00:0{i}:00,c1,T1,1,{f}" for i, f in enumerate(flags)]
    path = tmp_path / "flags.csv"
    path.write_text("transaction_id,timestamp,customer_id,terminal_id,amount,is_fraud\n")
    path.write_text(path.read_text() + "\n".join(rows) + "\n")
    got = read_history(path).frame["is_fraud"].to_list()
    assert got == [True, False, True, False, True, False, True, False, True, False]
    path.write_text(path.read_text() + "t9,2019-01-01 00:09:00,c1,T1,1,maybe\n")
    with pytest.raises(BadRowsError, match=r"row 11: is_fraud: .*got maybe"):
        read_history(path)


def test_labels_are_read_as_chargeback_files_write_them(tmp_path: Path, handbook: Path) -> None:
    """Only the frauds (no is_fraud column), a day-first report time, a Yes/No flag: all
    read; a row that does not parse is named, and no flag can skip it."""
    from fraudstream.history import read_label_file

    frauds = tmp_path / "chargebacks.csv"
    frauds.write_text("transaction_id,reported_at\n7,13/04/2018 10:00\n9,14/04/2018 11:30\n")
    labels = read_label_file(frauds)
    assert labels["is_fraud"].to_list() == [True, True]
    assert labels["transaction_id"].to_list() == ["7", "9"]
    assert labels["reported_at"][0] == datetime(2018, 4, 13, 10, tzinfo=UTC)
    flagged = tmp_path / "flags.csv"
    flagged.write_text(
        "transaction_id,reported_at,is_fraud\n7,2018-04-13T10:00:00Z,Yes\n8,2018-04-13T12:00:00Z,No\n"
    )
    assert read_label_file(flagged)["is_fraud"].to_list() == [True, False]
    frame = read_history(handbook).frame
    assert backfill(frame, read_label_file(flagged)).height == frame.height
    flagged.write_text(flagged.read_text() + "9,soon,Yes\n10,2018-04-14T09:00:00Z,perhaps\n")
    with pytest.raises(BadRowsError) as caught:
        read_label_file(flagged)
    assert str(caught.value) == (
        f"{flagged}: row 3: reported_at: not a date-time, got soon (2 of 4 rows are bad)"
    )
    missing = tmp_path / "nodate.csv"
    missing.write_text("transaction_id,when\n7,2018-04-13\n")
    with pytest.raises(DataFileError, match=r"labels: no reported_at column \(it has"):
        read_label_file(missing)
