"""The one training loop shared by the white-box methods (LoRA, prompt tuning, full fine-tuning).

Classification is trained as next-token prediction of the label word after the task's prompt
(the same template and label words the scorer uses), with the loss on the label tokens only.

A plain torch loop rather than ``transformers.Trainer``: the budgets that make cells comparable
(``max_train_examples``, ``max_steps``, ``time_budget_s``) are checked exactly where they apply,
the step is easy to read and to compare with a minimal reference loop (benchmarks/perf), and
nothing else (logging integrations, checkpoint folders, accelerate state) runs in the timed part.
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from boxbench.backends.torch_utils import model_inputs
from boxbench.core.backend import Usage
from boxbench.core.method import Checked, render_prompt
from boxbench.core.task import Example, Task
from boxbench.core.tokens import encode_pair


@dataclass
class TrainParams(Checked):
    """Optimisation and budget settings shared by every trained method."""

    lr: float = field(default=2e-4, metadata={"help": "peak learning rate (AdamW)", "gt": 0})
    epochs: float = field(default=1.0, metadata={"help": "passes over the training pool (ignored when max_steps > 0)", "gt": 0})
    max_steps: int = field(default=0, metadata={"help": "optimizer steps; 0 = from epochs", "min": 0})
    batch_size: int = field(default=8, metadata={"help": "examples per forward pass", "min": 1})
    grad_accum: int = field(default=1, metadata={"help": "forward passes per optimizer step", "min": 1})
    max_length: int = field(default=256, metadata={"help": "truncate prompt+label to this many tokens (prompt cut from the left)", "min": 2})
    warmup_ratio: float = field(default=0.06, metadata={"help": "linear warm-up share of the steps, then linear decay", "min": 0, "max": 1})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay", "min": 0})
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient clipping; 0 = off", "min": 0})
    max_train_examples: int = field(default=0, metadata={"help": "use at most this many training examples; 0 = the whole pool", "min": 0})
    time_budget_s: float = field(default=0.0, metadata={"help": "stop training after this many seconds; 0 = no limit", "min": 0})
    gradient_checkpointing: bool = field(default=False, metadata={"help": "trade compute for activation memory"})


def encode_examples(tok: Any, task: Task, examples: Sequence[Example], max_length: int, instruction: str = "") -> list[tuple[list[int], int]]:
    """(prompt+label token ids, number of label tokens) per example, encoded as the scorer
    encodes them (``tokens.encode_pair``: prompt and label word together, split where the prompt ends)."""
    out = []
    for ex in examples:
        p, y = encode_pair(lambda t: tok(t, add_special_tokens=True).input_ids,
                           render_prompt(task, ex.text, instruction), task.label_words[ex.label])
        p = p[-(max_length - len(y)) :] if len(p) + len(y) > max_length else p
        out.append((p + y, len(y)))
    return out


def collate(rows: Sequence[tuple[list[int], int]], pad_id: int, device: Any) -> tuple[Any, Any, Any]:
    """Left-padded input ids, attention mask, and labels (-100 everywhere but the label tokens).

    Left padding puts every row's label tokens at the end, so the forward pass only needs logits
    for the last ``max label length + 1`` positions (``logits_to_keep``): the LM head, often the
    largest matrix of a small model, then runs on a few positions instead of all of them.
    """
    import torch

    width = max(len(ids) for ids, _ in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    for i, (seq, n_label) in enumerate(rows):
        ids[i, width - len(seq) :] = torch.tensor(seq)
        mask[i, width - len(seq) :] = 1
        labels[i, width - n_label :] = torch.tensor(seq[len(seq) - n_label :])
    return ids.to(device), mask.to(device), labels.to(device)


def label_loss(logits: Any, labels: Any) -> Any:
    """Mean cross-entropy of the label tokens; ``logits`` cover the last ``logits.shape[1]``
    positions of ``labels``' rows (logits at t predict token t+1)."""
    import torch.nn.functional as F

    labels = labels[:, -logits.shape[1] :]
    return F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(), ignore_index=-100)


