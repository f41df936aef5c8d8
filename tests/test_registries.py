"""The registries: a strategy and a variant added at run time only (no file edited) go through
training, evaluation and its outputs like the built-ins; unknown names list the registered ones."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from pipeline.backbone import FAMILIES
from pipeline.config import ConfigError, from_mapping
from pipeline.data.datasets import DATASETS
from pipeline.evaluation import EvaluateConfig, evaluate
from pipeline.evaluation.trained import TrainedModel
from pipeline.registry import Registry, RegistryError, choices_help
from pipeline.retrieval import STRATEGIES, RetrievalConfig, evaluate_all, rank_all
from pipeline.retrieval.strategies import NoParams, Rescored, Strategy
from pipeline.text import TextConfig
from pipeline.train.config import TrainConfig
from pipeline.train.loop import TrainInputs, train
from pipeline.train.variants import VARIANTS, Variant, resolve_train
from tests.test_evaluate_common import MAX_WORDS, eval_params, make_project
from tests.test_train_common import train_section


# --- the registry itself ---------------------------------------------------------------------

def test_registry_basics_and_errors():
    reg: Registry[str] = Registry("colour", "somewhere/colours.py")
    reg.register("red", "warm")

    @reg.register("blue")
    class Blue:  # the decorator form returns its target
        description = "cold"

    assert reg.names() == ("red", "blue") and list(reg) == ["red", "blue"] and len(reg) == 2
    assert "red" in reg and "green" not in reg and reg.get("blue") is Blue
    with pytest.raises(RegistryError, match="unknown colour 'green'; registered: red, blue \\(add one in "
                                            "somewhere/colours.py\\)") as err:
        reg.get("green")
    assert isinstance(err.value, KeyError) and isinstance(err.value, ValueError)
    with pytest.raises(RegistryError, match="colour 'red' is already registered"):
        reg.register("red", "again")
    with pytest.raises(ValueError, match="non-empty strings"):
        reg.register("", "x")
    reg.register("red", "hot", replace=True)
    assert reg.get("red") == "hot"
    assert choices_help(reg, describe=lambda e: "a class" if isinstance(e, type) else str(e)) == \
        "red (hot), blue (a class)"


def test_temporarily_restores_what_was_there():
    reg: Registry[str] = Registry("colour", "x")
    reg.register("red", "warm")
    with reg.temporarily("red", "hot"):
        assert reg.get("red") == "hot"
    assert reg.get("red") == "warm"
    with pytest.raises(RuntimeError):
        with reg.temporarily("green", "fresh"):
            assert reg.names() == ("red", "green")
            raise RuntimeError("the block failed")
    assert "green" not in reg


@pytest.mark.parametrize("registry, kind, names", [
    (STRATEGIES, "inference strategy", "none, dsl, qb"),
    (VARIANTS, "model variant", "dicosa, macvr, macvr_no_vt, macvr_no_tt, macvr_no_la"),
    (DATASETS, "dataset", "synthetic, msrvtt, didemo, activitynet"),
    (FAMILIES, "backbone kind", "tiny, clip, open_clip"),
])
def test_unknown_names_list_the_registered_ones(registry, kind, names):
    with pytest.raises(RegistryError, match=f"unknown {kind} 'nope'; registered: {names} "):
        registry.get("nope")


# --- a toy strategy and a toy variant, end to end ---------------------------------------------

@dataclass(frozen=True)
class BiasParams:
    bonus: float

    def __post_init__(self) -> None:
        if self.bonus < 0:
            raise ValueError(f"bonus must be >= 0, got {self.bonus}")


class FirstItemBias(Strategy):
    """Adds ``bonus`` to the first gallery item's score (a toy with a predictable effect)."""

    name, label, description = "first_bias", "first+", "favours gallery item 0 (a toy)"
    params_type = BiasParams

    @classmethod
    def reference(cls) -> BiasParams:
        return BiasParams(bonus=1.0)

    def apply(self, sim, direction, params, querybank=None) -> Rescored:
        out = np.array(sim, dtype=np.float64, copy=True)
        out[:, 0] += params.bonus
        return Rescored(out, {"bonus": params.bonus, "direction": direction})


TOY = Variant("toy_visual", "visual tags only, a quarter of the alignment loss (a toy)",
              {"model": {"tags": ["visual"]}, "loss": {"alpha_align": 0.25}})


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return make_project(tmp_path_factory.mktemp("registries"))


