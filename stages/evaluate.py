"""Stage ``evaluate@<variant>``: retrieval metrics of a trained head on the test split.

    python -m stages.evaluate --params params.yaml --variant macvr --model models/macvr/model.pt \
        --features data/features --out eval/macvr --metrics metrics/macvr.json --plots plots/macvr

Finetune-mode checkpoints re-encode the items with their own CLIP and also read ``--frames``,
``--captions`` and ``--tags`` (harmless to pass always: cached mode ignores them).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from pipeline.device import DeviceError
from pipeline.evaluation import EvaluateConfig, EvaluateError, evaluate
from pipeline.train.checkpoint import CheckpointError
from stages.common import stage_config

PARAMS = {"evaluate": EvaluateConfig}  # the params.yaml sections this stage reads
app = typer.Typer(add_completion=False)


@app.command()
def main(
    params: Path = typer.Option(..., help="params.yaml (section 'evaluate')"),
    variant: str = typer.Option(..., help="dicosa or macvr (must match the checkpoint)"),
    model: Path = typer.Option(..., help="trained checkpoint, e.g. models/macvr/model.pt"),
    features: Path = typer.Option(..., help="features directory (test and querybank items)"),
    out: Path = typer.Option(..., help="evaluation directory to write (similarity, ranks, metrics)"),
    metrics: Path = typer.Option(..., help="DVC metrics JSON (rounded), e.g. metrics/macvr.json"),
    plots: Path = typer.Option(..., help="DVC plots directory (recall@K CSVs + PNG)"),
    frames: Optional[Path] = typer.Option(None, help="frames dir (finetune-mode checkpoints only)"),
    captions: Optional[Path] = typer.Option(None, help="captions.parquet (finetune-mode checkpoints only)"),
    tags: Optional[Path] = typer.Option(None, help="tags.parquet (finetune-mode macvr checkpoints only)"),
) -> None:
    """Score every test caption against every test video; metrics t2v/v2t x {none, dsl, qb}."""
    config = stage_config(EvaluateConfig, "evaluate", params)
    if variant not in ("dicosa", "macvr"):
        raise typer.BadParameter(f"must be dicosa or macvr, got {variant!r}", param_hint="--variant")
    try:
        result = evaluate(config, variant, model, features, out, metrics, plots,
                          frames_dir=frames, captions_path=captions, tags_path=tags)
    except (EvaluateError, CheckpointError, DeviceError, FileNotFoundError) as err:
        typer.echo(f"evaluate: {err}", err=True)
        raise typer.Exit(1) from None
    line = ", ".join(f"{d} {s} R@1={m['R1']:.1f}" for d, by in result.items() for s, m in by.items())
    typer.echo(f"{variant}: {line} -> {metrics}")


if __name__ == "__main__":
    app()
