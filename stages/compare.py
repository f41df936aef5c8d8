"""Stage ``compare``: every trained variant against the baseline (paired), and the paper's tables.

    python -m stages.compare --params params.yaml --eval-dir eval --truth data/prepared/synthetic_truth.json \\
        --videos data/prepared/videos.parquet --out metrics/comparison.json --tables metrics/tables.md
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from pipeline.compare import CompareConfig, compare_variants
from pipeline.train.variants import params_variants
from stages.common import remove_stale, run, stage_config

PARAMS = {"compare": CompareConfig, "variants": None}  # the params sections this stage reads
app = typer.Typer(add_completion=False)


@app.command()
def main(
    params: Path = typer.Option(Path("params.yaml"), help="params file (sections 'compare', 'variants')"),
    eval_dir: Path = typer.Option(..., help="evaluation directories: <eval-dir>/<variant> for every variant"),
    out: Path = typer.Option(..., help="comparison JSON (DVC metrics), e.g. metrics/comparison.json"),
    tables: Path = typer.Option(..., help="Markdown tables, e.g. metrics/tables.md"),
    truth: Optional[Path] = typer.Option(None, help="synthetic_truth.json (chance, the Bayes-optimal ceiling and the consistency reference; ignored when absent)"),
    videos: Optional[Path] = typer.Option(None, help="prepared videos.parquet (its dataset picks the paper's values)"),
) -> None:
    """Paired bootstrap differences of every variant to the baseline; Tab. 2- and Tab. 4-like tables."""
    config = stage_config(CompareConfig, "compare", params, checks=PARAMS)
    remove_stale(out, tables)
    variants = run("compare", params_variants, params)
    report = run("compare", compare_variants, config, variants, eval_dir, out, tables, truth, videos)
    typer.echo(f"compare: {len(report['paired'])} variants vs {config.baseline} -> {out}, {tables}")


if __name__ == "__main__":
    app()
