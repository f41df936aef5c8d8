"""What an inference strategy is, and the registry every consumer discovers strategies from.

A strategy re-scores a similarity matrix in *query orientation* (rows = queries, columns =
gallery items) before ranking: text-to-video passes ``S`` (captions x videos), video-to-text
``S.T`` (videos x captions). It returns a matrix ranked row by row like the input, plus
diagnostics that go into the metrics (e.g. how many rows QB-Norm normalised).

Adding a strategy: one module in this package defining a :class:`Strategy` subclass decorated
with ``@register_strategy``, and one import line in ``__init__.py``. Its knobs are a
frozen dataclass (``params_type``) filled from ``params.yaml: evaluate.retrieval.strategies.<name>``;
``reference()`` gives the official MAC-VR / DiCoSA values (used by ``macvr metrics``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np

from pipeline.registry import Registry

Direction = Literal["t2v", "v2t"]
DIRECTIONS: tuple[Direction, ...] = ("t2v", "v2t")


@dataclass(frozen=True)
class NoParams:
    """A strategy without knobs (its params.yaml entry is ``{}``)."""


@dataclass(frozen=True)
class Rescored:
    """A re-scored matrix (query orientation) and what the strategy reports about it."""

    scores: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)


class Strategy(ABC):
    """One inference strategy. Subclasses set the class attributes and implement ``apply``."""

    name: ClassVar[str]
    label: ClassVar[str]          # for tables and plot legends
    description: ClassVar[str]    # one line, for CLI help
    params_type: ClassVar[type] = NoParams
    needs_querybank: ClassVar[bool] = False

    @classmethod
    def reference(cls) -> Any:
        """The official MAC-VR evaluation settings of this strategy's knobs."""
        return cls.params_type()

    @abstractmethod
    def apply(self, sim: np.ndarray, direction: Direction, params: Any,
              querybank: np.ndarray | None = None) -> Rescored:
        """Re-score ``sim`` (query orientation). ``querybank``: querybank queries x the same
        gallery items (only for strategies with ``needs_querybank``)."""


STRATEGIES: Registry[Strategy] = Registry("inference strategy", "pipeline/retrieval/strategies/")


def register_strategy(cls: type[Strategy]) -> type[Strategy]:
    """Class decorator: register one instance of ``cls`` under ``cls.name``."""
    STRATEGIES.register(cls.name, cls())
    return cls