def forward_tail(model: Any, ids: Any, mask: Any, keep: int, prefix_embeds: Any = None) -> Any:
    """Logits at the last ``keep`` positions of left-padded rows (position ids from the mask)."""
    inputs = model_inputs(model, ids, mask, prefix_embeds)
    try:
        return model(**inputs, logits_to_keep=keep, use_cache=False).logits[:, -keep:]
    except TypeError:  # architectures without logits_to_keep
        return model(**inputs, use_cache=False).logits[:, -keep:]


def freeze(model: Any) -> Any:
    """Stop gradients to every parameter of ``model`` (adapters added afterwards stay trainable)."""
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def count_params(model: Any) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total


def planned_steps(pool_size: int, params: TrainParams) -> int:
    """Optimizer steps ``train_loop`` will plan for a pool of ``pool_size`` examples (``max_steps`` or epochs)."""
    n = min(pool_size, params.max_train_examples) if params.max_train_examples else pool_size
    per_epoch = math.ceil(n / (params.batch_size * params.grad_accum))
    return params.max_steps or max(1, math.ceil(per_epoch * params.epochs))


class _Batches:
    """The training pool's batches: the (already shuffled) pool in order, reshuffled by ``rng`` at each new pass."""

    def __init__(self, data: list[tuple[list[int], int]], rng: random.Random, size: int) -> None:
        self.data, self.rng, self.size = data, rng, size
        self.order, self.cursor = list(range(len(data))), 0

    def next(self) -> list[tuple[list[int], int]]:
        if self.cursor >= len(self.order):
            self.rng.shuffle(self.order)
            self.cursor = 0
        batch = [self.data[i] for i in self.order[self.cursor : self.cursor + self.size]]
        self.cursor += self.size
        return batch


def _training_data(tok: Any, task: Task, train_set: Sequence[Example], params: TrainParams, seed: int,
                   instruction: str) -> tuple[list[tuple[list[int], int]], random.Random]:
    """The encoded training pool (shuffled by ``seed``, cut to ``max_train_examples``) and the rng that goes on shuffling it."""
    rng = random.Random(seed)
    pool = list(train_set)
    rng.shuffle(pool)
    if params.max_train_examples:
        pool = pool[: params.max_train_examples]
    if not pool:
        raise ValueError("the training pool is empty; raise limits.train in the suite")
    return encode_examples(tok, task, pool, params.max_length, instruction), rng


def _optimiser(trainable: list[Any], params: TrainParams, steps: int) -> tuple[Any, Any]:
    """AdamW and its schedule: linear warm-up over ``warmup_ratio`` of the steps, then linear decay."""
    import torch
    from transformers import get_linear_schedule_with_warmup

    opt = torch.optim.AdamW(trainable, lr=params.lr, weight_decay=params.weight_decay)
    return opt, get_linear_schedule_with_warmup(opt, int(params.warmup_ratio * steps), steps)


def _checkpointing(model: Any, on: bool) -> None:
    """Gradient checkpointing on (inputs made to require grads, as peft models need) or off."""
    if on and hasattr(model, "gradient_checkpointing_enable"):
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if hasattr(model, "enable_input_require_grads"):
            model.enable_input_require_grads()
    elif not on and hasattr(model, "gradient_checkpointing_disable"):
        model.gradient_checkpointing_disable()


