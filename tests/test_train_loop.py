"""The training run on CPU: it learns, checkpoints load with weights_only, resume is exact,
dvclive leaves dvc.yaml alone, and the stage CLI wires params + variant."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from pipeline.config import to_dict
from pipeline.evaluation.trained import TrainedModel
from pipeline.io import read_json, write_json
from pipeline.model import MacVR
from pipeline.text import TextConfig
from pipeline.train import checkpoint as ckpt
from pipeline.train import loop
from pipeline.train.data import CachedFeatureSet, cached_pairs
from pipeline.train.loop import TrainInputs, train
from pipeline.train.monitor import score_slice, slice_recall
from pipeline.train.trainable import Trainable
from tests.test_train_common import make_features, tiny_config, tiny_loss, tiny_model, train_section


@pytest.fixture(scope="module")
def features(tmp_path_factory):
    return make_features(tmp_path_factory.mktemp("train") / "features")


def _state_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_tiny_fit_learns_the_training_pairs(features, tmp_path):
    """Captions are anti-aligned with their videos: an untrained head ranks them near chance or
    worse, training must drive the loss down and R@1 on the training pairs far above chance."""
    config = tiny_config(epochs=12, batch_size=16, lr=3e-3, monitor_videos=32)
    torch.manual_seed(config.seed)
    untrained = Trainable(MacVR(tiny_model()), None, tiny_loss())
    ds = CachedFeatureSet(features, cached_pairs(features), config.seed)
    slice_idx = ds.pairs.first_caption_per_video(32)
    before = slice_recall(score_slice(untrained, ds.fixed_batch(slice_idx), torch.device("cpu")))
    assert before["r1_t2v"] < 20  # chance is 1/32 = 3 %

    live = tmp_path / "live"
    metrics = train(config, "macvr", TrainInputs(features=features), tmp_path / "out", live_dir=live)
    assert metrics["epoch/r1_t2v"] >= 80 and metrics["epoch/r1_v2t"] >= 80
    history = np.loadtxt(live / "plots" / "metrics" / "train" / "total.tsv", skiprows=1, usecols=1)
    assert history[-3:].mean() < 0.5 * history[:3].mean()
    assert (tmp_path / "out" / "model.pt").exists() and not (tmp_path / "out" / "last.pt").exists()
    for term in ("sim", "concept", "align_text", "align_visual"):
        assert (live / "plots" / "metrics" / "train" / f"{term}.tsv").exists()
    lrs = np.loadtxt(live / "plots" / "metrics" / "lr" / "head_decay.tsv", skiprows=1, usecols=1)
    assert lrs.max() == pytest.approx(3e-3, rel=0.05) and lrs[-1] < 0.1 * lrs.max()


def test_checkpoints_load_with_weights_only_and_round_trip(features, tmp_path):
    config = tiny_config("dicosa", epochs=1)
    train(config, "dicosa", TrainInputs(features=features), tmp_path, live_dir=None, text=TextConfig(max_words=24))
    for name in ("model.pt", "checkpoint.pt"):
        payload = torch.load(tmp_path / name, map_location="cpu", weights_only=True)
        assert payload["format"] == "macvr-train" and payload["version"] == 2
        assert payload["variant"] == "dicosa" and payload["epoch"] == 1
        assert payload["model_config"] == to_dict(tiny_model("dicosa"))  # D and frame slots from the data
        assert payload["run"]["train"] == to_dict(config)
        assert payload["run"]["text"] == {"max_words": 24} and payload["run"]["padding"] == "zero"
        assert payload["backbone"] is None
    full = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert {"optimizer", "scheduler", "rng"} <= full.keys() and full["kind"] == "resume"
    assert "optimizer" not in torch.load(tmp_path / "model.pt", weights_only=True)
    loaded = TrainedModel.load(tmp_path / "model.pt", "cpu")
    assert loaded.variant == "dicosa" and loaded.config == tiny_model("dicosa")
    assert not loaded.config.use_visual_tags and loaded.config.tags == ()
    assert not loaded.head.training and not loaded.finetuned and loaded.backbone is None
    assert (loaded.max_words, loaded.padding, loaded.train_mode) == (24, "zero", "cached")
    assert _state_equal(loaded.head.state_dict(), full["model"])


def test_foreign_or_missing_checkpoints_are_refused(tmp_path):
    with pytest.raises(ckpt.CheckpointError, match="not found"):
        ckpt.load(tmp_path / "nope.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign.pt")
    with pytest.raises(ckpt.CheckpointError, match="not a macvr train checkpoint"):
        ckpt.load(tmp_path / "foreign.pt")
    (tmp_path / "garbage.pt").write_bytes(b"not a zip")
    with pytest.raises(ckpt.CheckpointError, match="not a readable"):
        ckpt.load(tmp_path / "garbage.pt")


class Interrupt(Exception):
    pass


def _interrupt_after(monkeypatch, epochs_done: int) -> None:
    """Make the run die when epoch ``epochs_done`` starts (after ``last.pt`` was written)."""
    real = loop._run_epoch

    def run_epoch(run, model, epoch, global_step, live):
        if epoch == epochs_done:
            raise Interrupt
        return real(run, model, epoch, global_step, live)

    monkeypatch.setattr(loop, "_run_epoch", run_epoch)


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(features, tmp_path, monkeypatch):
    config = tiny_config(epochs=2)
    inputs = TrainInputs(features=features)
    train(config, "macvr", inputs, tmp_path / "straight", live_dir=tmp_path / "live_straight")

    with monkeypatch.context() as m:
        _interrupt_after(m, 1)
        with pytest.raises(Interrupt):
            train(config, "macvr", inputs, tmp_path / "resumed", live_dir=tmp_path / "live_resumed")
    assert torch.load(tmp_path / "resumed" / "last.pt", weights_only=True)["epoch"] == 1
    assert not (tmp_path / "resumed" / "model.pt").exists()
    ran = []
    real = loop._run_epoch

    def recording(run, model, epoch, global_step, live):
        ran.append((epoch, global_step))
        return real(run, model, epoch, global_step, live)

    monkeypatch.setattr(loop, "_run_epoch", recording)
    train(config, "macvr", inputs, tmp_path / "resumed", live_dir=tmp_path / "live_resumed")  # auto-resume
    assert ran == [(1, 64 // 8)]  # only the second epoch ran, from the checkpoint's step

    a = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True)
    assert _state_equal(a["model"], b["model"])
    assert a["global_step"] == b["global_step"] == 2 * (64 // 8)
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert _state_equal(sa, sb)
    # The resumed log has each step once, in order, like the uninterrupted one.
    steps_a = np.loadtxt(tmp_path / "live_straight/plots/metrics/train/total.tsv", skiprows=1, usecols=0)
    steps_b = np.loadtxt(tmp_path / "live_resumed/plots/metrics/train/total.tsv", skiprows=1, usecols=0)
    np.testing.assert_array_equal(steps_a, steps_b)


def test_identical_inputs_give_byte_identical_checkpoints(features, tmp_path):
    """model.pt / checkpoint.pt (DVC outputs) depend on the inputs' content, not on the files'
    modification times: a fresh clone re-creates them byte for byte."""
    import os
    import shutil

    config = tiny_config(epochs=1)
    copy = tmp_path / "features_copy"
    shutil.copytree(features, copy)
    for f in copy.rglob("*"):
        os.utime(f, (1_000_000, 1_000_000))  # other mtimes, same bytes
    train(config, "macvr", TrainInputs(features=features), tmp_path / "a", live_dir=tmp_path / "live_a")
    train(config, "macvr", TrainInputs(features=copy), tmp_path / "b", live_dir=tmp_path / "live_b")
    for name in ("model.pt", "checkpoint.pt"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert torch.load(tmp_path / "a" / "model.pt", weights_only=True)["fingerprint"] is None


def test_mismatched_last_checkpoint_is_not_resumed(features, tmp_path, monkeypatch, caplog):
    inputs = TrainInputs(features=features)
    with monkeypatch.context() as m:
        _interrupt_after(m, 1)
        with pytest.raises(Interrupt):
            train(tiny_config(epochs=2), "macvr", inputs, tmp_path, live_dir=None)
    changed = tiny_config(epochs=2, lr=5e-4)
    with pytest.raises(ckpt.CheckpointError, match="config differs"):
        train(changed, "macvr", inputs, tmp_path, resume="always")
    with pytest.raises(ckpt.CheckpointError, match="config differs"):
        train(tiny_config(epochs=2), "dicosa", inputs, tmp_path, resume="always")  # another variant's name
    with pytest.raises(ckpt.CheckpointError, match="config differs"):
        train(tiny_config("dicosa", epochs=2), "dicosa", inputs, tmp_path, resume="always")
    with pytest.raises(ckpt.CheckpointError, match="config differs"):  # another text length
        train(tiny_config(epochs=2), "macvr", inputs, tmp_path, resume="always", text=TextConfig(max_words=16))
    caplog.set_level("WARNING")
    train(changed, "macvr", inputs, tmp_path)  # auto: starts afresh
    assert "not resuming" in caplog.text
    assert torch.load(tmp_path / "model.pt", weights_only=True)["run"]["train"]["lr"] == 5e-4


def test_changed_inputs_are_not_resumed(features, tmp_path, monkeypatch):
    inputs = TrainInputs(features=features)
    with monkeypatch.context() as m:
        _interrupt_after(m, 1)
        with pytest.raises(Interrupt):
            train(tiny_config(epochs=2), "macvr", inputs, tmp_path / "out", live_dir=None)
    copy = make_features(tmp_path / "features2")
    import os

    st = os.stat(copy / "frames.npy")
    os.utime(copy / "frames.npy", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    with pytest.raises(ckpt.CheckpointError, match="input files changed"):
        train(tiny_config(epochs=2), "macvr", TrainInputs(features=copy), tmp_path / "out", resume="always")


def test_missing_inputs_and_bad_dimensions_are_reported(features, tmp_path):
    import dataclasses

    with pytest.raises(ValueError, match="--features"):
        train(tiny_config(), "macvr", TrainInputs(), tmp_path)
    with pytest.raises(ValueError, match="--frames, --captions, --tags, --backbone"):
        train(tiny_config(mode="finetune"), "macvr", TrainInputs(), tmp_path)
    with pytest.raises(ValueError, match="variant dicosa\\) needs --frames, --captions, --backbone$"):
        train(tiny_config("dicosa", mode="finetune"), "dicosa", TrainInputs(), tmp_path)  # no tags needed
    with pytest.raises(ValueError, match="--backbone"):
        train(tiny_config(init_temporal_from_backbone=True), "macvr", TrainInputs(features=features), tmp_path)
    with pytest.raises(ValueError, match="--backbone"):
        train(tiny_config(logit_scale="backbone"), "macvr", TrainInputs(features=features), tmp_path)
    # The head's sizes come from the features: knobs that do not fit their width are refused.
    config = tiny_config()
    odd = dataclasses.replace(config, model=dataclasses.replace(config.model, num_concepts=3))
    with pytest.raises(ValueError, match="D=16 must be divisible by num_concepts \\(3\\)"):
        train(odd, "macvr", TrainInputs(features=features), tmp_path)
    heads = dataclasses.replace(config, model=dataclasses.replace(config.model, temporal_heads=3))
    with pytest.raises(ValueError, match="temporal_heads \\(3\\) must divide the feature width D=16"):
        train(heads, "macvr", TrainInputs(features=features), tmp_path)
    assert not (tmp_path / "model.pt").exists()


def test_features_of_another_text_length_are_refused(tmp_path):
    features = make_features(tmp_path / "features")
    write_json({**read_json(features / "meta.json"), "max_words": 64}, features / "meta.json")
    with pytest.raises(ValueError, match="encoded with max_words 64 but text.max_words is 32"):
        train(tiny_config(), "macvr", TrainInputs(features=features), tmp_path / "out")
    metrics = train(tiny_config(epochs=1, monitor_videos=0), "macvr", TrainInputs(features=features),
                    tmp_path / "out", text=TextConfig(max_words=64))
    assert np.isfinite(metrics["epoch/total"])


def test_trainable_loss_is_the_model_forward_loss(features):
    """The step's gather-then-score path equals ``training_loss(head(...))`` in one process."""
    from pipeline.losses import training_loss

    config = tiny_config()
    torch.manual_seed(0)
    trainable = Trainable(MacVR(tiny_model()), None, tiny_loss())
    batch = CachedFeatureSet(features, cached_pairs(features), config.seed)[list(range(12))]
    got = trainable(batch)
    want = training_loss(trainable.head(batch["text"], batch["frames"], batch["mask"], batch["tags_v"],
                                        batch["tags_t"]), tiny_loss())
    assert got.keys() == want.keys() and {"sim", "concept", "align_text", "align_visual", "total"} <= got.keys()
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=1e-6, atol=1e-7, msg=k)


