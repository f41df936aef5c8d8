"""A copy of the project as a fresh clone holds it, for tests that run ``dvc repro`` themselves."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def copy_project(repo: Path) -> Path:
    """The tracked (and not ignored) files of the project under ``repo``, without the tests,
    experiments and benchmarks, and without ``dvc.lock`` (nothing run yet)."""
    tracked = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                             capture_output=True, check=True).stdout
    for name in tracked.decode().split("\0"):
        if name and (ROOT / name).is_file() and not name.startswith(("tests/", "experiments/", "benchmarks/")):
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, repo / name)
    (repo / "dvc.lock").unlink(missing_ok=True)
    return repo
