"""End-to-end fine-tuning (backbone + head) with a tiny random CLIP, the temporal init from the
backbone, and the backbone's logit scale (``train.logit_scale: backbone``)."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from pipeline.backbone.arch import CLIP_VOCAB_SIZE, ClipArch
from pipeline.backbone.clip_model import ClipModel, clip_tokenize
from pipeline.backbone.io import file_sha256, load_backbone, save_weights
from pipeline.evaluation.trained import TrainedModel
from pipeline.tags.sentences import tag_sentence
from pipeline.io import read_json, write_json, write_npy, write_parquet
from pipeline.text import TextConfig
from pipeline.train import loop
from pipeline.train.data import FrameTextSet, finetune_pairs, tag_lists
from pipeline.train.distributed import DistContext
from pipeline.train.loop import TrainInputs, train
from tests.test_train_common import DIM, FRAMES, make_features, tiny_config

CPU1 = DistContext(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
TEXT = TextConfig(max_words=16)
SIZE = 16
TAGS = ["red", "circle", "moves left", "grows", "blue square", "static"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A tiny CLIP whose text width equals the head's D (so the temporal init applies), a frames
    dir with one skipped video, captions and tags."""
    root = tmp_path_factory.mktemp("finetune")
    torch.manual_seed(0)
    arch = ClipArch(embed_dim=DIM, image_resolution=SIZE, vision_layers=1, vision_width=64, vision_patch_size=8,
                    context_length=16, vocab_size=CLIP_VOCAB_SIZE, transformer_width=DIM, transformer_heads=2,
                    transformer_layers=1)
    save_weights(ClipModel(arch.build(), "tiny"), root / "backbone.pt", {"kind": "test"})
    rng = np.random.default_rng(0)
    n = 10
    video_ids = [f"v{i}" for i in range(n)]
    split = ["train"] * 8 + ["test"] * 2
    frames_dir = root / "frames"
    status = ["ok"] * n
    status[3] = "skipped"  # its captions must be left out
    rows = np.cumsum([s == "ok" for s in status]) - 1  # ok videos fill rows 0..8 in order
    write_npy(rng.integers(0, 256, size=(n - 1, FRAMES, SIZE, SIZE, 3), dtype=np.uint8),
              frames_dir / "clip_frames.npy")
    mask = np.ones((n - 1, FRAMES), dtype=bool)
    mask[1, 2:] = False
    write_npy(mask, frames_dir / "clip_mask.npy")
    write_parquet(pd.DataFrame({"video_id": video_ids, "row": [int(r) if s == "ok" else -1 for r, s in zip(rows, status)],
                                "split": split, "status": status, "error": ["" if s == "ok" else "corrupt" for s in status]}),
                  frames_dir / "index.parquet")
    caps = pd.DataFrame({"caption_id": [f"{v}#{k}" for v in video_ids for k in range(2)],
                         "video_id": [v for v in video_ids for _ in range(2)],
                         "split": [s for s in split for _ in range(2)], "caption_index": [0, 1] * n,
                         "text": [f"a {c} shape number {i} moves" for i in range(n) for c in ("red", "blue")]})
    write_parquet(caps, root / "captions.parquet")
    tags = pd.DataFrame({
        "item_id": video_ids + list(caps["caption_id"]),
        "modality": ["visual"] * n + ["textual"] * len(caps),
        "split": split + list(caps["split"]),
        "tags": [TAGS[i % 3:] for i in range(n)] + [TAGS[: 2 + i % 4] for i in range(len(caps))]})
    tags = tags[tags["item_id"] != "v7#1"]  # an item without tags gets the empty sentence
    write_parquet(tags, root / "tags.parquet")
    return root


def _inputs(root: Path) -> TrainInputs:
    return TrainInputs(frames=root / "frames", captions=root / "captions.parquet", tags=root / "tags.parquet",
                       backbone=root / "backbone.pt")


def test_finetune_pairs_skip_undecoded_videos(data, caplog):
    with caplog.at_level(logging.WARNING):
        pairs, texts = finetune_pairs(data / "frames", data / "captions.parquet")
    assert "2 of 16 train captions have no usable video" in caplog.text
    assert "v3" not in pairs.video_ids and len(pairs) == 14
    assert texts[0] == "a red shape number 0 moves" and texts[2] == "a red shape number 1 moves"
    assert list(pairs.video_rows[:4]) == [0, 0, 1, 1]


