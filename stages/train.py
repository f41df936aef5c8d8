"""Stage ``train``: train DiCoSA or MAC-VR on cached CLIP features (or end to end from frames).

python -m stages.train --params params.yaml --variant macvr --features data/features \
    --backbone models/backbone.pt --out models/macvr --live-dir dvclive/train/macvr

Finetune mode (``train.mode: finetune``) reads ``--frames``, ``--captions``, ``--tags`` and
``--backbone`` instead of ``--features``. Multi-GPU: ``torchrun --nproc_per_node=G -m stages.train ...``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from pipeline.train.config import TrainConfig
from pipeline.train.loop import TrainInputs, train
from stages.common import stage_config

PARAMS = {"train": TrainConfig}

app = typer.Typer(add_completion=False)


@app.command()
def main(
    params: Path = typer.Option(Path("params.yaml"), help="params file (section 'train')"),
    variant: str = typer.Option(..., help="dicosa or macvr (overrides train.model.variant)"),
    out: Path = typer.Option(..., help="output folder: model.pt, checkpoint.pt (and last.pt while training)"),
    features: Optional[Path] = typer.Option(None, help="features dir (cached mode)"),
    frames: Optional[Path] = typer.Option(None, help="frames dir (finetune mode)"),
    captions: Optional[Path] = typer.Option(None, help="captions.parquet (finetune mode)"),
    tags: Optional[Path] = typer.Option(None, help="tags.parquet (finetune mode, macvr)"),
    backbone: Optional[Path] = typer.Option(None, help="CLIP weights (finetune mode; temporal init)"),
    live_dir: Optional[Path] = typer.Option(None, help="dvclive folder for metrics and plots"),
    resume: Optional[bool] = typer.Option(None, "--resume/--fresh",
                                          help="--resume: continue OUT/last.pt or fail; --fresh: ignore it. "
                                               "Default: continue it when config and inputs match."),
) -> None:
    """Train one variant; write checkpoints and dvclive logs."""
    if variant not in ("dicosa", "macvr"):
        raise typer.BadParameter(f"must be dicosa or macvr, got {variant!r}", param_hint="--variant")
    config = stage_config(TrainConfig, "train", params)
    inputs = TrainInputs(features=features, frames=frames, captions=captions, tags=tags, backbone=backbone)
    mode = "auto" if resume is None else ("always" if resume else "never")
    metrics = train(config, variant, inputs, out, live_dir=live_dir, resume=mode)  # type: ignore[arg-type]
    if not metrics:  # ranks other than 0 under torchrun
        return
    shown = {k: v for k, v in metrics.items() if "r1" in k or k.endswith("/total")}
    typer.echo(f"{variant}: " + ", ".join(f"{k}={v:.4g}" for k, v in sorted(shown.items())))


if __name__ == "__main__":
    app()
