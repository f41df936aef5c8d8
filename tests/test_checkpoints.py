"""Checkpoint compatibility: version-1 files are upgraded on load, stored configs are read
leniently where that is safe (legacy values, defaults, unknown keys dropped) and strictly where
it is not (a weight-shaping key nobody can supply is refused by name)."""

from __future__ import annotations

import dataclasses
import logging
import math

import numpy as np
import pytest
import torch

from pipeline.backbone.clip_model import ClipModel
from pipeline.config import ConfigError, from_stored, to_dict
from pipeline.evaluation.trained import TrainedModel
from pipeline.model import MacVR, ModelConfig
from pipeline.train import checkpoint as ckpt
from tests.test_evaluate_common import tiny_arch
from tests.test_train_common import DIM, FRAMES, tiny_config, tiny_model

V1_MODEL = dict(variant="macvr", embed_dim=DIM, num_concepts=4, pool_temperature=3.0, pool_masking="before_softmax",
                temporal_layers=1, temporal_heads=2, max_frames=FRAMES, concept_projection="chunk",
                confidence_hidden_ratio=2, use_visual_tags=True, use_textual_tags=False,
                init_logit_scale=math.log(100))


def v1_config(**model) -> dict:
    """A TrainConfig as version 1 stored it: variant and tag switches in the model, max_words in
    the loss, the temporal init named after CLIP."""
    return dict(mode="cached", epochs=2, batch_size=8, lr=1e-3, clip_lr=1e-6, weight_decay=0.2,
                adam_betas=[0.9, 0.98], adam_eps=1e-6, warmup_fraction=0.1, grad_clip=1.0, seed=7, device="cpu",
                precision="fp32", torch_threads=0, num_workers=0, checkpoint_every=1, tags_per_item=2, log_every=2,
                monitor_videos=16, init_temporal_from_clip=False, model={**V1_MODEL, **model},
                loss=dict(alpha=0.01, beta=0.005, max_words=24, alpha_align=1.0))


def head_of(config: ModelConfig, seed: int = 0) -> MacVR:
    torch.manual_seed(seed)
    head = MacVR(config)
    with torch.no_grad():
        for p in head.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return head.eval()


def save_v1(path, head: MacVR, clip: dict | None = None, **model) -> None:
    torch.save({"format": "macvr-train", "version": 1, "kind": "model", "variant": "macvr", "config": v1_config(**model),
                "epoch": 2, "global_step": 16, "world_size": 1, "fingerprint": "x",
                "model": ckpt.cpu_state_dict(head), "clip": clip, "metrics": {"epoch/total": 1.0}}, path)


