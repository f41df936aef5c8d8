"""TrainConfig: strict loading from params.yaml, validation messages, the variant override."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from pipeline.config import ConfigError, load_section, to_dict
from pipeline.train.config import TrainConfig
from tests.test_train_common import tiny_config


def _params(tmp_path, section: dict):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"train": section}))
    return path


def _section() -> dict:
    section = to_dict(tiny_config())
    section["adam_betas"] = list(section["adam_betas"])
    return section


def test_round_trip_through_params_yaml(tmp_path):
    loaded = load_section(TrainConfig, "train", _params(tmp_path, _section()))
    assert loaded == tiny_config()
    assert loaded.adam_betas == (0.9, 0.98)


@pytest.mark.parametrize("key,value,message", [
    ("mode", "scratch", "not one of"),
    ("epochs", 0, "epochs must be >= 1"),
    ("batch_size", 1, "contrastive batch"),
    ("lr", 0.0, "lr must be a positive number"),
    ("warmup_fraction", 1.0, "warmup_fraction"),
    ("adam_betas", [0.9, 1.0], "adam_betas"),
    ("grad_clip", 0, "grad_clip"),
    ("monitor_videos", 1, "monitor_videos"),
    ("precision", "fp16", "not one of"),
    ("device", "tpu", "not one of"),
])
def test_bad_values_are_refused_with_the_key(tmp_path, key, value, message):
    section = _section()
    section[key] = value
    with pytest.raises(ConfigError, match=message):
        load_section(TrainConfig, "train", _params(tmp_path, section))


def test_unknown_and_missing_keys_are_refused(tmp_path):
    section = _section()
    section["learning_rate"] = 1e-4
    with pytest.raises(ConfigError, match="unknown key 'learning_rate'"):
        load_section(TrainConfig, "train", _params(tmp_path, section))
    section = _section()
    del section["loss"]["alpha_align"]
    with pytest.raises(ConfigError, match="missing key 'alpha_align'"):
        load_section(TrainConfig, "train", _params(tmp_path, section))


def test_variant_override_sets_the_tag_slots():
    macvr = tiny_config()
    dicosa = macvr.with_variant("dicosa")
    assert dicosa.model.variant == "dicosa"
    assert not dicosa.model.use_visual_tags and not dicosa.model.use_textual_tags
    back = dicosa.with_variant("macvr")  # a dicosa section still trains macvr with both tag kinds
    assert back.model.use_visual_tags and back.model.use_textual_tags
    visual_only = dataclasses.replace(macvr, model=dataclasses.replace(macvr.model, use_textual_tags=False))
    assert visual_only.with_variant("macvr").model.use_textual_tags is False  # ablations are kept
    assert dicosa.lr == macvr.lr and dicosa.loss == macvr.loss
    with pytest.raises(ValueError, match="dicosa or macvr"):
        macvr.with_variant("clip4clip")
