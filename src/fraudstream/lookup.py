"""What a batch needs from Valkey besides its features, fetched in one round trip before them.

The scorer follows the registries between batches (the active model, the shadow, the rule
set: three pointers) and looks the batch's values up in the rule set's lists. Each used to
be its own round trip, after the features, so a batch of one paid three waits on a server
busy with the feature write. They go in one pipeline now: the pointers' ``GET`` (one each,
not one ``MGET``: on a cluster they live in different slots) and the
list lookups of the rule set in force (the values a list is searched for are transaction
fields, known before any feature, see `fraudstream.rules.compiler.ListRef`). When that
pipeline moves the rule set, the lookups it carried were for the old one and are dropped:
`Lookup.memberships` is then None and the scorer looks the new one's up itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from fraudstream.rules import RuleContext, RuleSet, transaction_columns
from fraudstream.schema import Transaction

if TYPE_CHECKING:
    from fraudstream.models import ModelWatcher
    from fraudstream.rules.lists import Lists
    from fraudstream.rules.registry import RuleWatcher


@dataclass
class Lookup:
    """The rule set to run and what the batch found of it in Valkey."""

    ruleset: RuleSet | None
    columns: dict[str, Any]
    """The transaction fields the rule set reads (features and the score are added later)."""
    memberships: dict[str, np.ndarray[Any, Any]] | None
    """List membership columns for ``ruleset`` (None: not looked up yet)."""


def look_up(
    transactions: Sequence[Transaction],
    models: ModelWatcher | None,
    rules: RuleWatcher | None,
    lists: Lists | None,
) -> Lookup:
    """Follow the registries' pointers and look the batch up in the lists, in one pipeline."""
    ruleset = rules.ruleset if rules is not None else None
    columns = _columns(transactions, ruleset)
    query = None
    if lists is not None and ruleset is not None and ruleset.lists:
        query = lists.prepare(ruleset, RuleContext(columns, n=len(transactions)))
    keys = [*(models.pointer_keys if models else ()), *([rules.pointer_key] if rules else [])]
    client = _client(models, rules, lists)
    if client is None or not (keys or query):
        return Lookup(ruleset, columns, {})
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.get(key)
    if query is not None:
        query.queue(pipe)
    replies = pipe.execute()
    pointers: list[Any] = replies[: len(keys)]
    replies = replies[len(keys) :]
    if models is not None:
        models.follow(pointers[0], pointers[1])
    if rules is not None and rules.follow(pointers[-1]):
        return Lookup(rules.ruleset, _columns(transactions, rules.ruleset), None)
    return Lookup(ruleset, columns, query.resolve(replies) if query is not None else {})


def _columns(transactions: Sequence[Transaction], ruleset: RuleSet | None) -> dict[str, Any]:
    return transaction_columns(transactions, ruleset.columns) if ruleset is not None else {}


def _client(models: ModelWatcher | None, rules: RuleWatcher | None, lists: Lists | None) -> Any:
    """The connection the stages share (one server), None without any of them."""
    if models is not None:
        return models.registry.client
    if rules is not None:
        return rules.registry.client
    return lists.client if lists is not None else None
