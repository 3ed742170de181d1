"""Accuracy against tuning cost, one colour per access class (matplotlib, PNG bytes)."""

from __future__ import annotations

import io
import statistics
from typing import Any

from boxbench.core.results import Record
from boxbench.reports.comparisons import accuracy_interval
from boxbench.reports.cost import frontier_points
from boxbench.reports.sweep import choose_budget, sweep_curves
from boxbench.reports.table import is_transfer, mean_accuracy, on_main_test, row_order
from boxbench.reports.transfer import transfer_matrix, transfer_sources

ACCESS_COLOURS = {"black": "#222222", "grey": "#8c8c8c", "white": "#1f77b4"}
MARKERS = ["o", "s", "^", "D", "v", "P"]


Label = tuple[Any, float, float, str]  # (axes, x, y, text): a point's name, placed by ``_png``
Box = tuple[float, float, float, float]  # (x0, y0, x1, y1) in points on the figure


def _place_labels(labels: list[Label], fontsize: float) -> list[Box]:
    """Each name beside its point: right of it, else left of it, else centred just above or below it,
    the nearest free place first (a line at a time up or down, or just above / below a name already
    there), clear of every name placed before it and of every other point by a gap of a point, inside
    the panel; else where it overlaps least (greedy, in points on the laid-out figure, the text measured
    by the renderer). A name moved off its place beside the point gets a thin leader line to it.
    Returns the boxes (x0, y0, x1, y1, in points) in the order placed."""
    from matplotlib.font_manager import FontProperties

    placed: dict[Any, list[Box]] = {}
    height, gap, mark = 1.25 * fontsize, 1.0, 3.5  # a line; the clearance; a marker's half-width

    def shared(a: Box, b: Box) -> float:
        """The area two boxes share."""
        return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))

    def points(ax: Any, x: float, y: float) -> tuple[float, float]:
        px, py = ax.transData.transform((x, y)) * 72 / ax.figure.dpi
        return float(px), float(py)

    def frame(ax: Any) -> Box:
        e = ax.get_window_extent(ax.figure.canvas.get_renderer())
        return e.x0 * 72 / ax.figure.dpi, e.y0 * 72 / ax.figure.dpi, e.x1 * 72 / ax.figure.dpi, e.y1 * 72 / ax.figure.dpi

    axes = {id(l[0]): l[0] for l in labels}.values()
    marks = {ax: [points(ax, x, y) for a, x, y, _ in labels if a is ax] for ax in axes}  # once per panel, not per name
    frames = {ax: frame(ax) for ax in axes}
    font = FontProperties(size=fontsize)
    for ax, x, y, text in sorted(labels, key=lambda l: (id(l[0]), l[1], -l[2])):
        px, py = points(ax, x, y)
        width = ax.figure.canvas.get_renderer().get_text_width_height_descent(text, font, ismath=False)[0] * 72 / ax.figure.dpi
        boxes = placed.setdefault(ax, [])
        own = (px - mark + gap, py - mark + gap, px + mark - gap, py + mark - gap)  # its own marker: the name may sit right beside it
        obstacles = boxes + [own] + [(mx - mark, my - mark, mx + mark, my + mark) for mx, my in marks[ax] if abs(mx - px) + abs(my - py) > 0.5]
        shifts = [3 + height * k for k in range(-10, 11)] + [mark + gap, -mark - gap - height]
        shifts += [d for b in boxes for d in (b[3] + gap - py, b[1] - gap - height - py)]
        # (dx, dy, how far from its side's usual place, the side's rank): right, left, centred above / below
        sides = [(4.0, lambda dy: abs(dy - 3), 0), (-4.0 - width, lambda dy: abs(dy - 3), 1),
                 (-width / 2, lambda dy: min(abs(dy - mark - gap), abs(dy + mark + gap + height)), 2)]
        candidates = sorted(((dx, dy, moved(dy), rank) for dy in shifts for dx, moved, rank in sides), key=lambda c: c[2] + c[3])

        def cost(c: tuple[float, float, float, int]) -> float:
            box = (px + c[0], py + c[1], px + c[0] + width, py + c[1] + height)
            padded = (box[0] - gap, box[1] - gap, box[2] + gap, box[3] + gap)
            return sum(shared(padded, b) for b in obstacles) + width * height - shared(box, frames[ax])

        dx, dy, moved, _ = next((c for c in candidates if cost(c) < 1e-6), None) or min(candidates, key=cost)
        boxes.append((px + dx, py + dy, px + dx + width, py + dy + height))
        leader = {"arrowprops": {"arrowstyle": "-", "lw": 0.4, "color": "0.55", "shrinkA": 0, "shrinkB": 2}} if moved > height / 2 else {}
        ax.annotate(text, (x, y), fontsize=fontsize, xytext=(dx, dy), textcoords="offset points", **leader)
    return [b for boxes in placed.values() for b in boxes]


