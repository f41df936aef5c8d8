"""Two-stage search: exact re-ranking, save/load round trip, backends, refusal of a foreign head."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from pipeline import scoring
from pipeline.index import ShortlistConfig, ShortlistIndex, use_shortlist
from pipeline.index.ann import ANN_BACKENDS, AnnConfig, ExactIndex, backend_available
from tests.test_scoring import D, make_model


def gallery(nv=40, nq=6, seed=5):
    """Clustered float32 features: captions near their video's frames, so retrieval means something."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(nv, D, generator=g)
    frames = (centres[:, None] + 0.5 * torch.randn(nv, 6, D, generator=g)).float()
    lengths = torch.randint(2, 7, (nv,), generator=g)
    mask = torch.arange(6)[None] < lengths[:, None]
    target = torch.randint(nv, (nq,), generator=g)
    text = (centres[target] + 0.5 * torch.randn(nq, D, generator=g)).float()
    return (frames.numpy(), mask.numpy(), torch.randn(nv, D, generator=g).numpy(), text.numpy(),
            torch.randn(nq, D, generator=g).numpy())


def head(**overrides):
    return make_model(dtype=torch.float32, **overrides).eval()


def exact_scores(model, text, frames, mask, tags_v, tags_t):
    return scoring.score_matrix(model, text, frames, mask, tags_v, tags_t, method="direct").numpy()


@pytest.mark.parametrize("embedding", ["mean", "concepts"])
def test_all_candidates_gives_the_exhaustive_exact_ranking(embedding):
    model = head()
    frames, mask, tags_v, text, tags_t = gallery()
    index = ShortlistIndex.build(model, frames, mask, tags_v, config=ShortlistConfig(embedding=embedding,
                                                                                     backend="exact"))
    rows, scores = index.search(model, text, tags_t, candidates=len(index), top_k=5)
    want = exact_scores(model, text, frames, mask, tags_v, tags_t)
    order = np.argsort(-want, axis=1, kind="stable")[:, :5]
    np.testing.assert_array_equal(rows, order)
    np.testing.assert_allclose(scores, np.take_along_axis(want, order, 1), atol=1e-4)
    ex_rows, ex_scores = index.exhaustive(model, text, tags_t, top_k=5, block=7)
    np.testing.assert_array_equal(ex_rows, order)


def test_two_stage_scores_are_exact_for_whatever_it_returns():
    model = head()
    frames, mask, tags_v, text, tags_t = gallery()
    index = ShortlistIndex.build(model, frames, mask, tags_v, config=ShortlistConfig(backend="exact", candidates=8))
    rows, scores = index.search(model, text, tags_t, top_k=3)
    want = exact_scores(model, text, frames, mask, tags_v, tags_t)
    np.testing.assert_allclose(scores, np.take_along_axis(want, rows, 1), atol=1e-4)
    assert (np.diff(scores, axis=1) <= 0).all()
    shortlist = index.shortlist(model, text, 8)
    assert shortlist.shape == (len(text), 8)
    assert all(set(r) <= set(s) for r, s in zip(rows, shortlist))  # stage two only re-ranks


def test_stage_one_ranks_by_the_video_vector():
    model = head()
    frames, mask, tags_v, text, tags_t = gallery()
    index = ShortlistIndex.build(model, frames, mask, tags_v, config=ShortlistConfig(backend="exact"))
    m = mask[..., None].astype(np.float32)
    encoded = model.encode_frames(torch.from_numpy(frames), torch.from_numpy(mask)).detach().numpy()
    mean = (encoded * m).sum(1) / m.sum(1)  # of F', the temporal transformer's output
    mean /= np.linalg.norm(mean, axis=1, keepdims=True)
    want = np.argsort(-(text @ mean.T), axis=1, kind="stable")[:, :4]
    np.testing.assert_array_equal(index.shortlist(model, text, 4), want)


@pytest.mark.parametrize("backend", ANN_BACKENDS)
def test_save_load_round_trip(tmp_path, backend):
    ok, why = backend_available(backend)
    if not ok:
        pytest.skip(why)
    model = head()
    frames, mask, tags_v, text, tags_t = gallery(nv=60)
    ids = [f"v{i:03d}" for i in range(60)]
    config = ShortlistConfig(backend=backend, candidates=20, ann=AnnConfig(m=8, ef_construction=40, ef_search=32))
    index = ShortlistIndex.build(model, frames, mask, tags_v, config=config, ids=ids)
    rows, scores = index.search(model, text, tags_t, top_k=4)
    index.save(tmp_path / "idx")
    meta = json.loads((tmp_path / "idx" / "meta.json").read_text())
    assert meta["videos"] == 60 and meta["config"]["backend"] == backend and meta["ids"][:2] == ["v000", "v001"]
    loaded = ShortlistIndex.load(tmp_path / "idx")
    assert isinstance(loaded.encoded, np.memmap) and len(loaded) == 60 and loaded.config == config
    rows2, scores2 = loaded.search(model, text, tags_t, top_k=4)
    np.testing.assert_array_equal(rows2, rows)
    np.testing.assert_array_equal(scores2, scores)
    assert [loaded.ids[r] for r in rows2[0]] == [ids[r] for r in rows[0]]


