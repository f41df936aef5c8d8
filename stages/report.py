"""Stage ``report``: tag histograms, concept t-SNE, qualitative examples and both variants' metrics.

    python -m stages.report --params params.yaml --tags data/tags/tags.parquet --eval-dir eval \
        --models models --features data/features --captions data/prepared/captions.parquet \
        --frames data/frames --out reports
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from pipeline.device import DeviceError
from pipeline.report import ReportConfig, ReportError, build_report
from pipeline.train.checkpoint import CheckpointError
from stages.common import stage_config

PARAMS = {"report": ReportConfig}  # the params.yaml sections this stage reads
app = typer.Typer(add_completion=False)


@app.command()
def main(
    params: Path = typer.Option(..., help="params.yaml (section 'report')"),
    tags: Path = typer.Option(..., help="tags.parquet from clean_tags"),
    eval_dir: Path = typer.Option(..., help="evaluate outputs: <eval-dir>/dicosa and <eval-dir>/macvr"),
    models: Path = typer.Option(..., help="checkpoints: <models>/dicosa/model.pt and <models>/macvr/model.pt"),
    features: Path = typer.Option(..., help="features directory (concepts of test pairs)"),
    captions: Path = typer.Option(..., help="captions.parquet (query texts)"),
    out: Path = typer.Option(..., help="report directory to write (index.html, summary.md, PNGs)"),
    frames: Optional[Path] = typer.Option(None, help="frames dir: ground-truth frames in the examples"),
) -> None:
    """Build the HTML/Markdown report comparing DiCoSA and MAC-VR."""
    config = stage_config(ReportConfig, "report", params)
    try:
        report = build_report(config, tags, eval_dir, models, features, captions, out, frames_dir=frames)
    except (ReportError, CheckpointError, DeviceError, FileNotFoundError) as err:
        typer.echo(f"report: {err}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"report: {len(report['qualitative']['examples'])} examples, "
               f"{len(report['figures']['tags'])} tag histograms -> {out}/index.html")


if __name__ == "__main__":
    app()
