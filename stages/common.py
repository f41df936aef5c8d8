"""Helpers shared by the stage entry points (kept tiny: stages are thin)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TypeVar

import typer

from pipeline.config import ConfigError, load_section

T = TypeVar("T")


def stage_config(cls: type[T], section: str, params: Path) -> T:
    """Load a stage's section; a bad params file exits with its message, not a traceback."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return load_section(cls, section, params)
    except ConfigError as err:
        typer.echo(f"config error: {err}", err=True)
        raise typer.Exit(2) from None
