"""Which differences are real: intervals for accuracy and paired tests between methods.

Two questions, two answers. **Across training runs** (the default of every ▲/▼, Δ interval and
verdict): would another set of seeds — another tuning run of each method — still show the
difference? **These trained models**: are the models that were trained here different on this
population of test examples? The second treats each method's trained models as fixed and so leaves
out the seed-to-seed spread, the largest source of variation for prompt search and few-shot draws;
it is kept, clearly named, because it answers a real question ("is this checkpoint better?").

* ``wilson`` — the 95 % Wilson score interval of one cell's accuracy over its n test examples.
* ``seed_interval`` — the interval of a mean over seeds that accounts for both sources of error:
  the seeds' spread (tuning randomness, ``s² / k``) and the test sample (every seed is scored on
  the SAME test examples, so that error does not shrink with k: ``p̄(1 − p̄) / n``);
  ``mean ± t · sqrt(s²/k + p̄(1−p̄)/n)`` with t at the Welch–Satterthwaite degrees of freedom
  (``SeedEstimate``): with three seeds the seed part has 2 degrees of freedom, t₀.₉₇₅ = 4.30, not 1.96.
* ``across_seeds`` / ``seed_paired_test`` — two methods on the same n test examples, each run with
  its seeds, **across training runs**. The estimand is Δ = E_seed E_row[correct_A] − E_seed
  E_row[correct_B], the expected accuracy gap between a fresh tuning run of each method on the
  test population. The estimate Δ̂ is the mean per-seed accuracy of A minus B's. Its variance has
  three parts, each estimated from the data: the seed means (s_A²/k_A, s_B²/k_B — the sample
  variance of each side's per-seed accuracies on the shared rows, divided by its number of runs)
  and the rows (Var_i(d_i)/n, d_i the per-example gap with each side averaged over its seeds: the
  paired row-sampling error, which more seeds do not shrink). By the law of total variance
  Var(Δ̂) = E[Var(Δ̂ | rows)] + Var(E[Δ̂ | rows]) ≈ s_A²/k_A + s_B²/k_B + Var(d)/n; the binomial noise
  of each seed's row outcomes appears in both the seed and the row part, so the sum errs on the
  wide side (by O(1/n)). Δ̂ ± t·SE with Welch–Satterthwaite degrees of freedom
  ν = SE⁴ / Σ(part²/dfᵢ) (dfᵢ = k−1 for a seed part, n−1 for the rows): a t interval, because with
  3–5 seeds the seed part's variance is itself uncertain. Holm as before; P(A > B), rliable's
  probability of improvement (Agarwal et al. 2021): the chance that a run of A scores above a run
  of B, over all pairs of their seeds (ties count ½). A side whose seeds give identical predictions
  (or a deterministic baseline run once) counts as ONE run; a side run with one seed is taken as
  one run (its seed spread cannot be estimated from it: run a stochastic method with several seeds);
  with one run on each side only the rows vary and the test is McNemar's exact test. Why not a library bootstrap: with 3–5
  seeds a two-level bootstrap (scipy.stats.bootstrap, rliable's stratified bootstrap) resamples too
  few runs to see the seed part's uncertainty — measured in ``benchmarks/coverage.py``, its 95 %
  interval covers the true Δ in 88–91 % of simulated 3-seed studies, the t interval above in 94–95 %
  (``tests/test_report_stats.py`` holds it to that); scipy supplies the t distribution.
* ``mcnemar_exact`` — McNemar's exact (binomial) test on paired per-example correctness: only the
  discordant examples count (b: A right and B wrong, c: the reverse); two-sided p =
  ``min(1, 2 · P(X ≤ min(b, c)))`` with ``X ~ Bin(b + c, 1/2)``.
* ``paired_test`` — **these trained models**: two methods on the same test examples, each with its seeds: one seed each,
  McNemar's exact test; otherwise each example's correctness is averaged over each side's seeds
  and the per-example gap is z-tested, so every seed counts and each example counts once (pooling
  discordant pairs over k seeds would count every example k times and overstate significance),
  and a deterministic baseline run once is paired with every seed of the tuned method. Both tests
  are conditional on the seeds run: how far another seed would land is in ``seed_interval``.
* ``holm`` — Holm–Bonferroni step-down adjustment of a family of p-values (family-wise error 5 %).
* ``detectable_difference`` — the accuracy difference a paired (McNemar) comparison of n examples
  detects with 80 % power at α = 0.05, given the share of discordant examples.
* ``gap_difference`` — whether a paired accuracy gap (A − B per example) is larger on one test set
  than on another (independent sets): a two-sided z-test (these trained models); across training
  runs, the two ``across_seeds`` estimates' difference (``SeedEstimate.minus``).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Sequence

from boxbench.core.evaluate import Z95, wilson  # the record's own interval is computed with the record

__all__ = ["Z95", "Z_POWER80", "wilson", "seed_interval", "binom_cdf_half", "mcnemar_exact", "discordant", "holm", "detectable_difference",
           "per_example_gap", "gap_difference", "normal_two_sided", "Paired", "paired_test", "SeedEstimate", "across_seeds",
           "seed_paired_test", "probability_of_improvement", "distinct_runs", "projected_p"]


@dataclass(frozen=True)
class SeedEstimate:
    """An estimate with a variance made of independent parts, each with its own degrees of freedom
    (a seed part: k − 1; the test rows: n − 1); intervals and tests use Student's t at the
    Welch–Satterthwaite degrees of freedom of the sum."""

    value: float
    parts: tuple[tuple[float, float], ...]  # (variance, degrees of freedom)

    @property
    def var(self) -> float:
        return sum(v for v, _ in self.parts)

    @property
    def se(self) -> float:
        return math.sqrt(self.var)

    @property
    def df(self) -> float:
        den = sum(v * v / d for v, d in self.parts if v > 0 and d > 0)
        return self.var**2 / den if den > 0 else math.inf

    def t(self, q: float) -> float:
        """The ``q`` quantile of Student's t at this estimate's degrees of freedom."""
        from scipy import stats as st

        return float(st.t.ppf(q, self.df)) if math.isfinite(self.df) else float(st.norm.ppf(q))

    def interval(self, level: float = 0.95) -> tuple[float, float]:
        half = self.t(0.5 + level / 2) * self.se
        return self.value - half, self.value + half

    def p(self) -> float:
        """Two-sided p of value = 0."""
        from scipy import stats as st

        if self.se == 0:
            return float(self.value == 0)
        return float(2 * st.t.sf(abs(self.value) / self.se, self.df)) if math.isfinite(self.df) else normal_two_sided(self.value / self.se)

    def detectable(self) -> float:
        """The difference this design finds with 80 % power at α 0.05: (t₀.₉₇₅ + t₀.₈)·SE."""
        return (self.t(0.975) + self.t(0.8)) * self.se

    def minus(self, other: "SeedEstimate") -> "SeedEstimate":
        """The difference of two independent estimates (e.g. one gap on two test sets)."""
        return SeedEstimate(self.value - other.value, self.parts + other.parts)


def seed_interval(accuracies: Sequence[float], n: int, level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high) over seeds, with the seeds' spread and the test sample's error, a t interval
    at the Welch–Satterthwaite degrees of freedom (see module doc); one seed: the normal interval."""
    k = len(accuracies)
    if k == 0:
        raise ValueError("no accuracies")
    mean = statistics.fmean(accuracies)
    between = statistics.variance(accuracies) / k if k > 1 else 0.0
    within = mean * (1 - mean) / n if n > 0 else 0.0
    lo, hi = SeedEstimate(mean, ((between, k - 1), (within, max(n - 1, 1)))).interval(level)
    return mean, max(0.0, lo), min(1.0, hi)


