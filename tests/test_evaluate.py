"""The evaluate stage: exact scores against a per-pair brute force, querybank rows, the metrics
file's nesting and rounding, the plots, the rank tables, the CLI, and finetune checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image
from typer.testing import CliRunner

from pipeline.backbone.arch import clip_module
from pipeline.backbone.base import CLIP_MEAN, CLIP_STD
from pipeline.evaluation import EvaluateError, evaluate, select_rows
from pipeline.evaluation.outputs import recall_curve, round_metrics, top_items
from pipeline.evaluation.results import EvalResult
from pipeline.evaluation.sets import RowView
from pipeline.evaluation.trained import TrainedModel
from pipeline.features import infer_sentence, load_features
from pipeline.features.inputs import load_tags
from pipeline.retrieval import evaluate_all, rank_all
from pipeline.retrieval.uncertainty import Entries, bootstrap_metrics, draws
from stages import evaluate as evaluate_stage
from tests.test_evaluate_common import (BOOTSTRAP, INFER_TAGS, MAX_WORDS, NO_CAPTION, RETRIEVAL, SPLITS, eval_config,
                                        eval_params, make_project, save_checkpoint, tiny_backbone)

METRIC_KEYS = {"R1", "R5", "R10", "R50", "MdR", "MnR"}
WITH_INTERVALS = METRIC_KEYS | {f"{k}_{b}" for k in METRIC_KEYS for b in ("lo", "hi")}
QB_INFO = {"qb_gallery_items", "qb_queries", "qb_querybank_queries", "qb_active_items", "qb_normalised_queries"}


def load_head(path: Path):
    return TrainedModel.load(path).head


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return make_project(tmp_path_factory.mktemp("evaluate"))


@pytest.fixture(scope="module")
def evaluated(project):
    """Both variants evaluated once through the library."""
    root = project["root"]
    for variant in ("dicosa", "macvr"):
        evaluate(eval_config(), variant, project["models"] / variant / "model.pt", project["features"],
                 root / "eval" / variant, root / "metrics" / f"{variant}.json", root / "plots" / variant)
    return project


def expected_items(captions_path: Path) -> dict[str, list[str]]:
    """The evaluated items, derived directly from the prepared tables (not via select_rows)."""
    caps = pd.read_parquet(captions_path)
    test_videos = [v for v, s in SPLITS.items() if s == "test" and v not in NO_CAPTION]
    train_videos = [v for v, s in SPLITS.items() if s == "train"]
    return {
        "videos": test_videos,
        "captions": [c for c, s in zip(caps["caption_id"], caps["split"]) if s == "test"],
        "qb_captions": [f"{v}#0" for v in train_videos if v not in NO_CAPTION],
        "qb_videos": train_videos,
    }


def brute_force(head, features: Path, caption_ids: list[str], video_ids: list[str]) -> np.ndarray:
    """Every pair through the head's own direct similarity, one pair at a time."""
    store = load_features(features, mmap=False)
    cap_row = dict(zip(store.captions_index["caption_id"], store.captions_index["row"]))
    vid_row = dict(zip(store.videos["video_id"], store.videos["row"]))
    out = np.zeros((len(caption_ids), len(video_ids)))

    def t(a):
        return torch.from_numpy(np.asarray(a, dtype=np.float32))

    with torch.no_grad():
        for i, c in enumerate(caption_ids):
            r = cap_row[c]
            for j, v in enumerate(video_ids):
                q = vid_row[v]
                out[i, j] = head.similarity(t(store.captions[r:r + 1]), t(store.frames[q:q + 1]),
                                            torch.from_numpy(store.frame_mask[q:q + 1].copy()),
                                            t(store.tags_visual_infer[q:q + 1]),
                                            t(store.tags_textual_infer[r:r + 1])).item()
    return out


