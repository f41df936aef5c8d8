"""The compare stage: every evaluated variant against the baseline, paired, plus the tables.

Writes ``metrics/comparison.json`` (a DVC metrics file: for every variant, the paired difference
to the baseline of each metric, per direction and strategy: ``R1_diff``, ``R1_lo``, ``R1_hi``,
``R1_p``; and the reference points) and ``metrics/tables.md`` (the Tab. 2- and Tab. 4-like
tables with intervals, and each variant on the validation split when there is one: choices are
made there). Reads the evaluation directories through
:class:`~pipeline.evaluation.results.EvalResult`.

``R1_p`` is the percentile interval's own test, inverted (``R1_p < 1 - level`` iff ``[R1_lo, R1_hi]``
excludes 0), for that one comparison. The tables claim many differences at once, so each table is a
family corrected with Holm–Bonferroni, and ``comparison.json`` states the families under
``corrections`` (``dvc metrics diff`` lists them beside the raw values)::

    corrections.tab2.cells                                  # family size: the Tab. 2-like Δ cells
    corrections.tab2.<variant>_vs_<baseline>.<direction>.<strategy>.R1_p_holm
    corrections.tab4.cells, corrections.tab4.<...>.R1_p_holm  # the Tab. 4-like table (t2v only)
    corrections.paper_gain.cells                            # rows of the MAC-VR - DiCoSA gain table

A cell shown in both tables has one adjusted p per family; a metric or variant no table shows is in
no family (its ``_p`` stands alone). The gain rows carry their adjusted p in ``paper.gain.<strategy>.
<metric>.p_holm`` with ``significant_holm`` (``p_holm < 1 - level``); their ``excludes_zero`` (the
unadjusted interval excludes 0) equals ``p < 1 - level`` (the same test; p never goes below 2/B,
B = ``compare.bootstrap.resamples``, so a family of N needs B > 2N / (1 - level) for any Holm claim).
Intervals are never adjusted.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from pipeline.compare.config import CompareConfig
from pipeline.compare.paired import compare_results, flatten, round_p
from pipeline.compare.tables import families, render
from pipeline.evaluation.results import EvalResult
from pipeline.io import atomic_path, write_json
from pipeline.retrieval.uncertainty import alpha_of, holm

log = logging.getLogger(__name__)


def controls(result: EvalResult, truth: Path | None,
             metrics: dict[str, Any] | None = None) -> dict[str, Any]:
    """Chance; with the synthetic generator's truth, the consistency reference
    (``consistent_uniform``: rank uniformly among the test videos consistent with every fact a
    caption states; a reference, *not* a ceiling) and the ceiling (``bayes_ceiling``: rank by the
    exact likelihood of each caption under each scene); with ``metrics`` (``{variant: metrics}``)
    too, each variant's ``share_of_ceiling`` (:func:`share_of_ceiling`). All are expected R@k in
    percent (:mod:`pipeline.data.synth_oracle`)."""
    import numpy as np

    from pipeline.data.synth_oracle import chance, controls as truth_controls, load_truth

    caption_video = result.ranks["t2v"]["column"].to_numpy(np.int64)
    rand = chance(caption_video, result.n_videos)
    out: dict[str, Any] = {"chance": {"t2v": {f"R{k}": v for k, v in rand.t2v.items()},
                                      "v2t": {f"R{k}": v for k, v in rand.v2t.items()}}}
    if truth is not None and Path(truth).is_file():
        found = truth_controls(load_truth(truth), "test", list(result.ranks["v2t"]["video_id"]))
        out["consistent_uniform"] = {d: found["consistent_uniform"][d] for d in ("t2v", "v2t")}
        if "bayes_ceiling" in found:  # truth files written before the caption plans have none
            out["bayes_ceiling"] = {d: found["bayes_ceiling"][d] for d in ("t2v", "v2t")}
            if metrics:
                out["share_of_ceiling"] = share_of_ceiling(metrics, out["bayes_ceiling"])
    return out


def share_of_ceiling(metrics: dict[str, Any], ceiling: dict[str, dict[str, float]]) -> dict[str, Any]:
    """Each variant's recall as a percentage of the ceiling's, without a strategy and with its best.

    ``{"<variant>/<direction>/none" | "<variant>/<direction>/best": {"R1": %, ..., "strategy": s}}``
    for the recalls the ceiling has; "best" is the strategy with the highest R@1 (then R@5, R@10;
    the first evaluated on a tie). Two levels deep so ``comparison.json`` tracks the numbers.
    """
    out: dict[str, Any] = {}
    for variant, by_direction in metrics.items():
        for direction, top in ceiling.items():
            strategies = by_direction.get(direction, {})
            ks = [m for m in top if all(m in v for v in strategies.values())]
            if not strategies or not ks:
                continue
            best = max(strategies, key=lambda s: tuple(strategies[s][m] for m in ks))
            for which, strategy in (("none", "none"), ("best", best)):
                if strategy in strategies:
                    values = {m: 100.0 * strategies[strategy][m] / top[m] for m in ks}
                    out[f"{variant}/{direction}/{which}"] = {**values, "strategy": strategy}
    return out


def paper_section(config: CompareConfig, dataset: str | None, metrics: dict[str, Any],
                  paired: dict[str, Any]) -> dict[str, Any]:
    """The paper's Tab. 2 beside the measurement: per mapped variant and t2v strategy, each metric's
    published value, measured value and interval (``outside``: the published value is not in it);
    and, when the paper's two models are both evaluated and one is the baseline, the published gain
    beside the measured paired difference."""
    from pipeline.released.paper import beside, paper_tab2, published

    if not dataset or dataset not in paper_tab2()["values"]:
        return {}
    rows: dict[str, Any] = {}
    for variant, model in config.paper.items():
        values = published(dataset, model)
        if variant not in metrics or values is None:
            continue
        rows[variant] = {"model": paper_tab2()["models"][model],
                         "t2v": {s: beside(metrics[variant]["t2v"][s], values[s])
                                 for s in values if s in metrics[variant]["t2v"]}}
    gain: dict[str, Any] = {}
    by_model = {m: v for v, m in config.paper.items() if v in rows}
    if {"macvr", "dicosa"} <= set(by_model) and config.baseline in (by_model["macvr"], by_model["dicosa"]):
        other = by_model["macvr"] if config.baseline == by_model["dicosa"] else by_model["dicosa"]
        sign = 1.0 if other == by_model["macvr"] else -1.0  # always MAC-VR - DiCoSA
        mac, dic = published(dataset, "macvr"), published(dataset, "dicosa")
        for strategy, diffs in paired.get(other, {}).get("t2v", {}).items():
            if strategy not in mac:
                continue
            gain[strategy] = {}
            for metric, d in diffs.items():
                if metric not in mac[strategy]:
                    continue
                lo, hi = sorted((sign * d["lo"], sign * d["hi"]))
                pub = float(mac[strategy][metric]) - float(dic[strategy][metric])
                gain[strategy][metric] = {"published": round(pub, 4), "measured": sign * d["diff"], "lo": lo, "hi": hi,
                                          "p": d["p"], "published_inside": lo <= pub <= hi,
                                          "excludes_zero": lo > 0 or hi < 0}
    # the gain table's rows are one family: Holm over all of them
    rows_of = [(s, m) for s, by in gain.items() for m in by]
    for (s, m), p_holm in zip(rows_of, holm([gain[s][m]["p"] for s, m in rows_of])):
        gain[s][m].update(p_holm=p_holm, significant_holm=p_holm < alpha_of(config.bootstrap.level))
    return {"dataset": dataset, "source": paper_tab2()["source"], "rows": rows,
            "gain": gain, "gain_of": [by_model.get("macvr"), by_model.get("dicosa")]} if rows else {}


def corrections(by_family: dict[str, dict[tuple, float]], baseline: str, paper: dict[str, Any],
                digits: int = 3) -> dict[str, Any]:
    """``comparison.json``'s ``corrections``: per family its size and every Holm-adjusted p, under the
    same path as the raw ``_p`` (``<variant>_vs_<baseline>.<direction>.<strategy>.<metric>_p_holm``)."""
    out: dict[str, Any] = {}
    for family, cells in by_family.items():
        tree: dict[str, Any] = {"cells": len(cells)}
        for (variant, direction, strategy, metric), p in cells.items():
            leaf = tree.setdefault(f"{variant}_vs_{baseline}", {}).setdefault(direction, {}).setdefault(strategy, {})
            leaf[f"{metric}_p_holm"] = round_p(p, digits)
        out[family] = tree
    if paper and paper.get("gain"):
        out["paper_gain"] = {"cells": sum(len(by) for by in paper["gain"].values())}
    return out


def prepared_dataset(videos: str | Path | None) -> str | None:
    """The prepared dataset's name (``videos.parquet``'s ``dataset`` column), or None."""
    if videos is None or not Path(videos).is_file():
        return None
    from pipeline.io import read_parquet

    names = read_parquet(videos, columns=["dataset"])["dataset"].unique()
    return str(names[0]) if len(names) == 1 else None


def compare_variants(config: CompareConfig, variants: list[str], eval_dir: str | Path, out_json: str | Path,
                     out_md: str | Path, truth: str | Path | None = None,
                     videos: str | Path | None = None) -> dict[str, Any]:
    """Compare every variant in ``variants`` with ``config.baseline``; write both outputs.

    ``videos``: the prepared ``videos.parquet`` (its dataset selects the paper's published values)."""
    eval_dir = Path(eval_dir)
    if config.baseline not in variants:
        raise ValueError(f"compare.baseline {config.baseline!r} is not one of the variants {variants}")
    results = {v: EvalResult.read(eval_dir / v) for v in variants}
    base = results[config.baseline]
    paired = {v: compare_results(r, base, config.bootstrap) for v, r in results.items() if v != config.baseline}
    from pipeline.train.variants import VARIANTS

    report = {
        "baseline": config.baseline,
        "counts": base.info["counts"],
        "strategies": {d: base.strategies(d) for d in ("t2v", "v2t")},  # evaluation order
        "metrics": {v: r.metrics for v, r in results.items()},
        "paired": paired,
        "controls": controls(base, None if truth is None else Path(truth), {v: r.metrics for v, r in results.items()}),
        "descriptions": {v: VARIANTS.get(v).description for v in variants if v in VARIANTS},
        "val": {v: r.info["val"] for v, r in results.items() if r.info.get("val")},
    }
    report["paper"] = paper_section(config, prepared_dataset(videos), report["metrics"], paired)
    tracked = {f"{v}_vs_{config.baseline}": flatten(d) for v, d in paired.items()}
    tracked["controls"] = {name: {d: {k: round(float(x), 2) for k, x in by.items() if isinstance(x, (int, float))}
                                  for d, by in values.items() if isinstance(by, dict)}
                           for name, values in report["controls"].items()}
    if report["paper"]:
        tracked["paper"] = {"rows": {v: {s: {m: {k: (round(x, 2) if isinstance(x, float) else x) for k, x in c.items()}
                                             for m, c in by.items()} for s, by in r["t2v"].items()}
                                     for v, r in report["paper"]["rows"].items()},
                            "gain": {s: {m: {k: (round_p(x) if k in ("p", "p_holm") else round(x, 3)) if isinstance(x, float)
                                             else x for k, x in c.items()}
                                         for m, c in by.items()} for s, by in report["paper"]["gain"].items()}}
    tracked["corrections"] = corrections(families(report, config), config.baseline, report["paper"])
    write_json(tracked, out_json)
    with atomic_path(out_md) as tmp:
        tmp.write_text(render(report, config))
    for v, d in paired.items():
        r1 = d["t2v"].get("none", {}).get("R1")
        if r1:
            log.info("%s - %s: t2v R@1 %+.2f [%+.2f, %+.2f], p=%.3f", v, config.baseline, r1["diff"], r1["lo"],
                     r1["hi"], r1["p"])
    return report
