"""What a simulated history looks like, in figures, beside the Handbook's own.

`summarize` returns plain data (for ``--json`` and tests); `summary_table` renders it for
people. The Handbook column appears for the ``handbook`` profile only: that is where the two
must agree (within a few percent, since the random draws differ).
"""

from __future__ import annotations

from rich.table import Table

from fraudstream.simulate.history import SimulationResult
from fraudstream.simulate.scenarios import HANDBOOK_FIGURES, Scenario, scenario_name


def summarize(result: SimulationResult) -> dict[str, object]:
    """Counts, fraud rate, per-scenario counts and shares, label delays, generation time."""
    tx = result.transactions
    config = result.config
    n = tx.height
    frauds = int(tx["is_fraud"].sum())
    counts = dict(tx.group_by("fraud_scenario").len().iter_rows())
    scenarios = {
        scenario_name(s): {
            "count": counts.get(int(s), 0),
            "share": counts.get(int(s), 0) / frauds if frauds else 0.0,
        }
        for s in Scenario
        if s != Scenario.GENUINE and (counts.get(int(s), 0) or s <= Scenario.COMPROMISED_CUSTOMER)
    }
    delay_hours = (
        result.labels["reported_at"] - result.labels["tx_timestamp"]
    ).dt.total_seconds() / 3600
    summary: dict[str, object] = {
        "profile": config.profile,
        "seed": config.seed,
        "transactions": n,
        "customers": result.customers.height,
        "terminals": config.n_terminals,
        "days": config.n_days,
        "frauds": frauds,
        "fraud_rate": frauds / n if n else 0.0,
        "scenarios": scenarios,
        "labels": result.labels.height,
        "label_delay_median_hours": _stat(delay_hours.median()),
        "label_delay_max_hours": _stat(delay_hours.max()),
        "generation_seconds": round(result.timings.get("total", 0.0), 3),
    }
    if config.profile == "handbook":
        summary["handbook"] = dict(HANDBOOK_FIGURES)
    return summary


def _stat(value: object) -> float:
    return round(float(value), 2) if isinstance(value, int | float) else 0.0


def summary_table(summary: dict[str, object]) -> Table:
    """A Rich table of `summarize`'s figures, with the Handbook's beside them when present."""
    handbook = summary.get("handbook")
    reference: dict[str, float] = handbook if isinstance(handbook, dict) else {}
    table = Table(title=f"Simulated history ({summary['profile']} profile, seed {summary['seed']})")
    table.add_column("")
    table.add_column("fraudstream", justify="right")
    if reference:
        table.add_column("Handbook", justify="right")

    def row(label: str, value: str, ref: str = "") -> None:
        table.add_row(label, value, *([ref] if reference else []))

    def ref(key: str, fmt: str) -> str:
        return format(reference[key], fmt) if key in reference else ""

    row("transactions", f"{summary['transactions']:,}", ref("transactions", ",.0f"))
    for key in ("customers", "terminals", "days"):
        row(key, f"{summary[key]:,}")
    row("frauds", f"{summary['frauds']:,}", ref("frauds", ",.0f"))
    row("fraud rate", f"{summary['fraud_rate']:.3%}", ref("fraud_rate", ".3%"))
    scenarios = summary["scenarios"]
    assert isinstance(scenarios, dict)
    for name, figures in scenarios.items():
        row(f"  {name}", f"{figures['count']:,} ({figures['share']:.1%})")
    row("labels", f"{summary['labels']:,}")
    row(
        "label delay median / max",
        f"{summary['label_delay_median_hours']} h / {summary['label_delay_max_hours']} h",
    )
    row("generation", f"{summary['generation_seconds']:.1f} s")
    return table
