"""Optimiser and learning-rate schedule of the official recipe, written down explicitly.

Parameter groups (``param_groups``):

- *Backbone* parameters (names under ``backbone_prefix``, only present when fine-tuning end to
  end) use ``clip_lr`` (official: 1e-7); every other parameter ("new modules": the DiCoSA/MAC-VR
  head) uses ``lr`` (official: 1e-4; the paper's text says 1e-3, the released code uses 1e-4).
- Weight decay ``weight_decay`` (0.2) is applied to weight matrices only. No decay on: biases
  and every other parameter with fewer than 2 dimensions (LayerNorm gains, CLIP's
  ``class_embedding``, the logit scale), ``nn.Embedding`` tables, and parameters whose name ends
  in ``embedding`` (CLIP's ``positional_embedding``s, frame position embeddings). This is the
  usual CLIP/AdamW convention. The official code matches names against ``bias``/``LayerNorm``,
  which in CLIP's naming (``ln_1``, ``ln_final``, ...) only catches the biases; decaying a
  LayerNorm gain, a position table or the temperature towards 0 has no regularising meaning,
  so we do not.

Optimiser: decoupled-weight-decay Adam (``torch.optim.AdamW``) with the official betas
(0.9, 0.98) and eps 1e-6. The official ``BertAdam`` has no bias correction; AdamW does (it
only changes the first few hundred updates' magnitudes, during warmup).

Schedule (``WarmupCosine``), per optimiser step ``s`` of ``T`` with ``W`` warmup steps::

    factor(s) = (s + 1) / W                                  for s < W
    factor(s) = 0.5 * (1 + cos(pi * (s - W) / (T - W)))      for W <= s < T

The first update already gets a non-zero rate, the cosine starts at exactly 1 where the
warmup ends (continuous), and decays towards 0 at the end of training. The official
``warmup_cosine`` instead evaluates ``0.5 * (1 + cos(pi * s / T))`` on the global progress
(a small drop to 0.976 at the end of a 10 % warmup); the shapes are otherwise alike.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR


def is_no_decay(name: str, param: nn.Parameter, embedding_params: set[int]) -> bool:
    """True for parameters that weight decay must not touch (see the module docstring)."""
    return param.ndim < 2 or id(param) in embedding_params or name.split(".")[-1].endswith("embedding")


def param_groups(model: nn.Module, lr: float, clip_lr: float, weight_decay: float,
                 backbone_prefix: str = "backbone.") -> list[dict]:
    """Trainable parameters of ``model`` split into (head|backbone) x (decay|no_decay) groups.

    Each group carries a ``name`` (``head/decay``, ``head/no_decay``, ``backbone/decay``,
    ``backbone/no_decay``); empty groups are left out. Frozen parameters are skipped.
    """
    embedding_params = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    buckets: dict[str, list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        owner = "backbone" if name.startswith(backbone_prefix) else "head"
        kind = "no_decay" if is_no_decay(name, param, embedding_params) else "decay"
        buckets.setdefault(f"{owner}/{kind}", []).append(param)
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


def build_optimizer(model: nn.Module, lr: float, clip_lr: float, weight_decay: float,
                    betas: tuple[float, float], eps: float) -> torch.optim.AdamW:
    """AdamW over :func:`param_groups` (group ``lr`` values are the schedule's peak rates)."""
    return torch.optim.AdamW(param_groups(model, lr, clip_lr, weight_decay), lr=lr,
                             betas=betas, eps=eps, weight_decay=weight_decay)


def warmup_steps(total_steps: int, warmup_fraction: float) -> int:
    """Number of warmup steps: ``fraction * total`` rounded half up, at least 1 when fraction > 0."""
    if warmup_fraction <= 0:
        return 0
    return max(1, min(total_steps, math.floor(warmup_fraction * total_steps + 0.5)))


class WarmupCosine:
    """Linear warmup then cosine decay, as a ``LambdaLR`` multiplier (picklable, stateless)."""

    def __init__(self, warmup: int, total: int) -> None:
        if total < 1:
            raise ValueError(f"total steps must be >= 1, got {total}")
        if not 0 <= warmup <= total:
            raise ValueError(f"warmup steps must be in [0, {total}], got {warmup}")
        self.warmup = warmup
        self.total = total

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        decay_steps = self.total - self.warmup
        if decay_steps <= 0:
            return 1.0
        progress = min(1.0, (step - self.warmup) / decay_steps)
        return 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(optimizer: torch.optim.Optimizer, total_steps: int,
                    warmup_fraction: float) -> LambdaLR:
    """Per-step :class:`WarmupCosine` over every group (call ``.step()`` after each update)."""
    return LambdaLR(optimizer, WarmupCosine(warmup_steps(total_steps, warmup_fraction), total_steps))
