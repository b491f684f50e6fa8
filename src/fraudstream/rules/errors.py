"""Errors of the rules engine, all under `fraudstream.errors.FraudstreamError`.

Every error about an expression carries where it happened: the rule id, the line and column
(1-based) in the expression or, once a rule set file maps it, in the file, and a hint (the
closest known name, or what to write instead). ``str(error)`` reads like a compiler message::

    rules.yaml:12:14: rule 'big_amount': unknown name 'amout' (did you mean 'amount'?)
"""

from __future__ import annotations

from typing import Any

from fraudstream.errors import FraudstreamError


class RuleError(FraudstreamError):
    """A rule, rule set or list could not be parsed, checked, stored or evaluated.

    Attributes:
        problem: what is wrong, without the location.
        rule_id: the rule concerned (``None`` for a bare expression or a set-level problem).
        line, column: 1-based position (in the expression, or in ``source`` once relocated).
        source: the file or registry version the position refers to.
        hint: a suggestion, e.g. ``did you mean 'amount'?``.
    """

    def __init__(
        self,
        problem: str,
        *,
        rule_id: str | None = None,
        line: int | None = None,
        column: int | None = None,
        source: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.problem = problem
        self.rule_id = rule_id
        self.line = line
        self.column = column
        self.source = source
        self.hint = hint
        super().__init__(problem)

    def __str__(self) -> str:
        where = ""
        if self.source is not None:
            where = self.source
        if self.line is not None:
            where += f":{self.line}:{self.column}" if where else f"{self.line}:{self.column}"
        parts = [f"{where}:" if where else "", f"rule '{self.rule_id}':" if self.rule_id else ""]
        message = " ".join(p for p in (*parts, self.problem) if p)
        return f"{message} ({self.hint})" if self.hint else message

    def relocated(
        self,
        *,
        rule_id: str | None = None,
        line: int | None = None,
        column: int | None = None,
        source: str | None = None,
    ) -> RuleError:
        """A copy of this error with the location replaced (fields left ``None`` are kept)."""
        out = _clone(self)
        out.rule_id = rule_id if rule_id is not None else self.rule_id
        out.line = line if line is not None else self.line
        out.column = column if column is not None else self.column
        out.source = source if source is not None else self.source
        return out

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), dict(self.__dict__)))


def _rebuild(cls: type[RuleError], state: dict[str, Any]) -> RuleError:
    out = cls.__new__(cls)
    out.__dict__.update(state)
    out.args = (state.get("problem", ""),)
    return out


def _clone(error: RuleError) -> RuleError:
    out = _rebuild(type(error), dict(error.__dict__))
    out.__traceback__ = None
    return out


class RuleSyntaxError(RuleError):
    """The expression (or the rule set file) is not well formed; ``line``/``column`` say where."""

    line: int
    column: int

    def __init__(
        self,
        problem: str,
        *,
        line: int,
        column: int,
        rule_id: str | None = None,
        source: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(
            problem, rule_id=rule_id, line=line, column=column, source=source, hint=hint
        )


class RuleLimitError(RuleSyntaxError):
    """The expression exceeds a resource limit (length, nesting depth, node count)."""


class UnknownNameError(RuleError):
    """A field, feature, function or list is not declared; ``suggestion`` is the closest one."""

    def __init__(
        self,
        name: str,
        *,
        kind: str = "name",
        suggestion: str | None = None,
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        self.name = name
        self.suggestion = suggestion
        hint = f"did you mean '{suggestion}'?" if suggestion else None
        super().__init__(f"unknown {kind} '{name}'", line=line, column=column, hint=hint)


class RuleTypeError(RuleError):
    """An operator or function got operands of the wrong type (``amount > "x"``)."""


class RuleSetError(RuleError):
    """A rule set document is malformed: bad YAML, a missing key, a duplicate id."""


class RuleEvaluationError(RuleError):
    """A batch lacks a column a compiled rule needs (the schema promised it)."""


class ListError(RuleError):
    """A named list operation failed: unknown kind, malformed IP/CIDR, bad expiry."""


class RegistryError(RuleError):
    """A rule set version is unknown or the registry holds no active version."""
