"""EvoPrompt, genetic-algorithm variant (Guo et al., ICLR 2024), black-box.

A population of instructions evolves by LLM-driven crossover and mutation, selected by dev accuracy
through the shared black-box scorer (generate + parse), exactly as APE scores its candidates:

1. Initial population: ``init_size`` instructions proposed from training demonstrations (APE's
   forward template, ``methods/ape.py``: the reference's initial prompts are its manual prompts plus
   APE's), plus the task's own instruction (the manual prompt) if it has one, each scored on the dev
   sample. As the reference's ``para_topk`` (``evoluter.py`` 170-182, ``utils.py`` ``k_init_pop``), the
   best ``popsize // 2`` are kept and the proposer writes one paraphrase of each (the reference's
   "Generate a variation ..." prompt, ``llm_client.py`` ``paraphrase``), which is scored too: the
   population is the kept prompts and their paraphrases (``init_population: topk`` — the best
   ``popsize`` of the scored list, no paraphrases — is boxbench's earlier rule).
2. For ``iterations`` rounds: ``popsize`` children. As the reference's ``sel_mode wheel``
   (``evoluter.py`` 379-395), a parent pool of ``popsize`` is drawn once per generation by roulette
   wheel with replacement (probability ∝ dev accuracy) and each child's two parents are two places of
   that pool, so a prompt can be crossed with itself (``parents: distinct`` — two different
   prompts, each drawn by the wheel — is boxbench's earlier rule). Each child is written by the proposer from the
   reference's ONE-SHOT prompt (``data/template_ga.py``, ``templates_2["cls"]``: a worked crossover
   and mutation first, then the two parents; ``template: zero_shot`` is boxbench's earlier prompt,
   the paper's Figure 1 without the example) — cross the two parents over, mutate the result, and
   give the final instruction between <prompt> and </prompt> — sampled at temperature 0.5 and scored
   the same way; the best ``popsize`` of parents and children survive (``ga_mode topk``).
3. The best instruction found on dev (ties: the earlier) is the artifact's, with the whole history.
   (The reference's scripts test the top 3 and report the best on test: optimistic; best-on-dev is
   the clean protocol.)

Defaults: the reference's classification runs (github.com/beeevita/EvoPrompt, ``evoluter.py``,
``scripts/cls/run_ga_*.sh``): population 10, 10 iterations, a 200-example dev file (its
``sample_num`` 500 is for generation tasks), roulette-wheel selection, top-k survival, temperature
0.5. A child may run to ``max_instruction_tokens`` (96; the reference allows 1000: see
docs/fidelity.md). The proposer (``proposer``) writes the instructions, the tuned model only answers
(methods/proposer.py); black access only. Differences from the reference, and why: docs/fidelity.md.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field, replace
from typing import Any

from boxbench.core.backend import Access, BlackView, GenerationConfig
from boxbench.core.errors import UserError
from boxbench.core.method import Checked, Method
from boxbench.core.task import Example, Task
from boxbench.methods.ape import ApeArtifact, clean_instruction, forward_query
from boxbench.methods.proposer import HELP, Proposer, check_proposer, instruction_accuracies

LEAD = re.compile(r"^\s*(\d\.\s*)?((final|mutated|mutation|crossover|new)\s+prompt\s*:)?\s*", re.I)
EVOLVE_ONE_SHOT = ("Please follow the instruction step-by-step to generate a better prompt.\n"
                   "1. Crossover the following prompts and generate a new prompt:\n"
                   "Prompt 1: Rewrite the input text into simpler text.\n"
                   "Prompt 2: Rewrite my complex sentence in simpler terms, but keep the meaning.\n"
                   "2. Mutate the prompt generated in Step 1 and generate a final prompt bracketed with <prompt> and </prompt>.\n\n"
                   "1. Crossover Prompt: Rewrite the complex text into simpler text while keeping its meaning.\n"
                   "2. <prompt>Transform the provided text into simpler language, maintaining its essence.</prompt>\n\n"
                   "Please follow the instruction step-by-step to generate a better prompt.\n"
                   "1. Crossover the following prompts and generate a new prompt:\n"
                   "Prompt 1: {a}\nPrompt 2: {b}\n"
                   "2. Mutate the prompt generated in Step 1 and generate a final prompt bracketed with <prompt> and </prompt>.\n\n"
                   "1. ")
"""The reference's GA prompt for classification (``data/template_ga.py``, ``templates_2["cls"]``): one
worked example (its wording, its simplification example), then the two parents."""
EVOLVE = ("Please follow the instruction step-by-step to generate a better prompt.\n"
          "1. Cross over the following prompts and generate a new prompt:\n"
          "Prompt 1: {a}\nPrompt 2: {b}\n"
          "2. Mutate the prompt generated in Step 1 and generate a final prompt bracketed with <prompt> and </prompt>.\n\n"
          "1. Crossover Prompt:")
"""boxbench's earlier GA prompt (``template: zero_shot``): the paper's Figure 1 instruction, no example."""
TEMPLATES = {"one_shot": EVOLVE_ONE_SHOT, "zero_shot": EVOLVE}
PARAPHRASE = "Generate a variation of the following instruction while keeping the semantic meaning.\nInput:{s}\nOutput:"
"""The reference's paraphrase prompt (``llm_client.py`` ``paraphrase``), as written there (no blank lines,
unlike the APE paper's resampling template that ``methods/ape.py`` uses)."""
INIT_POPULATIONS = ("para_topk", "topk")
PARENTS = ("pool", "distinct")


