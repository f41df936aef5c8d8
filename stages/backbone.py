"""Stage ``backbone``: the backbone weights file every later stage loads.

python -m stages.backbone --params params.yaml --frames data/frames \
    --captions data/prepared/captions.parquet --tags data/tags/tags.parquet \
    --out models/backbone.pt --metrics metrics/backbone.json
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from pipeline.backbone.build import build_backbone
from pipeline.backbone.config import BackboneConfig
from pipeline.config import load_section
from pipeline.io import write_json
from pipeline.text import TextConfig
from stages.common import remove_stale, run, stage_config

PARAMS = {"backbone": BackboneConfig, "text": TextConfig}  # the params sections this stage reads

app = typer.Typer(add_completion=False)


@app.command()
def main(
    params: Path = typer.Option(Path("params.yaml"), help="params file (sections 'backbone', 'text')"),
    frames: Path = typer.Option(..., help="frames dir (tiny pretraining and its evaluation)"),
    captions: Path = typer.Option(..., help="captions.parquet (tiny pretraining)"),
    tags: Optional[Path] = typer.Option(None, help="tags.parquet (the tiny backbone's tag terms)"),
    out: Path = typer.Option(..., help="weights file to write"),
    metrics: Optional[Path] = typer.Option(None, help="metrics JSON to write"),
) -> None:
    """Pretrain the tiny CLIP, or load and verify official / open_clip weights, into one weights file."""
    config = stage_config(BackboneConfig, "backbone", params, checks=PARAMS)
    remove_stale(out, metrics)
    text = load_section(TextConfig, "text", params)
    result = run("backbone", build_backbone, config, frames, captions, out, text.max_words, tags=tags)
    if metrics is not None:
        write_json(result, metrics)
    summary = f"{out}: {config.kind}, {result['parameters']:,} parameters, D={result['embed_dim']}"
    if "r1" in result:
        summary += "; R@1 t2v " + ", ".join(f"{s} {r['t2v_r1']:.3f}" for s, r in result["r1"].items())
    typer.echo(summary)


if __name__ == "__main__":
    app()
