"""The paper-style tables as Markdown: Tab. 2 (variants x strategies) and Tab. 4 (ablations).

Every cell is ``value [lo, hi]`` (the metric and its bootstrap interval, 95% by default) and, for a variant
other than the baseline, ``Δ diff [lo, hi]`` (the paired difference to the baseline on the same
test queries) with its p-value and Holm-adjusted p-value. p is the percentile interval's own test,
inverted (:func:`pipeline.retrieval.uncertainty.percentile_p`: p < 1 - level iff the interval excludes
0). Multiplicity: each table is one family, its Δ cells (Tab. 2-like: every direction, strategy,
variant other than the baseline and metric shown; Tab. 4-like: every strategy, ablation and metric
shown), Holm–Bonferroni within it; a Δ is bold when its Holm-adjusted p < 1 - level. Intervals are
not adjusted.
"""

from __future__ import annotations

import math
from typing import Any

from pipeline.retrieval import strategy_label
from pipeline.retrieval.uncertainty import alpha_of, holm, p_resolution

DIRECTION_NAMES = {"t2v": "text-to-video", "v2t": "video-to-text"}
METRIC_NAMES = {"R1": "R@1", "R5": "R@5", "R10": "R@10", "R50": "R@50", "MdR": "MdR", "MnR": "MnR"}


Cell = tuple[str, str, str, str]  # (variant, direction, strategy, metric): one Δ of a table


def at_floor(p: float, resamples: int | None) -> bool:
    """Whether ``p`` is the bootstrap's floor 2/B, an upper bound rather than a value (see
    :func:`pipeline.retrieval.uncertainty.percentile_p`)."""
    return bool(resamples) and p <= p_resolution(resamples) * (1 + 1e-9)


def p_text(p: float, bound: bool = False) -> str:
    """p with 3 decimals (2 significant digits below 0.01, so a small p never reads 0.000), or
    ``≤`` p when it is only an upper bound (rounded up so it stays true)."""
    if bound:
        up = math.ceil(round(p * 1e4, 6)) / 1e4  # 4 decimals: 2/1000 = 0.002, 2/300 -> 0.0067
        return f"≤{up:g}"
    return f"{p:.3f}" if p >= 0.01 or p == 0 else f"{p:.2g}"


def _cell(values: dict[str, float], metric: str, diff: dict[str, float] | None, p_holm: float | None = None,
          level: float = 0.95, resamples: int | None = None) -> str:
    text = f"{values[metric]:.1f} [{values[f'{metric}_lo']:.1f}, {values[f'{metric}_hi']:.1f}]"
    if diff is not None:
        d = diff[metric]
        delta = f"Δ {d['diff']:+.1f} [{d['lo']:+.1f}, {d['hi']:+.1f}]"
        if p_holm is not None and p_holm < alpha_of(level):  # the family-wise claim, not the single interval
            delta = f"**{delta}**"
        bound = at_floor(d["p"], resamples)  # then its Holm p, built on it, is an upper bound too
        text += f"<br>{delta}<br>p {p_text(d['p'], bound)}"
        if p_holm is not None:
            text += f", Holm {p_text(p_holm, bound)}"
    return text


def adjusted(diffs: dict[str, dict], cells: list[Cell]) -> dict[Cell, float]:
    """Holm-adjusted p of every cell of one family (``diffs[variant][direction][strategy][metric]``)."""
    return dict(zip(cells, holm([diffs[v][d][s][m]["p"] for v, d, s, m in cells])))


def _family_line(n: int, level: float, resamples: int | None) -> str:
    """The table's family, its size and rule; and when B resamples are too few for any cell to pass."""
    alpha = alpha_of(level)
    line = f"Bold Δ: Holm-adjusted p < {alpha:g} over the {n} Δ cells of this table; intervals are not adjusted."
    if resamples and n * p_resolution(resamples) >= alpha:
        # the smallest Holm-adjusted p is n x the floor 2/B: say so rather than leave the reader guessing
        line += (f" With {resamples} resamples no p goes below {p_resolution(resamples):g}, so no Δ of {n} can "
                 f"pass; that needs more than {math.ceil(2 * n / alpha)} resamples (compare.bootstrap.resamples).")
    return line


def _table2_strategies(metrics_by_variant: dict[str, dict], variants: list[str], direction: str,
                       order: dict[str, list[str]]) -> list[str]:
    return [s for s in order[direction] if all(s in metrics_by_variant[v][direction] for v in variants)]


