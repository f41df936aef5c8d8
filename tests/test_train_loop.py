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
from pipeline.model import MacVR
from pipeline.train import checkpoint as ckpt
from pipeline.train import loop
from pipeline.train.data import CachedFeatureSet, cached_pairs
from pipeline.train.loop import TrainInputs, train
from pipeline.train.monitor import score_slice, slice_recall
from pipeline.train.trainable import Trainable
from tests.test_train_common import make_features, tiny_config


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
    untrained = Trainable(MacVR(config.model), None, config.loss)
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
    config = tiny_config(epochs=1)
    train(config, "dicosa", TrainInputs(features=features), tmp_path, live_dir=None)
    for name in ("model.pt", "checkpoint.pt"):
        payload = torch.load(tmp_path / name, map_location="cpu", weights_only=True)
        assert payload["variant"] == "dicosa" and payload["epoch"] == 1
        assert payload["config"] == to_dict(config.with_variant("dicosa"))
        assert payload["clip"] is None
    full = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert {"optimizer", "scheduler", "rng"} <= full.keys()
    model, loaded_config = ckpt.load_trained(tmp_path / "model.pt", "cpu")
    assert loaded_config == config.with_variant("dicosa")
    assert loaded_config.model.variant == "dicosa" and not loaded_config.model.use_visual_tags
    assert not model.training
    assert _state_equal(model.state_dict(), full["model"])
    assert ckpt.load_trained_clip(tmp_path / "model.pt") is None


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
        train(tiny_config(epochs=2), "dicosa", inputs, tmp_path, resume="always")
    caplog.set_level("WARNING")
    train(changed, "macvr", inputs, tmp_path)  # auto: starts afresh
    assert "not resuming" in caplog.text
    assert torch.load(tmp_path / "model.pt", weights_only=True)["config"]["lr"] == 5e-4


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
    with pytest.raises(ValueError, match="--features"):
        train(tiny_config(), "macvr", TrainInputs(), tmp_path)
    with pytest.raises(ValueError, match="--frames, --captions, --backbone, --tags"):
        train(tiny_config(mode="finetune"), "macvr", TrainInputs(), tmp_path)
    with pytest.raises(ValueError, match="--backbone"):
        train(tiny_config(init_temporal_from_clip=True), "macvr", TrainInputs(features=features), tmp_path)
    import dataclasses

    wide = tiny_config()
    wide = dataclasses.replace(wide, model=dataclasses.replace(wide.model, embed_dim=32))
    with pytest.raises(ValueError, match="embed_dim is 32"):
        train(wide, "macvr", TrainInputs(features=features), tmp_path)


def test_trainable_loss_is_the_model_forward_loss(features):
    """The step's gather-then-score path equals ``training_loss(head(...))`` in one process."""
    from pipeline.losses import training_loss

    config = tiny_config()
    torch.manual_seed(0)
    trainable = Trainable(MacVR(config.model), None, config.loss)
    batch = CachedFeatureSet(features, cached_pairs(features), config.seed)[list(range(12))]
    got = trainable(batch)
    want = training_loss(trainable.head(batch["text"], batch["frames"], batch["mask"], batch["tags_v"],
                                        batch["tags_t"]), config.loss)
    assert got.keys() == want.keys() and {"sim", "concept", "align_text", "align_visual", "total"} <= got.keys()
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=1e-6, atol=1e-7, msg=k)


def test_monitor_scores_are_the_model_similarity(features):
    config = tiny_config()
    torch.manual_seed(0)
    trainable = Trainable(MacVR(config.model), None, config.loss)
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


def test_stage_cli_reads_params_and_variant(features, tmp_path):
    from typer.testing import CliRunner

    from stages.train import PARAMS, app

    config = tiny_config(epochs=1)
    section = to_dict(config)
    section["adam_betas"] = list(section["adam_betas"])
    section["model"]["variant"] = "dicosa"  # --variant overrides it
    section["model"]["use_visual_tags"] = section["model"]["use_textual_tags"] = False
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"train": section, "other": {"x": 1}}))
    assert PARAMS == {"train": type(config)}
    result = CliRunner().invoke(app, ["--params", str(params), "--variant", "macvr", "--features", str(features),
                                      "--out", str(tmp_path / "out"), "--live-dir", str(tmp_path / "live")])
    assert result.exit_code == 0, result.output
    payload = torch.load(tmp_path / "out" / "model.pt", weights_only=True)
    assert payload["variant"] == "macvr" and payload["config"]["model"]["use_visual_tags"]
    bad = CliRunner().invoke(app, ["--params", str(params), "--variant", "clip4clip", "--features", str(features),
                                   "--out", str(tmp_path / "out2")])
    assert bad.exit_code != 0 and "dicosa or macvr" in bad.output
    nothing = CliRunner().invoke(app, ["--params", str(params), "--variant", "macvr", "--features", str(features),
                                       "--out", str(tmp_path / "out"), "--resume"])
    assert isinstance(nothing.exception, ckpt.CheckpointError)  # --resume insists on a last.pt
    section["epochs"] = 0
    params.write_text(yaml.safe_dump({"train": section}))
    invalid = CliRunner().invoke(app, ["--params", str(params), "--variant", "macvr", "--features", str(features),
                                       "--out", str(tmp_path / "out")])
    assert invalid.exit_code == 2 and "epochs must be >= 1" in invalid.output
