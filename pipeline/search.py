"""``macvr search "a query"``: rank the indexed test gallery for a free-text query.

The query goes through the same path as a test caption: CLIP's text encoder, textual tags from
the configured tagger (``params.yaml: tag_text``, offline by default, or the OpenAI-compatible
client with its answer cache), asked at every ``search.temperatures`` value, parsed, cleaned
(``clean_tags``) and merged in temperature order as the clean_tags stage does, then the sentence
of the first M tags (M = the features' ``infer_tags``). The gallery is the features directory's
cached videos of one split (frame features + the first-M visual tag sentence); a finetune-mode
checkpoint re-encodes them with its own CLIP (needs ``--frames``). Scores are exact (the
evaluate stage's chunked scorer); the top-k are printed as a table, or as JSON with ``--json``.
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Optional

import numpy as np
import typer

from pipeline.config import ConfigError, load_section
# The section's config is shared with `macvr index` (pipeline.index.gallery), so it lives in the index package.
from pipeline.index.config import SearchConfig, ShortlistParams  # noqa: F401

log = logging.getLogger(__name__)


# The params section owned by search (it also reads tag_text and clean_tags, owned by their stages).
PARAMS = {"search": SearchConfig}


class SearchError(ValueError):
    """Inputs that do not fit (no gallery, finetune checkpoint without frames, ...)."""


# ----------------------------------------------------------------------------- query tags
def _raw_answers(query: str, params: Path, cfg: SearchConfig) -> list[str]:
    """One raw tagger answer per temperature, in increasing temperature."""
    from pipeline.tags.inputs import Caption
    from pipeline.tags.seeds import derive_seed
    from pipeline.tags.tag_text import TagTextConfig

    text_cfg = load_section(TagTextConfig, "tag_text", params)
    temperatures = sorted(cfg.temperatures)
    item = f"query:{query}"  # the seed depends on the query text only: repeatable answers
    if text_cfg.backend == "offline":
        from pipeline.tags.lexicon import load_lexicon, load_stopwords
        from pipeline.tags.offline_text import tag_caption

        lexicon, stopwords = load_lexicon(text_cfg.offline.lexicon), load_stopwords()
        return [tag_caption(query, t, derive_seed(text_cfg.seed, item, t), lexicon, stopwords, text_cfg.offline)
                for t in temperatures]
    from pipeline.tags.generate import generate_answers
    from pipeline.tags.prompts import load_prompt
    from pipeline.tags.tag_text import SERVE_EXAMPLE_TEXT, start_hint, text_requests

    prompt = load_prompt(text_cfg.prompt)
    requests = [r for t in temperatures for r in text_requests([Caption(item, query)], text_cfg, prompt, t)]
    cache = Path(cfg.cache)
    cache.parent.mkdir(parents=True, exist_ok=True)
    answered = generate_answers(requests, text_cfg.openai, cache, total=len(requests),
                                start_hint=start_hint("tag_text", SERVE_EXAMPLE_TEXT), desc="query tags")
    return [a.answer.response for a in answered if a.ok]  # failed answers give no tags


def query_tags(query: str, params: str | Path, cfg: SearchConfig) -> list[str]:
    """The query's cleaned textual tags, merged over ``cfg.temperatures`` (clean_tags rules)."""
    from pipeline.tags.clean import CleanConfig, TagCleaner, merge_ordered
    from pipeline.tags.lexicon import load_stopwords
    from pipeline.tags.parse import parse_response
    from pipeline.tags.pos import load_pos_tagger

    params = Path(params)
    clean_cfg = load_section(CleanConfig, "clean_tags", params)
    answers = _raw_answers(query, params, cfg)
    cleaner = TagCleaner(clean_cfg, load_stopwords(clean_cfg.stopwords),
                         load_pos_tagger(clean_cfg.pos_model) if clean_cfg.drop_noun_verb else None)
    return merge_ordered(cleaner.clean(parse_response(a).items) for a in answers)


# ----------------------------------------------------------------------------- gallery
@dataclass(frozen=True)
class Hit:
    rank: int
    video_id: str
    score: float
    path: str
    visual_tags: list[str]


def _encode_query(query: str, tags: list[str], encoder, m: int, max_words: int):
    import torch

    from pipeline.tags.sentences import infer_sentence

    with torch.no_grad():
        encoded = encoder.encode_texts([query, infer_sentence(tags, m)], max_words)
    return encoded[:1], encoded[1:]


