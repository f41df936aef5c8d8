"""Training pairs, cached-feature batches, tag draws and the sharded loader."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
import torch

from pipeline.io import read_parquet, write_npy, write_parquet
from pipeline.train.data import CachedFeatureSet, _pairs, cached_pairs, make_loader
from pipeline.train.distributed import DistContext
from tests.test_train_common import DRAWS, make_features

CPU1 = DistContext(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))


@pytest.fixture
def features(tmp_path):
    return make_features(tmp_path / "features", n_train=12, n_test=3, captions_per_video=3)


def test_pairs_are_the_train_captions_with_their_videos(features):
    pairs = cached_pairs(features)
    videos = read_parquet(features / "videos.parquet")
    captions = read_parquet(features / "captions.parquet")
    train_caps = captions[captions["split"] == "train"]
    assert list(pairs.caption_ids) == list(train_caps["caption_id"])  # caption order, test left out
    row_of = dict(zip(videos["video_id"], videos["row"]))
    for cid, crow, vrow, vidx in zip(pairs.caption_ids, pairs.caption_rows, pairs.video_rows, pairs.video_index):
        cap = captions.set_index("caption_id").loc[cid]
        assert crow == cap["row"] and vrow == row_of[cap["video_id"]]
        assert pairs.video_ids[vidx] == cap["video_id"]
    assert pairs.num_videos == 12 and len(pairs) == 36
    assert list(pairs.video_index[:6]) == [0, 0, 0, 1, 1, 1]  # numbered in order of appearance
    first = pairs.first_caption_per_video(5)
    assert list(first) == [0, 3, 6, 9, 12]
    assert len(set(pairs.video_index[first])) == 5


def test_batch_holds_the_float32_features_and_one_draw_per_pair(features):
    pairs = cached_pairs(features)
    ds = CachedFeatureSet(features, pairs, seed=3)
    raw = {k: np.load(features / f) for k, f in [("frames", "frames.npy"), ("mask", "frame_mask.npy"),
                                                 ("text", "captions.npy"), ("tv", "tags_visual_train.npy"),
                                                 ("tt", "tags_textual_train.npy")]}
    ds.set_epoch(2)
    idx = [7, 0, 7, 20, 3]  # unsorted, with a repeat
    batch = ds[idx]
    dv, dt = ds.draws(2)
    for b, i in enumerate(idx):
        v, c = pairs.video_rows[i], pairs.caption_rows[i]
        np.testing.assert_array_equal(batch["frames"][b].numpy(), raw["frames"][v].astype(np.float32))
        np.testing.assert_array_equal(batch["mask"][b].numpy(), raw["mask"][v])
        np.testing.assert_array_equal(batch["text"][b].numpy(), raw["text"][c].astype(np.float32))
        np.testing.assert_array_equal(batch["tags_v"][b].numpy(), raw["tv"][v, dv[i]].astype(np.float32))
        np.testing.assert_array_equal(batch["tags_t"][b].numpy(), raw["tt"][c, dt[i]].astype(np.float32))
        assert batch["video_index"][b] == pairs.video_index[i]
    assert batch["frames"].dtype == torch.float32 and batch["mask"].dtype == torch.bool
    assert not batch["mask"].all()  # the padded video (pair 0's video) is in the batch


def test_draws_are_uniform_per_epoch_and_reproducible(features):
    ds = CachedFeatureSet(features, cached_pairs(features), seed=3)
    a, b = ds.draws(0), ds.draws(1)
    np.testing.assert_array_equal(ds.draws(0)[0], a[0])  # a function of (seed, epoch)
    assert not np.array_equal(a[0], b[0])
    assert set(np.concatenate([a[0], a[1], b[0], b[1]])) == set(range(DRAWS))
    other_seed = CachedFeatureSet(features, cached_pairs(features), seed=4)
    assert not np.array_equal(other_seed.draws(0)[0], a[0])
    fixed = ds.fixed_batch([1, 2])
    raw_tv = np.load(features / "tags_visual_train.npy")
    np.testing.assert_array_equal(fixed["tags_v"][0].numpy(), raw_tv[ds.pairs.video_rows[1], 0].astype(np.float32))


def test_dataset_pickles_without_its_memmaps(features):
    import pickle

    ds = CachedFeatureSet(features, cached_pairs(features), seed=0)
    clone = pickle.loads(pickle.dumps(ds))
    assert clone._arrays is None  # workers reopen the files instead of copying them
    torch.testing.assert_close(clone[[1, 2]]["frames"], ds[[1, 2]]["frames"])


def test_captions_without_video_are_dropped_loudly(features, caplog):
    videos = read_parquet(features / "videos.parquet")
    captions = read_parquet(features / "captions.parquet")
    with caplog.at_level(logging.WARNING):
        pairs = _pairs(captions, videos[videos["video_id"] != "v005"], "row", "row", "here")
    assert "3 of 36 train captions have no usable video" in caplog.text
    assert len(pairs) == 33 and "v005" not in pairs.video_ids
    dup = pd.concat([videos, videos[videos["split"] == "train"].iloc[:1]])
    with pytest.raises(ValueError, match="appears twice"):
        _pairs(captions, dup, "row", "row", "here")


def test_inconsistent_features_name_the_file(features):
    pairs = cached_pairs(features)
    write_npy(np.zeros((15, 2, 16), dtype=np.float16), features / "tags_textual_train.npy")
    with pytest.raises(ValueError, match="tags_textual_train.npy"):
        CachedFeatureSet(features, pairs, seed=0)
    (features / "meta.json").unlink()
    with pytest.raises(FileNotFoundError, match="meta.json"):
        cached_pairs(features)


def test_no_train_pairs_is_an_error(features):
    caps = read_parquet(features / "captions.parquet")
    write_parquet(caps.assign(split="test"), features / "captions.parquet")
    with pytest.raises(ValueError, match="no training pairs"):
        cached_pairs(features)


def test_loader_covers_disjoint_full_batches_in_a_per_epoch_order(features):
    ds = CachedFeatureSet(features, cached_pairs(features), seed=0)
    loader, sampler = make_loader(ds, batch_size=8, ctx=CPU1, seed=5, num_workers=0)
    assert len(loader) == 36 // 8

    def epoch_batches(e):
        sampler.set_epoch(e)
        return [b["text"] for b in loader]

    e0, e0_again, e1 = epoch_batches(0), epoch_batches(0), epoch_batches(1)
    assert all(b.shape[0] == 8 for b in e0)  # the incomplete last batch is dropped
    assert all(torch.equal(a, b) for a, b in zip(e0, e0_again))
    assert not all(torch.equal(a, b) for a, b in zip(e0, e1))
    rows = torch.cat(e0)
    assert len({tuple(r.tolist()) for r in rows}) == 32  # no pair twice in an epoch


def test_loader_splits_the_global_batch_over_ranks(features):
    ds = CachedFeatureSet(features, cached_pairs(features), seed=0)
    shards = []
    for rank in range(2):
        ctx = DistContext(rank=rank, world_size=2, local_rank=rank, device=torch.device("cpu"))
        loader, sampler = make_loader(ds, batch_size=8, ctx=ctx, seed=5, num_workers=0)
        sampler.set_epoch(0)
        shards.append([b["video_index"] for b in loader])
    single, s = make_loader(ds, batch_size=8, ctx=CPU1, seed=5, num_workers=0)
    s.set_epoch(0)
    # Rank 0 and rank 1 batches together are the single-process batch (as sets of pairs).
    for (a, b), whole in zip(zip(*shards), single):
        assert len(a) == len(b) == 4
        assert sorted(torch.cat([a, b]).tolist()) == sorted(whole["video_index"].tolist())
    with pytest.raises(ValueError, match="divisible"):
        make_loader(ds, batch_size=9, ctx=DistContext(0, 2, 0, torch.device("cpu")), seed=5, num_workers=0)
    with pytest.raises(ValueError, match="exceeds"):
        make_loader(ds, batch_size=64, ctx=CPU1, seed=5, num_workers=0)


def test_loader_with_worker_processes_matches_in_process_loading(features):
    ds = CachedFeatureSet(features, cached_pairs(features), seed=0)
    ds.set_epoch(1)
    a, sa = make_loader(ds, batch_size=8, ctx=CPU1, seed=5, num_workers=0)
    b, sb = make_loader(ds, batch_size=8, ctx=CPU1, seed=5, num_workers=1)
    sa.set_epoch(1)
    sb.set_epoch(1)
    for x, y in zip(a, b):
        for k in x:
            assert torch.equal(x[k], y[k]), k


def test_pairs_frame_is_not_mutated(features):
    before = pd.read_parquet(features / "captions.parquet")
    cached_pairs(features)
    pd.testing.assert_frame_equal(before, pd.read_parquet(features / "captions.parquet"))
