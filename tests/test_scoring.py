"""Exact chunked pairwise scoring: fast split algebra == direct per-pair form == the model."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pipeline import scoring
from pipeline.model import MacVR, ModelConfig

D, K, N = 32, 4, 6


TAGS = {"macvr": ("visual", "textual"), "dicosa": (), "macvr_no_tt": ("visual",), "macvr_no_vt": ("textual",)}


def make_model(dtype=torch.float64, variant: str = "macvr", **overrides) -> MacVR:
    cfg = dict(tags=TAGS[variant], embed_dim=D, num_concepts=K, pool_temperature=3.0,
               pool_masking="before_softmax", temporal_layers=1, temporal_heads=2, temporal_ln_eps=1e-12,
               max_frames=N, concept_projection="chunk", confidence_hidden_ratio=2, init_logit_scale=math.log(100))
    cfg.update(overrides)
    torch.manual_seed(0)
    model = MacVR(ModelConfig(**cfg)).to(dtype)
    for p in model.confidence.parameters():
        torch.nn.init.normal_(p, std=0.3)
    if model.concepts.proj is not None:
        torch.nn.init.normal_(model.concepts.proj.weight, std=0.3)
    return model


def make_data(nt=11, nv=13, dtype=torch.float64, seed=3):
    g = torch.Generator().manual_seed(seed)
    text = torch.randn(nt, D, generator=g, dtype=dtype)
    frames = torch.randn(nv, N, D, generator=g, dtype=dtype)
    lengths = torch.randint(1, N + 1, (nv,), generator=g)
    lengths[:2] = torch.tensor([1, N - 1])  # a one-frame video and a padded one
    mask = torch.arange(N)[None] < lengths[:, None]
    return (text, frames, mask, torch.randn(nv, D, generator=g, dtype=dtype),
            torch.randn(nt, D, generator=g, dtype=dtype))


VARIANTS = [
    dict(), dict(variant="dicosa"), dict(variant="macvr_no_vt"), dict(variant="macvr_no_tt"),
    dict(concept_projection="linear"), dict(pool_masking="after_softmax"),
    dict(variant="dicosa", pool_masking="after_softmax", concept_projection="linear"),
]


@pytest.mark.parametrize("overrides", VARIANTS)
def test_fast_equals_direct_in_float64(overrides):
    model = make_model(**overrides)
    text, frames, mask, tags_v, tags_t = make_data()
    # Chunks that do not divide 11 captions x 13 videos, and blocks smaller than the sets.
    kw = dict(text_chunk=3, video_chunk=4, text_block=5, video_block=6)
    fast = scoring.score_matrix(model, text, frames, mask, tags_v, tags_t, method="fast", **kw)
    direct = scoring.score_matrix(model, text, frames, mask, tags_v, tags_t, method="direct", **kw)
    reference = model.similarity(text, frames, mask, tags_v, tags_t).detach()
    assert fast.shape == (11, 13) and fast.dtype == torch.float64
    torch.testing.assert_close(direct, reference, rtol=0, atol=1e-12)
    assert (fast - direct).abs().max().item() <= 1e-9
    assert reference.abs().max().item() > 0.1  # the comparison is not between zeros


@pytest.mark.parametrize("overrides", [dict(), dict(variant="dicosa")])
def test_fast_equals_direct_in_float32(overrides):
    model = make_model(dtype=torch.float32, **overrides)
    text, frames, mask, tags_v, tags_t = make_data(dtype=torch.float32)
    encoded = model.encode_frames(frames, mask).detach()
    queries = scoring.prepare_queries(model, text, tags_t)
    videos = scoring.prepare_videos(model, encoded, mask, tags_v)
    fast = scoring.fast_scores(model, queries, videos, text_chunk=4, video_chunk=5)
    direct = scoring.direct_scores(model, text, encoded, mask, tags_v, tags_t, text_chunk=16, video_chunk=16)
    assert (fast - direct).abs().max().item() <= 1e-4


def test_training_forward_similarity_equals_the_scorer():
    model = make_model()
    text, frames, mask, tags_v, tags_t = make_data(nt=7, nv=7)
    train_s = model(text, frames, mask, tags_v, tags_t).similarity.detach()
    fast = scoring.score_matrix(model, text, frames, mask, tags_v, tags_t, text_chunk=2, video_chunk=3)
    assert (fast - train_s).abs().max().item() <= 1e-9


def test_padded_frames_do_not_change_fast_scores():
    model = make_model()
    text, frames, mask, tags_v, tags_t = make_data()
    before = scoring.score_matrix(model, text, frames, mask, tags_v, tags_t)
    garbage = frames.clone()
    garbage[~mask] = 1e3 * torch.randn(int((~mask).sum()), D, dtype=frames.dtype)
    after = scoring.score_matrix(model, text, garbage, mask, tags_v, tags_t)
    assert (after - before).abs().max().item() <= 1e-12


def test_numpy_memmap_inputs_and_preallocated_output(tmp_path):
    model = make_model(dtype=torch.float32)
    text, frames, mask, tags_v, tags_t = make_data(dtype=torch.float32)
    arrays = {}
    for name, t in (("text", text), ("frames", frames), ("tags_v", tags_v), ("tags_t", tags_t)):
        np.save(tmp_path / f"{name}.npy", t.numpy().astype(np.float16))
        arrays[name] = np.load(tmp_path / f"{name}.npy", mmap_mode="r")
    out = np.lib.format.open_memmap(tmp_path / "scores.npy", mode="w+", dtype=np.float32, shape=(11, 13))
    got = scoring.score_matrix(model, arrays["text"], arrays["frames"], mask.numpy(), arrays["tags_v"],
                               arrays["tags_t"], out=out, video_block=4, text_block=8)
    assert got is out
    want = model.similarity(*(torch.from_numpy(np.asarray(arrays[n])).float() for n in ("text", "frames")),
                            mask, torch.from_numpy(np.asarray(arrays["tags_v"])).float(),
                            torch.from_numpy(np.asarray(arrays["tags_t"])).float()).detach().numpy()
    np.testing.assert_allclose(np.load(tmp_path / "scores.npy"), want, atol=1e-4)


def test_ablated_tag_slots_ignore_tags_and_required_ones_are_checked():
    model = make_model(variant="dicosa")
    text, frames, mask, tags_v, tags_t = make_data()
    torch.testing.assert_close(scoring.score_matrix(model, text, frames, mask, tags_v, tags_t),
                               scoring.score_matrix(model, text, frames, mask))
    with pytest.raises(ValueError, match="tags_t .* is required"):
        scoring.score_matrix(make_model(), text, frames, mask, tags_v, None)


@pytest.mark.parametrize("kwargs, message", [
    (dict(method="approx"), "unknown scoring method"), (dict(text_chunk=0), "text_chunk"),
    (dict(video_block=-1), "video_block"), (dict(out=torch.empty(2, 2)), "out: expected shape"),
])
def test_score_matrix_argument_errors(kwargs, message):
    model = make_model()
    text, frames, mask, tags_v, tags_t = make_data()
    with pytest.raises(ValueError, match=message):
        scoring.score_matrix(model, text, frames, mask, tags_v, tags_t, **kwargs)


def test_row_count_mismatches_are_refused():
    model = make_model()
    text, frames, mask, tags_v, tags_t = make_data()
    with pytest.raises(ValueError, match="frame mask: expected 13 rows"):
        scoring.score_matrix(model, text, frames, mask[:5], tags_v, tags_t)
    with pytest.raises(ValueError, match="tags_t: expected 11 rows"):
        scoring.score_matrix(model, text, frames, mask, tags_v, tags_t[:3])
