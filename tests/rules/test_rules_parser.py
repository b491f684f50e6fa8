"""Parsing: precedence, located syntax errors, fuzzing (only RuleErrors, always located)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fraudstream.rules import (
    RuleError,
    RuleSchema,
    RuleSyntaxError,
    compile_rule,
)
from fraudstream.rules.grammar import parse, position


def test_parses_the_issue_examples(schema: RuleSchema) -> None:
    for text in (
        "amount > 1000 and customer.tx_count_1h >= 5",
        'ip in list("ip_blocklist") or email_domain in list("disposable_domains")',
        "is_first_seen.product_category and amount > 3 * customer.avg_amount_30d",
        "model.score >= 800",
        'startswith(lower(email), "test") and abs(amount - 10) < 1',
        "min(amount, 10) < max(1, 2, 3) and amount is not null",
        "ip is null or true",
        "customer_tx_count_1h >= 5  # flat names work too, and comments",
    ):
        compile_rule(text, schema)


@pytest.mark.parametrize(
    ("text", "tree"),
    [
        ("a or b and c", "or_test(a, and_test(b, c))"),
        ("not a and b", "and_test(not_(a), b)"),
        ("1 + 2 * 3 > 4", "compare(sum(1, +, product(2, *, 3)), >, 4)"),
        ("-a * b", "product(neg(-, a), *, b)"),
        ("(a or b) and c", "and_test(or_test(a, b), c)"),
        ("a not in [1, 2]", "not_in(a, array(1, 2))"),
        ("a is not null", "is_not_null(a)"),
    ],
)
def test_precedence(text: str, tree: str) -> None:
    assert _show(parse(text).children[0]) == tree


def _show(node: object) -> str:
    from lark import Token, Tree

    if isinstance(node, Token):
        return str(node)
    assert isinstance(node, Tree)
    if node.data in ("name", "number", "string"):
        return ".".join(str(c) for c in node.children)
    return f"{node.data}({', '.join(_show(c) for c in node.children)})"


@pytest.mark.parametrize(
    ("text", "line", "column", "needle"),
    [
        ("amount > ", 1, 9, "end of expression"),
        ("amount >> 3", 1, 9, "unexpected '>'"),
        ("amount = 3", 1, 8, "'=='"),
        ("amount > 1 and\n  amount < 'x", 2, 12, "unterminated string"),
        ("amount > 1\n  and (amount < 2", 2, 18, "end of expression"),
        ("a < b < c", 1, 7, "unexpected '<'"),
        ("amount ** 2", 1, 9, "no power operator"),
        ("amount && 2", 1, 8, "use 'and'"),
        ("", 1, 1, "empty"),
    ],
)
def test_syntax_errors_are_located(text: str, line: int, column: int, needle: str) -> None:
    with pytest.raises(RuleSyntaxError) as err:
        parse(text)
    assert (err.value.line, err.value.column) == (line, column)
    assert needle in str(err.value)


def test_position_counts_lines_and_columns() -> None:
    assert position("ab\ncd", 0) == (1, 1)
    assert position("ab\ncd", 4) == (2, 2)
    assert position("ab\ncd", 99) == (2, 3)


ALPHABET = st.sampled_from(
    list("abcdeilmnorstu_.,()[]<>=!+-*/%'\" \n0123456789#&|")
    + ["and ", "or ", "not ", " in ", "is ", "null", "list(", "amount", "true", "**"]
)


@settings(max_examples=400, deadline=None)
@given(st.text(min_size=0, max_size=60))
def test_random_text_fails_only_with_located_rule_errors(text: str) -> None:
    _check(text)


@settings(max_examples=400, deadline=None)
@given(st.lists(ALPHABET, max_size=30).map("".join))
def test_random_token_soup_fails_only_with_located_rule_errors(text: str) -> None:
    _check(text)


def _check(text: str) -> None:
    schema = RuleSchema.build(["customer_tx_count_1h"])
    try:
        compile_rule(text, schema, rule_id="fuzz")
    except RuleError as exc:
        assert exc.line is not None and exc.line >= 1
        assert exc.column is not None and exc.column >= 1
        assert exc.rule_id == "fuzz"
