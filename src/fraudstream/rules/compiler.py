"""Type-check an expression against a `RuleSchema` and compile it to vectorised numpy code.

`compile_rule` runs once, at load time: it parses, resolves every name (unknown ones fail
with the closest known name), checks every operator's operand types, folds constants, and
returns a `CompiledExpr` whose call evaluates the rule over a whole batch: one numpy
operation per operator, never one Python step per transaction (string helpers aside).
Evaluation is a closure per node chosen from a whitelist of node kinds; there is no
``eval``, ``exec``, attribute access or import anywhere on the path.

Null semantics (a missing feature, an absent e-mail):

- arithmetic with null is null (``amount + null`` -> null), so is division by zero;
- every comparison with null is false, ``!=`` included; so are ``in`` and ``not in``;
- a null flag (bool field) reads as false;
- ``x is null`` / ``x is not null`` test for it; ``coalesce(x, 0)`` replaces it;
- ``and`` / ``or`` / ``not`` work on these two-valued results, so ``not (x > 5)`` is true
  when ``x`` is null: write ``x <= 5`` to mean "known and small".

>>> from fraudstream.rules.types import RuleSchema
>>> from fraudstream.rules.context import RuleContext, is_none, not_none
>>> rule = compile_rule("amount > 3 * customer.avg_amount_30d",
...                     RuleSchema.build(["customer_avg_amount_30d"]))
>>> ctx = RuleContext({"amount": np.array([100.0, 100.0, 5.0]),
...                    "customer_avg_amount_30d": np.array([10.0, np.nan, 10.0])})
>>> rule(ctx).tolist()
[True, False, False]
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import lark
import numpy as np
import numpy.typing as npt

from fraudstream.rules.context import RuleContext, is_none, not_none
from fraudstream.rules.errors import (
    RuleError,
    RuleSyntaxError,
    RuleTypeError,
    UnknownNameError,
)
from fraudstream.rules.functions import FUNCTIONS, Function
from fraudstream.rules.grammar import DEFAULT_LIMITS, KEYWORDS, Limits, parse
from fraudstream.rules.types import RuleSchema, Type

Eval = Callable[[RuleContext], Any]
BoolArray = npt.NDArray[np.bool_]
LIST_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")
_EMPTY = RuleContext({}, n=1)


@dataclass(frozen=True, eq=False)
class Node:
    """One compiled sub-expression: its type, its evaluator and where it came from."""

    type: Type
    fn: Eval
    text: str
    line: int
    column: int
    children: tuple[Node, ...] = ()
    const: bool = False
    field: str | None = None
    """The column, when the node is a plain field reference."""

    def walk(self) -> Iterator[Node]:
        yield self
        for child in self.children:
            yield from child.walk()


@dataclass(frozen=True)
class ListRef:
    """``<expr> in list("name")``: the values to look up and where the answer goes."""

    key: str
    """The membership key in `RuleContext.memberships`: ``name|expression``."""
    list_name: str
    values: Node
    """A string expression over transaction fields only (known before features)."""


@dataclass(frozen=True, eq=False)
class CompiledExpr:
    """A rule condition, compiled. Call it on a `RuleContext` to get one bool per row."""

    text: str
    root: Node
    columns: frozenset[str]
    lists: tuple[ListRef, ...] = field(default=())

    def __call__(self, ctx: RuleContext) -> BoolArray:
        with np.errstate(all="ignore"):
            return self.evaluate(ctx)

    def evaluate(self, ctx: RuleContext) -> BoolArray:
        """Like calling it, without the ``np.errstate`` guard (the caller holds one)."""
        value = self.root.fn(ctx)
        if isinstance(value, np.ndarray) and value.shape == (ctx.n,):
            return value
        return np.broadcast_to(np.asarray(value, dtype=bool), (ctx.n,))

    def explain(self, ctx: RuleContext, row: int = 0) -> list[tuple[str, Any]]:
        """Each distinct sub-expression and its value for one row, outermost first."""
        out: dict[str, Any] = {}
        with np.errstate(all="ignore"):
            for node in self.root.walk():
                if node.const or node.text in out:
                    continue
                out[node.text] = _scalar(node.fn(ctx), row)
        return list(out.items())


def _scalar(value: Any, row: int) -> Any:
    if isinstance(value, np.ndarray):
        value = value[row] if value.ndim else value[()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def compile_rule(
    text: str,
    schema: RuleSchema,
    *,
    rule_id: str | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> CompiledExpr:
    """Parse, type-check and compile one rule condition (it must be a bool).

    Raises:
        RuleSyntaxError: malformed, or over a `Limits` bound (`RuleLimitError`).
        UnknownNameError: a name, function or list that does not exist, with a suggestion.
        RuleTypeError: e.g. ``amount > "x"``, ``not amount``, a rule that is not a condition.
        All of them carry ``rule_id``, ``line`` and ``column``.
    """
    try:
        tree = parse(text, limits)
        compiler = _Compiler(text, schema)
        root = compiler.node(tree.children[0])
        if root.type is not Type.BOOL:
            raise compiler.type_error(
                tree.children[0], f"a rule must be a condition (bool), got a {root.type.value}"
            )
    except RuleError as exc:
        if rule_id is not None:
            raise exc.relocated(rule_id=rule_id) from None
        raise
    columns = frozenset(n.field for n in root.walk() if n.field is not None)
    return CompiledExpr(text, root, columns, tuple(compiler.lists.values()))


class _Compiler:
    """Whitelist dispatch: one method per grammar node kind, nothing else is accepted."""

    def __init__(self, text: str, schema: RuleSchema) -> None:
        self.text = text
        self.schema = schema
        self.lists: dict[str, ListRef] = {}

    # --- positions and errors -----------------------------------------------------------

    def pos(self, item: lark.Tree[lark.Token] | lark.Token) -> tuple[int, int]:
        if isinstance(item, lark.Token):
            return item.line or 1, item.column or 1
        meta = item.meta
        if getattr(meta, "empty", True):
            for tok in item.scan_values(lambda v: isinstance(v, lark.Token)):
                return self.pos(tok)
            return 1, 1
        return meta.line, meta.column

    def source(self, item: lark.Tree[lark.Token] | lark.Token) -> str:
        if isinstance(item, lark.Token):
            return str(item)
        meta = item.meta
        if getattr(meta, "empty", True):
            return item.data
        return self.text[meta.start_pos : meta.end_pos]

    def type_error(
        self, item: lark.Tree[lark.Token] | lark.Token, problem: str, hint: str | None = None
    ) -> RuleTypeError:
        line, column = self.pos(item)
        return RuleTypeError(problem, line=line, column=column, hint=hint)

    def make(
        self,
        item: lark.Tree[lark.Token] | lark.Token,
        type_: Type,
        fn: Eval,
        children: Sequence[Node] = (),
        *,
        fold: bool = True,
    ) -> Node:
        line, column = self.pos(item)
        text = self.source(item)
        if fold and children and all(c.const for c in children):
            with np.errstate(all="ignore"):
                value = fn(_EMPTY)
            return Node(type_, lambda ctx: value, text, line, column, tuple(children), True)
        return Node(type_, fn, text, line, column, tuple(children))

    def expect(self, node: Node, item: lark.Tree[lark.Token], type_: Type, what: str) -> None:
        if node.type is not type_:
            raise self.type_error(item, f"{what} needs a {type_.value}, got a {node.type.value}")

    # --- dispatch -----------------------------------------------------------------------

    def node(self, item: lark.Tree[lark.Token] | lark.Token) -> Node:
        if isinstance(item, lark.Token):  # pragma: no cover - the grammar wraps every token
            raise RuleSyntaxError(f"unexpected token {item!s}", line=1, column=1)
        method = getattr(self, f"c_{item.data}", None)
        if method is None:  # pragma: no cover - every grammar rule has a method
            line, column = self.pos(item)
            raise RuleSyntaxError(f"unsupported construct {item.data}", line=line, column=column)
        result: Node = method(item)
        return result

    # --- literals and names -------------------------------------------------------------

    def c_number(self, item: lark.Tree[lark.Token]) -> Node:
        token = item.children[-1]
        assert isinstance(token, lark.Token)
        value = float(token)
        if not math.isfinite(value):
            line, column = self.pos(item)
            raise RuleSyntaxError(f"number out of range: {token}", line=line, column=column)
        if item.data == "neg_number":
            value = -value
        return self.const(item, Type.NUMBER, value)

    c_neg_number = c_number

    def c_string(self, item: lark.Tree[lark.Token]) -> Node:
        token = item.children[0]
        assert isinstance(token, lark.Token)
        return self.const(item, Type.STRING, self.unquote(token))

    def c_true(self, item: lark.Tree[lark.Token]) -> Node:
        return self.const(item, Type.BOOL, True)

    def c_false(self, item: lark.Tree[lark.Token]) -> Node:
        return self.const(item, Type.BOOL, False)

    def const(self, item: lark.Tree[lark.Token], type_: Type, value: Any) -> Node:
        line, column = self.pos(item)
        return Node(type_, lambda ctx: value, self.source(item), line, column, (), True)

    def unquote(self, token: lark.Token) -> str:
        body, out, i = str(token)[1:-1], [], 0
        escapes = {"n": "\n", "t": "\t", "\\": "\\", '"': '"', "'": "'"}
        while i < len(body):
            ch = body[i]
            if ch == "\\":
                nxt = body[i + 1]
                if nxt not in escapes:
                    line, column = self.pos(token)
                    raise RuleSyntaxError(
                        f"unknown escape \\{nxt} in string",
                        line=line,
                        column=column + i + 1,
                        hint="escapes are \\n \\t \\\\ \\\" \\'",
                    )
                out.append(escapes[nxt])
                i += 2
            else:
                out.append(ch)
                i += 1
        return "".join(out)

    def c_name(self, item: lark.Tree[lark.Token]) -> Node:
        parts = [str(t) for t in item.children]
        name = ".".join(parts)
        line, column = self.pos(item)
        for part in parts:
            if part.startswith("_") or part in KEYWORDS:
                raise RuleSyntaxError(
                    f"'{part}' is not allowed in a name",
                    line=line,
                    column=column,
                    hint="names may not start with '_'",
                )
        found = self.schema.resolve(name)
        if found is None:
            raise UnknownNameError(
                name, suggestion=self.schema.suggest(name), line=line, column=column
            )
        col, type_ = found.column, found.type
        if type_ is Type.NUMBER:
            fn: Eval = lambda ctx: ctx.number(col)  # noqa: E731
        elif type_ is Type.STRING:
            fn = lambda ctx: ctx.string(col)  # noqa: E731
        else:
            fn = lambda ctx: ctx.flag(col)  # noqa: E731
        return Node(type_, fn, name, line, column, (), False, col)

    # --- logic --------------------------------------------------------------------------

    def operands(self, item: lark.Tree[lark.Token], type_: Type, what: str) -> list[Node]:
        nodes = []
        for child in item.children:
            assert isinstance(child, lark.Tree)
            node = self.node(child)
            self.expect(node, child, type_, what)
            nodes.append(node)
        return nodes

    def c_and_test(self, item: lark.Tree[lark.Token]) -> Node:
        nodes = self.operands(item, Type.BOOL, "'and'")
        fns = [n.fn for n in nodes]

        def run(ctx: RuleContext) -> Any:
            out = fns[0](ctx)
            for fn in fns[1:]:
                if not _any(out):
                    return out
                out = np.logical_and(out, fn(ctx))
            return out

        return self.make(item, Type.BOOL, run, nodes)

    def c_or_test(self, item: lark.Tree[lark.Token]) -> Node:
        nodes = self.operands(item, Type.BOOL, "'or'")
        fns = [n.fn for n in nodes]

        def run(ctx: RuleContext) -> Any:
            out = fns[0](ctx)
            for fn in fns[1:]:
                if _all(out):
                    return out
                out = np.logical_or(out, fn(ctx))
            return out

        return self.make(item, Type.BOOL, run, nodes)

    def c_not_(self, item: lark.Tree[lark.Token]) -> Node:
        (node,) = self.operands(item, Type.BOOL, "'not'")
        fn = node.fn
        return self.make(item, Type.BOOL, lambda ctx: np.logical_not(fn(ctx)), [node])

    # --- comparisons --------------------------------------------------------------------

    def c_compare(self, item: lark.Tree[lark.Token]) -> Node:
        left_t, op_t, right_t = item.children
        assert isinstance(left_t, lark.Tree) and isinstance(right_t, lark.Tree)
        op = str(op_t)
        left, right = self.node(left_t), self.node(right_t)
        if left.type is not right.type:
            raise self.type_error(
                op_t,
                f"cannot compare a {left.type.value} with a {right.type.value} using '{op}'",
            )
        if op not in ("==", "!=") and left.type is not Type.NUMBER:
            raise self.type_error(
                op_t, f"'{op}' needs numbers, got {left.type.value}s", "use == or !="
            )
        run = _comparison(op, left, right)
        if left.type is Type.STRING:
            run = _memoized(" ".join(self.source(item).split()), run)
        return self.make(item, Type.BOOL, run, [left, right])

    def c_is_null(self, item: lark.Tree[lark.Token]) -> Node:
        child = item.children[0]
        assert isinstance(child, lark.Tree)
        node = self.node(child)
        if node.field is not None:
            col, type_ = node.field, node.type
            return self.make(item, Type.BOOL, lambda ctx: ctx.null(col, type_), [node], fold=False)
        if node.type is Type.BOOL:
            return self.const(item, Type.BOOL, False)
        fn = node.fn
        if node.type is Type.STRING:
            return self.make(item, Type.BOOL, lambda ctx: is_none(fn(ctx)), [node])
        return self.make(item, Type.BOOL, lambda ctx: np.isnan(fn(ctx)), [node])

    def c_is_not_null(self, item: lark.Tree[lark.Token]) -> Node:
        inner = self.c_is_null(item)
        fn = inner.fn
        return self.make(item, Type.BOOL, lambda ctx: np.logical_not(fn(ctx)), [inner])

    def c_in_(self, item: lark.Tree[lark.Token]) -> Node:
        left_t, container = item.children
        assert isinstance(left_t, lark.Tree) and isinstance(container, lark.Tree)
        left = self.node(left_t)
        if container.data == "list_ref":
            return self.in_list(item, left, left_t, container)
        return self.in_array(item, left, container)

    def c_not_in(self, item: lark.Tree[lark.Token]) -> Node:
        inner = self.c_in_(item)
        left = inner.children[0]
        fn, lfn = inner.fn, left.fn
        if left.type is Type.STRING:
            known: Eval = lambda ctx: not_none(lfn(ctx))  # noqa: E731
        elif left.type is Type.NUMBER:
            known = lambda ctx: ~np.isnan(lfn(ctx))  # noqa: E731
        else:
            known = lambda ctx: True  # noqa: E731
        return self.make(
            item, Type.BOOL, lambda ctx: np.logical_and(known(ctx), ~np.asarray(fn(ctx))), [inner]
        )

    def in_list(
        self,
        item: lark.Tree[lark.Token],
        left: Node,
        left_t: lark.Tree[lark.Token],
        container: lark.Tree[lark.Token],
    ) -> Node:
        token = container.children[0]
        assert isinstance(token, lark.Token)
        name = self.unquote(token)
        if not LIST_NAME.match(name):
            line, column = self.pos(token)
            raise RuleSyntaxError(
                f"bad list name {name!r}",
                line=line,
                column=column,
                hint="letters, digits and _ . : - (at most 100)",
            )
        self.expect(left, left_t, Type.STRING, "'in list(...)'")
        for node in left.walk():
            if node.field is not None and self.schema.fields[node.field].origin != "transaction":
                raise self.type_error(
                    left_t,
                    f"'in list(...)' looks up transaction fields only, not '{node.text}'",
                    "lists are resolved before features are computed",
                )
        key = f"{name}|{left.field or left.text}"
        self.lists.setdefault(key, ListRef(key, name, left))
        return self.make(item, Type.BOOL, lambda ctx: ctx.membership(key), [left], fold=False)

    def in_array(
        self, item: lark.Tree[lark.Token], left: Node, container: lark.Tree[lark.Token]
    ) -> Node:
        entries = []
        for child in container.children:
            assert isinstance(child, lark.Tree)
            node = self.node(child)
            if node.type is not left.type:
                raise self.type_error(
                    child, f"list entry is a {node.type.value}, expected a {left.type.value}"
                )
            entries.append(node.fn(_EMPTY))
        run = _membership(left, entries)
        if left.type is Type.STRING:
            run = _memoized(" ".join(self.source(item).split()), run)
        return self.make(item, Type.BOOL, run, [left])

    # --- arithmetic and calls -----------------------------------------------------------

    def c_sum(self, item: lark.Tree[lark.Token]) -> Node:
        return self.arithmetic(item)

    c_product = c_sum

    def arithmetic(self, item: lark.Tree[lark.Token]) -> Node:
        children = item.children
        first = children[0]
        assert isinstance(first, lark.Tree)
        node = self.node(first)
        self.expect(node, first, Type.NUMBER, f"'{children[1]}'")
        nodes, fn = [node], node.fn
        for op_t, operand_t in zip(children[1::2], children[2::2], strict=True):
            assert isinstance(operand_t, lark.Tree)
            operand = self.node(operand_t)
            self.expect(operand, operand_t, Type.NUMBER, f"'{op_t}'")
            nodes.append(operand)
            fn = _BINARY[str(op_t)](fn, operand.fn)
        return self.make(item, Type.NUMBER, fn, nodes)

    def c_neg(self, item: lark.Tree[lark.Token]) -> Node:
        child = item.children[1]
        assert isinstance(child, lark.Tree)
        node = self.node(child)
        self.expect(node, child, Type.NUMBER, "'-'")
        fn = node.fn
        return self.make(item, Type.NUMBER, lambda ctx: np.negative(fn(ctx)), [node])

    def c_call(self, item: lark.Tree[lark.Token]) -> Node:
        name_t, *arg_ts = item.children
        name = str(name_t)
        line, column = self.pos(name_t)
        func = FUNCTIONS.get(name)
        if func is None:
            close = difflib.get_close_matches(name, list(FUNCTIONS), n=1)
            raise UnknownNameError(
                name,
                kind="function",
                suggestion=close[0] if close else None,
                line=line,
                column=column,
            )
        args = []
        for arg_t in arg_ts:
            assert isinstance(arg_t, lark.Tree)
            args.append(self.node(arg_t))
        self.check_call(item, func, args, arg_ts)
        fns = [a.fn for a in args]
        impl = func.impl
        type_ = func.result_type([a.type for a in args])
        run: Eval = lambda ctx: impl(*[f(ctx) for f in fns])  # noqa: E731
        if any(a.type is Type.STRING for a in args):
            run = _memoized(" ".join(self.source(item).split()), run)
        return self.make(item, type_, run, args)

    def check_call(
        self,
        item: lark.Tree[lark.Token],
        func: Function,
        args: Sequence[Node],
        arg_ts: Sequence[lark.Tree[lark.Token] | lark.Token],
    ) -> None:
        n = len(args)
        if func.variadic:
            ok, want = n >= func.min_args, f"at least {func.min_args}"
        else:
            ok, want = n == len(func.params), str(len(func.params))
        if not ok:
            raise self.type_error(item, f"{func.name}() takes {want} arguments, got {n}")
        for i, (arg, arg_t) in enumerate(zip(args, arg_ts, strict=True)):
            if func.params:
                want_t = func.params[min(i, len(func.params) - 1)]
            else:
                want_t = args[0].type
            if arg.type is not want_t:
                raise self.type_error(
                    arg_t,
                    f"{func.name}() argument {i + 1} must be a {want_t.value},"
                    f" got a {arg.type.value}",
                )


# --- vectorised operators -----------------------------------------------------------------


def _memoized(key: str, fn: Eval) -> Eval:
    """Per-batch cache of a per-element (string) computation, shared by every rule of the
    set that contains the same sub-expression text."""
    return lambda ctx: ctx.memo(key, fn)


def _div(a: Any, b: Any) -> Any:
    return np.where(np.equal(b, 0), np.nan, np.true_divide(a, b))


def _mod(a: Any, b: Any) -> Any:
    return np.where(np.equal(b, 0), np.nan, np.mod(a, b))


_OPS: dict[str, Callable[[Any, Any], Any]] = {
    "+": np.add,
    "-": np.subtract,
    "*": np.multiply,
    "/": _div,
    "%": _mod,
}


def _binary(op: Callable[[Any, Any], Any]) -> Callable[[Eval, Eval], Eval]:
    def build(left: Eval, right: Eval) -> Eval:
        return lambda ctx: op(left(ctx), right(ctx))

    return build


_BINARY = {sym: _binary(op) for sym, op in _OPS.items()}

_CMP: dict[str, Callable[[Any, Any], Any]] = {
    "==": np.equal,
    "!=": np.not_equal,
    "<": np.less,
    "<=": np.less_equal,
    ">": np.greater,
    ">=": np.greater_equal,
}


def _known(node: Node) -> Eval | None:
    """An evaluator of "not null" for the node, or ``None`` when it can never be null."""
    if node.const or node.type is Type.BOOL:
        return None
    fn = node.fn
    if node.type is Type.STRING:
        return lambda ctx: not_none(fn(ctx))
    return lambda ctx: ~np.isnan(fn(ctx))


def _any(values: Any) -> bool:
    """``np.any``, an array's own method where it has one (``np.any`` goes through ~2 µs of
    Python dispatch: a lone transaction's rules call it a dozen times)."""
    return bool(values.any() if isinstance(values, np.ndarray) else np.any(values))