def test_frame_text_batches(data, caplog):
    pairs, texts = finetune_pairs(data / "frames", data / "captions.parquet")
    with caplog.at_level(logging.WARNING):
        visual = tag_lists(data / "tags.parquet", pairs.video_ids, "visual")
        textual = tag_lists(data / "tags.parquet", list(pairs.caption_ids), "textual")
    assert "1 textual items have no tags" in caplog.text
    tokenizer = load_backbone(data / "backbone.pt").text_tokenizer()
    ds = FrameTextSet(data / "frames", pairs, texts, visual, textual, tokenizer, max_words=12, tags_per_item=3,
                      seed=1)
    raw = np.load(data / "frames" / "clip_frames.npy")
    idx = [5, 2, 13]
    ds.set_epoch(0)
    b0 = ds[idx]
    np.testing.assert_array_equal(b0["frames"].numpy(), raw[pairs.video_rows[idx]])
    assert b0["frames"].dtype == torch.uint8 and not b0["mask"][1].all()  # pair 2 is the padded video v1
    want = clip_tokenize([texts[i] for i in idx], 12)  # cut to max_words tokens, not the model's context
    assert torch.equal(b0["text_ids"], want.ids) and torch.equal(b0["text_mask"], want.mask)
    # Each sentence holds tags_per_item distinct tags of its own item, in some order.
    sentences = {"tags_v_ids": [visual[pairs.video_index[i]] for i in idx],
                 "tags_t_ids": [textual[i] for i in idx]}
    for key, own in sentences.items():
        assert torch.equal(b0[key.replace("_ids", "_mask")], b0[key] != 0)
        for row, tags in zip(b0[key], own):
            candidates = {tuple(clip_tokenize([tag_sentence(p)], 12).ids[0].tolist())
                          for p in _orderings(tags, min(3, len(tags)))}
            assert tuple(row.tolist()) in candidates
    assert torch.equal(ds[idx]["tags_t_ids"], b0["tags_t_ids"])  # reproducible per (seed, epoch)
    ds.set_epoch(1)
    assert not torch.equal(ds[idx]["tags_v_ids"], b0["tags_v_ids"])  # redrawn each epoch
    fixed = ds.fixed_batch([0])
    assert torch.equal(fixed["tags_v_ids"], clip_tokenize([tag_sentence(visual[0][:3])], 12).ids)
    empty = ds.fixed_batch([13])  # v7#1 has no tags
    assert torch.equal(empty["tags_t_ids"], clip_tokenize(["a video of"], 12).ids)
    no_tags = FrameTextSet(data / "frames", pairs, texts, None, None, tokenizer, 12, 3, 1)[idx]
    assert set(no_tags) == {"frames", "mask", "video_index", "text_ids", "text_mask"}


def _orderings(tags, k):
    from itertools import permutations

    return list(permutations(tags, k))


def test_finetune_trains_backbone_and_head_and_checkpoints_both(data, tmp_path):
    config = tiny_config(mode="finetune", epochs=1, batch_size=4, lr=1e-3, clip_lr=1e-4, monitor_videos=4,
                         init_temporal_from_backbone=True)
    before = load_backbone(data / "backbone.pt")
    metrics = train(config, "macvr", _inputs(data), tmp_path / "out", live_dir=tmp_path / "live", text=TEXT)
    assert "epoch/r1_t2v" in metrics and np.isfinite(metrics["epoch/total"])
    payload = torch.load(tmp_path / "out" / "checkpoint.pt", weights_only=True)
    assert {g["name"] for g in payload["optimizer"]["param_groups"]} == \
        {"head/decay", "head/no_decay", "backbone/decay", "backbone/no_decay"}
    assert {g["name"]: g["initial_lr"] for g in payload["optimizer"]["param_groups"]}["backbone/decay"] == 1e-4
    assert payload["backbone"]["kind"] == "tiny" and payload["backbone"]["arch"] == before.arch()
    model = TrainedModel.load(tmp_path / "out" / "model.pt")
    tuned = model.backbone
    assert model.finetuned and tuned is not None and not tuned.training and tuned.kind == "tiny"
    after, orig = tuned.model.state_dict(), before.model.state_dict()
    assert not torch.equal(after["visual.conv1.weight"], orig["visual.conv1.weight"])  # the backbone was trained
    assert not torch.equal(after["transformer.resblocks.0.attn.in_proj_weight"],
                           orig["transformer.resblocks.0.attn.in_proj_weight"])
    assert torch.equal(after["logit_scale"], orig["logit_scale"])  # unused (logit_scale: head): frozen
    assert model.train_mode == "finetune" and model.variant == "macvr" and model.max_words == 16
    assert model.config.tags == ("visual", "textual") and model.config.embed_dim == DIM