def distinct_runs(runs: Sequence[Sequence[bool]]) -> list[Sequence[bool]]:
    """A side's runs as independent draws: seeds whose predictions are all identical (a deterministic
    method, or one whose tuning ignored the seed) are one run, not several."""
    return [runs[0]] if all(list(r) == list(runs[0]) for r in runs[1:]) else list(runs)


def probability_of_improvement(a: Sequence[float], b: Sequence[float]) -> float:
    """P(A > B): the chance that a run of A scores above a run of B, over every pair of their runs,
    ties counting ½ (rliable's probability of improvement; the Mann–Whitney U statistic / k_A·k_B).
    With one run on each side there is one pair, 0 or 1 by construction, not an estimate: NaN."""
    if len(a) == 1 and len(b) == 1:
        return math.nan
    return statistics.fmean((x > y) + 0.5 * (x == y) for x in a for y in b)


def _runs(a: Sequence[Sequence[bool]], b: Sequence[Sequence[bool]]) -> tuple[list[list[float]], list[float]]:
    """Each side's per-run accuracies (identical seeds as one run) and the per-example gap A − B."""
    ra, rb = distinct_runs(a), distinct_runs(b)
    n = len(ra[0])
    if any(len(s) != n for s in [*ra, *rb]):
        raise ValueError("paired comparisons need the same examples")
    return [[statistics.fmean(map(float, s)) for s in side] for side in (ra, rb)], _diffs(ra, rb)


