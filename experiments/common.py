"""Experiment helpers: build datasets, backbones, features, train + evaluate heads, paired bootstrap.

Everything calls the library (``pipeline``) directly or the stage modules with a private params
file, on data under ``experiments/data`` (not the DVC workspace), so a trial takes seconds to a
few minutes and never disturbs ``dvc repro``. Results append to ``experiments/tagpath_results.jsonl``.
Importing this module changes nothing; scripts call :func:`setup` from their ``main``.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
EXP = ROOT / "experiments"
DATA = EXP / "data"
RESULTS = EXP / "tagpath_results.jsonl"
PY = sys.executable


def threads() -> int:
    return int(os.environ.get("EXP_THREADS", "1"))


def setup() -> None:
    """Process settings for an experiment run (CPU threads, no DVC analytics)."""
    import torch

    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    torch.set_num_threads(threads())


def text_config(params: dict):
    from pipeline.config import from_mapping
    from pipeline.text import TextConfig

    return from_mapping(TextConfig, params["text"], "experiment text")


def base_params() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def set_key(params: dict, dotted: str, value: Any) -> None:
    node = params
    *head, last = dotted.split(".")
    for k in head:
        node = node[k]
    if last not in node:
        raise KeyError(dotted)
    node[last] = value


def with_overrides(params: dict, overrides: dict[str, Any] | None) -> dict:
    out = copy.deepcopy(params)
    for k, v in (overrides or {}).items():
        set_key(out, k, v)
    return out


def write_params(params: dict, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def run_stage(module: str, *args: str) -> float:
    """Run ``python -m stages.<module> ...`` in ROOT; returns wall seconds."""
    start = time.perf_counter()
    env = dict(os.environ, OMP_NUM_THREADS=str(threads()))
    env["TQDM_MININTERVAL"] = "30"
    subprocess.run([PY, "-m", f"stages.{module}", *args], cwd=ROOT, check=True, env=env,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def backbone_args(controls: str) -> "argparse.ArgumentParser":
    """The arguments the backbone-then-heads scripts share (extend, then ``parse_args``)."""
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="default")
    ap.add_argument("--name", required=True)
    ap.add_argument("--tiny", default="{}", help="JSON overrides of params backbone.tiny")
    ap.add_argument("--train", default="{}", help="JSON overrides of params train.*")
    ap.add_argument("--controls", default=controls)
    ap.add_argument("--note", default="")
    return ap


# --------------------------------------------------------------------------- datasets
def make_dataset(name: str, overrides: dict[str, Any] | None = None, force: bool = False) -> tuple[Path, dict]:
    """prepare + frames + offline tags (4 temperatures each) + clean_tags into DATA/name.

    Returns the directory and the wall seconds of each step.
    """
    d = DATA / name
    if (d / "tags" / "tags.parquet").exists() and not force:
        return d, json.loads((d / "timings.json").read_text())
    params = write_params(with_overrides(base_params(), overrides), d / "params.yaml")
    p = str(params)
    t: dict[str, float] = {}
    t["prepare"] = run_stage("prepare", "--params", p, "--out", str(d / "prepared"))
    t["frames"] = run_stage("frames", "--params", p, "--videos", str(d / "prepared/videos.parquet"),
                            "--out", str(d / "frames"), "--metrics", str(d / "frames.json"))
    raw = d / "tags" / "raw"
    t["tag_text"] = t["tag_video"] = 0.0
    for key, temp in (("t07", "0.7"), ("t08", "0.8"), ("t09", "0.9"), ("t10", "1.0")):
        t["tag_text"] += run_stage("tag_text", "--params", p, "--captions", str(d / "prepared/captions.parquet"),
                                   "--temperature", temp, "--cache", str(d / "tags/cache.sqlite"),
                                   "--out", str(raw / f"text_{key}.parquet"))
        t["tag_video"] += run_stage("tag_video", "--params", p, "--frames", str(d / "frames/vlm_frames.parquet"),
                                    "--temperature", temp, "--cache", str(d / "tags/cache.sqlite"),
                                    "--out", str(raw / f"video_{key}.parquet"))
    args = []
    for key in ("t07", "t08", "t09", "t10"):
        args += ["--text-raw", str(raw / f"text_{key}.parquet"), "--video-raw", str(raw / f"video_{key}.parquet")]
    t["clean_tags"] = run_stage("clean_tags", "--params", p, *args,
                                "--captions", str(d / "prepared/captions.parquet"),
                                "--videos", str(d / "prepared/videos.parquet"),
                                "--out", str(d / "tags/tags.parquet"), "--metrics", str(d / "tags.json"))
    (d / "timings.json").write_text(json.dumps(t, indent=1))
    return d, t


# --------------------------------------------------------------------------- backbone
def tiny_config(overrides: dict[str, Any] | None = None):
    """params.yaml's backbone.tiny with ``overrides``; the library-only fresh-clip fields
    (``fresh_*``, refused in params files) are set in code here."""
    import dataclasses

    from pipeline.backbone.config import TinyClipConfig
    from pipeline.config import from_mapping

    section = base_params()["backbone"]["tiny"]
    section.update(overrides or {})
    fresh = {k: section.pop(k) for k in list(section) if k.startswith("fresh_")}
    return dataclasses.replace(from_mapping(TinyClipConfig, section, "experiment backbone.tiny"), **fresh)


def pretrain(data: Path, name: str, overrides: dict[str, Any] | None = None, force: bool = False,
             progress: bool = False) -> tuple[Path, dict]:
    """Pretrain a tiny CLIP on ``data``'s train split; weights at data/backbones/name.pt."""
    from pipeline.backbone.build import build_backbone
    from pipeline.backbone.config import BackboneConfig
    from pipeline.backbone.pretrain_options import PretrainOptions

    out = data / "backbones" / f"{name}.pt"
    meta = out.with_suffix(".json")
    if out.exists() and meta.exists() and not force:
        return out, json.loads(meta.read_text())
    out.parent.mkdir(parents=True, exist_ok=True)
    from pipeline.config import from_mapping
    from pipeline.tags.offline_visual import OfflineVisualConfig

    cfg = BackboneConfig(kind="tiny", model="ViT-B/32", path=None, sha256=None, torch_threads=threads(),
                         tiny=tiny_config(overrides))
    params = yaml.safe_load((data / "params.yaml").read_text())
    tagger = from_mapping(OfflineVisualConfig, params["tag_video"]["offline"], "tag_video.offline")
    cpu = time.process_time()
    options = PretrainOptions.from_files(data / "frames", tags=data / "tags" / "tags.parquet",
                                         videos=data / "prepared/videos.parquet", visual_tagger=tagger)
    metrics = build_backbone(cfg, data / "frames", data / "prepared/captions.parquet", out,
                             text_config(params).max_words, progress=progress, pretrain_options=options)
    metrics["cpu_s"] = round(time.process_time() - cpu, 1)
    metrics["overrides"] = overrides or {}
    meta.write_text(json.dumps(metrics, indent=1))
    return out, metrics


