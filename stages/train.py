"""Stage ``train@<variant>``: train one variant on cached backbone features (or end to end).

python -m stages.train --params params.yaml --variant macvr --features data/features \
    --backbone models/backbone.pt --out models/macvr --live-dir dvclive/train/macvr

The run's config is ``train`` plus the variant's overrides (``variants.<name>`` on top of the
registered variant: see pipeline/train/variants.py). Finetune mode (``train.mode: finetune``)
reads ``--frames``, ``--captions``, ``--tags`` and ``--backbone`` instead of ``--features``.
Several GPUs / nodes: ``torchrun --nproc_per_node=G -m stages.train ...`` (see the README).

A variant with ``released: <file>`` (under ``released.dir``) is not trained: the authors'
checkpoint is imported into the same ``model.pt`` / ``checkpoint.pt`` (see
:mod:`pipeline.released.checkpoint`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from pipeline.config import ConfigError, load_section
from pipeline.released.config import ReleasedConfig
from pipeline.text import TextConfig
from pipeline.train.config import TrainConfig
from pipeline.train.loop import TrainInputs, train
from pipeline.train.variants import load_variant, variant_released
from stages.common import run, setup_logging

# The params this stage reads: ``train``, its variant's entry of ``variants``, ``text``, and the
# folder a released checkpoint's path is relative to.
PARAMS = {"train": TrainConfig, "variants": None, "text": TextConfig, "released.dir": None}

app = typer.Typer(add_completion=False)


def _load(params: Path, variant: str) -> tuple[TrainConfig, TextConfig]:
    """The variant's resolved train config and the text section, checked against the other sections."""
    from pipeline.params import check_agreement

    config = load_variant(params, variant, TrainConfig)
    text = load_section(TextConfig, "text", params)
    problems = check_agreement(params, {"train", "variants", "text"})
    if problems:
        raise ConfigError(f"{params}: " + "; ".join(problems))
    return config, text


@app.command()
def main(
    params: Path = typer.Option(Path("params.yaml"), help="params file (train, variants.<variant>, text)"),
    variant: str = typer.Option(..., help="a variant of params.yaml's 'variants' (or a registered one)"),
    out: Path = typer.Option(..., help="output folder: model.pt, checkpoint.pt (and last.pt while training)"),
    features: Optional[Path] = typer.Option(None, help="features dir (cached mode)"),
    frames: Optional[Path] = typer.Option(None, help="frames dir (finetune mode)"),
    captions: Optional[Path] = typer.Option(None, help="captions.parquet (finetune mode)"),
    tags: Optional[Path] = typer.Option(None, help="tags.parquet (finetune mode, variants with tags)"),
    backbone: Optional[Path] = typer.Option(None, help="backbone weights (finetune mode; temporal init; "
                                                       "the backbone's logit scale)"),
    live_dir: Optional[Path] = typer.Option(None, help="dvclive folder for metrics and plots"),
    resume: Optional[bool] = typer.Option(None, "--resume/--fresh",
                                          help="--resume: continue OUT/last.pt or fail; --fresh: ignore it. "
                                               "Default: continue it when config and inputs match."),
) -> None:
    """Train one variant; write checkpoints and dvclive logs."""
    setup_logging()
    config, text = run("train", _load, params, variant)
    released = run("train", variant_released, params, variant)
    if released is not None:
        from pipeline.released.checkpoint import import_checkpoint

        where = run("train", load_section, ReleasedConfig, "released", params).resolve(released,
                                                                                      f"variants.{variant}.released")
        summary = run("train", import_checkpoint, where, variant, config, text, out, live_dir)
        typer.echo(f"{variant}: imported {where} (K={summary['num_concepts']}, "
                   f"{summary['temporal_layers']} temporal layers)")
        return
    inputs = TrainInputs(features=features, frames=frames, captions=captions, tags=tags, backbone=backbone)
    mode = "auto" if resume is None else ("always" if resume else "never")
    metrics = run("train", train, config, variant, inputs, out, live_dir=live_dir, resume=mode, text=text)
    if not metrics:  # ranks other than 0 under torchrun
        return
    shown = {k: v for k, v in metrics.items() if "r1" in k or k.endswith("/total")}
    typer.echo(f"{variant}: " + ", ".join(f"{k}={v:.4g}" for k, v in sorted(shown.items())))


if __name__ == "__main__":
    app()
