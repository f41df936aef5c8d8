"""The embedded synthetic dataset: short H.264 clips of moving shapes with partial captions.

Video ``i`` of seed ``s`` is drawn from ``np.random.default_rng([s, 0, i])`` (the same clip
whatever ``num_videos`` is) and the split from ``default_rng([s, 1])``, so a seed fixes the
tables and the video bytes. Captions each state part of their scene (``synth_captions``); the
scenes themselves go to ``synthetic_truth.json`` for debugging, reports and the controls only,
with each caption's stated facts (``mentions``) and final plan (``plan``: template, background
mode, clauses by shape slot, :meth:`~pipeline.data.synth_captions._Plan.as_dict`), from which
:mod:`pipeline.data.synth_likelihood` scores it against any scene.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from pipeline.data.common import Annotations, VideoEntry
from pipeline.data.synth_captions import sample_planned_captions, scene_facts
from pipeline.data.synth_render import render_scene
from pipeline.data.synth_scene import sample_scene
from pipeline.videoio import write_video

TRUTH_FILE = "synthetic_truth.json"
VIDEO_SUBDIR = "videos"


@dataclass(frozen=True)
class SyntheticConfig:
    """Size and randomness of the synthetic dataset.

    num_videos: clips in total; test_fraction / val_fraction: shares of them in the test and
    validation splits (the rest is train; val_fraction 0 = no validation split); captions_per_video: captions per clip, each about part of it; seed: fixes everything;
    width/height: even pixel sizes; fps: integer frame rate; min/max_seconds: clip duration range.
    """

    num_videos: int
    test_fraction: float
    val_fraction: float
    captions_per_video: int
    seed: int
    width: int
    height: int
    fps: int
    min_seconds: float
    max_seconds: float

    def __post_init__(self) -> None:
        if self.num_videos < 2:
            raise ValueError(f"synthetic.num_videos must be >= 2 (a train and a test video), "
                             f"got {self.num_videos}")
        if not 0 < self.test_fraction < 1:
            raise ValueError(f"synthetic.test_fraction must be in (0, 1), got {self.test_fraction}")
        if not 0 <= self.val_fraction < 1:
            raise ValueError(f"synthetic.val_fraction must be in [0, 1) (0: no validation split), got {self.val_fraction}")
        if self.test_count() + self.val_count() >= self.num_videos:
            raise ValueError(f"synthetic: test_fraction ({self.test_fraction}) and val_fraction ({self.val_fraction}) "
                             f"of {self.num_videos} videos leave no training video")
        if self.captions_per_video < 1:
            raise ValueError(f"synthetic.captions_per_video must be >= 1, got {self.captions_per_video}")
        if self.seed < 0:
            raise ValueError(f"synthetic.seed must be >= 0, got {self.seed}")
        for name in ("width", "height"):
            value = getattr(self, name)
            if value < 16 or value % 2:
                raise ValueError(f"synthetic.{name} must be even and >= 16 (H.264 yuv420p), got {value}")
        if self.fps < 1:
            raise ValueError(f"synthetic.fps must be >= 1, got {self.fps}")
        if not 0 < self.min_seconds <= self.max_seconds:
            raise ValueError(f"synthetic: need 0 < min_seconds <= max_seconds, got "
                             f"{self.min_seconds}, {self.max_seconds}")
        if round(self.min_seconds * self.fps) < 2:
            raise ValueError("synthetic: min_seconds * fps must give at least 2 frames")

    def test_count(self) -> int:
        """Videos in the test split: ``test_fraction`` of them, at least one of each split."""
        return min(max(round(self.num_videos * self.test_fraction), 1), self.num_videos - 1)

    def val_count(self) -> int:
        """Videos in the validation split: ``val_fraction`` of them (0 when it is 0)."""
        return round(self.num_videos * self.val_fraction)

    def train_count(self) -> int:
        return self.num_videos - self.test_count() - self.val_count()


def video_ids(num_videos: int) -> list[str]:
    width = max(4, len(str(num_videos - 1)))
    return [f"synth{i:0{width}d}" for i in range(num_videos)]


def build_synthetic(config: SyntheticConfig, work_dir: Path,
                    out_dir: Path) -> tuple[Annotations, dict]:
    """Write the clips under ``work_dir/videos`` and return annotations and ground truth.

    Stored paths point into ``out_dir`` (where ``work_dir`` will be moved); probing reads the
    files in ``work_dir``.
    """
    ids = video_ids(config.num_videos)
    # One permutation: its first test_count() videos are the test split, the next val_count() the
    # validation split, so adding a validation split leaves the test split as it was.
    order = np.random.default_rng([config.seed, 1]).permutation(config.num_videos).tolist()
    n_test, n_val = config.test_count(), config.val_count()
    split_of = {i: "test" for i in order[:n_test]} | {i: "val" for i in order[n_test:n_test + n_val]}
    (work_dir / VIDEO_SUBDIR).mkdir(parents=True, exist_ok=True)
    videos, texts, truth = [], {}, {}
    for i, vid in enumerate(tqdm(ids, desc="synthetic videos", unit="video")):
        rng = np.random.default_rng([config.seed, 0, i])
        seconds = rng.uniform(config.min_seconds, config.max_seconds)
        scene = sample_scene(rng, max(2, round(seconds * config.fps)), config.fps)
        captions = sample_planned_captions(scene, config.captions_per_video, rng)
        name = f"{VIDEO_SUBDIR}/{vid}.mp4"
        write_video(work_dir / name, render_scene(scene, config.width, config.height), fps=config.fps)
        split = split_of.get(i, "train")
        videos.append(VideoEntry(vid, split, str(out_dir / name), local_path=str(work_dir / name)))
        texts[vid] = [c.text for c in captions]
        truth[vid] = {"split": split, "scene": scene.to_dict(), "facts": sorted(scene_facts(scene)),
                      "captions": [{"text": c.text, "mentions": sorted(c.mentions), "plan": c.plan}
                                   for c in captions]}
    return Annotations("synthetic", videos, texts), truth
