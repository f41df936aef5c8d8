"""A released checkpoint evaluated by the pipeline equals the official ``eval_epoch``.

Golden numbers (``tests/golden/released/official_<variant>_m8.*``) were recorded by running the
official code unchanged (README: "Golden numbers") on the tiny MSR-VTT release in
``tests/golden/released/msrvtt`` (14 H.264 clips of 2-17 s, the two tag CSVs) with ViT-B/32-shaped
checkpoints from :func:`tests.released_fixtures.official_state_dict` (CLIP matrices in fp16 as the
authors' GPU runs store them): MAC-VR-code @ dc4cc40 for the MAC-VR checkpoint (seed 0; every
strategy), jpthu17/DiCoSA @ 7cbb336 for the DiCoSA one (seed 1; its ``eval_epoch`` reports QB-Norm
only), both with ``--max_words 32 --max_frames 12 --video_framerate 1 --temp 3 --center 8``, 8 / 8
tags at test, QB-Norm beta 70, k 1, theta 3 / 5. Here the same checkpoints are rebuilt from their
seeds and run through the stages a user runs (prepare, frames, clean_tags with ``released.tags``,
features with ``encode: false``, train with ``variants.<v>.released``, evaluate) with the
reference profile.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from typer.testing import CliRunner

from tests.released_fixtures import VIT_B_32, official_state_dict, write_msrvtt_annotations

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden" / "released"
FIXTURE = GOLDEN / "msrvtt"

pytestmark = pytest.mark.slow
SEEDS = {"macvr": 0, "dicosa": 1}  # the seeds the official runs' checkpoints were drawn with


def invoke(app, *args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory) -> Path:
    from stages.clean_tags import app as clean_tags
    from stages.evaluate import app as evaluate
    from stages.features import app as features
    from stages.frames import app as frames
    from stages.prepare import app as prepare
    from stages.train import app as train

    torch.set_num_threads(2)
    root = tmp_path_factory.mktemp("released_golden")
    write_msrvtt_annotations(FIXTURE / "anns", root / "annotations")
    (root / "released").mkdir()
    shutil.copytree(FIXTURE / "anns", root / "released" / "anns")
    for variant, seed in SEEDS.items():
        torch.save(official_state_dict(variant, VIT_B_32, seed=seed, clip_dtype=torch.float16),
                   root / "released" / f"{variant}.bin")
    params = yaml.safe_load((ROOT / "params.reference.yaml").read_text())
    params["prepare"]["source"] = {"annotations": str(root / "annotations"), "videos": str(FIXTURE / "videos")}
    params["frames"]["workers"] = 1
    params["released"].update(dir=str(root / "released"), tags="anns")
    params["features"].update(encode=False, device="cpu", torch_threads=2)
    params["variants"] = {v: {"released": f"{v}.bin"} for v in SEEDS}
    params["evaluate"].update(device="cpu", torch_threads=2)
    params["compare"]["baseline"] = "macvr"
    p = root / "params.yaml"
    p.write_text(yaml.safe_dump(params, sort_keys=False))
    d = root / "data"
    invoke(prepare, "--params", p, "--out", d / "prepared")
    invoke(frames, "--params", p, "--videos", d / "prepared/videos.parquet", "--out", d / "frames",
           "--metrics", root / "metrics/frames.json")
    invoke(clean_tags, "--params", p, "--captions", d / "prepared/captions.parquet", "--videos",
           d / "prepared/videos.parquet", "--out", d / "tags/tags.parquet", "--metrics", root / "metrics/tags.json")
    # features.encode: false reads the backbone file only for its checksum
    invoke(features, "--params", p, "--backbone", root / "released/macvr.bin", "--frames", d / "frames",
           "--videos", d / "prepared/videos.parquet", "--captions", d / "prepared/captions.parquet",
           "--tags", d / "tags/tags.parquet", "--out", d / "features")
    for v in SEEDS:
        invoke(train, "--params", p, "--variant", v, "--out", root / f"models/{v}", "--live-dir", root / f"dvclive/{v}")
        invoke(evaluate, "--params", p, "--variant", v, "--model", root / f"models/{v}/model.pt",
               "--features", d / "features", "--frames", d / "frames", "--captions", d / "prepared/captions.parquet",
               "--tags", d / "tags/tags.parquet", "--out", root / f"eval/{v}", "--metrics", root / f"metrics/{v}.json",
               "--plots", root / f"plots/{v}")
    return root


def official(variant: str):
    arrays = np.load(GOLDEN / f"official_{variant}_m8.npz")
    meta = json.loads((GOLDEN / f"official_{variant}_m8.json").read_text())
    return arrays, meta


@pytest.mark.parametrize("variant", sorted(SEEDS))
def test_similarity_and_querybanks_equal_the_official_eval_epoch(evaluated, variant):
    arrays, meta = official(variant)
    order, ev = meta["order"], evaluated / f"eval/{variant}"
    text = pd.read_parquet(evaluated / "data/prepared/captions.parquet").set_index("caption_id")["text"]
    caps = pd.read_parquet(ev / "captions.parquet")["caption_id"].map(text).tolist()
    vids = pd.read_parquet(ev / "videos.parquet")["video_id"].tolist()
    rows = [caps.index(t) for t in order["test_captions"]]
    cols = [vids.index(v) for v in order["test_videos"]]
    sim = np.load(ev / "similarity.npy")[np.ix_(rows, cols)]
    np.testing.assert_allclose(sim, arrays["similarity"], rtol=0, atol=1e-5)
    qb_caps = pd.read_parquet(ev / "querybank_t2v.parquet")["caption_id"].map(text).tolist()
    qb_t2v = np.load(ev / "querybank_t2v.npy")[np.ix_([qb_caps.index(t) for t in order["querybank_captions"]], cols)]
    np.testing.assert_allclose(qb_t2v, arrays["querybank_t2v"], rtol=0, atol=1e-5)
    qb_vids = pd.read_parquet(ev / "querybank_v2t.parquet")["video_id"].tolist()
    qb_v2t = np.load(ev / "querybank_v2t.npy")[np.ix_([qb_vids.index(v) for v in order["querybank_videos"]], rows)]
    np.testing.assert_allclose(qb_v2t, arrays["querybank_v2t"], rtol=0, atol=1e-5)
    # a wrong item order or a missing tag would move the scores far beyond the tolerance
    assert np.abs(arrays["similarity"] - arrays["similarity"][::-1]).max() > 1e-3


@pytest.mark.parametrize("variant", sorted(SEEDS))
def test_metrics_equal_the_official_ones(evaluated, variant):
    _, meta = official(variant)
    ours = json.loads((evaluated / f"eval/{variant}/metrics.json").read_text())["metrics"]
    for name, expected in meta["metrics"].items():
        strategy, direction = name.split("_")
        got = ours[direction][strategy]
        for official_key, key in (("R1", "R1"), ("R5", "R5"), ("R10", "R10"), ("R50", "R50"), ("MR", "MdR"),
                                  ("MeanR", "MnR")):
            assert got[key] == pytest.approx(expected[official_key], abs=1e-9), (name, key)


def test_the_strategies_rescore_like_the_official_code(evaluated):
    """DSL and QB-Norm applied to the official similarity give the official rankings."""
    from pipeline.retrieval import STRATEGIES

    arrays, _ = official("macvr")
    sim = arrays["similarity"].astype(np.float64)
    dsl = STRATEGIES.get("dsl")
    ours = dsl.apply(sim, "t2v", dsl.reference(), None).scores
    assert np.array_equal(np.argsort(-ours, axis=1), np.argsort(-arrays["metrics_input_dsl_t2v"], axis=1))
    qb = STRATEGIES.get("qb")
    qp = qb.reference()  # beta 70, k 1, theta 3 / 5: the reference code's values
    rescored = qb.apply(sim, "t2v", qp, arrays["querybank_t2v"].astype(np.float64)).scores
    assert np.array_equal(np.argsort(-rescored, axis=1), np.argsort(-arrays["qb_t2v_normalised"], axis=1))


def test_the_import_is_recorded(evaluated):
    from pipeline.backbone.io import file_sha256
    from pipeline.evaluation.trained import TrainedModel

    model = TrainedModel.load(evaluated / "models/macvr/model.pt")
    assert model.run["released"]["sha256"] == file_sha256(evaluated / "released/macvr.bin")
    assert model.run["released"]["dtypes"]["float16"] > 0
    info = json.loads((evaluated / "eval/macvr/metrics.json").read_text())
    assert info["train_mode"] == "released" and info["features"] == "finetune"
    tags = json.loads((evaluated / "metrics/tags.json").read_text())
    assert tags["released"]["rows"] == 22 and tags["released"]["skipped"] == {}
