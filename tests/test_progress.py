"""Progress on a terminal (a Rich bar or spinner) and elsewhere (plain lines): both kinds of
step, with and without a known total, draw without error and end cleanly."""

from __future__ import annotations

import io

import pytest

from fraudstream.cli.progress import Status, Steps


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("total", [None, 3])
@pytest.mark.parametrize("out", [Terminal, io.StringIO], ids=["terminal", "pipe"])
def test_steps_with_or_without_a_total(total: int | None, out: type[io.StringIO]) -> None:
    now = [0.0]
    sink = out()
    with Steps("validating", total, unit="rows", out=sink, clock=lambda: now[0]) as step:
        for _ in range(3):
            now[0] += 3.0
            step.advance(1)
    text = sink.getvalue()
    if out is io.StringIO:
        assert "validating: 3" in text and "done in 9 s" in text
    with Status("training", out=sink) as status:
        status.update("fitting")
    assert "fitting" in sink.getvalue() or out is Terminal
