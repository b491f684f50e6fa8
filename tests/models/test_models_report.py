from __future__ import annotations

from pathlib import Path

from rich.console import Console

from fraudstream.models import TrainedModel, evaluate_detailed, summary_table, write_report


def test_report_writes_markdown_and_plots(trained: TrainedModel, tmp_path: Path) -> None:
    ev = evaluate_detailed(trained, None, None)
    path = write_report(ev, trained.bundle, tmp_path / "report")
    text = path.read_text()
    assert "Card precision@100" in text and "0.291" in text
    for name in ("roc.png", "pr.png", "scores.png", "importance.png"):
        assert (tmp_path / "report" / name).stat().st_size > 1000
    console = Console(record=True, width=120)
    console.print(summary_table(ev.metrics))
    assert "Handbook best" in console.export_text()
