"""Do the report's 95 % intervals of Δ cover the true Δ 95 % of the time? Simulated studies with a
known answer, scored by the report's own functions (``reports.stats``).

A simulated study: n test rows drawn from a population (row difficulty u ~ N(0, 1), shared by both
methods, plus a method-specific row effect ~ N(0, γ²): the methods disagree on some rows); each
method is tuned k times (a run's offset e ~ N(0, τ²): the between-seed spread); a run answers row i
correctly with probability Φ(α + u_i + v_i + e). The true Δ is exact:
E[Φ(α + u + v + e)] = Φ(α / sqrt(1 + 1 + γ² + τ²)). Each method of inference gives a 95 % interval
per study; its coverage is the share of studies whose interval holds the true Δ.

    python -m boxbench.benchmarks.coverage [--studies 1000]

prints the coverage of the across-seed interval (the report's default), of the "these trained
models" test the report used before (it treats the trained models as fixed), and of a two-level
bootstrap (runs, then rows), for several designs.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from boxbench.reports.stats import across_seeds, distinct_runs, per_example_gap

Z95 = 1.959963984540054


@dataclass(frozen=True)
class Design:
    """One simulated study design: runs per method, between-run spread τ (probit units), intercepts α."""

    k_a: int
    k_b: int
    tau_a: float
    tau_b: float
    n: int = 300
    alpha_a: float = 0.5
    alpha_b: float = 0.3
    gamma: float = 0.7

    def true_delta(self) -> float:
        from scipy.stats import norm

        def acc(alpha: float, tau: float) -> float:
            return float(norm.cdf(alpha / math.sqrt(2 + self.gamma**2 + tau**2)))

        return acc(self.alpha_a, self.tau_a) - acc(self.alpha_b, self.tau_b)

    def label(self) -> str:
        return f"{self.k_a} runs (τ {self.tau_a}) vs {self.k_b} (τ {self.tau_b}), n {self.n}"


DESIGNS = (Design(3, 1, 0.3, 0.0), Design(3, 3, 0.3, 0.3), Design(5, 1, 0.3, 0.0), Design(5, 5, 0.2, 0.2),
           Design(3, 1, 0.05, 0.0), Design(10, 3, 0.2, 0.2))
"""A tuned method against a deterministic baseline, two tuned methods, more seeds, a method that
barely depends on its seed, an unbalanced pair."""


def simulate(design: Design, rng: Any) -> tuple[list[list[bool]], list[list[bool]]]:
    """One study: per-run, per-row correctness of A and of B on the same rows (``rng``: numpy Generator)."""
    from scipy.stats import norm

    d = design
    u = rng.standard_normal(d.n)

    def runs(alpha: float, tau: float, k: int) -> list[list[bool]]:
        v = rng.standard_normal(d.n) * d.gamma
        e = rng.standard_normal(k) * tau
        probs = norm.cdf(alpha + u[None, :] + v[None, :] + e[:, None])
        return (rng.random((k, d.n)) < probs).tolist()

    return runs(d.alpha_a, d.tau_a, d.k_a), runs(d.alpha_b, d.tau_b, d.k_b)


def across_seeds_interval(a: Sequence[Sequence[bool]], b: Sequence[Sequence[bool]], rng: Any) -> tuple[float, float]:
    """The report's default: ``reports.stats.across_seeds``, a t interval."""
    return across_seeds(a, b).interval()


def these_models_interval(a: Sequence[Sequence[bool]], b: Sequence[Sequence[bool]], rng: Any) -> tuple[float, float]:
    """The "these trained models" answer (``reports.stats.per_example_gap``, the test behind
    ``paired_test`` with several seeds): the per-example gap's mean ± 1.96 standard errors."""
    mean, var = per_example_gap(a, b)
    return mean - Z95 * math.sqrt(var), mean + Z95 * math.sqrt(var)


def bootstrap_interval(a: Sequence[Sequence[bool]], b: Sequence[Sequence[bool]], rng: Any, resamples: int = 1000) -> tuple[float, float]:
    """A two-level percentile bootstrap: each side's runs resampled with replacement, then the rows
    (the same rows for both sides: paired)."""
    import numpy as np

    A, B = np.asarray(distinct_runs(a), float), np.asarray(distinct_runs(b), float)
    n = A.shape[1]
    ua = rng.multinomial(len(A), [1 / len(A)] * len(A), resamples) / len(A)
    ub = rng.multinomial(len(B), [1 / len(B)] * len(B), resamples) / len(B)
    w = rng.multinomial(n, [1 / n] * n, resamples) / n
    deltas = ((ua @ A - ub @ B) * w).sum(1)
    low, high = np.quantile(deltas, [0.025, 0.975])
    return float(low), float(high)


METHODS: dict[str, Callable[..., tuple[float, float]]] = {
    "across training runs (t; the report's default)": across_seeds_interval,
    "these trained models (z; before)": these_models_interval,
    "two-level bootstrap (runs, rows)": bootstrap_interval,
}


def coverage(design: Design, studies: int, method: Callable[..., tuple[float, float]], seed: int = 0) -> float:
    """Share of ``studies`` simulated studies whose 95 % interval (by ``method``) holds the true Δ."""
    import numpy as np

    rng = np.random.default_rng(seed)
    true = design.true_delta()
    hits = 0
    for _ in range(studies):
        a, b = simulate(design, rng)
        low, high = method(a, b, rng)
        hits += low <= true <= high
    return hits / studies


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--studies", type=int, default=1000)
    args = ap.parse_args(argv)
    mc = math.sqrt(0.95 * 0.05 / args.studies)
    print(f"coverage of nominal 95 % intervals of Δ, {args.studies} simulated studies per design "
          f"(Monte-Carlo error ± {100 * 1.96 * mc:.1f} points at 95 %)")
    names = list(METHODS)
    print("| design | true Δ (pp) | " + " | ".join(names) + " |")
    print("|---|---|" + "---|" * len(names))
    for d in DESIGNS:
        cells = [f"{100 * coverage(d, args.studies, METHODS[m]):.1f} %" for m in names]
        print(f"| {d.label()} | {100 * d.true_delta():+.1f} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