# --------------------------------------------------------------------------- features
def features(data: Path, backbone: Path, name: str, tags: Path | None = None,
             overrides: dict[str, Any] | None = None, force: bool = False) -> tuple[Path, float]:
    from pipeline.config import from_mapping
    from pipeline.features.config import FeaturesConfig
    from pipeline.features.extract import extract_features

    out = data / "features" / name
    if (out / "meta.json").exists() and not force:
        return out, 0.0
    params = base_params()
    section = params["features"]
    section.update(overrides or {})
    section["device"] = "cpu"
    section["torch_threads"] = threads()
    cfg = from_mapping(FeaturesConfig, section, "experiment features")
    start = time.perf_counter()
    extract_features(cfg, text_config(params), backbone, data / "frames", data / "prepared/videos.parquet",
                     data / "prepared/captions.parquet", tags or data / "tags/tags.parquet", out, progress=False)
    return out, time.perf_counter() - start


def control_tags_file(data: Path, control: str, seed: int = 0) -> Path:
    """tags.parquet with the tag control applied (real = the file itself)."""
    import pandas as pd

    from pipeline.config import from_mapping
    from pipeline.features.tag_control import controlled_tags, oracle_visual_tags
    from pipeline.io import read_parquet, write_parquet
    from pipeline.tags.lexicon import load_lexicon
    from pipeline.tags.offline_visual import OfflineVisualConfig

    src = data / "tags" / "tags.parquet"
    if control == "real":
        return src
    out = data / "tags" / f"tags_{control}.parquet"
    if out.exists():
        return out
    df = read_parquet(src)
    vis = df[df["modality"] == "visual"].reset_index(drop=True)
    txt = df[df["modality"] == "textual"].reset_index(drop=True)
    params = json.loads(json.dumps(yaml.safe_load((data / "params.yaml").read_text())))
    vcfg = from_mapping(OfflineVisualConfig, params["tag_video"]["offline"], "tag_video.offline")
    truth = json.loads((data / "prepared" / "synthetic_truth.json").read_text())
    lex = load_lexicon(vcfg.lexicon)
    v, t = controlled_tags(
        control, list(vis["item_id"]), list(vis["split"]), [list(x) for x in vis["tags"]],
        list(txt["item_id"]), list(txt["split"]), [list(x) for x in txt["tags"]], seed,
        oracle=lambda ids: oracle_visual_tags(ids, truth, lex, vcfg, params["tag_video"]["seed"]))
    vis = vis.assign(tags=v)
    txt = txt.assign(tags=t)
    write_parquet(pd.concat([vis, txt], ignore_index=True), out)
    return out


