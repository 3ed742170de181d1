"""PEZ's own tables: how each vocabulary searched, how word-like its prompts are, and the
neighbour-restricted PEZ study's transfer claim (registered for ``pez`` in ``reports.method_tables``)."""

from __future__ import annotations

from boxbench.core.results import Record
from boxbench.reports.comparisons import PAIRED_NOTE, apply_holm, claim_verdict, compare
from boxbench.reports.table import Table, fmt, is_transfer, mean_or_none, mean_std, p_text, prob_text


def left_start(record: Record) -> bool | None:
    """Whether a PEZ cell's chosen prompt differs from its projected start (``prompt_moved``; records
    written before it existed: their ``best_step`` is 0 when the untrained start was chosen)."""
    if record.extra.get("prompt_moved") is not None:
        return bool(record.extra["prompt_moved"])
    return None if record.extra.get("best_step") is None else record.extra["best_step"] != 0


def pez_table(records: list[Record]) -> Table | None:
    """How each PEZ variant searched, per dataset over seeds: the candidate vocabulary, how strongly
    its tokens agree across models, what the agreement cost (the shared cache is filled by whichever
    cell misses first, so a miss's seconds land in that cell's tune time), the step rate, the step
    whose prompt the dev set chose, and whether that prompt left its start ("start" marks a seed
    whose tuned prompt is its untrained initial prompt: its accuracy is the start's, not PEZ's)."""
    rows = [r for r in records if r.status == "ok" and r.extra.get("pez_steps") is not None and not is_transfer(r)]
    if not rows:
        return None
    t = Table("PEZ search", ["method", "model", "dataset", "candidates", "mean agreement of candidates", "agreement s (misses)",
                             "steps", "steps/s", "best step per seed", "prompt left its start", "loss first → last"],
              note="mean ± std over seeds; agreement = mean Jaccard of the tokens' top-K neighbour sets across models; "
                   "best step \"start\": the chosen prompt is the untrained start (never moved, or moved back)")
    for lab, model, d in dict.fromkeys((r.label, r.model, r.dataset) for r in rows):
        mine = sorted((r for r in rows if (r.label, r.model, r.dataset) == (lab, model, d)), key=lambda r: r.seed)
        misses = [r.extra["agreement_s"] for r in mine if r.extra.get("agreement_s") is not None and not r.extra.get("agreement_cached")]
        first, last = mean_or_none(r.extra.get("loss_first") for r in mine), mean_or_none(r.extra.get("loss_last") for r in mine)
        moved = [left_start(r) for r in mine]
        t.rows.append([lab, model, d, fmt(mean_or_none(r.extra.get("candidate_vocab") for r in mine), digits=0),
                       mean_std((r.extra.get("mean_agreement_chosen") for r in mine), digits=3),
                       "—" if not misses else f"{fmt(mean_or_none(misses), digits=0)} ({len(misses)})",
                       str(mine[0].extra["pez_steps"]), mean_std((r.extra.get("steps_per_s") for r in mine), digits=2),
                       ", ".join(f"{r.extra.get('best_step', '?')}{' start' if m is False else ''}" for r, m in zip(mine, moved)),
                       f"{sum(m is True for m in moved)} of {len(moved)} seeds" if None not in moved else "—",
                       "—" if first is None or last is None else f"{first:.3f} → {last:.3f}"])
    return t


def dictionary_table(records: list[Record]) -> Table | None:
    """Share of dictionary words in the tuned prompts per method and dataset, mean ± std over seeds
    (the study's claim: prompts searched over the agreeing vocabulary read more like words)."""
    rows = [r for r in records if r.status == "ok" and r.extra.get("prompt_dictionary_fraction") is not None and not is_transfer(r)]
    if not rows:
        return None
    datasets = list(dict.fromkeys(r.dataset for r in rows))
    t = Table("Dictionary words in tuned prompts", ["method", "model", *datasets, "all"],
              note="% of the prompt's words found in an English word list, mean ± std over seeds")
    for lab, model in dict.fromkeys((r.label, r.model) for r in rows):
        mine = [r for r in rows if r.label == lab and r.model == model]
        t.rows.append([lab, model, *[mean_std((r.extra["prompt_dictionary_fraction"] for r in mine if r.dataset == d), 100)
                                     for d in datasets], mean_std((r.extra["prompt_dictionary_fraction"] for r in mine), 100)])
    return t


