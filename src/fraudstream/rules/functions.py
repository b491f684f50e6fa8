"""The built-in functions of the rule language, vectorised over a batch.

Each takes numpy arrays (or scalars, for constant arguments) and returns one. Null follows
the language's rule: a null argument gives a null result (``abs(null)`` is null,
``lower(null)`` is null, ``startswith(null, "x")`` is false), except `coalesce`, which exists to
replace nulls.

=============================  ==========================================
``abs(n)``                     absolute value
``min(n, n, ...)``             smallest (null if any argument is null)
``max(n, n, ...)``             largest (null if any argument is null)
``lower(s)`` / ``upper(s)``    case conversion
``startswith(s, prefix)``      bool
``endswith(s, suffix)``        bool
``contains(s, part)``          bool (substring)
``length(s)``                  number of characters
``coalesce(x, y, ...)``        first non-null argument (all of one type)
=============================  ==========================================
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fraudstream.rules.context import is_none
from fraudstream.rules.types import Type

Impl = Callable[..., Any]


@dataclass(frozen=True)
class Function:
    """Signature and implementation of one built-in."""

    name: str
    params: tuple[Type, ...]
    """Parameter types; with ``variadic`` the last one repeats."""
    returns: Type | None
    """``None``: the type of the first argument (`coalesce`)."""
    impl: Impl
    variadic: bool = False
    min_args: int = 1

    def result_type(self, args: Sequence[Type]) -> Type:
        return self.returns if self.returns is not None else args[0]


def _str_map(fn: Callable[[str], Any], value: Any, out_dtype: Any = object) -> Any:
    if isinstance(value, str):
        return fn(value)
    if value is None:
        return None if out_dtype is object else np.nan
    missing = None if out_dtype is object else np.nan
    return np.fromiter(
        (missing if v is None else fn(v) for v in value), dtype=out_dtype, count=len(value)
    )


def _str_pred(fn: Callable[[str, str], bool]) -> Impl:
    def run(value: Any, other: Any) -> Any:
        if isinstance(value, str) and isinstance(other, str):
            return fn(value, other)
        if isinstance(other, str):
            return np.fromiter(
                (v is not None and fn(v, other) for v in value), dtype=bool, count=len(value)
            )
        if isinstance(value, str):
            value = np.full(len(other), value, dtype=object)
        pairs = zip(value, other, strict=True)
        return np.fromiter(
            (a is not None and b is not None and fn(a, b) for a, b in pairs),
            dtype=bool,
            count=len(value),
        )

    return run


def _min(*values: Any) -> Any:
    out = values[0]
    for v in values[1:]:
        out = np.minimum(out, v)
    return out


def _max(*values: Any) -> Any:
    out = values[0]
    for v in values[1:]:
        out = np.maximum(out, v)
    return out


def _is_null(value: Any) -> Any:
    if value is None:
        return True
    if isinstance(value, np.ndarray) and value.dtype == object:
        return is_none(value)
    if isinstance(value, np.ndarray) and value.dtype == np.bool_:
        return np.zeros(value.shape, bool)
    if isinstance(value, str | bool | np.bool_):
        return False
    return np.isnan(value)


def _coalesce(*values: Any) -> Any:
    out = values[0]
    for v in values[1:]:
        out = np.where(_is_null(out), v, out)
    return out


def _length(value: Any) -> Any:
    return _str_map(lambda s: float(len(s)), value, np.float64)


FUNCTIONS: dict[str, Function] = {
    f.name: f
    for f in (
        Function("abs", (Type.NUMBER,), Type.NUMBER, np.abs),
        Function("min", (Type.NUMBER,), Type.NUMBER, _min, variadic=True, min_args=2),
        Function("max", (Type.NUMBER,), Type.NUMBER, _max, variadic=True, min_args=2),
        Function("lower", (Type.STRING,), Type.STRING, lambda v: _str_map(str.lower, v)),
        Function("upper", (Type.STRING,), Type.STRING, lambda v: _str_map(str.upper, v)),
        Function("length", (Type.STRING,), Type.NUMBER, _length),
        Function("startswith", (Type.STRING, Type.STRING), Type.BOOL, _str_pred(str.startswith)),
        Function("endswith", (Type.STRING, Type.STRING), Type.BOOL, _str_pred(str.endswith)),
        Function("contains", (Type.STRING, Type.STRING), Type.BOOL, _str_pred(str.__contains__)),
        Function("coalesce", (), None, _coalesce, variadic=True, min_args=2),
    )
}
"""Name -> built-in. ``list("name")`` is not a function: it only appears after ``in``."""