@dataclass
class EvoPromptParams(Checked):
    popsize: int = field(default=10, metadata={"help": "instructions kept per generation (reference: 10)", "min": 1})
    iterations: int = field(default=10, metadata={"help": "generations of popsize children each (reference budget: 10)", "min": 0})
    init_size: int = field(default=10, metadata={"help": "instructions proposed for the initial population, the best popsize kept", "min": 1})
    demos_per_proposal: int = field(default=5, metadata={"help": "training pairs shown per initial proposal (APE's forward template)", "min": 1})
    eval_size: int = field(default=200, metadata={"help": "dev examples every candidate is scored on (reference: a 200-example dev file)", "min": 1})
    temperature: float = field(default=0.5, metadata={"help": "sampling temperature of the children (reference: 0.5)", "min": 0})
    init_temperature: float = field(default=0.9, metadata={"help": "sampling temperature of the initial APE-style proposals (APE's 0.9)", "min": 0})
    template: str = field(default="one_shot", metadata={"help": "one_shot (reference: a worked example first) | zero_shot (no example)", "choices": tuple(TEMPLATES)})
    max_instruction_tokens: int = field(default=96, metadata={"help": "generation cap of one child, which writes both steps "
                                                                  "(reference: 1000; 96 holds the one-shot format's answer at a CPU cost, docs/fidelity.md)", "min": 1})
    init_population: str = field(default="para_topk", metadata={"help": "para_topk (reference: the best popsize//2 and a paraphrase of each) | "
                                                                         "topk (the best popsize, no paraphrases)", "choices": INIT_POPULATIONS})
    paraphrase_temperature: float = field(default=1.0, metadata={"help": "sampling temperature of para_topk's paraphrases (reference: the API default, 1.0)", "min": 0})
    parents: str = field(default="pool", metadata={"help": "pool (reference: two places of a roulette pool drawn with replacement; "
                                                            "a prompt may meet itself) | distinct (two different prompts)", "choices": PARENTS})
    max_new_tokens: int = field(default=8, metadata={"help": "answer length when a candidate is scored", "min": 1})
    proposer: Any = field(default="", metadata={"help": HELP})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.popsize < 2:
            raise UserError(f"params.popsize: crossover needs at least 2 instructions, got {self.popsize}")


def final_prompt(text: str) -> str:
    """The instruction a child completion ends with: inside the last <prompt>...</prompt> (an unclosed
    tag runs to the end), else the last non-empty line, cleaned as APE cleans its proposals."""
    found = [f.strip() for f in re.findall(r"<prompt>(.*?)(?:</prompt>|$)", text, flags=re.S | re.I)]
    if found and found[-1]:
        return clean_instruction(found[-1].replace("\n", " "))
    lines = [ln for ln in re.sub(r"</?prompt>", "", text, flags=re.I).splitlines() if ln.strip()]
    return clean_instruction(LEAD.sub("", lines[-1])) if lines else ""


def roulette(rng: random.Random, scores: list[float], k: int = 2) -> list[int]:
    """``k`` distinct indices drawn with probability ∝ score (uniform when every score is 0): the
    ``parents: distinct`` rule."""
    idx = list(range(len(scores)))
    out: list[int] = []
    for _ in range(min(k, len(idx))):
        weights = [scores[i] + 1e-6 for i in idx]
        pick = rng.choices(idx, weights=weights)[0]
        out.append(pick)
        idx.remove(pick)
    return out


def parent_pairs(rng: random.Random, scores: list[float], n: int, rule: str) -> list[tuple[int, int]]:
    """``n`` pairs of parent indices. ``pool`` (the reference's ``sel_mode wheel``): ``len(scores)``
    indices drawn once by roulette wheel with replacement, then two different places of that pool
    per child — the same prompt when it was drawn twice. ``distinct``: two different prompts per child."""
    if rule == "distinct":
        return [tuple(roulette(rng, scores)) for _ in range(n)]  # type: ignore[misc]
    pool = rng.choices(range(len(scores)), weights=[s + 1e-6 for s in scores], k=len(scores))
    return [tuple(rng.sample(pool, 2)) for _ in range(n)]  # type: ignore[misc]


