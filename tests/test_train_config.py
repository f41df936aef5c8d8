"""TrainConfig: strict loading from params.yaml, validation messages, the variant override."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from pipeline.config import ConfigError, load_section
from pipeline.losses import LossParams
from pipeline.train.config import TrainConfig
from pipeline.train.variants import VARIANTS, load_variant, resolve_train
from tests.test_train_common import tiny_config, tiny_params, train_section


def _params(tmp_path, section: dict, variants: dict | None = None):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"train": section, "variants": variants or {"macvr": {}}}))
    return path


def test_round_trip_through_params_yaml(tmp_path):
    loaded = load_variant(_params(tmp_path, train_section()), "macvr", TrainConfig)
    assert loaded == tiny_config()
    assert loaded.adam_betas == (0.9, 0.98)
    assert loaded.model == tiny_params(("visual", "textual")) and loaded.loss == LossParams(0.01, 0.005, 1.0)
    assert loaded.uses_tags and not tiny_config("dicosa").uses_tags


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
    ("logit_scale", "clip", "not one of"),
    ("init_temporal_from_backbone", "yes", "expected true/false"),
])
def test_bad_values_are_refused_with_the_key(tmp_path, key, value, message):
    section = train_section(**{key: value})
    with pytest.raises(ConfigError, match=message) as err:
        load_variant(_params(tmp_path, section), "macvr", TrainConfig)
    assert key in str(err.value)


def test_unknown_and_missing_keys_are_refused(tmp_path):
    section = train_section(learning_rate=1e-4)
    with pytest.raises(ConfigError, match="unknown key 'learning_rate'"):
        load_variant(_params(tmp_path, section), "macvr", TrainConfig)
    section = train_section()
    del section["loss"]["beta"]
    with pytest.raises(ConfigError, match="missing key 'beta'"):
        load_variant(_params(tmp_path, section), "macvr", TrainConfig)
    section = train_section()
    del section["model"]["temporal_ln_eps"]
    with pytest.raises(ConfigError, match="train \+ variants.macvr.model: missing key 'temporal_ln_eps'"):
        load_variant(_params(tmp_path, section), "macvr", TrainConfig)
    old = train_section(init_temporal_from_clip=False)  # renamed: init_temporal_from_backbone
    with pytest.raises(ConfigError, match="unknown key 'init_temporal_from_clip'"):
        load_variant(_params(tmp_path, old), "macvr", TrainConfig)


def test_variants_set_the_tag_slots_and_keep_the_shared_knobs():
    macvr, dicosa = tiny_config("macvr"), tiny_config("dicosa")
    assert dicosa.model.tags == () and not dicosa.model.use_visual_tags and not dicosa.model.use_textual_tags
    assert macvr.model.use_visual_tags and macvr.model.use_textual_tags
    assert dicosa.lr == macvr.lr and dicosa.loss.alpha == macvr.loss.alpha and dicosa.epochs == macvr.epochs
    assert dataclasses.replace(macvr.model, tags=()) == dicosa.model  # only the variant's keys differ
    assert set(VARIANTS.names()) >= {"dicosa", "macvr", "macvr_no_vt", "macvr_no_tt", "macvr_no_la"}
    with pytest.raises(ConfigError, match="'clip4clip' is not a registered variant"):
        resolve_train(train_section(), "clip4clip", {}, TrainConfig)
