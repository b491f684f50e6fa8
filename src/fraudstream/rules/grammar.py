"""The rule language's grammar, and `parse` (text -> lark tree, or a `RuleSyntaxError`).

A small LALR grammar: the language is exactly what is written here, nothing of Python leaks
in (no attributes beyond dotted field names, no calls beyond the built-in functions, no
lambdas, comprehensions, subscripts or ``**``). Precedence, loosest first::

    or  <  and  <  not  <  comparison (== != < <= > >=, in, not in, is [not] null)
        <  + -  <  * / %  <  unary -  <  atom

Comparisons do not chain (``a < b < c`` is a syntax error: write ``a < b and b < c``).
"""

from __future__ import annotations

from dataclasses import dataclass

import lark
from lark.exceptions import LarkError, UnexpectedCharacters, UnexpectedEOF, UnexpectedInput

from fraudstream.rules.errors import RuleLimitError, RuleSyntaxError

GRAMMAR = r"""
start: or_test

?or_test: and_test (_OR and_test)*
?and_test: not_test (_AND not_test)*
?not_test: _NOT not_test          -> not_
         | comparison
?comparison: sum
           | sum COMP_OP sum      -> compare
           | sum _IS _NULL        -> is_null
           | sum _IS _NOT _NULL   -> is_not_null
           | sum _IN container    -> in_
           | sum _NOT _IN container -> not_in
?container: list_ref | array
list_ref: _LIST "(" STRING ")"
array: "[" [literal ("," literal)* [","]] "]"
?literal: NUMBER                  -> number
        | MINUS NUMBER            -> neg_number
        | STRING                  -> string
        | _TRUE                   -> true
        | _FALSE                  -> false
?sum: product ((PLUS | MINUS) product)*
?product: unary ((STAR | SLASH | PERCENT) unary)*
?unary: MINUS unary               -> neg
      | atom
?atom: NUMBER                     -> number
     | STRING                     -> string
     | _TRUE                      -> true
     | _FALSE                     -> false
     | name
     | call
     | "(" or_test ")"
name: NAME ("." NAME)*
call: NAME "(" [or_test ("," or_test)*] ")"

COMP_OP: "==" | "!=" | "<=" | ">=" | "<" | ">"
PLUS: "+"
MINUS: "-"
STAR: "*"
SLASH: "/"
PERCENT: "%"
_OR: "or"
_AND: "and"
_NOT: "not"
_IN: "in"
_IS: "is"
_NULL: "null"
_TRUE: "true"
_FALSE: "false"
_LIST: "list"
NAME: /[A-Za-z_][A-Za-z0-9_]*/
NUMBER: /(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?/
STRING: /"([^"\\\n]|\\.)*"/ | /'([^'\\\n]|\\.)*'/
COMMENT: /#[^\n]*/

%ignore /[ \t\r\n]+/
%ignore COMMENT
"""

KEYWORDS = frozenset({"and", "or", "not", "in", "is", "null", "true", "false", "list"})

_PARSER = lark.Lark(GRAMMAR, parser="lalr", propagate_positions=True, maybe_placeholders=False)

_TOKEN_NAMES = {
    "COMP_OP": "a comparison",
    "NAME": "a name",
    "NUMBER": "a number",
    "STRING": "a string",
    "LPAR": "'('",
    "RPAR": "')'",
    "LSQB": "'['",
    "RSQB": "']'",
    "COMMA": "','",
    "DOT": "'.'",
    "PLUS": "'+'",
    "MINUS": "'-'",
    "STAR": "'*'",
    "SLASH": "'/'",
    "PERCENT": "'%'",
    "$END": "the end",
}

_CHAR_HINTS = {
    "=": "use '==' to compare",
    "&": "use 'and'",
    "|": "use 'or'",
    "!": "use 'not' or '!='",
    "`": "quote strings with ' or \"",
}


