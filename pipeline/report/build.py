"""The report stage: tag histograms, concept t-SNE, qualitative ranks, metrics of both variants.

Output directory (replaced whole)::

    index.html, summary.md, report.json       the page, the Markdown summary, everything as data
    recall_comparison.png                     recall@K of both variants, every strategy
    tags/<modality>_<split>.png / .csv        top tag histograms and the full counts
    concepts_tsne.png                         t-SNE of textual and visual concepts, per variant
    qualitative.png, qualitative/<n>.png      rank changes baseline -> MAC-VR, ground-truth frames
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np

from pipeline.device import resolve_device
from pipeline.evaluation.items import EvalRows, select_rows
from pipeline.evaluation.outputs import DIRECTION_LABELS, log_k_axis, recall_curve, save_figure, write_csv
from pipeline.evaluation.results import EvalResult
from pipeline.evaluation.sets import TextSet, VideoSet
from pipeline.evaluation.trained import ItemSources, ScoringInputError, TrainedModel
from pipeline.features.store import FeatureStore, load_features
from pipeline.io import atomic_dir, atomic_path, read_parquet, write_json
from pipeline.report.concepts import pair_concepts, plot_tsne, separation, tsne_map
from pipeline.report.config import ReportConfig
from pipeline.report.page import html_page, markdown
from pipeline.report.qualitative import build_examples, frame_strip, plot_examples, select_examples
from pipeline.report.tag_histograms import MODALITIES, plot_tag_histogram, tag_counts, tag_statistics
from pipeline.retrieval import strategy_label
from pipeline.tags.table import read_tags

log = logging.getLogger(__name__)


class ReportError(ValueError):
    """A missing or inconsistent input of the report."""


def _eval_dirs(eval_dir: Path, variants: tuple[str, str]) -> dict[str, Path]:
    dirs = {v: eval_dir / v for v in variants}
    for v, d in dirs.items():
        if not (d / "metrics.json").is_file():
            raise ReportError(f"{d}/metrics.json not found: run the evaluate stage for {v} first")
    return dirs


def recall_figure(eval_dirs: dict[str, Path], counts: dict[str, dict], path: Path, dpi: int) -> None:
    """recall@K curves (K log-spaced up to the gallery size) of both variants and all strategies."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11.0, 4.2))
    axes = fig.subplots(1, 2)
    colours = colormaps["tab10"]
    for ax, direction in zip(axes, ("t2v", "v2t")):
        gallery = 1
        for style, (variant, eval_path) in zip(("--", "-"), eval_dirs.items()):
            result = EvalResult.read(eval_path)
            strategies = result.strategies(direction)
            ranks = result.ranks[direction]
            gallery = int(counts[variant]["test_videos" if direction == "t2v" else "test_captions"])
            ks = np.unique(np.geomspace(1, max(gallery, 2), 32).round().astype(int)).tolist()
            curve = recall_curve({s: ranks[s].to_numpy() for s in strategies}, ks)
            for i, s in enumerate(strategies):
                ax.plot(curve["K"], curve[s], style, color=colours(i), label=f"{variant} {strategy_label(s)}")
        log_k_axis(ax, gallery)
        ax.set_ylim(0, 100.5)
        ax.set_xlabel("K")
        ax.set_ylabel("recall@K (%)")
        ax.set_title(DIRECTION_LABELS[direction])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    save_figure(fig, path, dpi)


def tag_section(config: ReportConfig, tags_path: Path, out: Path) -> tuple[list[dict], list[dict]]:
    """Histogram PNG + full counts CSV per modality and split; the statistics table."""
    tags = read_parquet(tags_path, columns=["item_id", "modality", "split", "tags"])
    (out / "tags").mkdir()
    figures = []
    for modality in MODALITIES:
        for split in config.tag_splits:
            counts = tag_counts(tags, modality, split)
            name = f"tags/{modality}_{split}"
            write_csv(counts, out / f"{name}.csv")
            plot_tag_histogram(counts, config.top_tags, f"{modality} tags, {split}", out / f"{name}.png", config.dpi)
            figures.append({"modality": modality, "split": split, "png": f"{name}.png", "csv": f"{name}.csv"})
    return figures, tag_statistics(tags, config.tag_splits)


def tsne_pairs(store: FeatureStore, max_pairs: int) -> EvalRows:
    """The first test caption of each of the first ``max_pairs`` gallery videos (matched pairs)."""
    rows = select_rows(store.videos, store.captions_index, querybank_size=0)
    _, first = np.unique(rows.caption_video, return_index=True)  # first caption of each column
    first = first[:max_pairs]
    cols = rows.caption_video[first]
    return EvalRows(test_videos=rows.test_videos[cols], test_captions=rows.test_captions[first],
                    caption_video=np.arange(len(first), dtype=np.int64),
                    qb_captions=np.zeros(0, np.int64), qb_videos=np.zeros(0, np.int64),
                    video_ids=[rows.video_ids[c] for c in cols], caption_ids=[rows.caption_ids[i] for i in first],
                    qb_caption_ids=[], qb_caption_videos=[], qb_video_ids=[])


def _pair_sets(model: TrainedModel, store: FeatureStore, pairs: EvalRows,
               sources: ItemSources) -> tuple[TextSet, VideoSet]:
    try:
        return (model.text_set(store, pairs.test_captions, pairs.caption_ids, sources, "t-SNE captions"),
                model.video_set(store, pairs.test_videos, pairs.video_ids, sources, "t-SNE videos"))
    except ScoringInputError as err:
        raise ReportError(str(err)) from None


