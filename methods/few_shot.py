"""Few-shot: k demonstrations drawn at random from the training pool (seeded)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from boxbench.core.backend import Access, BlackView
from boxbench.core.method import Checked, Method, PromptArtifact
from boxbench.core.task import Example, Task


@dataclass
class FewShotParams(Checked):
    k: int = field(default=4, metadata={"help": "number of demonstrations", "min": 1})
    balanced: bool = field(default=False, metadata={"help": "draw k/num_labels per label instead of uniformly"})


class FewShot(Method[BlackView, FewShotParams]):
    name = "few_shot"
    access = Access.black
    Params = FewShotParams
    description = "k random training demonstrations (seeded)"
    family = "baseline"

    def tune(self, view: BlackView, *, task: Task, train: list[Example], dev: list[Example], params: FewShotParams, seed: int) -> PromptArtifact:
        rng = random.Random(seed)
        if params.balanced:
            per = max(1, params.k // task.num_labels)
            demos = [d for y in range(task.num_labels) for d in rng.sample([e for e in train if e.label == y], per)]
            rng.shuffle(demos)
        else:
            demos = rng.sample(train, min(params.k, len(train)))
        return PromptArtifact(task.instruction, demos)