def across_seeds(a: Sequence[Sequence[bool]], b: Sequence[Sequence[bool]], runs: tuple[int, int] | None = None) -> SeedEstimate:
    """Δ = accuracy A − B across training runs on the same n test examples (module doc): the mean
    per-run accuracy gap, its variance from each side's runs and from the paired rows. ``runs``: the
    runs to scale each side's seed part to (``projected_p``) instead of those observed."""
    accs, diffs = _runs(a, b)
    parts = []
    for side, k in zip(accs, runs or (0, 0)):
        if len(side) > 1:
            k = max(k, len(side))
            parts.append((statistics.variance(side) / k, k - 1))
    n = len(diffs)
    parts.append(((statistics.variance(diffs) / n) if n > 1 else 0.0, max(n - 1, 1)))
    return SeedEstimate(statistics.fmean(diffs), tuple(parts))


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
    """The outcome of ``paired_test`` (these trained models) or ``seed_paired_test`` (across training runs)."""

    delta: float  # mean accuracy A − B, each side averaged over its seeds
    better: int  # examples A gets right more often than B (over their seeds); one seed each: McNemar's b
    worse: int  # the reverse; McNemar's c
    p: float  # two-sided
    detectable: float  # the difference this design finds with 80 % power at α 0.05
    test: str  # "McNemar" (one seed each), "z" (per-example gap averaged over seeds) or "t" (across training runs)
    low: float = math.nan  # the 95 % interval of delta (across training runs)
    high: float = math.nan
    prob_improvement: float = math.nan  # P(A > B) over pairs of runs
    runs: tuple[int, int] = (0, 0)  # independent runs of each side (identical seeds count once)


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


def projected_p(a: Sequence[Sequence[bool]], b: Sequence[Sequence[bool]], runs_a: int, runs_b: int) -> float:
    """The across-run p that this comparison would have with ``runs_a`` and ``runs_b`` runs, if its
    observed Δ and seed spreads held (a side with identical seeds stays one run; the rows' part does
    not shrink): whether more seeds could still decide it (``benchmarks/seeds.py``)."""
    return across_seeds(a, b, (runs_a, runs_b)).p()


def seed_paired_test(a: Sequence[Sequence[bool]], b: Sequence[Sequence[bool]]) -> Paired:
    """A against B **across training runs** (``across_seeds``): Δ, its 95 % t interval, the two-sided p,
    P(A > B), the detectable difference, and how many independent runs each side had."""
    est = across_seeds(a, b)
    accs, diffs = _runs(a, b)
    low, high = est.interval()
    better, worse = sum(d > 0 for d in diffs), sum(d < 0 for d in diffs)
    runs = (len(accs[0]), len(accs[1]))
    if runs == (1, 1):  # one run each: only the rows vary, and McNemar's exact test is the exact answer
        n = len(diffs)
        return Paired(est.value, better, worse, mcnemar_exact(better, worse), detectable_difference(n, (better + worse) / n),
                      "McNemar", low, high, probability_of_improvement(*accs), runs)
    return Paired(est.value, better, worse, est.p(), est.detectable(), "t", low, high, probability_of_improvement(*accs), runs)


def normal_two_sided(z: float) -> float:
    """Two-sided p of a standard-normal statistic."""
    return math.erfc(abs(z) / math.sqrt(2))


def gap_difference(gap_x: tuple[float, float], gap_y: tuple[float, float]) -> float:
    """Two-sided p that the gap on test set X differs from the gap on Y (``per_example_gap`` of
    each; the sets are independent, so the variances add)."""
    se = math.sqrt(gap_x[1] + gap_y[1])
    return 1.0 if se == 0 else normal_two_sided((gap_x[0] - gap_y[0]) / se)
