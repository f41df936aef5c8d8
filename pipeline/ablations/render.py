"""A matched paper table (:mod:`pipeline.ablations.match`) as numbers, Markdown, JSON and CSV.

Cells: each row's own metrics file, ``value [lo, hi]`` (its bootstrap interval); for a row other
than the reference, ``Δ [lo, hi]``: the paired bootstrap difference row − reference on the same
test queries (:func:`pipeline.compare.paired.compare_results`), its p and the Holm-adjusted p over
all the Δ cells of the table (one family: every row, strategy and metric shown). No Δ when the two
runs do not share the test split (another dataset or data seed) or a run's per-query ranks are
not in the DVC cache; the table says which and why.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Any, Callable

from pipeline.ablations.match import Run, TableMatch, on_head
from pipeline.compare.config import BootstrapSettings
from pipeline.compare.paired import compare_results
from pipeline.compare.tables import DIRECTION_NAMES, METRIC_NAMES, _cell, _family_line
from pipeline.evaluation.results import EvalResult
from pipeline.retrieval import strategy_label
from pipeline.retrieval.uncertainty import holm

PAPER_METRICS = ("R1", "R5", "R10", "MdR", "MnR")
PLOT_METRIC = "R1"  # Fig. 4's y axis


@dataclass
class TableResult:
    match: TableMatch
    values: dict[str, dict[str, dict[str, float]]]  # row label -> strategy -> {R1, R1_lo, R1_hi, ...}
    diffs: dict[str, dict[str, dict[str, dict[str, float]]]]  # label -> strategy -> metric -> {diff, lo, hi, p, p_holm}
    no_diff: dict[str, str]                           # label -> why it has no paired Δ
    level: float
    resamples: int | None
    paired: bool = True                               # False: no Δ asked for (--no-diff)


def shown(metrics: dict[str, Any], match: TableMatch) -> dict[str, dict[str, float]]:
    """The table's metrics and their interval bounds, per strategy, from one metrics file."""
    t = match.table
    by = metrics.get(t.direction, {})
    return {s: {k: by[s][k] for m in t.metrics for k in (m, f"{m}_lo", f"{m}_hi")} for s in t.strategies if s in by}


def _same_data(a: Run, b: Run) -> bool:
    # the test split is a function of the prepare section (dataset, data seed, fractions)
    return a.params.get("prepare") == b.params.get("prepare")


def build(match: TableMatch, settings: BootstrapSettings | None, load: Callable[[Run], EvalResult]) -> TableResult:
    """Values of every row with a run and, with ``settings``, the paired Δ of each to the reference."""
    t = match.table
    values = {r.label: shown(r.run.metrics, match) for r in match.rows if r.run}
    diffs: dict[str, dict] = {}
    no_diff: dict[str, str] = {}
    ref = match.reference.run
    for row in match.rows:
        if settings is None or row is match.reference or row.run is None:
            continue
        if ref is None:
            no_diff[row.label] = f"the reference row {match.reference.label} has no run"
        elif not _same_data(row.run, ref):
            no_diff[row.label] = "another dataset or data seed (prepare.* differs): no shared test queries"
        else:
            try:
                out = compare_results(load(row.run), load(ref), settings)[t.direction]
            except (ValueError, OSError) as err:  # CompareError is a ValueError; a run not in the cache too
                no_diff[row.label] = str(err)
                continue
            diffs[row.label] = {s: {m: dict(out[s][m]) for m in t.metrics} for s in t.strategies if s in out}
    cells = [(label, s, m) for label, by in diffs.items() for s, ms in by.items() for m in ms]
    for (label, s, m), p in zip(cells, holm([diffs[label][s][m]["p"] for label, s, m in cells])):
        diffs[label][s][m]["p_holm"] = p
    return TableResult(match, values, diffs, no_diff, settings.level if settings else 0.95,
                       settings.resamples if settings else None, settings is not None)


def _run_text(run: Run | None) -> str:
    if run is None:
        return "missing"
    return "default run (HEAD)" if run.name == "HEAD" else run.name


