"""The paper-style tables as Markdown: Tab. 2 (variants x strategies) and Tab. 4 (ablations).

Every cell is ``value [lo, hi]`` (the metric and its bootstrap interval, 95% by default) and, for a variant
other than the baseline, ``Δ diff [lo, hi]`` (the paired difference to the baseline on the same
test queries; bold when its interval excludes 0).
"""

from __future__ import annotations

from typing import Any

from pipeline.retrieval import strategy_label

DIRECTION_NAMES = {"t2v": "text-to-video", "v2t": "video-to-text"}
METRIC_NAMES = {"R1": "R@1", "R5": "R@5", "R10": "R@10", "R50": "R@50", "MdR": "MdR", "MnR": "MnR"}


def _cell(values: dict[str, float], metric: str, diff: dict[str, float] | None) -> str:
    text = f"{values[metric]:.1f} [{values[f'{metric}_lo']:.1f}, {values[f'{metric}_hi']:.1f}]"
    if diff is not None:
        d = diff[metric]
        delta = f"Δ {d['diff']:+.1f} [{d['lo']:+.1f}, {d['hi']:+.1f}]"
        if d["lo"] > 0 or d["hi"] < 0:
            delta = f"**{delta}**"
        text += f"<br>{delta}"
    return text


def _header(metrics: list[str], first: list[str]) -> list[str]:
    cols = first + [METRIC_NAMES[m] for m in metrics]
    return ["| " + " | ".join(cols) + " |", "|" + "---|" * len(first) + "---:|" * len(metrics)]


def table2(metrics_by_variant: dict[str, dict], diffs: dict[str, dict], variants: list[str], baseline: str,
           metrics: list[str], order: dict[str, list[str]]) -> list[str]:
    """Tab. 2-like: per direction, rows = (strategy, variant); strategies in evaluation ``order``."""
    out = []
    for direction in ("t2v", "v2t"):
        out += [f"**{DIRECTION_NAMES[direction]}**", ""] + _header(metrics, ["strategy", "variant"])
        strategies = [s for s in order[direction] if all(s in metrics_by_variant[v][direction] for v in variants)]
        for strategy in strategies:
            for v in variants:
                diff = None if v == baseline else diffs.get(v, {}).get(direction, {}).get(strategy)
                cells = [_cell(metrics_by_variant[v][direction][strategy], m, diff) for m in metrics]
                out.append(f"| {strategy_label(strategy)} | {v} | " + " | ".join(cells) + " |")
        out.append("")
    return out


def table4(metrics_by_variant: dict[str, dict], diffs: dict[str, dict], variants: list[str], baseline: str,
           metrics: list[str], descriptions: dict[str, str], order: list[str]) -> list[str]:
    """Tab. 4-like: rows = ablation variants, columns = t2v metrics, per strategy."""
    out = []
    strategies = [s for s in order if all(s in metrics_by_variant[v]["t2v"] for v in variants)]
    for strategy in strategies:
        out += [f"**text-to-video, {strategy_label(strategy)}**", ""] + _header(metrics, ["variant", "what"])
        for v in variants:
            diff = None if v == baseline else diffs.get(v, {}).get("t2v", {}).get(strategy)
            cells = [_cell(metrics_by_variant[v]["t2v"][strategy], m, diff) for m in metrics]
            out.append(f"| {v} | {descriptions.get(v, '')} | " + " | ".join(cells) + " |")
        out.append("")
    return out


def controls_lines(controls: dict[str, Any], metrics: list[str]) -> list[str]:
    """Chance and (when known) the oracle ceiling, as a small table."""
    recall = [m for m in metrics if m.startswith("R")]
    out = ["| reference | direction | " + " | ".join(METRIC_NAMES[m] for m in recall) + " |",
           "|---|---|" + "---:|" * len(recall)]
    for name, by in controls.items():
        for direction, values in by.items():
            if isinstance(values, dict) and all(m in values for m in recall):
                out.append(f"| {name} | {direction} | " + " | ".join(f"{values[m]:.1f}" for m in recall) + " |")
    return out + [""]


def paper_lines(paper: dict[str, Any], pct: str) -> list[str]:
    """The paper's Tab. 2 beside the measurement, and the published gain beside the paired one."""
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
        out += [f"**MAC-VR − DiCoSA** ({mac} − {dic}, paired on the same test queries): is the published gain "
                "distinguishable from noise?", "",
                "| strategy | metric | published gain | measured Δ [interval] | p | published gain in interval | "
                "interval excludes 0 |", "|---|---|---:|---|---:|---|---|"]
        for strategy in order:
            for m, g in paper["gain"].get(strategy, {}).items():
                out.append(f"| {strategy_label(strategy)} | {METRIC_NAMES[m]} | {g['published']:+.1f} | "
                           f"{g['measured']:+.1f} [{g['lo']:+.1f}, {g['hi']:+.1f}] | {g['p']:.3f} | "
                           f"{'yes' if g['published_inside'] else 'no'} | {'yes' if g['excludes_zero'] else 'no'} |")
        out.append("")
    return out


def render(report: dict[str, Any], config) -> str:
    """The whole Markdown document of the compare stage."""
    m, base = report["metrics"], config.baseline
    pct = f"{100 * config.bootstrap.level:g}"
    lines = ["# Variants compared", "",
             f"Test split: {report['counts']['test_captions']} captions, {report['counts']['test_videos']} videos. "
             f"Cells: value [{pct}% interval]; Δ = paired difference to **{base}** [{pct}% interval] "
             f"(bold: the interval excludes 0). Intervals: cluster bootstrap over test videos "
             f"({config.bootstrap.resamples} resamples).", ""]
    if report.get("paper"):
        lines += ["## The paper's Tab. 2 beside the measurement", ""] + paper_lines(report["paper"], pct)
    if report.get("controls"):
        lines += ["## Reference points", ""] + controls_lines(report["controls"], config.metrics)
    t2 = [v for v in config.table2 if v in m]
    if t2:
        lines += ["## Tab. 2-like: variants x inference strategies", ""] + table2(
            m, report["paired"], t2, base, config.metrics, report["strategies"])
    t4 = [v for v in config.table4 if v in m]
    if t4:
        lines += ["## Tab. 4-like: ablations", ""] + table4(
            m, report["paired"], t4, base, config.metrics, report.get("descriptions", {}), report["strategies"]["t2v"])
    return "\n".join(lines) + "\n"
