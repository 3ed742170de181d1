"""Measure the GGUF dequantisation cache: cold load (GGUF -> fp32) vs warm load (cached safetensors).

    python benchmarks/perf/load_cache.py [--model smollm2-135m] [--repeat 2]

Each load runs in a fresh process with a fresh cache dir for the cold case, so import and file
caches are treated alike; prints seconds and the speed-up ratio measured in this one run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

CHILD = """
import json, sys, time
t0 = time.perf_counter()
from boxbench.backends.hf import HFBackend
b = HFBackend.load(sys.argv[1], device="cpu", dtype="float32")
print(json.dumps({"source": b.settings["load_source"], "load_s": time.perf_counter() - t0}))
"""


def load_once(model: str, cache: str) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, model], capture_output=True, text=True, check=True,
                         env={**os.environ, "BOXBENCH_CACHE": cache})
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    cold, warm = [], []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as cache:
            c = load_once(args.model, cache)
            w = load_once(args.model, cache)
            assert (c["source"], w["source"]) == ("gguf", "cache")
            cold.append(c["load_s"])
            warm.append(w["load_s"])
    mc, mw = statistics.median(cold), statistics.median(warm)
    print(f"{args.model}: cold (GGUF dequantise + convert tokenizer + write cache) {mc:.1f} s, "
          f"warm (cached safetensors) {mw:.1f} s, speed-up x{mc / mw:.1f}  (median of {args.repeat}; "
          f"times include imports)")


if __name__ == "__main__":
    main()
