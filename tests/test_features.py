"""Features: tag sentences, the features directory against direct CLIP calls, padded slots, tag
controls, resume, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from pipeline.backbone.arch import ClipArch, clip_module
from pipeline.backbone.clip_model import ClipModel
from pipeline.backbone.io import file_sha256, load_backbone, save_weights
from pipeline.backbone.tiny import PRETRAIN_OPTIONS_OFF
from pipeline.device import resolve_device
from pipeline.features import extract as extract_mod
from pipeline.features.config import AuxiliaryInputs, FeaturesConfig
from pipeline.features.tag_control import shuffled_tags
from pipeline.features.extract import extract_features
from pipeline.features.inputs import load_inputs
from pipeline.features.store import load_features
from pipeline.tags.sentences import infer_sentence, tag_sentence, train_sentences
from pipeline.frames.store import FrameStore
from pipeline.text import TextConfig

ARCH = ClipArch(embed_dim=16, image_resolution=32, vision_layers=1, vision_width=64,
                vision_patch_size=16, context_length=16, vocab_size=49408,
                transformer_width=32, transformer_heads=1, transformer_layers=1)
N_V, S = 4, 32
TAGS12 = [f"tag{i}" for i in range(12)]
TEXT = TextConfig(max_words=16)  # the tiny CLIP's whole context


def cfg(**overrides) -> FeaturesConfig:
    base = dict(encode=True, batch_size=5, device="cpu", torch_threads=0, train_tag_draws=3, train_tags_per_draw=2,
                infer_tags=3, seed=7, tag_control="real", auxiliary=AuxiliaryInputs("tags", "tags"))
    return FeaturesConfig(**{**base, **overrides})


def extract(config: FeaturesConfig, out: Path, text: TextConfig = TEXT, **paths) -> dict:
    return extract_features(config, text, out=out, progress=False, **paths)


# --- tag sentences --------------------------------------------------------------------------

def test_tag_sentence_format():
    assert tag_sentence(["red", "moving shape"]) == "a video of red, moving shape"
    assert tag_sentence([]) == "a video of"


def test_infer_sentence_takes_the_first_m_in_order():
    assert infer_sentence(TAGS12, 8) == "a video of " + ", ".join(TAGS12[:8])
    assert infer_sentence(["b", "a"], 8) == "a video of b, a"
    assert infer_sentence([], 8) == "a video of"


def _tags_of(sentence: str) -> list[str]:
    assert sentence.startswith("a video of")
    rest = sentence[len("a video of"):].strip()
    return rest.split(", ") if rest else []


def test_train_sentences_draw_n_distinct_tags_seeded_per_item():
    draws = train_sentences(TAGS12, 5, 6, seed=1, modality="visual", item_id="v1")
    assert len(draws) == 5
    for s in draws:
        tags = _tags_of(s)
        assert len(tags) == 6 and len(set(tags)) == 6 and set(tags) <= set(TAGS12)
    assert len(set(draws)) == 5  # C(12,6)*6! orders: five equal draws would be a bug
    assert draws == train_sentences(TAGS12, 5, 6, seed=1, modality="visual", item_id="v1")
    assert draws != train_sentences(TAGS12, 5, 6, seed=2, modality="visual", item_id="v1")
    assert draws != train_sentences(TAGS12, 5, 6, seed=1, modality="textual", item_id="v1")
    assert draws != train_sentences(TAGS12, 5, 6, seed=1, modality="visual", item_id="v2")


def test_train_sentences_with_few_or_no_tags():
    few = ["a", "b", "c"]
    draws = train_sentences(few, 20, 6, seed=0, modality="textual", item_id="c")
    assert all(sorted(_tags_of(s)) == few for s in draws)
    assert len(set(draws)) > 1  # all three tags each time, in varying order
    assert train_sentences([], 4, 6, seed=0, modality="visual", item_id="v") == ["a video of"] * 4


# --- a tiny dataset -------------------------------------------------------------------------

def make_dataset(root: Path) -> dict[str, Path]:
    """5 decoded videos (one padded to 2 frames), 1 skipped; captions; tags with gaps."""
    rng = np.random.default_rng(0)
    n = 5
    frames = rng.integers(0, 256, (n, N_V, S, S, 3), dtype=np.uint8)
    mask = np.ones((n, N_V), bool)
    mask[1, 2:] = False
    frames[1, 2:] = 0
    order = [3, 0, 4, 1, 2]  # frame rows are not in video-id order
    ids = [f"vid{i}" for i in range(n)]
    index = [dict(video_id=ids[i], row=order[i], split="test" if i == 4 else "train", status="ok",
                  error="", source_frames=30, frame_indices=[0, 1, 2, 3]) for i in range(n)]
    index.append(dict(video_id="bad", row=-1, split="train", status="skipped", error="corrupt",
                      source_frames=0, frame_indices=[]))
    shuffled = np.empty_like(frames)
    shuffled_mask = np.empty_like(mask)
    for i in range(n):
        shuffled[order[i]], shuffled_mask[order[i]] = frames[i], mask[i]
    fdir = root / "frames"
    fdir.mkdir(parents=True)
    np.save(fdir / "clip_frames.npy", shuffled)
    np.save(fdir / "clip_mask.npy", shuffled_mask)
    pd.DataFrame(index).to_parquet(fdir / "index.parquet")
    videos = pd.DataFrame({"video_id": ids + ["bad"], "split": ["train"] * 4 + ["test", "train"]})
    videos.to_parquet(root / "videos.parquet")
    caps = []
    for vid in ids + ["bad"]:
        for k in range(2):
            caps.append(dict(caption_id=f"{vid}#{k}", video_id=vid,
                             split="test" if vid == "vid4" else "train", caption_index=k,
                             text=f"caption {k} of {vid}"))
    caps[0]["text"] = "a very long caption " * 10  # longer than the 16-token context
    caps[3]["text"] = caps[2]["text"]  # duplicate texts are encoded once
    pd.DataFrame(caps).to_parquet(root / "captions.parquet")
    tags = [dict(item_id="vid0", modality="visual", split="train", tags=TAGS12),
            dict(item_id="vid1", modality="visual", split="train", tags=["red"]),
            dict(item_id="vid2", modality="visual", split="train", tags=[]),
            dict(item_id="vid4", modality="visual", split="test", tags=["blue", "square"]),
            dict(item_id="vid0#0", modality="textual", split="train", tags=["x", "y", "z", "w"]),
            dict(item_id="vid4#1", modality="textual", split="test", tags=["late"])]
    pd.DataFrame(tags).to_parquet(root / "tags.parquet")  # vid3 and most captions: no row
    torch.manual_seed(0)
    save_weights(ClipModel(ARCH.build(), "tiny"), root / "backbone.pt", {"kind": "test"})
    return dict(backbone=root / "backbone.pt", frames_dir=fdir, videos_path=root / "videos.parquet",
                captions_path=root / "captions.parquet", tags_path=root / "tags.parquet")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("features")
    paths = make_dataset(root)
    extract(cfg(), root / "features", **paths)
    return root, paths


def _direct_text(backbone, texts, length: int = 16):
    clip = clip_module()
    with torch.no_grad():
        return backbone.model.encode_text(clip.tokenize(texts, context_length=length, truncate=True)).numpy()


def _direct_frames(backbone, frames: np.ndarray) -> np.ndarray:
    """CLIP's image tower on CLIP-normalised frames, written out without the encoders."""
    from pipeline.backbone.base import CLIP_MEAN, CLIP_STD

    x = torch.from_numpy(np.asarray(frames)).permute(0, 3, 1, 2).float() / 255
    x = (x - torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)) / torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        return backbone.model.encode_image(x).numpy()


