"""The scorer's throughput on the quick suite's evaluation work, this tree against a baseline
commit, measured side by side in one run (alternating, each in its own process), with the
predictions compared.

    python benchmarks/perf/throughput.py [--baseline REV] [--workloads NAME,...] [--reps 2] [--test 128]

Workloads (SmolLM2-135M fp32 from its wheel, the quick suite's data limits and seed 0):

* ``zero_shot_grey_sst2`` — zero-shot logprob scoring; also printed as a roofline: useful GFLOP/s
  (2 x linear-layer parameters x prompt tokens / time) over the fp32 matmul rate measured here at
  the model's own shapes (30 layers of distinct weights, the evaluation's batch of tokens).
* ``kate_black_sst2``, ``kate_black_agnews`` — KATE's evaluation (k 4 of a 1,000-example pool),
  generated answers; the index build is not timed.
* ``few_shot_black_agnews`` — 4 fixed demonstrations, generated answers.
* ``ape_dev_scoring`` — APE's dev scoring: 8 candidate instructions x 16 dev examples, generated
  answers (through ``instruction_accuracies`` where the tree has it, else one call per candidate).
* ``proposer_decode`` — the quick suite's proposer (Qwen2.5-Coder-1.5B fp32) writing 4 instructions
  from SST-2 demonstrations, 50 sampled tokens each (temperature 1, seed 0), as APE's proposals.

The baseline tree is a ``git worktree`` of REV (default: the commit before issue 16's work) in a
temporary folder; each side imports its own ``boxbench``. Times are the minimum over ``--reps``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from boxbench.backends.hf import HFBackend
from boxbench.benchmarks.datasets import load_splits
from boxbench.core.backend import GenerationConfig
from boxbench.core.evaluate import evaluate
from boxbench.core.method import PromptArtifact, build_params
from boxbench.methods import proposer
from boxbench.methods.registry import get_method

ROOT = Path(__file__).resolve().parents[2]
WORKLOADS = ("zero_shot_grey_sst2", "kate_black_sst2", "kate_black_agnews", "few_shot_black_agnews", "ape_dev_scoring",
             "proposer_decode")
CANDIDATES = [
    "Classify the sentiment of the review.",
    "Decide whether the movie review below is positive or negative.",
    "Read the text and say if the writer liked the film.",
    "Label each sentence with its overall sentiment, positive or negative.",
    "Determine the emotional tone of the given input and answer with one word.",
    "Is the following review favourable? Answer positive or negative.",
    "Predict the sentiment expressed by the author of the input text.",
    "Tell whether the opinion in this sentence is good or bad.",
]


def matmul_rate(config: Any, tokens: int) -> float:
    """fp32 GFLOP/s of torch's matmul at the model's linear shapes: every layer's own weights (not
    cache-hot), ``tokens`` rows per product."""
    import torch

    h, f = config.hidden_size, config.intermediate_size
    kv = config.num_key_value_heads * (h // config.num_attention_heads)
    shapes = [(h, h), (h, kv), (h, kv), (h, h), (h, f), (h, f), (f, h)]
    weights = [[torch.randn(o, i) for i, o in shapes] for _ in range(config.num_hidden_layers)]
    x = {i: torch.randn(tokens, i) for i, _ in shapes}

    def once() -> None:
        for layer in weights:
            for (i, _), w in zip(shapes, layer):
                torch.nn.functional.linear(x[i], w)

    once()
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        once()
        best = min(best, time.perf_counter() - t0)
    return sum(2 * tokens * i * o for i, o in shapes) * config.num_hidden_layers / best / 1e9


def worker(names: list[str], test: int) -> None:
    """Run the workloads with whichever ``boxbench`` is importable; one JSON line per workload."""
    import hashlib

    backend = HFBackend.load("smollm2-135m", batch_size=16)
    limits: dict[str, Any] = {"train": 2000, "dev": 48, "test": test}
    warm = load_splits("sst2", test=16)  # the first passes pay one-off costs (allocator, kernels): not timed
    evaluate(PromptArtifact(), backend.view("grey"), warm.task, warm.test)
    for name in names:
        dataset = "agnews" if name.endswith("agnews") else "sst2"
        splits = load_splits(dataset, **limits)
        access = "grey" if "grey" in name else "black"
        view = backend.view(access)
        if name.startswith("kate"):
            art = get_method("kate")().tune(view, task=splits.task, train=splits.train, dev=splits.dev,
                                            params=build_params(get_method("kate"), {"k": 4, "pool_size": 1000}), seed=0)
        elif name.startswith("few_shot"):
            art = get_method("few_shot")().tune(view, task=splits.task, train=splits.train, dev=splits.dev,
                                                params=build_params(get_method("few_shot"), {"k": 4}), seed=0)
        else:
            art = PromptArtifact()
        timed = HFBackend.load("qwen2.5-coder-1.5b", batch_size=16) if name == "proposer_decode" else backend
        before = timed.usage.snapshot()
        t0 = time.perf_counter()
        preds: Any
        if name == "proposer_decode":
            demos = "\n".join(f"Input: {e.text}\nOutput: {splits.task.label_names[e.label]}" for e in splits.dev[:5])
            prompts = [f"I gave a friend an instruction and five inputs. The friend read the instruction and wrote an "
                       f"output for every one of the inputs. Here are the input-output pairs:\n\n{demos}\n\n"
                       f"The instruction was to"] * 4  # four samples: one random stream per prompt
            preds = timed.generate(prompts, GenerationConfig(max_new_tokens=50, temperature=1.0, seed=0))
        elif name == "ape_dev_scoring":
            dev = splits.dev[:16]
            if hasattr(proposer, "instruction_accuracies"):
                preds = proposer.instruction_accuracies(view, splits.task, CANDIDATES, dev, 6)
            else:
                one = getattr(proposer, "instruction_accuracy")  # a baseline tree older than instruction_accuracies
                preds = [one(view, splits.task, c, dev, 6) for c in CANDIDATES]
        else:
            preds = evaluate(art, view, splits.task, splits.test, max_new_tokens=6)["predictions"]
        wall = time.perf_counter() - t0
        after = timed.usage.snapshot()
        del timed
        out: dict[str, Any] = {"workload": name, "wall_s": wall, "prompt_tokens": after["prompt_tokens"] - before["prompt_tokens"],
               "completion_tokens": after["completion_tokens"] - before["completion_tokens"],
               "predictions": hashlib.sha256(json.dumps(preds).encode()).hexdigest()[:12]}
        if name == "zero_shot_grey_sst2":
            model = backend.module
            linear = sum(p.numel() for n, p in model.named_parameters() if p.dim() == 2 and "embed" not in n and "lm_head" not in n)
            out["useful_gflops"] = 2 * linear * out["prompt_tokens"] / wall / 1e9
            out["matmul_gflops"] = matmul_rate(model.config, 16 * out["prompt_tokens"] // test)
        print("RESULT " + json.dumps(out), flush=True)


def run_side(tree: Path, names: list[str], test: int) -> dict[str, dict]:
    """The workloads in a fresh process importing ``boxbench`` from ``tree``."""
    with tempfile.TemporaryDirectory() as shim:
        (Path(shim) / "boxbench").symlink_to(tree)
        env = {**os.environ, "PYTHONPATH": shim + os.pathsep + os.environ.get("PYTHONPATH", "")}
        proc = subprocess.run([sys.executable, __file__, "--worker", ",".join(names), "--test", str(test)], env=env,
                              cwd=shim, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"workers in {tree} failed:\n{proc.stderr[-3000:]}")
    rows = [json.loads(line[7:]) for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    return {r["workload"]: r for r in rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--baseline", default="8bc1087", help="commit to compare against (default: before issue 16)")
    ap.add_argument("--workloads", default=",".join(WORKLOADS))
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--test", type=int, default=128)
    ap.add_argument("--worker", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args.worker.split(","), args.test)
    names = args.workloads.split(",")
    unknown = set(names) - set(WORKLOADS)
    if unknown:
        sys.exit(f"--workloads: unknown {', '.join(sorted(unknown))}; choose from {', '.join(WORKLOADS)}")
    base = Path(tempfile.mkdtemp(prefix="bb-baseline-"))
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-f", str(base), args.baseline], check=True,
                   capture_output=True)
    try:
        best: dict[str, dict[str, dict]] = {"baseline": {}, "this tree": {}}
        for rep in range(args.reps):
            for side, tree in (("baseline", base), ("this tree", ROOT)):
                for name, r in run_side(tree, names, args.test).items():
                    if name not in best[side] or r["wall_s"] < best[side][name]["wall_s"]:
                        best[side][name] = r
                print(f"rep {rep + 1}/{args.reps}: {side} done", file=sys.stderr, flush=True)
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)], capture_output=True)
    print(f"SmolLM2-135M fp32, {os.cpu_count()} CPUs, {args.test} test examples; baseline {args.baseline}; "
          f"min of {args.reps} alternating runs")
    print(f"{'workload':24} {'baseline s':>10} {'this s':>8} {'speed-up':>8}  {'same predictions':16} completion tokens")
    for name in names:
        b, t = best["baseline"][name], best["this tree"][name]
        print(f"{name:24} {b['wall_s']:10.2f} {t['wall_s']:8.2f} {b['wall_s'] / t['wall_s']:7.2f}x  "
              f"{str(b['predictions'] == t['predictions']):16} {b['completion_tokens']} -> {t['completion_tokens']}")
    for side in best:
        roof = best[side].get("zero_shot_grey_sst2")
        if roof:
            print(f"roofline ({side}): {roof['useful_gflops']:.1f} useful GFLOP/s of {roof['matmul_gflops']:.1f} matmul GFLOP/s "
                  f"= {100 * roof['useful_gflops'] / roof['matmul_gflops']:.0f} %")


if __name__ == "__main__":
    main()
