"""Rule sets: a YAML document of rules, validated and compiled once.

.. code-block:: yaml

    mode: all_matched          # or first_matched (set level, see below)
    rules:
      - id: ip_blocklist
        description: Known bad IPs and ranges
        when: ip in list("ip_blocklist")
        outcome: block         # approve | step_up | review | block
        score: {floor: 900}    # or {add: 150}, or a bare number (= add)
        priority: 100          # higher runs first; ties keep file order
        enabled: true
        shadow: false          # evaluated and reported, never changes a decision

Modes (chosen per rule set, as Amazon Fraud Detector does per detector version, so one file
has one reading; a per-rule mode would make the combined outcome order-dependent in two ways):

- ``all_matched`` (default): every live rule that hits contributes; the outcome is the
  strongest (``approve < step_up < review < block``), score additions are summed and the
  highest floor applies.
- ``first_matched``: rules run in priority order and the first live hit alone decides the
  outcome and the score adjustment (an allowlist at the top wins over everything below it).
  Later hits are still listed as hits (and as reasons), they just decide nothing.

Every error carries the file, line and column: YAML errors from the parser's marks, rule
errors mapped from the expression into the file through the scalar's node marks.
"""

from __future__ import annotations

import difflib
import hashlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any, Literal, get_args

import yaml

from fraudstream.errors import DataFileError
from fraudstream.rules.compiler import CompiledExpr, ListRef, compile_rule
from fraudstream.rules.errors import RuleError, RuleSetError
from fraudstream.rules.grammar import DEFAULT_LIMITS, Limits
from fraudstream.rules.types import RuleSchema
from fraudstream.rules.yamlpos import ScalarLocator

RuleOutcome = Literal["approve", "step_up", "review", "block"]
RULE_OUTCOMES: tuple[RuleOutcome, ...] = get_args(RuleOutcome)
OUTCOME_RANK: dict[str, int] = {o: i for i, o in enumerate(RULE_OUTCOMES)}
"""approve 0 < step_up 1 < review 2 < block 3: a step-up challenge is milder than holding the
payment for an analyst, so ``review`` wins over ``step_up`` when both hit."""
Mode = Literal["all_matched", "first_matched"]
MODES: tuple[Mode, ...] = get_args(Mode)
RULE_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,99}$")
RULE_KEYS = ("id", "description", "when", "outcome", "score", "priority", "enabled", "shadow")
SET_KEYS = ("rules", "mode", "description")


@dataclass(frozen=True)
class Rule:
    """One compiled rule."""

    id: str
    when: str
    outcome: RuleOutcome
    expr: CompiledExpr
    description: str = ""
    score_add: int = 0
    score_floor: int | None = None
    priority: int = 0
    enabled: bool = True
    shadow: bool = False
    line: int = 0
    """Line of the rule in its file (0 when built in code)."""


@dataclass(frozen=True)
class RuleSet:
    """Rules in evaluation order (priority, then file order), the mode, and the source text."""

    rules: tuple[Rule, ...]
    mode: Mode = "all_matched"
    text: str = ""
    source: str = "<rules>"
    description: str = ""

    @cached_property
    def version(self) -> str:
        """Content hash of the text: the same document always gets the same version."""
        return content_version(self.text)

    @property
    def live(self) -> tuple[Rule, ...]:
        """Enabled, non-shadow rules: the ones that decide."""
        return tuple(r for r in self.rules if r.enabled and not r.shadow)

    @property
    def shadow(self) -> tuple[Rule, ...]:
        return tuple(r for r in self.rules if r.enabled and r.shadow)

    @cached_property
    def columns(self) -> frozenset[str]:
        """Every column the enabled rules read: pass it to `transaction_columns`."""
        out: set[str] = set()
        for rule in self.rules:
            if rule.enabled:
                out |= rule.expr.columns
        return frozenset(out)

    @cached_property
    def lists(self) -> tuple[ListRef, ...]:
        """Distinct list lookups of the enabled rules (see `fraudstream.rules.lists`)."""
        out: dict[str, ListRef] = {}
        for rule in self.rules:
            if rule.enabled:
                for ref in rule.expr.lists:
                    out.setdefault(ref.key, ref)
        return tuple(out.values())

    def get(self, rule_id: str) -> Rule:
        for rule in self.rules:
            if rule.id == rule_id:
                return rule
        raise KeyError(rule_id)