def test_features_dir_layout_and_indexes(dataset):
    root, paths = dataset
    fs = load_features(root / "features")
    assert fs.videos["video_id"].tolist() == ["vid1", "vid3", "vid4", "vid0", "vid2"]  # frame-row order
    assert fs.videos["split"].tolist() == ["train", "train", "test", "train", "train"]
    assert "bad" not in set(fs.captions_index["video_id"])
    assert len(fs.captions_index) == 10
    assert list(fs.captions_index.columns) == ["caption_id", "video_id", "row", "split", "caption_index"]
    assert fs.frames.shape == (5, N_V, 16) and fs.frame_mask.shape == (5, N_V)
    assert fs.captions.shape == (10, 16)
    assert fs.tags_visual_train.shape == (5, 3, 16) and fs.tags_textual_train.shape == (10, 3, 16)
    assert fs.tags_visual_infer.shape == (5, 16) and fs.tags_textual_infer.shape == (10, 16)
    for name in ("frames", "captions", "tags_visual_train", "tags_textual_train",
                 "tags_visual_infer", "tags_textual_infer"):
        arr = getattr(fs, name)
        assert arr.dtype == np.float16 and isinstance(arr, np.memmap), name
    assert fs.frame_mask.dtype == bool
    meta = json.loads((root / "features" / "meta.json").read_text())
    assert meta["train_tag_draws"] == 3 and meta["train_tags_per_draw"] == 2
    assert meta["infer_tags"] == 3 and meta["seed"] == 7 and meta["tag_control"] == "real"
    assert meta["max_words"] == 16 and meta["padding"] == "zero"
    assert meta["backbone_sha256"] == file_sha256(paths["backbone"])
    assert meta["backbone_kind"] == "tiny" and meta["backbone_arch"] == ARCH.to_dict()
    assert meta["counts"]["videos_without_frames"] == 1
    assert meta["counts"]["captions_without_frames"] == 2
    assert meta["counts"]["visual_items_without_tags"] == 1  # vid3 (vid2's empty list is a row)
    assert meta["counts"]["truncated_texts"] == 1
    assert not (root / ".features.work").exists()