def _hits(ids: list[str], rows, scores, paths: dict, visual: dict, m: int) -> list[dict]:
    return [Hit(rank=i + 1, video_id=ids[j], score=float(s), path=str(paths.get(ids[j], "")),
                visual_tags=list(visual.get(ids[j], []))[:m]).__dict__ for i, (j, s) in enumerate(zip(rows, scores))]


def search_gallery(query: str, *, top_k: int, params: Path, gallery: Path, candidates: int | None = None
                   ) -> dict[str, Any]:
    """Search a ``macvr index`` gallery: two stages above ``search.shortlist.threshold``, else exact."""
    import torch

    from pipeline.device import resolve_device
    from pipeline.evaluation.trained import TrainedModel
    from pipeline.index.gallery import read_gallery
    from pipeline.index.shortlist import ShortlistIndex

    cfg = load_section(SearchConfig, "search", params)
    meta = read_gallery(gallery)
    device = resolve_device(cfg.device, "search.device")
    model = TrainedModel.load(gallery / "model.pt", device)
    if model.finetuned:
        encoder = model.backbone
    else:
        from pipeline.backbone.io import load_backbone

        encoder = load_backbone(gallery / "backbone.pt", device)
    index = ShortlistIndex.load(gallery / "shortlist")
    tags = query_tags(query, params, cfg) if model.config.use_textual_tags else []
    m = int(meta["infer_tags"])
    text, tags_t = _encode_query(query, tags, encoder, m, model.max_words)
    tags_t = tags_t.cpu().numpy() if model.config.use_textual_tags else None
    two_stage = len(index) > cfg.shortlist.threshold
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one query's re-ranking is small: intra-op threads cost more than they save
    try:
        if two_stage:
            rows, scores = index.search(model.head, text.cpu().numpy(), tags_t, top_k=top_k,
                                        candidates=candidates or cfg.shortlist.candidates)
        else:
            rows, scores = index.exhaustive(model.head, text.cpu().numpy(), tags_t, top_k=top_k)
    finally:
        torch.set_num_threads(threads)
    tag_table = {}
    tags_file = gallery / "tags" / "tags.parquet"
    if tags_file.is_file():
        from pipeline.tags.table import read_tags

        tag_table = read_tags(tags_file).visual
    ids, paths = meta["ids"], dict(zip(meta["ids"], meta["paths"]))
    return {"query": query, "textual_tags": tags, "model": str(gallery / "model.pt"), "variant": model.variant,
            "split": "gallery", "gallery": len(ids), "search": "two-stage" if two_stage else "exact",
            "results": _hits(ids, rows[0], scores[0], paths, tag_table, m)}


def run_search(query: str, *, top_k: int, params: Path, model_path: Path, backbone: Path, features: Path,
               tags_path: Path, videos_path: Path, frames: Path | None = None, split: str = "test",
               batch: int = 64) -> dict[str, Any]:
    """Everything ``macvr search`` prints, as a dict (query, its tags, the top-k hits), searching
    the features directory's ``split`` exactly."""
    from pipeline.device import resolve_device
    from pipeline.evaluation.trained import ItemSources, ScoringInputError, TrainedModel
    from pipeline.features.store import load_features
    from pipeline.tags.sentences import infer_sentence
    from pipeline.io import read_parquet
    from pipeline.scoring import score_matrix
    from pipeline.tags.table import read_tags
    from pipeline.text import TextConfig

    if not query.strip():
        raise SearchError("the query is empty")
    if top_k < 1:
        raise SearchError(f"--top-k must be >= 1, got {top_k}")
    cfg = load_section(SearchConfig, "search", params)
    max_words = load_section(TextConfig, "text", params).max_words
    device = resolve_device(cfg.device, "search.device")
    model = TrainedModel.load(model_path, device)
    store = load_features(features)
    videos = store.videos if split == "all" else store.videos[store.videos["split"] == split]
    if videos.empty:
        raise SearchError(f"the features directory has no {split!r} videos to search")
    if len(videos) > cfg.shortlist.threshold:
        log.warning("%d videos: exact search of every video is slow at this size; build a two-stage index once "
                    "with `macvr index --features %s --split %s` and search it with --index", len(videos), features,
                    split)
    ids = [str(v) for v in videos["video_id"]]
    try:
        model.check_features(store)
        text_encoder = model.text_backbone(backbone, store, device)
        gallery = model.video_set(store, videos["row"].to_numpy(dtype=np.int64), ids,
                                  ItemSources(frames=frames, tags=tags_path, batch_size=batch), "gallery")
    except ScoringInputError as err:
        raise SearchError(str(err)) from None
    uses_text_tags = model.config.use_textual_tags
    tags = query_tags(query, params, cfg) if uses_text_tags else []
    m = int(store.meta["infer_tags"])
    text, tags_t = _encode_query(query, tags, text_encoder, m, max_words)
    # One query against the gallery: the pooled form is the exact scorer for few captions x many videos.
    scores = score_matrix(model.head, text, gallery.frames, gallery.mask, gallery.tags,
                          tags_t if uses_text_tags else None, method="pooled",
                          out=np.empty((1, len(ids)), dtype=np.float32))[0]
    order = np.argsort(-scores, kind="stable")[:top_k]
    paths = read_parquet(videos_path, columns=["video_id", "path"]).set_index("video_id")["path"].to_dict()
    return {"query": query, "textual_tags": tags, "tag_sentence": infer_sentence(tags, m) if uses_text_tags else None,
            "model": str(model_path), "variant": model.variant, "split": split, "gallery": len(ids), "search": "exact",
            "results": _hits(ids, order, scores[order], paths, read_tags(tags_path).visual, m)}


