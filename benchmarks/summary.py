"""Figures with their repeats and targets, and the one table `make bench` prints.

A benchmark's ``--json`` object carries its figures under ``"figures"`` (`Figure.as_dict`);
`run_all.py` gathers them from every benchmark into one Rich table: what was measured, the
median and the min–max of the repeats, the target, and whether the median meets it. A missed
target is shown, never an error: the machine is shared and noisy.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from rich.console import Console
from rich.table import Table

Op = Literal["<", ">="]


@dataclass(frozen=True)
class Target:
    op: Op
    value: float

    def met(self, figure: float) -> bool:
        """
        >>> Target("<", 20).met(19.9), Target(">=", 12_000).met(11_999)
        (True, False)
        """
        return figure < self.value if self.op == "<" else figure >= self.value

    def __str__(self) -> str:
        return f"{'<' if self.op == '<' else '≥'} {self.value:,g}"


@dataclass(frozen=True)
class Figure:
    what: str
    unit: str
    runs: Sequence[float]
    """One value per repeat."""
    target: Target | None = None

    @property
    def median(self) -> float:
        return float(statistics.median(self.runs))

    def as_dict(self) -> dict[str, Any]:
        return {
            "what": self.what,
            "unit": self.unit,
            "median": round(self.median, 3),
            "min": round(min(self.runs), 3),
            "max": round(max(self.runs), 3),
            "runs": [round(r, 3) for r in self.runs],
            "target": None if self.target is None else [self.target.op, self.target.value],
            "met": None if self.target is None else self.target.met(self.median),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Figure:
        target = d.get("target")
        return cls(d["what"], d["unit"], d["runs"], Target(*target) if target else None)


def table(figures: Iterable[Figure], title: str) -> Table:
    """Rows in the order given; ``pass`` / ``MISS`` judge the median."""
    out = Table(title=title)
    for name, justify in (("what", "left"), ("median", "right"), ("min–max", "right")):
        out.add_column(name, justify=justify)  # type: ignore[arg-type]
    out.add_column("target", justify="right")
    out.add_column("", justify="center")
    for f in figures:
        spread = f"{_num(min(f.runs))}–{_num(max(f.runs))}" if len(f.runs) > 1 else "—"
        verdict = "" if f.target is None else ("pass" if f.target.met(f.median) else "[red]MISS")
        out.add_row(
            f.what,
            f"{_num(f.median)} {f.unit}",
            spread,
            "" if f.target is None else f"{f.target} {f.unit}",
            verdict,
        )
    return out


class Progress:
    """One line on stderr per part measured, with the seconds it took: a long run shows
    where it is (`run_all.py` lets the benchmarks' stderr through)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.t0 = time.monotonic()

    def __call__(self, part: str) -> None:
        now = time.monotonic()
        print(f"   {self.name}: {part} ({now - self.t0:,.0f} s)", file=sys.stderr, flush=True)
        self.t0 = now


def report(figures: Sequence[Figure], title: str, as_json: bool, **extra: Any) -> None:
    """A benchmark's output: one JSON object (``extra`` and the figures), or the table."""
    if as_json:
        print(json.dumps({**extra, "figures": [f.as_dict() for f in figures]}))
    else:
        Console().print(table(figures, title))


def _num(x: float) -> str:
    """
    >>> _num(12345.6), _num(4.567), _num(0.0123)
    ('12,346', '4.57', '0.012')
    """
    if abs(x) >= 100:
        return f"{x:,.0f}"
    return f"{x:.2f}" if abs(x) >= 1 else f"{x:.3f}"
