"""Fig. 4 as a PNG: R@1 against the number of tags, one line per strategy with its interval band.

The same numbers as ``<table>.csv`` (:func:`pipeline.ablations.render.plot_csv`), which ``dvc plots``
draws with ``.dvc/plots/interval_band.json``; the PNG is for reading without a browser (and for
``dvc plots show`` / ``diff``, which embed it).
"""

from __future__ import annotations

from pathlib import Path

from pipeline.ablations.match import RowMatch
from pipeline.ablations.registry import INFER_TAGS, TRAIN_TAGS
from pipeline.ablations.render import PLOT_METRIC, TableResult
from pipeline.evaluation.outputs import save_figure
from pipeline.retrieval import strategy_label

AXIS_LABELS = {"n": "tags per training draw N = tags at inference M", "m": "tags at inference M (training N = 6)"}
PLOT_KEYS = {"n": TRAIN_TAGS, "m": INFER_TAGS}  # a table's ``plot`` coordinate -> the params key it reads


def _x(row: RowMatch, plot: str) -> int:
    return int(row.values[PLOT_KEYS[plot]])


def points(res: TableResult) -> dict[str, list[tuple[int, float, float, float]]]:
    """Per strategy, ``(x, value, lo, hi)`` of every row with a run, sorted by x (the row's value
    of the table's ``plot`` coordinate)."""
    t = res.match.table
    out: dict[str, list[tuple[int, float, float, float]]] = {}
    for row in res.match.rows:
        by = res.values.get(row.label)
        if by is None:
            continue
        x = _x(row, t.plot)
        for s in t.strategies:
            if s in by:
                cell = by[s]
                out.setdefault(s, []).append((x, cell[PLOT_METRIC], cell[f"{PLOT_METRIC}_lo"],
                                              cell[f"{PLOT_METRIC}_hi"]))
    return {s: sorted(v) for s, v in out.items()}


def plot_png(res: TableResult, path: str | Path, dpi: int = 120,
             baseline: dict[str, float] | None = None, baseline_name: str = "DiCoSA") -> None:
    """Write :func:`figure` as a PNG."""
    save_figure(figure(res, baseline, baseline_name), path, dpi)


def figure(res: TableResult, baseline: dict[str, float] | None = None, baseline_name: str = "DiCoSA"):
    """A line and a shaded interval per strategy, the reference row marked and, with ``baseline``
    (strategy -> R@1 of a model that reads no tags, so one value for every x), a dashed level per
    strategy in its colour, as the paper compares Fig. 4b with DiCoSA."""
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

    t = res.match.table
    fig = Figure(figsize=(5.6, 3.8))
    ax = fig.subplots()
    curves = points(res)
    for s, pts in curves.items():
        xs, ys, lo, hi = zip(*pts)
        (line,) = ax.plot(xs, ys, marker="o", markersize=4, label=strategy_label(s))
        ax.fill_between(xs, lo, hi, color=line.get_color(), alpha=0.15, linewidth=0)
        if baseline and s in baseline:
            ax.axhline(baseline[s], color=line.get_color(), linestyle="--", linewidth=1,
                       label=f"{baseline_name} {strategy_label(s)}")
    ref = res.match.reference
    if ref.run is not None:
        ax.axvline(_x(ref, t.plot), color="grey", linestyle=":",
                   linewidth=1, label=f"reference {ref.label}")
    ax.set_xlabel(AXIS_LABELS.get(t.plot, t.plot))
    ax.set_ylabel(f"{t.variant} {t.direction} R@1 (%)")
    ax.set_title(f"{t.title}; bands: {int(round(100 * res.level))}% intervals", fontsize=9)
    xs_all = sorted({p[0] for pts in curves.values() for p in pts})
    if xs_all:
        ax.set_xticks(xs_all)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the curves, not over them
    return fig
