"""The shared-prefix KV cache: examples/s with and without it, measured side by side, for the grey
scorer (logprob protocol) and, with ``--protocol generate``, for black-box generation.

    python benchmarks/perf/prefix_cache.py [--demos 8] [--examples 200] [--model smollm2-135m] [--protocol logprob|generate]

SST-2 test examples scored zero-shot after the same k demonstrations (an 8-demonstration prompt by
default): with the cache the demonstrations are run through the model once, without it once per
example. Also checks that both give the same predictions.
"""

from __future__ import annotations

import argparse
import time

from boxbench.backends.hf import HFBackend
from boxbench.benchmarks.datasets import load_splits
from boxbench.core.evaluate import evaluate
from boxbench.core.method import PromptArtifact


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--demos", type=int, default=8)
    ap.add_argument("--examples", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--protocol", choices=["logprob", "generate"], default="logprob")
    args = ap.parse_args()
    backend = HFBackend.load(args.model, batch_size=args.batch_size)
    splits = load_splits("sst2", train=200, test=args.examples)
    art = PromptArtifact(demos=splits.train[: args.demos])
    rate, preds = {}, {}
    for cached in (False, True, False, True):  # alternate, keep the second of each
        backend.prefix_cache = cached
        t0 = time.perf_counter()
        view = backend.view("grey" if args.protocol == "logprob" else "black")
        res = evaluate(art, view, splits.task, splits.test, max_new_tokens=6)
        rate[cached] = len(splits.test) / (time.perf_counter() - t0)
        preds[cached] = res["predictions"]
    same = preds[True] == preds[False]
    print(f"{args.model}, SST-2, {args.protocol} protocol, {args.demos} demonstrations, {args.examples} examples, batch {args.batch_size}, "
          f"{backend.settings['device']}: without cache {rate[False]:.1f} ex/s, with cache {rate[True]:.1f} ex/s, "
          f"speed-up x{rate[True] / rate[False]:.2f}; identical predictions: {same}")


if __name__ == "__main__":
    main()