def test_monitor_scores_are_the_model_similarity(features):
    config = tiny_config()
    torch.manual_seed(0)
    trainable = Trainable(MacVR(tiny_model()), None, tiny_loss())
    ds = CachedFeatureSet(features, cached_pairs(features), config.seed)
    batch = ds.fixed_batch(ds.pairs.first_caption_per_video(10))
    sim = score_slice(trainable, batch, torch.device("cpu"), chunk=4)
    with torch.no_grad():
        direct = trainable.head.similarity(batch["text"], batch["frames"], batch["mask"], batch["tags_v"],
                                           batch["tags_t"])
    np.testing.assert_allclose(sim, direct.double().numpy(), rtol=1e-4, atol=1e-5)
    assert trainable.training  # restored after the eval-mode pass
    r = slice_recall(np.array([[1.0, 0.0], [2.0, 3.0]]))
    assert r["r1_t2v"] == 100.0 and r["r1_v2t"] == 50.0 and r["mdr_v2t"] == 1.5


def test_bf16_autocast_trains_fp32_weights(features, tmp_path):
    metrics = train(tiny_config(epochs=1, precision="bf16"), "macvr", TrainInputs(features=features), tmp_path)
    assert np.isfinite(metrics["epoch/total"])
    state = torch.load(tmp_path / "model.pt", weights_only=True)["model"]
    assert all(v.dtype == torch.float32 for v in state.values())