def test_frame_features_equal_direct_encoding_and_padding_is_zero(dataset):
    root, paths = dataset
    fs = load_features(root / "features")
    model = load_backbone(paths["backbone"])
    frames = np.load(paths["frames_dir"] / "clip_frames.npy")
    index = pd.read_parquet(paths["frames_dir"] / "index.parquet").set_index("video_id")
    for v, vid in enumerate(fs.videos["video_id"]):
        raw = frames[index.loc[vid, "row"]]
        real = fs.frame_mask[v]
        assert real.sum() == (2 if vid == "vid1" else 4)
        want = _direct_frames(model, raw[real])
        np.testing.assert_allclose(fs.frames[v][real].astype(np.float32), want, rtol=2e-3, atol=2e-3)
        assert np.all(fs.frames[v][~real] == 0)
        assert np.all(np.abs(fs.frames[v][real]).sum(axis=1) > 0)


def test_caption_features_equal_encode_text(dataset):
    root, paths = dataset
    fs = load_features(root / "features")
    model = load_backbone(paths["backbone"])
    caps = pd.read_parquet(paths["captions_path"]).set_index("caption_id")
    texts = caps.loc[fs.captions_index["caption_id"], "text"].tolist()
    np.testing.assert_allclose(fs.captions.astype(np.float32), _direct_text(model, texts),
                               rtol=2e-3, atol=2e-3)


def test_tag_features_equal_their_sentences(dataset):
    root, paths = dataset
    fs = load_features(root / "features")
    model = load_backbone(paths["backbone"])
    tags = pd.read_parquet(paths["tags_path"])
    lookup = {(m, i): list(t) for m, i, t in zip(tags["modality"], tags["item_id"], tags["tags"])}
    for modality, ids, train, infer in (
            ("visual", fs.videos["video_id"], fs.tags_visual_train, fs.tags_visual_infer),
            ("textual", fs.captions_index["caption_id"], fs.tags_textual_train, fs.tags_textual_infer)):
        for row, item in enumerate(ids):
            item_tags = lookup.get((modality, item), [])
            sentences = train_sentences(item_tags, 3, 2, 7, modality, item)
            want = _direct_text(model, sentences + [infer_sentence(item_tags, 3)])
            got = np.concatenate([train[row], infer[row][None]]).astype(np.float32)
            np.testing.assert_allclose(got, want, rtol=2e-3, atol=2e-3)
    vid0 = fs.videos.index[fs.videos["video_id"] == "vid0"][0]
    assert not np.array_equal(fs.tags_visual_train[vid0, 0], fs.tags_visual_train[vid0, 1])