def first_population(scored: list[dict[str, Any]], paraphrases: list[dict[str, Any]], popsize: int) -> list[dict[str, Any]]:
    """``para_topk``'s population from the scored initial list and the paraphrases of its best
    ``popsize // 2`` (in that order): those best, then their paraphrases; where a paraphrase was
    empty or repeats a prompt (the reference asserts it never does), the next best of the scored list
    fills the place, so the population has ``popsize`` prompts whenever that many exist."""
    kept = _top(scored, popsize // 2)
    population = _unique(kept + paraphrases)
    for h in _top(scored, len(scored)):
        if len(population) >= popsize:
            break
        if h["instruction"] not in {p["instruction"] for p in population}:
            population.append(h)
    return population[:popsize]


class EvoPrompt(Method[BlackView, EvoPromptParams]):
    name = "evoprompt"
    access = Access.black
    family = "multi-pass"
    Params = EvoPromptParams
    description = "EvoPrompt (GA): instructions evolved by LLM crossover + mutation, roulette selection on dev accuracy"

    @classmethod
    def check(cls, params: EvoPromptParams, model: Any, where: str) -> None:
        check_proposer(params.proposer, where)

    def tune(self, view: BlackView, *, task: Task, train: list[Example], dev: list[Example], params: EvoPromptParams, seed: int) -> ApeArtifact:
        rng = random.Random(seed)
        if not dev:
            raise UserError("evoprompt: needs a dev set to score candidates on; set limits.dev above 0")
        if not train:
            raise UserError("evoprompt: needs training examples to propose the first instructions from; raise limits.train")
        proposer = Proposer(params.proposer, view)
        eval_set = rng.sample(dev, min(params.eval_size, len(dev)))
        sample = GenerationConfig(max_new_tokens=params.max_instruction_tokens, temperature=params.temperature, top_p=1.0,
                                  stop=[], seed=seed)
        history: list[dict[str, Any]] = []

        def scored(candidates: list[str], origin: str, generation: int, parents: list[list[str]] | None = None) -> list[dict[str, Any]]:
            known = {h["instruction"]: h for h in history}  # a child equal to an earlier instruction: its score is known
            fresh = [c for c in dict.fromkeys(candidates) if c and c not in known]
            for cand, acc in zip(fresh, instruction_accuracies(view, task, fresh, eval_set, params.max_new_tokens)):
                j = candidates.index(cand)
                known[cand] = {"instruction": cand, "dev_accuracy": acc, "origin": origin, "generation": generation,
                               **({"parents": parents[j]} if parents else {})}
                history.append(known[cand])
            return [known[c] for c in candidates if c]

        queries = []
        for _ in range(params.init_size):
            demos = rng.sample(train, min(params.demos_per_proposal, len(train)))
            queries.append(forward_query(task, demos))
        outs = proposer.generate(queries, replace(sample, max_new_tokens=50, stop=["\n"], temperature=params.init_temperature))
        initial = ([task.instruction] if task.instruction.strip() else []) + [clean_instruction(o) for o in outs]
        ranked = scored(list(dict.fromkeys(initial)), "initial", 0)
        if params.init_population == "para_topk":
            kept = _top(ranked, params.popsize // 2)
            outs = proposer.generate([PARAPHRASE.format(s=h["instruction"]) for h in kept],
                                     replace(sample, temperature=params.paraphrase_temperature, seed=seed * 1000 + 999))
            population = first_population(ranked, scored([clean_instruction(o) for o in outs], "paraphrase", 0), params.popsize)
        else:
            population = _top(ranked, params.popsize)
        if len(population) < 2:
            raise UserError("evoprompt: fewer than 2 usable initial instructions (the proposer's completions were empty)")
        start, self_crossed = [h["instruction"] for h in population], 0
        for g in range(1, params.iterations + 1):
            pairs_of = [[population[i]["instruction"], population[j]["instruction"]]
                        for i, j in parent_pairs(rng, [h["dev_accuracy"] for h in population], params.popsize, params.parents)]
            self_crossed += sum(a == b for a, b in pairs_of)
            outs = proposer.generate([TEMPLATES[params.template].format(a=a, b=b) for a, b in pairs_of],
                                     replace(sample, seed=seed * 1000 + g))
            children = scored([final_prompt(o) for o in outs], "child", g, pairs_of)
            population = _top(_unique(population + children), params.popsize)
        winner = max(history, key=lambda h: h["dev_accuracy"])  # max keeps the first of equals
        art = ApeArtifact(winner["instruction"], history=history)
        art.stats.update(candidates_scored=len(history), winner_dev_accuracy=winner["dev_accuracy"], eval_size=len(eval_set),
                         generations=params.iterations, initial_population=start, self_crossings=self_crossed,
                         final_population=[h["instruction"] for h in population],
                         **proposer.stats())
        return art


def _unique(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return list({h["instruction"]: h for h in items}.values())


def _top(items: list[dict[str, Any]], k: int) -> list[dict[str, Any]]:
    """The ``k`` best by dev accuracy (stable: earlier first among equals)."""
    return sorted(items, key=lambda h: -h["dev_accuracy"])[:k]
