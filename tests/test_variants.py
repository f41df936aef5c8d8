"""Model variants: the registry, and how a variant's TrainConfig is resolved from the train
section, the registered overrides and params.yaml's ``variants`` entry."""

from __future__ import annotations

import pytest
import yaml

from pipeline.config import ConfigError
from pipeline.registry import RegistryError
from pipeline.train.config import TrainConfig
from pipeline.train.variants import (VARIANT_KEYS, VARIANTS, Variant, deep_merge, load_variant, params_variants,
                                     resolve_train, variant_overrides)
from tests.test_train_common import train_section

# The paper's models and Tab. 4 ablations: (tags the confidence MLP sees, alignment-loss weight).
EXPECTED = {
    "dicosa": ((), 0.0),
    "macvr": (("visual", "textual"), 1.0),
    "macvr_no_vt": (("textual",), 1.0),
    "macvr_no_tt": (("visual",), 1.0),
    "macvr_no_la": (("visual", "textual"), 0.0),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_registered_variant_gets_its_tags_and_alignment_weight(name):
    config = resolve_train(train_section(), name, {}, TrainConfig)
    tags, alpha_align = EXPECTED[name]
    assert config.model.tags == tags and config.loss.alpha_align == alpha_align
    assert config.model.use_visual_tags == ("visual" in tags) and config.model.use_textual_tags == ("textual" in tags)
    assert config.uses_tags == bool(tags)
    assert VARIANTS.get(name).description


def test_the_registry_lists_the_paper_variants_in_order():
    assert VARIANTS.names()[:5] == ("dicosa", "macvr", "macvr_no_vt", "macvr_no_tt", "macvr_no_la")
    with pytest.raises(RegistryError, match="unknown model variant 'clip4clip'; registered: dicosa, macvr, "
                                            "macvr_no_vt, macvr_no_tt, macvr_no_la"):
        VARIANTS.get("clip4clip")
    with pytest.raises(RegistryError, match="already registered"):
        VARIANTS.register("macvr", Variant("macvr", "again"))


@pytest.mark.parametrize("key", VARIANT_KEYS)
def test_variant_only_keys_are_refused_in_the_train_section(key):
    section = train_section()
    parent, leaf = key.split(".")
    section[parent] = {**section[parent], leaf: ["visual"] if leaf == "tags" else 0.5}
    with pytest.raises(ConfigError, match=f"train.{key} is set per variant"):
        resolve_train(section, "macvr", {}, TrainConfig)


def test_params_overrides_apply_on_top_of_the_registered_ones():
    config = resolve_train(train_section(), "macvr", {"lr": 5e-4, "model": {"num_concepts": 8},
                                                      "loss": {"alpha_align": 0.5}}, TrainConfig)
    assert config.lr == 5e-4 and config.model.num_concepts == 8 and config.loss.alpha_align == 0.5
    assert config.model.tags == ("visual", "textual")  # the registered override is kept
    assert config.model.pool_temperature == train_section()["model"]["pool_temperature"]  # siblings are merged
    # an entry may even change the tags of a registered variant
    assert resolve_train(train_section(), "dicosa", {"model": {"tags": ["visual"]}}, TrainConfig).model.tags == \
        ("visual",)


def test_a_new_name_needs_a_registered_base():
    config = resolve_train(train_section(), "macvr_a05", {"base": "macvr", "loss": {"alpha_align": 0.5}}, TrainConfig)
    assert config.model.tags == ("visual", "textual") and config.loss.alpha_align == 0.5
    with pytest.raises(ConfigError, match="'macvr_a05' is not a registered variant .*give it a 'base'"):
        resolve_train(train_section(), "macvr_a05", {"loss": {"alpha_align": 0.5}}, TrainConfig)
    with pytest.raises(ConfigError, match="variants.x.base: unknown model variant 'nope'; registered: dicosa"):
        resolve_train(train_section(), "x", {"base": "nope"}, TrainConfig)
    with pytest.raises(ConfigError, match="unknown key 'learning_rate'"):
        resolve_train(train_section(), "macvr", {"learning_rate": 1.0}, TrainConfig)
    for bad in (["lr", 1.0], "lr=1"):  # an entry must be a mapping (or empty)
        with pytest.raises(ConfigError, match="variants.macvr: expected a mapping of train overrides"):
            resolve_train(train_section(), "macvr", bad, TrainConfig)


def test_a_variant_that_leaves_a_variant_key_unset_is_refused():
    with VARIANTS.temporarily("half", Variant("half", "sets only the tags", {"model": {"tags": ["visual"]}})):
        with pytest.raises(ConfigError, match="variants.half does not set loss.alpha_align"):
            resolve_train(train_section(), "half", {}, TrainConfig)
        config = resolve_train(train_section(), "half", {"loss": {"alpha_align": 0.3}}, TrainConfig)
        assert config.model.tags == ("visual",) and config.loss.alpha_align == 0.3
    assert "half" not in VARIANTS


def test_deep_merge_merges_mappings_and_replaces_the_rest():
    base = {"a": {"b": 1, "c": [1, 2]}, "d": 1}
    out = deep_merge(base, {"a": {"c": [3]}, "e": {"f": 1}})
    assert out == {"a": {"b": 1, "c": [3]}, "d": 1, "e": {"f": 1}}
    assert base == {"a": {"b": 1, "c": [1, 2]}, "d": 1}  # inputs untouched
    assert variant_overrides("macvr", {"lr": 1.0}, "w") == {"model": {"tags": ["visual", "textual"]},
                                                           "loss": {"alpha_align": 1.0}, "lr": 1.0}


def test_load_variant_and_params_variants_read_a_params_file(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"train": train_section(), "variants": {
        "dicosa": {}, "macvr": None, "macvr_a0": {"base": "macvr", "loss": {"alpha_align": 0.0}}}}))
    assert params_variants(path) == ["dicosa", "macvr", "macvr_a0"]
    assert load_variant(path, "macvr", TrainConfig).model.tags == ("visual", "textual")  # null entry = {}
    assert load_variant(path, "macvr_a0", TrainConfig).loss.alpha_align == 0.0
    # a registered variant absent from params.yaml still resolves (no extra overrides)
    assert load_variant(path, "macvr_no_vt", TrainConfig).model.tags == ("textual",)
    with pytest.raises(ConfigError, match="variant 'x' is neither in params.yaml's variants \\(dicosa, macvr, "
                                          "macvr_a0\\) nor registered"):
        load_variant(path, "x", TrainConfig)
    path.write_text(yaml.safe_dump({"train": train_section(), "variants": {}}))
    with pytest.raises(ConfigError, match="variants must be a non-empty mapping"):
        params_variants(path)
    path.write_text(yaml.safe_dump({"variants": {"macvr": {}}}))
    with pytest.raises(ConfigError, match="missing section 'train'"):
        load_variant(path, "macvr", TrainConfig)