@pytest.mark.parametrize("variant", ["dicosa", "macvr"])
def test_metrics_equal_evaluate_all_on_a_brute_force_similarity(evaluated, variant):
    p = evaluated
    head = load_head(p["models"] / variant / "model.pt")
    items = expected_items(p["captions"])
    sim = brute_force(head, p["features"], items["captions"], items["videos"])
    qb_t2v = brute_force(head, p["features"], items["qb_captions"], items["videos"])
    qb_v2t = brute_force(head, p["features"], items["captions"], items["qb_videos"]).T
    gt = np.array([items["videos"].index(c.split("#")[0]) for c in items["captions"]])

    out = p["root"] / "eval" / variant
    np.testing.assert_allclose(np.load(out / "similarity.npy"), sim, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.load(out / "querybank_t2v.npy"), qb_t2v, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.load(out / "querybank_v2t.npy"), qb_v2t, rtol=1e-4, atol=1e-5)
    assert np.std(sim) > 0.05  # the scores spread: rankings are not decided by rounding noise

    expected = evaluate_all(sim, gt, qb_t2v, qb_v2t, config=RETRIEVAL)
    info = rank_all(sim, gt, qb_t2v, qb_v2t, config=RETRIEVAL).info
    got = json.loads((out / "metrics.json").read_text())["metrics"]
    assert got.keys() == expected.keys() == {"t2v", "v2t"}
    for direction in expected:
        assert set(got[direction]) == {"none", "dsl", "qb"}
        for strategy, leaf in expected[direction].items():
            values = got[direction][strategy]
            assert {k: values[k] for k in leaf} == pytest.approx(leaf), (direction, strategy)
            for key in METRIC_KEYS:  # every metric lies within its interval
                assert values[f"{key}_lo"] <= values[key] + 1e-9 and values[key] <= values[f"{key}_hi"] + 1e-9
            # the strategy's diagnostics, prefixed with its name (QB-Norm: what it activated)
            diagnostics = {k: v for k, v in values.items() if k not in WITH_INTERVALS}
            assert diagnostics == {f"{strategy}_{k}": v for k, v in info[direction][strategy].items()}
        assert set(got[direction]["qb"]) - WITH_INTERVALS == QB_INFO
    # QB-Norm did something on this data (theta 1): otherwise the test could not tell it apart.
    ranks = pd.read_parquet(out / "ranks_t2v.parquet")
    assert (ranks["qb"] != ranks["none"]).any() or (ranks["dsl"] != ranks["none"]).any()


def test_dicosa_ignores_tags_and_macvr_uses_them(evaluated):
    p = evaluated
    items = expected_items(p["captions"])
    for variant, should_change in (("dicosa", False), ("macvr", True)):
        head = load_head(p["models"] / variant / "model.pt")
        store = load_features(p["features"], mmap=False)
        r = int(store.captions_index.set_index("caption_id").loc[items["captions"][0], "row"])
        q = int(store.videos.set_index("video_id").loc[items["videos"][0], "row"])
        args = [torch.from_numpy(np.asarray(a, dtype=np.float32)) for a in
                (store.captions[r:r + 1], store.frames[q:q + 1])]
        mask = torch.from_numpy(store.frame_mask[q:q + 1].copy())
        tags = [torch.from_numpy(np.asarray(a, dtype=np.float32)) for a in
                (store.tags_visual_infer[q:q + 1], store.tags_textual_infer[r:r + 1])]
        with torch.no_grad():
            a = head.similarity(*args, mask, *tags).item()
            b = head.similarity(*args, mask, tags[0] * -1.0, tags[1] * 0.5).item()
        assert (a != pytest.approx(b, abs=1e-6)) == should_change, variant


