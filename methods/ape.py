"""APE, Automatic Prompt Engineer (Zhou et al., ICLR 2023), black-box.

1. Proposal (forward generation): ``num_subsamples`` draws of ``demos_per_proposal`` training
   pairs, each shown to the proposer (``proposer``: another model, as the paper's strong LLM; empty:
   the tuned model itself, see methods/proposer.py) in the repository's "I gave a friend a instruction.
   Based on the instruction they produced the following input-output pairs" template (``template:
   paper``: the paper's "... and five inputs" wording, boxbench's earlier default);
   ``prompts_per_subsample`` sampled completions (temperature 0.9, top-p 0.9, at most 50 tokens: the
   reference's ``configs/default.yaml``) each, de-duplicated.
2. Scoring: every candidate instruction is evaluated on a dev subsample of ``eval_size`` examples
   drawn afresh for each candidate, as the reference's evaluators do (``eval_sampling: shared``: one
   subsample for all, boxbench's earlier default), by the shared scorer at black access (generate +
   parse: execution accuracy, as the reference does for models without echo/logprobs).
3. Iterative Monte-Carlo search (from the paper; not in the reference repo): for ``rounds`` rounds,
   the ``keep`` best candidates are paraphrased ``resamples_per_candidate`` times with the paper's
   "Generate a variation of the following instruction ..." template; the new ones are scored the same way.
The winner (best dev accuracy; ties: the earlier candidate) is the artifact's instruction; the
whole candidate history with scores is kept in the artifact. Differences from the reference, and
why: docs/fidelity.md.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Any

from boxbench.core.backend import Access, BlackView, GenerationConfig
from boxbench.core.errors import UserError
from boxbench.core.method import Checked, Method, PromptArtifact
from boxbench.core.task import Example, Task
from boxbench.methods.proposer import HELP, Proposer, check_proposer, instruction_accuracies

FORWARD_TEMPLATES = {
    # the repository's (experiments/run_instruction_induction.py, "a instruction" as written there)
    "repository": ("I gave a friend a instruction. Based on the instruction they produced the following input-output "
                   "pairs:\n\n{pairs}\n\nThe instruction was to"),
    # the paper's wording (its Figure 3 / Table 5), boxbench's earlier default
    "paper": ("I gave a friend an instruction and {n} inputs. The friend read the instruction and wrote an output "
              "for every one of the inputs. Here are the input-output pairs:\n\n{pairs}\n\nThe instruction was to"),
}
NUMBERS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
SAMPLINGS = ("per_prompt", "shared")


def forward_query(task: Task, demos: list[Example], template: str = "repository") -> str:
    """APE's forward-generation query: the demonstrations as "Input: …\nOutput: …" pairs (the
    repository's demos template, joined by blank lines) in ``FORWARD_TEMPLATES[template]``."""
    pairs = "\n\n".join(f"Input: {d.text}\nOutput: {task.label_words[d.label].strip()}" for d in demos)
    n = NUMBERS[len(demos)] if len(demos) < len(NUMBERS) else str(len(demos))
    return FORWARD_TEMPLATES[template].format(n=n, pairs=pairs)
RESAMPLE = "Generate a variation of the following instruction while keeping the semantic meaning.\n\nInput: {instruction}\n\nOutput:"


@dataclass
class ApeParams(Checked):
    num_subsamples: int = field(default=5, metadata={"help": "demonstration draws for proposals (reference: 5; experiments 3)", "min": 1})
    prompts_per_subsample: int = field(default=50, metadata={"help": "sampled instructions per draw (reference: 50; experiments 30)", "min": 1})
    demos_per_proposal: int = field(default=5, metadata={"help": "input-output pairs shown per proposal", "min": 1})
    eval_size: int = field(default=50, metadata={"help": "dev examples each candidate is scored on (reference: 50; experiments 20)", "min": 1})
    rounds: int = field(default=1, metadata={"help": "iterative Monte-Carlo resampling rounds (0: proposal + scoring only)", "min": 0})
    keep: int = field(default=5, metadata={"help": "best candidates paraphrased in each round", "min": 1})
    resamples_per_candidate: int = field(default=2, metadata={"help": "paraphrases per kept candidate per round", "min": 1})
    temperature: float = field(default=0.9, metadata={"help": "sampling temperature of proposals and paraphrases (reference: 0.9)", "min": 0})
    top_p: float = field(default=0.9, metadata={"help": "nucleus sampling of proposals and paraphrases (reference: 0.9; 1.0 was boxbench's earlier value)", "gt": 0, "max": 1})
    max_instruction_tokens: int = field(default=50, metadata={"help": "generation cap of one instruction", "min": 1})
    max_new_tokens: int = field(default=8, metadata={"help": "answer length when a candidate is scored", "min": 1})
    proposer: Any = field(default="", metadata={"help": HELP})
    template: str = field(default="repository", metadata={"help": "forward-generation wording: repository (reference code) | paper", "choices": tuple(FORWARD_TEMPLATES)})
    eval_sampling: str = field(default="per_prompt", metadata={"help": "per_prompt (reference: a fresh dev subsample per candidate) | shared (one subsample for all)", "choices": SAMPLINGS})



