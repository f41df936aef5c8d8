"""Typed configuration of the ``report`` stage (``params.yaml: report``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class TsneConfig:
    """t-SNE of the K textual and K visual concepts of test pairs (paper Fig. 6).

    max_pairs: test (caption, video) pairs embedded: the first caption of each of the first
        ``max_pairs`` test videos (2 * K points per pair; t-SNE time grows ~ quadratically).
    perplexity: t-SNE perplexity (lowered automatically below the point count).
    max_iter: optimisation steps. seed: the initialisation's random state.
    """

    max_pairs: int
    perplexity: float
    max_iter: int
    seed: int

    def __post_init__(self) -> None:
        if self.max_pairs < 2:
            raise ValueError(f"tsne.max_pairs must be >= 2, got {self.max_pairs}")
        if not self.perplexity > 0:
            raise ValueError(f"tsne.perplexity must be > 0, got {self.perplexity}")
        if self.max_iter < 250:
            raise ValueError(f"tsne.max_iter must be >= 250 (scikit-learn's minimum), got {self.max_iter}")


@dataclass(frozen=True)
class QualitativeConfig:
    """Queries whose rank changes most between the baseline and MAC-VR (paper Fig. 5 and 15).

    strategy: whose ranks are compared and listed (``none``, ``dsl`` or ``qb``).
    improved / worsened: how many queries MAC-VR ranks better / worse than the baseline.
    top_videos: top-ranked videos listed per query and variant (at most evaluate.top_k).
    max_tags: tags shown per item. frames_shown: frames of the ground-truth video shown.
    """

    strategy: str
    improved: int
    worsened: int
    top_videos: int
    max_tags: int
    frames_shown: int

    def __post_init__(self) -> None:
        from pipeline.retrieval import STRATEGIES

        STRATEGIES.get(self.strategy)  # RegistryError naming the registered strategies
        for name in ("improved", "worsened"):
            if getattr(self, name) < 0:
                raise ValueError(f"qualitative.{name} must be >= 0, got {getattr(self, name)}")
        for name in ("top_videos", "max_tags", "frames_shown"):
            if getattr(self, name) < 1:
                raise ValueError(f"qualitative.{name} must be >= 1, got {getattr(self, name)}")


@dataclass(frozen=True)
class ReportConfig:
    """candidate: the variant shown against the baseline (``compare.baseline``) in the metrics,
        t-SNE and qualitative sections (every variant is in the compare stage's tables).
    top_tags: bars per tag histogram (the paper shows the top 250).
    tag_splits: splits with a histogram per modality (e.g. [train, test]).
    device: where the two heads compute the t-SNE concepts. dpi: PNG resolution."""

    candidate: str
    top_tags: int
    tag_splits: list[str]
    tsne: TsneConfig
    qualitative: QualitativeConfig
    device: Literal["auto", "cpu", "cuda"]
    dpi: int

    def __post_init__(self) -> None:
        if self.top_tags < 1:
            raise ValueError(f"report.top_tags must be >= 1, got {self.top_tags}")
        if not self.tag_splits or len(set(self.tag_splits)) != len(self.tag_splits):
            raise ValueError(f"report.tag_splits must be a non-empty list without repeats, got {self.tag_splits}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"report.device must be auto, cpu or cuda, got {self.device!r}")
        if self.dpi < 10:
            raise ValueError(f"report.dpi must be >= 10, got {self.dpi}")
