"""Escape attempts and resource exhaustion: every one refused at compile time, with a RuleError.

The language has no attribute access beyond declared dotted names, no calls beyond the
whitelisted functions, no ``**``, no lambda/comprehension/subscript syntax, and limits on
length, depth and size; nothing here ever reaches ``eval``/``exec`` (there are none).
"""

from __future__ import annotations

import time

import pytest

from fraudstream.rules import (
    Limits,
    RuleError,
    RuleLimitError,
    RuleSchema,
    RuleSyntaxError,
    UnknownNameError,
    compile_rule,
)

HOSTILE = [
    '__import__("os").system("true")',
    "__import__",
    "amount.__class__",
    "amount.__class__.__mro__",
    "().__class__.__bases__[0].__subclasses__()",
    "''.__class__",
    "amount.real",
    "customer.__dict__",
    "lambda: 1",
    "(lambda x: x)(1)",
    "[x for x in [1, 2]]",
    "{x: 1 for x in amount}",
    "amount if true else 0",
    "eval('1')",
    "exec('1')",
    "open('/etc/passwd')",
    "getattr(amount, 'real')",
    "globals()",
    "type(amount)",
    "10 ** 10 ** 10",
    "9 ** 999999",
    "amount[0]",
    "amount; 1",
    "import os",
    "amount := 1",
    "f'{amount}'",
    "`amount`",
    "amount @ amount",
    "~amount",
    "amount << 1000000",
    "1e999999 > 1",
    "_private > 1",
    "customer._secret > 1",
    "list('x')",
    "amount in list(amount)",
    "amount and list",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_inputs_are_rejected(schema: RuleSchema, text: str) -> None:
    with pytest.raises(RuleError) as err:
        compile_rule(text, schema, rule_id="evil")
    assert err.value.line is not None and err.value.column is not None


def test_unknown_functions_name_the_closest_one(schema: RuleSchema) -> None:
    with pytest.raises(UnknownNameError) as err:
        compile_rule("lowr(email) == 'x'", schema)
    assert err.value.suggestion == "lower"
    with pytest.raises(UnknownNameError):
        compile_rule("system('ls') == 'x'", schema)


def test_deep_nesting_is_refused_without_recursion(schema: RuleSchema) -> None:
    roomy = Limits(max_length=10_000_000)
    for depth in (100, 500, 20_000):
        text = "(" * depth + "amount" + ")" * depth + " > 1"
        compile_rule(text, schema, limits=roomy)  # redundant parentheses cost nothing
        nested = "(amount + " * depth + "1" + ")" * depth + " > 1"
        with pytest.raises(RuleLimitError) as err:
            compile_rule(nested, schema, limits=roomy)
        assert err.value.line == 1
        assert "nested deeper" in str(err.value)
        negations = "not " * depth + "true"
        with pytest.raises(RuleLimitError):
            compile_rule(negations, schema, limits=roomy)


def test_huge_inputs_are_refused_before_parsing(schema: RuleSchema) -> None:
    big = "email == '" + "a" * 1_000_000 + "'"
    started = time.perf_counter()
    with pytest.raises(RuleLimitError) as err:
        compile_rule(big, schema)
    assert time.perf_counter() - started < 0.5
    assert "longer than" in str(err.value)
    wide = " or ".join(["amount > 1"] * 2000)
    with pytest.raises(RuleLimitError):
        compile_rule(wide, schema)


def test_limits_are_parameters(schema: RuleSchema) -> None:
    tight = Limits(max_length=20, max_depth=3, max_nodes=5, max_array=2)
    with pytest.raises(RuleLimitError):
        compile_rule("amount > 1 and amount < 100000", schema, limits=tight)
    with pytest.raises(RuleLimitError):
        compile_rule("amount in [1, 2, 3]", schema, limits=tight)
    compile_rule("amount > 1", schema, limits=tight)


def test_huge_numbers_stay_floats(schema: RuleSchema) -> None:
    # no integer arithmetic anywhere: a long literal is a float, never a bignum
    compile_rule("amount < " + "9" * 300, schema)
    with pytest.raises(RuleSyntaxError):
        compile_rule("amount < " + "9" * 400, schema)  # > float max: refused, not inf
