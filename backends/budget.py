"""Spend in money, and the caps that stop a method before it spends too much.

A model's price (per million tokens, input and output) comes from its spec (``price:
{input_per_mtok: 0.15, output_per_mtok: 0.6}``), else from ``PRICES`` (well-known public list
prices, each with the date it was read), else it is 0 for a server on this machine (127.0.0.1,
localhost) and unknown elsewhere. Money is counted on what the server billed (its own usage of
each fresh request); a response served from the request cache costs nothing.

The caps (``settings.max_cost`` in the price's currency, ``settings.max_tokens`` billed tokens)
hold per cell, and ``settings.suite_max_cost`` / ``suite_max_tokens`` over a whole run: the runner
gives each cell what is left. A request that would start with the cap reached raises ``CapReached``;
the cell is recorded with status ``capped``, how far it got, and what it spent.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from boxbench.core.errors import UserError

PRICES: dict[str, tuple[float, float, str]] = {
    # model: (USD per 1M input tokens, per 1M output tokens, the date the public price list was read)
    "gpt-4o-mini": (0.15, 0.60, "2024-07-18"),
    "gpt-4o": (2.50, 10.00, "2024-10-01"),
    "gpt-4.1-mini": (0.40, 1.60, "2025-04-14"),
    "gpt-4.1-nano": (0.10, 0.40, "2025-04-14"),
    "gpt-3.5-turbo-instruct": (1.50, 2.00, "2024-01-25"),
}
LOCAL_HOSTS = ("127.0.0.1", "localhost", "[::1]")


def check_price(value: Any, where: str) -> dict[str, float]:
    if not isinstance(value, dict) or set(value) - {"input_per_mtok", "output_per_mtok"} or not value:
        raise UserError(f"{where}.price: give {{input_per_mtok: X, output_per_mtok: Y}} (money per million tokens)")
    for k, v in value.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
            raise UserError(f"{where}.price.{k}: must be a non-negative number, got {v!r}")
    return {"input_per_mtok": float(value.get("input_per_mtok", 0.0)), "output_per_mtok": float(value.get("output_per_mtok", 0.0))}


def price_for(model: str, base_url: str, given: dict[str, float] | None) -> dict[str, Any] | None:
    """The price a model is billed at, with where it came from; None when unknown."""
    if given:
        return {**given, "source": "suite"}
    if model in PRICES:
        i, o, date = PRICES[model]
        return {"input_per_mtok": i, "output_per_mtok": o, "source": f"public list price, {date}"}
    if any(f"//{h}" in base_url for h in LOCAL_HOSTS):
        return {"input_per_mtok": 0.0, "output_per_mtok": 0.0, "source": "a server on this machine"}
    return None


def money(price: dict[str, Any] | None, prompt_tokens: int, completion_tokens: int) -> float | None:
    if price is None:
        return None
    return (prompt_tokens * price["input_per_mtok"] + completion_tokens * price["output_per_mtok"]) / 1e6


class CapReached(UserError):
    """A cell's spending cap was reached; the method stopped there."""


@dataclass
class Budget:
    """This cell's caps and what its fresh requests have spent so far (all API models together)."""

    max_cost: float | None = None
    max_tokens: int | None = None
    cost_setting: str = "settings.max_cost"  # which setting the cap came from (the cell's, or what the run's leaves)
    tokens_setting: str = "settings.max_tokens"
    cost: float = 0.0
    tokens: int = 0
    requests: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def check(self, who: str, price: dict[str, Any] | None) -> None:
        """Before a fresh request: a CapReached when a cap is reached (one line, naming it)."""
        if self.max_cost is not None and price is None:
            raise UserError(f"settings.max_cost: {who} has no known price; give its spec a price: {{input_per_mtok: ..., "
                            f"output_per_mtok: ...}} or drop max_cost")
        with self._lock:
            if self.max_cost is not None and self.cost >= self.max_cost:
                raise CapReached(f"cost cap reached: {self.cost:.4f} spent of {self.cost_setting} {self.max_cost:g} after "
                                 f"{self.requests} requests; raise {self.cost_setting.split('.')[1].split(' ')[0]} or lower the method's budget")
            if self.max_tokens is not None and self.tokens >= self.max_tokens:
                raise CapReached(f"token cap reached: {self.tokens} billed tokens of {self.tokens_setting} {self.max_tokens:g} after "
                                 f"{self.requests} requests; raise {self.tokens_setting.split('.')[1].split(' ')[0]} or lower the method's budget")

    @classmethod
    def capped(cls, cell_cost: float | None, cell_tokens: int | None, run_left: dict[str, float] | None = None) -> "Budget":
        """A cell's budget: its own caps (``max_cost``, ``max_tokens``) or what the run's caps leave it
        (``run_left`` from the runner: ``suite_max_cost`` / ``suite_max_tokens`` less what finished cells
        spent), whichever is lower; the message of a cap names the one that stopped it."""
        out = cls()
        left = run_left or {}
        for kind, own, setting in (("cost", cell_cost, "settings.max_cost"), ("tokens", cell_tokens, "settings.max_tokens")):
            cap, name = own, setting
            if left.get(kind) is not None and (own is None or left[kind] < own):
                cap, name = left[kind], f"settings.suite_max_{kind} (what the run has left)"
            setattr(out, f"max_{kind}", cap)
            setattr(out, f"{kind}_setting", name)
        return out

    def add(self, cost: float | None, tokens: int) -> None:
        with self._lock:
            self.cost += cost or 0.0
            self.tokens += tokens
            self.requests += 1
