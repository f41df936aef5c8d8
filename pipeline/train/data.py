"""Training pairs and the two datasets that feed them: cached CLIP features, or raw frames + text.

An epoch iterates *captions*: every training caption paired with its video, as the reference
(DiCoSA / MAC-VR) does. MSR-VTT's 9k split therefore has ~180k pairs per epoch (20 captions per
video, so each video is seen 20 times); paragraph datasets (DiDeMo, ActivityNet) have one
caption, hence one pair, per video. Two captions of one video may land in one batch; the
reference treats the other as a negative, and so do the losses here (``video_index`` is in
every batch should a loss want to mask them).

Datasets are *batch* datasets: ``dataset[list_of_indices]`` returns a whole batch (a dict of
tensors), so the memory-mapped arrays are read with one fancy index per batch. All randomness
(which pre-encoded tag draw, which tags are drawn) is a pure function of ``(seed, epoch, pair)``,
so data order and content survive a resume and do not depend on worker processes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, DistributedSampler

from pipeline.features.store import load_features
from pipeline.tags.sentences import draw_tags, tag_sentence
from pipeline.frames.store import FrameStore
from pipeline.io import load_npy, read_parquet
from pipeline.tags.table import read_tags
from pipeline.train.distributed import DistContext

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainPairs:
    """Training (caption, video) pairs. ``video_index`` numbers the distinct videos 0..V-1."""

    caption_ids: np.ndarray   # str [P]
    caption_rows: np.ndarray  # int64 [P]: row of the caption in its source arrays
    video_rows: np.ndarray    # int64 [P]: row of the video in its source arrays
    video_index: np.ndarray   # int64 [P]
    video_ids: list[str]      # [V], by video_index

    def __len__(self) -> int:
        return len(self.caption_ids)

    @property
    def num_videos(self) -> int:
        return len(self.video_ids)

    def first_caption_per_video(self, max_videos: int) -> np.ndarray:
        """Pair indices of the first caption of each of the first ``max_videos`` videos.

        Distinct videos, so a score matrix over them has its ground truth on the diagonal.
        """
        _, first = np.unique(self.video_index, return_index=True)  # sorted by video_index
        return np.sort(first)[:max_videos]


def _pairs(captions: pd.DataFrame, videos: pd.DataFrame, caption_row: str, video_row: str,
           where: str) -> TrainPairs:
    """Join train captions to videos on video_id; captions without a video are dropped loudly."""
    caps = captions[captions["split"] == "train"]
    vids = videos[videos["split"] == "train"] if "split" in videos else videos
    if vids["video_id"].duplicated().any():
        dup = vids.loc[vids["video_id"].duplicated(), "video_id"].iloc[0]
        raise ValueError(f"{where}: video_id {dup!r} appears twice")
    merged = caps.merge(vids[["video_id", video_row]].rename(columns={video_row: "_video_row"}),
                        on="video_id", how="left", validate="many_to_one")
    missing = merged["_video_row"].isna()
    if missing.any():
        log.warning("%s: %d of %d train captions have no usable video (e.g. %r); left out",
                     where, int(missing.sum()), len(merged), merged.loc[missing, "caption_id"].iloc[0])
        merged = merged[~missing]
    if merged.empty:
        raise ValueError(f"{where}: no training pairs (no train caption has a usable train video)")
    merged = merged.sort_values(caption_row, kind="stable")
    video_ids, video_index = np.unique(merged["video_id"].to_numpy(dtype=str), return_inverse=True)
    # Number videos in order of first appearance (caption order), not alphabetically.
    _, first = np.unique(video_index, return_index=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return TrainPairs(
        caption_ids=merged["caption_id"].to_numpy(dtype=str),
        caption_rows=merged[caption_row].to_numpy(dtype=np.int64),
        video_rows=merged["_video_row"].to_numpy(dtype=np.int64),
        video_index=rank[video_index].astype(np.int64),
        video_ids=[str(v) for v in video_ids[order]],
    )


# --------------------------------------------------------------------------- cached features
def cached_pairs(features_dir: str | Path) -> TrainPairs:
    """Training pairs of a features dir (rows index its ``.npy`` arrays).

    The directory is validated by :func:`pipeline.features.load_features` (every array's shape
    and dtype against the indexes and ``meta.json``).
    """
    store = load_features(features_dir)
    store.require_encoded(f"cached-mode training on {features_dir}")
    return _pairs(store.captions_index, store.videos, "row", "row", str(features_dir))


class CachedFeatureSet(Dataset):
    """Batches of fp16 features (memory-mapped) as float32 tensors.

    Keys: ``text`` [B, D], ``frames`` [B, N, D], ``mask`` [B, N] bool, ``tags_v`` [B, D],
    ``tags_t`` [B, D], ``video_index`` [B] int64. Training draws pick, per pair and epoch, one of
    the R pre-encoded tag sentences of the video and of the caption, uniformly at random.
    """

    def __init__(self, features_dir: str | Path, pairs: TrainPairs, seed: int) -> None:
        self.dir, self.pairs, self.seed = Path(features_dir), pairs, seed
        self.meta = load_features(self.dir).meta  # validates the arrays against the indexes
        self.epoch = 0
        self._arrays: dict[str, np.ndarray] | None = None
        self._epoch_draws: tuple[int, tuple[np.ndarray, np.ndarray]] | None = None
        a = self.arrays
        self.num_draws_visual, self.num_draws_textual = a["tags_v"].shape[1], a["tags_t"].shape[1]
        if int(pairs.video_rows.max()) >= len(a["frames"]) or int(pairs.caption_rows.max()) >= len(a["text"]):
            raise ValueError(f"{self.dir}: training pairs index rows beyond the feature arrays")

    @property
    def arrays(self) -> dict[str, np.ndarray]:
        # Opened lazily, per process: a pickled memmap would be copied whole into each worker.
        if self._arrays is None:
            names = {"frames": "frames.npy", "mask": "frame_mask.npy", "text": "captions.npy",
                     "tags_v": "tags_visual_train.npy", "tags_t": "tags_textual_train.npy"}
            self._arrays = {k: load_npy(self.dir / f, mmap_mode="r") for k, f in names.items()}
        return self._arrays

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_arrays"] = state["_epoch_draws"] = None
        return state

    @property
    def embed_dim(self) -> int:
        return int(self.arrays["frames"].shape[2])

    @property
    def num_frames(self) -> int:
        return int(self.arrays["frames"].shape[1])

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.pairs)

    def draws(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """Which pre-encoded draw (visual, textual) each pair uses in ``epoch``."""
        rng = np.random.default_rng([self.seed, epoch])
        return (rng.integers(self.num_draws_visual, size=len(self.pairs)),
                rng.integers(self.num_draws_textual, size=len(self.pairs)))

    def batch(self, indices: Sequence[int], draw_visual: np.ndarray,
              draw_textual: np.ndarray) -> dict[str, torch.Tensor]:
        """The pairs ``indices`` with tag draws ``draw_*[pair]``."""
        idx = np.asarray(indices, dtype=np.int64)
        a, p = self.arrays, self.pairs
        v_rows, c_rows = p.video_rows[idx], p.caption_rows[idx]
        return {
            "text": _gather(a["text"], c_rows),
            "frames": _gather(a["frames"], v_rows),
            "mask": _gather(a["mask"], v_rows, dtype=np.bool_),
            "tags_v": _gather(a["tags_v"], v_rows, draw_visual[idx]),
            "tags_t": _gather(a["tags_t"], c_rows, draw_textual[idx]),
            "video_index": torch.from_numpy(p.video_index[idx].copy()),
        }

    def __getitem__(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        if self._epoch_draws is None or self._epoch_draws[0] != self.epoch:
            self._epoch_draws = (self.epoch, self.draws(self.epoch))
        return self.batch(indices, *self._epoch_draws[1])

    def fixed_batch(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        """A batch with tag draw 0 everywhere (the per-epoch monitoring slice)."""
        zeros = np.zeros(len(self.pairs), dtype=np.int64)
        return self.batch(indices, zeros, zeros)


def _gather(array: np.ndarray, rows: np.ndarray, draw: np.ndarray | None = None,
            dtype: type = np.float32) -> torch.Tensor:
    """``array[rows]`` (or ``array[rows, draw]``) as ``dtype``, read in row order from the memmap."""
    order = np.argsort(rows, kind="stable")
    out = np.empty((len(rows),) + array.shape[2 if draw is not None else 1:], dtype=dtype)
    if draw is None:
        out[order] = array[rows[order]]
    else:
        out[order] = array[rows[order], draw[order]]
    return torch.from_numpy(out)


# --------------------------------------------------------------------------- frames + text
def finetune_pairs(frames_dir: str | Path, captions_path: str | Path) -> tuple[TrainPairs, list[str]]:
    """Training pairs over the frames stage's decoded videos, and every caption's text by pair."""
    store = FrameStore(frames_dir)
    captions = read_parquet(captions_path, columns=["caption_id", "video_id", "split", "text"])
    captions = captions.assign(_order=np.arange(len(captions), dtype=np.int64))
    pairs = _pairs(captions, store.ok, "_order", "row", f"{store.path} + {captions_path}")
    texts = captions["text"].astype(str).to_numpy()[pairs.caption_rows].tolist()
    return pairs, texts


def tag_lists(tags_path: str | Path, ids: Sequence[str], modality: str) -> list[list[str]]:
    """Ordered tag lists of ``ids`` (one modality). As in the features stage, an item absent
    from ``tags.parquet`` gets no tags (the sentence ``"a video of"``), with a warning."""
    table = read_tags(tags_path).of(modality)
    missing = [i for i in ids if i not in table]
    if missing:
        log.warning("%s: %d %s items have no tags (e.g. %r); they get the empty tag sentence",
                    tags_path, len(missing), modality, missing[0])
    return [table.get(i, []) for i in ids]


class FrameTextSet(Dataset):
    """Batches of raw frames and tokenised texts, for end-to-end fine-tuning.

    Keys: ``frames`` uint8 [B, N, S, S, 3], ``mask`` [B, N] bool, ``text_ids`` / ``text_mask``
    [B, L], ``tags_v_ids`` / ``tags_v_mask`` and ``tags_t_ids`` / ``tags_t_mask`` (only when
    tags are given), ``video_index``. Texts are cut to ``max_words`` tokens by the backbone's
    tokenizer (``tokenize(texts, max_words)``). Each load draws ``tags_per_item`` of an item's
    tags at random (a random subset in random order, as the official loader's
    ``random.sample``), seeded by (seed, epoch, pair).
    """

    def __init__(self, frames_dir: str | Path, pairs: TrainPairs, texts: list[str],
                 visual_tags: list[list[str]] | None, textual_tags: list[list[str]] | None,
                 tokenize, max_words: int, tags_per_item: int, seed: int, augment: str = "none") -> None:
        self._tokenize = tokenize
        self.augment = augment
        self._augmenter = None
        self.dir, self.pairs, self.texts = Path(frames_dir), pairs, texts
        self.visual_tags, self.textual_tags = visual_tags, textual_tags
        self.max_words, self.tags_per_item, self.seed = max_words, tags_per_item, seed
        self.epoch = 0
        self._arrays: dict[str, np.ndarray] | None = None
        frames, mask = self.arrays["frames"], self.arrays["mask"]
        if frames.ndim != 5 or frames.dtype != np.uint8 or mask.shape != frames.shape[:2]:
            raise ValueError(f"{self.dir}: clip_frames.npy must be uint8 [V, N, S, S, 3] with clip_mask.npy "
                             f"[V, N]; got {frames.dtype} {frames.shape} and {mask.shape}")
        if int(pairs.video_rows.max()) >= len(frames):
            raise ValueError(f"{self.dir}: index.parquet rows exceed clip_frames.npy ({len(frames)} rows)")
        for name, lists, n in (("visual", visual_tags, pairs.num_videos), ("textual", textual_tags, len(pairs))):
            if lists is not None and len(lists) != n:
                raise ValueError(f"{name} tag lists: {len(lists)} given, {n} expected")

    @property
    def arrays(self) -> dict[str, np.ndarray]:
        if self._arrays is None:
            store = FrameStore(self.dir)
            self._arrays = {"frames": store.clip_frames, "mask": store.clip_mask}
        return self._arrays

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_arrays"] = state["_augmenter"] = None
        return state

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.pairs)

    def _draw(self, tags: list[str], epoch: int, pair: int, stream: int) -> list[str]:
        return draw_tags(tags, self.tags_per_item, np.random.default_rng([self.seed, epoch, pair, stream]))

    def batch(self, indices: Sequence[int], epoch: int | None) -> dict[str, torch.Tensor]:
        """``epoch=None``: the fixed monitoring draw (each item's first ``tags_per_item`` tags)."""
        idx = np.asarray(indices, dtype=np.int64)
        p = self.pairs
        rows = p.video_rows[idx]
        out = {
            "frames": _gather(self.arrays["frames"], rows, dtype=np.uint8),
            "mask": _gather(self.arrays["mask"], rows, dtype=np.bool_),
            "video_index": torch.from_numpy(p.video_index[idx].copy()),
        }
        if self.augment == "randaugment" and epoch is not None:
            self._augment(out["frames"], out["mask"], idx, epoch)

        def put(key: str, texts: list[str]) -> None:
            batch = self._tokenize(texts, self.max_words)
            out[f"{key}_ids"], out[f"{key}_mask"] = batch.ids, batch.mask

        put("text", [self.texts[i] for i in idx])

        def sentences(lists: list[list[str]], item: np.ndarray, stream: int) -> list[str]:
            if epoch is None:
                return [tag_sentence(lists[j][: self.tags_per_item]) for j in item]
            return [tag_sentence(self._draw(lists[j], epoch, int(i), stream)) for i, j in zip(idx, item)]

        if self.visual_tags is not None:
            put("tags_v", sentences(self.visual_tags, p.video_index[idx], 1))
        if self.textual_tags is not None:
            put("tags_t", sentences(self.textual_tags, idx, 2))
        return out

    def _augment(self, frames: torch.Tensor, mask: torch.Tensor, idx: np.ndarray, epoch: int) -> None:
        """RandAugment each video's real frames in place, one draw per (seed, epoch, pair)."""
        if self._augmenter is None:
            from pipeline.train.augment import VideoRandAugment

            self._augmenter = VideoRandAugment(int(frames.shape[2]))
        for b, pair in enumerate(idx):
            real = mask[b].nonzero().flatten()
            if len(real):
                done = self._augmenter(list(frames[b, real].numpy()), (self.seed, epoch, int(pair), 3))
                frames[b, real] = torch.from_numpy(np.stack(done))

    def __getitem__(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        return self.batch(indices, self.epoch)

    def fixed_batch(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        return self.batch(indices, None)


# --------------------------------------------------------------------------- loading
def make_loader(dataset: Dataset, batch_size: int, ctx: DistContext, seed: int,
                num_workers: int) -> tuple[DataLoader, DistributedSampler]:
    """Shuffled batches of ``batch_size / world_size`` pairs per rank (global batch = batch_size).

    The order is a function of (seed, epoch) via ``DistributedSampler.set_epoch`` (also in a
    single process). Incomplete last batches are dropped: a contrastive batch of a few pairs
    has almost no negatives, and equal shard sizes are what the all-gather needs.
    """
    if batch_size % ctx.world_size:
        raise ValueError(f"train.batch_size ({batch_size}) must be divisible by the number of "
                         f"processes ({ctx.world_size})")
    per_rank = batch_size // ctx.world_size
    sampler = DistributedSampler(dataset, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True,
                                 seed=seed, drop_last=False)
    batches = BatchSampler(sampler, per_rank, drop_last=True)
    if len(batches) == 0:
        raise ValueError(f"train.batch_size ({batch_size}) exceeds the {len(dataset)} training pairs")
    loader = DataLoader(dataset, sampler=batches, batch_size=None, num_workers=num_workers,
                        pin_memory=ctx.device.type == "cuda", persistent_workers=False)
    return loader, sampler
