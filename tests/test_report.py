"""The report stage on a tiny project: every PNG, the offline HTML page, the Markdown metrics
table, tag counts, concept extraction and separation, and the choice of qualitative examples."""

from __future__ import annotations

import dataclasses
import json
import re
from collections import Counter

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image
from typer.testing import CliRunner

from pipeline.compare import BootstrapSettings, CompareConfig, compare_variants
from pipeline.config import to_dict
from pipeline.evaluation import evaluate
from pipeline.evaluation.sets import text_set, video_set
from pipeline.evaluation.trained import TrainedModel
from pipeline.features import load_features
from pipeline.frames.store import FrameStore
from pipeline.report import QualitativeConfig, ReportConfig, TsneConfig
from pipeline.report.concepts import PairConcepts, pair_concepts, points, separation, tsne_map
from pipeline.report.qualitative import frame_strip, select_examples
from pipeline.report.tag_histograms import tag_counts, tag_statistics
from stages import report as report_stage
from tests.test_evaluate_common import eval_config, make_project

COMPARE = CompareConfig(baseline="dicosa", table2=["dicosa", "macvr"], table4=["macvr", "dicosa"],
                        metrics=["R1", "R5", "MnR"], bootstrap=BootstrapSettings(resamples=200, seed=0, level=0.95),
                        paper={})


def report_config(**changes) -> ReportConfig:
    base = ReportConfig(candidate="macvr", top_tags=5, tag_splits=["train", "test"],
                        tsne=TsneConfig(max_pairs=4, perplexity=5.0, max_iter=250, seed=0),
                        qualitative=QualitativeConfig(strategy="none", improved=2, worsened=2, top_videos=3,
                                                      max_tags=3, frames_shown=2),
                        device="cpu", dpi=40)
    return dataclasses.replace(base, **changes)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    p = make_project(tmp_path_factory.mktemp("report"))
    root = p["root"]
    for variant in ("dicosa", "macvr"):
        evaluate(eval_config(), variant, p["models"] / variant / "model.pt", p["features"], root / "eval" / variant,
                 root / "metrics" / f"{variant}.json", root / "plots" / variant)
    compare_variants(COMPARE, ["dicosa", "macvr"], root / "eval", root / "metrics" / "comparison.json",
                     root / "metrics" / "tables.md")
    (root / "params.yaml").write_text(yaml.safe_dump({"report": to_dict(report_config()),
                                                      "compare": to_dict(COMPARE)}))
    result = CliRunner().invoke(report_stage.app, [str(a) for a in [
        "--params", root / "params.yaml", "--tags", p["tags"], "--eval-dir", root / "eval", "--models", p["models"],
        "--features", p["features"], "--captions", p["captions"], "--frames", p["frames"],
        "--tables", root / "metrics" / "tables.md", "--out", root / "reports"]])
    assert result.exit_code == 0, result.output
    p["reports"] = root / "reports"
    return p


def test_every_figure_is_a_png(built):
    out = built["reports"]
    report = json.loads((out / "report.json").read_text())
    pngs = ["recall_comparison.png", "concepts_tsne.png", "qualitative.png"]
    pngs += [f["png"] for f in report["figures"]["tags"]]
    pngs += [e["strip"] for e in report["qualitative"]["examples"]]
    assert len(report["figures"]["tags"]) == 4  # visual/textual x train/test
    for name in pngs:
        with Image.open(out / name) as img:
            assert img.format == "PNG" and min(img.size) > 10, name


def test_html_page_is_offline_and_self_contained(built):
    out = built["reports"]
    page = (out / "index.html").read_text()
    sources = re.findall(r"(?:src|href)='([^']+)'", page)
    assert sources and not any(s.startswith(("http:", "https:", "//", "/")) for s in sources)
    for src in sources:
        assert (out / src).is_file(), src  # every image and link resolves inside the report dir
    assert "<script" not in page
    assert page.count("<tr class='d'>") == 6  # a difference row per direction x strategy


