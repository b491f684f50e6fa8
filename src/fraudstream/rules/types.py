"""The names a rule may use, and their types: `RuleSchema`.

A rule is checked once, at load time, against a schema of dotted names: transaction fields
(``amount``, ``ip``), features (``customer.tx_count_1h``), model scores (``model.score``).
Every name is stored flat, as the batch column it reads (``customer_tx_count_1h``); a dotted
name resolves by joining its parts with ``_``, so ``customer.tx_count_1h`` and
``customer_tx_count_1h`` are the same column.

>>> schema = RuleSchema.build(features=["customer_tx_count_1h"])
>>> schema.resolve("customer.tx_count_1h")
Field(column='customer_tx_count_1h', type=<Type.NUMBER: 'number'>, origin='feature')
>>> schema.suggest("amout")
'amount'
"""

from __future__ import annotations

import difflib
import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal


class Type(enum.Enum):
    """Value types of the rule language. Every type admits null (a missing value)."""

    NUMBER = "number"
    STRING = "string"
    BOOL = "bool"


Origin = Literal["transaction", "feature", "model"]


@dataclass(frozen=True)
class Field:
    """One column a rule can read."""

    column: str
    type: Type
    origin: Origin


TRANSACTION_FIELDS: dict[str, Type] = {
    "transaction_id": Type.STRING,
    "timestamp": Type.NUMBER,
    "customer_id": Type.STRING,
    "terminal_id": Type.STRING,
    "merchant_id": Type.STRING,
    "amount": Type.NUMBER,
    "currency": Type.STRING,
    "channel": Type.STRING,
    "card_id": Type.STRING,
    "mcc": Type.STRING,
    "product_category": Type.STRING,
    "product_subcategory": Type.STRING,
    "ip": Type.STRING,
    "device_id": Type.STRING,
    "email": Type.STRING,
    "lat": Type.NUMBER,
    "lon": Type.NUMBER,
    "x": Type.NUMBER,
    "y": Type.NUMBER,
    # derived from the transaction alone (see `fraudstream.rules.context.transaction_columns`)
    "email_domain": Type.STRING,
    "hour": Type.NUMBER,
}
"""`fraudstream.schema.Transaction` fields as rule names (``timestamp`` in epoch seconds),
plus ``email_domain`` (lower-cased part after ``@``) and ``hour`` (0–23, UTC)."""

MODEL_FIELDS: dict[str, Type] = {
    "model_score": Type.NUMBER,
    "model_supervised": Type.NUMBER,
    "model_anomaly": Type.NUMBER,
}
"""``model.score`` (0–1000, the combined score), ``model.supervised``, ``model.anomaly``."""

ENTITY_PREFIXES: tuple[str, ...] = (
    "is_first_seen",
    "customer",
    "card",
    "terminal",
    "merchant",
    "device",
    "ip",
    "email",
    "model",
    "tx",
)
"""Prefixes shown in dotted form in suggestions (``customer_x`` is offered as ``customer.x``)."""


def infer_type(feature: str) -> Type:
    """Type of a feature given by name only: ``is_*`` flags are bool, the rest numbers.

    >>> infer_type("is_first_seen_device"), infer_type("tx_is_night").value
    (<Type.BOOL: 'bool'>, 'bool')
    >>> infer_type("customer_tx_count_1h").value
    'number'
    """
    return Type.BOOL if feature.startswith("is_") or "_is_" in feature else Type.NUMBER


def dotted(column: str) -> str:
    """The dotted spelling of a flat column name, for messages.

    >>> dotted("customer_tx_count_1h"), dotted("is_first_seen_device"), dotted("amount")
    ('customer.tx_count_1h', 'is_first_seen.device', 'amount')
    """
    for prefix in ENTITY_PREFIXES:
        if column.startswith(prefix + "_") and len(column) > len(prefix) + 1:
            return f"{prefix}.{column[len(prefix) + 1 :]}"
    return column


@dataclass(frozen=True)
class RuleSchema:
    """Flat column name -> `Field`. Build it with `RuleSchema.build`."""

    fields: Mapping[str, Field] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        features: Iterable[str] | Mapping[str, Type] = (),
        *,
        transaction: bool = True,
        model: bool = True,
    ) -> RuleSchema:
        """Transaction fields + the given features + model scores.

        Args:
            features: feature column names (types inferred by `infer_type`) or name -> type.
        """
        out: dict[str, Field] = {}
        if transaction:
            out.update({k: Field(k, t, "transaction") for k, t in TRANSACTION_FIELDS.items()})
        typed = features if isinstance(features, Mapping) else {f: infer_type(f) for f in features}
        for name, type_ in typed.items():
            column = name.replace(".", "_")
            if column in out:
                raise ValueError(f"feature {name!r} clashes with the field {column!r}")
            out[column] = Field(column, type_, "feature")
        if model:
            out.update({k: Field(k, t, "model") for k, t in MODEL_FIELDS.items()})
        return cls(out)

    def resolve(self, name: str) -> Field | None:
        """The field a flat or dotted name refers to, or ``None``."""
        return self.fields.get(name.replace(".", "_"))

    def names(self) -> list[str]:
        """Every name, dotted where a known prefix allows, for suggestions and docs."""
        return sorted(dotted(c) for c in self.fields)

    def suggest(self, name: str) -> str | None:
        """The closest known name (dotted or flat, as the user wrote it)."""
        candidates = self.names() if "." in name else sorted(self.fields)
        close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
        if not close and "." not in name:
            close = difflib.get_close_matches(name, self.names(), n=1, cutoff=0.6)
        return close[0] if close else None
