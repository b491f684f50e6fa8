"""YAML rule sets: structure checks, file positions of every error, the shipped defaults."""

from __future__ import annotations

import textwrap

import pytest

from fraudstream.features import default_feature_set
from fraudstream.rules import (
    EXPECTED_FEATURES,
    RuleError,
    RuleSchema,
    RuleSetError,
    RuleSyntaxError,
    UnknownNameError,
    default_ruleset,
    load_ruleset,
    parse_ruleset,
    validate_ruleset,
)
from fraudstream.rules.ruleset import default_ruleset_text


def doc(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


GOOD = doc(
    """
    mode: first_matched
    rules:
      - id: low
        when: amount > 10
        outcome: review
      - id: high
        description: runs first
        when: amount > 1000
        outcome: block
        score: {floor: 900}
        priority: 10
      - id: off  # YAML 1.1 would read a bare off as false: ids are taken as written
        when: amount > 1
        outcome: block
        enabled: false
      - id: watch
        when: amount > 5
        outcome: review
        score: 50
        shadow: true
    """
)


def test_parses_fields_and_orders_by_priority(schema: RuleSchema) -> None:
    rs = parse_ruleset(GOOD, schema)
    assert rs.mode == "first_matched"
    assert [r.id for r in rs.rules] == ["high", "low", "off", "watch"]
    assert [r.id for r in rs.live] == ["high", "low"]
    assert [r.id for r in rs.shadow] == ["watch"]
    high = rs.get("high")
    assert (high.score_floor, high.score_add, high.priority, high.line) == (900, 0, 10, 6)
    assert rs.get("watch").score_add == 50
    assert len(rs.version) == 16 and rs.version == parse_ruleset(GOOD, schema).version
    assert rs.columns == {"amount"}


@pytest.mark.parametrize(
    ("text", "line", "column", "needle"),
    [
        (
            "rules:\n  - id: a\n    when: amount > 1\n    outcome: blok\n",
            4,
            14,
            "did you mean 'block'",
        ),
        ("rules:\n  - id: a\n    when: amount > 1\n", 2, 5, "missing 'outcome'"),
        ("rules:\n  - id: a\n    wen: amount > 1\n    outcome: block\n", 3, 5, "'when'"),
        ("rule: []\n", 1, 1, "did you mean 'rules'"),
        ("mode: some\nrules: []\n", 1, 7, "mode must be one of"),
        ("rules: {a: 1}\n", 1, 8, "'rules' must be a list"),
        (
            "rules:\n  - id: a\n    when: amount > 1\n    outcome: block\n    score: lots\n",
            5,
            12,
            "score",
        ),
        (
            "rules:\n  - id: a\n    when: amount > 1\n    outcome: block\n"
            "    score: {floor: 2000}\n",
            5,
            12,
            "floor",
        ),
        (
            "rules:\n  - id: a\n    when: amount > 1\n    outcome: block\n    priority: high\n",
            5,
            15,
            "'priority' must be int",
        ),
        (
            "rules:\n  - id: a\n    when: amount > 1\n    outcome: block\n    enabled: 1\n",
            5,
            14,
            "'enabled' must be bool",
        ),
        ("rules:\n  - id: 'a b'\n    when: amount > 1\n    outcome: block\n", 2, 9, "bad rule id"),
        (
            "rules:\n  - id: a\n    when: amount > 1\n    outcome: block\n"
            "  - id: a\n    when: amount > 2\n    outcome: block\n",
            5,
            5,
            "duplicate rule id 'a' (first at line 2)",
        ),
        ("rules:\n  - id: a\n  when: x\n", 3, 3, "invalid YAML"),
        ("rules: [\n", 2, 1, "invalid YAML"),
        ("", 1, 1, "empty rule set"),
    ],
)
def test_document_errors_are_located(
    schema: RuleSchema, text: str, line: int, column: int, needle: str
) -> None:
    with pytest.raises(RuleSetError) as err:
        parse_ruleset(text, schema, source="r.yaml")
    assert (err.value.line, err.value.column, err.value.source) == (line, column, "r.yaml")
    assert needle in str(err.value)
    assert str(err.value).startswith(f"r.yaml:{line}:{column}:")


EXPR_CASES = [
    # plain scalar on the key's line
    ("rules:\n  - id: a\n    when: amount > 1 and amout < 5\n    outcome: block\n", 3, 26),
    # double-quoted
    ('rules:\n  - id: a\n    when: "amount > 1 and amout < 5"\n    outcome: block\n', 3, 27),
    # literal block: exact line and column
    (
        "rules:\n  - id: a\n    when: |\n      amount > 1\n"
        "      and amout < 5\n    outcome: block\n",
        5,
        11,
    ),
    # folded block
    (
        "rules:\n  - id: a\n    when: >\n      amount > 1\n"
        "      and amout < 5\n    outcome: block\n",
        5,
        11,
    ),
    # plain multi-line scalar
    (
        "rules:\n  - id: a\n    when: amount > 1\n      and amout < 5\n    outcome: block\n",
        4,
        11,
    ),
]


@pytest.mark.parametrize(("text", "line", "column"), EXPR_CASES)
def test_expression_errors_map_into_the_file(
    schema: RuleSchema, text: str, line: int, column: int
) -> None:
    with pytest.raises(UnknownNameError) as err:
        parse_ruleset(text, schema, source="r.yaml")
    assert (err.value.line, err.value.column) == (line, column)
    assert err.value.rule_id == "a" and err.value.suggestion == "amount"
    assert text.splitlines()[line - 1][column - 1 :].startswith("amout")


def test_syntax_error_inside_a_block_maps_to_its_line(schema: RuleSchema) -> None:
    text = (
        "rules:\n  - id: b\n    when: |\n      amount > 1\n"
        "      and (amount <\n    outcome: block\n"
    )
    with pytest.raises(RuleSyntaxError) as err:
        parse_ruleset(text, schema, source="r.yaml")
    assert err.value.rule_id == "b" and err.value.line == 5


def test_validate_collects_every_error(schema: RuleSchema) -> None:
    text = doc(
        """
        rules:
          - id: a
            when: amout > 1
            outcome: block
          - id: b
            when: amount > "x"
            outcome: nope
        """
    )
    errors = validate_ruleset(text, schema, source="r.yaml")
    assert [(type(e).__name__, e.line) for e in errors] == [
        ("UnknownNameError", 3),
        ("RuleSetError", 7),
        ("RuleTypeError", 6),
    ]
    assert all(isinstance(e, RuleError) for e in errors)


def test_shipped_defaults_compile_against_the_live_features() -> None:
    live = default_feature_set().names
    rs = default_ruleset(RuleSchema.build(live))
    ids = {r.id for r in rs.rules}
    assert {
        "ip_blocklist",
        "far_from_home_high_value",
        "amount_vs_profile",
        "first_time_category_high_value",
        "impossible_travel",
        "card_testing_velocity",
    } <= ids
    assert {ref.list_name for ref in rs.lists} >= {"ip_blocklist", "disposable_domains"}
    used = {c for c in rs.columns if c in live}
    assert used == set(EXPECTED_FEATURES), "defaults read exactly the expected features"


def test_defaults_fail_loudly_when_a_feature_is_missing() -> None:
    features = dict(EXPECTED_FEATURES)
    del features["customer_speed_from_last_kmh"]
    features["customer_speed_kmh"] = features["customer_tx_count_1h"]
    with pytest.raises(UnknownNameError) as err:
        default_ruleset(RuleSchema.build(features))
    assert err.value.rule_id == "impossible_travel"
    assert err.value.source == "defaults/default.yaml"
    line = default_ruleset_text().splitlines()[(err.value.line or 0) - 1]
    assert line[(err.value.column or 0) - 1 :].startswith("customer.speed_from_last_kmh")


def test_load_from_a_file(tmp_path: object, schema: RuleSchema) -> None:
    from pathlib import Path

    assert isinstance(tmp_path, Path)
    path = tmp_path / "rules.yaml"
    path.write_text(GOOD.replace("amount > 10", "amout > 10"))
    with pytest.raises(UnknownNameError) as err:
        load_ruleset(path, schema)
    assert str(err.value).startswith(f"{path}:4:")
