"""Experiment helpers: build datasets, backbones, features, train + evaluate heads, paired bootstrap.

Everything calls the library (``pipeline``) directly or the stage modules with a private params
file, on data under ``experiments/data`` (not the DVC workspace), so a trial takes seconds to a
few minutes and never disturbs ``dvc repro``. Results append to ``experiments/results.jsonl``.
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
os.environ.setdefault("DVC_NO_ANALYTICS", "1")

import torch  # noqa: E402

torch.set_num_threads(int(os.environ.get("EXP_THREADS", "1")))


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
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("EXP_THREADS", "1"))
    env["TQDM_MININTERVAL"] = "30"
    subprocess.run([PY, "-m", f"stages.{module}", *args], cwd=ROOT, check=True, env=env,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


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
    from pipeline.backbone.config import TinyClipConfig
    from pipeline.config import from_mapping

    section = base_params()["backbone"]["tiny"]
    section.update(overrides or {})
    return from_mapping(TinyClipConfig, section, "experiment backbone.tiny")


def pretrain(data: Path, name: str, overrides: dict[str, Any] | None = None, force: bool = False,
             progress: bool = False) -> tuple[Path, dict]:
    """Pretrain a tiny CLIP on ``data``'s train split; weights at data/backbones/name.pt."""
    from pipeline.backbone.build import build_backbone
    from pipeline.backbone.config import BackboneConfig

    out = data / "backbones" / f"{name}.pt"
    meta = out.with_suffix(".json")
    if out.exists() and meta.exists() and not force:
        return out, json.loads(meta.read_text())
    out.parent.mkdir(parents=True, exist_ok=True)
    from pipeline.config import from_mapping
    from pipeline.tags.offline_visual import OfflineVisualConfig

    cfg = BackboneConfig(kind="tiny", path=None, sha256=None, tiny=tiny_config(overrides))
    params = yaml.safe_load((data / "params.yaml").read_text())
    tagger = from_mapping(OfflineVisualConfig, params["tag_video"]["offline"], "tag_video.offline")
    cpu = time.process_time()
    metrics = build_backbone(cfg, data / "frames", data / "prepared/captions.parquet", out, progress=progress,
                             tags_path=data / "tags" / "tags.parquet", videos_path=data / "prepared/videos.parquet",
                             visual_tagger=tagger)
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
    section = base_params()["features"]
    section.update(overrides or {})
    section["device"] = "cpu"
    cfg = from_mapping(FeaturesConfig, section, "experiment features")
    start = time.perf_counter()
    extract_features(cfg, backbone, data / "frames", data / "prepared/videos.parquet",
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
def train_config(overrides: dict[str, Any] | None = None):
    from pipeline.config import from_mapping
    from pipeline.train.config import TrainConfig

    params = with_overrides({"train": base_params()["train"]}, {f"train.{k}": v for k, v in (overrides or {}).items()})
    section = params["train"]
    section["device"] = "cpu"
    section["torch_threads"] = int(os.environ.get("EXP_THREADS", "1"))
    return from_mapping(TrainConfig, section, "experiment train")


def test_similarity(model_path: Path, features_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    from pipeline.evaluation.items import select_rows
    from pipeline.evaluation.sets import cached_sets
    from pipeline.features.store import load_features
    from pipeline.scoring import score_matrix
    from pipeline.train.checkpoint import load_trained

    model, _ = load_trained(model_path, "cpu")
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
    cfg = train_config(overrides)
    out = features_dir.parent.parent / "runs" / name / variant
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    train(cfg, variant, TrainInputs(features=features_dir), out, live_dir=None, resume="never")  # type: ignore[arg-type]
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