def test_finetune_resume_is_exact(data, tmp_path, monkeypatch):
    config = tiny_config("dicosa", mode="finetune", epochs=2, batch_size=4, clip_lr=1e-4, monitor_videos=0)
    train(config, "dicosa", _inputs(data), tmp_path / "a", live_dir=None, text=TEXT)
    real = loop._run_epoch

    def stop_at_second(run, model, epoch, global_step, live):
        if epoch == 1:
            raise KeyboardInterrupt
        return real(run, model, epoch, global_step, live)

    monkeypatch.setattr(loop, "_run_epoch", stop_at_second)
    with pytest.raises(KeyboardInterrupt):
        train(config, "dicosa", _inputs(data), tmp_path / "b", live_dir=None, text=TEXT)
    monkeypatch.setattr(loop, "_run_epoch", real)
    train(config, "dicosa", _inputs(data), tmp_path / "b", live_dir=None, resume="always", text=TEXT)
    a = torch.load(tmp_path / "a" / "model.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "model.pt", weights_only=True)
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    sa, sb = a["backbone"]["state_dict"], b["backbone"]["state_dict"]
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _features_of(data: Path, root: Path) -> Path:
    """A cached features dir that names ``data``'s backbone as its encoder."""
    features = make_features(root)
    meta = read_json(features / "meta.json")
    write_json({**meta, "backbone_sha256": file_sha256(data / "backbone.pt")}, features / "meta.json")
    return features


def test_temporal_init_copies_the_backbone_text_layers(data, tmp_path):
    features = _features_of(data, tmp_path / "features")
    meta = read_json(features / "meta.json")
    config = tiny_config(init_temporal_from_backbone=True)
    inputs = TrainInputs(features=features, backbone=data / "backbone.pt")
    run = loop._build(config, TEXT, "macvr", inputs, CPU1)
    backbone = load_backbone(data / "backbone.pt")
    mine = run.trainable.head.temporal.resblocks[0].state_dict()
    theirs = backbone.model.transformer.resblocks[0].state_dict()
    assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)
    assert torch.equal(run.trainable.head.temporal.position_embedding.weight,
                       backbone.model.positional_embedding[:FRAMES])
    assert run.trainable.backbone is None  # cached mode trains the head only
    assert run.trainable.head.temporal.resblocks[0].ln_1.eps == 1e-12  # the head's own LayerNorm epsilon

    write_json({**meta, "backbone_sha256": "f" * 64}, features / "meta.json")
    with pytest.raises(ValueError, match="is not the backbone that encoded"):
        loop._build(config, TEXT, "macvr", inputs, CPU1)
    narrow = dataclasses.replace(config, model=dataclasses.replace(config.model, temporal_heads=4))
    write_json({**meta, "backbone_sha256": file_sha256(data / "backbone.pt")}, features / "meta.json")
    with pytest.raises(ValueError, match="text heads 2 != temporal heads 4"):
        loop._build(narrow, TEXT, "macvr", inputs, CPU1)


def test_backbone_logit_scale_cached_mode_is_frozen_at_the_backbone_value(data, tmp_path):
    """``logit_scale: backbone`` with cached features: lambda is the backbone's, not trained."""
    features = _features_of(data, tmp_path / "features")
    backbone = load_backbone(data / "backbone.pt")
    with torch.no_grad():
        assert float(backbone.logit_scale) != pytest.approx(tiny_config().model.init_logit_scale)
    config = tiny_config(epochs=1, logit_scale="backbone", monitor_videos=0)
    inputs = TrainInputs(features=features, backbone=data / "backbone.pt")
    run = loop._build(config, TEXT, "macvr", inputs, CPU1)
    assert float(run.trainable.logit_scale.detach()) == pytest.approx(float(backbone.logit_scale.detach()))
    train(config, "macvr", inputs, tmp_path / "out", text=TEXT)
    head = TrainedModel.load(tmp_path / "out" / "model.pt").head
    assert float(head.logit_scale.detach()) == pytest.approx(float(backbone.logit_scale.detach()))


def test_backbone_logit_scale_finetune_mode_trains_the_backbone_one(data, tmp_path):
    config = tiny_config("dicosa", mode="finetune", epochs=1, batch_size=4, clip_lr=1e-2, monitor_videos=0,
                         logit_scale="backbone")
    run = loop._build(config, TEXT, "dicosa", _inputs(data), CPU1)
    assert run.trainable.logit_scale is run.trainable.backbone.logit_scale
    assert not run.trainable.head.logit_scale.requires_grad and run.trainable.backbone.logit_scale.requires_grad
    groups = {g["name"]: g for g in run.optimizer.param_groups}
    assert any(p is run.trainable.backbone.logit_scale for p in groups["backbone/no_decay"]["params"])
    before = float(load_backbone(data / "backbone.pt").logit_scale.detach())
    train(config, "dicosa", _inputs(data), tmp_path / "out", text=TEXT)
    model = TrainedModel.load(tmp_path / "out" / "model.pt")
    assert float(model.backbone.logit_scale.detach()) != pytest.approx(before, abs=1e-6)
    assert float(model.head.logit_scale.detach()) == pytest.approx(before)  # the head's copy stays put
