"""The rules engine: expressions compiled once against a schema, evaluated over batches.

- `compile_rule` (``fraudstream.rules.compiler``): text -> vectorised `CompiledExpr`;
- `RuleSchema` (``.types``): the names and types a rule may use;
- `parse_ruleset` / `load_ruleset` / `default_ruleset` (``.ruleset``): YAML rule sets;
- `evaluate_batch` / `evaluate_columns` / `explain` (``.evaluate``): hits per transaction;
- `decide` / `decide_batch` (``.policy``): rules + model score -> outcome;
- `RuleRegistry` / `RuleWatcher` (``.registry``): versions in Valkey, hot reload;
- `Lists` (``.lists``): named allow/deny lists in Valkey, batched lookups;
- `backtest` (``.backtest``): rule and set metrics on a labelled history.
"""

from __future__ import annotations

from fraudstream.rules.compiler import CompiledExpr, ListRef, compile_rule
from fraudstream.rules.context import RuleContext, columns_from_records, transaction_columns
from fraudstream.rules.errors import (
    ListError,
    RegistryError,
    RuleError,
    RuleEvaluationError,
    RuleLimitError,
    RuleSetError,
    RuleSyntaxError,
    RuleTypeError,
    UnknownNameError,
)
from fraudstream.rules.evaluate import (
    BatchResult,
    RuleExplanation,
    RuleResult,
    evaluate_batch,
    evaluate_columns,
    explain,
)
from fraudstream.rules.expected import EXPECTED_FEATURES
from fraudstream.rules.grammar import Limits
from fraudstream.rules.policy import Thresholds, Verdict, decide, decide_batch
from fraudstream.rules.ruleset import (
    Rule,
    RuleSet,
    default_ruleset,
    load_ruleset,
    parse_ruleset,
    validate_ruleset,
)
from fraudstream.rules.types import RuleSchema, Type

__all__ = [
    "EXPECTED_FEATURES",
    "BatchResult",
    "CompiledExpr",
    "Limits",
    "ListError",
    "ListRef",
    "RegistryError",
    "Rule",
    "RuleContext",
    "RuleError",
    "RuleEvaluationError",
    "RuleExplanation",
    "RuleLimitError",
    "RuleResult",
    "RuleSchema",
    "RuleSet",
    "RuleSetError",
    "RuleSyntaxError",
    "RuleTypeError",
    "Thresholds",
    "Type",
    "UnknownNameError",
    "Verdict",
    "columns_from_records",
    "compile_rule",
    "decide",
    "decide_batch",
    "default_ruleset",
    "evaluate_batch",
    "evaluate_columns",
    "explain",
    "load_ruleset",
    "parse_ruleset",
    "transaction_columns",
    "validate_ruleset",
]
