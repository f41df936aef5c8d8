"""Backbone: the interface (clip-anytorch and open_clip behind it), weights files, official-weights
verification, encoders, padded frame slots, tiny pretraining."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from pipeline.backbone import FAMILIES, BuildInputs, padded_frame_features
from pipeline.backbone.arch import VIT_B_32, ClipArch, clip_module
from pipeline.backbone.base import CLIP_MEAN, CLIP_STD, BackboneError, resize_centre_crop
from pipeline.backbone.clip_family import default_cache_path, expected_sha256, load_official, resolve_path
from pipeline.backbone.clip_model import ClipModel, clip_tokenize
from pipeline.backbone.config import BackboneConfig, TinyClipConfig
from pipeline.backbone.data import load_video_text_set
from pipeline.backbone.encode import encode_text_array, encode_video_array
from pipeline.backbone.io import file_sha256, load_backbone, read_weights, save_weights
from pipeline.backbone.tiny import (PRETRAIN_OPTIONS_OFF, contrastive_loss, pretrain_tiny, retrieval_r1, tiny_arch,
                                   video_embeddings)
from pipeline.config import ConfigError, from_mapping
from pipeline.registry import RegistryError

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
IMAGE, CONTEXT = 32, 16  # the tiny test CLIP's input size and text context


def tiny_cfg(**overrides) -> TinyClipConfig:
    base = dict(embed_dim=16, vision_patch_size=16, vision_width=64, vision_layers=1, text_width=32,
                text_heads=1, text_layers=1, epochs=2, batch_size=4, lr=1e-3, weight_decay=0.1,
                warmup_frac=0.1, frames_per_sample=2, captions_per_sample=1, seed=0, **PRETRAIN_OPTIONS_OFF)
    return TinyClipConfig(**{**base, **overrides})


def build(arch: ClipArch, seed: int = 0, kind: str = "tiny") -> ClipModel:
    torch.manual_seed(seed)
    return ClipModel(arch.build().eval(), kind).eval()


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


def normalise(frames: np.ndarray) -> torch.Tensor:
    """uint8 [B, H, W, 3] -> CLIP-normalised [B, 3, H, W], written out independently."""
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255
    return (x - torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)) / torch.tensor(CLIP_STD).view(1, 3, 1, 1)


# --- weights file ---------------------------------------------------------------------------

def test_weights_round_trip_is_exact_and_safe_to_load(tmp_path):
    backbone = build(ARCH)
    path = tmp_path / "backbone.pt"
    save_weights(backbone, path, {"kind": "tiny", "note": None})
    raw = torch.load(path, map_location="cpu", weights_only=True)  # no pickled code needed
    assert raw["format"] == "macvr-backbone" and raw["version"] == 2
    assert raw["kind"] == "tiny" and raw["arch"] == ARCH.to_dict()
    data = read_weights(path)
    assert data["kind"] == "tiny" and data["arch"] == ARCH.to_dict() and data["source"] == {"kind": "tiny", "note": None}
    loaded = load_backbone(path, "cpu")
    assert isinstance(loaded, ClipModel) and loaded.kind == "tiny" and not loaded.training
    assert ClipArch.of(loaded.model) == ARCH
    want = backbone.model.state_dict()
    got = loaded.model.state_dict()
    assert set(got) == set(want)
    for key in want:
        assert got[key].dtype == torch.float32
        assert torch.equal(got[key], want[key]), key
    # same weights, same bytes (the features stage records this checksum)
    save_weights(loaded, tmp_path / "again.pt", {"kind": "tiny", "note": None})
    assert file_sha256(tmp_path / "again.pt") == file_sha256(path)


@pytest.mark.parametrize("source_kind, kind", [("tiny", "tiny"), ("official", "clip")])
def test_version_1_weights_files_still_load(tmp_path, source_kind, kind):
    backbone = build(ARCH, seed=2)
    path = tmp_path / "v1.pt"
    torch.save({"format": "macvr-clip", "version": 1, "arch": ARCH.to_dict(),
                "source": {"kind": source_kind}, "state_dict": backbone.weights()}, path)
    assert read_weights(path)["kind"] == kind
    loaded = load_backbone(path)
    assert loaded.kind == kind
    for key, value in backbone.model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[key], value), key


def test_read_weights_rejects_missing_and_foreign_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="run the backbone stage"):
        read_weights(tmp_path / "nope.pt")
    plain = tmp_path / "plain.pt"
    torch.save(build(ARCH).model.state_dict(), plain)
    with pytest.raises(ValueError, match="not a macvr backbone weights file"):
        load_backbone(plain)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="not a readable backbone weights file"):
        read_weights(junk)
    future = tmp_path / "future.pt"
    torch.save({"format": "macvr-backbone", "version": 3}, future)
    with pytest.raises(ValueError, match="version 3"):
        read_weights(future)
    alien = tmp_path / "alien.pt"
    torch.save({"format": "macvr-backbone", "version": 2, "kind": "alien", "arch": {}, "state_dict": {},
                "source": {}}, alien)
    with pytest.raises(ValueError, match="unknown backbone kind 'alien'; registered: tiny, clip, open_clip"):
        load_backbone(alien)


def test_file_sha256_matches_hashlib(tmp_path):
    data = np.random.default_rng(0).bytes(3 * (1 << 20) + 17)
    (tmp_path / "f").write_bytes(data)
    assert file_sha256(tmp_path / "f", chunk=1 << 20) == hashlib.sha256(data).hexdigest()


# --- official weights -----------------------------------------------------------------------

def official_file(tmp_path: Path) -> tuple[Path, torch.nn.Module]:
    """A tiny CLIP saved the way a converted official checkpoint is: a plain state dict.

    Weights are rounded to fp16 first: build_model loads into fp16 layers like clip.load.
    """
    model = build(OFFICIAL_LIKE).model
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.half().float())
    path = tmp_path / "ViT-tiny.pt"
    torch.save(model.state_dict(), path)
    return path, model


def test_load_official_verifies_checksum_and_matches_weights(tmp_path):
    path, model = official_file(tmp_path)
    loaded, source = load_official(str(path), file_sha256(path), expected=OFFICIAL_LIKE)
    assert source["file_sha256"] == file_sha256(path) and source["verified_sha256"] and source["kind"] == "clip"
    assert ClipArch.of(loaded) == OFFICIAL_LIKE
    want = model.state_dict()
    for key, value in loaded.state_dict().items():
        assert value.dtype == torch.float32 and torch.equal(value, want[key]), key
    # and saved in our format, it loads back to the same weights, as a clip-kind backbone
    save_weights(ClipModel(loaded, "clip"), tmp_path / "backbone.pt", source)
    again = load_backbone(tmp_path / "backbone.pt")
    assert again.kind == "clip"
    assert all(torch.equal(v, want[k]) for k, v in again.model.state_dict().items())


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
    with pytest.raises(BackboneError, match="not an OpenAI CLIP model.*open_clip"):
        expected_sha256("official", "ViT-B-32-quickgelu")


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
    # the input size and text context come from frames.image_size and text.max_words
    with pytest.raises(ValueError, match=r"frames.image_size \(40\) must be a multiple of backbone.tiny.vision_patch_size"):
        tiny_arch(tiny_cfg(vision_patch_size=16), 40, CONTEXT)
    with pytest.raises(ValueError, match="text.max_words must be >= 3"):
        tiny_arch(tiny_cfg(), IMAGE, 2)
    assert tiny_arch(tiny_cfg(), 48, 20).image_resolution == 48 and tiny_arch(tiny_cfg(), 48, 20).context_length == 20
    with pytest.raises(ValueError, match="sha256 must be"):
        BackboneConfig(kind="tiny", model="ViT-B/32", path=None, sha256="ABC", torch_threads=0, tiny=tiny_cfg())
    with pytest.raises(RegistryError, match="unknown backbone kind 'vit'; registered: tiny, clip, open_clip"):
        BackboneConfig(kind="vit", model="ViT-B/32", path=None, sha256=None, torch_threads=0, tiny=tiny_cfg())
    mapping = {"kind": "tiny", "model": "ViT-B/32", "path": None, "sha256": "official", "torch_threads": 0,
               "tiny": {**tiny_cfg().__dict__, "dropout": 0.1}}
    with pytest.raises(ConfigError, match="unknown key 'dropout'"):
        from_mapping(BackboneConfig, mapping, "params.yaml: backbone")
    old = {**mapping, "tiny": {**tiny_cfg().__dict__, "image_resolution": 64}}  # moved to frames.image_size
    with pytest.raises(ConfigError, match="unknown key 'image_resolution'"):
        from_mapping(BackboneConfig, old, "params.yaml: backbone")


# --- the interface on clip-anytorch ---------------------------------------------------------

def test_tokenize_matches_clip_and_flags_truncation():
    clip = clip_module()
    backbone = build(ARCH)
    texts = ["a red circle", "word " * 40, ""]
    batch = backbone.tokenize(texts, 12)
    assert torch.equal(batch.ids, clip.tokenize(texts, context_length=12, truncate=True))
    assert torch.equal(clip_tokenize(texts, 12).ids, batch.ids)
    assert batch.truncated.tolist() == [False, True, False]
    assert batch.ids[1, -1] == batch.ids.max()  # the end token closes a truncated text
    assert torch.equal(batch.mask, batch.ids != 0) and batch.mask[0].sum() == 5  # start, 3 words, end
    with pytest.raises(ValueError, match="max_words 17 exceeds the text context of this CLIP \\(16 tokens\\)"):
        backbone.tokenize(texts, 17)
    with pytest.raises(ValueError, match="at least 3 tokens"):
        clip_tokenize(texts, 2)
    # the picklable tokenizer for data-loader workers is the same function
    import pickle

    tokenizer = pickle.loads(pickle.dumps(backbone.text_tokenizer()))
    assert torch.equal(tokenizer(texts, 12).ids, batch.ids)


def test_preprocess_normalises_like_clip():
    backbone = build(ARCH)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (2, IMAGE, IMAGE, 3), dtype=np.uint8)
    got = backbone.preprocess(frames).double()
    want = np.empty((2, 3, IMAGE, IMAGE))
    for b in range(2):
        for c in range(3):
            want[b, c] = (frames[b, :, :, c] / 255.0 - CLIP_MEAN[c]) / CLIP_STD[c]
    np.testing.assert_allclose(got.numpy(), want, atol=1e-6)
    with pytest.raises(ValueError, match="uint8"):
        backbone.preprocess(frames.astype(np.float32))


def test_resize_centre_crop_keeps_the_centre():
    frames = np.zeros((1, 20, 40, 3), np.uint8)
    frames[:, :, 10:30] = 255  # a white centre band, exactly what a centre crop keeps
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255
    out = resize_centre_crop(x, 10)
    assert out.shape == (1, 3, 10, 10)
    torch.testing.assert_close(out[0, :, 2:8, 2:8], torch.ones(3, 6, 6), atol=1e-5, rtol=0)
    square = torch.rand(1, 3, 10, 10)
    assert resize_centre_crop(square, 10) is square  # the right size is a no-op


def test_encoders_equal_direct_clip_calls():
    backbone = build(ARCH)
    model = backbone.model
    clip = clip_module()
    texts = ["a red screen", "a blue screen", "word " * 30]
    with torch.no_grad():
        want = model.encode_text(clip.tokenize(texts, context_length=CONTEXT, truncate=True))
        torch.testing.assert_close(backbone.encode_texts(texts, CONTEXT), want)
        # a shorter max_words is clip.tokenize at that length (the end token moves)
        want10 = model.encode_text(clip.tokenize(texts, context_length=10, truncate=True))
        torch.testing.assert_close(backbone.encode_texts(texts, 10), want10)
        frames = np.random.default_rng(1).integers(0, 256, (3, IMAGE, IMAGE, 3), dtype=np.uint8)
        torch.testing.assert_close(backbone.encode_frames(frames), model.encode_image(normalise(frames)))
        arr, truncated = encode_text_array(backbone, texts, CONTEXT, batch_size=2)
    assert arr.dtype == np.float16 and truncated.tolist() == [False, False, True]
    np.testing.assert_allclose(arr, want.numpy(), atol=2e-3, rtol=2e-3)


def test_blank_frame_embedding_is_a_zero_normalised_image():
    backbone = build(ARCH, seed=5)
    with torch.no_grad():
        blank = backbone.blank_frame_embedding()
        direct = backbone.model.encode_image(torch.zeros(1, 3, IMAGE, IMAGE))[0]
        black = backbone.encode_frames(np.zeros((1, IMAGE, IMAGE, 3), np.uint8))[0]
    torch.testing.assert_close(blank, direct)
    assert not torch.allclose(blank, black)  # zero *after* normalisation, not black pixels


@pytest.mark.parametrize("padding", ["zero", "blank"])
def test_padded_frame_features_fill_padded_slots(padding):
    backbone = build(ARCH, seed=1)
    rng = np.random.default_rng(3)
    frames = rng.integers(0, 256, (3, 4, IMAGE, IMAGE, 3), dtype=np.uint8)
    mask = np.array([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]], dtype=bool)
    with torch.no_grad():
        out = padded_frame_features(backbone, frames, mask, padding)
        real = backbone.encode_frames(frames[mask])
        fill = torch.zeros(ARCH.embed_dim) if padding == "zero" else backbone.blank_frame_embedding()
    assert out.shape == (3, 4, ARCH.embed_dim)
    torch.testing.assert_close(out[torch.from_numpy(mask)], real)
    for v, n in zip(*np.nonzero(~mask)):
        torch.testing.assert_close(out[v, n], fill)
    # the batched encoder: fp16 arrays of chosen rows, same values, masks carried along
    with torch.no_grad():
        feats, masks = encode_video_array(backbone, frames, mask, np.array([2, 0]), padding, batch_size=5)
    np.testing.assert_array_equal(masks, mask[[2, 0]])
    np.testing.assert_allclose(feats, out[[2, 0]].numpy(), atol=2e-3, rtol=2e-3)
    with pytest.raises(ValueError, match="padding must be zero or blank"):
        padded_frame_features(backbone, frames, mask, "noise")
    with pytest.raises(ValueError, match="frame mask"):
        padded_frame_features(backbone, frames, mask[:, :3], padding)


# --- open_clip behind the same interface ----------------------------------------------------

@pytest.fixture(scope="module")
def vit_b_32_pair():
    """clip-anytorch ViT-B/32 and open_clip ViT-B-32-quickgelu holding the same random weights."""
    from pipeline.backbone.open_clip_family import OpenClipModel, create

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = VIT_B_32.build().eval()
    other = create("ViT-B-32-quickgelu").eval()
    other.load_state_dict(model.state_dict(), strict=True)
    return ClipModel(model, "clip"), OpenClipModel(other, "ViT-B-32-quickgelu")


def test_open_clip_and_clip_anytorch_give_the_same_features(vit_b_32_pair):
    clip_b, open_b = vit_b_32_pair
    assert (open_b.kind, open_b.embed_dim, open_b.image_size, open_b.context_length) == ("open_clip", 512, 224, 77)
    assert open_b.mean == clip_b.mean and open_b.std == clip_b.std
    frames = np.random.default_rng(0).integers(0, 256, (2, 120, 160, 3), dtype=np.uint8)  # resized + cropped
    texts = ["a red circle moves to the left", "word " * 40, "x"]
    with torch.no_grad():
        torch.testing.assert_close(open_b.encode_frames(frames), clip_b.encode_frames(frames), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(open_b.blank_frame_embedding(), clip_b.blank_frame_embedding(),
                                   atol=1e-5, rtol=1e-5)
        # open_clip pads every text to its context (77) but reads the same end-token embedding
        open_tok, clip_tok = open_b.tokenize(texts, 32), clip_b.tokenize(texts, 32)
        assert open_tok.ids.shape == (3, 77) and clip_tok.ids.shape == (3, 32)
        assert torch.equal(open_tok.ids[:, :32], clip_tok.ids) and not open_tok.ids[:, 32:].any()
        assert open_tok.truncated.tolist() == clip_tok.truncated.tolist() == [False, True, False]
        torch.testing.assert_close(open_b.encode_text(open_tok.ids, open_tok.mask),
                                   clip_b.encode_text(clip_tok.ids, clip_tok.mask), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="exceeds the text context"):
        open_b.tokenize(texts, 78)
    # the official temporal init reads the same text blocks from either library
    for mine, theirs in zip(open_b.text_block_states(2), clip_b.text_block_states(2)):
        assert set(mine) == set(theirs) and all(torch.equal(mine[k], theirs[k]) for k in mine)
    assert (open_b.text_width, open_b.text_heads) == (clip_b.text_width, clip_b.text_heads) == (512, 8)


def test_open_clip_family_builds_from_a_local_file(vit_b_32_pair, tmp_path):
    clip_b, _ = vit_b_32_pair
    family = FAMILIES.get("open_clip")
    inputs = BuildInputs(frames_dir=None, captions=None, max_words=32)

    def cfg(path, sha256):
        return BackboneConfig(kind="open_clip", model="ViT-B-32-quickgelu", path=path, sha256=sha256, torch_threads=0,
                              tiny=tiny_cfg())

    with pytest.raises(BackboneError, match="backbone.path must name a local weights file"):
        family.build(cfg(None, None), inputs)
    path = tmp_path / "openai.pt"
    torch.save(clip_b.model.state_dict(), path)  # OpenAI's layout: open_clip reads it as is
    with pytest.raises(BackboneError, match="no published checksum"):
        family.build(cfg(str(path), "official"), inputs)
    with pytest.raises(BackboneError, match="SHA256 mismatch"):
        family.build(cfg(str(path), "0" * 64), inputs)
    backbone, source, _ = family.build(cfg(str(path), file_sha256(path)), inputs, progress=False)
    assert source["verified_sha256"] and source["name"] == "ViT-B-32-quickgelu"
    assert backbone.arch() == {"model": "ViT-B-32-quickgelu"}
    assert family.expected_image_size(cfg(None, None)) == 224 and family.expected_context_length(cfg(None, None)) == 77
    frames = np.random.default_rng(1).integers(0, 256, (1, 224, 224, 3), dtype=np.uint8)
    with torch.no_grad():
        torch.testing.assert_close(backbone.encode_frames(frames), clip_b.encode_frames(frames), atol=1e-5, rtol=1e-5)
    with pytest.raises(BackboneError, match="is not an open_clip model"):
        from pipeline.backbone.open_clip_family import create

        create("ViT-B/32")


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


def _full_loss(backbone, data) -> float:
    """Contrastive loss of all videos (mean of all real frames) vs their first caption."""
    with torch.no_grad():
        sel = data.mask
        video = video_embeddings(backbone, data.frames[sel], np.nonzero(sel)[0], len(data.video_ids))
        first = [np.flatnonzero(data.caption_video == v)[0] for v in range(len(data.video_ids))]
        batch = backbone.tokenize([data.captions[i] for i in first], backbone.context_length)
        return contrastive_loss(backbone.logit_scale, video, backbone.encode_text(batch.ids, batch.mask)).item()


def test_pretraining_lowers_the_loss_and_is_deterministic(tmp_path):
    frames_dir = write_frames_dir(tmp_path)
    captions = tmp_path / "captions.parquet"
    data = load_video_text_set(frames_dir, captions, "train")
    cfg = tiny_cfg(epochs=40, lr=2e-3, batch_size=4, captions_per_sample=2)
    torch.manual_seed(cfg.seed)
    start = ClipModel(tiny_arch(cfg, IMAGE, CONTEXT).build().eval(), "tiny")  # what pretrain_tiny starts from
    before = _full_loss(start, data)
    rng_before = torch.get_rng_state()
    backbone, history = pretrain_tiny(cfg, data, IMAGE, CONTEXT, progress=False)
    assert torch.equal(torch.get_rng_state(), rng_before)  # the global RNG is left alone
    after = _full_loss(backbone, data)
    assert after < before - 0.2, (before, after)
    assert history["steps"] == 40 and len(history["epoch_loss"]) == 40
    assert backbone.kind == "tiny" and not backbone.training and not backbone.model.token_embedding.sparse
    assert (backbone.image_size, backbone.context_length) == (IMAGE, CONTEXT)
    again, _ = pretrain_tiny(cfg, data, IMAGE, CONTEXT, progress=False)
    for key, value in backbone.model.state_dict().items():
        assert torch.equal(value, again.model.state_dict()[key]), key


def test_contrastive_loss_matches_a_direct_computation():
    gen = torch.Generator().manual_seed(0)
    video, text = torch.randn(3, 5, generator=gen), torch.randn(7, 5, generator=gen)
    owner = torch.tensor([0, 0, 1, 2, 2, 2, 1])
    logit_scale = torch.tensor(2.0)
    got = contrastive_loss(logit_scale, video, text, owner).item()
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
    assert contrastive_loss(logit_scale, video, text[:3]).item() == pytest.approx(clip_loss.item(), rel=1e-5)


def test_retrieval_r1_matches_a_direct_count(tmp_path):
    frames_dir = write_frames_dir(tmp_path)
    data = load_video_text_set(frames_dir, tmp_path / "captions.parquet", "train")
    backbone = build(ARCH, seed=3)
    got = retrieval_r1(backbone, data, CONTEXT, batch_size=5)
    with torch.no_grad():
        videos = []
        for v in range(len(data.video_ids)):
            real = data.frames[v][data.mask[v]]
            videos.append(backbone.model.encode_image(normalise(real)).double().mean(0))
        texts = backbone.model.encode_text(
            clip_module().tokenize(data.captions, context_length=CONTEXT, truncate=True)).double()
    sim = np.array([[F.cosine_similarity(t, v, dim=0).item() for v in videos] for t in texts])
    t2v = np.mean([np.argmax(sim[c]) == data.caption_video[c] for c in range(len(texts))])
    v2t = np.mean([data.caption_video[np.argmax(sim[:, v])] == v for v in range(len(videos))])
    assert got["t2v_r1"] == pytest.approx(t2v) and got["v2t_r1"] == pytest.approx(v2t)
    assert got["videos"] == 4 and got["captions"] == 8


def test_build_backbone_tiny_writes_a_loadable_file(tmp_path):
    from pipeline.backbone.build import build_backbone

    frames_dir = write_frames_dir(tmp_path)
    config = BackboneConfig(kind="tiny", model="ViT-B/32", path=None, sha256=None, torch_threads=0, tiny=tiny_cfg(epochs=1))
    metrics = build_backbone(config, frames_dir, tmp_path / "captions.parquet", tmp_path / "out.pt", max_words=12,
                             progress=False)
    assert metrics["kind"] == "tiny" and "model" not in metrics and metrics["image_size"] == IMAGE
    assert set(metrics["r1"]) == {"train", "test"}  # no val split in this data
    assert metrics["weights_sha256"] == file_sha256(tmp_path / "out.pt")
    loaded = load_backbone(tmp_path / "out.pt")
    assert loaded.kind == "tiny" and loaded.context_length == 12 and loaded.image_size == IMAGE
    assert read_weights(tmp_path / "out.pt")["source"]["context_length"] == 12


def test_build_backbone_vit_b_32_refuses_other_weights(tmp_path):
    from pipeline.backbone.build import build_backbone

    path, _ = official_file(tmp_path)
    config = BackboneConfig(kind="clip", model="ViT-B/32", path=str(path), sha256=None, torch_threads=0, tiny=tiny_cfg())
    with pytest.raises(BackboneError, match="wrong architecture for ViT-B/32"):
        build_backbone(config, tmp_path, tmp_path / "captions.parquet", tmp_path / "out.pt", max_words=32)
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
    from pipeline.backbone.pretrain_options import PretrainOptions
    from pipeline.backbone.tag_terms import with_tags
    from pipeline.backbone.stream import ClipGeometry

    frames_dir = write_frames_dir(tmp_path)
    tags = pd.DataFrame([dict(item_id=f"v{v}#{k}", modality="textual", split="train",
                              tags=[name, "colour", "screen"])
                         for v, name in enumerate(list(COLOURS)[:4]) for k in range(2)])
    tags.to_parquet(tmp_path / "tags.parquet")
    data = with_tags(load_video_text_set(frames_dir, tmp_path / "captions.parquet", "train"), tmp_path / "tags.parquet")
    assert data.caption_tags[0] == ["red", "colour", "screen"] and data.caption_ids[0] == "v0#0"
    options = PretrainOptions(geometry=ClipGeometry(48, 48, 10, (20, 25), num_frames=4, image_size=32))
    all_fresh, _ = pretrain_tiny(tiny_cfg(epochs=2, batch_size=4, fresh_fraction=1.0), data, IMAGE, CONTEXT, progress=False,
                                 options=options)
    cfg = tiny_cfg(epochs=3, batch_size=4, fresh_fraction=0.5, tag_text_weight=0.5)
    model, history = pretrain_tiny(cfg, data, IMAGE, CONTEXT, progress=False, options=options)
    again, _ = pretrain_tiny(cfg, data, IMAGE, CONTEXT, progress=False, options=options)
    for key, value in model.state_dict().items():
        assert torch.equal(value, again.state_dict()[key]), key
    plain, _ = pretrain_tiny(tiny_cfg(epochs=3, batch_size=4), data, IMAGE, CONTEXT, progress=False)
    assert not torch.equal(plain.model.visual.conv1.weight, model.model.visual.conv1.weight)
    with pytest.raises(ValueError, match="clip geometry"):
        pretrain_tiny(cfg, data, IMAGE, CONTEXT, progress=False, options=PretrainOptions())
    with pytest.raises(ValueError, match="need TagOptions"):
        pretrain_tiny(cfg, data, IMAGE, CONTEXT, progress=False)
    no_tags = load_video_text_set(frames_dir, tmp_path / "captions.parquet", "train")
    with pytest.raises(ValueError, match="textual tags"):
        pretrain_tiny(tiny_cfg(tag_text_weight=1.0), no_tags, IMAGE, CONTEXT, progress=False)
    with pytest.raises(ValueError, match="fresh_fraction"):
        tiny_cfg(fresh_fraction=1.5)


def offline_tagger(num_tags: int, noise: float, extra: float):
    """The offline visual tagger's config with ``num_tags`` tags, ``noise`` order noise and ``extra``
    extra-synonym and filler probabilities."""
    from pipeline.tags.offline_visual import OfflineVisualConfig
    from pipeline.tags.sampling import SamplingConfig

    sampling = SamplingConfig(num_tags=num_tags, order_noise=noise, synonym_decay=1.5, extra_synonym_prob=extra,
                              filler_prob=extra)
    return OfflineVisualConfig(lexicon="builtin", foreground_threshold=60.0, min_saturation=0.35,
                               min_blob_area=0.004, min_track_frames=2, max_jump=0.3, colour_penalty=0.15,
                               move_threshold=0.12, size_ratio=1.3, square_fill=0.9, circle_fill=0.68,
                               triangle_skew=0.08, mention_bonus=0.2, sampling=sampling)


def test_visual_tag_language_enters_pretraining(tmp_path):
    """tag_visual_weight: a video-to-own-visual-tags InfoNCE (split videos' tags from tags.parquet,
    fresh clips' written from their scenes); deterministic; off by default."""
    from pipeline.backbone.pretrain_options import PretrainOptions
    from pipeline.backbone.tag_terms import with_tags
    from pipeline.backbone.stream import ClipGeometry

    frames_dir = write_frames_dir(tmp_path)
    names = list(COLOURS)
    rows = [dict(item_id=f"v{v}", modality="visual", split="train", tags=[name, "screen", f"{name} screen"])
            for v, name in enumerate(names[:3])]  # v3 has no visual tags: the empty sentence
    rows += [dict(item_id=f"v{v}#0", modality="textual", split="train", tags=[name]) for v, name in enumerate(names[:4])]
    pd.DataFrame(rows).to_parquet(tmp_path / "tags.parquet")
    data = with_tags(load_video_text_set(frames_dir, tmp_path / "captions.parquet", "train"), tmp_path / "tags.parquet")
    assert data.video_tags == [["red", "screen", "red screen"], ["green", "screen", "green screen"],
                               ["blue", "screen", "blue screen"], []]
    cfg = tiny_cfg(epochs=3, batch_size=4, tag_visual_weight=1.0, tags_per_sentence=2)
    model, history = pretrain_tiny(cfg, data, IMAGE, CONTEXT, progress=False, options=PretrainOptions())
    again, _ = pretrain_tiny(cfg, data, IMAGE, CONTEXT, progress=False, options=PretrainOptions())
    for key, value in model.state_dict().items():
        assert torch.equal(value, again.state_dict()[key]), key
    plain, plain_history = pretrain_tiny(tiny_cfg(epochs=3, batch_size=4), data, IMAGE, CONTEXT, progress=False)
    assert history["epoch_loss"][0] > plain_history["epoch_loss"][0]  # a second InfoNCE term
    assert not torch.equal(plain.model.token_embedding.weight, model.model.token_embedding.weight)

    tagger = offline_tagger(num_tags=10, noise=0.6, extra=0.3)
    geometry = ClipGeometry(48, 48, 10, (20, 25), num_frames=4, image_size=32)
    options = PretrainOptions(geometry=geometry, visual_tagger=tagger)
    fresh_cfg = tiny_cfg(epochs=2, batch_size=4, fresh_fraction=0.5, tag_visual_weight=1.0)
    fresh, _ = pretrain_tiny(fresh_cfg, data, IMAGE, CONTEXT, progress=False, options=options)
    fresh_again, _ = pretrain_tiny(fresh_cfg, data, IMAGE, CONTEXT, progress=False, options=options)
    assert torch.equal(fresh.model.visual.conv1.weight, fresh_again.model.visual.conv1.weight)
    with pytest.raises(ValueError, match="visual tagger"):
        pretrain_tiny(fresh_cfg, data, IMAGE, CONTEXT, progress=False, options=PretrainOptions(geometry=geometry))
    no_tags = load_video_text_set(frames_dir, tmp_path / "captions.parquet", "train")
    with pytest.raises(ValueError, match="visual tags"):
        pretrain_tiny(tiny_cfg(tag_visual_weight=1.0), no_tags, IMAGE, CONTEXT, progress=False)
    with pytest.raises(ValueError, match="tag_visual_weight"):
        tiny_cfg(tag_visual_weight=-1.0)


def test_fresh_tagger_writes_scene_facts_in_the_tagger_vocabulary():
    from pipeline.backbone.stream import ClipGeometry, fresh_batch
    from pipeline.backbone.pretrain_options import FreshTagger
    from pipeline.features.tag_control import scene_objects
    from pipeline.tags.lexicon import load_lexicon

    cfg = offline_tagger(num_tags=40, noise=0.0, extra=0.0)
    batch = fresh_batch(ClipGeometry(48, 48, 10, (20, 25), num_frames=4, image_size=32), 3, 2, 1, seed=0, step=0)
    assert len(batch.scenes) == 3
    sentences = FreshTagger(cfg).sentences(batch.scenes, 40, np.random.default_rng(0))
    assert len(sentences) == 3 and all(s.startswith("a video of ") for s in sentences)
    for scene, sentence in zip(batch.scenes, sentences):
        _, objects = scene_objects(scene, load_lexicon("builtin"), cfg)
        for obj in objects:  # every shape's colour is named (num_tags large, no noise)
            assert obj.colours[0] in sentence


def test_pretraining_options_are_validated_and_recorded_only_when_on():
    with pytest.raises(ValueError, match="tiny.temporal must be 'mean' or 'delta'"):
        tiny_cfg(temporal="max")
    with pytest.raises(ValueError, match=r"tiny.tag_text_weight must be >= 0"):
        tiny_cfg(tag_text_weight=-0.5)
    with pytest.raises(ValueError, match="tiny.tags_per_sentence must be >= 1"):
        tiny_cfg(tags_per_sentence=0)
    with pytest.raises(ValueError, match=r"tiny.fresh_full_captions must be in \[0, 1\]"):
        tiny_cfg(fresh_fraction=0.5, fresh_full_captions=2.0)
    with pytest.raises(ValueError, match="tiny.fresh_siblings must be >= 1"):
        tiny_cfg(fresh_fraction=0.5, fresh_siblings=0)
    with pytest.raises(ValueError, match=r"tiny.fresh_full_captions \(0.5\) applies to fresh clips only"):
        tiny_cfg(fresh_full_captions=0.5)
    with pytest.raises(ValueError, match=r"tiny.fresh_siblings \(2\) applies to fresh clips only"):
        tiny_cfg(fresh_siblings=2)
    with pytest.raises(ValueError, match="rounds to no fresh clip per batch"):
        tiny_cfg(batch_size=4, fresh_fraction=0.1)
    mapping = {k: v for k, v in tiny_cfg().__dict__.items() if not k.startswith("fresh_")} | {"temporal": "max"}
    with pytest.raises(ConfigError, match=r"tiny.temporal: 'max' is not one of \['mean', 'delta'\]"):
        from_mapping(TinyClipConfig, mapping, "params.yaml: backbone.tiny")
    # Off, the options are left out of the weights file's provenance (same file as without them).
    plain = tiny_cfg().source()
    assert not set(PRETRAIN_OPTIONS_OFF) & set(plain)
    assert tiny_cfg(temporal="delta").source() == {**plain, "temporal": "delta"}


def test_the_tag_and_fresh_options_ask_for_their_inputs(tmp_path):
    from pipeline.backbone.build import build_backbone

    frames_dir = write_frames_dir(tmp_path)
    write_pair_tags(tmp_path / "tags.parquet")
    for options in ({"tag_text_weight": 1.0}, {"tag_visual_weight": 1.0}, {"tag_pair_weight": 1.0},
                    {"fresh_fraction": 0.5}):
        config = BackboneConfig(kind="tiny", model="ViT-B/32", path=None, sha256=None, torch_threads=0,
                                tiny=tiny_cfg(epochs=1, **options))
        with pytest.raises(ValueError, match=r"need tags.parquet \(the backbone stage's --tags\)"):
            build_backbone(config, frames_dir, tmp_path / "captions.parquet", tmp_path / "out.pt", max_words=12,
                           progress=False)
    # With --tags the tag terms run from the stage; fresh clips still need experiments/' options.
    config = BackboneConfig(kind="tiny", model="ViT-B/32", path=None, sha256=None, torch_threads=0,
                            tiny=tiny_cfg(epochs=1, fresh_fraction=0.5))
    with pytest.raises(ValueError, match="clip geometry of the prepared videos, which the backbone stage does not"):
        build_backbone(config, frames_dir, tmp_path / "captions.parquet", tmp_path / "out.pt", max_words=12,
                       progress=False, tags=tmp_path / "tags.parquet")


def write_pair_tags(path: Path) -> None:
    """Textual tags for every train caption and visual tags for every train video of
    :func:`write_frames_dir`, naming the colour in two vocabularies."""
    rows = [dict(item_id=f"v{v}", modality="visual", split="train", tags=[f"{name} screen", "plain", "still"])
            for v, name in enumerate(list(COLOURS)[:4])]
    rows += [dict(item_id=f"v{v}#{k}", modality="textual", split="train", tags=[name, "colour"])
             for v, name in enumerate(list(COLOURS)[:4]) for k in range(2)]
    pd.DataFrame(rows).to_parquet(path)


class _TableText:
    """A stand-in text tower: row i of a TextBatch encodes to ``table[ids[i, 0]]``."""

    def __init__(self, table: torch.Tensor) -> None:
        self.table = table

    def encode_text(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.table[ids[:, 0]]


def test_tag_pair_loss_is_infonce_of_textual_against_visual_tag_sentences():
    from pipeline.backbone.base import TextBatch
    from pipeline.backbone.tiny import tag_pair_loss

    gen = torch.Generator().manual_seed(0)
    table = torch.randn(7, 5, generator=gen)
    batch = lambda rows: TextBatch(torch.tensor(rows)[:, None], torch.ones(len(rows), 1, dtype=torch.bool),  # noqa: E731
                                   np.zeros(len(rows), bool))
    captions, videos = [0, 1, 2, 3], [4, 5, 6]  # captions 0, 1 -> video 0; 2 -> 1; 3 -> 2
    caption_video = torch.tensor([0, 0, 1, 2])
    scale = torch.tensor(2.0)
    got = tag_pair_loss(_TableText(table), scale, batch(captions), batch(videos), caption_video)
    t = table[captions] / table[captions].norm(dim=1, keepdim=True)
    v = table[videos] / table[videos].norm(dim=1, keepdim=True)
    logits = scale.exp() * t @ v.T  # [4 captions, 3 videos]
    # Caption side: each caption against all videos. Video side: each video against all
    # captions, its own captions all positive (-log of their share of the probability mass).
    t2v = -torch.log_softmax(logits, dim=1)[torch.arange(4), caption_video].mean()
    prob = torch.softmax(logits.T, dim=1)
    v2t = torch.stack([-torch.log(prob[j, caption_video == j].sum()) for j in range(3)]).mean()
    torch.testing.assert_close(got, (t2v + v2t) / 2)


def test_tag_pair_term_enters_pretraining_from_the_stage_inputs(tmp_path):
    """tag_pair_weight: the stage's --tags is enough; deterministic; it trains the text tower on
    the tag sentences (the image tower only through the shared schedule and batches)."""
    from pipeline.backbone.build import build_backbone
    from pipeline.backbone.tag_terms import TagOptions

    frames_dir = write_frames_dir(tmp_path)
    write_pair_tags(tmp_path / "tags.parquet")
    config = BackboneConfig(kind="tiny", model="ViT-B/32", path=None, sha256=None, torch_threads=1,
                            tiny=tiny_cfg(epochs=3, captions_per_sample=2, tag_pair_weight=1.0, tags_per_sentence=2))
    args = (frames_dir, tmp_path / "captions.parquet")
    first = build_backbone(config, *args, tmp_path / "a.pt", max_words=CONTEXT, progress=False,
                           tags=tmp_path / "tags.parquet")
    second = build_backbone(config, *args, tmp_path / "b.pt", max_words=CONTEXT, progress=False,
                            tags=tmp_path / "tags.parquet")
    assert first["weights_sha256"] == second["weights_sha256"]
    plain_config = dataclasses.replace(config, tiny=dataclasses.replace(config.tiny, tag_pair_weight=0.0))
    plain = build_backbone(plain_config, *args, tmp_path / "c.pt", max_words=CONTEXT, progress=False,
                           tags=tmp_path / "tags.parquet")
    assert plain["first_epoch_loss"] < first["first_epoch_loss"]  # a second InfoNCE term
    # The tags file alone changes nothing: without the term the weights are the plain recipe's.
    no_tags = build_backbone(plain_config, *args, tmp_path / "d.pt", max_words=CONTEXT, progress=False)
    assert no_tags["weights_sha256"] == plain["weights_sha256"]
    model, plain_model = load_backbone(tmp_path / "a.pt"), load_backbone(tmp_path / "c.pt")
    assert not torch.equal(model.model.token_embedding.weight, plain_model.model.token_embedding.weight)
    assert read_weights(tmp_path / "a.pt")["source"]["config"]["tag_pair_weight"] == 1.0
    with pytest.raises(ValueError, match="tag_pair_weight > 0 needs the captions' textual and the videos' visual"):
        pretrain_tiny(config.tiny, load_video_text_set(*args, "train"), IMAGE, CONTEXT, progress=False,
                      options=TagOptions())
    with pytest.raises(ValueError, match="tiny.tag_pair_weight must be >= 0"):
        tiny_cfg(tag_pair_weight=-1.0)


def test_experiment_only_pretraining_options_are_refused_in_params_files(tmp_path):
    """fresh_* need inputs the backbone stage does not pass: params.yaml may not name them (they
    default off), and experiments/ sets them in code."""
    import yaml

    from pipeline.backbone.config import BackboneConfig
    from pipeline.config import ConfigError, load_section

    params = yaml.safe_load(Path("params.yaml").read_text())
    assert not any(k.startswith("fresh_") for k in params["backbone"]["tiny"])
    loaded = load_section(BackboneConfig, "backbone", "params.yaml")
    assert (loaded.tiny.fresh_fraction, loaded.tiny.fresh_full_captions, loaded.tiny.fresh_siblings) == (0.0, 0.0, 1)
    params["backbone"]["tiny"]["fresh_fraction"] = 0.5
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(ConfigError, match=r"backbone.tiny: 'fresh_fraction' is not a params knob: fresh clips need"):
        load_section(BackboneConfig, "backbone", tmp_path / "params.yaml")

    from experiments.common import tiny_config

    assert tiny_config({"fresh_fraction": 0.5, "fresh_siblings": 2}).fresh_clips_per_batch == 16
