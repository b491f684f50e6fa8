"""Type checking, name resolution and the vectorised semantics (null handling above all)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from fraudstream.rules import (
    RuleContext,
    RuleEvaluationError,
    RuleSchema,
    RuleTypeError,
    Type,
    UnknownNameError,
    compile_rule,
    transaction_columns,
)
from fraudstream.schema import transaction_from_record
from rulekit import batch

COLUMNS = batch(
    amount=[2000, 50, None, 10],
    customer_tx_count_1h=[6, 1, 7, None],
    customer_avg_amount_30d=[100, 10, 5, 0],
    email=["A@mailinator.com", "b@example.org", None, "c@x.io"],
    email_domain=["mailinator.com", "example.org", None, "x.io"],
    channel=["ecommerce", "card_present", "ecommerce", "ecommerce"],
    is_first_seen_product_category=[1, 0, None, 1],
    model_score=[900, 100, None, 500],
)


def run(schema: RuleSchema, text: str, **memberships: Any) -> list[bool]:
    rule = compile_rule(text, schema)
    result: list[bool] = rule(RuleContext(COLUMNS, memberships)).tolist()
    return result


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("amount > 1000 and customer.tx_count_1h >= 5", [True, False, False, False]),
        ("amount > 1000 and customer_tx_count_1h >= 5", [True, False, False, False]),
        ("model.score >= 800", [True, False, False, False]),
        (
            "is_first_seen.product_category and amount > 3 * customer.avg_amount_30d",
            [True, False, False, True],
        ),
        # null: comparisons false (!= too), arithmetic null, flags false, `is null` true
        ("amount != 50", [True, False, False, True]),
        ("amount + 1 > 0", [True, True, False, True]),
        ("not (amount > 100)", [False, True, True, True]),
        ("amount <= 100", [False, True, False, True]),
        ("amount is null", [False, False, True, False]),
        ("amount is not null", [True, True, False, True]),
        ("customer.tx_count_1h is null or customer.tx_count_1h > 5", [True, False, True, True]),
        ("coalesce(customer.tx_count_1h, 0) < 2", [False, True, False, True]),
        ("is_first_seen.product_category is null", [False, False, True, False]),
        ("not is_first_seen.product_category", [False, True, True, False]),
        ("(amount + customer.tx_count_1h) is null", [False, False, True, True]),
        # division by zero is null
        ("amount / customer.avg_amount_30d > 1", [True, True, False, False]),
        ("(amount / customer.avg_amount_30d) is null", [False, False, True, True]),
        ("amount % 3 == 2", [True, True, False, False]),
        # strings
        ('email_domain == "example.org"', [False, True, False, False]),
        ('email_domain != "example.org"', [True, False, False, True]),
        ("email_domain == email", [False, False, False, False]),
        ('lower(email) == "a@mailinator.com"', [True, False, False, False]),
        ('upper(channel) == "ECOMMERCE"', [True, False, True, True]),
        ('startswith(email, "b@")', [False, True, False, False]),
        ('endswith(email_domain, ".io")', [False, False, False, True]),
        ('contains(email, "mail")', [True, False, False, False]),
        ("length(email_domain) > 5", [True, True, False, False]),
        ('email_domain in ["x.io", "example.org"]', [False, True, False, True]),
        ('email_domain not in ["x.io", "example.org"]', [True, False, False, False]),
        (
            "email_domain not in [" + ", ".join(f'"d{i}"' for i in range(20)) + "]",
            [True, True, False, True],
        ),
        ("amount in [10, 50]", [False, True, False, True]),
        ("amount not in [10, 50]", [True, False, False, False]),
        # numbers
        ("abs(amount - 100) < 60", [False, True, False, False]),
        ("min(amount, 100) == 100", [True, False, False, False]),
        ("max(amount, customer.tx_count_1h, 20) == 20", [False, False, False, False]),
        ("-amount < -1000", [True, False, False, False]),
        ("1 + 2 * 3 == 7 and true", [True, True, True, True]),
        ("false or amount > 1000", [True, False, False, False]),
        ("channel == 'ecommerce' and (amount > 1000 or amount < 20)", [True, False, False, True]),
    ],
)
def test_semantics(schema: RuleSchema, text: str, expected: list[int]) -> None:
    assert run(schema, text) == expected


def test_list_membership_reads_the_resolved_column(schema: RuleSchema) -> None:
    rule = compile_rule('email_domain in list("disposable_domains")', schema)
    (ref,) = rule.lists
    assert (ref.key, ref.list_name) == ("disposable_domains|email_domain", "disposable_domains")
    member = np.array([True, False, False, False])
    assert rule(RuleContext(COLUMNS, {ref.key: member})).tolist() == member.tolist()
    negated = compile_rule('email_domain not in list("disposable_domains")', schema)
    got = negated(RuleContext(COLUMNS, {ref.key: member})).tolist()
    assert got == [False, True, False, True]  # null is not "not in"
    with pytest.raises(RuleEvaluationError):
        rule(RuleContext(COLUMNS))


def test_list_lookups_use_transaction_fields_only(schema: RuleSchema) -> None:
    compile_rule('lower(email) in list("emails")', schema)
    with pytest.raises(RuleTypeError) as err:
        compile_rule('customer.tx_count_1h in list("x")', schema)
    assert "string" in str(err.value)


@pytest.mark.parametrize(
    ("text", "needle", "column"),
    [
        ('amount > "x"', "cannot compare a number with a string", 8),
        ("email > 'a'", "'>' needs numbers", 7),
        ("not amount", "'not' needs a bool", 5),
        ("amount and true", "'and' needs a bool", 1),
        ("amount + email > 1", "'+' needs a number", 10),
        ("lower(amount) == 'x'", "lower() argument 1 must be a string", 7),
        ("min(amount) > 1", "min() takes at least 2 arguments", 1),
        ("abs(1, 2) > 1", "abs() takes 1 arguments", 1),
        ("amount", "a rule must be a condition", 1),
        ("amount in ['a']", "list entry is a string", 12),
        ("coalesce(amount, 'x') > 1", "coalesce() argument 2 must be a number", 18),
    ],
)
def test_type_errors_are_located(schema: RuleSchema, text: str, needle: str, column: int) -> None:
    with pytest.raises(RuleTypeError) as err:
        compile_rule(text, schema, rule_id="r")
    assert needle in str(err.value)
    assert (err.value.line, err.value.column, err.value.rule_id) == (1, column, "r")


@pytest.mark.parametrize(
    ("text", "suggestion"),
    [
        ("amout > 1", "amount"),
        ("customer.tx_count1h > 1", "customer.tx_count_1h"),
        ("customer_tx_count1h > 1", "customer_tx_count_1h"),
        ("model.scor > 1", "model.score"),
        ("is_first_seen.product_categry", "is_first_seen.product_category"),
        ("emial == 'x'", "email"),
    ],
)
def test_unknown_names_suggest(schema: RuleSchema, text: str, suggestion: str) -> None:
    with pytest.raises(UnknownNameError) as err:
        compile_rule("amount > 0 and\n   " + text, schema, rule_id="r1")
    assert err.value.suggestion == suggestion
    assert (err.value.line, err.value.column) == (2, 4)
    assert f"did you mean '{suggestion}'?" in str(err.value)
    assert str(err.value).startswith("2:4: rule 'r1': unknown name")


def test_schema_resolution_and_types() -> None:
    schema = RuleSchema.build(["customer_tx_count_1h", "terminal_risk_7d_delay7d", "is_new"])
    assert schema.resolve("terminal.risk_7d_delay7d") == schema.resolve("terminal_risk_7d_delay7d")
    assert schema.fields["is_new"].type is Type.BOOL
    assert schema.fields["model_anomaly"].origin == "model"
    assert "customer.tx_count_1h" in schema.names()
    with pytest.raises(ValueError, match="clashes"):
        RuleSchema.build(["amount"])


def test_explain_shows_sub_expression_values(schema: RuleSchema) -> None:
    rule = compile_rule("amount > 3 * customer.avg_amount_30d and channel == 'ecommerce'", schema)
    values = dict(rule.explain(RuleContext(COLUMNS), row=0))
    assert values["amount > 3 * customer.avg_amount_30d"] is True
    assert values["3 * customer.avg_amount_30d"] == 300.0
    assert values["channel"] == "ecommerce"
    assert dict(rule.explain(RuleContext(COLUMNS), row=2))["amount"] is None


def test_constant_folding_and_broadcast(schema: RuleSchema) -> None:
    rule = compile_rule("1 + 2 == 3", schema)
    assert rule.root.const
    out = rule(RuleContext(COLUMNS))
    assert out.shape == (4,) and out.all()


def test_columns_lists_what_a_rule_reads(schema: RuleSchema) -> None:
    rule = compile_rule("amount > customer.tx_count_1h and email is null", schema)
    assert rule.columns == {"amount", "customer_tx_count_1h", "email"}


def test_transaction_columns_feed_rules(schema: RuleSchema) -> None:
    tx = transaction_from_record(
        {
            "transaction_id": "t1",
            "customer_id": "c1",
            "terminal_id": "t",
            "amount": 1500.0,
            "timestamp": "2024-05-01T23:30:00+02:00",
            "email": "X@Mailinator.COM",
            "channel": "ecommerce",
        }
    )
    rule = compile_rule('email_domain == "mailinator.com" and hour == 21 and ip is null', schema)
    cols = transaction_columns([tx, tx], rule.columns)
    assert set(cols) == {"email_domain", "hour", "ip"}
    assert rule(RuleContext(cols)).tolist() == [True, True]


def test_batch_columns_are_converted_once(schema: RuleSchema) -> None:
    ctx = RuleContext(
        {
            "amount": np.array([1, 2, 3]),  # ints
            "email": np.array(["a", "b", "c"]),  # numpy unicode
            "is_first_seen_device": np.array([True, False, True]),
        }
    )
    rule = compile_rule("amount >= 2 and email != 'c' or is_first_seen.device", schema)
    assert rule(ctx).tolist() == [True, True, True]
    assert ctx.number("amount") is ctx.number("amount")
    with pytest.raises(RuleEvaluationError, match="no column"):
        compile_rule("model.score > 1", schema)(ctx)
