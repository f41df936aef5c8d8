"""Stage caption_video: visual auxiliary captions of every video (paper Tab. 7, Appx. G).

Works only when ``features.auxiliary.visual`` is ``captions``; otherwise it writes an empty
placeholder at once, so the default run (tags) asks no model.
"""

from __future__ import annotations

from pathlib import Path

import typer

from pipeline.aux_captions.config import CaptionVideoConfig
from pipeline.config import load_section
from pipeline.tags.offline_visual import ANALYSIS_PARAMS
from pipeline.tags.tag_video import TagVideoConfig
from stages.common import auxiliary_source, remove_stale, run, stage_config

# The params this stage reads (dvc.yaml contract): its section, the offline tagger's pixel
# analysis (the offline captioner sees frames through it; not the knobs of drawing tags from it,
# so a Tab. 6 tagger change leaves the captions alone), and whether the model reads captions.
PARAMS = {"caption_video": CaptionVideoConfig, **dict.fromkeys(ANALYSIS_PARAMS),
          "features.auxiliary.visual": None}

app = typer.Typer(add_completion=False)


@app.command()
def main(
    params: Path = typer.Option(Path("params.yaml"),
                                help="params file (caption_video, tag_video.offline analysis, features.auxiliary)"),
    frames: Path = typer.Option(..., help="data/frames/vlm_frames.parquet"),
    cache: Path = typer.Option(..., help="answer cache (SQLite), kept outside DVC outs"),
    out: Path = typer.Option(..., help="raw answers Parquet, e.g. data/aux/raw/visual.parquet"),
) -> None:
    from pipeline.aux_captions.generate import caption_videos, write_placeholder

    cfg = stage_config(CaptionVideoConfig, "caption_video", params)
    remove_stale(out)
    if run("caption_video", auxiliary_source, params, "visual") != "captions":
        write_placeholder(out)
        typer.echo(f"caption_video: features.auxiliary.visual is tags; nothing to generate (empty {out})")
        return
    analysis = run("caption_video", load_section, TagVideoConfig, "tag_video", params).offline
    rows = run("caption_video", caption_videos, cfg, analysis, frames, cache, out)
    typer.echo(f"caption_video: {sum(r.tagged for r in rows)} of {len(rows)} videos captioned -> {out}")


if __name__ == "__main__":
    app()
