"""ProTeGi, Prompt Optimization with Textual Gradients (Pryzant et al., EMNLP 2023), black-box.

Beam search over instructions, following the reference code (microsoft/LMOps,
``prompt_optimization/``; file and line of each default in docs/fidelity.md):

1. The beam starts from one instruction: ``initial``, else the task's own, else "Classify the text
   as one of: LABELS." (the reference starts from a hand-written prompt file's "# Task" section).
2. Expansion (``optimizers.py`` ``expand_candidates``), for each prompt of the beam: it answers a
   minibatch of ``minibatch_size`` training examples; ``n_gradients`` times, ``errors_per_gradient``
   of its errors are shown to the proposer, which gives ``gradients_per_error`` reasons ("textual
   gradients", wrapped in <START>/<END>); each reason and its errors make ``steps_per_gradient``
   edited prompts; every edit and the prompt itself get ``mc_samples_per_step`` paraphrases (Monte
   Carlo successors); at most ``max_expansion_factor`` successors per prompt are kept (a random
   sample); the beam joins its successors.
3. Selection (``evaluators.py``): the candidates are scored by the shared scorer at black access on
   training examples, by UCB bandits (``evaluator: ucb``, the paper's and the README's choice):
   ``eval_rounds`` rounds, each scoring the ``eval_prompts_per_round`` candidates with the highest
   upper bound on ``samples_per_eval`` fresh examples; or by brute force (``bf``: every candidate on
   the same ``eval_rounds × eval_prompts_per_round × samples_per_eval / candidates`` examples). The
   best ``beam_size`` by estimated accuracy stay.
After ``rounds`` rounds the beam's best is the artifact's instruction (the whole history kept).
Proposals are sampled at temperature 0.7 (the reference's ``utils.chatgpt``); the tuned model
answers greedily. The proposer (``proposer``) writes gradients, edits and paraphrases, as APE's.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass, field, replace
from typing import Any

from boxbench.core.backend import Access, BlackView, GenerationConfig
from boxbench.core.errors import UserError
from boxbench.core.evaluate import predict
from boxbench.core.method import Checked, Method, render_prompt
from boxbench.core.task import Example, Task
from boxbench.methods.ape import RESAMPLE, ApeArtifact, clean_instruction
from boxbench.methods.proposer import HELP, Proposer, check_proposer, instruction_accuracies

# optimizers.py, _get_gradients and apply_gradient (the reference strips each line's indentation)
GRADIENT = ("I'm trying to write a zero-shot classifier prompt.\n\nMy current prompt is:\n\"{prompt}\"\n\n"
            "But this prompt gets the following examples wrong:\n{errors}\n\n"
            "give {n} reasons why the prompt could have gotten these examples wrong.\nWrap each reason with <START> and <END>\n")
EDIT = ("I'm trying to write a zero-shot classifier.\n\nMy current prompt is:\n\"{prompt}\"\n\n"
        "But it gets the following examples wrong:\n{errors}\n\n"
        "Based on these examples the problem with this prompt is that {gradient}\n\n"
        "Based on the above information, I wrote {n} different improved prompts.\nEach prompt is wrapped with <START> and <END>.\n\n"
        "The {n} new prompts are:\n")
EVALUATORS = ("ucb", "ucb-e", "bf")
PARSES = ("tags", "lenient")


@dataclass
class ProtegiParams(Checked):
    rounds: int = field(default=6, metadata={"help": "beam-search rounds (reference: 6)", "min": 0})
    beam_size: int = field(default=4, metadata={"help": "prompts kept after each round (reference: 4)", "min": 1})
    minibatch_size: int = field(default=64, metadata={"help": "training examples a prompt's errors are drawn from (reference: 64)", "min": 1})
    n_gradients: int = field(default=4, metadata={"help": "error samples shown to the proposer per prompt (reference: 4)", "min": 0})
    errors_per_gradient: int = field(default=4, metadata={"help": "errors in one gradient query (reference: 4)", "min": 1})
    gradients_per_error: int = field(default=1, metadata={"help": "reasons asked for per gradient query (reference: 1)", "min": 1})
    steps_per_gradient: int = field(default=1, metadata={"help": "edited prompts asked for per reason (reference: 1)", "min": 1})
    mc_samples_per_step: int = field(default=2, metadata={"help": "paraphrases of each edit and of the prompt (reference: 2)", "min": 0})
    max_expansion_factor: int = field(default=8, metadata={"help": "successors kept per prompt, a random sample (reference: 8)", "min": 1})
    evaluator: str = field(default="ucb", metadata={"help": "candidate selection: ucb | ucb-e (bandits; the paper's) | bf (brute force)", "choices": EVALUATORS})
    eval_rounds: int = field(default=8, metadata={"help": "bandit rounds per selection (reference: 8)", "min": 1})
    eval_prompts_per_round: int = field(default=8, metadata={"help": "candidates scored per bandit round (reference: 8)", "min": 1})
    samples_per_eval: int = field(default=32, metadata={"help": "training examples per bandit pull (reference: 32)", "min": 1})
    c: float = field(default=1.0, metadata={"help": "UCB exploration weight (reference: 1.0)", "min": 0})
    temperature: float = field(default=0.7, metadata={"help": "sampling temperature of the proposer (reference: 0.7)", "min": 0})
    max_proposal_tokens: int = field(default=1024, metadata={"help": "generation cap of one proposer answer (reference: 1024)", "min": 1})
    max_new_tokens: int = field(default=8, metadata={"help": "answer length when a candidate is scored", "min": 1})
    parse: str = field(default="tags", metadata={"help": "tags: only text inside <START>...<END> counts (reference) | lenient: an "
                                                         "answer without tags counts as one item (its first line)", "choices": PARSES})
    initial: str = field(default="", metadata={"help": "the instruction the beam starts from (empty: the task's own, else 'Classify "
                                                       "the text as one of: ...')"})
    proposer: Any = field(default="", metadata={"help": HELP})


def tagged(text: str, lenient: bool = False) -> list[str]:
    """The items between <START> and <END> (the reference's ``parse_tagged_text``: an unclosed tag ends
    the list); with ``lenient``, an answer with no tagged item gives its first non-empty line instead."""
    found = [m.strip() for m in re.findall(r"<START>(.*?)<END>", text, flags=re.S)]
    if not found and lenient:
        line = clean_instruction(re.sub(r"</?(START|END)>", "", text))
        return [line] if line else []
    return [f for f in found if f]


def error_string(task: Task, errors: list[tuple[Example, int | None]]) -> str:
    """The reference's ``_sample_error_str`` for a list of (example, wrong prediction)."""
    parts = []
    for i, (ex, pred) in enumerate(errors):
        said = task.label_names[pred] if pred is not None else "(no label)"
        parts.append(f"## Example {i + 1}\nText: \"{ex.text.strip()}\"\nLabel: {task.label_names[ex.label]}\nPrediction: {said}\n\n")
    return "".join(parts).strip()