def test_a_runtime_strategy_and_variant_go_through_training_and_evaluation(project, tmp_path):
    root = tmp_path
    with VARIANTS.temporarily(TOY.name, TOY), STRATEGIES.temporarily(FirstItemBias.name, FirstItemBias()):
        # the toy variant: resolved like a built-in, trained, checkpointed
        config = resolve_train(train_section(epochs=1, batch_size=4, monitor_videos=0), TOY.name, {}, TrainConfig)
        assert config.model.tags == ("visual",) and config.loss.alpha_align == 0.25
        train(config, TOY.name, TrainInputs(features=project["features"]), root / "models" / TOY.name,
              text=TextConfig(MAX_WORDS))
        model = TrainedModel.load(root / "models" / TOY.name / "model.pt")
        assert model.variant == TOY.name and model.config.tags == ("visual",)

        # the toy strategy: named in the evaluate section with its knobs, loaded through the registry
        section = eval_params()
        section["retrieval"]["strategies"] = {"none": {}, "first_bias": {"bonus": 1000.0}}
        eval_config = from_mapping(EvaluateConfig, section, "params.yaml: evaluate")
        assert eval_config.retrieval.strategies["first_bias"] == BiasParams(1000.0)
        with pytest.raises(ConfigError, match="first_bias: bonus must be >= 0"):
            from_mapping(EvaluateConfig, {**section, "retrieval": {"ties": "optimistic", "strategies": {
                "first_bias": {"bonus": -1.0}}}}, "params.yaml: evaluate")
        out = root / "eval" / TOY.name
        evaluate(eval_config, TOY.name, root / "models" / TOY.name / "model.pt", project["features"], out,
                 root / "metrics.json", root / "plots")

        metrics = json.loads((out / "metrics.json").read_text())["metrics"]
        sim = np.load(out / "similarity.npy")
        caption_video = np.load(out / "caption_video.npy")
        expected = evaluate_all(sim, caption_video, config=eval_config.retrieval)
        for direction in ("t2v", "v2t"):
            assert set(metrics[direction]) == {"none", "first_bias"}
            for strategy, leaf in expected[direction].items():
                assert {k: metrics[direction][strategy][k] for k in leaf} == pytest.approx(leaf)
            assert metrics[direction]["first_bias"]["first_bias_bonus"] == 1000.0
            assert metrics[direction]["first_bias"]["first_bias_direction"] == direction
        # the bonus puts gallery item 0 first for every query: t2v R@1 is the share of its captions
        assert metrics["t2v"]["first_bias"]["R1"] == pytest.approx(100 * np.mean(caption_video == 0))
        ranks = pd.read_parquet(out / "ranks_t2v.parquet")
        assert list(ranks.columns)[-2:] == ["none", "first_bias"]
        assert set(pd.read_parquet(out / "top_t2v.parquet")["strategy"]) == {"none", "first_bias"}
        top = pd.read_parquet(out / "top_t2v.parquet")
        first_video = pd.read_parquet(out / "videos.parquet")["video_id"].iloc[0]
        assert (top[(top["strategy"] == "first_bias") & (top["position"] == 1)]["video_id"] == first_video).all()
        assert list(pd.read_csv(root / "plots" / "recall_t2v.csv").columns) == ["K", "none", "first_bias"]
        ranked = rank_all(sim, caption_video, config=RetrievalConfig(ties="optimistic", strategies={
            "first_bias": FirstItemBias.reference()}))
        assert ranked.info["t2v"]["first_bias"] == {"bonus": 1.0, "direction": "t2v"}

    # gone again: nothing else knows about them
    assert FirstItemBias.name not in STRATEGIES and TOY.name not in VARIANTS
    with pytest.raises(ConfigError, match="unknown inference strategy 'first_bias'; registered: none, dsl, qb"):
        from_mapping(EvaluateConfig, section, "params.yaml: evaluate")
    with pytest.raises(ConfigError, match="'toy_visual' is not a registered variant"):
        resolve_train(train_section(), TOY.name, {}, TrainConfig)
    # the checkpoint itself does not need the registry: it stores the resolved config
    assert TrainedModel.load(root / "models" / TOY.name / "model.pt").config.tags == ("visual",)


def test_a_strategy_params_type_is_enforced():
    with STRATEGIES.temporarily(FirstItemBias.name, FirstItemBias()):
        with pytest.raises(ValueError, match="strategies.first_bias: expected BiasParams, got NoParams"):
            RetrievalConfig(ties="optimistic", strategies={"first_bias": NoParams()})
    with pytest.raises(ValueError, match="at least one registered strategy"):
        RetrievalConfig(ties="optimistic", strategies={})