def test_non_finite_loss_stops_before_the_update(tmp_path):
    features = make_features(tmp_path / "features")
    text = np.load(features / "captions.npy")
    text[:] = np.inf  # every caption: the first step's loss is NaN
    np.save(features / "captions.npy", text)
    with pytest.raises(FloatingPointError, match="epoch 1, step 1"):
        train(tiny_config(epochs=1), "dicosa", TrainInputs(features=features), tmp_path / "out")
    assert not (tmp_path / "out" / "model.pt").exists()


def _run_quiet(cmd: list[str], cwd: Path) -> None:
    subprocess.run(cmd, cwd=cwd, check=True, capture_output=True)


def test_dvclive_never_touches_dvc_yaml(features, tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    repo.mkdir()
    _run_quiet(["git", "init", "-q"], repo)
    _run_quiet([str(Path(__import__("sys").executable).parent / "dvc"), "init", "-q"], repo)
    dvc_yaml = repo / "dvc.yaml"
    dvc_yaml.write_text("stages:\n  noop:\n    cmd: echo hi\n")
    original = dvc_yaml.read_bytes()
    _run_quiet(["git", "add", "-A"], repo)
    _run_quiet(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init"], repo)
    monkeypatch.chdir(repo)
    train(tiny_config(epochs=1), "macvr", TrainInputs(features=features), repo / "models",
          live_dir=repo / "dvclive" / "train" / "macvr")
    assert dvc_yaml.read_bytes() == original
    assert not list((repo / "dvclive").rglob("dvc.yaml"))
    assert (repo / "dvclive/train/macvr/metrics.json").exists()
    # Control: dvclive's defaults do rewrite it, so the check above can fail.
    from dvclive import Live

    with Live(str(repo / "dvclive" / "control"), save_dvc_exp=False) as live:
        live.log_metric("x", 1.0)
    assert dvc_yaml.read_bytes() != original


def test_the_head_logit_scale_is_clamped_after_each_step(tmp_path, monkeypatch):
    """The loss does not clamp lambda; the trainer clamps the parameter at ln 100 after every step."""
    import math

    before, after = [], []
    real = Trainable.clamp_logit_scale

    def spy(self):
        before.append(float(self.logit_scale.detach()))
        real(self)
        after.append(float(self.logit_scale.detach()))

    monkeypatch.setattr(Trainable, "clamp_logit_scale", spy)
    aligned = make_features(tmp_path / "features", caption_sign=1.0, noise=0.1)  # easy: a larger lambda helps
    train(tiny_config(epochs=1, lr=5e-2, monitor_videos=0), "macvr", TrainInputs(features=aligned), tmp_path)
    assert len(after) == 64 // 8
    assert max(before) > math.log(100.0) + 1e-4  # the optimiser did push it past the cap (starting at ln 100)
    assert max(after) <= math.log(100.0) + 1e-6
    head = TrainedModel.load(tmp_path / "model.pt").head
    assert float(head.logit_scale.detach()) <= math.log(100.0) + 1e-6


def test_stage_cli_reads_params_and_variant(features, tmp_path):
    from typer.testing import CliRunner

    from pipeline.text import TextConfig as Text
    from pipeline.train.config import TrainConfig
    from stages.train import PARAMS, app

    section = train_section(epochs=1)
    variants = {"dicosa": {}, "macvr": {"loss": {"alpha_align": 0.5}},  # a params override of a registered one
                "macvr_a0": {"base": "macvr", "lr": 2e-3}}               # a new name on a registered base
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"train": section, "variants": variants, "text": {"max_words": 20},
                                      "other": {"x": 1}}))
    assert PARAMS == {"train": TrainConfig, "variants": None, "text": Text, "released.dir": None}
    for variant in ("macvr", "macvr_a0"):
        result = CliRunner().invoke(app, ["--params", str(params), "--variant", variant, "--features", str(features),
                                          "--out", str(tmp_path / variant), "--live-dir", str(tmp_path / "live")])
        assert result.exit_code == 0, result.output
    payload = torch.load(tmp_path / "macvr" / "model.pt", weights_only=True)
    assert payload["variant"] == "macvr" and tuple(payload["model_config"]["tags"]) == ("visual", "textual")
    assert payload["run"]["train"]["loss"]["alpha_align"] == 0.5 and payload["run"]["text"] == {"max_words": 20}
    other = torch.load(tmp_path / "macvr_a0" / "model.pt", weights_only=True)
    assert other["variant"] == "macvr_a0" and other["run"]["train"]["lr"] == 2e-3
    assert other["run"]["train"]["loss"]["alpha_align"] == 1.0 and tuple(other["model_config"]["tags"]) == ("visual", "textual")
    bad = CliRunner().invoke(app, ["--params", str(params), "--variant", "clip4clip", "--features", str(features),
                                   "--out", str(tmp_path / "out2")])
    assert bad.exit_code == 1 and "variant 'clip4clip' is neither in params.yaml's variants" in bad.output
    assert "registered (dicosa, macvr, macvr_no_vt, macvr_no_tt, macvr_no_la)" in bad.output
    nothing = CliRunner().invoke(app, ["--params", str(params), "--variant", "macvr", "--features", str(features),
                                       "--out", str(tmp_path / "fresh"), "--resume"])
    assert nothing.exit_code == 1 and "last.pt: checkpoint not found" in nothing.output  # --resume needs one
    params.write_text(yaml.safe_dump({"train": {**section, "epochs": 0}, "variants": variants,
                                      "text": {"max_words": 20}}))
    invalid = CliRunner().invoke(app, ["--params", str(params), "--variant", "macvr", "--features", str(features),
                                       "--out", str(tmp_path / "out")])
    assert invalid.exit_code == 1 and "epochs must be >= 1" in invalid.output
    params.write_text(yaml.safe_dump({"train": {**section, "model": {**section["model"], "tags": []}},
                                      "variants": variants, "text": {"max_words": 20}}))
    misplaced = CliRunner().invoke(app, ["--params", str(params), "--variant", "macvr", "--features", str(features),
                                         "--out", str(tmp_path / "out")])
    assert misplaced.exit_code == 1 and "train.model.tags is set per variant" in misplaced.output
