"""How a call's rows are grouped: batches by length (``plan_batches``) and the prefix tree of the
tokens rows share (``plan_prefixes``). Pure functions over token ids and lengths — no model, no
torch — so the plans are tested on their own; the backend computes what they name."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from boxbench.core.tokens import common_prefix


def plan_batches(lengths: Sequence[int], batch_size: int, batch_cost: int) -> list[list[int]]:
    """Indices grouped into batches of at most ``batch_size`` rows, longest first (fail fast on
    memory): the rows sorted by length, cut where the padded tokens plus ``batch_cost`` per batch
    are fewest (an exact dynamic programme over the cut points)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    n = len(order)
    best, cut = [0.0] + [float("inf")] * n, [0] * (n + 1)
    for j in range(1, n + 1):  # best[j]: cheapest batching of the j longest rows
        for s in range(max(0, j - batch_size), j):
            cost = best[s] + (j - s) * lengths[order[s]] + batch_cost
            if cost < best[j]:
                best[j], cut[j] = cost, s
    spans, j = [], n
    while j:
        spans.append((cut[j], j))
        j = cut[j]
    return [order[s:e] for s, e in reversed(spans)]


@dataclass(frozen=True, eq=False)
class PrefixNode:
    """A token prefix that at least two rows start with; its keys and values are computed once,
    after its parent's (a node's ids start with its parent's)."""

    ids: tuple[int, ...]
    parent: "PrefixNode | None"


def plan_prefixes(rows: Sequence[Sequence[int]], need_keep: Sequence[int], min_prefix: int) -> list[PrefixNode | None]:
    """Per row, the deepest shared prefix node it lies under, or None: a prefix tree over the rows
    (in the spirit of SGLang's RadixAttention). Rows sorted lexicographically; every run of at least
    two rows sharing ``min_prefix`` or more tokens beyond their parent's prefix gets a node. A prefix
    ends before the first position a row reads (``need_keep`` positions from its end)."""
    limit = [len(r) - k for r, k in zip(rows, need_keep)]
    order = sorted(range(len(rows)), key=lambda i: list(rows[i][: limit[i]]))
    shared = [common_prefix(rows[a][: limit[a]], rows[b][: limit[b]]) for a, b in zip(order, order[1:])]
    out: list[PrefixNode | None] = [None] * len(rows)

    def grow(lo: int, hi: int, base: int, parent: PrefixNode | None) -> None:
        # order[lo:hi] all share rows[order[lo]][:base]; shared[lo:hi-1] links its neighbours
        if hi - lo >= 2:
            n = min(shared[lo : hi - 1])
            if n - base >= min_prefix:
                parent, base = PrefixNode(tuple(rows[order[lo]][:n]), parent), n
        start = lo
        for j in range(lo, hi):  # maximal runs whose neighbours share min_prefix more tokens
            if j + 1 < hi and shared[j] - base >= min_prefix:
                continue
            if j + 1 - start >= 2 and (start, j + 1) != (lo, hi):
                grow(start, j + 1, base, parent)
            else:
                for i in order[start : j + 1]:
                    out[i] = parent
            start = j + 1

    grow(0, len(rows), 0, None)
    return out