def test_markdown_metrics_table_holds_both_variants(built):
    md = (built["reports"] / "summary.md").read_text()
    root = built["root"]
    for variant in ("dicosa", "macvr"):
        metrics = json.loads((root / "eval" / variant / "metrics.json").read_text())["metrics"]
        for direction, by in metrics.items():
            for strategy, leaf in by.items():
                label = {"none": "none", "dsl": "DSL", "qb": "QB-Norm"}[strategy]
                cells = " | ".join(f"{leaf[k]:.2f} [{leaf[k + '_lo']:.2f}, {leaf[k + '_hi']:.2f}]"
                                   for k in ("R1", "R5", "R10", "R50", "MdR", "MnR"))
                assert f"| {direction} | {label} | {variant} | {cells} |" in md
    m = {v: json.loads((root / "eval" / v / "metrics.json").read_text())["metrics"] for v in ("dicosa", "macvr")}
    delta = m["macvr"]["t2v"]["dsl"]["R1"] - m["dicosa"]["t2v"]["dsl"]["R1"]
    assert f"| t2v | DSL | macvr - dicosa | *{delta:+.2f}* |" in md


def test_compare_tables_are_included(built):
    """The compare stage's tables (every variant) appear in the summary and, as HTML, in the page."""
    out, root = built["reports"], built["root"]
    tables = (root / "metrics" / "tables.md").read_text()
    md = (out / "summary.md").read_text()
    assert "## All variants (compare stage)" in md and "## Tab. 2-like: variants x inference strategies" in md
    body = tables.split("\n", 1)[1].strip()
    assert body in md  # the tables without their own title
    page = (out / "index.html").read_text()
    assert "<h3>Tab. 2-like: variants x inference strategies</h3>" in page and "<h2>All variants" in page
    report = json.loads((out / "report.json").read_text())
    assert report["tables"] == tables and report["variants"] == ["dicosa", "macvr"]


def test_tag_counts_count_items_not_mentions():
    tags = pd.DataFrame({"item_id": ["a", "b", "c", "d"], "modality": ["visual", "visual", "visual", "textual"],
                         "split": ["train", "train", "test", "train"],
                         "tags": [["red", "red", "circle"], ["circle", "blue"], ["red"], ["red"]]})
    counts = tag_counts(tags, "visual", "train")
    assert counts.to_dict("list") == {"tag": ["circle", "blue", "red"], "items": [2, 1, 1],
                                      "share": [100.0, 50.0, 50.0]}
    stats = {(s["modality"], s["split"]): s for s in tag_statistics(tags, ["train", "test"])}
    assert stats[("visual", "train")] == {"modality": "visual", "split": "train", "items": 2, "items_without_tags": 0,
                                         "mean_tags": 2.5, "distinct_tags": 3}


def test_tag_csvs_match_a_recount(built):
    tags = pd.read_parquet(built["tags"])
    for modality in ("visual", "textual"):
        for split in ("train", "test"):
            csv = pd.read_csv(built["reports"] / "tags" / f"{modality}_{split}.csv")
            expected = Counter()
            for item_tags, m, s in zip(tags["tags"], tags["modality"], tags["split"]):
                if m == modality and s == split:
                    expected.update(set(item_tags))
            assert dict(zip(csv["tag"], csv["items"])) == dict(expected)
            assert list(csv["items"]) == sorted(csv["items"], reverse=True)


def test_pair_concepts_are_the_models_own(built):
    head = TrainedModel.load(built["models"] / "macvr" / "model.pt").head
    store = load_features(built["features"], mmap=False)
    rows = np.array([0, 3])  # video rows v00, v03; caption rows of their first captions
    caps = store.captions_index.set_index("caption_id")["row"]
    cap_rows = np.array([caps["v00#0"], caps["v03#0"]])
    got = pair_concepts(head, text_set(store, cap_rows), video_set(store, rows), batch=1)
    for i in range(2):
        t = torch.from_numpy(store.captions[cap_rows[i]:cap_rows[i] + 1].astype(np.float32))
        f = torch.from_numpy(store.frames[rows[i]:rows[i] + 1].astype(np.float32))
        m = torch.from_numpy(store.frame_mask[rows[i]:rows[i] + 1].copy())
        tv = torch.from_numpy(store.tags_visual_infer[rows[i]:rows[i] + 1].astype(np.float32))
        tt = torch.from_numpy(store.tags_textual_infer[cap_rows[i]:cap_rows[i] + 1].astype(np.float32))
        with torch.no_grad():
            s = head.score_encoded(t, head.encode_frames(f, m), m, tv, tt)
        np.testing.assert_allclose(got.text[i], s.text_concepts[0].numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(got.video[i], s.video_concepts[0, 0].numpy(), rtol=1e-5, atol=1e-5)


def test_separation_scores_clustered_concepts_high_and_random_ones_low():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 8))
    tight = centres[None] + 0.01 * rng.normal(size=(10, 4, 8))
    clustered = separation(PairConcepts(tight, tight + 0.01 * rng.normal(size=tight.shape)))
    noise = separation(PairConcepts(rng.normal(size=(10, 4, 8)), rng.normal(size=(10, 4, 8))))
    assert clustered["all"] > 0.9 and clustered["textual"] > 0.9 and clustered["visual"] > 0.9
    assert abs(noise["all"]) < 0.2
    x, label, modality = points(PairConcepts(tight, tight))
    assert x.shape == (80, 8) and np.allclose(np.linalg.norm(x, axis=1), 1.0)
    assert label[:4].tolist() == [0, 1, 2, 3] and modality.tolist() == [0] * 40 + [1] * 40
    assert tsne_map(PairConcepts(tight, tight), perplexity=30.0, max_iter=250, seed=0).shape == (80, 2)