def test_querybank_rows_pick_first_captions_and_training_videos():
    videos = pd.DataFrame({"video_id": ["a", "b", "c", "d", "e", "f"], "row": [0, 1, 2, 3, 4, 5],
                           "split": ["train", "test", "train", "test", "train", "val"]})
    captions = pd.DataFrame({
        "caption_id": ["a1", "a0", "b0", "b1", "c2", "d0", "f0", "e5"],
        "video_id": ["a", "a", "b", "b", "c", "d", "f", "e"],
        "row": [0, 1, 2, 3, 4, 5, 6, 7], "split": ["train", "train", "test", "test", "train", "test", "val", "train"],
        "caption_index": [1, 0, 0, 1, 2, 0, 0, 5]})
    rows = select_rows(videos, captions, querybank_size=0)
    assert rows.video_ids == ["b", "d"] and list(rows.test_videos) == [1, 3]
    assert rows.caption_ids == ["b0", "b1", "d0"] and list(rows.caption_video) == [0, 0, 1]
    # First caption = lowest caption_index (a0 though a1 comes first; c2 and e5 are the lowest there).
    assert rows.qb_caption_ids == ["a0", "c2", "e5"] and list(rows.qb_captions) == [1, 4, 7]
    assert rows.qb_caption_videos == ["a", "c", "e"]
    assert rows.qb_video_ids == ["a", "c", "e"] and list(rows.qb_videos) == [0, 2, 4]
    small = select_rows(videos, captions, querybank_size=2)
    assert small.qb_video_ids == ["a", "c"] and small.qb_caption_ids == ["a0", "c2"]


def test_test_videos_without_captions_leave_the_gallery(caplog):
    videos = pd.DataFrame({"video_id": ["a", "b", "c"], "row": [0, 1, 2], "split": ["test", "test", "train"]})
    captions = pd.DataFrame({"caption_id": ["b0"], "video_id": ["b"], "row": [0], "split": ["test"],
                             "caption_index": [0]})
    rows = select_rows(videos, captions, 0)
    assert rows.video_ids == ["b"] and "1 test videos have no test caption" in caplog.text
    assert rows.qb_caption_ids == [] and rows.qb_video_ids == ["c"]
    with pytest.raises(ValueError, match="no test captions"):
        select_rows(videos, captions.assign(split="train"), 0)
    with pytest.raises(ValueError, match="missing columns"):
        select_rows(videos, captions.drop(columns="caption_index"), 0)


def test_metrics_file_nesting_and_rounding(evaluated):
    root = evaluated["root"]
    for variant in ("dicosa", "macvr"):
        full = json.loads((root / "eval" / variant / "metrics.json").read_text())
        rounded = json.loads((root / "metrics" / f"{variant}.json").read_text())
        assert set(rounded) == {"t2v", "v2t", "val"}  # the validation split beside the test split
        assert rounded["val"] == round_metrics(full["val"]["metrics"], 2)
        assert full["val"]["counts"] == {"captions": 2, "videos": 1}
        for direction, by in ((d, rounded[d]) for d in ("t2v", "v2t")):
            assert set(by) == {"none", "dsl", "qb"}
            for strategy, leaf in by.items():
                assert set(leaf) == WITH_INTERVALS | (QB_INFO if strategy == "qb" else set())
                for key, value in leaf.items():
                    assert value == round(full["metrics"][direction][strategy][key], 2)
                    assert round(value, 2) == value
        assert full["counts"] == {"test_captions": 7, "test_videos": 5, "querybank_t2v": 6, "querybank_v2t": 7}
        assert full["features"] == "cached" and full["variant"] == variant
        assert full["skipped"] == {"t2v": {}, "v2t": {}} and full["train_mode"] == "cached"
        assert full["evaluate"]["bootstrap"] == {"resamples": 200, "seed": 0, "level": 0.95}


def test_intervals_are_the_cluster_bootstrap_of_the_rank_tables(evaluated):
    """Each metric's interval: test videos resampled with all their captions (t2v clusters are the
    captions' videos, v2t queries are the videos), with the configured draws."""
    result = EvalResult.read(evaluated["root"] / "eval" / "macvr")
    n_videos = result.n_videos
    weights = draws(n_videos, BOOTSTRAP.resamples, BOOTSTRAP.seed)
    for direction in ("t2v", "v2t"):
        table = result.ranks[direction]
        clusters = table["column"].to_numpy() if direction == "t2v" else np.arange(n_videos)
        np.testing.assert_array_equal(result.entries(direction, "dsl").clusters, clusters)
        for strategy in ("none", "dsl", "qb"):
            want = bootstrap_metrics(Entries.of(table[strategy].to_numpy(), clusters, n_videos), weights,
                                     BOOTSTRAP.level)
            got = result.metrics[direction][strategy]
            assert {k: got[k] for k in want} == pytest.approx(want), (direction, strategy)
    t2v = result.ranks["t2v"]
    assert t2v.groupby("column").size().max() > 1  # several captions per video: clusters matter here