def _png(fig: Any, handles: list[Any] | None = None, top: float = 1.0, labels: list[Label] | None = None,
         fontsize: float = 7) -> bytes:
    """The figure as PNG bytes (with a legend row above the panels when ``handles`` are given, and
    ``labels`` placed apart once the layout is fixed); closes it."""
    import matplotlib.pyplot as plt

    if handles:
        fig.legend(handles=handles, loc="upper center", ncol=len(handles), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, top))
    _place_labels(labels or [], fontsize)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def cost_plot(records: list[Record]) -> bytes | None:
    """Accuracy vs tuning wall time and accuracy vs peak memory, one row of two panels per dataset, of
    the cells the frontier shows (no transfer cell, no side experiment on other test rows). None if
    nothing to plot."""
    ok = on_main_test([r for r in records if r.status == "ok" and r.accuracy is not None and not is_transfer(r)])
    if not ok:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups: dict[tuple[str, str, str, str], list[Record]] = {}
    for r in ok:
        groups.setdefault((r.model, r.dataset, r.access, r.label), []).append(r)
    datasets = list(dict.fromkeys(r.dataset for r in ok))
    height = 0.4 + 3.8 * len(datasets)  # inches: the legend row, then a row of panels per dataset
    fig, axes = plt.subplots(len(datasets), 2, figsize=(11, height), squeeze=False)
    labels: list[Label] = []
    panels = [("tune_wall_s", "tuning wall time (s, symlog)", 1.0), ("peak_host_rss_bytes", "peak host memory (GiB)", 1024**3)]
    for row, (ax, (key, xlabel, scale)) in ((row, p) for row in range(len(datasets)) for p in zip(axes[row], panels)):
        for (model, dataset, access, label), rs in groups.items():
            xs = [v / scale for r in rs if (v := getattr(r, key)) is not None] if dataset == datasets[row] else []
            if not xs:
                continue
            x = statistics.fmean(xs)
            y = 100 * mean_accuracy(rs)
            ax.scatter(x, y, color=ACCESS_COLOURS.get(access, "red"), s=40)
            labels.append((ax, x, y, label))
        ax.set_title(datasets[row], fontsize=9)
        if key == "tune_wall_s":
            ax.set_xscale("symlog", linthresh=1.0)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("accuracy (%)")
        ax.grid(alpha=0.3)
    handles = [plt.Line2D([], [], color=c, marker="o", linestyle="", label=f"{a}-box") for a, c in ACCESS_COLOURS.items()]
    return _png(fig, handles, top=1 - 0.35 / height, labels=labels)


def transfer_heatmap(records: list[Record]) -> bytes | None:
    """One heatmap per dataset and source model: methods × (Original + targets), mean accuracy over seeds."""
    mats = [(f"{d}, from {src}", m) for d in dict.fromkeys(r.dataset for r in records)
            for src in transfer_sources(records, d) if (m := transfer_matrix(records, d, src))]
    if not mats:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(mats), figsize=(5.5 * len(mats), 0.5 * max(len(m[0]) for _, m in mats) + 2), squeeze=False)
    for ax, (dataset, (labels, cols, grid)) in zip(axes[0], mats):
        vals = [[100 * statistics.fmean(v) if v else float("nan") for v in row] for row in grid]
        im = ax.imshow(vals, cmap="viridis", vmin=0, vmax=100, aspect="auto")
        ax.set_xticks(range(len(cols)), cols, rotation=30, ha="right", fontsize=8)
        ax.set_yticks(range(len(labels)), labels, fontsize=8)
        for i, row in enumerate(vals):
            for j, v in enumerate(row):
                if v == v:
                    ax.text(j, i, f"{v:.1f}", ha="center", va="center", fontsize=7, color="white" if v < 60 else "black")
        ax.set_title(f"transfer — {dataset} (accuracy %)", fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.046)
    return _png(fig)


