"""Optimiser recipe: warmup + cosine schedule against its closed form, parameter groups, decay."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from pipeline.train.optim import (WarmupCosine, build_optimizer, build_scheduler, param_groups,
                                  warmup_steps)


def closed_form(step: int, warmup: int, total: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / (total - warmup)))


@pytest.mark.parametrize("warmup,total", [(3, 13), (1, 5), (0, 7), (10, 100)])
def test_schedule_matches_closed_form(warmup, total):
    f = WarmupCosine(warmup, total)
    for s in range(total):
        assert f(s) == pytest.approx(closed_form(s, warmup, total), abs=1e-12)
    if warmup:
        assert f(warmup - 1) == pytest.approx(1.0) and f(warmup) == pytest.approx(1.0)  # continuous peak
    decay = [f(s) for s in range(warmup, total)]
    assert all(a > b for a, b in zip(decay, decay[1:]))  # strictly decreasing after warmup
    assert 0 < f(total - 1) < 0.5


def test_schedule_rejects_bad_steps():
    with pytest.raises(ValueError, match="total steps"):
        WarmupCosine(0, 0)
    with pytest.raises(ValueError, match="warmup steps"):
        WarmupCosine(6, 5)


def test_warmup_steps_rounding():
    assert warmup_steps(25, 0.1) == 3  # 2.5 rounds half up
    assert warmup_steps(100, 0.1) == 10
    assert warmup_steps(5, 0.01) == 1  # never zero when asked for a warmup
    assert warmup_steps(5, 0.0) == 0


class Toy(nn.Module):
    """Every kind of parameter the recipe distinguishes, in a head and a ``backbone`` submodule
    (the name Trainable gives the backbone it fine-tunes)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.ln = nn.LayerNorm(3)
        self.table = nn.Embedding(5, 3)
        self.positional_embedding = nn.Parameter(torch.randn(6, 3))
        self.logit_scale = nn.Parameter(torch.tensor(4.6))
        self.frozen = nn.Parameter(torch.randn(3, 3), requires_grad=False)
        self.backbone = nn.Module()
        self.backbone.proj = nn.Linear(3, 3)
        self.backbone.ln_final = nn.LayerNorm(3)
        self.backbone.class_embedding = nn.Parameter(torch.randn(3))


def _names(model: nn.Module, group: dict) -> set[str]:
    ids = {id(p) for p in group["params"]}
    return {n for n, p in model.named_parameters() if id(p) in ids}


def test_param_groups_split_decay_and_backbone():
    model = Toy()
    groups = {g["name"]: g for g in param_groups(model, lr=1e-4, clip_lr=1e-7, weight_decay=0.2)}
    assert _names(model, groups["head/decay"]) == {"fc.weight"}
    assert _names(model, groups["head/no_decay"]) == {"fc.bias", "ln.weight", "ln.bias", "table.weight",
                                                      "positional_embedding", "logit_scale"}
    assert _names(model, groups["backbone/decay"]) == {"backbone.proj.weight"}
    assert _names(model, groups["backbone/no_decay"]) == {"backbone.proj.bias", "backbone.ln_final.weight",
                                                      "backbone.ln_final.bias", "backbone.class_embedding"}
    assert [groups[k]["lr"] for k in ("head/decay", "head/no_decay", "backbone/decay", "backbone/no_decay")] == \
        [1e-4, 1e-4, 1e-7, 1e-7]
    assert [groups[k]["weight_decay"] for k in ("head/decay", "head/no_decay", "backbone/decay", "backbone/no_decay")] == \
        [0.2, 0.0, 0.2, 0.0]
    covered = set().union(*(_names(model, g) for g in groups.values()))
    assert "frozen" not in covered  # frozen parameters are not optimised


def test_head_only_model_has_no_backbone_groups():
    groups = param_groups(nn.Linear(3, 3), lr=1e-4, clip_lr=1e-7, weight_decay=0.2)
    assert [g["name"] for g in groups] == ["head/decay", "head/no_decay"]
    with pytest.raises(ValueError, match="no trainable"):
        param_groups(nn.Linear(3, 3).requires_grad_(False), lr=1e-4, clip_lr=1e-7, weight_decay=0.2)


def test_decoupled_weight_decay_touches_only_the_decay_groups():
    """With zero gradients AdamW's only move is w <- w (1 - lr wd), on the decay groups."""
    model = Toy()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = build_optimizer(model, lr=1e-2, clip_lr=1e-3, weight_decay=0.2, betas=(0.9, 0.98), eps=1e-6)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    after = dict(model.named_parameters())
    torch.testing.assert_close(after["fc.weight"], before["fc.weight"] * (1 - 1e-2 * 0.2))
    torch.testing.assert_close(after["backbone.proj.weight"], before["backbone.proj.weight"] * (1 - 1e-3 * 0.2))
    for name in ("fc.bias", "ln.weight", "table.weight", "positional_embedding", "logit_scale",
                 "backbone.ln_final.weight", "backbone.class_embedding"):
        torch.testing.assert_close(after[name], before[name], rtol=0, atol=0)
    assert opt.defaults["betas"] == (0.9, 0.98) and opt.defaults["eps"] == 1e-6


def test_scheduler_sets_every_group_to_peak_times_factor():
    model = Toy()
    opt = build_optimizer(model, lr=1e-3, clip_lr=1e-6, weight_decay=0.2, betas=(0.9, 0.98), eps=1e-6)
    total = 20
    sched = build_scheduler(opt, total, warmup_fraction=0.1)
    for s in range(total):
        factor = closed_form(s, 2, total)
        for g in opt.param_groups:
            peak = 1e-6 if g["name"].startswith("backbone") else 1e-3
            assert g["lr"] == pytest.approx(peak * factor, rel=1e-12)  # the rate step s uses
        opt.step()
        sched.step()
    state = sched.state_dict()
    assert state["lr_lambdas"][0] == {"warmup": 2, "total": 20}
