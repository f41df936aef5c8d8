"""Learning-rate schedules and weight-decay rules, shared by head training and backbone pretraining.

The recipes that use them (parameter groups, optimisers, the ``schedule`` / ``decay_rule``
knobs) are described in :mod:`pipeline.train.optim`; this module sits below both it and
:mod:`pipeline.backbone` so that neither imports the other.
"""

from __future__ import annotations

import math

from torch import nn


def is_no_decay(name: str, param: nn.Parameter, embedding_params: set[int]) -> bool:
    """The ``matrices`` rule: True for parameters weight decay must not touch (see
    :mod:`pipeline.train.optim`)."""
    return param.ndim < 2 or id(param) in embedding_params or name.split(".")[-1].endswith("embedding")


def is_no_decay_official(name: str) -> bool:
    """The ``official`` rule: spare names containing bias / LayerNorm.bias / LayerNorm.weight."""
    return any(key in name for key in ("bias", "LayerNorm.bias", "LayerNorm.weight"))


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


class OfficialWarmupCosine:
    """The official ``warmup_cosine`` on global progress x = step / total (see the module docstring)."""

    def __init__(self, warmup_fraction: float, total: int) -> None:
        if total < 1:
            raise ValueError(f"total steps must be >= 1, got {total}")
        self.warmup_fraction, self.total = warmup_fraction, total

    def __call__(self, step: int) -> float:
        x = step / self.total
        if x < self.warmup_fraction:
            return x / self.warmup_fraction
        return 0.5 * (1.0 + math.cos(math.pi * x))
