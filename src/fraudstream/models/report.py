"""The evaluation report: Markdown + PNG plots in a folder, and a Rich summary table.

Plots: ROC and precision-recall curves, score histogram by class (log scale: frauds are
under 1 %), feature importance (total gain). Matplotlib runs on the Agg backend, so no
display is needed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from rich.table import Table

from fraudstream.models.bundle import ModelBundle
from fraudstream.models.evaluate import HANDBOOK_BASELINE, Evaluation

F64 = NDArray[np.float64]
HEADLINE = (
    ("auc_roc", "AUC ROC"),
    ("average_precision", "Average precision"),
    ("card_precision_at_100", "Card precision@100"),
)


def curves(y: NDArray[np.bool_], score: F64) -> tuple[F64, F64, F64, F64]:
    """(fpr, tpr, recall, precision) at every distinct threshold, highest first."""
    order = np.argsort(-score, kind="mergesort")
    s, t = score[order], y[order]
    last = np.concatenate([s[1:] != s[:-1], [True]])
    tp = np.cumsum(t)[last].astype(np.float64)
    fp = np.cumsum(~t)[last].astype(np.float64)
    pos, neg = max(1, int(y.sum())), max(1, int((~y).sum()))
    fpr = np.concatenate([[0.0], fp / neg])
    tpr = np.concatenate([[0.0], tp / pos])
    return fpr, tpr, tp / pos, tp / (tp + fp)


def summary_table(
    metrics: dict[str, Any], title: str = "model vs the Handbook's best baselines"
) -> Table:
    """Ours beside the Handbook's best baseline, then the operating-point figures."""
    table = Table("metric", "fraudstream", "supervised only", "Handbook best", title=title)
    sup = metrics.get("supervised_only", {})
    for key, label in HEADLINE:
        table.add_row(
            label,
            f"{metrics[key]:.3f}",
            f"{sup.get(key, float('nan')):.3f}",
            f"{HANDBOOK_BASELINE[key]:.3f}",
        )
    table.add_row(f"precision @ {metrics['threshold']:.0f}", f"{metrics['precision']:.3f}", "", "")
    table.add_row("recall", f"{metrics['recall']:.3f}", "", "")
    table.add_row("F1", f"{metrics['f1']:.3f}", "", "")
    table.add_row("review rate", f"{metrics['review_rate']:.2%}", "", "")
    table.add_row("fraud amount caught", f"{metrics['fraud_amount_caught_share']:.1%}", "", "")
    for name, value in metrics.get("recall_by_scenario", {}).items():
        table.add_row(f"recall: {name}", f"{value:.3f}", "", "")
    return table


def write_report(evaluation: Evaluation, bundle: ModelBundle, out_dir: Path) -> Path:
    """Write ``report.md`` and its plots into ``out_dir``; returns the Markdown path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    y, prob = evaluation.y, evaluation.probability
    fpr, tpr, recall, precision = curves(y, prob)
    m = evaluation.metrics

    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot(fpr, tpr, label=f"AUC {m['auc_roc']:.3f}")
    ax.plot([0, 1], [0, 1], "--", color="grey")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
    ax.legend(loc="lower right")
    _save(fig, out_dir / "roc.png", plt)

    fig, ax = plt.subplots(figsize=(5, 5))
    ax.step(recall, precision, where="post", label=f"AP {m['average_precision']:.3f}")
    ax.axhline(y.mean(), ls="--", color="grey", label="fraud rate")
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall", ylim=(0, 1.02))
    ax.legend(loc="upper right")
    _save(fig, out_dir / "pr.png", plt)

    fig, ax = plt.subplots(figsize=(6, 4))
    bins = np.linspace(0, 1000, 51).tolist()
    ax.hist(prob[~y] * 1000, bins=bins, alpha=0.6, label="genuine", log=True)
    ax.hist(prob[y] * 1000, bins=bins, alpha=0.6, label="fraud", log=True)
    ax.axvline(m["threshold"], color="black", ls="--", label="threshold")
    ax.set(xlabel="score (0-1000)", ylabel="transactions", title="Scores by class")
    ax.legend()
    _save(fig, out_dir / "scores.png", plt)

    importance = list(bundle.importance().items())[:20][::-1]
    fig, ax = plt.subplots(figsize=(7, 6))
    ax.barh([n for n, _ in importance], [g for _, g in importance])
    ax.set(xlabel="total gain", title="Feature importance (top 20)")
    _save(fig, out_dir / "importance.png", plt)

    path = out_dir / "report.md"
    path.write_text(_markdown(m, bundle))
    return path


def _save(fig: Any, path: Path, plt: Any) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _markdown(m: dict[str, Any], bundle: ModelBundle) -> str:
    p = m["protocol"]
    sup = m["supervised_only"]
    lines = [
        f"# Model {bundle.version}",
        "",
        f"Training {p['train_start']} .. {p['train_end']}, delay period dropped, test "
        f"{p['test_start']} .. {p['test_end']}: {m['test_transactions']:,} transactions, "
        f"{m['test_frauds']:,} frauds ({m['removed_known_compromised']:,} transactions of "
        "customers already known compromised removed, as the Handbook does).",
        "",
        "| metric | fraudstream | supervised only | Handbook best baseline |",
        "|---|---|---|---|",
    ]
    for key, label in HEADLINE:
        lines.append(f"| {label} | {m[key]:.3f} | {sup[key]:.3f} | {HANDBOOK_BASELINE[key]:.3f} |")
    at_1pct = m.get("recall_by_scenario_at_1pct", {})
    lines += [
        "",
        f"At the operating threshold {m['threshold']:.0f} / 1000: precision {m['precision']:.3f}, "
        f"recall {m['recall']:.3f}, F1 {m['f1']:.3f}, review rate {m['review_rate']:.2%}, "
        f"fraud amount caught {m['fraud_amount_caught']:,.2f} of {m['fraud_amount']:,.2f} "
        f"({m['fraud_amount_caught_share']:.1%}).",
        "",
        "| fraud scenario | recall | recall at a 1 % review rate |",
        "|---|---|---|",
        *(
            f"| {k} | {v:.3f} | {at_1pct.get(k, float('nan')):.3f} |"
            for k, v in m["recall_by_scenario"].items()
        ),
        "",
        "![ROC](roc.png) ![PR](pr.png)",
        "",
        "![scores](scores.png)",
        "",
        "![importance](importance.png)",
        "",
    ]
    return "\n".join(lines)