def table2_family(metrics_by_variant: dict[str, dict], diffs: dict[str, dict], variants: list[str], baseline: str,
                  metrics: list[str], order: dict[str, list[str]]) -> list[Cell]:
    """The Δ cells :func:`table2` shows: its multiplicity family."""
    return [(v, direction, strategy, m) for direction in ("t2v", "v2t")
            for strategy in _table2_strategies(metrics_by_variant, variants, direction, order)
            for v in variants if v != baseline and strategy in diffs.get(v, {}).get(direction, {})
            for m in metrics]


def table4_family(metrics_by_variant: dict[str, dict], diffs: dict[str, dict], variants: list[str], baseline: str,
                  metrics: list[str], order: list[str]) -> list[Cell]:
    """The Δ cells :func:`table4` shows: its multiplicity family."""
    shown = [s for s in order if all(s in metrics_by_variant[u]["t2v"] for u in variants)]
    return [(v, "t2v", strategy, m) for strategy in shown
            for v in variants if v != baseline and strategy in diffs.get(v, {}).get("t2v", {})
            for m in metrics]


def families(report: dict[str, Any], config) -> dict[str, dict[Cell, float]]:
    """``{"tab2": {cell: Holm p}, "tab4": ...}``: each table's Δ cells, adjusted within the table
    (the same selection :func:`render` shows)."""
    m, paired = report["metrics"], report["paired"]
    t2, t4 = [v for v in config.table2 if v in m], [v for v in config.table4 if v in m]
    order = report["strategies"]
    return {"tab2": adjusted(paired, table2_family(m, paired, t2, config.baseline, config.metrics, order)),
            "tab4": adjusted(paired, table4_family(m, paired, t4, config.baseline, config.metrics, order["t2v"]))}


def _header(metrics: list[str], first: list[str]) -> list[str]:
    cols = first + [METRIC_NAMES[m] for m in metrics]
    return ["| " + " | ".join(cols) + " |", "|" + "---|" * len(first) + "---:|" * len(metrics)]


def table2(metrics_by_variant: dict[str, dict], diffs: dict[str, dict], variants: list[str], baseline: str,
           metrics: list[str], order: dict[str, list[str]], level: float = 0.95,
           resamples: int | None = None) -> list[str]:
    """Tab. 2-like: per direction, rows = (strategy, variant); strategies in evaluation ``order``.
    Bold: Holm-adjusted p < 1 - ``level`` over all the Δ cells of the table (both directions)."""
    holm_p = adjusted(diffs, table2_family(metrics_by_variant, diffs, variants, baseline, metrics, order))
    out = [_family_line(len(holm_p), level, resamples), ""] if holm_p else []
    for direction in ("t2v", "v2t"):
        out += [f"**{DIRECTION_NAMES[direction]}**", ""] + _header(metrics, ["strategy", "variant"])
        for strategy in _table2_strategies(metrics_by_variant, variants, direction, order):
            for v in variants:
                diff = None if v == baseline else diffs.get(v, {}).get(direction, {}).get(strategy)
                cells = [_cell(metrics_by_variant[v][direction][strategy], m, diff,
                               holm_p.get((v, direction, strategy, m)), level, resamples) for m in metrics]
                out.append(f"| {strategy_label(strategy)} | {v} | " + " | ".join(cells) + " |")
        out.append("")
    return out


def table4(metrics_by_variant: dict[str, dict], diffs: dict[str, dict], variants: list[str], baseline: str,
           metrics: list[str], descriptions: dict[str, str], order: list[str], level: float = 0.95,
           resamples: int | None = None) -> list[str]:
    """Tab. 4-like: rows = ablation variants, columns = t2v metrics, per strategy.
    Bold: Holm-adjusted p < 1 - ``level`` over all the Δ cells of the table (every strategy)."""
    holm_p = adjusted(diffs, table4_family(metrics_by_variant, diffs, variants, baseline, metrics, order))
    out = [_family_line(len(holm_p), level, resamples), ""] if holm_p else []
    strategies = [s for s in order if all(s in metrics_by_variant[v]["t2v"] for v in variants)]
    for strategy in strategies:
        out += [f"**text-to-video, {strategy_label(strategy)}**", ""] + _header(metrics, ["variant", "what"])
        for v in variants:
            diff = None if v == baseline else diffs.get(v, {}).get("t2v", {}).get(strategy)
            cells = [_cell(metrics_by_variant[v]["t2v"][strategy], m, diff, holm_p.get((v, "t2v", strategy, m)),
                           level, resamples) for m in metrics]
            out.append(f"| {v} | {descriptions.get(v, '')} | " + " | ".join(cells) + " |")
        out.append("")
    return out


