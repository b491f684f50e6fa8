"""What a metrics folder (prometheus-client's multiprocess files) says, read as a scrape
adds it up: the files of processes that ended included, as ``fraudstream serve`` reads them
before its start drops the gauges of the dead."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry, multiprocess


def folder_samples(folder: Path, name: str) -> dict[str, float]:
    """``{labels: value}`` of every sample called ``name`` (labels as ``k="v",…``, sorted)."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(folder))  # type: ignore[no-untyped-call]
    out: dict[str, float] = {}
    for family in registry.collect():
        for sample in family.samples:
            if sample.name == name:
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
                out[labels] = sample.value
    return out
