"""Which differences are real: intervals for accuracy and paired tests between methods.

* ``wilson`` — the 95 % Wilson score interval of one cell's accuracy over its n test examples.
* ``seed_interval`` — the interval of a mean over seeds that accounts for both sources of error:
  the seeds' spread (tuning randomness, ``s² / k``) and the test sample (every seed is scored on
  the SAME test examples, so that error does not shrink with k: ``p̄(1 − p̄) / n``); normal
  approximation, ``mean ± 1.96 · sqrt(s²/k + p̄(1−p̄)/n)``.
* ``mcnemar_exact`` — McNemar's exact (binomial) test on paired per-example correctness: only the
  discordant examples count (b: A right and B wrong, c: the reverse); two-sided p =
  ``min(1, 2 · P(X ≤ min(b, c)))`` with ``X ~ Bin(b + c, 1/2)``.
* ``paired_test`` — two methods on the same test examples, each with its seeds: one seed each,
  McNemar's exact test; otherwise each example's correctness is averaged over each side's seeds
  and the per-example gap is z-tested, so every seed counts and each example counts once (pooling
  discordant pairs over k seeds would count every example k times and overstate significance),
  and a deterministic baseline run once is paired with every seed of the tuned method. Both tests
  are conditional on the seeds run: how far another seed would land is in ``seed_interval``.
* ``holm`` — Holm–Bonferroni step-down adjustment of a family of p-values (family-wise error 5 %).
* ``detectable_difference`` — the accuracy difference a paired (McNemar) comparison of n examples
  detects with 80 % power at α = 0.05, given the share of discordant examples.
* ``gap_difference`` — whether a paired accuracy gap (A − B per example) is larger on one test set
  than on another (independent sets): a two-sided z-test.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Sequence

from boxbench.benchmarks.evaluate import Z95, wilson  # the record's own interval is computed with the record

__all__ = ["Z95", "Z_POWER80", "wilson", "seed_interval", "binom_cdf_half", "mcnemar_exact", "discordant", "holm", "detectable_difference",
           "per_example_gap", "gap_difference", "normal_two_sided", "Paired", "paired_test"]


def seed_interval(accuracies: Sequence[float], n: int, z: float = Z95) -> tuple[float, float, float]:
    """(mean, low, high) over seeds, with the seeds' spread and the test sample's error (see module doc)."""
    k = len(accuracies)
    if k == 0:
        raise ValueError("no accuracies")
    mean = statistics.fmean(accuracies)
    between = statistics.variance(accuracies) / k if k > 1 else 0.0
    within = mean * (1 - mean) / n if n > 0 else 0.0
    half = z * math.sqrt(between + within)
    return mean, max(0.0, mean - half), min(1.0, mean + half)


def binom_cdf_half(k: int, n: int) -> float:
    """P(X ≤ k) for X ~ Bin(n, 1/2), exactly (integer arithmetic, no overflow)."""
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    return sum(math.comb(n, i) for i in range(k + 1)) / 2**n


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts b and c (1.0 when there are none)."""
    if b + c == 0:
        return 1.0
    return min(1.0, 2 * binom_cdf_half(min(b, c), b + c))


def discordant(a: Sequence[bool], b: Sequence[bool]) -> tuple[int, int]:
    """(A right and B wrong, A wrong and B right) over paired examples."""
    if len(a) != len(b):
        raise ValueError("paired comparisons need the same examples")
    return sum(1 for x, y in zip(a, b) if x and not y), sum(1 for x, y in zip(a, b) if y and not x)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values, in the input order (monotone, capped at 1)."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


Z_POWER80 = 0.8416  # the standard normal's 80th percentile: 80 % power


def detectable_difference(n: int, discordant_share: float, z_power: float = Z_POWER80) -> float:
    """The difference in accuracy (a share) that a McNemar test on ``n`` paired examples detects
    with 80 % power at α = 0.05 (two-sided), where ``discordant_share`` of the pairs disagree
    (Connor, 1987, normal approximation): (z_α/2 + z_β) · sqrt(ψ / n) with ψ the discordant share."""
    if n <= 0:
        return 1.0
    return min(1.0, (Z95 + z_power) * math.sqrt(max(discordant_share, 1.0 / n) / n))


def _diffs(a: Sequence[Sequence[bool]], b: Sequence[Sequence[bool]]) -> list[float]:
    """A − B per test example, each side's correctness averaged over its seeds."""
    return [statistics.fmean(s[i] for s in a) - statistics.fmean(s[i] for s in b) for i in range(len(a[0]))]


def per_example_gap(a: Sequence[Sequence[bool]], b: Sequence[Sequence[bool]]) -> tuple[float, float]:
    """(mean, variance of the mean) of A − B per test example, each side averaged over its seeds
    (every seed scored on the same examples): the paired gap between two methods on one test set."""
    diffs = _diffs(a, b)
    n = len(diffs)
    return statistics.fmean(diffs), (statistics.variance(diffs) / n if n > 1 else 0.0)


@dataclass
class Paired:
    """The outcome of ``paired_test``."""

    delta: float  # mean accuracy A − B, each side averaged over its seeds
    better: int  # examples A gets right more often than B (over their seeds); one seed each: McNemar's b
    worse: int  # the reverse; McNemar's c
    p: float  # two-sided
    detectable: float  # the difference this design finds with 80 % power at α 0.05
    test: str  # "McNemar" (one seed each) or "z" (per-example gap averaged over seeds)


def paired_test(a: Sequence[Sequence[bool]], b: Sequence[Sequence[bool]]) -> Paired:
    """A against B on the same n test examples; ``a`` and ``b`` hold one row of per-example
    correctness per seed (see the module doc for which test runs)."""
    n = len(a[0])
    if any(len(s) != n for s in [*a, *b]):
        raise ValueError("paired comparisons need the same examples")
    diffs = _diffs(a, b)
    better, worse = sum(d > 0 for d in diffs), sum(d < 0 for d in diffs)
    delta = statistics.fmean(diffs)
    if len(a) == 1 and len(b) == 1:
        return Paired(delta, better, worse, mcnemar_exact(better, worse), detectable_difference(n, (better + worse) / n), "McNemar")
    se = math.sqrt(statistics.variance(diffs) / n) if n > 1 else 0.0
    p = normal_two_sided(delta / se) if se > 0 else float(delta == 0)
    return Paired(delta, better, worse, p, (Z95 + Z_POWER80) * se if se > 0 else detectable_difference(n, 0.0), "z")


def normal_two_sided(z: float) -> float:
    """Two-sided p of a standard-normal statistic."""
    return math.erfc(abs(z) / math.sqrt(2))


def gap_difference(gap_x: tuple[float, float], gap_y: tuple[float, float]) -> float:
    """Two-sided p that the gap on test set X differs from the gap on Y (``per_example_gap`` of
    each; the sets are independent, so the variances add)."""
    se = math.sqrt(gap_x[1] + gap_y[1])
    return 1.0 if se == 0 else normal_two_sided((gap_x[0] - gap_y[0]) / se)
