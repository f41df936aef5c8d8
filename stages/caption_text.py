"""Stage caption_text: textual auxiliary captions (paraphrases) of every caption (paper Tab. 7, Appx. G).

Works only when ``features.auxiliary.textual`` is ``captions``; otherwise it writes an empty
placeholder at once, so the default run (tags) asks no model.
"""

from __future__ import annotations

from pathlib import Path

import typer

from pipeline.aux_captions.config import CaptionTextConfig
from stages.common import auxiliary_source, remove_stale, run, stage_config

# The params this stage reads (dvc.yaml contract): its section and whether the model reads captions.
PARAMS = {"caption_text": CaptionTextConfig, "features.auxiliary.textual": None}

app = typer.Typer(add_completion=False)


@app.command()
def main(
    params: Path = typer.Option(Path("params.yaml"), help="params file (caption_text, features.auxiliary)"),
    captions: Path = typer.Option(..., help="data/prepared/captions.parquet"),
    cache: Path = typer.Option(..., help="answer cache (SQLite), kept outside DVC outs"),
    out: Path = typer.Option(..., help="raw answers Parquet, e.g. data/aux/raw/textual.parquet"),
) -> None:
    from pipeline.aux_captions.generate import caption_texts, write_placeholder

    cfg = stage_config(CaptionTextConfig, "caption_text", params)
    remove_stale(out)
    if run("caption_text", auxiliary_source, params, "textual") != "captions":
        write_placeholder(out)
        typer.echo(f"caption_text: features.auxiliary.textual is tags; nothing to generate (empty {out})")
        return
    rows = run("caption_text", caption_texts, cfg, captions, cache, out)
    typer.echo(f"caption_text: {sum(r.tagged for r in rows)} of {len(rows)} captions paraphrased -> {out}")


if __name__ == "__main__":
    app()
