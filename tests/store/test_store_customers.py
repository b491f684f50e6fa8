"""Customers loaded into the store (who an alert or a review is about), on both databases."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
import sqlalchemy as sa

from clikit import run_cli
from fraudstream.errors import SchemaError
from fraudstream.simulate import SimulationConfig, simulate
from fraudstream.store import migrate, tables
from fraudstream.store.customers import customer_rows, upsert_customers


def _stored(engine: sa.Engine) -> dict[str, tuple[str | None, ...]]:
    c = tables.customers.c
    with engine.connect() as connection:
        rows = connection.execute(sa.select(c.customer_id, c.name, c.phone, c.segment)).all()
    return {r[0]: tuple(r[1:]) for r in rows}


def test_loading_again_updates_and_adds(engine: sa.Engine) -> None:
    migrate.upgrade(engine)
    first = pl.DataFrame({"customer_id": [1, 2], "name": ["A", "B"], "segment": [0, 2]})
    with engine.begin() as connection:
        upsert_customers(connection, customer_rows(first))
    second = pl.DataFrame({"customer_id": ["2", "3"], "name": ["B2", "C"], "phone": ["+1", "+2"]})
    with engine.begin() as connection:
        upsert_customers(connection, customer_rows(second))
    assert _stored(engine) == {
        "1": ("A", None, "0"),
        "2": ("B2", "+1", None),  # what the newer file says, absent columns included
        "3": ("C", "+2", None),
    }


def test_rows_without_an_id_are_named() -> None:
    with pytest.raises(SchemaError, match="customer_id: row 2 has no value"):
        customer_rows(pl.DataFrame({"customer_id": ["1", None], "name": ["a", "b"]}))
    with pytest.raises(SchemaError, match="customer_id: required column is missing"):
        customer_rows(pl.DataFrame({"name": ["a"]}))


def test_the_simulated_customers_load_through_the_cli(tmp_path: Path) -> None:
    path = tmp_path / "customers.parquet"
    world = simulate(SimulationConfig(n_customers=40, n_terminals=50, n_days=2, seed=1))
    world.customers.write_parquet(path)
    url = f"sqlite:///{tmp_path / 'store.db'}"
    done = run_cli("db", "load-customers", str(path), "--database", url, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "40 customers loaded" in done.stdout
    stored = _stored(sa.create_engine(url))
    assert len(stored) == 40 and all(name and phone for name, phone, _ in stored.values())
    bad = tmp_path / "bad.csv"
    bad.write_text("name\nx\n")
    refused = run_cli("db", "load-customers", str(bad), "--database", url, cwd=tmp_path)
    assert refused.returncode == 2 and "customer_id: required column is missing" in refused.stderr
