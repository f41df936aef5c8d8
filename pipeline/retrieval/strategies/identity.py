"""``none``: rank the raw similarity matrix."""

from __future__ import annotations

import numpy as np

from pipeline.retrieval.strategies.base import Direction, NoParams, Rescored, Strategy, register_strategy


@register_strategy
class Raw(Strategy):
    name, label, description = "none", "none", "raw scores"

    def apply(self, sim: np.ndarray, direction: Direction, params: NoParams,
              querybank: np.ndarray | None = None) -> Rescored:
        return Rescored(sim)
