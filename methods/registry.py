"""The method registry: built-ins (lazy), ``@register_method``, entry points ``boxbench.methods``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TypeVar

from boxbench.core.method import ARTIFACT_KINDS, Artifact, Method
from boxbench.core.registry import Registry

METHODS: Registry[type[Method]] = Registry(
    "method",
    {
        "zero_shot": "boxbench.methods.zero_shot:ZeroShot",
        "few_shot": "boxbench.methods.few_shot:FewShot",
        "random_instruction": "boxbench.methods.random_instruction:RandomInstruction",
        "lora": "boxbench.methods.lora:LoRA",
        "prompt_tuning": "boxbench.methods.prompt_tuning:PromptTuning",
        "full_finetune": "boxbench.methods.full_finetune:FullFinetune",
        "ape": "boxbench.methods.ape:Ape",
        "kate": "boxbench.methods.kate:Kate",
        "usp": "boxbench.methods.usp:Usp",
        "proxy_tuning": "boxbench.methods.proxy_tuning:ProxyTuning",
        "pez": "boxbench.methods.pez:Pez",
        "adalora": "boxbench.methods.adapters:AdaLora",
        "ia3": "boxbench.methods.adapters:IA3",
        "loha": "boxbench.methods.adapters:LoHa",
        "lokr": "boxbench.methods.adapters:LoKr",
        "prefix_tuning": "boxbench.methods.adapters:PrefixTuning",
        "bbt": "boxbench.methods.bbt:Bbt",
        "evoprompt": "boxbench.methods.evoprompt:EvoPrompt",
        "protegi": "boxbench.methods.protegi:Protegi",
        "dspy_zero_shot": "boxbench.methods.dspy_optimisers:DspyZeroShot",
        "dspy_bootstrap": "boxbench.methods.dspy_optimisers:DspyBootstrap",
        "dspy_random_search": "boxbench.methods.dspy_optimisers:DspyRandomSearch",
        "dspy_mipro": "boxbench.methods.dspy_optimisers:DspyMipro",
        "dspy_copro": "boxbench.methods.dspy_optimisers:DspyCopro",
    },
    base=Method,
)


M = TypeVar("M", bound=type[Method])


def register_method(cls: M) -> M:
    """Class decorator: make a Method subclass available by its ``name``."""
    METHODS.register(cls.name)(cls)
    return cls


def get_method(name: str) -> type[Method]:
    return METHODS.get(name)


def load_artifact(folder: Path) -> Artifact:
    """``Artifact.load``, with every method module imported first when the artifact's kind is defined
    by one not imported yet (a proxy's expert, an artifact saved by another run)."""
    kind = json.loads((Path(folder) / "artifact.json").read_text()).get("kind")
    if kind not in ARTIFACT_KINDS:
        dict(METHODS.items())
    return Artifact.load(folder)
