"""boxbench's LoRA training loop against a minimal reference loop written straight on peft + torch.

    python benchmarks/perf/lora_loop.py [--examples 2000] [--batch-size 8] [--rounds 1]

Both train a fresh LoRA adapter (r=8, alpha=16, q_proj/v_proj, AdamW lr 2e-4) on the same SST-2
examples for one epoch at the same batch size, loss on the label tokens only, in this one process,
alternating (reference, boxbench) per round. Prints examples/s for each and the ratio.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from typing import Any

import torch

from boxbench.backends.hf import HFBackend
from boxbench.benchmarks.datasets import load_splits
from boxbench.core.task import Example, Task
from boxbench.methods.lora import LoraParams, target_modules
from boxbench.methods.training import train_loop


def reference_loop(model: Any, tok: Any, task: Task, examples: list[Example], batch_size: int, seed: int) -> float:
    """The minimal loop: tokenise, pad right, mask non-label tokens, forward, CE, backward, step."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    peft_model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    opt = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=2e-4)
    rows = []
    for ex in examples:
        p = tok(task.template.format(text=ex.text)).input_ids
        y = tok(task.label_words[ex.label], add_special_tokens=False).input_ids
        rows.append((p + y, len(y)))
    random.Random(seed).shuffle(rows)
    peft_model.train()
    t0 = time.perf_counter()
    for i in range(0, len(rows), batch_size):
        batch = rows[i : i + batch_size]
        width = max(len(r) for r, _ in batch)
        ids = torch.full((len(batch), width), tok.pad_token_id)
        mask = torch.zeros_like(ids)
        labels = torch.full_like(ids, -100)
        for j, (r, n) in enumerate(batch):
            ids[j, : len(r)] = torch.tensor(r)
            mask[j, : len(r)] = 1
            labels[j, len(r) - n : len(r)] = torch.tensor(r[len(r) - n :])
        logits = peft_model(input_ids=ids, attention_mask=mask).logits
        loss = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten(), ignore_index=-100)
        opt.zero_grad()
        loss.backward()
        opt.step()
    wall = time.perf_counter() - t0
    peft_model.unload()  # remove the adapter layers: the base model is reused by the next run
    return len(rows) / wall


def boxbench_loop(model: Any, tok: Any, task: Task, examples: list[Example], batch_size: int, seed: int) -> float:
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    params = LoraParams(batch_size=batch_size, epochs=1.0)
    peft_model = get_peft_model(model, LoraConfig(r=params.r, lora_alpha=params.alpha, lora_dropout=params.dropout,
                                                  target_modules=target_modules(model, "auto"), task_type="CAUSAL_LM"))
    stats = train_loop(peft_model, tok, task, examples, params, seed)
    peft_model.unload()
    return stats["train_examples_seen"] / stats["train_wall_s"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--examples", type=int, default=2000)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args()
    backend = HFBackend.load(args.model, device="auto", dtype="float32")
    model, tok = backend.module, backend.tokenizer
    for p in model.parameters():
        p.requires_grad_(False)
    splits = load_splits("sst2", train=args.examples)
    ref, ours = [], []
    for r in range(args.rounds):
        ref.append(reference_loop(model, tok, splits.task, splits.train, args.batch_size, seed=r))
        ours.append(boxbench_loop(model, tok, splits.task, splits.train, args.batch_size, seed=r))
        print(f"round {r}: reference {ref[-1]:.2f} ex/s, boxbench {ours[-1]:.2f} ex/s", flush=True)
    mr, mo = statistics.median(ref), statistics.median(ours)
    print(f"LoRA, {args.examples} SST-2 examples x 1 epoch, batch {args.batch_size}, {backend.settings['device']}: "
          f"reference {mr:.2f} ex/s, boxbench {mo:.2f} ex/s, boxbench/reference = {mo / mr:.3f}")


if __name__ == "__main__":
    main()
