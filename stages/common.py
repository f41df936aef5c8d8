"""Helpers shared by the stage entry points (kept tiny: stages are thin).

Every stage loads its params through :func:`stage_config` (a bad params file, or sections that
disagree, stop it before any work with a message naming the keys) and runs its library call
through :func:`run`, so an expected failure -- a missing input, a bad video, a server that never
answers -- ends with one line naming the file and the cause, exit status 1, and no traceback.
``MACVR_TRACEBACK=1`` shows the traceback for debugging.
"""

from __future__ import annotations

import logging
import os
import signal
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import typer

from pipeline.config import ConfigError, load_params, load_section

T = TypeVar("T")

# Failures a user can cause and fix: bad params, missing or malformed inputs, devices, servers.
# The library raises ValueError subclasses (ConfigError, CheckpointError, RegistryError, ...),
# OSError subclasses (missing files) and RuntimeError subclasses (BackboneError, FramesError,
# DeviceError, ServerStartError, ...).
EXPECTED = (ValueError, OSError, RuntimeError, sqlite3.DatabaseError)


def setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    _exit_on_sigterm()


def _terminated(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def _exit_on_sigterm() -> None:
    """SIGTERM (``kill``, a scheduler's timeout) unwinds like Ctrl-C instead of killing outright, so
    the atomic writers' ``finally`` blocks remove their temp files. A ``kill -9`` cannot be caught:
    :func:`remove_stale` clears what it leaves at the next start."""
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _terminated)


def remove_stale(*outputs: Path | None) -> None:
    """Remove what killed runs of this stage left beside or inside its ``outputs`` (temp files of
    atomic writes; :func:`pipeline.io.remove_stale_temps`), one log line each. Rank 0 only: under
    torchrun the other ranks may already be writing."""
    from pipeline.io import remove_stale_temps

    if int(os.environ.get("RANK", "0")) != 0:
        return
    for out in outputs:
        if out is not None:
            for p in remove_stale_temps(out):
                logging.getLogger("stages").info("removed %s, left by a killed run", p)


def stage_config(cls: type[T], section: str, params: Path, checks: Sequence[str] = (),
                 stage: str | None = None) -> T:
    """Load a stage's section; a bad params file exits with one line, not a traceback.

    ``checks``: the params sections whose agreement with each other must hold before the stage
    starts (see :mod:`pipeline.params`). ``stage`` names the stage in messages (default: the section).
    """
    setup_logging()

    def load() -> T:
        config = load_section(cls, section, params)
        if checks:
            from pipeline.params import check_agreement

            problems = check_agreement(params, set(checks))
            if problems:
                raise ConfigError(f"{params}: " + "; ".join(problems))
        return config

    return run(stage or section, load)


def one_line(err: BaseException) -> str:
    """An error's message on one line (an OS error as '<file>: <reason>')."""
    if isinstance(err, OSError) and getattr(err, "filename", None) is not None and err.strerror:
        return f"{err.filename}: {err.strerror}"
    text = " ".join(str(err).split())
    return text or type(err).__name__


def run(stage: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)``; an expected failure becomes one line on stderr and exit status 1."""
    try:
        return fn(*args, **kwargs)
    except (typer.Exit, typer.Abort, KeyboardInterrupt):
        raise
    except EXPECTED as err:
        if os.environ.get("MACVR_TRACEBACK"):
            raise
        message = one_line(err)
        if isinstance(err, ConfigError):
            message = f"config error: {message}"
        typer.echo(f"{stage}: {message}", err=True)
        raise typer.Exit(1) from None


def auxiliary_source(params: Path, modality: str) -> str:
    """``features.auxiliary.<modality>`` (tags or captions): whether a caption stage has work."""
    value = ((load_params(params).get("features") or {}).get("auxiliary") or {}).get(modality)
    if value not in ("tags", "captions"):
        raise ConfigError(f"{params}: features.auxiliary.{modality} must be tags or captions, got {value!r}")
    return value