def ucb_select(rng: random.Random, counts: list[float], totals: list[float], n: int, t: int, *, c: float, mode: str) -> list[int]:
    """The reference's ``UCBBandits.choose``: random while nothing was pulled, else the ``n`` highest
    upper bounds (mean + c·sqrt(ln t / count), or + c·sqrt(c / count) for ``ucb-e``)."""
    if sum(counts) == 0:
        return rng.sample(range(len(counts)), n)
    bounds = []
    for k, s in zip(counts, totals):
        mean = s / k if k else 0.0
        bonus = math.sqrt(math.log(t) / (k + 1e-3)) if mode == "ucb" else math.sqrt(c / (k + 1e-3))
        bounds.append(mean + c * bonus)
    return sorted(range(len(bounds)), key=lambda i: -bounds[i])[:n]


class Protegi(Method[BlackView, ProtegiParams]):
    name = "protegi"
    access = Access.black
    family = "multi-pass"
    Params = ProtegiParams
    description = "ProTeGi: textual gradients from errors edit the instruction; beam search with bandit selection"

    @classmethod
    def check(cls, params: ProtegiParams, model: Any, where: str) -> None:
        check_proposer(params.proposer, where)

    def tune(self, view: BlackView, *, task: Task, train: list[Example], dev: list[Example], params: ProtegiParams, seed: int) -> ApeArtifact:
        if not train:
            raise UserError("protegi: needs training examples (minibatches and selection come from them); raise limits.train")
        rng = random.Random(seed)
        proposer = Proposer(params.proposer, view)
        sample = GenerationConfig(max_new_tokens=params.max_proposal_tokens, temperature=params.temperature, top_p=1.0, stop=[], seed=seed)
        start = params.initial.strip() or task.instruction.strip() or f"Classify the text as one of: {', '.join(task.label_names)}."
        beam = [start]
        history: list[dict[str, Any]] = [{"instruction": start, "score": None, "origin": "initial", "round": 0}]
        counts = {"gradients": 0, "edits": 0, "paraphrases": 0, "untagged": 0}
        for r in range(1, params.rounds + 1):
            minibatch = rng.sample(train, min(params.minibatch_size, len(train)))
            successors: list[str] = []
            for j, prompt in enumerate(beam):
                config = replace(sample, seed=seed * 100_000 + r * 100 + j)
                successors += self._expand(view, proposer, task, prompt, minibatch=minibatch, params=params, rng=rng, config=config,
                                           counts=counts)
            fresh = [s for s in dict.fromkeys(successors) if s not in beam]
            history += [{"instruction": s, "score": None, "origin": "successor", "round": r} for s in fresh]
            candidates = beam + fresh
            scores = self._select(view, task, candidates, train, params, rng)
            for cand, score in zip(candidates, scores):
                next(h for h in reversed(history) if h["instruction"] == cand)["score"] = score
            ranked = sorted(range(len(candidates)), key=lambda i: -scores[i])  # stable: earlier first among equals
            beam = [candidates[i] for i in ranked[: params.beam_size]]
        art = ApeArtifact(beam[0], history=history)
        art.stats.update(candidates_scored=len(history), rounds=params.rounds, final_beam=beam, **counts, **proposer.stats())
        return art

    def _expand(self, view: BlackView, proposer: Proposer, task: Task, prompt: str, *, minibatch: list[Example],
                params: ProtegiParams, rng: random.Random, config: GenerationConfig, counts: dict[str, int]) -> list[str]:
        """One prompt's successors: gradients from its minibatch errors, edits, paraphrases."""
        preds, _ = predict(view, task, [render_prompt(task, e.text, prompt) for e in minibatch], params.max_new_tokens)
        errors = [(e, p) for e, p in zip(minibatch, preds) if p != e.label]
        lenient = params.parse == "lenient"
        edits: list[str] = []
        if params.n_gradients and errors:
            shown = [error_string(task, rng.sample(errors, min(params.errors_per_gradient, len(errors)))) for _ in range(params.n_gradients)]
            outs = proposer.generate([GRADIENT.format(prompt=prompt, errors=s, n=params.gradients_per_error) for s in shown], config)
            pairs = [(g, s) for out, s in zip(outs, shown) for g in tagged(out, lenient)]
            counts["untagged"] += sum(1 for out in outs if not tagged(out))
            counts["gradients"] += len(pairs)
            if pairs:
                outs = proposer.generate([EDIT.format(prompt=prompt, errors=s, gradient=g, n=params.steps_per_gradient) for g, s in pairs],
                                         replace(config, seed=(config.seed or 0) + 1))
                edits = [e for out in outs for e in tagged(out, lenient)]
                counts["untagged"] += sum(1 for out in outs if not tagged(out))
                counts["edits"] += len(edits)
        paraphrases: list[str] = []
        if params.mc_samples_per_step:
            queries = [RESAMPLE.format(instruction=s) for s in [*edits, prompt] for _ in range(params.mc_samples_per_step)]
            paraphrases = [p for p in (clean_instruction(o) for o in proposer.generate(queries, replace(config, seed=(config.seed or 0) + 2))) if p]
            counts["paraphrases"] += len(paraphrases)
        new = list(dict.fromkeys(edits + paraphrases))
        if len(new) > params.max_expansion_factor:
            new = rng.sample(new, params.max_expansion_factor)
        return new

    def _select(self, view: BlackView, task: Task, candidates: list[str], train: list[Example], params: ProtegiParams,
                rng: random.Random) -> list[float]:
        """Each candidate's estimated accuracy on training examples (``evaluators.py``): UCB bandits or
        brute force, with the reference's budget; a single candidate is not scored (1.0)."""
        if len(candidates) == 1:
            return [1.0]
        budget = params.eval_rounds * params.eval_prompts_per_round * params.samples_per_eval
        if params.evaluator == "bf":
            exs = rng.sample(train, min(len(train), budget // len(candidates)))
            return instruction_accuracies(view, task, candidates, exs, params.max_new_tokens) if exs else [0.0] * len(candidates)
        counts, totals = [0.0] * len(candidates), [0.0] * len(candidates)
        per_round = min(params.eval_prompts_per_round, len(candidates))
        for t in range(params.eval_rounds):
            chosen = ucb_select(rng, counts, totals, per_round, t, c=params.c, mode=params.evaluator)
            exs = rng.sample(train, min(params.samples_per_eval, len(train)))
            for i, acc in zip(chosen, instruction_accuracies(view, task, [candidates[i] for i in chosen], exs, params.max_new_tokens)):
                counts[i] += len(exs)
                totals[i] += acc * len(exs)
        return [s / k if k else 0.0 for k, s in zip(counts, totals)]
