"""The compare stage on small evaluation directories: comparison.json, the Markdown tables
(intervals, paired differences with p, bold by Holm over each table's Δ cells), chance levels,
``macvr diff``."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from pipeline.compare import BootstrapSettings, CompareConfig, compare_results, compare_variants
from pipeline.data.synth_oracle import chance
from pipeline.compare.paired import CompareError
from pipeline.config import ConfigError, from_mapping
from pipeline.evaluation.config import BootstrapConfig, EvaluateConfig
from pipeline.evaluation.results import EvalResult
from pipeline.evaluation.run import _rank_frames, metrics_with_intervals
from pipeline.io import write_json, write_parquet
from pipeline.retrieval import RankedRetrieval, reference_config
from pipeline.retrieval.uncertainty import METRICS

VIDEOS, CAPTIONS_PER_VIDEO = 60, 2
SETTINGS = BootstrapSettings(resamples=400, seed=0, level=0.95)
CONFIG = CompareConfig(baseline="dicosa", table2=["dicosa", "macvr"], table4=["macvr", "macvr_no_la", "dicosa"],
                       metrics=["R1", "R5", "MnR"], bootstrap=SETTINGS, paper={"macvr": "macvr", "dicosa": "dicosa"})


def eval_dir(path: Path, variant: str, t2v: dict[str, np.ndarray], v2t: dict[str, np.ndarray]) -> Path:
    """An evaluation directory as the evaluate stage writes it, from given per-query ranks."""
    caption_video = np.repeat(np.arange(VIDEOS), CAPTIONS_PER_VIDEO)
    rows = SimpleNamespace(video_ids=[f"v{j:02d}" for j in range(VIDEOS)], caption_video=caption_video,
                           caption_ids=[f"v{j:02d}#{k}" for j in range(VIDEOS) for k in range(CAPTIONS_PER_VIDEO)])
    ranked = RankedRetrieval(ties="optimistic")
    for direction, by in (("t2v", t2v), ("v2t", v2t)):
        for strategy, ranks in by.items():
            ranked.ranks[direction][strategy] = np.asarray(ranks, dtype=np.float64)
            ranked.tied[direction][strategy] = np.zeros(len(ranks), dtype=np.int64)
            ranked.info[direction][strategy] = {}
    config = EvaluateConfig(retrieval=reference_config(names=("none", "dsl")),
                            bootstrap=BootstrapConfig(resamples=200, seed=0, level=0.95), device="cpu",
                            torch_threads=0, method="fast", text_chunk=1, video_chunk=1, text_block=1, video_block=1,
                            querybank_size=0, encode_batch_size=1, top_k=1, recall_ks=[1], plot_dpi=10)
    metrics = metrics_with_intervals(ranked, caption_video, config)
    path.mkdir(parents=True)
    for direction, table in _rank_frames(rows, ranked).items():
        write_parquet(table, path / f"ranks_{direction}.parquet")
    write_json({"metrics": metrics, "variant": variant, "evaluate": {"retrieval": {"ties": "optimistic"}},
                "counts": {"test_captions": len(caption_video), "test_videos": VIDEOS}}, path / "metrics.json")
    return path


def rank_sets(seed: int) -> tuple[dict, dict]:
    """Per-query ranks of a mediocre model and of one clearly better on every query (rank 1 for
    80% of the queries, the mediocre rank otherwise), for none and dsl in both directions."""
    rng = np.random.default_rng(seed)
    n = VIDEOS * CAPTIONS_PER_VIDEO
    base = {"t2v": {"none": rng.integers(1, 30, n), "dsl": rng.integers(1, 20, n)},
            "v2t": {"none": rng.integers(1, 40, VIDEOS), "dsl": rng.integers(1, 30, VIDEOS)}}
    better = {d: {s: np.where(rng.random(len(r)) < 0.8, 1, r) for s, r in by.items()} for d, by in base.items()}
    return base, better


@pytest.fixture(scope="module")
def evals(tmp_path_factory) -> Path:
    """dicosa (mediocre), macvr (clearly better on every query) and macvr_no_la (dicosa's ranks)."""
    root = tmp_path_factory.mktemp("eval")
    base, better = rank_sets(0)
    eval_dir(root / "dicosa", "dicosa", **base)
    eval_dir(root / "macvr", "macvr", **better)
    eval_dir(root / "macvr_no_la", "macvr_no_la", **base)
    return root


@pytest.fixture(scope="module")
def compared(evals, tmp_path_factory):
    out = tmp_path_factory.mktemp("compare")
    report = compare_variants(CONFIG, ["dicosa", "macvr", "macvr_no_la"], evals, out / "comparison.json",
                              out / "tables.md")
    return report, json.loads((out / "comparison.json").read_text()), (out / "tables.md").read_text()


def test_comparison_json_holds_every_paired_difference_and_chance(compared, evals):
    report, tracked, _ = compared
    assert set(tracked) == {"macvr_vs_dicosa", "macvr_no_la_vs_dicosa", "controls", "corrections"}
    for name in ("macvr_vs_dicosa", "macvr_no_la_vs_dicosa"):
        assert set(tracked[name]) == {"t2v", "v2t"}
        for direction in ("t2v", "v2t"):
            assert set(tracked[name][direction]) == {"none", "dsl"}
            for leaf in tracked[name][direction].values():
                assert set(leaf) == {f"{m}_{k}" for m in METRICS for k in ("diff", "lo", "hi", "p")}
    # the numbers are the paired bootstrap of the two evaluation directories
    want = compare_results(EvalResult.read(evals / "macvr"), EvalResult.read(evals / "dicosa"), SETTINGS)
    for direction, by in want.items():
        for strategy, metrics in by.items():
            for metric, d in metrics.items():
                for key, value in d.items():
                    assert tracked["macvr_vs_dicosa"][direction][strategy][f"{metric}_{key}"] == \
                        pytest.approx(value, abs=1e-3)
    r1 = report["paired"]["macvr"]["t2v"]["none"]["R1"]
    assert r1["diff"] > 0 and r1["lo"] > 0 and r1["p"] < 0.05  # clearly better
    same = report["paired"]["macvr_no_la"]["t2v"]["none"]["R1"]
    assert same == {"diff": 0.0, "lo": 0.0, "hi": 0.0, "p": 1.0}  # the same ranks: no difference
    rand = chance(np.repeat(np.arange(VIDEOS), 2), VIDEOS)
    assert tracked["controls"] == {"chance": {d: {f"R{k}": round(v, 2) for k, v in by.items()}
                                              for d, by in (("t2v", rand.t2v), ("v2t", rand.v2t))}}
    assert report["baseline"] == "dicosa" and report["counts"]["test_videos"] == VIDEOS
    assert report["descriptions"]["macvr_no_la"] == "MAC-VR without the alignment loss (Tab. 4)"


def _row(md: str, first: str, second: str) -> list[str]:
    for line in md.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) > 2 and cells[0] == first and cells[1] == second:
            return cells
    raise AssertionError(f"no row {first} | {second}")


