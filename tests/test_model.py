"""The MAC-VR / DiCoSA head: config, temporal module, pooling, concepts, confidence, score."""

from __future__ import annotations

import copy
import dataclasses
import math

import pytest
import torch

from pipeline.config import ConfigError, from_mapping, leaf_keys
from pipeline.model import MacVR, ModelConfig, ModelParams, backbone_init_problem, init_temporal_from_backbone
from pipeline.model.pooling import masked_pool_softmax
from pipeline.model.temporal import TemporalBlock

D, K, N = 32, 4, 6
VARIANT_TAGS = {"macvr": ("visual", "textual"), "dicosa": ()}


def make_config(variant: str = "macvr", **overrides) -> ModelConfig:
    """A resolved head config; ``variant`` picks the tag slots (``tags`` overrides them)."""
    base = dict(tags=VARIANT_TAGS[variant], num_concepts=K, pool_temperature=3.0, pool_masking="before_softmax",
                temporal_layers=2, temporal_heads=2, temporal_ln_eps=1e-12, concept_projection="chunk",
                confidence_hidden_ratio=2, init_logit_scale=math.log(100), embed_dim=D, max_frames=N)
    base.update(overrides)
    return ModelConfig(**base)


def make_model(dtype=torch.float64, seed=0, **overrides) -> MacVR:
    torch.manual_seed(seed)
    model = MacVR(make_config(**overrides)).to(dtype)
    # Realistic (not ~0) confidence weights so the score formula is exercised.
    for p in model.confidence.parameters():
        torch.nn.init.normal_(p, std=0.3)
    if model.concepts.proj is not None:
        torch.nn.init.normal_(model.concepts.proj.weight, std=0.3)
    return model


def make_inputs(bt=5, bv=5, dtype=torch.float64, seed=1):
    g = torch.Generator().manual_seed(seed)
    text = torch.randn(bt, D, generator=g, dtype=dtype)
    frames = torch.randn(bv, N, D, generator=g, dtype=dtype)
    lengths = torch.randint(1, N + 1, (bv,), generator=g)
    lengths[0] = N - 2  # at least one padded video
    mask = torch.arange(N)[None] < lengths[:, None]
    return text, frames, mask, torch.randn(bv, D, generator=g, dtype=dtype), torch.randn(bt, D, generator=g, dtype=dtype)


# --------------------------------------------------------------------------- config
def test_config_loads_strictly_from_mapping():
    raw = dataclasses.asdict(make_config())
    raw["tags"] = list(raw["tags"])  # YAML gives a list
    loaded = from_mapping(ModelConfig, raw, "params.yaml: train.model")
    assert loaded == make_config() and loaded.tags == ("visual", "textual")
    assert set(leaf_keys(ModelConfig)) == set(raw)
    assert set(leaf_keys(ModelParams)) == set(raw) - {"embed_dim", "max_frames"}  # sizes come from the data
    for gone in ("variant", "use_visual_tags", "use_textual_tags"):
        with pytest.raises(ConfigError, match=f"unknown key '{gone}'"):
            from_mapping(ModelConfig, {**raw, gone: True}, "p")
    with pytest.raises(ConfigError, match="missing key 'num_concepts'"):
        from_mapping(ModelConfig, {k: v for k, v in raw.items() if k != "num_concepts"}, "p")
    with pytest.raises(ConfigError, match="not one of"):
        from_mapping(ModelConfig, {**raw, "concept_projection": "mlp"}, "p")


