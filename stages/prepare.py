"""Stage ``prepare``: build ``videos.parquet`` and ``captions.parquet`` for one dataset.

python -m stages.prepare --params params.yaml --out data/prepared

Expected errors (bad params, missing/malformed annotation files, unusable videos, split
overlaps, files the OS refuses) end as one line ``prepare: <file or key>: <cause>`` on stderr
and exit code 1, with no traceback; the output folder is only ever replaced whole, so a failed
run leaves the previous output (or none) and no partial folder.
"""

from __future__ import annotations

import logging
from pathlib import Path

import typer

from pipeline.config import ConfigError, load_section
from pipeline.data.prepare import DatasetError, PrepareConfig, PrepareError, prepare
from pipeline.data.probe import VideoProbeError
from pipeline.data.schema import SchemaError

PARAMS = {"prepare": PrepareConfig}  # the params.yaml sections this stage reads
app = typer.Typer(add_completion=False)

EXPECTED = (ConfigError, DatasetError, PrepareError, SchemaError, VideoProbeError, OSError)


def one_line(err: BaseException) -> str:
    """The error's message on one line (OS errors as '<file>: <reason>')."""
    if isinstance(err, OSError) and err.filename is not None and err.strerror:
        return f"{err.filename}: {err.strerror}"
    return " ".join(str(err).split())


@app.command()
def main(
    params: Path = typer.Option(Path("params.yaml"), help="params file (section 'prepare')"),
    out: Path = typer.Option(..., help="output folder, replaced whole"),
) -> None:
    """Read the selected dataset (or generate the synthetic one) into the shared tables."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        config = load_section(PrepareConfig, "prepare", params)
        videos, captions = prepare(config, out)
    except EXPECTED as err:
        typer.echo(f"prepare: {one_line(err)}", err=True)
        raise typer.Exit(1) from None
    for split, n in videos["split"].value_counts().sort_index().items():
        typer.echo(f"{split}: {n} videos, {int((captions['split'] == split).sum())} captions")


if __name__ == "__main__":
    app()
