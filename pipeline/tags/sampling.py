"""Temperature-controlled, seeded choice of a top-N tag list from scored concepts.

The offline taggers mimic what sampling does to an LLM's answer: at low temperature the most
salient concepts come first in their most typical phrasing; as the temperature rises the order
gets noisier (Gumbel noise scaled by T), rarer synonyms are picked more often, a concept is
sometimes named twice, and a generic filler tag slips in more often. Like an LLM asked for a
top 10 about a simple input, a short list is padded first with further synonyms of what was
seen, and only then with generic fillers. The same seed gives the same answer; different
(item, temperature) seeds give different ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SamplingConfig:
    num_tags: int  # tags per answer (the paper's prompt asks for the top 10)
    order_noise: float  # Gumbel scale on salience at T = 1
    synonym_decay: float  # logit drop per synonym rank at T = 1
    extra_synonym_prob: float  # chance, times T, to list a second phrasing of a concept
    filler_prob: float  # chance, times T, that one generic filler slips in at a random place

    def __post_init__(self) -> None:
        if self.num_tags < 1:
            raise ValueError(f"num_tags must be >= 1, got {self.num_tags}")
        if self.order_noise < 0 or self.synonym_decay < 0:
            raise ValueError("order_noise and synonym_decay must be >= 0")
        for name in ("extra_synonym_prob", "filler_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")


@dataclass(frozen=True)
class Concept:
    """A detected concept: how salient it is and how it may be phrased (most typical first)."""

    name: str
    salience: float
    phrases: tuple[str, ...]


def _pick(n: int, decay: float, temperature: float, rng: np.random.Generator,
          exclude: int | None = None) -> int:
    logits = -np.arange(n, dtype=np.float64) * decay / temperature
    if exclude is not None:
        logits[exclude] = -np.inf
    p = np.exp(logits - logits.max())
    return int(rng.choice(n, p=p / p.sum()))


def sample_tags(concepts: Sequence[Concept], fillers: Sequence[str], temperature: float,
                rng: np.random.Generator, cfg: SamplingConfig) -> list[str]:
    """Up to ``cfg.num_tags`` distinct tags, most salient (after noise) first."""
    t = max(float(temperature), 1e-3)  # T = 0 would be greedy: no noise, canonical phrasing
    n_tags = cfg.num_tags
    keys = np.array([c.salience for c in concepts]) + cfg.order_noise * t * rng.gumbel(size=len(concepts))
    order = [concepts[int(i)] for i in np.argsort(-keys, kind="stable")]
    tags: list[str] = []
    used: list[set[int]] = []
    for concept in order:  # one phrasing per concept, sometimes two
        n = len(concept.phrases)
        first = _pick(n, cfg.synonym_decay, t, rng)
        picked = {first}
        if n > 1 and rng.random() < min(1.0, cfg.extra_synonym_prob * t):
            picked.add(_pick(n, cfg.synonym_decay, t, rng, exclude=first))
        used.append(picked)
        tags.extend(concept.phrases[j] for j in sorted(picked, key=lambda j: j != first))
    for concept, picked in zip(order, used):  # pad with the remaining phrasings, shuffled
        rest = [p for j, p in enumerate(concept.phrases) if j not in picked]
        tags.extend(rest[int(i)] for i in rng.permutation(len(rest)))
    tags = list(dict.fromkeys(tags))[:n_tags]
    spare = [f for f in fillers if f not in tags]
    spare = [spare[int(i)] for i in rng.permutation(len(spare))]
    if spare and tags and rng.random() < min(1.0, cfg.filler_prob * t):
        position = int(rng.integers(1, len(tags) + 1))  # never first: the top tag is a real one
        tags = (tags[:position] + [spare.pop(0)] + tags[position:])[:n_tags]
    tags += spare[: max(0, n_tags - len(tags))]
    return tags


def bullet_list(tags: Sequence[str]) -> str:
    """The answer text, in the bullet form the paper's video prompt asks for."""
    return "\n".join(f"- {t}" for t in tags)
