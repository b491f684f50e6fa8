"""Files in the well-known public datasets' layouts, written from made-up rows (no dataset
content): the headers, quoting, time formats and value shapes those files have."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

SPARKOV_HEADER = (
    ",trans_date_trans_time,cc_num,merchant,category,amt,first,last,gender,street,city,state,"
    "zip,lat,long,city_pop,job,dob,trans_num,unix_time,merch_lat,merch_long,is_fraud"
).split(",")
PAYSIM_HEADER = (
    "step,type,amount,nameOrig,oldbalanceOrg,newbalanceOrig,nameDest,oldbalanceDest,"
    "newbalanceDest,isFraud,isFlaggedFraud"
).split(",")
IEEE_HEADER = (
    "TransactionID,isFraud,TransactionDT,TransactionAmt,ProductCD,card1,card2,card3,card4,"
    "card5,card6,addr1,addr2,dist1,dist2,P_emaildomain,R_emaildomain,C1,D1,M1,V1"
).split(",")
TABFORMER_HEADER = (
    "User,Card,Year,Month,Day,Time,Amount,Use Chip,Merchant Name,Merchant City,Merchant State,"
    "Zip,MCC,Errors?,Is Fraud?"
).split(",")
CAIXA_HEADER = (
    "id,date,client_id,card_id,amount,use_chip,merchant_id,merchant_city,merchant_state,zip,mcc,"
    "errors"
).split(",")
PERSONAL = ("Zebediah", "Quillfeather", "42 Nowhere Lane", "1901-02-03", "Cartographer")
"""Values of the personal columns in every made-up row: no loaded field may hold them."""


def write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[object]]) -> Path:
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def sparkov_row(
    index: int,
    when: datetime,
    cc_num: str,
    merchant: str,
    amount: str,
    trans_num: str,
    *,
    category: str = "misc_net",
    merch: tuple[float, float] = (40.5, -74.25),
    fraud: int = 0,
) -> list[object]:
    first, last, street, dob, job = PERSONAL
    unix = int(when.replace(tzinfo=UTC).timestamp())
    return [
        index,
        when.strftime("%Y-%m-%d %H:%M:%S"),
        cc_num,
        merchant,
        category,
        amount,
        first,
        last,
        "F",
        street,
        "Springfield",
        "XX",
        "99999",
        "-33.5",  # the customer's home, not where the payment happened
        "151.25",
        "1234",
        job,
        dob,
        trans_num,
        unix,
        merch[0],
        merch[1],
        fraud,
    ]


def sparkov_from(frame: pl.DataFrame, path: Path) -> Path:
    """A simulated history (our columns) written as a Sparkov file: long card numbers,
    ``fraud_``-prefixed merchant names with commas, naive times, the personal columns."""
    rows = []
    for i, tx in enumerate(frame.iter_rows(named=True)):
        cc = str(4_000_000_000_000_000_000 + int(tx["customer_id"]) * 7_919)
        merchant = f"fraud_Shop {tx['terminal_id']}, Sons and Co"
        stamp = tx["timestamp"].astimezone(UTC).replace(tzinfo=None)
        rows.append(
            sparkov_row(
                i,
                stamp,
                cc,
                merchant,
                f"{tx['amount']:.2f}",
                f"t{i:08x}{int(tx['transaction_id']):08d}",
                fraud=int(tx["is_fraud"]),
            )
        )
    return write_csv(path, SPARKOV_HEADER, rows)