def accuracy_plot(records: list[Record]) -> bytes | None:
    """The survey's Table 1 drawn: one panel per model and dataset, a bar per method grouped by access
    class (colour), with its 95 % interval (``tables.accuracy_cell``'s) as the error bar."""
    ok = [r for r in records if r.status == "ok" and r.accuracy is not None and not is_transfer(r)]
    panels = list(dict.fromkeys((r.model, r.dataset) for r in ok))
    if not panels:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    main = {id(r) for r in on_main_test(ok)}
    bars = [len(row_order([r for r in ok if (r.model, r.dataset) == p])) for p in panels]
    fig, axes = plt.subplots(1, len(panels), figsize=(max(5.5, 0.42 * sum(bars) + 1.6 * len(panels)), 4.4), squeeze=False,
                             gridspec_kw={"width_ratios": [max(n, 5) for n in bars]})  # a panel as wide as its bars
    for ax, (model, dataset) in zip(axes[0], panels):
        mine = [r for r in ok if (r.model, r.dataset) == (model, dataset)]
        keys = row_order(mine)
        names = []
        for i, key in enumerate(keys):
            rs = [r for r in mine if (r.access, r.label) == key]
            mean, lo, hi = accuracy_interval(rs)
            side = not any(id(r) in main for r in rs)  # a side experiment on other test rows: hatched, its rows named
            ax.bar(i, 100 * mean, color=ACCESS_COLOURS.get(key[0], "red"), alpha=0.45 if side else 0.85, hatch="//" if side else None)
            below, above = max(0.0, mean - lo), max(0.0, hi - mean)  # float rounding at 0 % / 100 %
            ax.errorbar(i, 100 * mean, yerr=[[100 * below], [100 * above]], color="#d62728", capsize=3, lw=1)
            names.append(f"{key[1]} · {rs[0].n} rows" if side else key[1])
        ax.set_xticks(range(len(keys)), names, rotation=45, ha="right", fontsize=7)
        ax.set_ylim(0, 100)
        ax.set_ylabel("accuracy (%)")
        ax.set_title(f"{dataset} — {model}", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    handles = [plt.Line2D([], [], color=c, marker="s", linestyle="", label=f"{a}-box") for a, c in ACCESS_COLOURS.items()]
    handles.append(plt.Line2D([], [], color="#d62728", label="95 % interval"))
    return _png(fig, handles, top=0.9)


def sweep_plot(records: list[Record]) -> bytes | None:
    """Learning curves: accuracy (95 % interval) against each swept budget — one row of panels per
    dataset, one panel per swept param, one line per method and model (its own colour; the access
    class in its label) — with the budget ``choose_budget`` picks ringed. None without sweeps."""
    curves = sweep_curves(records)
    if not curves:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = list(dict.fromkeys(k[2] for k in curves))
    params = list(dict.fromkeys(k[3] for k in curves))
    cols = min(4, len(params))  # a dataset's panels wrap after four
    per = -(-len(params) // cols)
    fig, axes = plt.subplots(len(datasets) * per, cols, figsize=(4.8 * cols, 3.9 * len(datasets) * per), squeeze=False)
    colours = plt.get_cmap("tab10").colors
    for di, dataset in enumerate(datasets):
        cells = [ax for r in axes[di * per:(di + 1) * per] for ax in r]
        for ax in cells[len(params):]:
            ax.set_axis_off()
        for ax, param in zip(cells, params):
            mine = [(k, pts) for k, pts in curves.items() if (k[2], k[3]) == (dataset, param)]
            if not mine:
                ax.set_axis_off()
                continue
            ticks: dict[Any, str] = {}
            for i, ((name, model, _, _), points) in enumerate(mine):
                numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v, _ in points)
                xs = [v if numeric else j for j, (v, _) in enumerate(points)]
                stats = [accuracy_interval(g) for _, g in points]
                ys = [100 * m for m, _, _ in stats]
                err = [[100 * (m - lo) for m, lo, _ in stats], [100 * (hi - m) for m, _, hi in stats]]
                colour = colours[i % len(colours)]
                ax.errorbar(xs, ys, yerr=err, marker=MARKERS[i % len(MARKERS)], capsize=3, color=colour, alpha=0.9,
                            label=f"{name} ({points[0][1][0].access}) · {model}")
                chosen = choose_budget(points)
                if chosen is not None:
                    j = [v for v, _ in points].index(chosen[0])
                    ax.scatter([xs[j]], [ys[j]], s=180, facecolors="none", edgecolors=colour, linewidths=2, zorder=5)
                if numeric and min(xs) > 0 and max(xs) / min(xs) >= 10:
                    ax.set_xscale("log")
                    ax.minorticks_off()
                ticks.update(zip(xs, (str(v) for v, _ in points)))
            ax.set_xticks(list(ticks), list(ticks.values()))  # every line's swept values
            ax.set_title(f"{dataset} · {param}", fontsize=9)
            ax.set_xlabel(param)
            ax.set_ylabel("accuracy (%)")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=6)
    fig.suptitle("learning curves (ringed: the budget the rule chose)", fontsize=10, y=1.0)
    return _png(fig)


