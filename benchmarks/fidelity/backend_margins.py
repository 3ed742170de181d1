"""Why the backends' black cells differ from hf's (results/backends, benchmarks/suites/backends.yaml):
for each differing row, hf's margin between its two most likely first answer tokens, against the
same margin on 40 rows where they agree — a difference on a near-tie is numerics (llama.cpp's
quantised kernels against the dequantised fp32 weights), not a bug. Greedy decoding can also part
later in the answer; this looks at the first token only.

    python -m boxbench.benchmarks.fidelity.backend_margins [METHOD ...]
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path
from typing import Any

import torch

from boxbench.backends import load_backend, parse_model_spec
from boxbench.benchmarks.datasets import load_splits
from boxbench.core.backend import Access
from boxbench.core.evaluate import with_hint
from boxbench.core.results import ResultStore, read_predictions
from boxbench.methods.registry import load_artifact

RUN = Path("results/backends")


def first_token_margin(model: Any, tok: Any, prompt: str) -> float:
    """log p(best next token) − log p(second best), in nats."""
    ids = tok(prompt, return_tensors="pt").input_ids
    with torch.no_grad():
        top = torch.topk(torch.log_softmax(model(ids).logits[0, -1].float(), -1), 2).values
    return float(top[0] - top[1])


def main(only: list[str]) -> None:
    recs = [r for r in ResultStore(RUN).read() if r.status == "ok"]
    backend = load_backend(parse_model_spec("smollm2-135m"), device="cpu", dtype="auto", batch_size=16)
    model, tok = backend.view(Access.white).module, backend.tokenizer
    refs = [r for r in recs if r.model.endswith("@hf") and r.access == "black" and (not only or r.method in only)]
    for ref in refs:
        task = load_splits(ref.dataset, 8, 0, 8, 0).task
        art = load_artifact(RUN / "cells" / ref.cell_id / "artifact")
        hf_rows = read_predictions(RUN, ref.cell_id) or []

        def margins(rows: list[int]) -> list[float]:
            return [first_token_margin(model, tok, with_hint(task, p)) for p in art.prompts(task, [hf_rows[i]["text"] for i in rows])]

        for other in [r for r in recs if (r.label, r.dataset) == (ref.label, ref.dataset) and r is not ref]:
            rows = read_predictions(RUN, other.cell_id) or []
            diff = [i for i, (x, y) in enumerate(zip(hf_rows, rows)) if x["pred"] != y["pred"]]
            line = f"{ref.label:10} {ref.dataset:7} {other.model:28} {len(diff)} differing"
            if diff:
                dm, sm = margins(diff), margins([i for i in range(len(hf_rows)) if i not in diff][:40])
                line += (f": hf's first-token margin median {statistics.median(dm):.2f} nats (< 0.5 on {sum(m < 0.5 for m in dm)}/{len(dm)})"
                         f" vs {statistics.median(sm):.2f} on 40 agreeing rows")
            print(line, flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