CONTROL_LABELS = {"chance": "chance",
                  "consistent_uniform": "consistent, uniform order (reference, not a ceiling)",
                  "bayes_ceiling": "Bayes-optimal (the ceiling)"}


def controls_lines(controls: dict[str, Any], metrics: list[str]) -> list[str]:
    """Chance, the consistency reference and the Bayes ceiling (when known) as a small table, then
    each variant's share of the ceiling (``share_of_ceiling``, :func:`pipeline.compare.run.share_of_ceiling`)."""
    recall = [m for m in metrics if m.startswith("R")]
    out = ["| reference | direction | " + " | ".join(METRIC_NAMES[m] for m in recall) + " |",
           "|---|---|" + "---:|" * len(recall)]
    for name, by in controls.items():
        if name == "share_of_ceiling":
            continue
        for direction, values in by.items():
            if isinstance(values, dict) and all(m in values for m in recall):
                out.append(f"| {CONTROL_LABELS.get(name, name)} | {direction} | "
                           + " | ".join(f"{values[m]:.1f}" for m in recall) + " |")
    out.append("")
    if "bayes_ceiling" in controls:
        out += ["Expected R@k with the synthetic generator's truth (ties in random order). The Bayes-optimal "
                "ranking orders by the exact likelihood of each caption under each test scene: no ranking can "
                "expect more. The consistency reference ignores those likelihoods, so models can beat it "
                "(`pipeline/data/synth_oracle.py`).", ""]
    share = controls.get("share_of_ceiling")
    if not share:
        return out
    shown = [m for m in recall if all(m in v for v in share.values())]
    out += ["Share of the ceiling: a variant's R@k as a percentage of the Bayes ceiling's R@k, with no "
            "strategy and with its best one (highest R@1).", "",
            "| variant | direction | strategy | " + " | ".join(METRIC_NAMES[m] for m in shown) + " |",
            "|---|---|---|" + "---:|" * len(shown)]
    for key, values in share.items():
        variant, direction, which = key.split("/")
        label = strategy_label(values["strategy"])
        out.append(f"| {variant} | {direction} | {label if which == 'none' else f'best: {label}'} | "
                   + " | ".join(f"{values[m]:.1f}%" for m in shown) + " |")
    return out + [""]


def paper_lines(paper: dict[str, Any], pct: str, level: float = 0.95, resamples: int | None = None) -> list[str]:
    """The paper's Tab. 2 beside the measurement, and the published gain beside the paired one (its
    rows are one family: ``p_holm`` and ``significant_holm`` from :func:`pipeline.compare.run.paper_section`)."""
    metrics = ("R1", "R5", "R10", "MdR", "MnR")
    out = [f"Published: {paper['source']} ({paper['dataset']}, text-to-video). Cells: measured [{pct}% interval] "
           "· published; ✗ marks a published value outside the measured interval.", ""]
    out += _header(list(metrics), ["strategy", "variant (paper)"])
    order = ("none", "qb", "dsl")
    for strategy in order:
        for variant, row in paper["rows"].items():
            cells = row["t2v"].get(strategy)
            if not cells:
                continue
            text = []
            for m in metrics:
                c = cells.get(m)
                if c is None:
                    text.append("")
                    continue
                mark = " ✗" if c["outside"] else ""
                text.append(f"{c['measured']:.1f} [{c['lo']:.1f}, {c['hi']:.1f}] · {c['published']:g}{mark}")
            out.append(f"| {strategy_label(strategy)} | {variant} ({row['model']}) | " + " | ".join(text) + " |")
    outside = sum(c["outside"] for r in paper["rows"].values() for by in r["t2v"].values() for c in by.values())
    total = sum(len(by) for r in paper["rows"].values() for by in r["t2v"].values())
    out += ["", f"{outside} of {total} published values lie outside the measured {pct}% intervals.", ""]
    if paper.get("gain"):
        mac, dic = paper["gain_of"]
        alpha = alpha_of(level)
        out += [f"**MAC-VR − DiCoSA** ({mac} − {dic}, paired on the same test queries): is the published gain "
                "distinguishable from noise?", "",
                f"p: the paired percentile-bootstrap test (p < {alpha:g} iff the {pct}% interval excludes 0); "
                f"Holm p: adjusted over the {sum(len(by) for by in paper['gain'].values())} rows of this table; "
                f"significant (Holm): Holm p < {alpha:g}. Intervals are not adjusted.", "",
                "| strategy | metric | published gain | measured Δ [interval] | p | Holm p | "
                "published gain in interval | significant (Holm) |", "|---|---|---:|---|---:|---:|---|---|"]
        for strategy in order:
            for m, g in paper["gain"].get(strategy, {}).items():
                bound = at_floor(g["p"], resamples)
                out.append(f"| {strategy_label(strategy)} | {METRIC_NAMES[m]} | {g['published']:+.1f} | "
                           f"{g['measured']:+.1f} [{g['lo']:+.1f}, {g['hi']:+.1f}] | {p_text(g['p'], bound)} | "
                           f"{p_text(g['p_holm'], bound)} | {'yes' if g['published_inside'] else 'no'} | "
                           f"{'yes' if g['significant_holm'] else 'no'} |")
        out.append("")
    return out