def inputs(seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(3, FRAMES, dtype=torch.bool)
    mask[0, -1] = False
    return (torch.randn(2, DIM, generator=g), torch.randn(3, FRAMES, DIM, generator=g), mask,
            torch.randn(3, DIM, generator=g), torch.randn(2, DIM, generator=g))


def test_version_1_files_load_with_their_meaning(tmp_path):
    # What the version-1 head was: visual tags only, CLIP's LayerNorm epsilon (1e-5).
    legacy = dataclasses.replace(tiny_model("macvr_no_tt"), temporal_ln_eps=1e-5)
    head = head_of(legacy)
    save_v1(tmp_path / "model.pt", head)
    data = ckpt.load(tmp_path / "model.pt")
    assert data["version"] == 2 and data["backbone"] is None and "config" not in data and "clip" not in data
    assert data["model_config"]["tags"] == ["visual"] and "variant" not in data["model_config"]
    assert data["run"]["train"]["init_temporal_from_backbone"] is False and data["run"]["train"]["logit_scale"] == "head"
    assert data["run"]["text"] == {"max_words": 24} and data["run"]["padding"] == "zero"
    model = TrainedModel.load(tmp_path / "model.pt")
    assert model.config == legacy  # temporal_ln_eps from the legacy table, the rest from the file
    assert model.head.temporal.resblocks[0].ln_1.eps == 1e-5
    assert (model.variant, model.max_words, model.padding, model.train_mode) == ("macvr", 24, "zero", "cached")
    for key, value in head.state_dict().items():
        assert torch.equal(model.head.state_dict()[key], value), key
    with torch.no_grad():
        torch.testing.assert_close(model.head.similarity(*inputs()), head.similarity(*inputs()))
    # dicosa's switches (both off) become no tags
    save_v1(tmp_path / "dicosa.pt", head_of(dataclasses.replace(tiny_model("dicosa"), temporal_ln_eps=1e-5)),
            variant="dicosa", use_visual_tags=False)
    assert TrainedModel.load(tmp_path / "dicosa.pt").config.tags == ()


def test_version_1_finetune_files_bring_their_clip(tmp_path):
    torch.manual_seed(2)
    clip = tiny_arch().build().eval()
    head = head_of(dataclasses.replace(tiny_model("macvr_no_tt"), temporal_ln_eps=1e-5))
    save_v1(tmp_path / "model.pt", head, clip={"arch": tiny_arch().to_dict(),
                                               "state_dict": {k: v.clone() for k, v in clip.state_dict().items()}})
    model = TrainedModel.load(tmp_path / "model.pt")
    assert model.finetuned and isinstance(model.backbone, ClipModel) and model.backbone.kind == "clip"
    for key, value in clip.state_dict().items():
        assert torch.equal(model.backbone.model.state_dict()[key], value), key


def test_a_missing_key_takes_its_legacy_value_or_default(tmp_path):
    """A version-2 file written before temporal_ln_eps existed, whose run record lacks newer train
    keys: it loads, with the value that reproduces how it was made."""
    head = head_of(dataclasses.replace(tiny_model(), temporal_ln_eps=1e-5))
    stored = to_dict(head.config)
    del stored["temporal_ln_eps"]
    train = to_dict(tiny_config())
    for key in ("logit_scale", "init_temporal_from_backbone"):  # newer train knobs: not needed to rebuild
        del train[key]
    ckpt.save({"kind": "model", "variant": "macvr", "model_config": stored,
               "run": {"train": train, "text": {"max_words": 32}, "padding": "zero", "features": {}},
               "epoch": 1, "global_step": 1, "world_size": 1, "fingerprint": "x", "model": ckpt.cpu_state_dict(head),
               "backbone": None, "metrics": {}}, tmp_path / "model.pt")
    model = TrainedModel.load(tmp_path / "model.pt")
    assert model.config.temporal_ln_eps == 1e-5 and model.config == head.config
    assert model.train_mode == "cached" and "logit_scale" not in model.run["train"]


def test_a_missing_weight_shaping_key_is_refused_by_name(tmp_path):
    head = head_of(tiny_model())
    stored = to_dict(head.config)
    del stored["num_concepts"]
    ckpt.save({"kind": "model", "variant": "macvr", "model_config": stored, "run": {}, "epoch": 1, "global_step": 1,
               "world_size": 1, "fingerprint": "x", "model": ckpt.cpu_state_dict(head), "backbone": None,
               "metrics": {}}, tmp_path / "model.pt")
    with pytest.raises(ckpt.CheckpointError, match="lacks 'num_concepts' .*which has no default"):
        TrainedModel.load(tmp_path / "model.pt")


def test_unknown_stored_keys_are_dropped_and_listed(tmp_path, caplog):
    head = head_of(tiny_model())
    stored = {**to_dict(head.config), "dropout": 0.1}  # written by a newer version of this code
    ckpt.save({"kind": "model", "variant": "macvr", "model_config": stored, "run": {}, "epoch": 1, "global_step": 1,
               "world_size": 1, "fingerprint": "x", "model": ckpt.cpu_state_dict(head), "backbone": None,
               "metrics": {}}, tmp_path / "model.pt")
    with caplog.at_level(logging.INFO, logger="pipeline.train.checkpoint"):
        model = TrainedModel.load(tmp_path / "model.pt")
    assert model.config == head.config and "model_config.dropout" in caplog.text
    # stored values are still checked like params.yaml values
    ckpt.save({"kind": "model", "variant": "macvr", "model_config": {**stored, "num_concepts": 5}, "run": {},
               "epoch": 1, "global_step": 1, "world_size": 1, "fingerprint": "x", "model": ckpt.cpu_state_dict(head),
               "backbone": None, "metrics": {}}, tmp_path / "bad.pt")
    with pytest.raises(ckpt.CheckpointError, match="divisible by num_concepts"):
        TrainedModel.load(tmp_path / "bad.pt")


def test_weights_that_do_not_fit_the_stored_config_are_refused(tmp_path):
    head = head_of(tiny_model())
    stored = {**to_dict(head.config), "temporal_layers": 2}
    ckpt.save({"kind": "model", "variant": "macvr", "model_config": stored, "run": {}, "epoch": 1, "global_step": 1,
               "world_size": 1, "fingerprint": "x", "model": ckpt.cpu_state_dict(head), "backbone": None,
               "metrics": {}}, tmp_path / "model.pt")
    with pytest.raises(ckpt.CheckpointError, match="weights do not fit the stored model config"):
        TrainedModel.load(tmp_path / "model.pt")


def test_other_versions_and_kinds_are_refused(tmp_path):
    torch.save({"format": "macvr-train", "version": 3}, tmp_path / "future.pt")
    with pytest.raises(ckpt.CheckpointError, match="checkpoint version 3"):
        ckpt.load(tmp_path / "future.pt")
    with pytest.raises(ValueError, match="checkpoint kind"):
        ckpt.save({"kind": "weights"}, tmp_path / "x.pt")


# --- from_stored on its own ------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Inner:
    width: int
    eps: float
    mode: str = "fast"


@dataclasses.dataclass(frozen=True)
class Outer:
    name: str
    inner: Inner
    retries: int = 3


def test_from_stored_fills_legacy_values_and_defaults_and_drops_unknown_keys():
    dropped: list[str] = []
    got = from_stored(Outer, {"name": "a", "inner": {"width": 4, "colour": "red"}, "old": 1}, "ckpt: cfg",
                      legacy={"inner.eps": 1e-5}, dropped=dropped)
    assert got == Outer(name="a", inner=Inner(width=4, eps=1e-5, mode="fast"), retries=3)
    assert sorted(dropped) == ["ckpt: cfg.inner.colour", "ckpt: cfg.old"]
    # a stored value wins over the legacy one; the nested legacy key only reaches its own field
    assert from_stored(Outer, {"name": "a", "inner": {"width": 4, "eps": 0.5}}, "c", legacy={"inner.eps": 1e-5,
                                                                                             "eps": 9.0}).inner.eps == 0.5
    with pytest.raises(ConfigError, match="lacks 'eps' .*no default"):
        from_stored(Outer, {"name": "a", "inner": {"width": 4}}, "ckpt: cfg")
    with pytest.raises(ConfigError, match="expected an integer"):
        from_stored(Outer, {"name": "a", "inner": {"width": "four", "eps": 1.0}}, "ckpt: cfg")
    assert np.isclose(from_stored(Inner, {"width": 2, "eps": 1}, "c").eps, 1.0)