def concept_section(config: ReportConfig, variants: tuple[str, str], models_dir: Path, features_dir: Path,
                    sources: ItemSources, out: Path) -> dict:
    device = resolve_device(config.device, "report.device")
    store = load_features(features_dir)
    pairs = tsne_pairs(store, config.tsne.max_pairs)
    maps, silhouette, concepts = {}, {}, {}
    for variant in variants:
        model = TrainedModel.load(models_dir / variant / "model.pt", device)
        texts, videos = _pair_sets(model, store, pairs, sources)
        concepts[variant] = pair_concepts(model.head, texts, videos)
        silhouette[variant] = separation(concepts[variant])
        xy = tsne_map(concepts[variant], config.tsne.perplexity, config.tsne.max_iter, config.tsne.seed)
        label = "baseline" if variant == variants[0] else "candidate"
        maps[f"{variant} ({label})"] = (xy, concepts[variant])
    plot_tsne(maps, out / "concepts_tsne.png", config.dpi)
    note = ""
    if np.allclose(concepts[variants[0]].text, concepts[variants[1]].text, atol=1e-5):
        note = ("The textual concepts are identical for both variants: with frozen CLIP features and the "
                "chunk concept split, e_t^k is a fixed slice of the caption feature. Only the visual concepts "
                "(frames through the trained temporal transformer, pooled by the caption) differ.")
    return {"pairs": len(pairs.caption_ids), "silhouette": silhouette, "note": note}


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def qualitative_section(config: ReportConfig, eval_dirs: dict[str, Path], captions_path: Path, tags_path: Path,
                        frames_dir: Path | None, out: Path) -> dict:
    from PIL import Image

    from pipeline.frames.store import FrameStore

    q = config.qualitative
    base, cand = list(eval_dirs)
    results = {v: EvalResult.read(d) for v, d in eval_dirs.items()}
    selected = select_examples(results[base].ranks["t2v"], results[cand].ranks["t2v"], q.strategy, q.improved,
                               q.worsened)
    captions = read_parquet(captions_path, columns=["caption_id", "text"])
    texts = dict(zip(captions["caption_id"].astype(str), captions["text"].astype(str)))
    tops = {v: read_parquet(d / "top_t2v.parquet") for v, d in eval_dirs.items()}
    examples = build_examples(selected, texts, read_tags(tags_path), tops, q.strategy, q.top_videos, q.max_tags)
    frames = FrameStore(frames_dir) if frames_dir is not None else None
    strips = {ex.video_id: frame_strip(frames, ex.video_id, q.frames_shown) if frames else None for ex in examples}
    plot_examples(examples, strips, (base, cand), out / "qualitative.png", config.dpi)
    (out / "qualitative").mkdir()
    records = []
    for i, ex in enumerate(examples):
        record = ex.as_dict()
        strip = strips.get(ex.video_id)
        if strip is not None:
            name = f"qualitative/{i:02d}_{_safe(ex.video_id)}.png"
            image = Image.fromarray(strip)
            scale = max(1, 96 // strip.shape[0])  # small CLIP crops: enlarge, pixel-exact
            image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
            with atomic_path(out / name) as tmp:
                image.save(tmp, format="PNG")
            record["strip"] = name
        records.append(record)
    return {"strategy": q.strategy, "examples": records}


def build_report(config: ReportConfig, baseline: str, tags_path: str | Path, eval_dir: str | Path,
                 models_dir: str | Path, features_dir: str | Path, captions_path: str | Path, out: str | Path,
                 frames_dir: str | Path | None = None, tables: str | Path | None = None) -> dict:
    """Write the report directory; returns the report dict (also saved as report.json).

    ``baseline`` (``compare.baseline``) and ``config.candidate`` are the two variants shown
    side by side; ``tables`` (the compare stage's Markdown) adds the tables of every variant.
    """
    variants = (baseline, config.candidate)
    eval_dirs = _eval_dirs(Path(eval_dir), variants)
    frames_dir = None if frames_dir is None else Path(frames_dir)
    evaluated = {v: EvalResult.read(d) for v, d in eval_dirs.items()}
    report: dict = {"variants": list(variants), "metrics": {v: e.metrics for v, e in evaluated.items()},
                    "counts": {v: e.info["counts"] for v, e in evaluated.items()},
                    "tables": Path(tables).read_text() if tables is not None and Path(tables).is_file() else ""}
    sources = ItemSources(frames=frames_dir, captions=Path(captions_path), tags=Path(tags_path))
    with atomic_dir(out) as tmp:
        recall_figure(eval_dirs, report["counts"], tmp / "recall_comparison.png", config.dpi)
        tag_figures, report["tag_stats"] = tag_section(config, Path(tags_path), tmp)
        report["concepts"] = concept_section(config, variants, Path(models_dir), Path(features_dir), sources, tmp)
        report["qualitative"] = qualitative_section(config, eval_dirs, Path(captions_path), Path(tags_path),
                                                    frames_dir, tmp)
        report["figures"] = {"recall": "recall_comparison.png", "tsne": "concepts_tsne.png",
                             "qualitative": "qualitative.png", "tags": tag_figures}
        write_json(report, tmp / "report.json")
        with atomic_path(tmp / "summary.md") as f:
            f.write_text(markdown(report))
        with atomic_path(tmp / "index.html") as f:
            f.write_text(html_page(report))
    return report

