"""The same model through several backends (hf in-process, vLLM, an OpenAI-compatible server): do
they agree example by example? Cells are matched by what they measure — method label, access,
dataset, seed, test rows and the model the spec names — and compared row by row with the reference
backend's cell (hf where there is one)."""

from __future__ import annotations

import statistics
from typing import Any, Callable

from boxbench.core.results import Record
from boxbench.reports.table import Table, fmt, gib, is_transfer

Predictions = Callable[[str], "list[dict[str, Any]] | None"]
REFERENCE = "hf"
NEAR_TIE = 0.1  # nats: a reference margin below this between the two best labels is a near-tie


def _route(r: Record) -> tuple[str, str]:
    """(backend, where): ``hf`` in-process, ``openai`` at its base URL, ..."""
    spec = r.model_spec or {}
    return str(spec.get("backend", "?")), str(spec.get("base_url", ""))


def groups(records: list[Record]) -> list[list[Record]]:
    """Sets of ok cells that measure the same thing through two or more backends; the reference
    (``hf``, else the first) comes first in each."""
    out: dict[tuple[Any, ...], list[Record]] = {}
    for r in records:
        if r.status == "ok" and not is_transfer(r):
            key = (r.label, r.access, r.dataset, r.seed, r.test_sha256, (r.model_spec or {}).get("model"))
            out.setdefault(key, []).append(r)
    found = []
    for rs in out.values():
        if len({_route(r) for r in rs}) > 1:
            ref = next((r for r in rs if _route(r)[0] == REFERENCE), rs[0])
            found.append([ref, *[r for r in rs if r is not ref]])
    return found


def _pct(v: float | None) -> str:
    return fmt(None if v is None else 100 * v)


def _margin(scores: list[float]) -> float:
    top = sorted(scores, reverse=True)
    return top[0] - top[1] if len(top) > 1 else float("inf")


def agreement(ref: list[dict[str, Any]], other: list[dict[str, Any]]) -> dict[str, Any]:
    """Row by row: the share of equal predictions, the differing rows, and what explains them where
    the rows say — label scores (their largest difference, and how many differing rows were a
    near-tie for the reference) or generated answers (the share of identical answer text)."""
    pairs = list(zip(ref, other))
    differ = [(a, b) for a, b in pairs if a.get("pred") != b.get("pred")]
    out: dict[str, Any] = {"same": 1 - len(differ) / len(pairs) if pairs else None, "differ": len(differ)}
    if pairs and all("scores" in a and "scores" in b for a, b in pairs):
        out["max_score_delta"] = max(abs(x - y) for a, b in pairs for x, y in zip(a["scores"], b["scores"]))
        out["near_ties"] = sum(1 for a, _ in differ if _margin(a["scores"]) < NEAR_TIE)
    if pairs and all("answer" in a and "answer" in b for a, b in pairs):
        out["same_answer"] = statistics.fmean(a["answer"] == b["answer"] for a, b in pairs)
    return out


def backends_table(records: list[Record], predictions: Predictions) -> Table | None:
    """One row per cell of every side-by-side group: accuracy, agreement with the reference's
    predictions, eval seconds and peak host memory."""
    found = groups(records)
    if not found:
        return None
    t = Table("Backends side by side", ["method", "access", "dataset", "model (backend)", "accuracy %", "same prediction %",
                                        "rows differing", "near-ties among them", "max |Δ score|", "same answer text %",
                                        "eval s", "peak host GiB"],
              note=f"the same model, method, seed and test rows through each backend; agreement is with the first row of each "
                   f"group ({REFERENCE} where present), example by example from the cells' predictions. Near-tie: the reference's "
                   f"two best labels within {NEAR_TIE} nats. Scores are summed label log-probs (grey cells); answers are the "
                   f"generated text (black cells). Peak host memory is the cell's process: a served model's memory is the "
                   f"server's, not counted here")
    for rs in found:
        ref_rows = predictions(rs[0].cell_id)
        for i, r in enumerate(rs):
            rows = predictions(r.cell_id)
            a = agreement(ref_rows, rows) if i and ref_rows is not None and rows is not None else {}
            t.rows.append([r.label, r.access, r.dataset, r.model, _pct(r.accuracy),
                           "reference" if not i else _pct(a.get("same")), str(a["differ"]) if "differ" in a else "",
                           str(a["near_ties"]) if "near_ties" in a else "",
                           fmt(a.get("max_score_delta"), digits=3) if "max_score_delta" in a else "",
                           _pct(a.get("same_answer")) if "same_answer" in a else "",
                           fmt(r.eval_wall_s), gib(r.peak_host_rss_bytes, 2)])
    return t
