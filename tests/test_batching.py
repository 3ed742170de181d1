"""The batch and prefix-tree plans as pure functions (no model): what the backend computes follows
from these plans, and the scorer tests check the numbers on the real model."""

from __future__ import annotations

import random

from boxbench.backends.batching import plan_batches, plan_prefixes


def test_batches_cover_every_row_once_longest_first_within_the_size():
    rng = random.Random(0)
    lengths = [rng.randrange(5, 200) for _ in range(50)]
    plan = plan_batches(lengths, batch_size=8, batch_cost=64)
    flat = [i for b in plan for i in b]
    assert sorted(flat) == list(range(50)) and all(1 <= len(b) <= 8 for b in plan)
    assert [lengths[i] for i in flat] == sorted(lengths, reverse=True)  # longest first: fail fast on memory


def test_batches_cut_where_padding_plus_batch_cost_is_least():
    # two long rows and six short ones: one batch of 8 pads six rows to 100 (600 wasted tokens), so
    # the plan cuts after the long rows (2 batches: 2 x 64 fixed cost < the padding saved)
    lengths = [100, 100, 10, 10, 10, 10, 10, 10]
    assert plan_batches(lengths, batch_size=8, batch_cost=64) == [[0, 1], [2, 3, 4, 5, 6, 7]]
    # with a huge per-batch cost one batch is cheapest
    assert plan_batches(lengths, batch_size=8, batch_cost=10_000) == [list(range(8))]
    assert plan_batches([], batch_size=8, batch_cost=64) == []


def test_prefix_tree_nodes_for_shared_runs_and_none_for_loners():
    instr = list(range(100, 120))  # 20 tokens two candidates share
    rows = [instr + [1, 2, 3, 7], instr + [1, 2, 3, 8], instr + [9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 1], [5, 6, 7, 8]]
    plan = plan_prefixes(rows, need_keep=[1, 1, 1, 1], min_prefix=8)
    top = plan[2]
    assert top is not None and top.ids == tuple(instr) and top.parent is None  # all three share the instruction
    assert plan[0] is plan[1] is top  # 3 more shared tokens: under min_prefix, no deeper node
    assert plan[3] is None  # shares nothing
    deeper = plan_prefixes(rows[:2], need_keep=[1, 1], min_prefix=2)
    assert deeper[0] is deeper[1] and deeper[0].ids == tuple(instr + [1, 2, 3])


def test_prefix_tree_nests_and_never_covers_a_read_position():
    a = list(range(50))
    rows = [a + [1] * 10 + [2], a + [1] * 10 + [3], a + [4] * 10 + [5], a + [4] * 10 + [6]]
    plan = plan_prefixes(rows, need_keep=[1, 1, 1, 1], min_prefix=8)
    root = plan[0].parent
    assert root is not None and root.ids == tuple(a) and plan[2].parent is root and plan[0] is plan[1] and plan[2] is plan[3]
    assert plan[0].ids == tuple(a + [1] * 10) and plan[2].ids == tuple(a + [4] * 10)
    for row, node in zip(rows, plan):  # the last position (read for the next token) stays out of every prefix
        assert len(node.ids) <= len(row) - 1 and tuple(row[: len(node.ids)]) == node.ids
    whole = plan_prefixes(rows, need_keep=[12, 12, 12, 12], min_prefix=8)
    assert all(n is not None and n.ids == tuple(a[:49]) for n in whole)  # the last 12 positions are read: a shorter prefix
