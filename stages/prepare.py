"""Stage ``prepare``: build ``videos.parquet`` and ``captions.parquet`` for one dataset.

python -m stages.prepare --params params.yaml --out data/prepared

Expected errors (bad params, missing/malformed annotation files, unusable videos, split
overlaps, files the OS refuses) end as one line ``prepare: <file or key>: <cause>`` on stderr
and exit code 1, with no traceback; the output folder is only ever replaced whole, so a failed
run leaves the previous output (or none) and no partial folder.
"""

from __future__ import annotations

from pathlib import Path

import typer

from pipeline.data.prepare import PrepareConfig, prepare
from stages.common import remove_stale, run, stage_config

PARAMS = {"prepare": PrepareConfig}  # the params.yaml sections this stage reads
app = typer.Typer(add_completion=False)


@app.command()
def main(
    params: Path = typer.Option(Path("params.yaml"), help="params file (section 'prepare')"),
    out: Path = typer.Option(..., help="output folder, replaced whole"),
) -> None:
    """Read the selected dataset (or generate the synthetic one) into the shared tables."""
    config = stage_config(PrepareConfig, "prepare", params, checks=PARAMS)
    remove_stale(out)
    videos, captions = run("prepare", prepare, config, out)
    for split, n in videos["split"].value_counts().sort_index().items():
        typer.echo(f"{split}: {n} videos, {int((captions['split'] == split).sum())} captions")


if __name__ == "__main__":
    app()