def test_round_metrics_keeps_nesting_and_non_floats():
    assert round_metrics({"a": {"b": 1.23456, "c": 7, "d": "x"}, "e": 2.005}) == {
        "a": {"b": 1.23, "c": 7, "d": "x"}, "e": round(2.005, 2)}


def test_plots_exist_parse_and_match_the_ranks(evaluated):
    root = evaluated["root"]
    for variant in ("dicosa", "macvr"):
        plots = root / "plots" / variant
        with Image.open(plots / "recall.png") as img:
            assert img.format == "PNG" and img.size[0] > 100 and img.size[1] > 50
        for direction in ("t2v", "v2t"):
            curve = pd.read_csv(plots / f"recall_{direction}.csv")
            assert list(curve.columns) == ["K", "none", "dsl", "qb"] and list(curve["K"]) == [1, 2, 5, 10]
            ranks = pd.read_parquet(root / "eval" / variant / f"ranks_{direction}.parquet")
            for strategy in ("none", "dsl", "qb"):
                expected = [100.0 * np.mean(ranks[strategy].to_numpy() <= k) for k in (1, 2, 5, 10)]
                np.testing.assert_allclose(curve[strategy], expected, atol=1e-4)
                assert np.all(np.diff(curve[strategy]) >= 0)
            assert curve.iloc[-1, 1:].tolist() == [100.0] * 3  # K = 10 >= every gallery size here


def test_recall_curve_against_a_loop():
    ranks = {"qb": np.array([1, 3, 3, 7]), "none": np.array([2, 2, 9, 1])}
    df = recall_curve(ranks, [1, 3, 5])
    assert list(df.columns) == ["K", "qb", "none"]  # the configured (given) strategy order
    for k_i, k in enumerate([1, 3, 5]):
        for s, r in ranks.items():
            assert df[s][k_i] == pytest.approx(100.0 * sum(1 for x in r if x <= k) / len(r))


def test_rank_and_top_tables_agree_with_the_similarity(evaluated):
    out = evaluated["root"] / "eval" / "macvr"
    sim = np.load(out / "similarity.npy")
    caps = pd.read_parquet(out / "captions.parquet")
    videos = pd.read_parquet(out / "videos.parquet")["video_id"].tolist()
    assert np.array_equal(np.load(out / "caption_video.npy"), caps["column"].to_numpy())
    assert [videos[c] for c in caps["column"]] == caps["video_id"].tolist()
    ranks = pd.read_parquet(out / "ranks_t2v.parquet")
    assert ranks["caption_id"].tolist() == caps["caption_id"].tolist()
    assert list(ranks.columns) == ["caption_id", "video_id", "column", "none", "dsl", "qb"]
    assert ranks["column"].tolist() == caps["column"].tolist()
    for i, col in enumerate(caps["column"]):
        assert ranks["none"][i] == 1 + np.sum(sim[i] > sim[i, col])
    top = pd.read_parquet(out / "top_t2v.parquet")
    assert set(top["strategy"]) == {"none", "dsl", "qb"}
    none = top[top["strategy"] == "none"]
    for i, cid in enumerate(caps["caption_id"]):
        rows = none[none["caption_id"] == cid].sort_values("position")
        order = np.argsort(-sim[i], kind="stable")[:4]
        assert rows["video_id"].tolist() == [videos[j] for j in order]
        np.testing.assert_allclose(rows["score"], sim[i, order], rtol=1e-6)
    v2t = pd.read_parquet(out / "ranks_v2t.parquet")
    assert list(v2t.columns) == ["video_id", "column", "none", "dsl", "qb"]
    assert v2t["video_id"].tolist() == videos and v2t["column"].tolist() == list(range(len(videos)))
    assert (v2t[["none", "dsl", "qb"]] >= 1).all().all()
    qb = pd.read_parquet(out / "querybank_t2v.parquet")
    assert qb["caption_id"].tolist() == expected_items(evaluated["captions"])["qb_captions"]