def test_resolve_adds_the_data_sizes_to_the_params():
    params = ModelParams(**{k: v for k, v in dataclasses.asdict(make_config()).items()
                            if k not in ("embed_dim", "max_frames")})
    resolved = ModelConfig.resolve(params, embed_dim=D, max_frames=N)
    assert resolved == make_config() and isinstance(resolved, ModelParams)
    assert (resolved.concept_dim, resolved.use_visual_tags, resolved.use_textual_tags) == (D // K, True, True)
    with pytest.raises(ValueError, match="D=30 must be divisible by num_concepts"):
        ModelConfig.resolve(params, embed_dim=30, max_frames=N)


@pytest.mark.parametrize("overrides, message", [
    (dict(num_concepts=5), "divisible"),
    (dict(num_concepts=32), ">= 2 channels"),
    (dict(temporal_heads=3), "temporal_heads"),
    (dict(pool_temperature=0.0), "pool_temperature"),
    (dict(tags=("textual", "visual")), "listed in the order"),
    (dict(tags=("visual", "visual")), "distinct entries"),
    (dict(tags=("audio",)), "distinct entries of \\['visual', 'textual'\\]"),
    (dict(init_logit_scale=5.0), "init_logit_scale"),
    (dict(max_frames=0), "max_frames"),
    (dict(temporal_layers=-1), "temporal_layers"),
    (dict(temporal_ln_eps=0.0), "temporal_ln_eps"),
    (dict(embed_dim=0), "embed_dim"),
])
def test_config_rejects_bad_values(overrides, message):
    with pytest.raises(ValueError, match=message):
        make_config(**overrides)


def test_confidence_slots_follow_tag_ablations():
    assert make_config().confidence_slots == ("text", "tags_visual", "tags_textual", "video")
    assert make_config(tags=("visual",)).confidence_slots == ("text", "tags_visual", "video")
    assert make_config(tags=("textual",)).confidence_slots == ("text", "tags_textual", "video")
    assert make_config(variant="dicosa").confidence_slots == ("text", "video")
    d = D // K
    assert MacVR(make_config()).confidence.fc1.in_features == 4 * d
    assert MacVR(make_config()).confidence.fc1.out_features == 8 * d  # official 4d -> 8d -> 1
    assert MacVR(make_config(tags=("textual",))).confidence.fc1.in_features == 3 * d
    dicosa = MacVR(make_config(variant="dicosa")).confidence
    assert (dicosa.fc1.in_features, dicosa.fc1.out_features) == (2 * d, 4 * d)  # official 2d -> 4d -> 1


# --------------------------------------------------------------------------- temporal module
def test_temporal_is_residual_and_ignores_padding_as_keys():
    model = make_model()
    text, frames, mask, *_ = make_inputs()
    out = model.encode_frames(frames, mask)
    temporal = model.temporal
    for v in range(frames.shape[0]):
        n = int(mask[v].sum())
        # Reference: run the blocks on the real frames only, no mask, then add the residual.
        x = (frames[v, :n] + temporal.position_embedding.weight[:n])[:, None]
        for block in temporal.resblocks:
            h = block.ln_1(x)
            x = x + block.attn(h, h, h, need_weights=False)[0]
            x = x + block.mlp(block.ln_2(x))
        torch.testing.assert_close(out[v, :n], x[:, 0] + frames[v, :n], rtol=1e-10, atol=1e-10)


def test_padded_positions_attend_to_the_real_frames_only():
    """The additive -1e6 key bias: a padded slot's output is attention over the real frames
    (what the official after_softmax pooling then weighs), as with an exact -inf key mask."""
    model = make_model()
    _, frames, mask, *_ = make_inputs()
    out = model.encode_frames(frames, mask)
    temporal = model.temporal
    x = (frames + temporal.position_embedding.weight[:N]).transpose(0, 1)
    for block in temporal.resblocks:
        h = block.ln_1(x)
        x = x + block.attn(h, h, h, need_weights=False, key_padding_mask=~mask)[0]
        x = x + block.mlp(block.ln_2(x))
    torch.testing.assert_close(out, x.transpose(0, 1) + frames, rtol=1e-10, atol=1e-10)
    moved = frames.clone()
    moved[~mask] += 5.0  # what a padded slot holds changes its own output only
    again = model.encode_frames(moved, mask)
    torch.testing.assert_close(again[mask], out[mask], rtol=0, atol=1e-12)
    assert not torch.allclose(again[~mask], out[~mask])


def test_temporal_layer_norm_epsilon_is_the_configured_one():
    for eps in (1e-12, 1e-5):
        block = MacVR(make_config(temporal_ln_eps=eps)).temporal.resblocks[0]
        assert isinstance(block, TemporalBlock) and block.ln_1.eps == eps and block.ln_2.eps == eps
    assert TemporalBlock.MASK_BIAS == -1e6


def test_zero_temporal_layers_is_identity():
    model = make_model(temporal_layers=0)
    _, frames, mask, *_ = make_inputs()
    assert torch.equal(model.encode_frames(frames, mask), frames)


def test_too_many_frames_and_empty_videos_are_refused():
    model = make_model()
    _, frames, mask, *_ = make_inputs()
    with pytest.raises(ValueError, match="max_frames"):
        model.encode_frames(torch.cat([frames, frames], dim=1), torch.cat([mask, mask], dim=1))
    mask = mask.clone()
    mask[2] = False
    with pytest.raises(ValueError, match=r"rows \[2\] have no real frame"):
        model.encode_frames(frames, mask)


def tiny_backbone(width=D, heads=2, layers=3, context=8):
    """A tiny CLIP behind the backbone interface (its text width is the head's D)."""
    from clip.model import CLIP

    from pipeline.backbone.clip_model import ClipModel

    return ClipModel(CLIP(embed_dim=width, image_resolution=32, vision_layers=1, vision_width=64, vision_patch_size=16,
                          context_length=context, vocab_size=100, transformer_width=width, transformer_heads=heads,
                          transformer_layers=layers), "tiny").double()


def test_init_from_backbone_copies_text_layers_and_positions():
    model = make_model()
    backbone = tiny_backbone()
    assert backbone_init_problem(model.temporal, backbone) is None
    model.init_from_backbone(backbone)
    clip_model = backbone.model
    for mine, theirs in zip(model.temporal.resblocks, clip_model.transformer.resblocks):
        theirs_state = theirs.state_dict()
        assert mine.state_dict().keys() == theirs_state.keys()
        for name, p in mine.state_dict().items():
            assert torch.equal(p, theirs_state[name]), name
    assert torch.equal(model.temporal.position_embedding.weight, clip_model.positional_embedding[:N])
    # the copied blocks compute what CLIP's own blocks compute (up to the LayerNorm epsilon)
    backbone32 = tiny_backbone().float()  # clip's LayerNorm computes in float32
    x = torch.randn(N, 2, D)
    eps_model = make_model(dtype=torch.float32, temporal_ln_eps=1e-5)
    eps_model.init_from_backbone(backbone32)
    reference = copy.deepcopy(backbone32.model.transformer.resblocks[0])
    reference.attn_mask = None  # CLIP's text blocks are causal; frames attend both ways
    with torch.no_grad():
        torch.testing.assert_close(eps_model.temporal.resblocks[0](x), reference(x))


@pytest.mark.parametrize("kwargs, message", [
    (dict(width=64, heads=2), "text width 64 != temporal width 32"), (dict(heads=4), "text heads 4 != temporal heads 2"),
    (dict(layers=1), "1 text layers, 2 were asked for"), (dict(context=4), "4 text positions, 6 were asked for"),
])
def test_init_from_backbone_refuses_mismatches(kwargs, message):
    model = make_model()
    backbone = tiny_backbone(**kwargs)
    assert message in backbone_init_problem(model.temporal, backbone)
    with pytest.raises(ValueError, match=message):
        init_temporal_from_backbone(model.temporal, backbone)
    assert "no layers" in backbone_init_problem(make_model(temporal_layers=0).temporal, tiny_backbone())


# --------------------------------------------------------------------------- pooling
def test_pool_weights_match_a_loop_and_padding_gets_exactly_zero():
    model = make_model()
    text, frames, mask, tags_v, tags_t = make_inputs()
    scores = model.score_encoded(text, frames, mask, tags_v, tags_t)
    for i in range(text.shape[0]):
        for j in range(frames.shape[0]):
            real = mask[j].nonzero().flatten().tolist()
            logits = [float(text[i] @ frames[j, n]) / 3.0 for n in real]
            top = max(logits)
            z = sum(math.exp(x - top) for x in logits)
            for n in range(N):
                want = math.exp(logits[real.index(n)] - top) / z if n in real else 0.0
                assert scores.pool_weights[i, j, n].item() == pytest.approx(want, rel=1e-12, abs=1e-15)
    assert (~mask).any() and torch.all(scores.pool_weights.masked_select(~mask[None]) == 0)  # exactly zero


def test_official_after_softmax_masking_leaks_weight_to_padding():
    logits = torch.tensor([[1.0, 2.0, 3.0]], dtype=torch.float64)
    mask = torch.tensor([[True, True, False]])
    before = masked_pool_softmax(logits, mask, "before_softmax")
    after = masked_pool_softmax(logits, mask, "after_softmax")
    assert before.sum().item() == pytest.approx(1.0) and before[0, 2] == 0
    assert after[0, 2] == 0 and after.sum().item() < 1.0
    torch.testing.assert_close(after[0, :2], torch.softmax(logits, -1)[0, :2])


@pytest.mark.parametrize("variant", ["macvr", "dicosa"])
def test_padded_frame_features_do_not_change_scores(variant):
    model = make_model(variant=variant)
    text, frames, mask, tags_v, tags_t = make_inputs()
    before = model.similarity(text, frames, mask, tags_v, tags_t)
    garbage = frames.clone()
    garbage[~mask] = 1e3 * torch.randn(int((~mask).sum()), D, dtype=frames.dtype)
    assert torch.equal(model.similarity(text, garbage, mask, tags_v, tags_t), before)
    garbage[0, 0] += 1.0  # a real frame does matter
    assert not torch.equal(model.similarity(text, garbage, mask, tags_v, tags_t), before)


# --------------------------------------------------------------------------- concepts and score
def test_concept_chunk_and_linear_projection():
    x = torch.randn(3, D, dtype=torch.float64)
    chunk = make_model().concept_split(x)
    assert chunk.shape == (3, K, D // K)
    for k in range(K):
        assert torch.equal(chunk[:, k], x[:, k * (D // K):(k + 1) * (D // K)])
    linear = MacVR(make_config(concept_projection="linear")).double()
    assert torch.equal(linear.concept_split(x), chunk)  # identity init starts from the chunk split
    linear = make_model(concept_projection="linear")
    w = linear.concepts.proj.weight
    e = linear.concept_split(x)
    for k in range(K):  # e^k = W_k x, W_k the k-th block of d rows
        torch.testing.assert_close(e[:, k], x @ w[k * (D // K):(k + 1) * (D // K)].t())


def loop_scores(model: MacVR, text, frames, mask, tags_v, tags_t):
    """s_ij = sum_k w_ijk cos(e_t^k, e_v^k) by explicit loops over pairs and concepts (float64)."""
    cfg = model.config
    encoded = model.encode_frames(frames, mask)
    split = model.concept_split
    fc1, fc2 = model.confidence.fc1, model.confidence.fc2
    out = torch.zeros(text.shape[0], frames.shape[0], dtype=torch.float64)
    for i in range(text.shape[0]):
        for j in range(frames.shape[0]):
            logits = torch.stack([text[i] @ encoded[j, n] / cfg.pool_temperature for n in range(N)])
            if cfg.pool_masking == "before_softmax":
                logits[~mask[j]] = -math.inf
                a = torch.softmax(logits, 0)
            else:  # the official order: softmax over every slot, then the mask
                a = torch.softmax(logits, 0) * mask[j]
            pooled = sum(a[n] * encoded[j, n] for n in range(N))
            e_t, e_v = split(text[i]), split(pooled)
            parts = {"text": e_t, "video": e_v}
            if cfg.use_visual_tags:
                parts["tags_visual"] = split(tags_v[j])
            if cfg.use_textual_tags:
                parts["tags_textual"] = split(tags_t[i])
            for k in range(K):
                x = torch.cat([parts[s][k] for s in cfg.confidence_slots])
                w = fc2.weight[0] @ torch.relu(fc1.weight @ x + fc1.bias) + fc2.bias[0]
                cos = (e_t[k] @ e_v[k]) / (e_t[k].norm() * e_v[k].norm())
                out[i, j] += w * cos
    return out


@pytest.mark.parametrize("overrides", [
    {}, dict(variant="dicosa"), dict(tags=("visual",)), dict(tags=("textual",)),
    dict(concept_projection="linear"), dict(pool_masking="after_softmax"),
])
def test_similarity_matches_a_loop(overrides):
    model = make_model(**overrides)
    text, frames, mask, tags_v, tags_t = make_inputs(bt=3, bv=4)
    with torch.no_grad():
        s = model.similarity(text, frames, mask, tags_v, tags_t)
        torch.testing.assert_close(s, loop_scores(model, text, frames, mask, tags_v, tags_t), rtol=1e-10, atol=1e-10)
    assert s.shape == (3, 4)


def test_forward_outputs_and_matched_concepts():
    model = make_model()
    text, frames, mask, tags_v, tags_t = make_inputs()
    out = model(text, frames, mask, tags_v, tags_t)
    b, d = text.shape[0], D // K
    assert out.similarity.shape == (b, b) and out.confidence.shape == (b, b, K)
    assert out.concept_cosine.shape == (b, b, K) and out.pool_weights.shape == (b, b, N)
    assert out.text_concepts.shape == out.video_concepts.shape == (b, K, d)
    assert out.visual_tag_concepts.shape == out.textual_tag_concepts.shape == (b, K, d)
    torch.testing.assert_close(out.similarity, (out.confidence * out.concept_cosine).sum(-1))
    encoded = model.encode_frames(frames, mask)
    for i in range(b):  # e_v(i, i): caption i pooling its own video
        pooled = (out.pool_weights[i, i, :, None] * encoded[i]).sum(0)
        torch.testing.assert_close(out.video_concepts[i], model.concept_split(pooled))
    assert out.logit_scale is model.logit_scale
    dicosa = make_model(variant="dicosa")(text, frames, mask)
    assert dicosa.visual_tag_concepts is None and dicosa.textual_tag_concepts is None


def test_forward_backpropagates_to_every_parameter():
    model = make_model(dtype=torch.float32)
    text, frames, mask, tags_v, tags_t = make_inputs(dtype=torch.float32)
    out = model(text, frames, mask, tags_v, tags_t)
    (out.similarity.sum() * out.logit_scale + out.video_concepts.sum()).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert missing == []


def test_input_checks_and_dtype_following():
    model = make_model(dtype=torch.float32)
    text, frames, mask, tags_v, tags_t = make_inputs(dtype=torch.float32)
    with pytest.raises(ValueError, match="tags_v .* is required"):
        model.similarity(text, frames, mask, None, tags_t)
    with pytest.raises(ValueError, match="matched pairs"):
        model(text[:3], frames, mask, tags_v, tags_t[:3])
    with pytest.raises(ValueError, match="text: expected shape"):
        model.similarity(text[:, :5], frames, mask, tags_v, tags_t)
    # fp16 cached features are computed in the head's dtype; ablated tags are ignored.
    s16 = model.similarity(text.half(), frames.half(), mask, tags_v.half(), tags_t.half())
    assert s16.dtype == torch.float32
    dicosa = make_model(variant="dicosa", dtype=torch.float32)
    torch.testing.assert_close(dicosa.similarity(text, frames, mask, tags_v, tags_t),
                               dicosa.similarity(text, frames, mask))