# ----------------------------------------------------------------------------- CLI
def _print_table(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    tags = escape(", ".join(result["textual_tags"]) or "(none)")
    console.print(f"[bold]{escape(result['query'])}[/bold]  ({result['variant']}, {result['gallery']} "
                  f"{result['split']} videos)\ntextual tags: {tags}", highlight=False)
    table = Table(show_lines=False)
    for name, kw in (("#", {"justify": "right"}), ("video", {}), ("score", {"justify": "right"}),
                     ("path", {"overflow": "fold"}), ("visual tags", {"overflow": "fold"})):
        table.add_column(name, **kw)
    for h in result["results"]:
        table.add_row(str(h["rank"]), escape(h["video_id"]), f"{h['score']:.4f}", escape(h["path"]),
                      escape(", ".join(h["visual_tags"])))
    console.print(table)


def search(
    query: Annotated[str, typer.Argument(help="Free-text query, e.g. \"a red circle moves left\".")],
    top_k: Annotated[int, typer.Option("--top-k", "-k", min=1, help="How many videos to list.")] = 10,
    params: Annotated[Path, typer.Option(
        help="params.yaml (sections search, text, tag_text, clean_tags).")] = Path("params.yaml"),
    model: Annotated[Path, typer.Option(help="Trained checkpoint.")] = Path("models/macvr/model.pt"),
    backbone: Annotated[Path, typer.Option(
        help="Backbone weights that encoded the features.")] = Path("models/backbone.pt"),
    features: Annotated[Path, typer.Option(help="Features directory (the indexed gallery).")] = Path("data/features"),
    tags: Annotated[Path, typer.Option(
        help="tags.parquet (the gallery's visual tags).")] = Path("data/tags/tags.parquet"),
    videos: Annotated[Path, typer.Option(help="videos.parquet (video paths).")] = Path("data/prepared/videos.parquet"),
    frames: Annotated[Optional[Path], typer.Option(help="Frames dir; only for finetune-mode checkpoints.")] = None,
    split: Annotated[str, typer.Option(help="Gallery split: test, train, val or all.")] = "test",
    index: Annotated[Optional[Path], typer.Option(
        help="A gallery built by `macvr index` (any folder of videos): searched two-stage above "
             "search.shortlist.threshold videos, exactly below. Replaces --model/--features/--tags.")] = None,
    candidates: Annotated[Optional[int], typer.Option(
        min=1, help="Two-stage search: videos re-scored exactly per query (default: search.shortlist.candidates).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (machine-readable) instead of a table.")] = False,
) -> None:
    """Rank the indexed gallery for a free-text query with a trained DiCoSA / MAC-VR checkpoint."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    # Expected failures (bad params, missing inputs, a tag server that never answers) are one line.
    expected = (ValueError, OSError, RuntimeError)
    try:
        if not query.strip():
            raise SearchError("the query is empty")
        if index is not None:
            result = search_gallery(query, top_k=top_k, params=params, gallery=index, candidates=candidates)
        else:
            result = run_search(query, top_k=top_k, params=params, model_path=model, backbone=backbone,
                                features=features, tags_path=tags, videos_path=videos, frames=frames, split=split)
    except expected as err:
        typer.echo(f"search: {err}", err=True)
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(json.dumps(result, indent=2))
    else:
        _print_table(result)
