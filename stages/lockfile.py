"""``macvr repair-lock``: find a torn ``dvc.lock`` and put the committed one back.

DVC rewrites ``dvc.lock`` in place after every stage; a kill during that write (~0.3 s) leaves it
empty or cut, and from then on every ``dvc`` command fails on it until someone deletes it by hand.
``make run`` calls this first. A lock that still parses is left alone, even when a cut dropped
whole stages or ended inside a hash: DVC then simply re-runs what no longer matches.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import typer
import yaml

from pipeline.io import atomic_path


def lock_problem(path: Path) -> str | None:
    """Why ``path`` is not a lock file DVC can read (None: readable, or absent)."""
    return text_problem(path.read_bytes()) if path.exists() else None


def text_problem(data: bytes) -> str | None:
    """Why ``data`` is not a lock file DVC can read (None: it is one)."""
    try:
        parsed = yaml.safe_load(data.decode())
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        return f"not YAML ({' '.join(str(err).split())[:120]})"
    if not isinstance(parsed, dict):
        return "empty" if parsed is None else "not a mapping"
    if "schema" not in parsed or not isinstance(parsed.get("stages"), dict):
        return "no 'schema' and 'stages'"
    bad = [name for name, entry in parsed["stages"].items() if not isinstance(entry, dict)]
    return f"stage entries cut short: {bad[:3]}" if bad else None


def committed(path: Path) -> bytes | None:
    """``path`` as committed at HEAD (None outside git or when it is not committed)."""
    try:
        result = subprocess.run(["git", "show", f"HEAD:./{path.name}"], cwd=path.parent.resolve(),
                                capture_output=True, check=False)
    except OSError:
        return None
    return result.stdout if result.returncode == 0 else None


def repair(path: Path) -> str | None:
    """Restore a torn ``path`` from git (or remove it when git has none); the line saying so."""
    problem = lock_problem(path)
    if problem is None:
        return None
    saved = committed(path)
    if saved is not None and text_problem(saved) is None:
        with atomic_path(path) as tmp:
            tmp.write_bytes(saved)
        return (f"{path} was torn ({problem}: a dvc command was killed while writing it); restored the "
                "committed one from git, so dvc repro re-runs only what differs from it")
    path.unlink()
    return (f"{path} was torn ({problem}: a dvc command was killed while writing it) and git has no good "
            "copy; removed it, so dvc repro re-runs every stage (DVC's run cache restores unchanged ones)")


def repair_lock(lock: Path = typer.Option(Path("dvc.lock"), help="the lock file to check")) -> None:
    """Check dvc.lock; a torn one (killed mid-write) is restored from git, with one line saying so."""
    message = repair(lock)
    if message:
        typer.echo(message, err=True)
