"""Stored runs as Rich tables (`fraudstream monitor`)."""

from __future__ import annotations

from typing import Any

from rich import box
from rich.table import Table

from fraudstream.loadtest.record import RunRecord

_TIGHT: dict[str, Any] = {"collapse_padding": True, "pad_edge": False}
"""Many columns: one space between them, so a table fits 80 columns (a pipe, CI)."""


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def runs_table(rows: list[dict[str, Any]], where: str) -> Table:
    table = Table(title="load-test runs", caption=where, box=box.SIMPLE_HEAD, **_TIGHT)
    for name in ("run", "pattern", "target", "status", "started UTC", "done/sent",
                 "dead", "tx/s", "p50 ms", "p99 ms"):  # fmt: skip
        table.add_column(name, justify="left" if name in ("run", "pattern", "status") else "right")
    for r in rows:
        table.add_row(
            r["run_id"], r["pattern"], f"{r['target_tps']:,.0f}", r["status"],
            r["started_at"].strftime("%m-%d %H:%M"), f"{r['decided']:,}/{r['sent']:,}",
            f"{r['dead_letters']:,}", f"{r['achieved_tps']:,.0f}", _ms(r["p50_ms"]),
            _ms(r["p99_ms"]),
        )  # fmt: skip
    return table


def run_tables(run: RunRecord) -> list[Table]:
    """Summary, latency per stage, outcomes."""
    return [_summary(run), _latencies(run), _outcomes(run)]


def _summary(run: RunRecord) -> Table:
    table = Table(title=f"run {run.run_id}", show_header=False)
    table.add_column("metric", style="bold")
    table.add_column("value", justify="right")
    caught = f"{run.frauds_caught:,} of {run.frauds_sent:,}"
    if run.frauds_sent:
        caught += f" ({100 * run.frauds_caught / run.frauds_sent:.0f} %)"
    rows = [
        ("pattern", f"{run.pattern} around {run.target_tps:,.0f} tx/s for {run.duration_s:g} s"),
        ("worker processes", str(run.processes)),
        ("status", run.status),
        ("started / ended (UTC)", f"{run.started_at:%Y-%m-%d %H:%M:%S} / {run.ended_at:%H:%M:%S}"),
        ("elapsed (first send → last decision)", f"{run.elapsed_s:.2f} s"),
        ("sent / decided / dead letters",
         f"{run.sent:,} / {run.decided:,} / {run.dead_letters:,}"),
        ("achieved throughput", f"{run.achieved_tps:,.1f} tx/s"),
        ("frauds caught (step-up, review or block)", caught),
        ("model", run.model_version),
    ]  # fmt: skip
    for row in rows:
        table.add_row(*row)
    return table


def _latencies(run: RunRecord) -> Table:
    table = Table(title="latency (ms)")
    for name in ("stage", "samples", "avg", "p50", "p95", "p99", "min", "max"):
        table.add_column(name, justify="left" if name == "stage" else "right")
    for lat in run.latencies:
        table.add_row(
            lat.stage.replace("_", " "), f"{lat.samples:,}",
            *(_ms(v) for v in (lat.avg_ms, lat.p50_ms, lat.p95_ms, lat.p99_ms,
                                lat.min_ms, lat.max_ms)),
        )  # fmt: skip
    return table


def _outcomes(run: RunRecord) -> Table:
    table = Table(title="outcomes")
    table.add_column("outcome")
    table.add_column("decisions", justify="right")
    table.add_column("share", justify="right")
    total = max(run.decided, 1)
    for outcome, n in run.outcomes.items():
        table.add_row(outcome, f"{n:,}", f"{100 * n / total:.2f} %")
    return table


def stats_table(rows: list[dict[str, Any]], where: str) -> Table:
    table = Table(title="load-test runs by pattern", caption=where, box=box.SIMPLE_HEAD, **_TIGHT)
    for name in ("pattern", "runs", "decided/sent", "dead", "frauds caught",
                 "tx/s avg/max", "p50 ms avg", "p99 ms avg/max"):  # fmt: skip
        table.add_column(name, justify="left" if name == "pattern" else "right")
    for r in rows:
        table.add_row(
            r["pattern"], f"{r['runs']:,}", f"{r['decided']:,}/{r['sent']:,}",
            f"{r['dead_letters']:,}", f"{r['frauds_caught']:,}/{r['frauds_sent']:,}",
            f"{r['achieved_tps_avg']:,.0f}/{r['achieved_tps_max']:,.0f}",
            _ms(r["p50_ms_avg"]), f"{_ms(r['p99_ms_avg'])}/{_ms(r['p99_ms_max'])}",
            style="bold" if r["pattern"] == "all" else None,
        )  # fmt: skip
    return table
