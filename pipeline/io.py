"""Atomic file outputs and small-format helpers (Parquet, JSON, NumPy).

Every writer goes through a temporary file in the destination directory and an
``os.replace``: a killed stage leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp creates 0600; give the file the permissions a plain open() would have.
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary directory beside ``path``; on success it replaces ``path`` whole."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp creates 0700
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


class UnreadableFile(ValueError):
    """A file exists but cannot be parsed (cut by a kill, or foreign): the message names it."""

    def __init__(self, path: Path, cause: BaseException) -> None:
        reason = " ".join(str(cause).split()) or type(cause).__name__
        super().__init__(f"{path}: unreadable ({reason}); delete it and re-run the stage that writes it")
        self.path = path


# What atomic_path / atomic_dir leave when the process dies before the rename: mkstemp/mkdtemp
# names ".<name>.<random>.tmp", and atomic_dir's ".<name>.old" (the previous folder, mid-swap).
_ANY_TEMP = re.compile(r"^\..+\.[A-Za-z0-9_]+\.tmp$|^\..+\.old$")


def stale_temps(path: str | Path) -> list[Path]:
    """Leftovers of killed atomic writes of ``path``: ``.<name>.*.tmp`` / ``.<name>.old`` beside it
    and, when ``path`` is a folder, any such entry inside it (outermost entries only)."""
    path = Path(path)
    mine = re.compile(rf"^\.{re.escape(path.name)}\.([A-Za-z0-9_]+\.tmp|old)$")
    found = sorted(p for p in path.parent.iterdir() if mine.match(p.name)) if path.parent.is_dir() else []
    if path.is_dir():
        for root, dirs, files in os.walk(path):
            stale_dirs = sorted(d for d in dirs if _ANY_TEMP.match(d))
            found += [Path(root) / d for d in stale_dirs]
            found += [Path(root) / f for f in sorted(files) if _ANY_TEMP.match(f)]
            dirs[:] = [d for d in dirs if d not in stale_dirs]  # gone with their parent
    return found


def remove_stale_temps(path: str | Path) -> list[Path]:
    """Delete :func:`stale_temps` of ``path``; return what was removed.

    Only for a path no live process is writing: a stage calls it on its own outputs before it
    starts (DVC hashes folders whole, so debris inside or beside an output would otherwise enter
    ``dvc.lock`` and re-run the stages downstream)."""
    removed = stale_temps(path)
    for p in removed:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
    return removed


def load_torch(path: str | Path, error: type[Exception], missing: str, unreadable: str) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU; a missing file raises ``error("<path>:
    <missing>")``, a foreign or corrupt one ``error("<path>: <unreadable> (<cause>)")``."""
    import torch  # only the callers that read checkpoints need it

    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: {missing}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for foreign or corrupt files
        raise error(f"{path}: {unreadable} ({err})") from err


def write_parquet(df: pd.DataFrame | pa.Table, path: str | Path) -> None:
    """Write a DataFrame (index dropped) or Arrow table to Parquet atomically."""
    table = df if isinstance(df, pa.Table) else pa.Table.from_pandas(df, preserve_index=False)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def read_parquet(path: str | Path, columns: list[str] | None = None) -> pd.DataFrame:
    """Read a Parquet file into a DataFrame, with a clear error when it is missing."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: not found (did the stage that writes it run?)")
    try:
        return pq.read_table(path, columns=columns).to_pandas()
    except (pa.ArrowException, OSError) as err:  # cut or foreign files: pyarrow's message lacks the name
        raise UnreadableFile(path, err) from err


def write_json(obj: Any, path: str | Path) -> None:
    """Write JSON (sorted keys, indented) atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: str | Path) -> Any:
    """Parse a JSON file; a cut or foreign one raises :class:`UnreadableFile` naming it."""
    path = Path(path)
    text = path.read_text()
    try:
        return json.loads(text)
    except ValueError as err:
        raise UnreadableFile(path, err) from err


def load_npy(path: str | Path, mmap_mode: Any = None) -> np.ndarray:
    """``np.load`` of a ``.npy`` (no pickles); a cut or foreign file raises :class:`UnreadableFile`
    naming it (NumPy's "cannot reshape array" / "mmap length" messages do not)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found (did the stage that writes it run?)")
    try:
        return np.load(path, mmap_mode=mmap_mode, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise UnreadableFile(path, err) from err


def write_npy(array: np.ndarray, path: str | Path) -> None:
    """Save a .npy atomically (readable later with ``np.load(mmap_mode='r')``)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, array)


def open_npy_writer(path: str | Path, shape: tuple[int, ...], dtype: Any) -> np.memmap:
    """Create a .npy memmap to fill incrementally; caller must finish with ``rename``.

    Use with :func:`atomic_path` so a partial array never sits at the final path.
    """
    return np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
