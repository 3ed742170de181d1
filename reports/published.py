"""Published figures shown beside boxbench's own, labelled with their model and source.

The access-class survey's Table 1 (accuracy %, Llama-2-13B; Proxy-Tuning: a Llama-2-7B expert
steering 13B) and Table 2 (SST-2 cost of one run: peak accelerator memory and wall time), as
quoted in issue 13. A survey.yaml run on a GPU reads side by side with them; on the CPU suites they
are context, not a target (other model, other budgets).
"""

from __future__ import annotations

SOURCE = "survey (Llama-2-13B)"

ACCURACY: dict[str, dict[str, float]] = {  # method -> dataset -> accuracy %
    "lora": {"sst2": 96.8, "agnews": 94.0},
    "ape": {"sst2": 95.1, "agnews": 75.2},
    "kate": {"sst2": 89.1, "agnews": 81.4},
    "usp": {"sst2": 95.0, "agnews": 71.0},
    "proxy_tuning": {"sst2": 95.4, "agnews": 93.2},
}

COST_SST2: dict[str, tuple[int, str]] = {  # method -> (peak memory MB, wall time) on SST-2
    "lora": (83_968, "7 h 20 min"),
    "ape": (55_790, "40 min"),
    "kate": (60_650, "1 h 30 min"),
    "usp": (50_380, "25 min"),
    "proxy_tuning": (50_802, "2 h 50 min"),
}


def accuracy(method: str, dataset: str) -> float | None:
    return ACCURACY.get(method, {}).get(dataset)


def cost(method: str, dataset: str) -> str | None:
    """'83,968 MB · 7 h 20 min' for a method with a published SST-2 cost, else None."""
    if dataset != "sst2" or method not in COST_SST2:
        return None
    mb, wall = COST_SST2[method]
    return f"{mb:,} MB · {wall}"


ORDERINGS = (("white", "grey"), ("grey", "black"), ("white", "black"))
"""The survey's ordering of the access classes: the best method of the first class beats the best of
the second, on every dataset (its Table 1)."""

GAP_LARGER_ON = ("agnews", "sst2")
"""The survey's reading of Table 1: black-box methods fall further behind (best white − best black)
on AG News (4 topics) than on SST-2 (2 sentiments)."""

INSTRUCTION_OPTIMISERS = ("ape", "evoprompt", "protegi", "dspy_copro", "dspy_mipro")

METHOD_CLAIMS: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("optimised instructions ≥ KATE's chosen demonstrations", INSTRUCTION_OPTIMISERS, ("kate",)),
    ("optimised instructions ≥ random words in their place", INSTRUCTION_OPTIMISERS, ("random_instruction",)),
    ("DSPy's optimisers ≥ DSPy's uncompiled program",
     ("dspy_bootstrap", "dspy_random_search", "dspy_copro", "dspy_mipro"), ("dspy_zero_shot",)),
)
"""Claims between groups of methods rather than access classes, each (claim, first group, second group):
the best of the first group (chosen on a calibration run's held-out rows where given, else the best
here) against the best of the second. Issue 45's question: do optimised instructions (APE, EvoPrompt,
ProTeGi, DSPy's COPRO and MIPROv2, which also picks demonstrations) buy anything over KATE's
nearest-neighbour demonstrations at this scale? And its control: does the chosen optimiser beat an
instruction of random training-text words, i.e. did the search find more than "some text before the input"?
And DSPy's own question: does compiling the program buy anything over the program uncompiled?"""
