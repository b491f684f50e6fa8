"""The live figures of a running load test: a Rich table on a terminal, a plain line
otherwise (a log file, CI)."""

from __future__ import annotations

from rich.table import Table

from fraudstream.loadtest.stats import Snapshot


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f} ms"


def live_table(snap: Snapshot, run_id: str, pattern: str, duration: float) -> Table:
    """Target and achieved rates are those of the last whole second; latency too."""
    table = Table(
        title=f"loadtest {run_id}: {pattern}, {snap.elapsed_s:.0f} / {duration:g} s",
        show_header=False,
    )
    table.add_column("metric", style="bold")
    table.add_column("value", justify="right")
    rows = [
        ("target now", f"{snap.target_tps:,.0f} tx/s"),
        ("sent (last second)", f"{snap.sent_tps:,} tx/s"),
        ("achieved (last second)", f"{snap.achieved_tps:,} tx/s"),
        ("latency p50 / p99", f"{_ms(snap.p50_ms)} / {_ms(snap.p99_ms)}"),
        ("lag (sent, not yet decided)", f"{snap.lag:,}"),
        ("sent / decided / dead letters",
         f"{snap.sent:,} / {snap.decided:,} / {snap.dead_letters:,}"),
    ]  # fmt: skip
    for row in rows:
        table.add_row(*row)
    return table


def plain_line(snap: Snapshot, run_id: str) -> str:
    """
    >>> snap = Snapshot(4.2, 100.0, 98, 97, 12.0, 40.5, 420, 410, 0)
    >>> plain_line(snap, "r1")
    'loadtest r1 4s: target 100 tx/s, sent 98, achieved 97 tx/s, p50 12.0 ms, p99 40.5 ms, lag 10, decided 410 of 420, 0 dead letters'
    """  # noqa: E501
    return (
        f"loadtest {run_id} {snap.elapsed_s:.0f}s: target {snap.target_tps:,.0f} tx/s, "
        f"sent {snap.sent_tps:,}, achieved {snap.achieved_tps:,} tx/s, "
        f"p50 {_ms(snap.p50_ms)}, p99 {_ms(snap.p99_ms)}, lag {snap.lag:,}, "
        f"decided {snap.decided:,} of {snap.sent:,}, {snap.dead_letters:,} dead letters"
    )
