"""Stage ``report``: tag histograms, concept t-SNE, qualitative examples, and every variant's tables.

    python -m stages.report --params params.yaml --tags data/tags/tags.parquet --eval-dir eval \\
        --models models --features data/features --captions data/prepared/captions.parquet \\
        --frames data/frames --tables metrics/tables.md --out reports
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from pipeline.compare import CompareConfig
from pipeline.config import load_section
from pipeline.report import ReportConfig, build_report
from stages.common import remove_stale, run, stage_config

PARAMS = {"report": ReportConfig, "compare": CompareConfig}  # the params.yaml sections this stage reads
app = typer.Typer(add_completion=False)


@app.command()
def main(
    params: Path = typer.Option(..., help="params.yaml (sections 'report' and 'compare')"),
    tags: Path = typer.Option(..., help="tags.parquet from clean_tags"),
    eval_dir: Path = typer.Option(..., help="evaluate outputs: <eval-dir>/<variant>"),
    models: Path = typer.Option(..., help="checkpoints: <models>/<variant>/model.pt"),
    features: Path = typer.Option(..., help="features directory (concepts of test pairs)"),
    captions: Path = typer.Option(..., help="captions.parquet (query texts)"),
    out: Path = typer.Option(..., help="report directory to write (index.html, summary.md, PNGs)"),
    frames: Optional[Path] = typer.Option(None, help="frames dir: ground-truth frames in the examples"),
    tables: Optional[Path] = typer.Option(None, help="the compare stage's Markdown tables (all variants)"),
) -> None:
    """Build the HTML/Markdown report comparing the baseline with a candidate variant."""
    config = stage_config(ReportConfig, "report", params, checks=PARAMS)
    remove_stale(out)
    baseline = load_section(CompareConfig, "compare", params).baseline
    report = run("report", build_report, config, baseline, tags, eval_dir, models, features, captions, out,
                 frames_dir=frames, tables=tables)
    typer.echo(f"report: {len(report['qualitative']['examples'])} examples, "
               f"{len(report['figures']['tags'])} tag histograms -> {out}/index.html")


if __name__ == "__main__":
    app()
