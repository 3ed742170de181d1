"""A classification task (label names, verbalizer, prompt template) and one labelled example."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, ClassVar

from boxbench.core.errors import UserError


@dataclass(frozen=True)
class Example:
    text: str
    label: int


# Default templates and label words were chosen on 300 examples drawn from each TRAIN split (never
# the test set), zero-shot with SmolLM2-135M-Instruct at grey access: SST-2 "Review: ...\nThe
# sentiment of this review is" 0.793 vs 0.767 for "...Sentiment (positive or negative):"; AG News
# "...\nThis article is about" + politics/sports/business/technology 0.823 vs 0.317 for
# "Article: ...\nTopic (World, Sports, Business or Technology):" + the class names.


@dataclass(frozen=True)
class Task:
    """A classification task: label names, the verbalizer, and the default prompt template.

    ``template`` has one ``{text}`` slot and ends right where the label word follows; label words
    carry their leading space (" positive"), so ``template.format(text=x) + label_words[y]`` is a
    complete demonstration.
    """

    name: str
    label_names: tuple[str, ...]
    label_words: tuple[str, ...]
    template: str
    instruction: str = ""
    # Said before every prompt of the generate (black) protocol only, so that a text-only model knows
    # the answer format; the logprob protocol reads the label words and needs no such line.
    answer_hint: str = ""
    hub: str = ""

    OVERRIDES: ClassVar[tuple[str, ...]] = ("template", "label_words", "instruction", "answer_hint")

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    def with_overrides(self, **overrides: Any) -> "Task":
        """A copy with the suite's overrides (``OVERRIDES``: verbalizer, template, instruction, hint)."""
        given = {k: v for k, v in overrides.items() if k in self.OVERRIDES and v is not None}
        if "label_words" in given:
            given["label_words"] = tuple(given["label_words"])
        new = replace(self, **given)
        if len(new.label_words) != new.num_labels:
            raise UserError(f"label_words: {self.name} has {self.num_labels} labels, got {len(new.label_words)} words")
        if "{text}" not in new.template:
            raise UserError("template: must contain the {text} slot")
        return new