def val_lines(val: dict[str, dict], metrics: list[str], order: dict[str, list[str]], pct: str) -> list[str]:
    """Each variant on the validation split (value [interval]): what recipes and settings are chosen
    on; the tables above are the test split, which is only reported."""
    first = next(iter(val.values()))
    out = [f"Validation split: {first['counts']['captions']} captions, {first['counts']['videos']} videos "
           f"(cells: value [{pct}% interval]). Choices (recipes, epochs, settings) are made on these numbers; "
           "the test split above is only reported.", ""]
    for direction in ("t2v", "v2t"):
        out += [f"**{DIRECTION_NAMES[direction]}**", ""] + _header(metrics, ["strategy", "variant"])
        for strategy in order[direction]:
            for v, by in val.items():
                values = by["metrics"].get(direction, {}).get(strategy)
                if values:
                    cells = [_cell(values, m, None) for m in metrics]
                    out.append(f"| {strategy_label(strategy)} | {v} | " + " | ".join(cells) + " |")
        out.append("")
    return out


def render(report: dict[str, Any], config) -> str:
    """The whole Markdown document of the compare stage."""
    m, base = report["metrics"], config.baseline
    pct = f"{100 * config.bootstrap.level:g}"
    alpha, resamples = alpha_of(config.bootstrap.level), config.bootstrap.resamples
    lines = ["# Variants compared", "",
             f"Test split: {report['counts']['test_captions']} captions, {report['counts']['test_videos']} videos. "
             f"Cells: value [{pct}% interval]; Δ = paired difference to **{base}** [{pct}% interval], its p "
             f"(the interval's own test, inverted: p < {alpha:g} iff the interval excludes 0) and its Holm-adjusted "
             f"p. Bold: Holm-adjusted p < {alpha:g} over the Δ cells of that table (each table is one family; "
             f"its size is stated under its heading); intervals are not adjusted. Intervals: cluster bootstrap "
             f"over test videos ({resamples} resamples). p never goes below 2/{resamples}: there at most about one "
             f"resample lies beyond 0, so such a p (and a Holm p built on it) is an upper bound, shown as ≤.", ""]
    if report.get("paper"):
        lines += ["## The paper's Tab. 2 beside the measurement", ""] + paper_lines(
            report["paper"], pct, config.bootstrap.level, resamples)
    if report.get("controls"):
        lines += ["## Reference points", ""] + controls_lines(report["controls"], config.metrics)
    t2 = [v for v in config.table2 if v in m]
    if t2:
        lines += ["## Tab. 2-like: variants x inference strategies", ""] + table2(
            m, report["paired"], t2, base, config.metrics, report["strategies"], config.bootstrap.level, resamples)
    t4 = [v for v in config.table4 if v in m]
    if t4:
        lines += ["## Tab. 4-like: ablations", ""] + table4(
            m, report["paired"], t4, base, config.metrics, report.get("descriptions", {}), report["strategies"]["t2v"],
            config.bootstrap.level, resamples)
    if report.get("val"):
        lines += ["## Validation split", ""] + val_lines(report["val"], config.metrics, report["strategies"], pct)
    return "\n".join(lines) + "\n"
