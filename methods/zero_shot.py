"""Zero-shot: the task template alone (the seed studies' "Empty" row)."""

from __future__ import annotations


from boxbench.core.backend import Access, BlackView
from boxbench.core.method import Method, NoParams, PromptArtifact
from boxbench.core.task import Example, Task


class ZeroShot(Method[BlackView, NoParams]):
    name = "zero_shot"
    access = Access.black
    description = "task template only, no tuning"
    family = "baseline"

    def tune(self, view: BlackView, *, task: Task, train: list[Example], dev: list[Example], params: NoParams, seed: int) -> PromptArtifact:
        return PromptArtifact(task.instruction)
