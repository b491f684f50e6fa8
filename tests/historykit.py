"""Handbook-format CSV files with the real dataset's quirks, and bad rows at known places."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from fraudstream.simulate import SimulationConfig, SimulationResult, simulate

TINY = SimulationConfig(n_customers=30, n_terminals=60, n_days=5, seed=7)
HANDBOOK_HEADER = (
    "TRANSACTION_ID,TX_DATETIME,CUSTOMER_ID,TERMINAL_ID,TX_AMOUNT,"
    "TX_TIME_SECONDS,TX_TIME_DAYS,TX_FRAUD,TX_FRAUD_SCENARIO"
)


def handbook_csv(result: SimulationResult, path: Path) -> Path:
    """The history as the Handbook publishes it: integer ids, naive ``2018-04-01 00:00:31``
    times, ``TX_TIME_SECONDS`` / ``TX_TIME_DAYS``, ``TX_FRAUD``."""
    result.handbook_transactions.write_csv(path, datetime_format="%Y-%m-%d %H:%M:%S")
    return path


def tiny_handbook_csv(path: Path) -> Path:
    return handbook_csv(simulate(TINY), path)


def set_fields(path: Path, changes: Mapping[int, Mapping[str, str]]) -> None:
    """Overwrite fields of data rows (1-based, the header not counted), e.g. zero amounts."""
    lines = path.read_text().splitlines()
    header = lines[0].split(",")
    for row, fields in changes.items():
        values = lines[row].split(",")
        for name, value in fields.items():
            values[header.index(name)] = value
        lines[row] = ",".join(values)
    path.write_text("\n".join(lines) + "\n")


def zero_amounts(path: Path, rows: range | list[int]) -> None:
    set_fields(path, {row: {"TX_AMOUNT": "0.00"} for row in rows})
