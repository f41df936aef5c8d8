"""The frames and features stages under torchrun with 2 CPU workers write exactly the bytes one
process writes (and a failing worker stops all of them with its message)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from pipeline.backbone.arch import ClipArch
from pipeline.backbone.clip_model import ClipModel
from pipeline.backbone.io import save_weights
from pipeline.sharding import Shard, block
from pipeline.videoio import write_video

ROOT = Path(__file__).resolve().parents[1]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
ARCH = ClipArch(embed_dim=16, image_resolution=16, vision_layers=1, vision_width=64, vision_patch_size=8,
                context_length=16, vocab_size=49408, transformer_width=32, transformer_heads=1, transformer_layers=1)


def test_blocks_cover_everything_once_on_batch_boundaries():
    for n, world, gran in [(10, 2, 1), (11, 3, 4), (3, 4, 2), (0, 2, 5), (100, 7, 8)]:
        blocks = [block(n, Shard(r, world, r), gran) for r in range(world)]
        assert [i for b in blocks for i in b] == list(range(n))
        assert all(b.start % gran == 0 for b in blocks if len(b))


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """7 short videos (two shorter than N: padded; one corrupt: skipped), captions, tags, a backbone."""
    root = tmp_path_factory.mktemp("shard")
    (root / "videos").mkdir()
    rng = np.random.default_rng(0)
    rows, caps, tags = [], [], []
    for i in range(7):
        path = root / "videos" / f"v{i}.mp4"
        if i == 5:
            path.write_bytes(b"not a video")
        else:
            n = 3 if i in (1, 4) else 9
            write_video(path, rng.integers(0, 256, (n, 24, 32, 3), dtype=np.uint8), 5)
        rows.append({"video_id": f"v{i}", "path": str(path), "split": "test" if i < 2 else "train"})
        for k in range(2):
            caps.append({"caption_id": f"v{i}#{k}", "video_id": f"v{i}", "split": rows[-1]["split"],
                         "caption_index": k, "text": f"caption {k} of video {i}" + " long" * (10 * k)})
        tags.append({"item_id": f"v{i}", "modality": "visual", "split": rows[-1]["split"], "tags": ["red", f"t{i}"]})
        tags.append({"item_id": f"v{i}#0", "modality": "textual", "split": rows[-1]["split"], "tags": ["x"]})
    pd.DataFrame(rows).to_parquet(root / "videos.parquet")
    pd.DataFrame(caps).to_parquet(root / "captions.parquet")
    pd.DataFrame(tags).to_parquet(root / "tags.parquet")
    torch.manual_seed(0)
    save_weights(ClipModel(ARCH.build().float(), "tiny"), root / "backbone.pt", {"kind": "test"})
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["frames"].update(num_frames=6, image_size=16, vlm_num_frames=4, vlm_max_side=32, workers=1,
                            on_error="skip", padding="blank")
    params["features"].update(batch_size=12, train_tag_draws=2)  # 2 videos per frame batch, 12 texts per batch
    params["text"]["max_words"] = 12
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    return root


def _run(cmd: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), **env}
    return subprocess.run(cmd, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=300)


def _files(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_two_workers_write_the_single_process_bytes(project):
    r = project
    frames_args = ["-m", "stages.frames", "--params", str(r / "params.yaml"), "--videos", str(r / "videos.parquet")]
    single = _run([sys.executable, *frames_args, "--out", str(r / "frames1")], r)
    assert single.returncode == 0, single.stderr
    sharded = _run([*TORCHRUN, *frames_args, "--out", str(r / "frames2")], r)
    assert sharded.returncode == 0, sharded.stderr
    one, two = _files(r / "frames1"), _files(r / "frames2")
    assert one.keys() == two.keys() and one == two
    assert not (r / ".frames2.parts").exists()
    assert b'"padded": 2' in one["summary.json"] and b'"skipped": 1' in one["summary.json"]

    feat_args = ["-m", "stages.features", "--params", str(r / "params.yaml"), "--backbone", str(r / "backbone.pt"),
                 "--frames", str(r / "frames1"), "--videos", str(r / "videos.parquet"),
                 "--captions", str(r / "captions.parquet"), "--tags", str(r / "tags.parquet")]
    single = _run([sys.executable, *feat_args, "--out", str(r / "feat1")], r)
    assert single.returncode == 0, single.stderr
    sharded = _run([*TORCHRUN, *feat_args, "--out", str(r / "feat2")], r)
    assert sharded.returncode == 0, sharded.stderr
    one, two = _files(r / "feat1"), _files(r / "feat2")
    assert one.keys() == two.keys()
    assert [k for k in one if one[k] != two[k]] == []
    assert not (r / ".feat2.parts").exists()


@pytest.mark.slow
def test_a_failing_worker_stops_all_of_them_cleanly(project):
    """Worker 1 gets the corrupt video with on_error: raise: both exit non-zero, one message, no output."""
    r = project
    params = yaml.safe_load((r / "params.yaml").read_text())
    params["frames"]["on_error"] = "raise"
    (r / "raise.yaml").write_text(yaml.safe_dump(params))
    result = _run([*TORCHRUN, "-m", "stages.frames", "--params", str(r / "raise.yaml"),
                   "--videos", str(r / "videos.parquet"), "--out", str(r / "frames_bad")], r)
    assert result.returncode != 0
    assert "rank 1: video 'v5'" in result.stderr
    # No worker prints a traceback: the only one is torchrun's own report of the failed children.
    assert str(ROOT / "stages") not in result.stderr and str(ROOT / "pipeline") not in result.stderr
    assert result.stderr.count("Traceback (most recent call last)") == result.stderr.count(
        "torch.distributed.elastic.multiprocessing.errors.ChildFailedError")
    assert not (r / "frames_bad").exists() and not (r / ".frames_bad.parts").exists()
