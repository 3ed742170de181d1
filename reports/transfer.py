"""Transfer cells: a source model's tuned prompt scored unchanged on other models."""

from __future__ import annotations

from boxbench.core.results import Record
from boxbench.reports.table import Table, accuracies, is_transfer, mean_std


def transfer_sources(records: list[Record], dataset: str) -> list[str]:
    """The source models of a dataset's transfer cells, in order of appearance (one matrix each)."""
    return list(dict.fromkeys(r.source_model or r.model for r in records
                              if r.status == "ok" and r.dataset == dataset and is_transfer(r)))


def transfer_matrix(records: list[Record], dataset: str, source: str) -> tuple[list[str], list[str], list[list[list[float]]]] | None:
    """(row labels, column names, accuracies per row × column over seeds) for one dataset and one
    source model: the study's layout, rows = methods with transfer cells from ``source``, columns =
    "Original" (``source`` itself) + each target."""
    ok = [r for r in records if r.status == "ok" and r.dataset == dataset]
    moved = [r for r in ok if is_transfer(r) and r.source_model == source]
    if not moved:
        return None
    labels = list(dict.fromkeys(r.label for r in moved))
    targets = list(dict.fromkeys(r.target_model or r.model for r in moved))
    cols = ["Original", *targets]
    grid = []
    for lab in labels:
        row = [accuracies([r for r in ok if r.label == lab and not is_transfer(r) and r.model == source])]
        row += [accuracies([r for r in moved if r.label == lab and r.target_model == t]) for t in targets]
        grid.append(row)
    return labels, cols, grid


def transfer_table(records: list[Record], dataset: str, source: str) -> Table | None:
    m = transfer_matrix(records, dataset, source)
    if m is None:
        return None
    labels, cols, grid = m
    t = Table(f"Transfer — {dataset} — from {source}", ["method", *cols],
              note=f"accuracy (%), mean ± std over seeds; the prompt tuned on {source} (Original), evaluated unchanged as text on each target")
    for lab, row in zip(labels, grid):
        t.rows.append([lab, *[mean_std(v, 100) for v in row]])
    return t