def test_tables_show_intervals_differences_and_bold_when_significant(compared):
    report, _, md = compared
    assert md.startswith("# Variants compared")
    assert f"Test split: {VIDEOS * 2} captions, {VIDEOS} videos." in md and "400 resamples" in md
    assert "## Tab. 2-like: variants x inference strategies" in md and "## Tab. 4-like: ablations" in md
    assert "| strategy | variant | R@1 | R@5 | MnR |" in md
    m, paired = report["metrics"], report["paired"]
    # the baseline's cells: value [lo, hi], no difference
    base = _row(md, "none", "dicosa")
    v = m["dicosa"]["t2v"]["none"]
    assert base[2] == f"{v['R1']:.1f} [{v['R1_lo']:.1f}, {v['R1_hi']:.1f}]" and "Δ" not in base[2]
    # a clearly better variant: its difference, p at the floor 2/400, Holm over the table's 12 Δ cells
    # (12 x 0.005 = 0.06): 400 resamples cannot make 12 claims at 0.05, so no bold, and the table says so
    better = _row(md, "none", "macvr")
    v, d = m["macvr"]["t2v"]["none"], paired["macvr"]["t2v"]["none"]["R1"]
    assert better[2] == (f"{v['R1']:.1f} [{v['R1_lo']:.1f}, {v['R1_hi']:.1f}]"
                         f"<br>Δ {d['diff']:+.1f} [{d['lo']:+.1f}, {d['hi']:+.1f}]<br>p ≤0.005, Holm ≤0.06")
    mnr = paired["macvr"]["t2v"]["none"]["MnR"]
    assert mnr["hi"] < 0 and "**" not in better[4] and f"Δ {mnr['diff']:+.1f}" in better[4]
    assert md.count("no Δ of 12 can pass; that needs more than 480 resamples") == 2  # Tab. 2 and Tab. 4
    # a variant equal to the baseline: Δ 0, not bold (Tab. 4 lists the ablation)
    equal = _row(md, "macvr_no_la", "MAC-VR without the alignment loss (Tab. 4)")
    assert "Δ +0.0 [+0.0, +0.0]<br>p 1.000, Holm 1.000" in equal[2] and "**" not in equal[2]
    assert "**text-to-video, DSL**" in md and "**video-to-text**" in md
    # chance levels as the reference points, for the recall columns only
    chance_t2v = _row(md, "chance", "t2v")
    assert chance_t2v[2:] == [f"{100 / VIDEOS:.1f}", f"{500 / VIDEOS:.1f}"]  # R@1, R@5 (the recall columns)
    assert len(re.findall(r"^\| chance \|", md, flags=re.M)) == 2