def test_blank_padding_fills_padded_slots_with_the_blank_frame(tmp_path):
    """A frames dir recorded with ``padding: blank``: padded slots hold the backbone's embedding of
    an all-zero normalised image (the official loader's content); real slots are unchanged."""
    paths = make_dataset(tmp_path)
    (paths["frames_dir"] / "summary.json").write_text(json.dumps({"padding": "blank"}))
    meta = extract(cfg(), tmp_path / "features", **paths)
    fs = load_features(tmp_path / "features")
    model = load_backbone(paths["backbone"])
    with torch.no_grad():
        blank = model.model.encode_image(torch.zeros(1, 3, S, S))[0].numpy()
    v = fs.videos.index[fs.videos["video_id"] == "vid1"][0]  # the padded video
    assert meta["padding"] == "blank" and fs.frame_mask[v].tolist() == [True, True, False, False]
    for slot in (2, 3):
        np.testing.assert_allclose(fs.frames[v, slot].astype(np.float32), blank, rtol=2e-3, atol=2e-3)
    assert np.abs(blank).sum() > 0  # not the zero padding


def test_max_words_cuts_every_text(tmp_path):
    """text.max_words: captions and tag sentences cut to that many tokens (start and end included)."""
    paths = make_dataset(tmp_path)
    meta = extract(cfg(), tmp_path / "features", text=TextConfig(max_words=6), **paths)
    fs = load_features(tmp_path / "features")
    model = load_backbone(paths["backbone"])
    caps = pd.read_parquet(paths["captions_path"]).set_index("caption_id")
    texts = caps.loc[fs.captions_index["caption_id"], "text"].tolist()
    np.testing.assert_allclose(fs.captions.astype(np.float32), _direct_text(model, texts, 6), rtol=2e-3, atol=2e-3)
    assert meta["max_words"] == 6 and meta["counts"]["truncated_texts"] > 1
    with pytest.raises(ValueError, match="max_words 17 exceeds the text context"):
        extract(cfg(), tmp_path / "too_long", text=TextConfig(max_words=17), **paths)


def test_resume_after_a_kill_reuses_finished_work(tmp_path, monkeypatch):
    paths = make_dataset(tmp_path)
    reference = tmp_path / "reference"
    extract(cfg(), reference, **paths)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    out = tmp_path / "features"
    monkeypatch.setattr(extract_mod, "encode_unique_texts", killed)
    with pytest.raises(KeyboardInterrupt):
        extract(cfg(), out, **paths)
    work = tmp_path / ".features.work"
    assert json.loads((work / "progress.json").read_text())["done"]["frames"] == 5
    assert not out.exists()
    monkeypatch.undo()

    def no_frames(*args, **kwargs):
        raise AssertionError("finished frame features were recomputed")

    monkeypatch.setattr("pipeline.features.encode.padded_frame_features", no_frames)
    extract(cfg(batch_size=3), out, **paths)
    assert not work.exists()
    a, b = load_features(out), load_features(reference)
    for name in ("frames", "captions", "tags_visual_train", "tags_textual_infer"):
        np.testing.assert_allclose(getattr(a, name).astype(np.float32),
                                   getattr(b, name).astype(np.float32), atol=2e-3)


