"""Stage ``evaluate@<variant>``: retrieval metrics of one trained variant on the test split.

    python -m stages.evaluate --params params.yaml --variant macvr --model models/macvr/model.pt \\
        --features data/features --out eval/macvr --metrics metrics/macvr.json --plots plots/macvr

Finetune-mode checkpoints re-encode the items with their own backbone and also read
``--frames``, ``--captions`` and ``--tags`` (harmless to pass always: cached mode ignores them).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from pipeline.evaluation import EvaluateConfig, evaluate
from stages.common import remove_stale, run, stage_config

PARAMS = {"evaluate": EvaluateConfig}  # the params.yaml sections this stage reads
app = typer.Typer(add_completion=False)


@app.command()
def main(
    params: Path = typer.Option(..., help="params.yaml (section 'evaluate')"),
    variant: str = typer.Option(..., help="the variant name (must match the checkpoint)"),
    model: Path = typer.Option(..., help="trained checkpoint, e.g. models/macvr/model.pt"),
    features: Path = typer.Option(..., help="features directory (test and querybank items)"),
    out: Path = typer.Option(..., help="evaluation directory to write (similarity, ranks, metrics)"),
    metrics: Path = typer.Option(..., help="DVC metrics JSON (rounded, with intervals), e.g. metrics/macvr.json"),
    plots: Path = typer.Option(..., help="DVC plots directory (recall@K CSVs + PNG)"),
    frames: Optional[Path] = typer.Option(None, help="frames dir (finetune-mode checkpoints only)"),
    captions: Optional[Path] = typer.Option(None, help="captions.parquet (finetune-mode checkpoints only)"),
    tags: Optional[Path] = typer.Option(None, help="tags.parquet (finetune-mode checkpoints with tags only)"),
) -> None:
    """Score every test caption against every test video; metrics t2v/v2t x every configured strategy."""
    config = stage_config(EvaluateConfig, "evaluate", params, checks=PARAMS)
    remove_stale(out, metrics, plots)
    result = run("evaluate", evaluate, config, variant, model, features, out, metrics, plots,
                 frames_dir=frames, captions_path=captions, tags_path=tags)
    line = ", ".join(f"{d} {s} R@1={m['R1']:.1f} [{m['R1_lo']:.1f}, {m['R1_hi']:.1f}]"
                     for d, by in result.items() for s, m in by.items())
    typer.echo(f"{variant}: {line} -> {metrics}")


if __name__ == "__main__":
    app()