def frontier_plot(records: list[Record]) -> bytes | None:
    """The headline picture: accuracy (95 % interval) against tuning FLOPs, one point per method,
    coloured by access class, one panel per dataset, the Pareto front drawn as a step line
    (``tables.frontier_points``). None without compute estimates."""
    points = {d: pts for d, pts in frontier_points(records).items() if pts}
    if not points:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(points), figsize=(6.2 * len(points), 4.6), squeeze=False)
    labels: list[Label] = []
    for ax, (dataset, pts) in zip(axes[0], points.items()):
        positive = [p["tune_flops"] for p in pts if p["tune_flops"] > 0]
        floor = min(positive) / 10 if positive else 1.0  # untuned methods sit at the left edge, labelled 0
        models = [p["model"] for p in pts]
        usual = max(dict.fromkeys(models), key=models.count)  # the panel's model; a point on another one is named with it
        for p in pts:
            x = p["tune_flops"] or floor
            y = 100 * p["accuracy"]
            ax.errorbar(x, y, yerr=[[100 * max(0.0, p["accuracy"] - p["low"])], [100 * max(0.0, p["high"] - p["accuracy"])]],
                        marker="o" if p["pareto"] else "s", ms=7 if p["pareto"] else 5, capsize=2, lw=0.8,
                        color=ACCESS_COLOURS.get(p["access"], "red"), mfc=ACCESS_COLOURS.get(p["access"], "red") if p["pareto"] else "white")
            name = p["label"] if p["model"] == usual else f"{p['label']} ({p['model']})"
            labels.append((ax, x, y, name))
        front = [p for p in pts if p["pareto"]]
        ax.step([p["tune_flops"] or floor for p in front], [100 * p["accuracy"] for p in front], where="post",
                color="#d62728", lw=1, alpha=0.7)
        ax.set_xscale("log")
        ax.set_xlabel("tuning compute (FLOPs, estimated; untuned at the left edge)")
        ax.set_ylabel("accuracy (%)")
        ax.set_title(f"{dataset} · {usual}" + (" (other models named)" if len(set(models)) > 1 else ""), fontsize=9)
        ax.grid(alpha=0.3)
    handles = [plt.Line2D([], [], color=c, marker="o", linestyle="", label=f"{a}-box") for a, c in ACCESS_COLOURS.items()]
    handles += [plt.Line2D([], [], color="#d62728", label="Pareto front (filled: on it)")]
    return _png(fig, handles, top=0.9, labels=labels, fontsize=6.5)