# --------------------------------------------------------------------------- train + evaluate
def train_config(variant: str, out: Path, overrides: dict[str, Any] | None = None):
    """``variant``'s resolved train config (params.yaml's train + variants, then ``overrides``
    of ``train`` keys), via a private params file in ``out``."""
    from pipeline.train.config import TrainConfig
    from pipeline.train.variants import load_variant

    params = with_overrides(base_params(), {f"train.{k}": v for k, v in (overrides or {}).items()})
    params["train"]["device"] = "cpu"
    params["train"]["torch_threads"] = threads()
    return load_variant(write_params(params, out / "params.yaml"), variant, TrainConfig)


def test_similarity(model_path: Path, features_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    from pipeline.evaluation.items import select_rows
    from pipeline.evaluation.sets import cached_sets
    from pipeline.features.store import load_features
    from pipeline.scoring import score_matrix
    from pipeline.train import checkpoint

    model = checkpoint.head_from(checkpoint.load(model_path), str(model_path))
    store = load_features(features_dir)
    rows = select_rows(store.videos, store.captions_index, 0)
    sets = cached_sets(store, rows)
    t, v = sets.test_text, sets.test_videos
    sim = score_matrix(model, t.text, v.frames, v.mask, v.tags, t.tags, text_chunk=16, video_chunk=8)
    return np.asarray(sim, dtype=np.float32), rows.caption_video


def recall(sim: np.ndarray, caption_video: np.ndarray) -> dict[str, float]:
    from pipeline.retrieval.metrics import rank_metrics, ranks_t2v, ranks_v2t

    t2v = rank_metrics(ranks_t2v(sim, caption_video))
    v2t = rank_metrics(ranks_v2t(sim.T, caption_video))
    return {"t2v_R1": t2v["R1"], "t2v_R5": t2v["R5"], "t2v_R10": t2v["R10"],
            "v2t_R1": v2t["R1"], "v2t_R5": v2t["R5"], "v2t_R10": v2t["R10"]}


def train_eval(features_dir: Path, variant: str, name: str, overrides: dict[str, Any] | None = None,
               keep: bool = False) -> dict[str, Any]:
    """Train ``variant`` on ``features_dir`` and score the test split; returns metrics + sim."""
    import logging
    import shutil

    from pipeline.train.loop import TrainInputs, train

    logging.getLogger("pipeline").setLevel(logging.WARNING)
    out = features_dir.parent.parent / "runs" / name / variant
    shutil.rmtree(out, ignore_errors=True)
    cfg = train_config(variant, out, overrides)
    start = time.perf_counter()
    train(cfg, variant, TrainInputs(features=features_dir), out, live_dir=None, resume="never",  # type: ignore[arg-type]
          text=text_config(base_params()))
    train_s = time.perf_counter() - start
    start = time.perf_counter()
    sim, caption_video = test_similarity(out / "model.pt", features_dir)
    eval_s = time.perf_counter() - start
    np.save(out / "sim.npy", sim)
    np.save(out / "caption_video.npy", caption_video)
    if not keep:
        for f in ("checkpoint.pt", "last.pt"):
            (out / f).unlink(missing_ok=True)
    return {"variant": variant, **recall(sim, caption_video), "train_s": round(train_s, 1),
            "eval_s": round(eval_s, 1), "sim": sim, "caption_video": caption_video}


# --------------------------------------------------------------------------- statistics
def paired_bootstrap(sim_a: np.ndarray, sim_b: np.ndarray, caption_video: np.ndarray,
                     n: int = 1000, seed: int = 0, k: int = 1) -> dict[str, float]:
    """t2v R@k difference a - b (points) with a 95% percentile interval, resampling test videos
    (each with all its captions) with replacement; the gallery stays whole."""
    from pipeline.retrieval.metrics import ranks_t2v

    hit_a = ranks_t2v(sim_a, caption_video) <= k
    hit_b = ranks_t2v(sim_b, caption_video) <= k
    diff = hit_a.astype(np.float64) - hit_b
    videos = np.unique(caption_video)
    per_video_sum = np.bincount(caption_video, weights=diff, minlength=videos.max() + 1)
    per_video_n = np.bincount(caption_video, minlength=videos.max() + 1)
    rng = np.random.default_rng(seed)
    draws = rng.choice(videos, size=(n, len(videos)), replace=True)
    boot = per_video_sum[draws].sum(axis=1) / per_video_n[draws].sum(axis=1)
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return {"diff": 100 * float(diff.mean()), "lo": 100 * float(lo), "hi": 100 * float(hi)}


def unit(x: Any) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def feature_similarities(features_dir: Path) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Test-split cosine similarities from frozen features alone (no head): caption vs frame mean
    (``cap_fmean``), vs visual tag sentence (``cap_tv``), vs both summed (``cap_fmean_tv``), and
    textual vs visual tag sentence (``tt_tv``); with each test caption's gallery column."""
    from pipeline.evaluation.items import select_rows
    from pipeline.features.store import load_features

    store = load_features(features_dir)
    rows = select_rows(store.videos, store.captions_index, 0)
    cap = unit(store.captions[rows.test_captions])
    tt = unit(store.tags_textual_infer[rows.test_captions])
    tv = unit(store.tags_visual_infer[rows.test_videos])
    frames = np.asarray(store.frames[rows.test_videos], dtype=np.float32)
    mask = np.asarray(store.frame_mask[rows.test_videos])
    fmean = unit((frames * mask[..., None]).sum(1) / mask.sum(1, keepdims=True))
    return ({"cap_fmean": cap @ fmean.T, "cap_tv": cap @ tv.T, "tt_tv": tt @ tv.T,
             "cap_fmean_tv": cap @ unit(fmean + tv).T}, rows.caption_video)


def log_result(record: dict[str, Any]) -> None:
    clean = {k: v for k, v in record.items() if not isinstance(v, np.ndarray)}
    clean["time"] = time.strftime("%Y-%m-%d %H:%M:%S")
    with RESULTS.open("a") as f:
        f.write(json.dumps(clean) + "\n")


def fmt(r: dict[str, Any]) -> str:
    return (f"{r['variant']:7s} t2v R1 {r['t2v_R1']:5.1f} R5 {r['t2v_R5']:5.1f} | v2t R1 {r['v2t_R1']:5.1f} "
            f"R5 {r['v2t_R5']:5.1f} | train {r['train_s']}s eval {r['eval_s']}s")


def dataclass_dict(x: Any) -> dict:
    return dataclasses.asdict(x)
