"""Progress of a long step, where the user is looking: a Rich bar on a terminal; in a log
file, a CI job or a pipe (where a live bar shows nothing until it is over) one plain line on
stderr every few seconds, and one when the step ends.

>>> import io
>>> out, now = io.StringIO(), [0.0]
>>> with Steps("validating", 3, unit="rows", out=out, clock=lambda: now[0]) as step:
...     step.advance(1)
...     now[0] = 6.0
...     step.advance(1)
...     step.advance(1)
>>> print(out.getvalue(), end="")
validating: 2/3 rows (67 %), 6 s
validating: 3/3 rows (100 %), done in 6 s
>>> out = io.StringIO()
>>> with Status("training", out=out) as status:
...     status.update("fitting trees")
...     status.update("fitting trees")
>>> print(out.getvalue(), end="")
training
fitting trees
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from types import TracebackType
from typing import IO, Any

LINE_EVERY_S = 5.0


class Steps:
    """``with Steps(what, total) as step: step.advance(n)`` (or ``step.update(done)``).

    ``out`` and ``clock`` are for tests; a terminal ``out`` (the default: stderr, when it is
    one) gets the bar."""

    def __init__(
        self,
        description: str,
        total: float | None,
        *,
        unit: str = "",
        every_s: float = LINE_EVERY_S,
        out: IO[str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.description, self.total, self.unit = description, total, unit
        self.every_s, self.clock = every_s, clock
        self.out = out if out is not None else sys.stderr
        self.done = 0.0
        self._bar: Any = None
        self._task: Any = None
        self._start = self._last = 0.0

    def __enter__(self) -> Steps:
        self._start = self._last = self.clock()
        if self.out.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(
                TextColumn("[progress.description]{task.description}"),
                BarColumn(),
                TextColumn(
                    "{task.completed:,.0f}"
                    + ("" if self.total is None else "/{task.total:,.0f}")
                    + f" {self.unit}"
                ),
                TimeElapsedColumn(),
                console=Console(file=self.out),
                transient=True,
            )
            self._bar.__enter__()
            self._task = self._bar.add_task(self.description, total=self.total)
        return self

    def advance(self, n: float = 1) -> None:
        self.update(self.done + n)

    def update(self, done: float, description: str | None = None) -> None:
        self.done = done
        if description is not None:
            self.description = description
        if self._bar is not None:
            self._bar.update(self._task, completed=done, description=self.description)
            return
        now = self.clock()
        if now - self._last >= self.every_s:
            self._last = now
            self._line(f"{now - self._start:.0f} s")

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._bar.__exit__(kind, error, trace)
        elif kind is None and self.clock() - self._start >= self.every_s:
            self._line(f"done in {self.clock() - self._start:.0f} s")

    def _line(self, when: str) -> None:
        unit = f" {self.unit}" if self.unit else ""
        if self.total:
            share = f" ({100 * self.done / self.total:.0f} %)"
            count = f"{self.done:,.0f}/{self.total:,.0f}{unit}{share}"
        else:
            count = f"{self.done:,.0f}{unit}"
        print(f"{self.description}: {count}, {when}", file=self.out, flush=True)


class Status:
    """What a step without a count is doing: a spinner with the message on a terminal;
    elsewhere each message once, as a line on stderr (``with Status("training") as s:
    s.update("fitting")``)."""

    def __init__(self, message: str, *, out: IO[str] | None = None) -> None:
        self.message = message
        self.out = out if out is not None else sys.stderr
        self._spinner: Any = None

    def __enter__(self) -> Status:
        if self.out.isatty():
            from rich.console import Console

            self._spinner = Console(file=self.out).status(self.message)
            self._spinner.__enter__()
        else:
            print(self.message, file=self.out, flush=True)
        return self

    def update(self, message: str) -> None:
        if message == self.message:
            return
        self.message = message
        if self._spinner is not None:
            self._spinner.update(message)
        else:
            print(message, file=self.out, flush=True)

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._spinner is not None:
            self._spinner.__exit__(kind, error, trace)