def test_select_examples_orders_by_rank_change():
    base = pd.DataFrame({"caption_id": list("abcdef"), "video_id": list("vvwwxx"), "none": [9, 1, 5, 2, 3, 3]})
    cand = pd.DataFrame({"caption_id": list("fedcba"), "video_id": list("xxwwvv"), "none": [3, 7, 8, 1, 1, 2]})
    # gains (base - cand): a 9-2=7, b 1-1=0, c 5-1=4, d 2-8=-6, e 3-7=-4, f 0
    sel = select_examples(base, cand, "none", improved=5, worsened=1)
    assert sel["caption_id"].tolist() == ["a", "c", "d"]
    assert sel["kind"].tolist() == ["improved", "improved", "worsened"]
    assert sel["gain"].tolist() == [7, 4, -6] and sel["rank_candidate"].tolist() == [2, 1, 8]
    with pytest.raises(ValueError, match="different test captions"):
        select_examples(base, cand.iloc[:3], "none", 1, 1)
    with pytest.raises(ValueError, match="no 'qb' column"):
        select_examples(base, cand, "qb", 1, 1)


def test_qualitative_examples_are_consistent_with_the_ranks(built):
    report = json.loads((built["reports"] / "report.json").read_text())
    ranks = {v: pd.read_parquet(built["root"] / "eval" / v / "ranks_t2v.parquet").set_index("caption_id")
             for v in ("dicosa", "macvr")}
    examples = report["qualitative"]["examples"]
    assert examples  # random heads disagree somewhere
    for ex in examples:
        b, c = ranks["dicosa"].loc[ex["caption_id"], "none"], ranks["macvr"].loc[ex["caption_id"], "none"]
        assert (ex["rank_baseline"], ex["rank_candidate"]) == (b, c)
        assert (c < b) == (ex["kind"] == "improved")
        for variant, top in ex["top"].items():
            assert len(top) == 3 and sum(t["is_ground_truth"] for t in top) <= 1
            if ranks[variant].loc[ex["caption_id"], "none"] <= 3:
                assert any(t["is_ground_truth"] for t in top)
        assert len(ex["textual_tags"]) <= 3 and len(ex["visual_tags"]) <= 3


def test_frame_strip_uses_real_frames_evenly(built):
    store = FrameStore(built["frames"])
    frames = np.load(built["frames"] / "clip_frames.npy")
    strip = frame_strip(store, "v00", 2)  # v00 has 3 real frames of 4: first and last real ones
    assert strip.shape == (16, 32, 3)
    assert np.array_equal(strip[:, :16], frames[0, 0]) and np.array_equal(strip[:, 16:], frames[0, 2])
    assert frame_strip(store, "v01", 10).shape == (16, 64, 3) and frame_strip(store, "nope", 2) is None


def test_missing_evaluation_is_reported(built, tmp_path):
    root = built["root"]
    result = CliRunner().invoke(report_stage.app, [str(a) for a in [
        "--params", root / "params.yaml", "--tags", built["tags"], "--eval-dir", tmp_path, "--models",
        built["models"], "--features", built["features"], "--captions", built["captions"], "--out", tmp_path / "r"]])
    assert result.exit_code == 1 and "run the evaluate stage for dicosa first" in result.output
    assert not (tmp_path / "r").exists()


def test_report_config_validation():
    with pytest.raises(ValueError, match="max_iter must be >= 250"):
        TsneConfig(max_pairs=4, perplexity=5.0, max_iter=10, seed=0)
    with pytest.raises(ValueError, match="unknown inference strategy 'magic'; registered: none, dsl, qb"):
        QualitativeConfig(strategy="magic", improved=1, worsened=1, top_videos=1, max_tags=1, frames_shown=1)
    with pytest.raises(ValueError, match="tag_splits"):
        report_config(tag_splits=["train", "train"])
