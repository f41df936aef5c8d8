"""Strict typed config loading: every error names the key and the file."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

import pytest
import yaml

from pipeline.config import ConfigError, from_mapping, leaf_keys, load_section


@dataclass(frozen=True)
class Inner:
    size: int
    ratio: float


@dataclass(frozen=True)
class Outer:
    name: str
    mode: Literal["a", "b"]
    flag: bool
    inner: Inner
    sizes: tuple[int, ...]
    maybe: Optional[str]

    def __post_init__(self) -> None:
        if self.inner.size <= 0:
            raise ValueError("inner.size must be positive")


GOOD = {"name": "x", "mode": "a", "flag": True, "inner": {"size": 3, "ratio": 1},
        "sizes": [1, 2], "maybe": None}


def write(tmp_path, data):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_loads_and_coerces(tmp_path):
    cfg = load_section(Outer, "stage", write(tmp_path, {"stage": GOOD}))
    assert cfg == Outer("x", "a", True, Inner(3, 1.0), (1, 2), None)
    assert isinstance(cfg.inner.ratio, float) and isinstance(cfg.sizes, tuple)


def test_unknown_key_names_key_and_file(tmp_path):
    path = write(tmp_path, {"stage": {**GOOD, "typo_key": 1}})
    with pytest.raises(ConfigError, match=r"params\.yaml: stage: unknown key 'typo_key'"):
        load_section(Outer, "stage", path)


def test_missing_nested_key(tmp_path):
    path = write(tmp_path, {"stage": {**GOOD, "inner": {"size": 3}}})
    with pytest.raises(ConfigError, match=r"params\.yaml: stage\.inner: missing key 'ratio'"):
        load_section(Outer, "stage", path)


def test_missing_section_and_file(tmp_path):
    with pytest.raises(ConfigError, match="missing section 'stage'"):
        load_section(Outer, "stage", write(tmp_path, {"other": {}}))
    with pytest.raises(ConfigError, match="not found"):
        load_section(Outer, "stage", tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    "key,value,message",
    [
        ("mode", "c", r"stage\.mode: 'c' is not one of \['a', 'b'\]"),
        ("flag", 1, r"stage\.flag: expected true/false"),
        ("name", 3, r"stage\.name: expected a string"),
        ("sizes", [1, "two"], r"stage\.sizes\[1\]: expected an integer"),
        ("inner", {"size": True, "ratio": 1.0}, r"stage\.inner\.size: expected an integer"),
        ("inner", {"size": -1, "ratio": 1.0}, r"stage: inner\.size must be positive"),
    ],
)
def test_type_errors(key, value, message):
    with pytest.raises(ConfigError, match=message):
        from_mapping(Outer, {**GOOD, key: value}, where="params.yaml: stage")


def test_leaf_keys():
    assert leaf_keys(Outer, "stage.") == [
        "stage.name", "stage.mode", "stage.flag", "stage.inner.size", "stage.inner.ratio",
        "stage.sizes", "stage.maybe",
    ]


# --- registry_field: {registered name: its params} ----------------------------------------------

@dataclass(frozen=True)
class Knobs:
    level: int = 1


class _Entry:
    def __init__(self, params_type: type) -> None:
        self.params_type = params_type


def test_registry_field_validates_names_and_params_through_the_registry():
    from pipeline.config import registry_field
    from pipeline.registry import Registry

    reg: Registry = Registry("gadget", "somewhere")
    reg.register("plain", _Entry(Knobs))

    @dataclass(frozen=True)
    class Holder:
        gadgets: dict = registry_field(lambda: reg)

    got = from_mapping(Holder, {"gadgets": {"plain": None}}, "params.yaml: holder")
    assert got.gadgets == {"plain": Knobs()}  # null is {}
    with pytest.raises(ConfigError, match="holder.gadgets: unknown gadget 'fancy'; registered: plain"):
        from_mapping(Holder, {"gadgets": {"fancy": {}}}, "params.yaml: holder")
    # an entry registered after the config class was defined counts (looked up at load time)
    with reg.temporarily("fancy", _Entry(Knobs)):
        got = from_mapping(Holder, {"gadgets": {"fancy": {"level": 3}, "plain": {}}}, "params.yaml: holder")
        assert list(got.gadgets) == ["fancy", "plain"] and got.gadgets["fancy"] == Knobs(3)  # params order
    with pytest.raises(ConfigError, match="holder.gadgets.plain: unknown key 'volume'"):
        from_mapping(Holder, {"gadgets": {"plain": {"volume": 11}}}, "params.yaml: holder")
    with pytest.raises(ConfigError, match="holder.gadgets.plain.level: expected an integer"):
        from_mapping(Holder, {"gadgets": {"plain": {"level": "high"}}}, "params.yaml: holder")
    with pytest.raises(ConfigError, match="expected a mapping of gadget names"):
        from_mapping(Holder, {"gadgets": ["plain"]}, "params.yaml: holder")
    assert leaf_keys(Holder) == ["gadgets"]  # one params key for the whole mapping