def content_version(text: str) -> str:
    """The version of a rule set document: the first 16 hex digits of its SHA-256."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def parse_ruleset(
    text: str, schema: RuleSchema, *, source: str = "<rules>", limits: Limits = DEFAULT_LIMITS
) -> RuleSet:
    """Parse, validate and compile a rule set document.

    Raises:
        RuleError: the first problem found (`RuleSetError` for the document's structure, or a
            rule's `RuleSyntaxError` / `UnknownNameError` / `RuleTypeError`), located in the file.
    """
    errors, ruleset = _load(text, schema, source, limits)
    if errors:
        raise errors[0]
    assert ruleset is not None
    return ruleset


def validate_ruleset(
    text: str, schema: RuleSchema, *, source: str = "<rules>", limits: Limits = DEFAULT_LIMITS
) -> list[RuleError]:
    """Every problem of a document (empty when valid): what ``rules validate`` prints."""
    return _load(text, schema, source, limits)[0]


def load_ruleset(path: Path | str, schema: RuleSchema) -> RuleSet:
    """`parse_ruleset` of a file; errors name the file."""
    path = Path(path)
    return parse_ruleset(read_text(path), schema, source=str(path))


UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


def read_text(path: Path) -> str:
    """A user's text file (a rule set, a transaction) as UTF-8, a leading BOM dropped: editors
    on Windows add one, and it is no reason to refuse a file (nor to change its version).

    Raises:
        DataFileError: not UTF-8, naming the first bad byte's line and column.
    """
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        if data.startswith(UTF16_BOMS):
            raise DataFileError(path, "UTF-16 text, not UTF-8: save the file as UTF-8") from None
        line = data.count(b"\n", 0, exc.start) + 1
        start = data.rfind(b"\n", 0, exc.start) + 1
        column = len(data[start : exc.start].decode("utf-8", "replace")) + 1
        raise DataFileError(
            f"{path}:{line}:{column}",
            f"not UTF-8 text (byte 0x{data[exc.start]:02x}): save the file as UTF-8",
        ) from None


def default_ruleset_text() -> str:
    """The shipped ``rules/defaults/default.yaml``."""
    return resources.files("fraudstream.rules").joinpath("defaults/default.yaml").read_text()


def default_ruleset(schema: RuleSchema) -> RuleSet:
    """The shipped default rules, compiled against ``schema`` (which must hold the features
    of `fraudstream.rules.expected.EXPECTED_FEATURES`)."""
    return parse_ruleset(default_ruleset_text(), schema, source="defaults/default.yaml")


# --- the document walk ------------------------------------------------------------------


class _Doc:
    """Walks the composed YAML nodes, collecting located errors instead of stopping."""

    def __init__(self, text: str, source: str) -> None:
        self.text = text
        self.source = source
        self.lines = tuple(text.splitlines())
        self.errors: list[RuleError] = []
        self.loader = yaml.SafeLoader(text)

    def error(self, node: yaml.Node, problem: str, hint: str | None = None) -> None:
        mark = node.start_mark
        self.errors.append(
            RuleSetError(
                problem, line=mark.line + 1, column=mark.column + 1, source=self.source, hint=hint
            )
        )

    def value(self, node: yaml.Node) -> Any:
        return self.loader.construct_object(node, deep=True)

    def mapping(self, node: yaml.Node, keys: tuple[str, ...], what: str) -> dict[str, yaml.Node]:
        if not isinstance(node, yaml.MappingNode):
            self.error(node, f"{what} must be a mapping")
            return {}
        out: dict[str, yaml.Node] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            if key not in keys:
                close = _closest(key, keys)
                self.error(key_node, f"unknown key '{key}' in {what}", close)
            elif key in out:
                self.error(key_node, f"duplicate key '{key}' in {what}")
            else:
                out[key] = value_node
        return out

    def scalar(self, nodes: dict[str, yaml.Node], key: str) -> str:
        """The source text of a scalar (``id: off`` is the id "off", not false)."""
        node = nodes.get(key)
        if node is None:
            return ""
        if not isinstance(node, yaml.ScalarNode):
            self.error(node, f"'{key}' must be a string")
            return ""
        return str(node.value)

    def typed(
        self, nodes: dict[str, yaml.Node], key: str, kind: type | tuple[type, ...], default: Any
    ) -> Any:
        node = nodes.get(key)
        if node is None:
            return default
        value = self.value(node)
        if isinstance(value, bool) and bool not in _types(kind):
            value = None  # true is not an int for us
        if not isinstance(value, kind):
            names = " or ".join(t.__name__ for t in _types(kind))
            self.error(node, f"'{key}' must be {names}, got {value!r}")
            return default
        return value


def _types(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _closest(word: str, options: tuple[str, ...]) -> str | None:
    close = difflib.get_close_matches(word, options, n=1)
    return f"did you mean '{close[0]}'?" if close else None


def _load(
    text: str, schema: RuleSchema, source: str, limits: Limits
) -> tuple[list[RuleError], RuleSet | None]:
    try:  # the reader refuses control characters as the loader is built
        doc = _Doc(text, source)
        root = doc.loader.get_single_node()
    except yaml.YAMLError as exc:
        return [_yaml_error(exc, source, text)], None
    if root is None:
        return [RuleSetError("empty rule set document", line=1, column=1, source=source)], None
    top = doc.mapping(root, SET_KEYS, "the rule set")
    mode = doc.typed(top, "mode", str, "all_matched")
    if mode not in MODES:
        doc.error(top["mode"], f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    description = doc.typed(top, "description", str, "")
    rules_node = top.get("rules")
    if rules_node is None:
        if isinstance(root, yaml.MappingNode):  # else "must be a mapping" said it already
            doc.error(root, "missing key 'rules' (a list of rules)")
    elif not isinstance(rules_node, yaml.SequenceNode):
        doc.error(rules_node, "'rules' must be a list")
    rules = list(_rules(doc, rules_node, schema, limits))
    if doc.errors:
        return doc.errors, None
    order = sorted(range(len(rules)), key=lambda i: (-rules[i].priority, i))
    ruleset = RuleSet(tuple(rules[i] for i in order), mode, text, source, description)
    return [], ruleset


def _yaml_error(exc: yaml.YAMLError, source: str, text: str) -> RuleSetError:
    if isinstance(exc, yaml.reader.ReaderError):  # no mark, a character offset instead
        before = text[: exc.position]
        line, column = before.count("\n") + 1, exc.position - before.rfind("\n")
        problem = f"invalid YAML: character #x{exc.character:04x} is not allowed in a rule set"
        return RuleSetError(problem, line=line, column=column, source=source)
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    line, column = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
    return RuleSetError(f"invalid YAML: {problem}", line=line, column=column, source=source)


def _rules(doc: _Doc, node: yaml.Node | None, schema: RuleSchema, limits: Limits) -> Iterator[Rule]:
    if not isinstance(node, yaml.SequenceNode):
        return
    seen: dict[str, int] = {}
    for item in node.value:
        rule = _rule(doc, item, schema, limits)
        if rule is None:
            continue
        if rule.id in seen:
            doc.error(item, f"duplicate rule id '{rule.id}' (first at line {seen[rule.id]})")
            continue
        seen[rule.id] = rule.line
        yield rule


def _rule(doc: _Doc, node: yaml.Node, schema: RuleSchema, limits: Limits) -> Rule | None:
    before = len(doc.errors)
    fields = doc.mapping(node, RULE_KEYS, "a rule")
    if not fields and not isinstance(node, yaml.MappingNode):
        return None
    for key in ("id", "when", "outcome"):
        if key not in fields:
            doc.error(node, f"rule is missing '{key}'")
    rule_id = doc.scalar(fields, "id")
    if rule_id and not RULE_ID.match(rule_id):
        doc.error(fields["id"], f"bad rule id {rule_id!r}", "letters, digits and _ . : -")
    outcome = doc.typed(fields, "outcome", str, "review")
    if "outcome" in fields and outcome not in RULE_OUTCOMES:
        doc.error(
            fields["outcome"],
            f"outcome must be one of {', '.join(RULE_OUTCOMES)}, got {outcome!r}",
            _closest(str(outcome), RULE_OUTCOMES),
        )
    add, floor = _score(doc, fields.get("score"))
    priority = doc.typed(fields, "priority", int, 0)
    enabled = doc.typed(fields, "enabled", bool, True)
    shadow = doc.typed(fields, "shadow", bool, False)
    description = doc.scalar(fields, "description")
    when = doc.scalar(fields, "when")
    expr = _compile(doc, fields.get("when"), when, rule_id or None, schema, limits)
    if len(doc.errors) > before or expr is None:
        return None
    return Rule(
        rule_id,
        when,
        outcome,
        expr,
        description,
        add,
        floor,
        priority,
        enabled,
        shadow,
        node.start_mark.line + 1,
    )


def _score(doc: _Doc, node: yaml.Node | None) -> tuple[int, int | None]:
    if node is None:
        return 0, None
    value = doc.value(node)
    if isinstance(value, int) and not isinstance(value, bool):
        value = {"add": value}
    if not isinstance(value, dict) or not value or set(value) - {"add", "floor"}:
        doc.error(node, "score must be a number (points to add) or {add: N, floor: N}")
        return 0, None
    add, floor = value.get("add", 0), value.get("floor")
    bad = _not_int(add, -1000, 1000) or (floor is not None and _not_int(floor, 0, 1000))
    if bad:
        doc.error(node, f"score: add must be in [-1000, 1000], floor in [0, 1000], got {value}")
        return 0, None
    return int(add), None if floor is None else int(floor)


def _not_int(value: Any, low: int, high: int) -> bool:
    return isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high


def _compile(
    doc: _Doc,
    node: yaml.Node | None,
    when: str,
    rule_id: str | None,
    schema: RuleSchema,
    limits: Limits,
) -> CompiledExpr | None:
    if not isinstance(node, yaml.ScalarNode) or not when:
        return None
    try:
        return compile_rule(when, schema, rule_id=rule_id, limits=limits)
    except RuleError as exc:
        locate: Callable[[int, int], tuple[int, int]] = ScalarLocator(node, doc.lines).file_position
        line, column = locate(exc.line or 1, exc.column or 1)
        doc.errors.append(exc.relocated(line=line, column=column, source=doc.source))
        return None