def brute_chance(caption_video: list[int], n_videos: int, k: int) -> tuple[float, float]:
    """Expected R@k of a uniformly random ranking, by enumerating every ordering of the gallery."""
    captions = len(caption_video)
    t2v = np.mean([min(k, n_videos) / n_videos])  # a caption's video lands in any position alike
    hits = []
    for video in range(n_videos):
        relevant = {i for i, v in enumerate(caption_video) if v == video}
        orders = list(itertools.permutations(range(captions)))
        hits.append(np.mean([bool(relevant & set(order[:k])) for order in orders]))
    # t2v, checked by enumeration too: positions of the true video among all orderings of the videos
    t2v_enum = np.mean([order.index(0) < k for order in itertools.permutations(range(n_videos))])
    assert t2v == pytest.approx(t2v_enum)
    return 100 * t2v, 100 * float(np.mean(hits))


def test_chance_levels_match_a_brute_force_enumeration():
    caption_video = [0, 1, 1, 2, 2, 2]
    ks = (1, 2, 3, 4, 5, 10)
    got = chance(np.array(caption_video), 3, ks=ks)
    assert set(got.t2v) == set(got.v2t) == set(ks)
    for k in ks:  # (beyond the 6 captions every video is found)
        t2v, v2t = brute_chance(caption_video, 3, k)
        assert got.t2v[k] == pytest.approx(t2v) and got.v2t[k] == pytest.approx(v2t), k
    assert 0 < got.v2t[1] < got.v2t[2] < 100 == got.v2t[10]
    # closed forms on a realistic size: 1k videos, one caption each
    big = chance(np.arange(1000), 1000)
    assert big.t2v[1] == pytest.approx(0.1) and big.v2t[10] == pytest.approx(1.0)
    assert chance(np.array([0, 0, 0]), 1).v2t[1] == pytest.approx(100.0)


def test_compare_refuses_a_missing_baseline_or_different_test_sets(evals, tmp_path):
    with pytest.raises(ValueError, match="compare.baseline 'dicosa' is not one of the variants"):
        compare_variants(CONFIG, ["macvr"], evals, tmp_path / "c.json", tmp_path / "t.md")
    other = tmp_path / "other"
    eval_dir(other / "dicosa", "dicosa", {"none": np.ones(VIDEOS * 2)}, {"none": np.ones(VIDEOS)})
    table = EvalResult.read(other / "dicosa").ranks["t2v"]
    write_parquet(table.assign(caption_id=[c + "x" for c in table["caption_id"]]), other / "dicosa" / "ranks_t2v.parquet")
    with pytest.raises(CompareError, match="ranked different test queries"):
        compare_results(EvalResult.read(evals / "macvr"), EvalResult.read(other / "dicosa"), SETTINGS)
    with pytest.raises(FileNotFoundError, match="run the evaluate stage"):
        EvalResult.read(tmp_path / "nowhere")


def test_compare_config_validation():
    raw = {"baseline": "dicosa", "table2": ["dicosa"], "table4": ["macvr"], "metrics": ["R1"],
           "bootstrap": {"resamples": 100, "seed": 0, "level": 0.9}, "paper": {"macvr": "macvr"}}
    assert from_mapping(CompareConfig, raw, "compare").bootstrap.resamples == 100
    for change, message in ((dict(metrics=["R2"]), "metrics must be a non-empty list"),
                            (dict(paper={"macvr": "clip4clip"}), "paper maps variants to the paper's models"),
                            (dict(table2=["macvr", "macvr"]), "table2 lists a variant twice"),
                            (dict(bootstrap={"resamples": 10, "seed": 0, "level": 0.9}), "resamples must be >= 100"),
                            (dict(bootstrap={"resamples": 100, "seed": 0, "level": 1.0}), "level must be in")):
        with pytest.raises(ConfigError, match=message):
            from_mapping(CompareConfig, {**raw, **change}, "compare")


