"""The four item sets an evaluation scores, as the head's inputs (CLIP features).

``EvalSets`` holds test captions, test videos, the t2v querybank captions and the v2t
querybank videos. In cached mode every array is a :class:`RowView` of the features directory's
memory-mapped arrays (rows read block by block while scoring, so nothing is loaded whole);
finetune-mode checkpoints get freshly encoded arrays instead (see :mod:`.trained`). Tag features
are the inference sentences (the first M tags of each item); a head without a tag slot ignores
them (DiCoSA).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.evaluation.items import EvalRows
from pipeline.features.store import FeatureStore


class RowView:
    """Rows ``rows`` of ``array`` (e.g. a memmap), gathered only when sliced.

    Supports what the scorer needs: ``len``, ``shape`` and ``view[slice]`` -> ndarray.
    """

    def __init__(self, array: np.ndarray, rows: np.ndarray) -> None:
        rows = np.asarray(rows, dtype=np.int64)
        if len(rows) and (rows.min() < 0 or rows.max() >= len(array)):
            raise IndexError(f"rows out of range for an array of {len(array)} rows")
        self.array, self.rows = array, rows

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.rows), *self.array.shape[1:])

    @property
    def dtype(self) -> np.dtype:
        return self.array.dtype

    def __getitem__(self, key: Any) -> np.ndarray:
        return np.asarray(self.array[self.rows[key]])

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self[:]
        return out if dtype is None else out.astype(dtype)


@dataclass(frozen=True)
class TextSet:
    text: Any  # [C, D] caption features
    tags: Any  # [C, D] textual tag sentence features

    def __len__(self) -> int:
        return len(self.text)


@dataclass(frozen=True)
class VideoSet:
    frames: Any  # [V, N, D] frame features (padded slots zero)
    mask: Any    # [V, N] bool, True = real frame
    tags: Any    # [V, D] visual tag sentence features

    def __len__(self) -> int:
        return len(self.frames)


@dataclass(frozen=True)
class EvalSets:
    test_text: TextSet
    test_videos: VideoSet
    qb_text: TextSet
    qb_videos: VideoSet


def text_set(store: FeatureStore, rows: np.ndarray) -> TextSet:
    return TextSet(RowView(store.captions, rows), RowView(store.tags_textual_infer, rows))


def video_set(store: FeatureStore, rows: np.ndarray) -> VideoSet:
    return VideoSet(RowView(store.frames, rows), RowView(store.frame_mask, rows),
                    RowView(store.tags_visual_infer, rows))


def cached_sets(store: FeatureStore, rows: EvalRows) -> EvalSets:
    """The four sets as views of a features directory."""
    return EvalSets(test_text=text_set(store, rows.test_captions), test_videos=video_set(store, rows.test_videos),
                    qb_text=text_set(store, rows.qb_captions), qb_videos=video_set(store, rows.qb_videos))
