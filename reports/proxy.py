"""Proxy-Tuning's own table: the proxy-tuned large model beside its three parts alone (registered for
``proxy_tuning`` in ``reports.method_tables``)."""

from __future__ import annotations

from typing import Any

from boxbench.core.results import Record
from boxbench.reports.table import Table, is_transfer, mean_std


def proxy_table(records: list[Record]) -> Table | None:
    """Proxy-Tuning next to the numbers it is about — the large model alone, the untuned small model
    and the tuned small expert alone — read from the proxy cell's own passes over the same examples
    (``component_accuracy``); records without them fall back to the run's zero_shot / lora cells."""
    ok = [r for r in records if r.status == "ok" and not is_transfer(r)]
    proxies = [r for r in ok if r.method == "proxy_tuning"]
    if not proxies:
        return None

    def part(group: list[Record], name: str, fallback: Any) -> str:
        vals = [(r.extra.get("component_accuracy") or {}).get(name) for r in group]
        if all(v is None for v in vals):
            return mean_std([r.accuracy for r in ok if fallback(r)], 100) + " *"
        return mean_std(vals, 100)

    t = Table("Proxy-Tuning", ["large model", "small model", "dataset", "α", "large alone", "small untuned",
                               "small expert alone", "proxy-tuned large"],
              note="accuracy (%), mean ± std over seeds, all four on the proxy cell's own test examples; "
                   "* = from the run's zero_shot / lora cells instead")
    for key in dict.fromkeys((p.model, p.extra.get("small_model"), p.dataset, p.extra.get("alpha")) for p in proxies):
        large, small, d, alpha = key
        group = [p for p in proxies if (p.model, p.extra.get("small_model"), p.dataset, p.extra.get("alpha")) == key]
        t.rows.append([large, str(small), d, str(alpha),
                       part(group, "large", lambda r: r.method == "zero_shot" and r.model == large and r.dataset == d),
                       part(group, "antiexpert", lambda r: r.method == "zero_shot" and r.model == small and r.dataset == d),
                       part(group, "expert", lambda r: r.method == "lora" and r.model == small and r.dataset == d),
                       mean_std([p.accuracy for p in group], 100)])
    return t


def tables(records: list[Record]) -> list[Table]:
    table = proxy_table(records)
    return [table] if table is not None else []
