"""The transaction and the customer behind a decision, looked up in the SQL store once per
batch.

A decision on the stream names only its transaction. The customer and the amount come from
the decision when its payload carries them (`Decided`), else from the store's
``transactions`` row; the customer's name, e-mail, phone and segment from its ``customers``
row. Missing rows are no error: the alert then carries what is known (the customer id
alone, or no amount).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from fraudstream.alerts.payload import Customer, Decided
from fraudstream.store.tables import customers, transactions


@dataclass(frozen=True)
class Context:
    amount: float | None = None
    currency: str | None = None
    customer: Customer | None = None


def look_up(connection: sa.Connection, decisions: Sequence[Decided]) -> dict[str, Context]:
    """Transaction id -> its context, in two queries whatever the batch size."""
    stored = _transactions(
        connection,
        [d.transaction_id for d in decisions if d.customer_id is None or d.amount is None],
    )
    facts: dict[str, tuple[str | None, float | None, str | None]] = {}
    for d in decisions:
        row = stored.get(d.transaction_id)
        facts[d.transaction_id] = (
            d.customer_id or (row[0] if row else None),
            d.amount if d.amount is not None else (row[1] if row else None),
            d.currency or (row[2] if row else None),
        )
    people = _customers(connection, {c for c, _, _ in facts.values() if c is not None})
    return {
        tx: Context(
            amount=amount,
            currency=currency,
            customer=None if cid is None else people.get(cid, Customer(customer_id=cid)),
        )
        for tx, (cid, amount, currency) in facts.items()
    }


def _transactions(connection: sa.Connection, ids: list[str]) -> dict[str, tuple[str, float, str]]:
    if not ids:
        return {}
    t = transactions.c
    query = sa.select(t.transaction_id, t.customer_id, t.amount, t.currency).where(
        t.transaction_id.in_(ids)
    )
    return {row[0]: (row[1], row[2], row[3]) for row in connection.execute(query)}


def _customers(connection: sa.Connection, ids: set[str]) -> dict[str, Customer]:
    if not ids:
        return {}
    c = customers.c
    query = sa.select(c.customer_id, c.name, c.email, c.phone, c.segment).where(
        c.customer_id.in_(sorted(ids))
    )
    return {
        row.customer_id: Customer(
            customer_id=row.customer_id,
            name=row.name,
            email=row.email,
            phone=row.phone,
            segment=row.segment,
        )
        for row in connection.execute(query)
    }
