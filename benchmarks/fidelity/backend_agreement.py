"""Does the same model score the same on every backend? hf (transformers, the GGUF dequantised to
fp32) against llama.cpp's OpenAI-compatible server (the same GGUF, its quantised kernels), side by
side on the same examples, through the runner's own scorer and views.

    python benchmarks/fidelity/backend_agreement.py [--model smollm2-135m] [--dataset sst2] [--examples 200] [--black 100]

Prints, for the logprob protocol (grey): each backend's accuracy, how many predictions agree, the
per-label score difference (max / p95 / mean, nats), and how many disagreements fall outside the
documented bound (``SCORE_BOUND`` in tests/test_conformance.py: a prediction may flip only where
the reference's label margin is below twice the bound); for the generate protocol (black): equal
answers, equal parsed labels, invalid rates; and both backends' ``Usage`` for the same work.
"""

from __future__ import annotations

import argparse
import statistics
import time

from boxbench.backends import load_backend, parse_model_spec
from boxbench.backends.llama_server import LlamaServer
from boxbench.benchmarks.datasets import load_splits
from boxbench.core.backend import GenerationConfig
from boxbench.core.evaluate import parse_label, with_hint


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--dataset", default="sst2")
    ap.add_argument("--examples", type=int, default=200)
    ap.add_argument("--black", type=int, default=100, help="examples for the generate protocol (0: skip)")
    ap.add_argument("--bound", type=float, default=0.75, help="documented per-label score bound (nats)")
    args = ap.parse_args()

    splits = load_splits(args.dataset, 0, 0, args.examples, 0)
    hf = load_backend(parse_model_spec(args.model), device="cpu", dtype="float32", batch_size=16)
    with LlamaServer(args.model) as srv:
        api = load_backend(parse_model_spec({"backend": "openai", "model": args.model, "base_url": srv.base_url}))
        print(f"{args.model} on {args.dataset}, {len(splits.test)} test examples; openai score method: {api.settings['score_method']}")
        prompts = [splits.task.template.format(text=e.text) for e in splits.test]
        gold = [e.label for e in splits.test]
        words = [list(splits.task.label_words)] * len(prompts)
        scores, walls, usage, listed = {}, {}, {}, {}
        for name, b in (("hf", hf), ("openai", api)):
            before = b.usage.snapshot()
            t0 = time.perf_counter()
            scores[name] = b.view("grey").score(prompts, words)
            walls[name] = time.perf_counter() - t0
            usage[name] = {k: v - before[k] for k, v in b.usage.snapshot().items()}
            tops = b.view("grey").next_token_logprobs(prompts, 100)
            listed[name] = [[w in top for w in ws] for top, ws in zip(tops, words)]
        preds = {n: [max(range(len(r)), key=r.__getitem__) for r in s] for n, s in scores.items()}
        both = [(abs(x - y), la and lb) for ra, rb, la_, lb_ in zip(scores["hf"], scores["openai"], listed["hf"], listed["openai"])
                for x, y, la, lb in zip(ra, rb, la_, lb_)]
        diffs = sorted(d for d, ok in both if ok)
        agree = sum(p == q for p, q in zip(preds["hf"], preds["openai"]))
        margins = [sorted(r, reverse=True)[0] - sorted(r, reverse=True)[1] for r in scores["hf"]]
        outside = sum(1 for p, q, m in zip(preds["hf"], preds["openai"], margins) if p != q and m >= 2 * args.bound)
        print("== logprob protocol (grey)")
        for name in scores:
            acc = sum(p == g for p, g in zip(preds[name], gold)) / len(gold)
            print(f"  {name:<7} accuracy {acc:.3f}  wall {walls[name]:6.1f} s  usage {usage[name]}")
        print(f"  predictions agree: {agree}/{len(gold)}")
        print(f"  |score difference| (nats) over the {len(diffs)} of {len(both)} label scores that both list in "
              f"their top-100: max {diffs[-1]:.3f}  p95 {diffs[int(0.95 * (len(diffs) - 1))]:.3f}  mean {statistics.fmean(diffs):.3f}; "
              f"over the bound {args.bound}: {sum(d > args.bound for d in diffs)}")
        print(f"  disagreements where the hf margin >= 2 x bound: {outside} (must be 0)")
        if args.black:
            test = splits.test[: args.black]
            config = GenerationConfig(max_new_tokens=8, temperature=0.0, stop=["\n"])
            gen = {name: b.view("black").generate([with_hint(splits.task, p) for p in prompts[: len(test)]], config)
                   for name, b in (("hf", hf), ("openai", api))}
            parsed = {n: [parse_label(a, splits.task) for a in answers] for n, answers in gen.items()}
            print(f"== generate protocol (black), {len(test)} examples")
            for name in gen:
                acc = sum(p == e.label for p, e in zip(parsed[name], test)) / len(test)
                print(f"  {name:<7} accuracy {acc:.3f}  invalid {sum(p is None for p in parsed[name]) / len(test):.3f}  "
                      f"empty answers {sum(not a.strip() for a in gen[name])}")
            same = sum(x == y for x, y in zip(gen["hf"], gen["openai"]))
            same_pred = sum(x == y for x, y in zip(parsed["hf"], parsed["openai"]))
            print(f"  identical answers: {same}/{len(test)}; identical parsed labels: {same_pred}/{len(test)}")


if __name__ == "__main__":
    main()