def clean_instruction(text: str) -> str:
    """The first line of a completion, without a repeated lead-in, leading punctuation (the forward
    template ends "The instruction was to", and a small proposer answers ": ..."), quotes or a trailing
    fragment; "" — no candidate — when no word is left (measured: ":" won every APE and EvoPrompt cell
    of fidelity_defaults.yaml on SST-2 before this, an empty instruction in effect)."""
    text = text.strip().split("\n")[0].strip().strip('"').strip()
    text = re.sub(r"^(the instruction was to|instruction:|output:)\s*", "", text, flags=re.I).strip()
    text = text.lstrip(":;,.-–—*•> \t").strip().strip('"').strip()
    if not re.search(r"[^\W\d_]{2,}", text):  # no word of two letters or more
        return ""
    return text[:1].upper() + text[1:]


class Ape(Method[BlackView, ApeParams]):
    name = "ape"
    access = Access.black
    Params = ApeParams
    description = "LLM-proposed instructions, scored on dev by execution accuracy, iteratively resampled"
    family = "multi-pass"

    @classmethod
    def check(cls, params: ApeParams, model: Any, where: str) -> None:
        check_proposer(params.proposer, where)

    def tune(self, view: BlackView, *, task: Task, train: list[Example], dev: list[Example], params: ApeParams, seed: int) -> PromptArtifact:
        rng = random.Random(seed)
        if not dev:
            raise UserError("ape: needs a dev set to score candidates on; set limits.dev above 0")
        proposer = Proposer(params.proposer, view)  # writes the instructions; ``model`` only answers
        size = min(params.eval_size, len(dev))
        eval_rng = random.Random(seed + 1)
        eval_set = rng.sample(dev, size)  # dev and train are disjoint
        history: list[dict[str, Any]] = []
        sample = GenerationConfig(max_new_tokens=params.max_instruction_tokens, temperature=params.temperature, top_p=params.top_p,
                                  stop=["\n"], seed=seed)

        def score(candidates: list[str], origin: str, round_no: int) -> None:
            seen = {h["instruction"] for h in history}
            fresh = [c for c in dict.fromkeys(candidates) if c and c not in seen]
            samples = ([eval_rng.sample(dev, size) for _ in fresh] if params.eval_sampling == "per_prompt"
                       else [eval_set] * len(fresh))
            for cand, acc in zip(fresh, instruction_accuracies(view, task, fresh, samples, params.max_new_tokens)):
                history.append({"instruction": cand, "dev_accuracy": acc, "origin": origin, "round": round_no})

        proposals: list[str] = []
        for i in range(params.num_subsamples):
            demos = rng.sample(train, min(params.demos_per_proposal, len(train)))
            query = forward_query(task, demos, params.template)
            outs = proposer.generate([query] * params.prompts_per_subsample, _reseed(sample, seed * 1000 + i))
            proposals += [clean_instruction(o) for o in outs]
        score(proposals, "proposal", 0)
        if not history:
            raise UserError("ape: the model proposed no usable instruction (every completion was empty)")
        for r in range(1, params.rounds + 1):
            best = sorted(history, key=lambda h: -h["dev_accuracy"])[: params.keep]
            queries = [RESAMPLE.format(instruction=h["instruction"]) for h in best for _ in range(params.resamples_per_candidate)]
            outs = proposer.generate(queries, _reseed(sample, seed * 1000 + 100 + r))
            score([clean_instruction(o) for o in outs], "resample", r)
        winner = max(history, key=lambda h: h["dev_accuracy"])  # max keeps the first of equals
        art = ApeArtifact(winner["instruction"], history=history)
        art.stats.update(candidates_scored=len(history), winner_dev_accuracy=winner["dev_accuracy"], eval_size=len(eval_set),
                         **proposer.stats())
        return art


def _reseed(config: GenerationConfig, seed: int) -> GenerationConfig:
    from dataclasses import replace

    return replace(config, seed=seed)


class ApeArtifact(PromptArtifact):
    """The winning instruction, plus every candidate with its dev score (``history``)."""

    kind = "ape_prompt"

    def __init__(self, instruction: str = "", demos: Any = (), history: list[dict[str, Any]] | None = None) -> None:
        super().__init__(instruction, demos)
        self.history = history or []

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "history": self.history}

    @classmethod
    def from_json(cls, data: dict[str, Any], folder: Any) -> "ApeArtifact":
        base = PromptArtifact.from_json(data, folder)
        return cls(base.instruction, base.demos, data.get("history", []))