CLAIM_PAIRS = (("neighbour", "full"), ("neighbour", "random"))
"""The neighbour-restricted PEZ study's claim: a prompt tuned over the vocabulary whose embedding
neighbourhoods agree across models transfers better than one tuned over the full vocabulary or a
random subset of the same size."""


def transfer_verdict_table(records: list[Record]) -> Table | None:
    """The PEZ study's claim tested per dataset and target model: the neighbour-vocabulary prompts'
    transfer accuracy against the full-vocabulary and the random-subset prompts' (``CLAIM_PAIRS``),
    paired on the same test examples, answered across training runs (the verdict) and for these
    tuned prompts (``reports.stats``), Holm within each target; holds / refuted / undecided, the
    seeds (and how many prompts left their start), and the difference the design detects (80 % power)."""
    moved = [r for r in records if r.status == "ok" and is_transfer(r) and r.method == "pez" and isinstance(r.correct, str)
             and r.params.get("steps", 1) > 0]  # the random-prompt control (steps 0) is no vocabulary's tuned prompt
    rows = []
    for d, target in dict.fromkeys((r.dataset, r.target_model or r.model) for r in moved):
        mine = [r for r in moved if (r.dataset, r.target_model) == (d, target)]
        family = []
        for a, b in CLAIM_PAIRS:
            xs, ys = [r for r in mine if r.params.get("vocab") == a], [r for r in mine if r.params.get("vocab") == b]
            c = compare(d, ("white", a), ("white", b), "verdict", xs, ys) if xs and ys else None
            if c:
                family.append((c, xs, ys))
        apply_holm([c for c, _, _ in family])
        for c, xs, ys in family:
            left = [sum(left_start(r) is not False for r in side) for side in (xs, ys)]  # a transfer record carries its prompt's stats
            rows.append([d, target, f"{c.a[1]} > {c.b[1]}", "{} / {}".format(*c.seeds), "{} / {}".format(*left),
                         f"{100 * c.delta:+.1f} [{100 * c.low:+.1f}, {100 * c.high:+.1f}]", prob_text(c.prob_improvement),
                         p_text(c.p_holm), f"{100 * c.detectable:.1f}", claim_verdict(c.delta, c.p_holm),
                         f"{c.only_a} / {c.only_b}", p_text(c.fixed_p_holm), claim_verdict(c.delta, c.fixed_p_holm)])
    if not rows:
        return None
    return Table("PEZ transfer: the neighbour-vocabulary claim",
                 ["dataset", "target", "claim", "seeds", "prompts that left their start", "Δ accuracy (pp) [95 %]", "P(first > second)",
                  "p across runs (Holm)", "detectable (pp)", "verdict across runs", "only first / only second right",
                  "p these prompts (Holm)", "verdict these prompts"],
                 rows, note="transfer cells of PEZ prompts tuned over each vocabulary (params.vocab), " + PAIRED_NOTE + "; only … right: "
                            "the examples one side gets right more often over its seeds; Holm within each target, each answer apart; "
                            "prompts that left their start: of each side's seeds, those whose tuned prompt is not its untrained start; "
                            "detectable: the difference this design finds with 80 % power at α 0.05 across runs")


def tables(records: list[Record]) -> list[Table]:
    """PEZ's tables for the report, those with rows."""
    return [t for t in (pez_table(records), dictionary_table(records), transfer_verdict_table(records)) if t is not None]
