"""Well-known public datasets' files load with no flags, recognised by their columns."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from fraudstream.columns import ColumnMap
from fraudstream.errors import BadRowsError, ConfigError
from fraudstream.history import ReadOptions, read_history
from fraudstream.ingest import read_transactions
from layoutkit import (
    CAIXA_HEADER,
    IEEE_HEADER,
    PAYSIM_HEADER,
    PERSONAL,
    SPARKOV_HEADER,
    TABFORMER_HEADER,
    sparkov_row,
    write_csv,
)

LONG_CARD = "4000123412341234567"  # 19 digits: past float64's exact integers
SHORT_CARD = "180012341234"  # 12 digits
MERCHANT = "fraud_Example, Tidy and Partners"
PERSONAL_COLUMNS = {"first", "last", "gender", "street", "city", "state", "zip", "dob", "job"}


@pytest.fixture
def sparkov(tmp_path: Path) -> Path:
    return write_csv(
        tmp_path / "fraudTrain.csv",
        SPARKOV_HEADER,
        [
            sparkov_row(0, datetime(2019, 1, 1, 0, 0, 18), LONG_CARD, MERCHANT, "4.97", "a1"),
            sparkov_row(
                1,
                datetime(2019, 1, 1, 0, 1, 2),
                SHORT_CARD,
                "fraud_Other Shop",
                "0",
                "b2",
                category="grocery_pos",
                merch=(36.0, -80.5),
                fraud=1,
            ),
            sparkov_row(2, datetime(2019, 1, 2, 3, 4, 5), LONG_CARD, MERCHANT, "1077.69", "c3"),
        ],
    )


@pytest.fixture
def paysim(tmp_path: Path) -> Path:
    return write_csv(
        tmp_path / "PS_log.csv",
        PAYSIM_HEADER,
        [
            [1, "PAYMENT", "9839.64", "C100", "170136.0", "160296.36", "M200", "0.0", "0.0", 0, 0],
            [1, "TRANSFER", "0.0", "C101", "0.0", "0.0", "C300", "0.0", "0.0", 1, 0],
            [2, "CASH_OUT", "92445516.64", "C100", "0.0", "0.0", "C301", "0", "0", 1, 0],
        ],
    )


@pytest.fixture
def ieee(tmp_path: Path) -> Path:
    def row(tid: int, dt: int, amt: str, addr1: str, email: str) -> list[object]:
        return [tid, 0, dt, amt, "W", 13926, "", 150.0, "visa", 142.0, "credit", addr1, 87.0]

    rows = [
        [*row(2987000, 86400, "68.5", "315.0", ""), 19.0, "", "", "", 1.0, 14.0, "T", 1.0],
        [*row(2987001, 86401, "0.0", "", ""), "", "", "gmail.com", "", 1.0, 0.0, "", ""],
    ]
    return write_csv(tmp_path / "train_transaction.csv", IEEE_HEADER, rows)


def test_a_sparkov_file_loads_with_no_flags_into_our_fields(sparkov: Path) -> None:
    history = read_history(sparkov)
    frame = history.frame
    assert frame["transaction_id"].to_list() == ["a1", "b2", "c3"]
    assert frame["timestamp"].to_list()[0] == datetime(2019, 1, 1, 0, 0, 18, tzinfo=UTC)
    assert history.naive_times
    assert frame["customer_id"].to_list() == [LONG_CARD, SHORT_CARD, LONG_CARD]
    assert frame["card_id"].to_list() == frame["customer_id"].to_list()
    assert frame["terminal_id"].to_list() == [MERCHANT, "fraud_Other Shop", MERCHANT]
    assert frame["merchant_id"].to_list() == frame["terminal_id"].to_list()
    assert frame["amount"].to_list() == [4.97, 0.0, 1077.69]
    assert frame["product_category"][1] == "grocery_pos"
    assert (frame["lat"][1], frame["lon"][1]) == (36.0, -80.5)  # where it was paid, not home
    assert frame["is_fraud"].to_list() == [False, True, False]
    assert history.layout is not None
    assert history.layout.startswith("the Sparkov layout: transaction_id=trans_num, ")
    assert "customer_id=cc_num" in history.layout and "lat=merch_lat" in history.layout


def test_a_sparkov_files_personal_columns_are_never_kept(sparkov: Path, tmp_path: Path) -> None:
    lines = sparkov.read_text().splitlines()
    # amount -7: a bad row, to be written out with its original values
    lines[2] = lines[2].replace(",grocery_pos,0,", ",grocery_pos,-7,")
    sparkov.write_text("\n".join(lines) + "\n")
    rejects = tmp_path / "rejects.csv"
    history = read_history(sparkov, ReadOptions(skip_invalid=True, rejects=rejects))
    assert history.skipped == 1
    assert not PERSONAL_COLUMNS & set(history.frame.columns)
    assert not {"unix_time", "city_pop", "long"} & set(history.frame.columns)
    seen = history.frame.cast(pl.String).write_csv() + rejects.read_text()
    assert "amount: must be >= 0, got -7" in seen
    assert not [value for value in PERSONAL if value in seen]
    assert "Springfield" not in seen


def test_a_paysim_file_gets_row_ids_and_step_hours(paysim: Path) -> None:
    history = read_history(paysim)
    frame = history.frame
    assert frame["transaction_id"].to_list() == ["paysim-1", "paysim-2", "paysim-3"]
    origin = datetime(2017, 1, 1, tzinfo=UTC)
    assert frame["timestamp"].to_list() == [
        origin + timedelta(hours=1, microseconds=1),
        origin + timedelta(hours=1, microseconds=2),
        origin + timedelta(hours=2, microseconds=3),
    ]
    assert frame["customer_id"].to_list() == ["C100", "C101", "C100"]
    assert frame["terminal_id"].to_list() == ["M200", "C300", "C301"]
    assert frame["merchant_id"].to_list() == frame["terminal_id"].to_list()
    assert frame["amount"].to_list() == [9839.64, 0.0, 92445516.64]
    assert frame["product_category"].to_list() == ["PAYMENT", "TRANSFER", "CASH_OUT"]
    assert frame["is_fraud"].to_list() == [False, True, True]
    assert frame["channel"].unique().to_list() == ["card_present"]
    assert not {"oldbalanceOrg", "isFlaggedFraud"} & set(frame.columns)
    assert not history.naive_times
    assert history.layout is not None and "transaction_id=paysim-<row>" in history.layout


def test_produce_reads_a_paysim_file_as_the_offline_commands_do(paysim: Path) -> None:
    ingested = read_transactions(paysim)
    assert not ingested.rejected
    frame = read_history(paysim).frame
    assert [t.transaction_id for t in ingested.transactions] == frame["transaction_id"].to_list()
    assert [t.timestamp for t in ingested.transactions] == frame["timestamp"].to_list()
    assert [t.amount for t in ingested.transactions] == [9839.64, 0.0, 92445516.64]
    assert ingested.layout is not None and ingested.layout.startswith("the PaySim layout")


def test_produce_reads_a_sparkov_file_without_its_personal_columns(sparkov: Path) -> None:
    ingested = read_transactions(sparkov)
    assert not ingested.rejected
    first = ingested.transactions[0]
    assert (first.customer_id, first.terminal_id, first.amount) == (LONG_CARD, MERCHANT, 4.97)
    assert first.timestamp == datetime(2019, 1, 1, 0, 0, 18, tzinfo=UTC)
    assert not [v for v in PERSONAL if v in repr(ingested.transactions)]


def test_an_ieee_cis_file_loads_with_no_flags(ieee: Path) -> None:
    history = read_history(ieee)
    frame = history.frame
    assert frame["transaction_id"].to_list() == ["2987000", "2987001"]
    assert frame["timestamp"].to_list() == [
        datetime(2017, 12, 2, tzinfo=UTC),
        datetime(2017, 12, 2, 0, 0, 1, tzinfo=UTC),
    ]
    assert frame["customer_id"].to_list() == ["13926", "13926"]
    assert frame["terminal_id"].to_list() == ["W-315", "W-na"]
    assert frame["amount"].to_list() == [68.5, 0.0]
    assert frame["product_category"].to_list() == ["W", "W"]
    assert frame["email"].to_list() == [None, "gmail.com"]
    assert history.layout is not None and history.layout.startswith("the IEEE-CIS layout")


@pytest.fixture
def tabformer(tmp_path: Path) -> Path:
    rows = [
        [0, 0, 2002, 9, 1, "06:21", "$134.09", "Swipe Transaction", "3527213246127876953",
         "La Verne", "CA", "91750.0", 5300, "", "No"],
        [0, 1, 2002, 9, 1, "06:42", "$0.00", "Online Transaction", "-727612092139916043",
         "ONLINE", "", "", 4829, "Insufficient Balance,", "Yes"],
        [1, 0, 2002, 9, 2, "17:05", "$1,038.40", "Chip Transaction", "3527213246127876953",
         "La Verne", "CA", "91750.0", 5300, "", "No"],
    ]  # fmt: skip
    return write_csv(tmp_path / "card_transaction.v1.csv", TABFORMER_HEADER, rows)


def test_an_ibm_tabformer_file_loads_with_no_flags(tabformer: Path) -> None:
    history = read_history(tabformer)
    frame = history.frame
    assert frame["transaction_id"].to_list() == ["tabformer-1", "tabformer-2", "tabformer-3"]
    assert frame["timestamp"].to_list() == [
        datetime(2002, 9, 1, 6, 21, tzinfo=UTC),
        datetime(2002, 9, 1, 6, 42, tzinfo=UTC),
        datetime(2002, 9, 2, 17, 5, tzinfo=UTC),
    ]
    assert frame["customer_id"].to_list() == ["0", "0", "1"]
    assert frame["card_id"].to_list() == ["0-0", "0-1", "1-0"]
    assert frame["terminal_id"].to_list() == [
        "3527213246127876953",
        "-727612092139916043",
        "3527213246127876953",
    ]
    assert frame["amount"].to_list() == [134.09, 0.0, 1038.4]
    assert frame["channel"].to_list() == ["card_present", "ecommerce", "card_present"]
    assert frame["mcc"].to_list() == ["5300", "4829", "5300"]
    assert frame["is_fraud"].to_list() == [False, True, False]
    assert history.layout is not None and history.layout.startswith("the IBM TabFormer layout")
    ingested = read_transactions(tabformer)
    assert not ingested.rejected
    assert [t.timestamp for t in ingested.transactions] == frame["timestamp"].to_list()
    assert [t.card_id for t in ingested.transactions] == frame["card_id"].to_list()


def test_a_tabformer_refund_is_named_by_its_row(tabformer: Path) -> None:
    text = tabformer.read_text().replace("$1,038.40", "$-77.00")
    tabformer.write_text(text)
    with pytest.raises(BadRowsError) as caught:
        read_history(tabformer)
    assert caught.value.row == 3 and "amount: must be >= 0, got $-77.00" in str(caught.value)


def test_a_financial_transactions_file_loads_with_no_flags(tmp_path: Path) -> None:
    rows = [
        [7475327, "2010-01-01 00:01:00", 1556, 2972, "$-77.00", "Swipe Transaction", 59935,
         "Beulah", "ND", "58523.0", 5499, ""],
        [7475328, "2010-01-01 00:02:00", 561, 4575, "$14.57", "Online Transaction", 67570,
         "ONLINE", "", "", 5311, ""],
    ]  # fmt: skip
    path = write_csv(tmp_path / "transactions_data.csv", CAIXA_HEADER, rows)
    history = read_history(path, ReadOptions(skip_invalid=True))
    frame = history.frame
    assert history.skipped == 1  # the refund
    assert frame["transaction_id"].to_list() == ["7475328"]
    assert frame["timestamp"].to_list() == [datetime(2010, 1, 1, 0, 2, tzinfo=UTC)]
    assert (frame["customer_id"][0], frame["card_id"][0]) == ("561", "4575")
    assert (frame["terminal_id"][0], frame["merchant_id"][0]) == ("67570", "67570")
    assert frame["channel"].to_list() == ["ecommerce"] and frame["mcc"].to_list() == ["5311"]
    assert history.layout is not None and "Financial Transactions" in history.layout


def test_an_explicit_column_wins_over_the_layout(sparkov: Path, paysim: Path) -> None:
    mapped = ColumnMap({"timestamp": "unix_time", "terminal_id": "category"}, "epoch")
    history = read_history(sparkov, ReadOptions(columns=mapped))
    frame = history.frame
    assert frame["timestamp"][0] == datetime(2019, 1, 1, 0, 0, 18, tzinfo=UTC)
    assert frame["terminal_id"][1] == "grocery_pos"
    assert frame["merchant_id"][1] == "fraud_Other Shop"  # the rest as the layout says
    assert frame["customer_id"][0] == LONG_CARD
    assert history.layout is not None and "timestamp=" not in history.layout
    assert "terminal_id=" not in history.layout and "customer_id=cc_num" in history.layout
    own_ids = read_history(paysim, ReadOptions(columns=ColumnMap({"transaction_id": "nameDest"})))
    assert own_ids.frame["transaction_id"].to_list() == ["M200", "C300", "C301"]
    assert own_ids.frame["timestamp"][2] == datetime(2017, 1, 1, 2, 0, 0, 3, tzinfo=UTC)


@pytest.mark.parametrize(
    ("layout", "drop", "message"),
    [
        ("sparkov", "trans_num", "transaction_id: required field has no column"),
        ("sparkov", "amt", "amount: required field has no column"),
        ("paysim", "step", "timestamp: required field has no column"),
        ("paysim", "nameOrig", "customer_id: required field has no column"),
    ],
)
def test_a_file_that_partly_matches_a_layout_names_the_missing_field(
    layout: str, drop: str, message: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    path: Path = request.getfixturevalue(layout)
    frame = pl.read_csv(path, infer_schema=False).drop(drop)
    partial = tmp_path / "partial.csv"
    frame.write_csv(partial)
    with pytest.raises(ConfigError) as caught:
        read_history(partial)
    text = str(caught.value)
    assert text.startswith(message) and "\n" not in text
    assert text.endswith(f"which has {drop}")


def test_a_paysim_file_without_its_balances_still_derives_ids_and_times(
    paysim: Path, tmp_path: Path
) -> None:
    lean = tmp_path / "lean.csv"
    pl.read_csv(paysim, infer_schema=False).select(
        "step", "amount", "nameOrig", "nameDest"
    ).write_csv(lean)
    history = read_history(lean)
    assert history.frame["transaction_id"].to_list() == ["paysim-1", "paysim-2", "paysim-3"]
    assert history.frame["timestamp"][2] == datetime(2017, 1, 1, 2, 0, 0, 3, tzinfo=UTC)
    assert history.layout is not None and history.layout.startswith("the PaySim layout")


def test_a_sparkov_file_without_merchant_places_never_takes_the_cardholders_home(
    sparkov: Path, tmp_path: Path
) -> None:
    lean = tmp_path / "fraudTest.csv"
    pl.read_csv(sparkov, infer_schema=False).drop("merch_lat", "merch_long").write_csv(lean)
    history = read_history(lean)
    assert history.frame.height == 3
    assert not {"lat", "lon"} & set(history.frame.columns)


def test_a_paysim_row_with_a_bad_step_is_named_by_its_step(paysim: Path) -> None:
    lines = paysim.read_text().splitlines()
    lines[2] = "x" + lines[2][1:]
    lines[3] = lines[3][1:]
    paysim.write_text("\n".join(lines) + "\n")
    with pytest.raises(BadRowsError) as caught:
        read_history(paysim)
    assert "row 2: timestamp: step is not a whole number, got x (2 of 3 rows" in str(caught.value)
    rejects = paysim.with_name("rejects.csv")
    history = read_history(paysim, ReadOptions(skip_invalid=True, rejects=rejects))
    assert history.frame["transaction_id"].to_list() == ["paysim-1"]
    written = pl.read_csv(rejects, infer_schema=False)
    assert "step" in written.columns and "nameOrig" in written.columns
    reasons = written["reason"].to_list()
    assert reasons == [
        "timestamp: step is not a whole number, got x",
        "timestamp: required, step is empty",
    ]
