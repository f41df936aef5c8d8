"""Stage ``inputs@<variant>``: the manifest of the tag inputs one variant reads.

python -m stages.inputs --params params.yaml --variant dicosa --features data/features \
    --tags data/tags/tags.parquet --out data/inputs/dicosa.json

``train@<variant>`` and ``evaluate@<variant>`` depend on it instead of the whole features folder
and ``tags.parquet``, so a change that only touches tags re-runs only the variants that read
them (see :mod:`pipeline.train.inputs`).
"""

from __future__ import annotations

from pathlib import Path

import typer

from pipeline.io import write_json
from pipeline.train.config import TrainConfig
from pipeline.train.inputs import variant_inputs
from pipeline.train.variants import load_variant
from stages.common import remove_stale, run, setup_logging

# The params this stage reads: the variant's resolved train config (its model.tags).
PARAMS = {"train": TrainConfig, "variants": None}

app = typer.Typer(add_completion=False)


def _manifest(params: Path, variant: str, features: Path, tags: Path, out: Path) -> dict:
    config = load_variant(params, variant, TrainConfig)
    manifest = {"variant": variant, **variant_inputs(list(config.model.tags), features, tags)}
    write_json(manifest, out)
    return manifest


@app.command()
def main(
    params: Path = typer.Option(Path("params.yaml"), help="params file (train, variants.<variant>)"),
    variant: str = typer.Option(..., help="a variant of params.yaml's 'variants'"),
    features: Path = typer.Option(..., help="features dir"),
    tags: Path = typer.Option(..., help="tags.parquet"),
    out: Path = typer.Option(..., help="the manifest, e.g. data/inputs/dicosa.json"),
) -> None:
    """Write the variant's input manifest (hashes of the tag files it reads)."""
    setup_logging()
    remove_stale(out)
    manifest = run("inputs", _manifest, params, variant, features, tags, out)
    typer.echo(f"{variant}: reads tags {manifest['tags'] or 'none'}; {len(manifest['files'])} tag files -> {out}")


if __name__ == "__main__":
    app()
