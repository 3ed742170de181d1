"""PEZ steps/s: boxbench's ``pez`` method against a minimal reference PEZ loop written straight on
torch, in one process, same model, data, batch size, prompt length and number of steps.

    python benchmarks/perf/pez_loop.py [--steps 40] [--model smollm2-135m] [--rounds 2]

The reference: nearest-neighbour projection by cosine, the projected prompt prepended as
embeddings, cross-entropy on the label word from the full logits, straight-through gradient,
Adafactor (lr 0.3). boxbench runs with no dev set (no evaluation inside the timed loop).
Prints both rates and boxbench/reference (the issue's bar: not slower by more than 10 %).
"""

from __future__ import annotations

import argparse
import random
import time
from typing import Any

from boxbench.backends.hf import HFBackend
from boxbench.benchmarks.datasets import load_splits
from boxbench.core.backend import Access
from boxbench.core.task import Example, Task
from boxbench.methods.pez import Pez, PezParams


def reference_pez(model: Any, tok: Any, task: Task, train: list[Example], *, steps: int, batch_size: int, length: int, seed: int) -> float:
    """Minimal PEZ; returns steps/s."""
    import torch
    from transformers.optimization import Adafactor

    emb = model.get_input_embeddings().weight
    for p in model.parameters():
        p.requires_grad_(False)
    vocab = emb.detach()
    vocab_n = torch.nn.functional.normalize(vocab, dim=-1)
    g = torch.Generator().manual_seed(seed)
    prompt = torch.nn.Parameter(vocab[torch.randint(len(vocab), (length,), generator=g)].clone())
    opt = Adafactor([prompt], lr=0.3, scale_parameter=False, relative_step=False, warmup_init=False)
    rng = random.Random(seed)
    data = [(tok("\n\n" + task.template.format(text=e.text), add_special_tokens=False).input_ids,
             tok(task.label_words[e.label], add_special_tokens=False).input_ids) for e in train]
    t0 = time.perf_counter()
    for _ in range(steps):
        batch = rng.sample(data, batch_size)
        proj = vocab[(torch.nn.functional.normalize(prompt.detach(), dim=-1) @ vocab_n.T).argmax(-1)]
        leaf = proj.clone().requires_grad_(True)
        width = max(len(x) + len(y) for x, y in batch)
        embeds, masks, targets = [], [], []
        for x, y in batch:
            ids = torch.tensor(x + y)
            pad = width - len(ids)
            e = torch.cat([torch.zeros(pad, vocab.shape[1]), leaf, emb[ids]], 0)
            embeds.append(e)
            masks.append(torch.tensor([0] * pad + [1] * (length + len(ids))))
            t = torch.full((pad + length + len(ids),), -100)
            t[-len(y):] = torch.tensor(y)
            targets.append(t)
        mask = torch.stack(masks)
        out = model(inputs_embeds=torch.stack(embeds), attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0))
        loss = torch.nn.functional.cross_entropy(out.logits[:, :-1].flatten(0, 1), torch.stack(targets)[:, 1:].flatten(), ignore_index=-100)
        loss.backward()
        prompt.grad = leaf.grad
        torch.nn.utils.clip_grad_norm_([prompt], 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
    return steps / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=16)
    args = ap.parse_args()
    backend = HFBackend.load(args.model, device="cpu", dtype="float32")
    splits = load_splits("sst2", train=1000, test=0)
    ref, ours = [], []
    for r in range(args.rounds):  # alternate, so drift (thermal, caches) hits both
        ref.append(reference_pez(backend.module, backend.tokenizer, splits.task, splits.train, steps=args.steps, batch_size=args.batch_size, length=10, seed=r))
        art = Pez().tune(backend.view(Access.white), task=splits.task, train=splits.train, dev=[], params=PezParams(steps=args.steps, batch_size=args.batch_size), seed=r)
        ours.append(art.stats["steps_per_s"])
    best_ref, best_ours = max(ref), max(ours)
    print(f"{args.model}, SST-2, PEZ {args.steps} steps x {args.rounds} rounds, batch {args.batch_size}, prompt 10, "
          f"{backend.settings['device']}: reference {best_ref:.3f} steps/s, boxbench {best_ours:.3f} steps/s, "
          f"boxbench/reference = {best_ours / best_ref:.3f} (all rounds: ref {[round(x, 3) for x in ref]}, "
          f"boxbench {[round(x, 3) for x in ours]})")


if __name__ == "__main__":
    main()