def test_compare_stage_and_diff_command(evals, tmp_path):
    from pipeline.compare.command import diff
    from stages.compare import PARAMS, app

    assert set(PARAMS) == {"compare", "variants"}
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({
        "compare": {"baseline": "dicosa", "table2": ["dicosa", "macvr"], "table4": ["macvr", "dicosa"],
                    "metrics": ["R1", "MnR"], "bootstrap": {"resamples": 400, "seed": 0, "level": 0.95},
                    "paper": {}},
        "variants": {"dicosa": {}, "macvr": {}}}))
    result = CliRunner().invoke(app, ["--params", str(params), "--eval-dir", str(evals), "--out",
                                      str(tmp_path / "comparison.json"), "--tables", str(tmp_path / "tables.md"),
                                      "--truth", str(tmp_path / "absent.json")])
    assert result.exit_code == 0, result.output
    assert "compare: 1 variants vs dicosa" in result.output
    tracked = json.loads((tmp_path / "comparison.json").read_text())
    assert set(tracked) == {"macvr_vs_dicosa", "controls", "corrections"}  # only the variants params.yaml trains
    assert "| R@1 | MnR |" in (tmp_path / "tables.md").read_text()

    diff_app = __import__("typer").Typer(add_completion=False)
    diff_app.command()(diff)
    out = CliRunner().invoke(diff_app, [str(evals / "macvr"), str(evals / "dicosa"), "--resamples", "400", "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout) == compare_results(EvalResult.read(evals / "macvr"),
                                                     EvalResult.read(evals / "dicosa"), SETTINGS)
    table = CliRunner().invoke(diff_app, [str(evals / "macvr"), str(evals / "dicosa"), "--resamples", "400"])
    assert table.exit_code == 0 and "t2v       none     R1" in table.stdout
    # 24 rows, p >= 2/400: Holm >= 0.12, no flag can be earned, and the command says so
    assert not [line for line in table.stdout.splitlines() if line.endswith(" *")]
    assert "use --resamples above 960 for any * to be possible" in table.stdout
    # the flag: Holm over every printed row, re-computed from the JSON's p-values (2000 resamples: Holm >= 0.024)
    table = CliRunner().invoke(diff_app, [str(evals / "macvr"), str(evals / "dicosa"), "--resamples", "2000"])
    want = compare_results(EvalResult.read(evals / "macvr"), EvalResult.read(evals / "dicosa"),
                           BootstrapSettings(resamples=2000, seed=0, level=0.95))
    ps = [d["p"] for by in want.values() for metrics in by.values() for d in metrics.values()]
    rows = [line.split() for line in table.stdout.splitlines() if line.startswith(("t2v ", "v2t "))]
    assert len(rows) == len(ps) == 2 * 2 * len(METRICS)
    flagged = 0
    for row, holm_p in zip(rows, direct_holm(ps)):
        assert float(row[-2 if row[-1] == "*" else -1]) == pytest.approx(holm_p, abs=5e-4)
        assert (row[-1] == "*") == (holm_p < 0.05), row
        flagged += row[-1] == "*"
    assert flagged >= 8 and f"*: Holm-adjusted p < 0.05 over the {len(ps)} differences above" in table.stdout
    assert "any * to be possible" not in table.stdout
    bad = CliRunner().invoke(diff_app, [str(evals / "macvr"), str(tmp_path / "nowhere:macvr"), "--resamples", "400"])
    assert bad.exit_code == 1 and bad.stderr.startswith("diff: ")


def test_seeds_summary_is_mean_and_sd_of_metrics_and_paired_differences():
    from pipeline.compare.command import summarise

    def run(r1: float, diff: float) -> dict:
        return {"macvr": {"t2v": {"none": {"R1": r1, "R1_lo": r1 - 3, "R1_hi": r1 + 3, "qb_active_items": 7}}},
                "comparison": {"macvr_vs_dicosa": {"t2v": {"none": {"R1_diff": diff, "R1_lo": diff - 2,
                                                                      "R1_hi": diff + 2, "R1_p": 0.01}}}}}

    r1s, diffs = [12.0, 13.5, 11.0], [6.0, 7.5, 5.5]
    out = summarise({f"seed-{i}": run(a, d) for i, (a, d) in enumerate(zip(r1s, diffs))})
    assert set(out) == {"macvr.t2v.none.R1", "comparison.macvr_vs_dicosa.t2v.none.R1_diff"}
    got = out["comparison.macvr_vs_dicosa.t2v.none.R1_diff"]
    assert got["mean"] == pytest.approx(np.mean(diffs)) and got["sd"] == pytest.approx(np.std(diffs, ddof=1))
    assert (got["n"], got["min"], got["max"]) == (3, 5.5, 7.5)
    assert out["macvr.t2v.none.R1"]["mean"] == pytest.approx(np.mean(r1s))
    only = summarise({"a": run(1.0, 2.0), "b": run(3.0, 4.0)}, files=["macvr"])
    assert set(only) == {"macvr.t2v.none.R1"} and only["macvr.t2v.none.R1"]["sd"] == pytest.approx(np.sqrt(2))
    assert np.isnan(summarise({"a": run(1.0, 2.0)})["macvr.t2v.none.R1"]["sd"])  # one run: no spread


def test_the_papers_tab2_sits_beside_the_measurement(evals, tmp_path):
    from pipeline.released.paper import published

    videos = tmp_path / "videos.parquet"
    pd.DataFrame({"video_id": ["a"], "dataset": ["msrvtt"]}).to_parquet(videos)
    report = compare_variants(CONFIG, ["dicosa", "macvr"], evals, tmp_path / "c.json", tmp_path / "t.md",
                              videos=videos)
    paper = report["paper"]
    assert paper["dataset"] == "msrvtt" and set(paper["rows"]) == {"dicosa", "macvr"}
    for variant in ("dicosa", "macvr"):
        for strategy in ("none", "dsl"):  # qb was not evaluated here
            for metric, cell in paper["rows"][variant]["t2v"][strategy].items():
                m = report["metrics"][variant]["t2v"][strategy]
                assert cell["published"] == published("msrvtt", variant)[strategy][metric]
                assert (cell["measured"], cell["lo"], cell["hi"]) == (m[metric], m[f"{metric}_lo"], m[f"{metric}_hi"])
                assert cell["outside"] == (not m[f"{metric}_lo"] <= cell["published"] <= m[f"{metric}_hi"])
    gain = paper["gain"]["dsl"]["R1"]
    d = report["paired"]["macvr"]["t2v"]["dsl"]["R1"]
    assert gain["published"] == pytest.approx(53.2 - 52.1) and gain["measured"] == d["diff"]
    assert gain["published_inside"] == (d["lo"] <= 1.1 <= d["hi"]) and gain["excludes_zero"] == (d["lo"] > 0)
    # the gain rows are one family: Holm over all of them; excludes_zero is the unadjusted test
    rows = [g for by in paper["gain"].values() for g in by.values()]
    for g, holm_p in zip(rows, direct_holm([g["p"] for g in rows])):
        assert g["p_holm"] == pytest.approx(holm_p) and g["significant_holm"] == (holm_p < 0.05)
        assert g["excludes_zero"] == (g["p"] < 0.05)
    md = (tmp_path / "t.md").read_text()
    assert "## The paper's Tab. 2 beside the measurement" in md and "MAC-VR − DiCoSA" in md
    assert md.count("✗") - 1 == sum(c["outside"] for r in paper["rows"].values() for by in r["t2v"].values()
                                for c in by.values())
    tracked = json.loads((tmp_path / "c.json").read_text())
    assert tracked["paper"]["gain"]["dsl"]["R1"]["published"] == 1.1
    assert tracked["corrections"]["paper_gain"] == {"cells": len(rows)} and "significant_holm" in \
        tracked["paper"]["gain"]["dsl"]["R1"]
    assert f"Holm p: adjusted over the {len(rows)} rows of this table" in md and "| significant (Holm) |" in md
    # the other way round (MAC-VR as the baseline) the gain keeps its sign
    flipped = CompareConfig(**{**CONFIG.__dict__, "baseline": "macvr"})
    again = compare_variants(flipped, ["dicosa", "macvr"], evals, tmp_path / "c2.json", tmp_path / "t2.md",
                             videos=videos)["paper"]["gain"]["dsl"]["R1"]
    assert again["measured"] == pytest.approx(gain["measured"]) and again["lo"] == pytest.approx(gain["lo"], abs=0.2)
    # synthetic data (no published values): no section
    pd.DataFrame({"video_id": ["a"], "dataset": ["synthetic"]}).to_parquet(videos)
    assert compare_variants(CONFIG, ["dicosa", "macvr"], evals, tmp_path / "c.json", tmp_path / "t.md",
                            videos=videos)["paper"] == {}


def direct_holm(p: list[float]) -> list[float]:
    """Holm-adjusted p straight from the definition: the largest (m - rank) p_j over every p_j <= p_i,
    rank = how many p-values are strictly smaller (ties share the first rank), capped at 1."""
    m = len(p)
    return [min(1.0, max((m - sum(q < pj for q in p)) * pj for pj in p if pj <= pi)) for pi in p]


def test_comparison_json_states_each_tables_family_with_holm_p(compared):
    report, tracked, md = compared
    paired = report["paired"]
    # Tab. 2-like: every direction x strategy x non-baseline variant x metric shown
    tab2 = [("macvr", d, s, m) for d in ("t2v", "v2t") for s in ("none", "dsl") for m in CONFIG.metrics]
    # Tab. 4-like: t2v, every strategy x ablation x metric (macvr is in both tables, once per family)
    tab4 = [(v, "t2v", s, m) for s in ("none", "dsl") for v in ("macvr", "macvr_no_la") for m in CONFIG.metrics]
    for name, cells in (("tab2", tab2), ("tab4", tab4)):
        family = tracked["corrections"][name]
        assert family["cells"] == len(cells)
        got = [family[f"{v}_vs_dicosa"][d][s][f"{m}_p_holm"] for v, d, s, m in cells]
        want = direct_holm([paired[v][d][s][m]["p"] for v, d, s, m in cells])
        assert got == pytest.approx(want, abs=1e-3)
        n_leaves = sum(len(leaf) for k, by in family.items() if k != "cells" for s in by.values() for leaf in s.values())
        assert n_leaves == len(cells)  # nothing outside the family
    assert "R10_p_holm" not in tracked["corrections"]["tab2"]["macvr_vs_dicosa"]["t2v"]["none"]  # not shown
    assert f"over the {len(tab2)} Δ cells of this table" in md and f"over the {len(tab4)} Δ cells of this table" in md
    assert "intervals are not adjusted" in md


def test_bold_follows_holm_over_the_table_not_each_interval():
    from pipeline.compare.tables import table2, table4

    metrics = ["R1", "R5"]
    values = {m: 10.0 for m in metrics} | {f"{m}_lo": 8.0 for m in metrics} | {f"{m}_hi": 12.0 for m in metrics}
    by_variant = {v: {d: {"none": values} for d in ("t2v", "v2t")} for v in ("base", "a", "b")}

    def delta(p: float) -> dict:  # an interval excluding 0 (p < 0.05 alone would be "significant")
        return {"diff": 1.0, "lo": 0.2, "hi": 1.8, "p": p}

    # 8 Δ cells: one very small p, seven at 0.03 -> Holm 8 x 0.001 = 0.008 (bold), 7 x 0.03 = 0.21 (not)
    diffs = {v: {d: {"none": {m: delta(0.001 if (v, d, m) == ("a", "t2v", "R1") else 0.03) for m in metrics}}
                 for d in ("t2v", "v2t")} for v in ("a", "b")}
    md = "\n".join(table2(by_variant, diffs, ["base", "a", "b"], "base", metrics,
                          {"t2v": ["none"], "v2t": ["none"]}, level=0.95, resamples=10000))
    assert md.count("**Δ") == 1 and "**Δ +1.0 [+0.2, +1.8]**<br>p 0.001, Holm 0.008" in md
    assert md.count("Δ +1.0 [+0.2, +1.8]<br>p 0.030, Holm 0.210") == 7
    assert "Holm-adjusted p < 0.05 over the 8 Δ cells of this table" in md
    # at level 0.75 (α = 0.25) all 8 are bold; the t2v-only Tab. 4 family is 4 cells: 4 x 0.001, then 3 x 0.03
    assert "\n".join(table2(by_variant, diffs, ["base", "a", "b"], "base", metrics,
                            {"t2v": ["none"], "v2t": ["none"]}, level=0.75)).count("**Δ") == 8
    md4 = "\n".join(table4(by_variant, diffs, ["base", "a", "b"], "base", metrics, {}, ["none"]))
    assert "over the 4 Δ cells" in md4 and md4.count("Holm 0.090") == 3 and "Holm 0.004" in md4
    assert md4.count("**Δ") == 1


def test_with_enough_resamples_the_clear_differences_are_bold(evals, tmp_path):
    # 2000 resamples: floor 0.001, 12 cells per table -> Holm at most 0.012 for the clearly better variant
    config = CompareConfig(**{**CONFIG.__dict__, "bootstrap": BootstrapSettings(resamples=2000, seed=0, level=0.95)})
    report = compare_variants(config, ["dicosa", "macvr", "macvr_no_la"], evals, tmp_path / "c.json", tmp_path / "t.md")
    md, tracked = (tmp_path / "t.md").read_text(), json.loads((tmp_path / "c.json").read_text())
    m, paired = report["metrics"], report["paired"]
    better = _row(md, "none", "macvr")
    v, d = m["macvr"]["t2v"]["none"], paired["macvr"]["t2v"]["none"]["R1"]
    holm_p = tracked["corrections"]["tab2"]["macvr_vs_dicosa"]["t2v"]["none"]["R1_p_holm"]
    assert d["p"] == 0.001 and holm_p == 0.012  # 12 x 0.001: an upper bound, shown as ≤
    assert better[2] == (f"{v['R1']:.1f} [{v['R1_lo']:.1f}, {v['R1_hi']:.1f}]"
                         f"<br>**Δ {d['diff']:+.1f} [{d['lo']:+.1f}, {d['hi']:+.1f}]**<br>p ≤0.001, Holm ≤{holm_p:g}")
    equal = _row(md, "macvr_no_la", "MAC-VR without the alignment loss (Tab. 4)")
    assert "Δ +0.0 [+0.0, +0.0]<br>p 1.000, Holm 1.000" in equal[2] and "**" not in equal[2]
    assert "can pass" not in md
    # every Δ cell: bold exactly when the family's Holm-adjusted p < 0.05
    for direction in ("t2v", "v2t"):
        for strategy, label in (("none", "none"), ("dsl", "DSL")):
            row = _row(md, label, "macvr") if direction == "t2v" else None
            for i, metric in enumerate(CONFIG.metrics):
                holm_p = tracked["corrections"]["tab2"]["macvr_vs_dicosa"][direction][strategy][f"{metric}_p_holm"]
                if row is not None:
                    assert ("**Δ" in row[2 + i]) == (holm_p < 0.05), (strategy, metric)


def synthetic_truth(path: Path) -> Path:
    """A synthetic_truth.json for the evaluation directories' test videos, drawn by the generator."""
    from pipeline.data.synth_captions import sample_planned_captions
    from pipeline.data.synth_scene import sample_scene

    truth = {}
    for j in range(VIDEOS):
        rng = np.random.default_rng([4, 0, j])
        scene = sample_scene(rng, 20, 10)
        caps = sample_planned_captions(scene, CAPTIONS_PER_VIDEO, rng)
        truth[f"v{j:02d}"] = {"split": "test", "scene": scene.to_dict(), "captions": [
            {"text": c.text, "mentions": sorted(c.mentions), "plan": c.plan} for c in caps]}
    write_json(truth, path)
    return path


def test_controls_hold_the_bayes_ceiling_and_each_variants_share_of_it(evals, tmp_path):
    from pipeline.data.synth_oracle import controls as truth_controls, load_truth

    truth = synthetic_truth(tmp_path / "synthetic_truth.json")
    report = compare_variants(CONFIG, ["dicosa", "macvr", "macvr_no_la"], evals, tmp_path / "c.json",
                              tmp_path / "t.md", truth=truth)
    md, tracked = (tmp_path / "t.md").read_text(), json.loads((tmp_path / "c.json").read_text())
    controls = report["controls"]
    assert set(controls) == {"chance", "consistent_uniform", "bayes_ceiling", "share_of_ceiling"}
    want = truth_controls(load_truth(truth))
    for name in ("consistent_uniform", "bayes_ceiling"):
        assert controls[name] == {d: want[name][d] for d in ("t2v", "v2t")}
    ceiling = controls["bayes_ceiling"]
    assert all(ceiling[d][k] >= controls["consistent_uniform"][d][k] for d in ("t2v", "v2t") for k in ("R1", "R5"))
    # shares: the variant's recall over the ceiling's, with no strategy and with the best by R@1
    metrics = report["metrics"]
    for variant in ("dicosa", "macvr"):
        for direction in ("t2v", "v2t"):
            by = metrics[variant][direction]
            best = sorted(by, key=lambda s: (-by[s]["R1"], -by[s]["R5"], -by[s]["R10"], list(by).index(s)))[0]
            for which, strategy in (("none", "none"), ("best", best)):
                share = controls["share_of_ceiling"][f"{variant}/{direction}/{which}"]
                assert share["strategy"] == strategy
                for k in ("R1", "R5", "R10"):
                    assert share[k] == pytest.approx(100 * by[strategy][k] / ceiling[direction][k])
                assert tracked["controls"]["share_of_ceiling"][f"{variant}/{direction}/{which}"]["R1"] == \
                    round(share["R1"], 2)
    assert tracked["controls"]["bayes_ceiling"]["t2v"]["R1"] == round(ceiling["t2v"]["R1"], 2)
    # the tables name which row is the ceiling and which only a reference
    row = _row(md, "Bayes-optimal (the ceiling)", "t2v")
    assert row[2:] == [f"{ceiling['t2v']['R1']:.1f}", f"{ceiling['t2v']['R5']:.1f}"]
    _row(md, "consistent, uniform order (reference, not a ceiling)", "v2t")
    share = controls["share_of_ceiling"]["macvr/t2v/none"]
    assert _row(md, "macvr", "t2v")[2:] == ["none", f"{share['R1']:.1f}%", f"{share['R5']:.1f}%"]
    assert "| oracle |" not in md


def test_seeds_reports_which_random_sources_the_runs_varied():
    from pipeline.compare.command import SEED_SOURCES, seed_sources

    def params(data: int, backbone: int, head: int) -> dict:
        return {"prepare": {"datasets": {"synthetic": {"seed": data}}}, "backbone": {"tiny": {"seed": backbone}},
                "train": {"seed": head}, "features": {"seed": 0}, "tag_text": {"seed": 1234},
                "tag_video": {"seed": 1234}, "compare": {"bootstrap": {"seed": 0}}}

    head_only = seed_sources({f"h{i}": params(0, 0, i) for i in range(3)})
    assert set(head_only) == set(SEED_SOURCES)
    assert {s for s, v in head_only.items() if v["varied"]} == {"head"}
    assert head_only["head"]["values"] == [0, 1, 2] and head_only["backbone"]["values"] == [0]
    together = seed_sources({f"s{i}": params(i, i, i) for i in range(2)} | {"again": params(1, 1, 1)})
    assert {s for s, v in together.items() if v["varied"]} == {"data", "backbone", "head"}
    assert together["data"]["values"] == [0, 1]
    real = seed_sources({"a": {"train": {"seed": 0}}, "b": {"train": {"seed": 1}}})
    assert real["data"] == {"key": "prepare.datasets.synthetic.seed", "values": [None], "varied": False}


def test_the_seeds_command_reads_metrics_and_params_at_each_revision(tmp_path, monkeypatch):
    import subprocess

    import yaml
    from typer.testing import CliRunner

    from stages.cli import app

    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.chdir(tmp_path)
    subprocess.run(["git", "init", "-q"], check=True)
    (tmp_path / "metrics").mkdir()
    for i, r1 in enumerate((10.0, 14.0)):
        params = {"backbone": {"tiny": {"seed": i}}, "train": {"seed": 0}}
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
        (tmp_path / "metrics/macvr.json").write_text(json.dumps({"t2v": {"none": {"R1": r1}}}))
        subprocess.run(["git", "add", "-A"], check=True)
        subprocess.run(["git", "commit", "-qm", f"run {i}"], check=True)
        subprocess.run(["git", "tag", f"run{i}"], check=True)
    result = CliRunner().invoke(app, ["seeds", "run0", "run1"])
    assert result.exit_code == 0, result.output
    assert "varied: backbone (backbone.tiny.seed: 0, 1)" in result.output
    assert "held fixed: head=0 (the spread below leaves these sources out)" in result.output
    assert "macvr.t2v.none.R1    12.00 ±   2.83" in result.output


def test_the_validation_split_is_reported_beside_the_test_tables(evals, tmp_path):
    """Each variant's val metrics (what choices are made on) get their own section; test-only
    evaluations (real datasets without a val split) get none."""
    import shutil

    root = tmp_path / "eval"
    shutil.copytree(evals, root)
    val = {}
    for i, variant in enumerate(("dicosa", "macvr", "macvr_no_la")):
        data = json.loads((root / variant / "metrics.json").read_text())
        val[variant] = {"t2v": {"none": {m: 10.0 + i for m in ("R1", "R5", "R10", "MnR")} |
                                {f"{m}_{b}": 5.0 + i for m in ("R1", "R5", "R10", "MnR") for b in ("lo", "hi")}}}
        data["val"] = {"metrics": val[variant], "counts": {"captions": 9, "videos": 3}}
        (root / variant / "metrics.json").write_text(json.dumps(data))
    report = compare_variants(CONFIG, ["dicosa", "macvr", "macvr_no_la"], root, tmp_path / "c.json", tmp_path / "t.md")
    assert report["val"]["macvr"]["metrics"] == val["macvr"]
    tables = (tmp_path / "t.md").read_text()
    section = tables[tables.index("## Validation split"):]
    assert "Validation split: 9 captions, 3 videos" in section
    assert "| none | macvr | 11.0 [6.0, 6.0] | 11.0 [6.0, 6.0] | 11.0 [6.0, 6.0] |" in section
    plain = compare_variants(CONFIG, ["dicosa", "macvr", "macvr_no_la"], evals, tmp_path / "c2.json", tmp_path / "t2.md")
    assert plain["val"] == {} and "## Validation split" not in (tmp_path / "t2.md").read_text()


def test_small_p_values_are_never_written_as_zero():
    from pipeline.compare.paired import flatten, round_p

    assert [round_p(p) for p in (0.5, 0.01234, 0.00987, 0.0002, 0.00021, 0.0, 1.0)] == [
        0.5, 0.012, 0.0099, 0.0002, 0.00021, 0.0, 1.0]
    flat = flatten({"t2v": {"none": {"R1": {"diff": 5.0004, "lo": 2.8333, "hi": 7.1667, "p": 0.0002}}}})
    assert flat == {"t2v": {"none": {"R1_diff": 5.0, "R1_lo": 2.833, "R1_hi": 7.167, "R1_p": 0.0002}}}