@pytest.mark.parametrize("changed", [dict(config=cfg(seed=8)), dict(text=TextConfig(max_words=8))])
def test_changed_inputs_restart_the_work(tmp_path, monkeypatch, changed):
    paths = make_dataset(tmp_path)
    monkeypatch.setattr(extract_mod, "encode_unique_texts",
                        lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        extract(cfg(), tmp_path / "features", **paths)  # frames done, texts not
    monkeypatch.undo()
    calls = []
    real = extract_mod.encode_video_frames

    def counting(model, frames, mask, rows, padding, work, *args, **kwargs):
        calls.append(work.done("frames"))
        return real(model, frames, mask, rows, padding, work, *args, **kwargs)

    monkeypatch.setattr(extract_mod, "encode_video_frames", counting)
    meta = extract(changed.get("config", cfg()), tmp_path / "features", changed.get("text", TEXT), **paths)
    assert calls == [0]  # another seed or text length: a new fingerprint, nothing reused
    assert (meta["seed"], meta["max_words"]) == ((8, 16) if "config" in changed else (7, 8))


def test_input_errors_name_the_file(tmp_path):
    paths = make_dataset(tmp_path)
    pd.DataFrame({"video_id": ["vid0"], "split": ["train"]}).to_parquet(paths["videos_path"])
    store = FrameStore(paths["frames_dir"])
    with pytest.raises(ValueError, match=r"index.parquet: video 'vid1' is not in .*videos.parquet"):
        load_inputs(store, paths["videos_path"], paths["captions_path"], paths["tags_path"])
    paths = make_dataset(tmp_path / "again")
    store = FrameStore(paths["frames_dir"])
    tags = pd.read_parquet(paths["tags_path"])
    pd.concat([tags, tags.iloc[:1]]).to_parquet(paths["tags_path"])
    with pytest.raises(ValueError, match=r"tags.parquet \(visual\): duplicate item_id 'vid0'"):
        load_inputs(store, paths["videos_path"], paths["captions_path"], paths["tags_path"])
    tags.assign(modality="audio").to_parquet(paths["tags_path"])
    with pytest.raises(ValueError, match="unknown modality 'audio'"):
        load_inputs(store, paths["videos_path"], paths["captions_path"], paths["tags_path"])


def test_load_features_rejects_a_damaged_dir(dataset, tmp_path):
    root, _ = dataset
    import shutil
    copy = tmp_path / "copy"
    shutil.copytree(root / "features", copy)
    np.save(copy / "captions.npy", np.zeros((3, 16), np.float16))
    with pytest.raises(ValueError, match=r"captions.npy: shape \(3, 16\), expected \(10, 16\)"):
        load_features(copy)
    with pytest.raises(FileNotFoundError, match="did the features stage run"):
        load_features(tmp_path / "nowhere")


def test_config_and_device_errors():
    with pytest.raises(ValueError, match="train_tag_draws must be >= 1"):
        cfg(train_tag_draws=0)
    with pytest.raises(ValueError, match="tag_control must be real, shuffled or oracle"):
        cfg(tag_control="random")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no CUDA device"):
            resolve_device("cuda")
        assert resolve_device("auto").type == "cpu"


def test_backbone_and_features_stages_run_from_params(tmp_path):
    """The two stage commands chained, each reading only its own params section."""
    import yaml
    from typer.testing import CliRunner

    from stages.backbone import app as backbone_app
    from stages.features import app as features_app

    paths = make_dataset(tmp_path)
    params = {
        "text": {"max_words": 12},
        "backbone": {"kind": "tiny", "model": "ViT-B/32", "path": None, "sha256": "official", "torch_threads": 1, "tiny": {
            "embed_dim": 16, "vision_patch_size": 16, "vision_width": 64,
            "vision_layers": 1, "text_width": 32, "text_heads": 1, "text_layers": 1,
            "epochs": 2, "batch_size": 4, "lr": 1e-3, "weight_decay": 0.1,
            "warmup_frac": 0.1, "frames_per_sample": 2, "captions_per_sample": 2, "seed": 0,
            **{k: v for k, v in PRETRAIN_OPTIONS_OFF.items() if not k.startswith("fresh_")}}},
        "features": {"encode": True, "batch_size": 8, "device": "cpu", "torch_threads": 1, "train_tag_draws": 2,
                     "train_tags_per_draw": 6, "infer_tags": 8, "seed": 0, "tag_control": "real",
                     "auxiliary": {"visual": "tags", "textual": "tags"}},
    }
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    runner = CliRunner()
    weights, metrics = tmp_path / "models" / "backbone.pt", tmp_path / "metrics" / "backbone.json"
    result = runner.invoke(backbone_app, [
        "--params", str(tmp_path / "params.yaml"), "--frames", str(paths["frames_dir"]),
        "--captions", str(paths["captions_path"]), "--out", str(weights), "--metrics", str(metrics)])
    assert result.exit_code == 0, result.output
    report = json.loads(metrics.read_text())
    assert report["kind"] == "tiny" and report["steps"] == 2
    assert set(report["r1"]) == {"train", "test"} and report["r1"]["train"]["videos"] == 4
    assert report["weights_sha256"] == file_sha256(weights)
    arch = ClipArch.of(load_backbone(weights).model)
    assert (arch.transformer_width, arch.image_resolution, arch.context_length) == (32, S, 12)  # sizes from elsewhere
    out = tmp_path / "data" / "features"
    result = runner.invoke(features_app, [
        "--params", str(tmp_path / "params.yaml"), "--backbone", str(weights),
        "--frames", str(paths["frames_dir"]), "--videos", str(paths["videos_path"]),
        "--captions", str(paths["captions_path"]), "--tags", str(paths["tags_path"]),
        "--out", str(out)])
    assert result.exit_code == 0, result.output
    fs = load_features(out)
    assert fs.tags_visual_train.shape == (5, 2, 16) and fs.meta["backbone_sha256"] == report["weights_sha256"]
    assert fs.meta["max_words"] == 12
    params["features"]["tag_control"] = "psychic"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    bad = runner.invoke(features_app, [
        "--params", str(tmp_path / "params.yaml"), "--backbone", str(weights),
        "--frames", str(paths["frames_dir"]), "--videos", str(paths["videos_path"]),
        "--captions", str(paths["captions_path"]), "--tags", str(paths["tags_path"]), "--out", str(out)])
    assert bad.exit_code == 1 and "tag_control" in bad.output and "Traceback" not in bad.output


# --- tag controls ---------------------------------------------------------------------------

def test_shuffled_tags_are_a_derangement_within_each_split():
    ids = [f"item{i}" for i in range(40)]
    lists = [[f"t{i}", f"u{i}"] for i in range(40)]  # every list distinct
    splits = ["train"] * 25 + ["test"] * 10 + ["val"] * 5
    out = shuffled_tags(ids, lists, splits, seed=3, modality="visual")
    assert out == shuffled_tags(ids, lists, splits, seed=3, modality="visual")  # deterministic
    assert out != shuffled_tags(ids, lists, splits, seed=4, modality="visual")
    for split in ("train", "test", "val"):
        rows = [r for r, s in enumerate(splits) if s == split]
        assert sorted(map(tuple, (out[r] for r in rows))) == sorted(map(tuple, (lists[r] for r in rows)))
        assert all(out[r] != lists[r] for r in rows)  # nobody keeps its own tags
    assert lists[0] == ["t0", "u0"]  # the input is left alone


def test_shuffled_tag_control_in_the_features_inputs(tmp_path):
    paths = make_dataset(tmp_path)
    store = FrameStore(paths["frames_dir"])
    real = load_inputs(store, paths["videos_path"], paths["captions_path"], paths["tags_path"], "real", 7)
    mixed = load_inputs(store, paths["videos_path"], paths["captions_path"], paths["tags_path"], "shuffled", 7)
    again = load_inputs(store, paths["videos_path"], paths["captions_path"], paths["tags_path"], "shuffled", 7)
    assert mixed.visual_tags == again.visual_tags and mixed.textual_tags == again.textual_tags
    assert mixed.visual_tags != real.visual_tags and mixed.textual_tags != real.textual_tags
    for table, real_lists, mixed_lists in ((real.videos, real.visual_tags, mixed.visual_tags),
                                           (real.captions, real.textual_tags, mixed.textual_tags)):
        for split in set(table["split"]):
            rows = np.flatnonzero(table["split"].to_numpy() == split)
            assert sorted(map(tuple, (mixed_lists[r] for r in rows))) == \
                sorted(map(tuple, (real_lists[r] for r in rows))), split
    vid0 = real.videos.index[real.videos["video_id"] == "vid0"][0]
    assert real.visual_tags[vid0] == TAGS12 and mixed.visual_tags[vid0] != TAGS12
    meta = extract(cfg(tag_control="shuffled"), tmp_path / "features", **paths)  # cfg's seed: 7
    fs = load_features(tmp_path / "features")
    model = load_backbone(paths["backbone"])
    sentences = [infer_sentence(t, 3) for t in mixed.visual_tags]
    order = [list(mixed.videos["video_id"]).index(v) for v in fs.videos["video_id"]]
    np.testing.assert_allclose(fs.tags_visual_infer.astype(np.float32),
                               _direct_text(model, [sentences[i] for i in order]), rtol=2e-3, atol=2e-3)
    assert meta["tag_control"] == "shuffled"

