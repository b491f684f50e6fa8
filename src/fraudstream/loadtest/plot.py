"""A run as a PNG: latency percentiles and throughput second by second."""

from __future__ import annotations

from pathlib import Path

from fraudstream.loadtest.record import RunRecord


def plot_run(run: RunRecord, path: Path) -> Path:
    """Two panels sharing the time axis: end-to-end p50 / p99 per second (with the run's
    p95 as a line), and target, sent and achieved tx/s."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seconds = [s.second for s in run.seconds]
    middles = [s + 0.5 for s in seconds]
    edges = [*seconds, seconds[-1] + 1] if seconds else []
    fig, (lat, tps) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    for name, values in (("p50", [s.p50_ms for s in run.seconds]),
                         ("p99", [s.p99_ms for s in run.seconds])):  # fmt: skip
        lat.plot(middles, [float("nan") if v is None else v for v in values], ".-", label=name)
    e2e = run.latency()
    lat.axhline(e2e.p95_ms, ls="--", color="grey", label=f"run p95 {e2e.p95_ms:,.1f} ms")
    lat.set(ylabel="end-to-end latency (ms)", ylim=(0, None))
    lat.set_title(
        f"run {run.run_id}: {run.pattern} around {run.target_tps:,.0f} tx/s, "
        f"{run.processes} worker process(es)"
    )
    lat.legend(loc="upper left")
    for label, rates, style in (
        ("target", [s.target_tps for s in run.seconds], {"color": "grey", "ls": "--"}),
        ("sent", [s.sent for s in run.seconds], {}),
        ("achieved", [s.decided for s in run.seconds], {}),
    ):
        tps.stairs(rates, edges, label=label, **style)
    tps.set(xlabel="second of the run", ylabel="tx/s", ylim=(0, None))
    tps.legend(loc="upper left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
