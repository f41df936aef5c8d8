"""A resumable work directory: ``.npy`` memmaps filled in order plus a progress marker.

``progress.json`` holds a fingerprint of everything the arrays depend on and, per array
name, how many leading rows are final. A killed run restarts from there; a run with other
inputs (a new fingerprint) starts over. Rows are flushed before they are marked done.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.io import open_npy_writer, write_json

PROGRESS = "progress.json"


class WorkDir:
    def __init__(self, path: str | Path, fingerprint: str) -> None:
        self.path = Path(path)
        self.fingerprint = fingerprint
        progress = self._read()
        if progress is None or progress.get("fingerprint") != fingerprint:
            shutil.rmtree(self.path, ignore_errors=True)
            self.path.mkdir(parents=True)
            progress = {"fingerprint": fingerprint, "done": {}}
            write_json(progress, self.path / PROGRESS)
        self._done: dict[str, int] = dict(progress["done"])

    def _read(self) -> dict[str, Any] | None:
        try:
            return json.loads((self.path / PROGRESS).read_text())
        except (OSError, ValueError):
            return None

    @property
    def resumed(self) -> bool:
        return any(self._done.values())

    def array(self, name: str, shape: tuple[int, ...], dtype: Any, key: str | None = None) -> np.memmap:
        """The memmap ``name`` (reopened if its shape/dtype match, else created afresh, which
        resets the progress ``key`` it is filled under; ``key`` defaults to ``name``)."""
        file = self.path / f"{name}.npy"
        if file.exists():
            try:
                arr = np.load(file, mmap_mode="r+")
                if arr.shape == tuple(shape) and arr.dtype == np.dtype(dtype):
                    return arr
            except ValueError:
                pass
        self._done[key or name] = 0
        return open_npy_writer(file, tuple(shape), dtype)

    def done(self, name: str) -> int:
        return self._done.get(name, 0)

    def mark(self, name: str, rows: int, *arrays: np.memmap) -> None:
        """Flush ``arrays`` to disk, then record that their first ``rows`` rows are final."""
        for arr in arrays:
            arr.flush()
        self._done[name] = rows
        write_json({"fingerprint": self.fingerprint, "done": self._done}, self.path / PROGRESS)

    def file(self, name: str) -> Path:
        return self.path / f"{name}.npy"

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
