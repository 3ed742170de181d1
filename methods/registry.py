"""The method registry: built-ins (lazy), ``@register_method``, entry points ``boxbench.methods``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from boxbench.core.method import ARTIFACT_KINDS, Artifact
from boxbench.core.registry import Registry

METHODS: Registry[Any] = Registry(
    "method",
    {
        "zero_shot": "boxbench.methods.zero_shot:ZeroShot",
        "few_shot": "boxbench.methods.few_shot:FewShot",
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
    },
)


def register_method(cls: Any) -> Any:
    """Class decorator: make a Method subclass available by its ``name``."""
    return METHODS.register(cls.name)(cls)


def get_method(name: str) -> Any:
    return METHODS.get(name)


def load_artifact(folder: Path) -> Artifact:
    """``Artifact.load``, with every method module imported first when the artifact's kind is defined
    by one not imported yet (a proxy's expert, an artifact saved by another run)."""
    kind = json.loads((Path(folder) / "artifact.json").read_text()).get("kind")
    if kind not in ARTIFACT_KINDS:
        dict(METHODS.items())
    return Artifact.load(folder)