def markdown(res: TableResult, interval_level: float = 0.95) -> str:
    """The table in the paper's layout: rows = swept values, columns = metrics, one block per strategy."""
    m, t = res.match, res.match.table
    pct, dpct = f"{100 * interval_level:g}", f"{100 * res.level:g}"
    lines = [f"# {t.title}", "", t.note, ""]
    if not t.built:
        lines += ["Missing rows: " + ", ".join(r.label for r in m.rows) + ".", ""]
        return "\n".join(lines + _published(m)) + "\n"
    keys = ", ".join(f"`{k}`" for k in t.keys)
    delta = (f"Δ = paired difference to the reference row [{dpct}% interval], its p and Holm-adjusted p."
             if res.paired else "No Δ: paired differences not computed (--no-diff).")
    lines += [f"Sweeps {keys}; {t.variant}, {DIRECTION_NAMES[t.direction]}, test split. Reference row: "
              f"**{m.reference.label}**, run: {_run_text(m.reference.run)}. Cells: value [{pct}% interval]; "
              f"{delta}", ""]
    n_cells = sum(len(ms) for by in res.diffs.values() for ms in by.values())
    if n_cells:
        lines += [_family_line(n_cells, res.level, res.resamples), ""]
    strategies = [s for s in t.strategies if any(s in v for v in res.values.values())]
    for s in strategies:
        lines += [f"**{DIRECTION_NAMES[t.direction]}, {strategy_label(s)}**", "",
                  f"| {t.axis} | run | " + " | ".join(METRIC_NAMES[x] for x in t.metrics) + " |",
                  "|---|---|" + "---:|" * len(t.metrics)]
        for row in m.rows:
            vals = res.values.get(row.label, {}).get(s)
            diff = res.diffs.get(row.label, {}).get(s)
            cells = ([_cell(vals, x, diff, diff[x]["p_holm"] if diff else None, res.level, res.resamples)
                      for x in t.metrics] if vals else ["–"] * len(t.metrics))
            lines.append(f"| {row.label} | {_run_text(row.run)} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += _runs_lines(res) + _published(m)
    return "\n".join(lines) + "\n"


def _runs_lines(res: TableResult) -> list[str]:
    m = res.match
    out = []
    for row in m.rows:
        if len(row.runs) > 1:
            out.append(f"- {row.label}: {len(row.runs)} runs with these params; shown: {_run_text(row.run)}; "
                       f"also: {', '.join(r.name for r in row.runs[1:])}")
        if row.run and not on_head(row.run, m.head):
            base = (row.run.baseline or "?")[:7]
            out.append(f"- {row.label}: {row.run.name} ran on commit {base}, not on HEAD's code")
    out += [f"- no Δ for {label}: {why}" for label, why in res.no_diff.items()]
    missing = [r.label for r in m.rows if not r.runs]
    if missing:
        out.append(f"- missing rows ({len(missing)}): {', '.join(missing)}; queue them with:")
        out += ["", "```sh", *m.queue, "dvc queue start", "```"]
    return (["Runs:", ""] + out + [""]) if out else []


def _published(m: TableMatch) -> list[str]:
    rows = [r for r in m.rows if r.row and r.row.paper]
    if not rows:
        return []
    out = ["Published (MSR-VTT, DSL, text-to-video; for orientation, not comparable with the synthetic set):", "",
           f"| {m.table.axis} | " + " | ".join(METRIC_NAMES[x] for x in PAPER_METRICS) + " |",
           "|---|" + "---:|" * len(PAPER_METRICS)]
    for r in rows:
        out.append(f"| {r.row.label} | " + " | ".join(f"{v:g}" for v in r.row.paper) + " |")
    return out + [""]


def to_json(res: TableResult, digits: int = 3) -> dict[str, Any]:
    """The same numbers as the Markdown, nested like the metrics files (DVC metrics style)."""
    m, t = res.match, res.match.table
    rows: dict[str, Any] = {}
    for row in m.rows:
        entry: dict[str, Any] = {"run": row.run.name if row.run else None}
        if row.run:
            entry.update(rev=row.run.rev, others=[r.name for r in row.runs[1:]],
                         values={s: {k: round(v, digits) for k, v in by.items()} for s, by in
                                 res.values[row.label].items()})
        if row.label in res.diffs:
            entry["diff"] = {s: {x: {k: round(v, digits if k.startswith(("diff", "lo", "hi")) else 6)
                                     for k, v in d.items()} for x, d in by.items()}
                             for s, by in res.diffs[row.label].items()}
        if row.label in res.no_diff:
            entry["no_diff"] = res.no_diff[row.label]
        rows[row.label] = entry
    return {"table": t.id, "title": t.title, "keys": list(t.keys), "variant": t.variant, "direction": t.direction,
            "reference": m.reference.label, "level": res.level, "resamples": res.resamples, "built": t.built,
            "rows": rows, "missing": [r.label for r in m.rows if not r.runs], "queue": m.queue}


def plot_csv(res: TableResult) -> str:
    """Fig. 4 for ``dvc plots``: one line per run, x = "n-m" (and n, m as numbers), R@1 per strategy
    with its interval's bounds (``<strategy>_lo``, ``<strategy>_hi``)."""
    t = res.match.table
    strategies = [s for s in t.strategies if any(s in v for v in res.values.values())]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["x", "n", "m", *[f"{s}{b}" for s in strategies for b in ("", "_lo", "_hi")]])
    for row in res.match.rows:
        if row.label not in res.values:
            continue
        n, m_ = row.label.split("-")
        by = res.values[row.label]
        writer.writerow([row.label, n, m_, *[by[s][f"{PLOT_METRIC}{b}"] if s in by else "" for s in strategies
                                             for b in ("", "_lo", "_hi")]])
    return buf.getvalue()
