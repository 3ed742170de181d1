"""Random instruction: a control for instruction search. Words drawn at random (seeded) from the
training texts stand where a searched instruction would; a search that beats this has found more
than "some text before the input" (the PEZ block's random-prompt row asks the same of soft prompts)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from boxbench.core.backend import Access, BlackView
from boxbench.core.errors import UserError
from boxbench.core.method import Checked, Method, PromptArtifact
from boxbench.core.task import Example, Task


@dataclass
class RandomInstructionParams(Checked):
    words: int = field(default=30, metadata={"help": "words in the instruction, each drawn uniformly from the training texts' words", "min": 1})


class RandomInstruction(Method[BlackView, RandomInstructionParams]):
    name = "random_instruction"
    access = Access.black
    Params = RandomInstructionParams
    description = "control: an instruction of random training-text words in place of the task's (seeded, no model calls)"
    family = "baseline"

    def tune(self, view: BlackView, *, task: Task, train: list[Example], dev: list[Example], params: RandomInstructionParams,
             seed: int) -> PromptArtifact:
        pool = [w for e in train for w in e.text.split()]
        if not pool:
            raise UserError("random_instruction: the training split has no words to draw from; set limits.train above 0")
        rng = random.Random(seed)
        return PromptArtifact(" ".join(rng.choice(pool) for _ in range(params.words)))
