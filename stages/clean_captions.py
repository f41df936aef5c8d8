"""Stage clean_captions: raw caption answers -> data/aux/captions.parquet + metrics/aux_captions.json."""

from __future__ import annotations

from pathlib import Path

import typer

from pipeline.aux_captions.config import CleanCaptionsConfig
from pipeline.config import from_mapping, load_params
from pipeline.features.config import AuxiliaryInputs
from stages.common import remove_stale, run, stage_config

# The params this stage reads (dvc.yaml contract): its section and which modalities read captions.
PARAMS = {"clean_captions": CleanCaptionsConfig, "features.auxiliary": AuxiliaryInputs}

app = typer.Typer(add_completion=False)


def _auxiliary(params: Path) -> AuxiliaryInputs:
    features = load_params(params).get("features") or {}
    return from_mapping(AuxiliaryInputs, features.get("auxiliary"), where=f"{params}: features.auxiliary")


@app.command()
def main(
    params: Path = typer.Option(Path("params.yaml"), help="params file (clean_captions, features.auxiliary)"),
    visual_raw: Path = typer.Option(..., help="data/aux/raw/visual.parquet"),
    textual_raw: Path = typer.Option(..., help="data/aux/raw/textual.parquet"),
    captions: Path = typer.Option(..., help="data/prepared/captions.parquet (textual splits, originals)"),
    videos: Path = typer.Option(..., help="data/prepared/videos.parquet (visual splits)"),
    out: Path = typer.Option(..., help="data/aux/captions.parquet"),
    metrics: Path = typer.Option(..., help="metrics/aux_captions.json"),
) -> None:
    from pipeline.aux_captions.clean import clean_captions

    cfg = stage_config(CleanCaptionsConfig, "clean_captions", params)
    remove_stale(out, metrics)
    auxiliary = run("clean_captions", _auxiliary, params)
    result = run("clean_captions", clean_captions, cfg, auxiliary.visual, auxiliary.textual, visual_raw, textual_raw,
                 captions, videos, out, metrics)
    used = [f"{m}: {result[m]['answered']} items" for m in ("visual", "textual") if m in result]
    typer.echo(f"clean_captions: {', '.join(used) or 'no modality reads captions'} -> {out}")


if __name__ == "__main__":
    app()
