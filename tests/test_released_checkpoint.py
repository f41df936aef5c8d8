"""Official MAC-VR / DiCoSA checkpoints: every key placed, every misfit refused by name."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from pipeline.evaluation.trained import TrainedModel
from pipeline.released.checkpoint import ReleasedCheckpointError, import_checkpoint, import_state, read_state_dict
from pipeline.train.config import TrainConfig
from pipeline.train.variants import load_variant
from tests.released_fixtures import SMALL, official_state_dict

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "params.reference.yaml"


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)


def variant(name: str) -> TrainConfig:
    return load_variant(REFERENCE, name, TrainConfig)


def test_every_key_lands_where_the_official_model_reads_it(tmp_path):
    state = official_state_dict("macvr", SMALL, seed=3, clip_dtype=torch.float16, module_prefix=True)
    path = tmp_path / "pytorch_model.bin"
    torch.save(state, path)
    info: dict = {}
    read = read_state_dict(path, info)
    assert info["module_prefix"] and info["dtypes"]["float16"] > 0 and all(v.dtype == torch.float32
                                                                           for v in read.values())
    config, head, backbone = import_state(read, ("visual", "textual"), variant("macvr").model, "x")
    assert (config.num_concepts, config.temporal_layers, config.temporal_heads, config.max_frames,
            config.embed_dim, config.confidence_hidden_ratio) == (8, 2, 1, 77, 64, 2)
    assert config.pool_temperature == 3.0 and config.pool_masking == "after_softmax"  # the profile's knobs
    src = {k.removeprefix("module."): v.float() for k, v in state.items()}
    assert torch.equal(head["confidence.fc1.weight"], src["weight_fc.0.weight"])
    assert torch.equal(head["confidence.fc2.bias"], src["weight_fc.2.bias"])
    assert torch.equal(head["temporal.position_embedding.weight"], src["frame_position_embeddings.weight"])
    assert torch.equal(head["temporal.resblocks.1.mlp.c_proj.weight"], src["transformerClip.resblocks.1.mlp.c_proj.weight"])
    assert torch.equal(head["logit_scale"], src["clip.logit_scale"])
    clip_keys = {k[5:] for k in src if k.startswith("clip.")}
    assert set(backbone["state_dict"]) == clip_keys
    assert all(torch.equal(backbone["state_dict"][k], src["clip." + k]) for k in clip_keys)
    assert backbone["kind"] == "clip" and backbone["arch"]["vision_patch_size"] == 16


def test_missing_and_unknown_keys_are_refused_by_name(tmp_path):
    state = {k: v.float() for k, v in official_state_dict("macvr", SMALL).items()}
    model = variant("macvr").model
    broken = dict(state)
    del broken["transformerClip.resblocks.1.ln_2.bias"], broken["clip.visual.proj"]
    broken["lstm_visual.weight_ih_l0"] = torch.zeros(2)
    broken["clip.visual.extra"] = torch.zeros(2)
    with pytest.raises(ReleasedCheckpointError) as err:
        import_state(broken, ("visual", "textual"), model, "ckpt.bin")
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("ckpt.bin: does not fit the official MAC-VR model class")
    for key in ("transformerClip.resblocks.1.ln_2.bias", "clip.visual.proj", "lstm_visual.weight_ih_l0",
                "clip.visual.extra"):
        assert key in msg
    gap = {k: v for k, v in state.items() if not k.startswith("transformerClip.resblocks.0.")}  # block 0 lost
    with pytest.raises(ReleasedCheckpointError, match="missing 12 key\\(s\\): transformerClip.resblocks.0"):
        import_state(gap, ("visual", "textual"), model, "gap.bin")
    with pytest.raises(ReleasedCheckpointError, match="no clip.\\* weights"):
        import_state({"weight_fc.0.weight": torch.zeros(2, 2)}, ("visual", "textual"), model, "x")


def test_the_variant_decides_between_mac_vr_and_dicosa(tmp_path):
    macvr = {k: v.float() for k, v in official_state_dict("macvr", SMALL).items()}
    dicosa = {k: v.float() for k, v in official_state_dict("dicosa", SMALL).items()}
    config, _, _ = import_state(dicosa, (), variant("dicosa").model, "d")
    assert config.confidence_slots == ("text", "video") and config.num_concepts == 8
    with pytest.raises(ReleasedCheckpointError, match="implies K=4 concepts.*is it a MAC-VR checkpoint"):
        import_state(macvr, (), variant("dicosa").model, "m")
    with pytest.raises(ReleasedCheckpointError, match="implies K=16 concepts.*is it a DiCoSA checkpoint"):
        import_state(dicosa, ("visual", "textual"), variant("macvr").model, "d")
    linear = replace(variant("macvr").model, concept_projection="linear")
    with pytest.raises(ReleasedCheckpointError, match="no concept projection"):
        import_state(macvr, ("visual", "textual"), linear, "m")


def test_foreign_files_are_refused(tmp_path):
    with pytest.raises(ReleasedCheckpointError, match="not found"):
        read_state_dict(tmp_path / "none.bin")
    (tmp_path / "text.bin").write_text("hello")
    with pytest.raises(ReleasedCheckpointError, match="not a readable PyTorch state dict"):
        read_state_dict(tmp_path / "text.bin")
    torch.save({"epoch": 3}, tmp_path / "meta.bin")
    with pytest.raises(ReleasedCheckpointError, match="expected a state dict"):
        read_state_dict(tmp_path / "meta.bin")
    torch.save({"a": torch.zeros(2), "module.a": torch.zeros(2)}, tmp_path / "dup.bin")
    with pytest.raises(ReleasedCheckpointError, match="both with and without the 'module.' prefix"):
        read_state_dict(tmp_path / "dup.bin")
    torch.save({"state_dict": {"clip.x": torch.zeros(1)}}, tmp_path / "wrapped.bin")
    assert set(read_state_dict(tmp_path / "wrapped.bin")) == {"clip.x"}


def test_import_writes_a_loadable_model_byte_for_byte_reproducibly(tmp_path):
    from pipeline.backbone.io import file_sha256
    from pipeline.text import TextConfig

    path = tmp_path / "released/w.bin"
    path.parent.mkdir()
    torch.save(official_state_dict("macvr", SMALL, seed=5), path)
    cfg = variant("macvr")
    summaries = []
    for out in ("a", "b"):
        summaries.append(import_checkpoint(path, "macvr", cfg, TextConfig(max_words=32), tmp_path / out,
                                           tmp_path / f"live_{out}"))
    for name in ("model.pt", "checkpoint.pt"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    model = TrainedModel.load(tmp_path / "a/model.pt")
    assert model.finetuned and model.variant == "macvr" and model.train_mode == "released"
    assert model.run["released"]["sha256"] == file_sha256(path)
    live = json.loads((tmp_path / "live_a/metrics.json").read_text())
    assert live["released"] == 1 and live["sha256"] == file_sha256(path) and summaries[0] == summaries[1]


def test_the_train_stage_imports_a_released_variant(tmp_path):
    from stages.train import app

    released = tmp_path / "released"
    released.mkdir()
    torch.save(official_state_dict("dicosa", SMALL, seed=2), released / "dicosa.bin")
    params = yaml.safe_load(REFERENCE.read_text())
    params["released"]["dir"] = str(released)
    params["variants"] = {"dicosa": {"released": "dicosa.bin"}, "macvr": {}}
    params["compare"]["baseline"] = "dicosa"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    result = CliRunner().invoke(app, ["--params", str(tmp_path / "params.yaml"), "--variant", "dicosa",
                                      "--out", str(tmp_path / "models/dicosa"),
                                      "--live-dir", str(tmp_path / "live")])
    assert result.exit_code == 0, result.output
    assert "imported" in result.output and TrainedModel.load(tmp_path / "models/dicosa/model.pt").finetuned
    params["variants"]["dicosa"]["released"] = "missing.bin"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    result = CliRunner().invoke(app, ["--params", str(tmp_path / "params.yaml"), "--variant", "dicosa",
                                      "--out", str(tmp_path / "models/other")])
    assert result.exit_code == 1 and "missing.bin: released checkpoint not found" in result.output
    assert not (tmp_path / "models/other").exists()


def test_other_geometries_import_too():
    """ViT-B/16-like patches (here 8 px on 32 px: 17 positions), a 3-layer temporal transformer,
    K = 4 concepts, fp32 tensors: shapes come from the weights, not from a fixed list."""
    from tests.released_fixtures import Shapes

    shapes = Shapes(embed_dim=64, image_resolution=32, vision_layers=2, vision_width=64, vision_patch_size=8,
                    context_length=77, text_width=64, text_layers=1, temporal_layers=3, num_concepts=4)
    state = {k: v.float() for k, v in official_state_dict("macvr", shapes, seed=9).items()}
    params = replace(variant("macvr").model, num_concepts=4)
    config, head, backbone = import_state(state, ("visual", "textual"), params, "b16")
    assert (config.num_concepts, config.temporal_layers) == (4, 3)
    assert backbone["arch"]["vision_patch_size"] == 8 and backbone["arch"]["vision_layers"] == 2
    assert backbone["arch"]["image_resolution"] == 32
