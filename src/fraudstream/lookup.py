"""What a batch needs from Valkey besides its features, fetched in their read's round trip.

The scorer follows the registries between batches (the active model, the shadow, the rule
set: three pointers) and looks the batch's values up in the rule set's lists. Each used to
be its own round trip, then one pipeline before the features; now a `LookupQuery` builds
the commands (the pointers' ``GET``, one each, not one ``MGET``: on a cluster they live in
different slots; the list lookups of the rule set in force, whose values are transaction
fields known before any feature, see `fraudstream.rules.compiler.ListRef`) and the feature
engine sends them with the batch's read (`fraudstream.features.wire.Riders`): on one node
in the same write as its ``MGET``, on a cluster in the same per-node round trip as its
``GET`` commands. A batch of one waits on the server once before it is scored, not twice.
Without a feature engine on the same client, `LookupQuery.run` sends them alone.

When the pointers move the rule set, the lookups that went with them were for the old one
and are dropped: `Lookup.memberships` is then None and the scorer looks the new one's up
itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from fraudstream.features.wire import raise_first_error
from fraudstream.rules import RuleContext, RuleSet, transaction_columns
from fraudstream.schema import Transaction

if TYPE_CHECKING:
    from fraudstream.models import ModelWatcher
    from fraudstream.rules.lists import Lists, MembershipQuery
    from fraudstream.rules.registry import RuleWatcher


@dataclass
class Lookup:
    """The rule set to run and what the batch found of it in Valkey."""

    ruleset: RuleSet | None
    columns: dict[str, Any]
    """The transaction fields the rule set reads (features and the score are added later)."""
    memberships: dict[str, np.ndarray[Any, Any]] | None
    """List membership columns for ``ruleset`` (None: not looked up yet)."""


class LookupQuery:
    """One batch's look-up: its `commands` (built here, no I/O), sent by whoever shares a
    round trip with it (`deliver` takes the replies) or by `run`; `resolve` follows the
    pointers and gives the `Lookup`."""

    def __init__(
        self,
        transactions: Sequence[Transaction],
        models: ModelWatcher | None,
        rules: RuleWatcher | None,
        lists: Lists | None,
    ) -> None:
        self.transactions = transactions
        self.models = models
        self.rules = rules
        self.ruleset = rules.ruleset if rules is not None else None
        self.columns = _columns(transactions, self.ruleset)
        self.client: Any = _client(models, rules, lists)
        """The connection the stages share (one server or one cluster), None without any."""
        self.memberships: MembershipQuery | None = None
        if lists is not None and self.ruleset is not None and self.ruleset.lists:
            context = RuleContext(self.columns, n=len(transactions))
            self.memberships = lists.prepare(self.ruleset, context)
        keys = [*(models.pointer_keys if models else ()), *([rules.pointer_key] if rules else [])]
        self._pointers = len(keys)
        lookups = self.memberships.commands() if self.memberships is not None else []
        self.commands: list[tuple[Any, ...]] = [*(("GET", key) for key in keys), *lookups]
        self._replies: list[Any] | None = None

    def deliver(self, replies: list[Any]) -> None:
        """The replies of `commands`, in order (`fraudstream.features.wire.Riders`).

        Raises:
            redis.RedisError: a command failed (as the pipeline of `run` raises it).
        """
        raise_first_error(replies)
        self._replies = replies

    def run(self) -> Lookup:
        """`resolve`, the commands sent first in their own round trip (a pipeline)."""
        if self.commands and self._replies is None:
            pipe = self.client.pipeline(transaction=False)
            for command in self.commands:
                pipe.execute_command(*command)
            self.deliver(pipe.execute())
        return self.resolve()

    def resolve(self) -> Lookup:
        """Follow the pointers, then the memberships (dropped if the rule set moved)."""
        replies = self._replies if self._replies is not None else []
        if len(replies) != len(self.commands):
            raise RuntimeError("the look-up's commands were not sent")
        pointers, found = replies[: self._pointers], replies[self._pointers :]
        if self.models is not None:
            self.models.follow(pointers[0], pointers[1])
        if self.rules is not None and self.rules.follow(pointers[-1]):
            ruleset = self.rules.ruleset
            return Lookup(ruleset, _columns(self.transactions, ruleset), None)
        memberships = self.memberships.resolve(found) if self.memberships is not None else {}
        return Lookup(self.ruleset, self.columns, memberships)


def _columns(transactions: Sequence[Transaction], ruleset: RuleSet | None) -> dict[str, Any]:
    return transaction_columns(transactions, ruleset.columns) if ruleset is not None else {}


def _client(models: ModelWatcher | None, rules: RuleWatcher | None, lists: Lists | None) -> Any:
    """The connection the stages share (one server), None without any of them."""
    if models is not None:
        return models.registry.client
    if rules is not None:
        return rules.registry.client
    return lists.client if lists is not None else None
