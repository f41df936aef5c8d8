"""Backbone: weights file round trip, official-weights verification, encoders, tiny pretraining."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from pipeline.backbone.arch import VIT_B_32, ClipArch, clip_module
from pipeline.backbone.config import BackboneConfig, TinyClipConfig
from pipeline.backbone.data import load_video_text_set
from pipeline.backbone.encode import (CLIP_MEAN, CLIP_STD, encode_frames, encode_texts,
                                      preprocess_frames, tokenize)
from pipeline.backbone.io import file_sha256, load_clip, read_weights, save_weights
from pipeline.backbone.official import (BackboneError, default_cache_path, expected_sha256,
                                        load_official, resolve_path)
from pipeline.backbone.tiny import (contrastive_loss, pretrain_tiny, retrieval_r1, tiny_arch,
                                    video_embeddings)
from pipeline.config import ConfigError, from_mapping

# Smallest widths clip-anytorch allows: vision heads are width // 64.
ARCH = ClipArch(embed_dim=16, image_resolution=32, vision_layers=1, vision_width=64,
                vision_patch_size=16, context_length=16, vocab_size=49408,
                transformer_width=32, transformer_heads=1, transformer_layers=1)
# What build_model infers for an "official-format" state dict: text heads = width // 64.
OFFICIAL_LIKE = ClipArch(embed_dim=16, image_resolution=32, vision_layers=1, vision_width=64,
                         vision_patch_size=16, context_length=16, vocab_size=49408,
                         transformer_width=64, transformer_heads=1, transformer_layers=1)
COLOURS = {"red": (230, 20, 20), "green": (20, 200, 40), "blue": (30, 40, 230),
           "yellow": (240, 230, 30), "purple": (140, 30, 160), "white": (250, 250, 250)}


def tiny_cfg(**overrides) -> TinyClipConfig:
    base = dict(embed_dim=16, image_resolution=32, vision_patch_size=16, vision_width=64,
                vision_layers=1, text_width=32, text_heads=1, text_layers=1, context_length=16,
                epochs=2, batch_size=4, lr=1e-3, weight_decay=0.1, warmup_frac=0.1,
                frames_per_sample=2, captions_per_sample=1, seed=0)
    return TinyClipConfig(**{**base, **overrides})


def build(arch: ClipArch, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return arch.build().eval()


def write_frames_dir(root: Path, n_frames: int = 4, size: int = 32) -> Path:
    """Six coloured videos (train: 4, test: 2) + one skipped, with captions naming the colour."""
    names = list(COLOURS)
    frames = np.zeros((len(names) + 1, n_frames, size, size, 3), np.uint8)
    mask = np.zeros(frames.shape[:2], bool)
    index, captions = [], []
    for v, name in enumerate(names):
        real = n_frames if v % 2 == 0 else n_frames - 1  # odd videos are padded
        frames[v, :real] = COLOURS[name]
        frames[v, :real, : size // 2, : size // 2] = 0  # a dark corner: not a flat image
        mask[v, :real] = True
        split = "train" if v < 4 else "test"
        index.append(dict(video_id=f"v{v}", row=v, split=split, status="ok", error="",
                          source_frames=20, frame_indices=list(range(real))))
        for k, text in enumerate([f"a {name} screen", f"something {name} with a dark corner"]):
            captions.append(dict(caption_id=f"v{v}#{k}", video_id=f"v{v}", split=split,
                                 caption_index=k, text=text))
    index.append(dict(video_id="gone", row=-1, split="train", status="skipped", error="corrupt",
                      source_frames=0, frame_indices=[]))
    captions.append(dict(caption_id="gone#0", video_id="gone", split="train", caption_index=0,
                         text="never decoded"))
    out = root / "frames"
    out.mkdir(parents=True)
    np.save(out / "clip_frames.npy", frames[: len(names)])
    np.save(out / "clip_mask.npy", mask[: len(names)])
    pd.DataFrame(index).to_parquet(out / "index.parquet")
    pd.DataFrame(captions).to_parquet(root / "captions.parquet")
    return out


# --- weights file ---------------------------------------------------------------------------

def test_weights_round_trip_is_exact_and_safe_to_load(tmp_path):
    model = build(ARCH)
    path = tmp_path / "backbone.pt"
    save_weights(model, path, {"kind": "tiny", "note": None})
    raw = torch.load(path, map_location="cpu", weights_only=True)  # no pickled code needed
    assert raw["format"] == "macvr-clip" and raw["arch"] == ARCH.to_dict()
    arch, state, source = read_weights(path)
    assert arch == ARCH and source == {"kind": "tiny", "note": None}
    loaded = load_clip(path, "cpu")
    assert not loaded.training
    assert ClipArch.of(loaded) == ARCH
    want = model.state_dict()
    got = loaded.state_dict()
    assert set(got) == set(want)
    for key in want:
        assert got[key].dtype == torch.float32
        assert torch.equal(got[key], want[key]), key
    # same weights, same bytes (the features stage records this checksum)
    save_weights(loaded, tmp_path / "again.pt", {"kind": "tiny", "note": None})
    assert file_sha256(tmp_path / "again.pt") == file_sha256(path)


def test_read_weights_rejects_missing_and_foreign_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="run the backbone stage"):
        read_weights(tmp_path / "nope.pt")
    plain = tmp_path / "plain.pt"
    torch.save(build(ARCH).state_dict(), plain)
    with pytest.raises(ValueError, match="not a macvr backbone weights file"):
        load_clip(plain)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="not a readable backbone weights file"):
        read_weights(junk)


def test_file_sha256_matches_hashlib(tmp_path):
    data = np.random.default_rng(0).bytes(3 * (1 << 20) + 17)
    (tmp_path / "f").write_bytes(data)
    assert file_sha256(tmp_path / "f", chunk=1 << 20) == hashlib.sha256(data).hexdigest()


# --- official weights -----------------------------------------------------------------------

def official_file(tmp_path: Path) -> tuple[Path, torch.nn.Module]:
    """A tiny CLIP saved the way a converted official checkpoint is: a plain state dict.

    Weights are rounded to fp16 first: build_model loads into fp16 layers like clip.load.
    """
    model = build(OFFICIAL_LIKE)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.half().float())
    path = tmp_path / "ViT-tiny.pt"
    torch.save(model.state_dict(), path)
    return path, model


def test_load_official_verifies_checksum_and_matches_weights(tmp_path):
    path, model = official_file(tmp_path)
    loaded, source = load_official(str(path), file_sha256(path), expected=OFFICIAL_LIKE)
    assert source["file_sha256"] == file_sha256(path) and source["verified_sha256"]
    assert ClipArch.of(loaded) == OFFICIAL_LIKE
    want = model.state_dict()
    for key, value in loaded.state_dict().items():
        assert value.dtype == torch.float32 and torch.equal(value, want[key]), key
    # and saved in our format, it loads back to the same weights
    save_weights(loaded, tmp_path / "backbone.pt", source)
    again = load_clip(tmp_path / "backbone.pt")
    assert all(torch.equal(v, want[k]) for k, v in again.state_dict().items())


def test_load_official_checksum_mismatch(tmp_path):
    path, _ = official_file(tmp_path)
    with pytest.raises(BackboneError, match="SHA256 mismatch.*expected 0000"):
        load_official(str(path), "0" * 64, expected=OFFICIAL_LIKE)
    with pytest.raises(BackboneError, match=expected_sha256("official")):
        load_official(str(path), "official", expected=OFFICIAL_LIKE)


def test_official_checksum_is_clips_published_one():
    assert expected_sha256("official") == (
        "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af")
    assert expected_sha256(None) is None
    assert expected_sha256("ab" * 32) == "ab" * 32


def test_load_official_wrong_architecture(tmp_path):
    path, _ = official_file(tmp_path)
    with pytest.raises(BackboneError, match=r"wrong architecture.*vision_width: got 64, expected 768"):
        load_official(str(path), None, expected=VIT_B_32)


def test_load_official_rejects_non_clip_files(tmp_path):
    with pytest.raises(BackboneError, match="does not exist"):
        load_official(str(tmp_path / "missing.pt"), None)
    other = tmp_path / "other.pt"
    torch.save({"weight": torch.zeros(2)}, other)
    with pytest.raises(BackboneError, match="not a ViT CLIP state dict"):
        load_official(str(other), None, expected=OFFICIAL_LIKE)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00" * 100)
    with pytest.raises(BackboneError, match="neither a TorchScript archive nor a state dict"):
        load_official(str(junk), None)


def test_resolve_path_uses_clip_cache_then_download(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    cache = default_cache_path()
    assert cache == tmp_path / ".cache" / "clip" / "ViT-B-32.pt"
    clip = clip_module()

    def offline(url, root):
        raise OSError("network unreachable")

    monkeypatch.setattr(clip.clip, "_download", offline)
    with pytest.raises(BackboneError, match="downloading them failed.*set backbone.path"):
        resolve_path(None)
    cache.parent.mkdir(parents=True)
    cache.write_bytes(b"x")
    assert resolve_path(None) == cache


# --- config ---------------------------------------------------------------------------------

def test_config_validation_messages():
    with pytest.raises(ValueError, match="vision_width must be a multiple of 64"):
        tiny_cfg(vision_width=96)
    with pytest.raises(ValueError, match="text_width .* divisible by tiny.text_heads"):
        tiny_cfg(text_heads=3)
    with pytest.raises(ValueError, match="batch_size must be >= 2"):
        tiny_cfg(batch_size=1)
    with pytest.raises(ValueError, match="multiple of tiny.vision_patch_size"):
        tiny_cfg(vision_patch_size=5)
    with pytest.raises(ValueError, match="sha256 must be"):
        BackboneConfig(kind="tiny", path=None, sha256="ABC", tiny=tiny_cfg())
    mapping = {"kind": "tiny", "path": None, "sha256": "official",
               "tiny": {**tiny_cfg().__dict__, "dropout": 0.1}}
    with pytest.raises(ConfigError, match="unknown key 'dropout'"):
        from_mapping(BackboneConfig, mapping, "params.yaml: backbone")


# --- encoders -------------------------------------------------------------------------------

def test_tokenize_matches_clip_and_flags_truncation():
    clip = clip_module()
    texts = ["a red circle", "word " * 40, ""]
    tokens, truncated = tokenize(texts, 16)
    assert torch.equal(tokens, clip.tokenize(texts, context_length=16, truncate=True))
    assert truncated.tolist() == [False, True, False]
    assert tokens[1, -1] == tokens.max()  # the EOT token closes a truncated text


def test_preprocess_frames_normalises_like_clip():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    got = preprocess_frames(frames, 8).double()
    want = np.empty((2, 3, 8, 8))
    for b in range(2):
        for c in range(3):
            want[b, c] = (frames[b, :, :, c] / 255.0 - CLIP_MEAN[c]) / CLIP_STD[c]
    np.testing.assert_allclose(got.numpy(), want, atol=1e-6)


def test_preprocess_frames_resizes_and_centre_crops():
    frames = np.zeros((1, 20, 40, 3), np.uint8)
    frames[:, :, 10:30] = 255  # a white centre band, exactly what a centre crop keeps
    out = preprocess_frames(frames, 10)
    assert out.shape == (1, 3, 10, 10)
    white = torch.tensor([(1 - m) / s for m, s in zip(CLIP_MEAN, CLIP_STD)]).view(3, 1, 1)
    torch.testing.assert_close(out[0, :, 2:8, 2:8], white.expand(3, 6, 6), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="uint8"):
        preprocess_frames(frames.astype(np.float32), 10)


def test_encoders_equal_direct_clip_calls():
    model = build(ARCH)
    clip = clip_module()
    texts = ["a red screen", "a blue screen"]
    with torch.no_grad():
        want = model.encode_text(clip.tokenize(texts, context_length=16, truncate=True))
        torch.testing.assert_close(encode_texts(model, texts), want)
        frames = np.random.default_rng(1).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
        x = (torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255
             - torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)) / torch.tensor(CLIP_STD).view(1, 3, 1, 1)
        torch.testing.assert_close(encode_frames(model, frames), model.encode_image(x))


# --- tiny pretraining -----------------------------------------------------------------------

def test_load_video_text_set_keeps_decoded_split_videos(tmp_path):
    frames_dir = write_frames_dir(tmp_path)
    train = load_video_text_set(frames_dir, tmp_path / "captions.parquet", "train")
    assert train.video_ids == ["v0", "v1", "v2", "v3"]
    assert len(train.captions) == 8 and "never decoded" not in train.captions
    for text, v in zip(train.captions, train.caption_video):
        assert list(COLOURS)[v] in text
    assert train.mask.sum(axis=1).tolist() == [4, 3, 4, 3]
    with pytest.raises(ValueError, match="no decoded 'val' videos"):
        load_video_text_set(frames_dir, tmp_path / "captions.parquet", "val")


def _full_loss(model, data) -> float:
    """Contrastive loss of all videos (mean of all real frames) vs their first caption."""
    with torch.no_grad():
        sel = data.mask
        video = video_embeddings(model, data.frames[sel], np.nonzero(sel)[0], len(data.video_ids))
        first = [np.flatnonzero(data.caption_video == v)[0] for v in range(len(data.video_ids))]
        tokens, _ = tokenize([data.captions[i] for i in first], model.context_length)
        return contrastive_loss(model, video, model.encode_text(tokens)).item()


def test_pretraining_lowers_the_loss_and_is_deterministic(tmp_path):
    frames_dir = write_frames_dir(tmp_path)
    captions = tmp_path / "captions.parquet"
    data = load_video_text_set(frames_dir, captions, "train")
    cfg = tiny_cfg(epochs=40, lr=2e-3, batch_size=4, captions_per_sample=2)
    torch.manual_seed(cfg.seed)
    start = tiny_arch(cfg).build().eval()  # the model pretrain_tiny starts from
    before = _full_loss(start, data)
    model, history = pretrain_tiny(cfg, data, progress=False)
    after = _full_loss(model, data)
    assert after < before - 0.2, (before, after)
    assert history["steps"] == 40 and len(history["epoch_loss"]) == 40
    assert not model.training and not model.token_embedding.sparse
    again, _ = pretrain_tiny(cfg, data, progress=False)
    for key, value in model.state_dict().items():
        assert torch.equal(value, again.state_dict()[key]), key


def test_contrastive_loss_matches_a_direct_computation():
    gen = torch.Generator().manual_seed(0)
    video, text = torch.randn(3, 5, generator=gen), torch.randn(7, 5, generator=gen)
    owner = torch.tensor([0, 0, 1, 2, 2, 2, 1])
    model = torch.nn.Module()
    model.logit_scale = torch.nn.Parameter(torch.tensor(2.0))
    got = contrastive_loss(model, video, text, owner).item()
    scale = np.exp(2.0)
    v = [x / np.linalg.norm(x) for x in video.double().numpy()]
    t = [x / np.linalg.norm(x) for x in text.double().numpy()]
    sim = [[scale * float(np.dot(ti, vj)) for vj in v] for ti in t]
    t2v = np.mean([-sim[i][owner[i]] + np.log(sum(np.exp(x) for x in sim[i])) for i in range(7)])
    v2t = np.mean([-np.log(sum(np.exp(sim[i][j]) for i in range(7) if owner[i] == j)
                           / sum(np.exp(sim[i][j]) for i in range(7))) for j in range(3)])
    assert got == pytest.approx(0.5 * (t2v + v2t), rel=1e-5)
    # one caption per video: CLIP's symmetric loss
    logits = torch.tensor(sim[:3], dtype=torch.float64)  # captions 0..2 vs videos, scaled
    clip_loss = 0.5 * (F.cross_entropy(logits, torch.arange(3))
                       + F.cross_entropy(logits.T, torch.arange(3)))
    assert contrastive_loss(model, video, text[:3]).item() == pytest.approx(clip_loss.item(), rel=1e-5)


def test_retrieval_r1_matches_a_direct_count(tmp_path):
    frames_dir = write_frames_dir(tmp_path)
    data = load_video_text_set(frames_dir, tmp_path / "captions.parquet", "train")
    model = build(ARCH, seed=3)
    got = retrieval_r1(model, data, batch_size=5)
    with torch.no_grad():
        videos = []
        for v in range(len(data.video_ids)):
            real = data.frames[v][data.mask[v]]
            videos.append(encode_frames(model, real).double().mean(0))
        texts = encode_texts(model, data.captions).double()
    sim = np.array([[F.cosine_similarity(t, v, dim=0).item() for v in videos] for t in texts])
    t2v = np.mean([np.argmax(sim[c]) == data.caption_video[c] for c in range(len(texts))])
    v2t = np.mean([data.caption_video[np.argmax(sim[:, v])] == v for v in range(len(videos))])
    assert got["t2v_r1"] == pytest.approx(t2v) and got["v2t_r1"] == pytest.approx(v2t)
    assert got["videos"] == 4 and got["captions"] == 8


def test_build_backbone_vit_b_32_refuses_other_weights(tmp_path):
    from pipeline.backbone.build import build_backbone

    path, _ = official_file(tmp_path)
    config = BackboneConfig(kind="vit-b-32", path=str(path), sha256=None, tiny=tiny_cfg())
    with pytest.raises(BackboneError, match="wrong architecture for ViT-B/32"):
        build_backbone(config, tmp_path, tmp_path / "captions.parquet", tmp_path / "out.pt")
    assert not (tmp_path / "out.pt").exists()


def test_delta_readout_is_mean_plus_map_of_late_minus_early():
    from pipeline.backbone.tiny import VideoReadout

    gen = torch.Generator().manual_seed(0)
    feats = torch.randn(7, 4, generator=gen)
    frame_video = np.array([0, 0, 0, 0, 1, 1, 1])  # video 1 has an odd count: its middle frame is in no half
    mean = VideoReadout(4, "mean")(feats, frame_video, 2)
    torch.testing.assert_close(mean, torch.stack([feats[:4].mean(0), feats[4:].mean(0)]))
    readout = VideoReadout(4, "delta")
    torch.testing.assert_close(readout(feats, frame_video, 2), mean)  # W starts at zero
    with torch.no_grad():
        readout.delta.weight.copy_(torch.randn(4, 4, generator=gen))
    change = torch.stack([feats[2:4].mean(0) - feats[0:2].mean(0), feats[6] - feats[4]])
    torch.testing.assert_close(readout(feats, frame_video, 2), mean + change @ readout.delta.weight.T)
    # Reversing time flips the change: the readout tells a clip from its reverse.
    rev = torch.cat([feats[:4].flip(0), feats[4:].flip(0)])
    torch.testing.assert_close(readout(rev, frame_video, 2), mean - change @ readout.delta.weight.T)
    with pytest.raises(ValueError, match="unknown temporal readout"):
        VideoReadout(4, "max")


def test_fresh_clips_and_tag_language_enter_pretraining(tmp_path):
    from pipeline.backbone.stream import ClipGeometry

    frames_dir = write_frames_dir(tmp_path)
    tags = pd.DataFrame([dict(item_id=f"v{v}#{k}", modality="textual", split="train",
                              tags=[name, "colour", "screen"])
                         for v, name in enumerate(list(COLOURS)[:4]) for k in range(2)])
    tags.to_parquet(tmp_path / "tags.parquet")
    data = load_video_text_set(frames_dir, tmp_path / "captions.parquet", "train", tmp_path / "tags.parquet")
    assert data.caption_tags[0] == ["red", "colour", "screen"] and data.caption_ids[0] == "v0#0"
    geometry = ClipGeometry(48, 48, 10, (20, 25), num_frames=4, image_size=32)
    all_fresh, _ = pretrain_tiny(tiny_cfg(epochs=2, batch_size=4, fresh_fraction=1.0), data, progress=False,
                                 geometry=geometry)
    cfg = tiny_cfg(epochs=3, batch_size=4, fresh_fraction=0.5, tag_text_weight=0.5)
    model, history = pretrain_tiny(cfg, data, progress=False, geometry=geometry)
    again, _ = pretrain_tiny(cfg, data, progress=False, geometry=geometry)
    for key, value in model.state_dict().items():
        assert torch.equal(value, again.state_dict()[key]), key
    plain, _ = pretrain_tiny(tiny_cfg(epochs=3, batch_size=4), data, progress=False)
    assert not torch.equal(plain.visual.conv1.weight, model.visual.conv1.weight)
    with pytest.raises(ValueError, match="clip geometry"):
        pretrain_tiny(cfg, data, progress=False)
    no_tags = load_video_text_set(frames_dir, tmp_path / "captions.parquet", "train")
    with pytest.raises(ValueError, match="textual tags"):
        pretrain_tiny(tiny_cfg(tag_text_weight=1.0), no_tags, progress=False)
    with pytest.raises(ValueError, match="fresh_fraction"):
        tiny_cfg(fresh_fraction=1.5)


def test_visual_tag_language_enters_pretraining(tmp_path):
    """tag_visual_weight: a video-to-own-visual-tags InfoNCE (split videos' tags from tags.parquet,
    fresh clips' written from their scenes); deterministic; off by default."""
    from pipeline.backbone.stream import ClipGeometry
    from pipeline.tags.offline_visual import OfflineVisualConfig
    from pipeline.tags.sampling import SamplingConfig

    frames_dir = write_frames_dir(tmp_path)
    names = list(COLOURS)
    rows = [dict(item_id=f"v{v}", modality="visual", split="train", tags=[name, "screen", f"{name} screen"])
            for v, name in enumerate(names[:3])]  # v3 has no visual tags: the empty sentence
    rows += [dict(item_id=f"v{v}#0", modality="textual", split="train", tags=[name]) for v, name in enumerate(names[:4])]
    pd.DataFrame(rows).to_parquet(tmp_path / "tags.parquet")
    data = load_video_text_set(frames_dir, tmp_path / "captions.parquet", "train", tmp_path / "tags.parquet")
    assert data.video_tags == [["red", "screen", "red screen"], ["green", "screen", "green screen"],
                               ["blue", "screen", "blue screen"], []]
    cfg = tiny_cfg(epochs=3, batch_size=4, tag_visual_weight=1.0, tags_per_sentence=2)
    model, history = pretrain_tiny(cfg, data, progress=False)
    again, _ = pretrain_tiny(cfg, data, progress=False)
    for key, value in model.state_dict().items():
        assert torch.equal(value, again.state_dict()[key]), key
    plain, plain_history = pretrain_tiny(tiny_cfg(epochs=3, batch_size=4), data, progress=False)
    assert history["epoch_loss"][0] > plain_history["epoch_loss"][0]  # a second InfoNCE term
    assert not torch.equal(plain.token_embedding.weight, model.token_embedding.weight)

    sampling = SamplingConfig(num_tags=10, order_noise=0.6, synonym_decay=1.5, extra_synonym_prob=0.3,
                              filler_prob=0.3)
    tagger = OfflineVisualConfig(lexicon="builtin", foreground_threshold=60.0, min_saturation=0.35,
                                 min_blob_area=0.004, min_track_frames=2, max_jump=0.3, colour_penalty=0.15,
                                 move_threshold=0.12, size_ratio=1.3, square_fill=0.9, circle_fill=0.68,
                                 triangle_skew=0.08, mention_bonus=0.2, sampling=sampling)
    geometry = ClipGeometry(48, 48, 10, (20, 25), num_frames=4, image_size=32)
    fresh_cfg = tiny_cfg(epochs=2, batch_size=4, fresh_fraction=0.5, tag_visual_weight=1.0)
    fresh, _ = pretrain_tiny(fresh_cfg, data, progress=False, geometry=geometry, visual_tagger=tagger)
    fresh_again, _ = pretrain_tiny(fresh_cfg, data, progress=False, geometry=geometry, visual_tagger=tagger)
    assert torch.equal(fresh.visual.conv1.weight, fresh_again.visual.conv1.weight)
    with pytest.raises(ValueError, match="visual tagger"):
        pretrain_tiny(fresh_cfg, data, progress=False, geometry=geometry)
    no_tags = load_video_text_set(frames_dir, tmp_path / "captions.parquet", "train")
    with pytest.raises(ValueError, match="visual tags"):
        pretrain_tiny(tiny_cfg(tag_visual_weight=1.0), no_tags, progress=False)
    with pytest.raises(ValueError, match="tag_visual_weight"):
        tiny_cfg(tag_visual_weight=-1.0)


def test_fresh_tagger_writes_scene_facts_in_the_tagger_vocabulary():
    from pipeline.backbone.stream import ClipGeometry, fresh_batch
    from pipeline.backbone.tiny import FreshTagger
    from pipeline.features.tag_control import scene_objects
    from pipeline.tags.lexicon import load_lexicon
    from pipeline.tags.offline_visual import OfflineVisualConfig
    from pipeline.tags.sampling import SamplingConfig

    sampling = SamplingConfig(num_tags=40, order_noise=0.0, synonym_decay=1.5, extra_synonym_prob=0.0,
                              filler_prob=0.0)
    cfg = OfflineVisualConfig(lexicon="builtin", foreground_threshold=60.0, min_saturation=0.35,
                              min_blob_area=0.004, min_track_frames=2, max_jump=0.3, colour_penalty=0.15,
                              move_threshold=0.12, size_ratio=1.3, square_fill=0.9, circle_fill=0.68,
                              triangle_skew=0.08, mention_bonus=0.2, sampling=sampling)
    batch = fresh_batch(ClipGeometry(48, 48, 10, (20, 25), num_frames=4, image_size=32), 3, 2, 1, seed=0, step=0)
    assert len(batch.scenes) == 3
    sentences = FreshTagger(cfg).sentences(batch.scenes, 40, np.random.default_rng(0))
    assert len(sentences) == 3 and all(s.startswith("a video of ") for s in sentences)
    for scene, sentence in zip(batch.scenes, sentences):
        _, objects = scene_objects(scene, load_lexicon("builtin"), cfg)
        for obj in objects:  # every shape's colour is named (num_tags large, no noise)
            assert obj.colours[0] in sentence
