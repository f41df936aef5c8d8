"""Stage ``features``: frozen backbone features of frames, captions and tag sentences.

python -m stages.features --params params.yaml --backbone models/backbone.pt --frames data/frames \
    --videos data/prepared/videos.parquet --captions data/prepared/captions.parquet \
    --tags data/tags/tags.parquet --out data/features
"""

from __future__ import annotations

from pathlib import Path

import typer

from pipeline.config import load_section
from pipeline.features.config import FeaturesConfig
from pipeline.features.extract import extract_features
from pipeline.sharding import current_shard, finish
from pipeline.tags.tag_video import TagVideoConfig
from pipeline.text import TextConfig
from stages.common import remove_stale, run, stage_config

# The params sections this stage reads (tag_video: the offline tagger's vocabulary and seeds, for
# the oracle tag control).
PARAMS = {"features": FeaturesConfig, "text": TextConfig, "tag_video": TagVideoConfig}

app = typer.Typer(add_completion=False)


def _oracle(config: FeaturesConfig, params: Path, videos: Path):
    """The oracle's visual tags: the synthetic truth beside ``videos`` in the offline tagger's words."""
    from functools import partial

    from pipeline.data.synth_oracle import load_truth
    from pipeline.data.synthetic import TRUTH_FILE
    from pipeline.features.tag_control import oracle_visual_tags
    from pipeline.tags.lexicon import load_lexicon

    truth = videos.parent / TRUTH_FILE
    if not truth.is_file():
        raise FileNotFoundError(f"{truth}: tag_control 'oracle' needs the synthetic dataset's ground truth")
    tag_video = load_section(TagVideoConfig, "tag_video", params)
    return partial(oracle_visual_tags, truth=load_truth(truth), lexicon=load_lexicon(tag_video.offline.lexicon),
                   cfg=tag_video.offline, base_seed=tag_video.seed)


@app.command()
def main(
    params: Path = typer.Option(Path("params.yaml"), help="params file (sections 'features', 'text')"),
    backbone: Path = typer.Option(..., help="backbone weights file"),
    frames: Path = typer.Option(..., help="frames dir (clip_frames.npy, clip_mask.npy, index.parquet)"),
    videos: Path = typer.Option(..., help="videos.parquet (splits)"),
    captions: Path = typer.Option(..., help="captions.parquet"),
    tags: Path = typer.Option(..., help="tags.parquet (cleaned visual and textual tags)"),
    aux_captions: Path = typer.Option(None, help="data/aux/captions.parquet (features.auxiliary: captions)"),
    out: Path = typer.Option(..., help="features dir, replaced whole"),
) -> None:
    """Encode every decoded video's frames, every caption and every tag sentence once.

    Sharded over several workers with the same arguments: ``torchrun --nproc_per_node=G -m stages.features ...``.
    """
    config = stage_config(FeaturesConfig, "features", params, checks=PARAMS)
    remove_stale(out)
    text = load_section(TextConfig, "text", params)
    oracle = run("features", _oracle, config, params, videos) if config.tag_control == "oracle" else None
    shard = run("features", current_shard)
    try:
        meta = run("features", extract_features, config, text, backbone, frames, videos, captions, tags, out,
                   shard=shard, oracle=oracle, aux_captions_path=aux_captions)
    finally:
        finish(shard)
    if meta is None:  # not rank 0
        return
    counts = meta["counts"]
    typer.echo(f"{out}: {counts['videos']} videos, {counts['captions']} captions, "
               f"{counts['distinct_texts']} distinct texts, D={meta['dim']}")


if __name__ == "__main__":
    app()