def test_float16_storage_scores_the_rounded_features():
    model = head()
    frames, mask, tags_v, text, tags_t = gallery()
    index = ShortlistIndex.build(model, frames, mask, tags_v,
                                 config=ShortlistConfig(backend="exact", store_dtype="float16"))
    assert index.encoded.dtype == np.float16
    rows, scores = index.search(model, text, tags_t, candidates=len(index), top_k=3)
    encoded = model.encode_frames(torch.from_numpy(frames), torch.from_numpy(mask)).detach()
    rounded = encoded.half().float()  # F' as stored
    want = scoring.direct_scores(model, torch.from_numpy(text), rounded, torch.from_numpy(mask),
                                 torch.from_numpy(tags_v), torch.from_numpy(tags_t)).numpy()
    np.testing.assert_allclose(scores, np.take_along_axis(want, rows, 1), atol=1e-4)


def test_temporal_encoding_happens_at_build_time():
    model = head()
    frames, mask, tags_v, text, tags_t = gallery(nv=12)
    index = ShortlistIndex.build(model, frames, mask, tags_v, config=ShortlistConfig(backend="exact"), block=5)
    want = model.encode_frames(torch.from_numpy(frames), torch.from_numpy(mask)).detach().numpy()
    np.testing.assert_allclose(index.encoded, want, atol=1e-5)
    pre = ShortlistIndex.build(model, want, mask, tags_v, config=ShortlistConfig(backend="exact"), encoded=True)
    np.testing.assert_array_equal(pre.encoded, want)


def test_an_index_refuses_another_head(tmp_path):
    model = head()
    frames, mask, tags_v, text, tags_t = gallery(nv=10)
    index = ShortlistIndex.build(model, frames, mask, tags_v, config=ShortlistConfig(backend="exact"))
    index.save(tmp_path)
    other = head()
    with torch.no_grad():
        other.confidence.fc2.bias.add_(1.0)
    with pytest.raises(ValueError, match="another head"):
        ShortlistIndex.load(tmp_path).search(other, text, tags_t)


def test_small_galleries_and_argument_errors():
    model = head()
    frames, mask, tags_v, text, tags_t = gallery(nv=3)
    index = ShortlistIndex.build(model, frames, mask, tags_v, config=ShortlistConfig(backend="exact"))
    rows, scores = index.search(model, text, tags_t, top_k=10)
    assert rows.shape == (len(text), 3) and sorted(rows[0]) == [0, 1, 2]
    with pytest.raises(ValueError, match="tags_t is required"):
        index.search(model, text, None)
    with pytest.raises(ValueError, match="top_k"):
        index.search(model, text, tags_t, top_k=0)
    with pytest.raises(ValueError, match="tags_v is required"):
        ShortlistIndex.build(model, frames, mask, None)
    with pytest.raises(ValueError, match="mask has 2 rows"):
        ShortlistIndex.build(model, frames, mask[:2], tags_v)


def test_dicosa_needs_no_tags():
    model = head(variant="dicosa")
    frames, mask, _, text, _ = gallery(nv=15)
    index = ShortlistIndex.build(model, frames, mask, None, config=ShortlistConfig(backend="exact"))
    rows, _ = index.search(model, text, None, candidates=15, top_k=3)
    want = exact_scores(model, text, frames, mask, None, None)
    np.testing.assert_array_equal(rows, np.argsort(-want, axis=1, kind="stable")[:, :3])


def test_config_and_threshold():
    assert not use_shortlist(1000) and use_shortlist(10**6)
    assert use_shortlist(11, ShortlistConfig(threshold=10))
    for bad in (dict(candidates=0), dict(embedding="frames"), dict(backend="annoy"), dict(threshold=-1),
                dict(store_dtype="int8")):
        with pytest.raises(ValueError):
            ShortlistConfig(**bad)
    with pytest.raises(ValueError):
        AnnConfig(m=0)
    assert ShortlistConfig.from_dict({"candidates": 5, "ann": {"m": 4}}).ann.m == 4


def test_exact_ann_index_blocks_and_pads():
    vectors = np.random.default_rng(0).standard_normal((23, 4)).astype(np.float32)
    index = ExactIndex(vectors)
    index.block = 5
    queries = vectors[:3]
    rows = index.search(queries, 30)
    assert rows.shape == (3, 30) and (rows[:, 23:] == -1).all()
    np.testing.assert_array_equal(rows[:, :23], np.argsort(-(queries @ vectors.T), axis=1, kind="stable"))