@dataclass(frozen=True)
class Limits:
    """Resource limits, checked before anything is evaluated."""

    max_length: int = 10_000
    """Characters in one expression (a 1 MB string literal is refused before parsing)."""
    max_depth: int = 64
    """Nesting of parentheses, operators and calls."""
    max_nodes: int = 1_000
    """Tree size (operands + operators) of one expression."""
    max_array: int = 10_000
    """Entries of an inline ``[...]`` list (bigger sets belong in a named list)."""


DEFAULT_LIMITS = Limits()


def position(text: str, offset: int) -> tuple[int, int]:
    """1-based (line, column) of a character offset."""
    offset = max(0, min(offset, len(text)))
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1


def parse(text: str, limits: Limits = DEFAULT_LIMITS) -> lark.Tree[lark.Token]:
    """Parse one expression.

    Raises:
        RuleLimitError: the text is too long, too deep or too big.
        RuleSyntaxError: with the 1-based line and column of the offending character.
    """
    if len(text) > limits.max_length:
        line, column = position(text, limits.max_length)
        raise RuleLimitError(
            f"expression longer than {limits.max_length} characters ({len(text)})",
            line=line,
            column=column,
        )
    if not text.strip():
        raise RuleSyntaxError("empty expression", line=1, column=1)
    try:
        tree = _PARSER.parse(text)
    except UnexpectedInput as exc:
        raise _syntax_error(text, exc) from None
    except (LarkError, RecursionError) as exc:  # defensive: nothing else may escape
        raise RuleSyntaxError(f"cannot parse: {exc}", line=1, column=1) from None
    _check_size(tree, text, limits)
    return tree


def _syntax_error(text: str, exc: UnexpectedInput) -> RuleSyntaxError:
    end = len(text.rstrip())
    if isinstance(exc, UnexpectedEOF) or exc.line is None or exc.line < 1:
        line, column = position(text, end)
        return RuleSyntaxError("unexpected end of expression", line=line, column=column)
    line, column = int(exc.line), int(exc.column)
    pos = int(exc.pos_in_stream or 0)
    if isinstance(exc, UnexpectedCharacters):
        char = text[pos] if pos < len(text) else ""
        if char and char in "\"'":
            return RuleSyntaxError("unterminated string", line=line, column=column)
        return RuleSyntaxError(
            f"unexpected character {char!r}", line=line, column=column, hint=_CHAR_HINTS.get(char)
        )
    token = getattr(exc, "token", None)
    if token is not None and token.type == "$END":
        line, column = position(text, end)
    value = str(token) if token is not None else ""
    expected = sorted(
        {_TOKEN_NAMES.get(t, t.lstrip("_").lower()) for t in getattr(exc, "expected", ())}
    )
    hint = None
    if value == "*" and "**" in text[max(0, pos - 1) : pos + 2]:
        hint = "there is no power operator"
    elif expected:
        hint = "expected " + ", ".join(expected[:8])
    shown = repr(value) if value else "end of expression"
    return RuleSyntaxError(f"unexpected {shown}", line=line, column=column, hint=hint)


def _check_size(tree: lark.Tree[lark.Token], text: str, limits: Limits) -> None:
    """Depth and node count, walked with an explicit stack (no recursion on hostile input)."""
    stack: list[tuple[lark.Tree[lark.Token], int]] = [(tree, 1)]
    nodes = 0
    while stack:
        node, depth = stack.pop()
        nodes += 1
        if depth > limits.max_depth or nodes > limits.max_nodes:
            meta = node.meta
            line = getattr(meta, "line", 1)
            column = getattr(meta, "column", 1)
            what = (
                f"nested deeper than {limits.max_depth} levels"
                if depth > limits.max_depth
                else f"more than {limits.max_nodes} nodes"
            )
            raise RuleLimitError(f"expression {what}", line=line, column=column)
        if node.data == "array" and len(node.children) > limits.max_array:
            raise RuleLimitError(
                f"inline list longer than {limits.max_array} entries",
                line=node.meta.line,
                column=node.meta.column,
                hint='use a named list: x in list("name")',
            )
        for child in node.children:
            if isinstance(child, lark.Tree):
                stack.append((child, depth + 1))
