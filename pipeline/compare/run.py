"""The compare stage: every evaluated variant against the baseline, paired, plus the tables.

Writes ``metrics/comparison.json`` (a DVC metrics file: for every variant, the paired difference
to the baseline of each metric, per direction and strategy: ``R1_diff``, ``R1_lo``, ``R1_hi``,
``R1_p``; and the reference points) and ``metrics/tables.md`` (the Tab. 2- and Tab. 4-like
tables with intervals). Reads the evaluation directories through
:class:`~pipeline.evaluation.results.EvalResult`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from pipeline.compare.config import CompareConfig
from pipeline.compare.paired import compare_results, flatten
from pipeline.compare.tables import render
from pipeline.evaluation.results import EvalResult
from pipeline.io import atomic_path, write_json

log = logging.getLogger(__name__)


def controls(result: EvalResult, truth: Path | None) -> dict[str, Any]:
    """Chance, and the oracle ceiling when the synthetic generator's truth is at hand (expected
    R@k of ranking uniformly among the test videos consistent with every fact a caption states;
    :mod:`pipeline.data.synth_oracle`)."""
    import numpy as np

    from pipeline.data.synth_oracle import chance, controls as truth_controls, load_truth

    caption_video = result.ranks["t2v"]["column"].to_numpy(np.int64)
    rand = chance(caption_video, result.n_videos)
    out: dict[str, Any] = {"chance": {"t2v": {f"R{k}": v for k, v in rand.t2v.items()},
                                      "v2t": {f"R{k}": v for k, v in rand.v2t.items()}}}
    if truth is not None and Path(truth).is_file():
        found = truth_controls(load_truth(truth), "test", list(result.ranks["v2t"]["video_id"]))
        out["oracle"] = {d: found["oracle"][d] for d in ("t2v", "v2t")}
    return out


def compare_variants(config: CompareConfig, variants: list[str], eval_dir: str | Path, out_json: str | Path,
                     out_md: str | Path, truth: str | Path | None = None) -> dict[str, Any]:
    """Compare every variant in ``variants`` with ``config.baseline``; write both outputs."""
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
        "controls": controls(base, None if truth is None else Path(truth)),
        "descriptions": {v: VARIANTS.get(v).description for v in variants if v in VARIANTS},
    }
    tracked = {f"{v}_vs_{config.baseline}": flatten(d) for v, d in paired.items()}
    tracked["controls"] = {name: {d: {k: round(float(x), 2) for k, x in by.items() if isinstance(x, (int, float))}
                                  for d, by in values.items() if isinstance(by, dict)}
                           for name, values in report["controls"].items()}
    write_json(tracked, out_json)
    with atomic_path(out_md) as tmp:
        tmp.write_text(render(report, config))
    for v, d in paired.items():
        r1 = d["t2v"].get("none", {}).get("R1")
        if r1:
            log.info("%s - %s: t2v R@1 %+.2f [%+.2f, %+.2f], p=%.3f", v, config.baseline, r1["diff"], r1["lo"],
                     r1["hi"], r1["p"])
    return report