def _train_stats(model: Any, extra_params: Sequence[Any], losses: list[float], counts: dict[str, Any], wall: float,
                 precision: str) -> dict[str, Any]:
    """What the runner records of a training run (``counts``: steps, planned steps, examples seen, pool, stop reason)."""
    n_train, n_total = count_params(model)
    n_extra = sum(p.numel() for p in extra_params)
    k = max(1, min(10, len(losses) // 4))
    seen = counts["train_examples_seen"]
    return {
        **{key: v for key, v in counts.items() if key != "stopped_by"},
        "trainable_params": n_train + n_extra, "total_params": n_total + n_extra,
        "train_wall_s": round(wall, 3), "train_examples_per_s": round(seen / wall, 3) if wall else None,
        "loss_first": sum(losses[:k]) / k, "loss_last": sum(losses[-k:]) / k,
        "loss_curve": [round(x, 4) for x in losses[:: max(1, len(losses) // 50)]],
        "stopped_by": counts["stopped_by"], "precision": precision,
    }


def _backward(model: Any, fwd: Callable[..., Any], batch: list[tuple[list[int], int]], pad: int, device: Any, *, scale: int,
              extra_loss: Callable[[], Any] | None, autocast: Callable[[], Any]) -> tuple[float, int]:
    """One micro-batch: the label loss (plus ``extra_loss``) divided by ``scale``, its gradients
    accumulated; returns (that loss, the batch's real tokens)."""
    ids, mask, labels = collate(batch, pad, device)
    with autocast():
        loss = label_loss(fwd(model, ids, mask, max(n for _, n in batch) + 1), labels)
        loss = (loss + extra_loss() if extra_loss is not None else loss) / scale
    loss.backward()
    return float(loss.detach()), int(mask.sum())


def train_loop(model: Any, tok: Any, task: Task, train_set: Sequence[Example], params: TrainParams, seed: int, *,
               forward: Callable[[Any, Any, Any, int], Any] | None = None, extra_params: Sequence[Any] = (),
               instruction: str = "", extra_loss: Callable[[], Any] | None = None,
               after_step: Callable[[int], None] | None = None, usage: Usage | None = None,
               prefix_tokens: int = 0) -> dict[str, Any]:
    """Train ``model``'s trainable parameters (plus ``extra_params``) on the label-word loss; returns the stats the runner records.

    ``forward(model, ids, mask, keep)``: the logits of the last ``keep`` positions (default ``forward_tail``;
    prompt tuning prepends its soft prompt). ``extra_loss()`` is added to every pass's loss (AdaLoRA's
    orthogonality term); ``after_step(step)`` runs after each optimizer step, gradients still present
    (AdaLoRA's rank allocation). Every pass is counted in ``usage`` (its tokens, plus ``prefix_tokens``
    per row a ``forward`` puts in front) for the compute estimate."""
    import torch

    device = next(model.parameters()).device
    data, rng = _training_data(tok, task, train_set, params, seed, instruction)
    steps = planned_steps(len(data), params)
    trainable = [p for p in model.parameters() if p.requires_grad] + list(extra_params)
    n_trained = sum(p.numel() for p in trainable)
    opt, sched = _optimiser(trainable, params, steps)
    if params.gradient_checkpointing:
        _checkpointing(model, True)
    use_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if use_bf16 else contextlib.nullcontext
    fwd = forward or forward_tail
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id

    model.train()
    t0 = time.perf_counter()
    losses: list[float] = []
    seen, step, stopped = 0, 0, "steps"
    batches = _Batches(data, rng, params.batch_size)
    while step < steps:
        opt.zero_grad(set_to_none=True)
        step_loss = 0.0
        for _ in range(params.grad_accum):
            batch = batches.next()
            loss, tokens = _backward(model, fwd, batch, pad, device, scale=params.grad_accum, extra_loss=extra_loss, autocast=autocast)
            if usage is not None:
                usage.add_backward(tokens + prefix_tokens * len(batch), n_trained)
            step_loss += loss
            seen += len(batch)
        if params.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(trainable, params.max_grad_norm)
        opt.step()
        sched.step()
        step += 1
        if after_step is not None:
            after_step(step)
        losses.append(step_loss)
        if params.time_budget_s and time.perf_counter() - t0 >= params.time_budget_s:
            stopped = "time_budget"
            break
    model.eval()
    if params.gradient_checkpointing:
        _checkpointing(model, False)
    counts = {"train_steps": step, "planned_steps": steps, "train_examples_seen": seen, "train_pool": len(data), "stopped_by": stopped}
    precision = "bf16-autocast" if use_bf16 else str(next(model.parameters()).dtype).removeprefix("torch.")
    return _train_stats(model, extra_params, losses, counts, time.perf_counter() - t0, precision)