def test_top_items_tie_break_and_short_rows():
    cols, vals = top_items(np.array([[0.5, 0.9, 0.5], [1.0, 1.0, 1.0]]), 5)
    assert cols.tolist() == [[1, 0, 2], [0, 1, 2]] and vals[0].tolist() == [0.9, 0.5, 0.5]


def test_row_view_reads_rows_on_demand():
    base = np.arange(20).reshape(10, 2)
    view = RowView(base, np.array([7, 2, 5]))
    assert len(view) == 3 and view.shape == (3, 2) and view[1:].tolist() == [[4, 5], [10, 11]]
    assert np.asarray(view).tolist() == [[14, 15], [4, 5], [10, 11]]
    with pytest.raises(IndexError):
        RowView(base, np.array([10]))


def test_direct_and_fast_scoring_agree(evaluated, tmp_path):
    p = evaluated
    evaluate(eval_config(method="direct"), "macvr", p["models"] / "macvr" / "model.pt", p["features"],
             tmp_path / "eval", tmp_path / "m.json", tmp_path / "plots")
    np.testing.assert_allclose(np.load(tmp_path / "eval" / "similarity.npy"),
                               np.load(p["root"] / "eval" / "macvr" / "similarity.npy"), rtol=1e-4, atol=1e-5)


def _invoke(args: list) -> object:
    return CliRunner().invoke(evaluate_stage.app, [str(a) for a in args])


def test_stage_cli_reads_its_params_section(evaluated, tmp_path):
    p = evaluated
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"evaluate": eval_params(top_k=2)}))
    args = ["--params", tmp_path / "params.yaml", "--variant", "macvr", "--model",
            p["models"] / "macvr" / "model.pt", "--features", p["features"], "--out", tmp_path / "eval",
            "--metrics", tmp_path / "metrics.json", "--plots", tmp_path / "plots"]
    result = _invoke(args)
    assert result.exit_code == 0, result.output
    assert "macvr: t2v " in result.output and "t2v none R@1=" in result.output and "v2t qb R@1=" in result.output
    top = pd.read_parquet(tmp_path / "eval" / "top_t2v.parquet")
    assert top["position"].max() == 2
    assert json.loads((tmp_path / "metrics.json").read_text()) == \
        json.loads((p["root"] / "metrics" / "macvr.json").read_text())

    wrong = _invoke([a if a != "macvr" else "dicosa" for a in args])
    assert wrong.exit_code == 1 and "is a macvr checkpoint, but --variant is dicosa" in wrong.output
    bad = eval_params()
    del bad["retrieval"]["strategies"]["qb"]["v2t"]["theta"]
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({"evaluate": bad}))
    result = _invoke(["--params", tmp_path / "bad.yaml"] + args[2:])
    assert result.exit_code == 1 and "evaluate.retrieval.strategies.qb.v2t: missing key 'theta'" in result.output
    assert "Traceback" not in result.output
    subset = eval_params()
    subset["retrieval"]["strategies"] = {"dsl": {"t2v_temp": 0.01, "v2t_temp": 0.01}, "none": {}}  # no querybank
    (tmp_path / "subset.yaml").write_text(yaml.safe_dump({"evaluate": subset}))
    args[args.index("--out") + 1] = tmp_path / "eval_subset"
    result = _invoke(["--params", tmp_path / "subset.yaml"] + args[2:])
    assert result.exit_code == 0, result.output
    assert set(json.loads((tmp_path / "metrics.json").read_text())["t2v"]) == {"dsl", "none"}
    assert list(pd.read_parquet(tmp_path / "eval_subset" / "ranks_t2v.parquet").columns)[-2:] == ["dsl", "none"]
    assert not (tmp_path / "eval_subset" / "querybank_t2v.npy").exists()


def test_config_validation_names_the_knob():
    with pytest.raises(ValueError, match="recall_ks must be strictly increasing"):
        eval_config(recall_ks=[5, 1])
    with pytest.raises(ValueError, match="top_k must be >= 1"):
        eval_config(top_k=0)


def _clip_texts(backbone, texts: list[str]) -> torch.Tensor:
    """CLIP's text tower on clip.tokenize at text.max_words, without the backbone encoders."""
    return backbone.model.encode_text(clip_module().tokenize(texts, context_length=MAX_WORDS, truncate=True))