def _all(values: Any) -> bool:
    """``np.all``, likewise."""
    return bool(values.all() if isinstance(values, np.ndarray) else np.all(values))


def _comparison(op: str, left: Node, right: Node) -> Eval:
    cmp, lf, rf = _CMP[op], left.fn, right.fn
    needs_mask = op == "!=" or (left.type is Type.STRING and not (left.const or right.const))
    if not needs_mask:
        return lambda ctx: cmp(lf(ctx), rf(ctx))
    masks = [m for m in (_known(left), _known(right)) if m is not None]

    def run(ctx: RuleContext) -> Any:
        out = cmp(lf(ctx), rf(ctx))
        for mask in masks:
            out = np.logical_and(out, mask(ctx))
        return out

    return run


def _membership(left: Node, entries: list[Any]) -> Eval:
    fn = left.fn
    if left.type is Type.NUMBER:
        values = np.asarray(entries, dtype=np.float64)
        return lambda ctx: np.isin(fn(ctx), values)
    if len(entries) <= 8:

        def small(ctx: RuleContext) -> Any:
            got = fn(ctx)
            out: Any = False
            for entry in entries:
                out = np.logical_or(out, np.equal(got, entry))
            return np.logical_and(out, not_none(got)) if entries else out

        return small
    wanted = frozenset(entries)

    def large(ctx: RuleContext) -> Any:
        got = fn(ctx)
        if not isinstance(got, np.ndarray):
            return got in wanted
        return np.fromiter((v in wanted for v in got), dtype=bool, count=len(got))

    return large
