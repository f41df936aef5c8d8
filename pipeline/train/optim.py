"""Optimiser and learning-rate schedule: the project's defaults and the official recipe, as knobs.

Parameter groups (:func:`param_groups`):

- *Backbone* parameters (names under ``backbone_prefix``, present when fine-tuning end to end,
  including the backbone's own ``logit_scale`` under ``train.logit_scale: backbone``) use
  ``clip_lr`` (official: 1e-7); every other parameter ("new modules": the head) uses ``lr``
  (official: 1e-4; the paper's text says 1e-3).
- Weight decay ``weight_decay`` (0.2), by ``decay_rule``:
  ``matrices`` (default): weight matrices only -- no decay on biases and every other parameter
  with fewer than 2 dimensions (LayerNorm gains, ``class_embedding``, the logit scale),
  ``nn.Embedding`` tables and parameters whose name ends in ``embedding`` (position tables):
  the usual CLIP/AdamW convention, since shrinking a gain, a position table or the temperature
  towards 0 has no regularising meaning.
  ``official``: the official name rule -- no decay iff the name contains ``bias``,
  ``LayerNorm.bias`` or ``LayerNorm.weight``; in CLIP's naming (``ln_1``, ``ln_final``, ...)
  that spares only the biases, so LayerNorm gains, position tables, embeddings and the logit
  scale are decayed too.

Optimiser (``optimizer``): ``adamw`` (default: ``torch.optim.AdamW``, bias-corrected) or
``bertadam`` (official :class:`BertAdam`: the same update without bias correction, which scales
the first few hundred updates by (1 - b1^t) / sqrt(1 - b2^t): 0.71 at step 1, ~1.5 around step
15, -> 1). Both use decoupled weight decay and the official betas (0.9, 0.98), eps 1e-6.

Schedules (``schedule``), per optimiser step ``s`` of ``T`` with ``W`` warmup steps:

``warmup_cosine`` (default, :class:`WarmupCosine`)::

    factor(s) = (s + 1) / W                                  for s < W
    factor(s) = 0.5 * (1 + cos(pi * (s - W) / (T - W)))      for W <= s < T

  non-zero from the first update, continuous where the warmup ends, decaying to 0 at the end.

``official`` (:class:`OfficialWarmupCosine`): on the global progress x = s / T,
``x / w`` while x < w, else ``0.5 * (1 + cos(pi * x))``: the first update gets rate 0, the rate
drops from ~1 to 0.976 where the warmup ends, and -- because the official code passes a T of 5
epochs whatever ``--epochs`` is (``schedule_epochs: 5``) -- training past T climbs the cosine back
up (10 epochs: zero at epoch 5, back at the peak at epoch 10).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

# The schedules and decay rules live below the training package (the backbone's pretraining uses
# them too); re-exported here as part of this module's interface.
from pipeline.optimisation import (OfficialWarmupCosine, WarmupCosine, is_no_decay, is_no_decay_official,  # noqa: F401
                                   warmup_steps)

OPTIMIZERS = ("adamw", "bertadam")
SCHEDULES = ("warmup_cosine", "official")
DECAY_RULES = ("matrices", "official")


def param_groups(model: nn.Module, lr: float, clip_lr: float, weight_decay: float,
                 backbone_prefix: str = "backbone.", decay_rule: str = "matrices",
                 backbone_owned: Iterable[nn.Parameter] = ()) -> list[dict]:
    """Trainable parameters of ``model`` split into (head|backbone) x (decay|no_decay) groups.

    Each group carries a ``name`` (``head/decay``, ``head/no_decay``, ``backbone/decay``,
    ``backbone/no_decay``); empty groups are left out. Frozen parameters are skipped.
    ``backbone_owned``: parameters outside ``backbone_prefix`` that belong to the backbone group.
    """
    if decay_rule not in DECAY_RULES:
        raise ValueError(f"decay_rule must be one of {DECAY_RULES}, got {decay_rule!r}")
    embedding_params = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    owned = {id(p) for p in backbone_owned}
    buckets: dict[str, list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        owner = "backbone" if name.startswith(backbone_prefix) or id(param) in owned else "head"
        spared = (is_no_decay_official(name) if decay_rule == "official"
                  else is_no_decay(name, param, embedding_params))
        buckets.setdefault(f"{owner}/{'no_decay' if spared else 'decay'}", []).append(param)
    groups = []
    for key in ("head/decay", "head/no_decay", "backbone/decay", "backbone/no_decay"):
        if key in buckets:
            owner, kind = key.split("/")
            groups.append({"name": key, "params": buckets[key],
                           "lr": clip_lr if owner == "backbone" else lr,
                           "weight_decay": weight_decay if kind == "decay" else 0.0})
    if not groups:
        raise ValueError("the model has no trainable parameters")
    return groups


class BertAdam(torch.optim.Optimizer):
    """The official optimiser: Adam without bias correction, decoupled weight decay.

    Per parameter: g clipped to norm ``max_grad_norm`` (official 1.0; a no-op after the trainer's
    global clip at 1.0; <= 0 disables it), m = b1 m + (1 - b1) g, v = b2 v + (1 - b2) g^2,
    p -= lr * (m / (sqrt(v) + eps) + weight_decay * p).
    """

    def __init__(self, params, lr: float, betas: tuple[float, float] = (0.9, 0.98), eps: float = 1e-6,
                 weight_decay: float = 0.0, max_grad_norm: float = 1.0) -> None:
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      max_grad_norm=max_grad_norm))

    @torch.no_grad()
    def step(self, closure: Callable | None = None):  # type: ignore[override]
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                m, v = state["exp_avg"], state["exp_avg_sq"]
                grad = p.grad
                if group["max_grad_norm"] > 0:  # torch's clip_grad_norm_ rule, per parameter
                    coef = group["max_grad_norm"] / (float(grad.norm()) + 1e-6)
                    if coef < 1:
                        grad = grad * coef
                m.mul_(b1).add_(grad, alpha=1 - b1)
                v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
                update = m / (v.sqrt() + group["eps"])
                if group["weight_decay"]:
                    update = update + group["weight_decay"] * p
                p.add_(update, alpha=-group["lr"])
        return loss


def build_optimizer(model: nn.Module, lr: float, clip_lr: float, weight_decay: float,
                    betas: tuple[float, float], eps: float, optimizer: str = "adamw",
                    decay_rule: str = "matrices", backbone_owned: Iterable[nn.Parameter] = ()) -> torch.optim.Optimizer:
    """AdamW or BertAdam over :func:`param_groups` (group ``lr`` values are the schedule's peak rates)."""
    groups = param_groups(model, lr, clip_lr, weight_decay, decay_rule=decay_rule, backbone_owned=backbone_owned)
    if optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
    if optimizer == "bertadam":
        return BertAdam(groups, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
    raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")


def build_scheduler(optimizer: torch.optim.Optimizer, total_steps: int, warmup_fraction: float,
                    schedule: str = "warmup_cosine") -> LambdaLR:
    """Per-step multiplier over every group (call ``.step()`` after each update); ``total_steps``
    is the schedule's T (the official recipe passes 5 epochs' steps whatever the epoch count)."""
    if schedule == "warmup_cosine":
        factor = WarmupCosine(warmup_steps(total_steps, warmup_fraction), total_steps)
    elif schedule == "official":
        factor = OfficialWarmupCosine(warmup_fraction, total_steps)
    else:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    return LambdaLR(optimizer, factor)