def _clip_frames(backbone, frames: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(np.asarray(frames)).permute(0, 3, 1, 2).float() / 255
    x = (x - torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)) / torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    return backbone.model.encode_image(x)


def test_finetune_checkpoint_reencodes_with_its_own_backbone(evaluated, tmp_path):
    """A finetune checkpoint's backbone (not the frozen one) encodes frames, captions and the
    first-M tag sentences; its scores match the head on features encoded here by that backbone."""
    p = evaluated
    torch.manual_seed(123)
    clip = tiny_backbone()
    head = save_checkpoint(tmp_path / "model.pt", "macvr", seed=5, backbone=clip)
    missing = tmp_path / "missing"
    with pytest.raises(EvaluateError, match="fine-tuned end to end: .* needs --captions, --tags"):
        evaluate(eval_config(), "macvr", tmp_path / "model.pt", p["features"], missing, missing / "m.json", missing)
    evaluate(eval_config(), "macvr", tmp_path / "model.pt", p["features"], tmp_path / "eval",
             tmp_path / "m.json", tmp_path / "plots", frames_dir=p["frames"], captions_path=p["captions"],
             tags_path=p["tags"])
    info = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert info["features"] == "finetune" and info["train_mode"] == "finetune"

    items = expected_items(p["captions"])
    caps = pd.read_parquet(p["captions"]).set_index("caption_id")
    tags = load_tags(p["tags"])
    frames = np.load(p["frames"] / "clip_frames.npy")
    mask = np.load(p["frames"] / "clip_mask.npy")
    order = list(SPLITS)
    with torch.no_grad():
        text = _clip_texts(clip, [caps.loc[c, "text"] for c in items["captions"]])
        tags_t = _clip_texts(clip, [infer_sentence(tags["textual"][c], INFER_TAGS) for c in items["captions"]])
        sim = np.zeros((len(items["captions"]), len(items["videos"])))
        for j, v in enumerate(items["videos"]):
            r = order.index(v)
            feats = torch.zeros(1, mask.shape[1], text.shape[1])
            feats[0, torch.from_numpy(mask[r])] = _clip_frames(clip, frames[r][mask[r]])
            tags_v = _clip_texts(clip, [infer_sentence(tags["visual"][v], INFER_TAGS)])
            for i in range(len(items["captions"])):
                sim[i, j] = head.similarity(text[i:i + 1], feats, torch.from_numpy(mask[r:r + 1]), tags_v,
                                            tags_t[i:i + 1]).item()
    # fp16 storage of the re-encoded features bounds the agreement.
    np.testing.assert_allclose(np.load(tmp_path / "eval" / "similarity.npy"), sim, rtol=2e-2, atol=2e-2)
    cached = np.load(p["root"] / "eval" / "macvr" / "similarity.npy")
    assert not np.allclose(np.load(tmp_path / "eval" / "similarity.npy"), cached, atol=1e-2)


def test_the_validation_split_is_scored_like_the_test_split(evaluated, tmp_path):
    """Swap the val and test labels of the features: the swapped run's val metrics are the
    original test metrics (same querybanks and bootstrap draws), and its test metrics the
    original val metrics, to full precision."""
    import shutil

    p = evaluated
    swapped = tmp_path / "features"
    shutil.copytree(p["features"], swapped)
    for name in ("videos.parquet", "captions.parquet"):
        table = pd.read_parquet(swapped / name)
        table["split"] = table["split"].map(lambda s: {"test": "val", "val": "test"}.get(s, s))
        table.to_parquet(swapped / name)
    evaluate(eval_config(), "macvr", p["models"] / "macvr" / "model.pt", swapped, tmp_path / "eval",
             tmp_path / "macvr.json", tmp_path / "plots")
    original = json.loads((p["root"] / "eval" / "macvr" / "metrics.json").read_text())
    other = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert other["val"]["metrics"] == original["metrics"]
    assert other["metrics"] == original["val"]["metrics"]
    assert other["val"]["counts"] == {"captions": 7, "videos": 5}
