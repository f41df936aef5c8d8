"""Training logs through dvclive, configured so it never touches dvc.yaml or git.

``Live(dir, dvcyaml=None, save_dvc_exp=False)``: dvclive would otherwise rewrite dvc.yaml and
create experiments itself; dvc.yaml declares the metrics file and plots dir instead. The step
axis is the optimiser step. On resume, history rows past the resumed step (the part of the
interrupted epoch that is redone) are dropped so the plots do not zig-zag.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any


class LiveLog:
    """A thin dvclive wrapper; a no-op when ``directory`` is None (no ``--live-dir``)."""

    def __init__(self, directory: str | Path | None, resume_step: int | None = None) -> None:
        self.dir = Path(directory) if directory is not None else None
        self._live: Any = None
        if self.dir is None:
            return
        from dvclive import Live

        resume = resume_step is not None and (self.dir / "metrics.json").exists()
        if resume:
            _truncate_history(self.dir / "plots" / "metrics", resume_step)
        self._live = Live(str(self.dir), resume=resume, dvcyaml=None, save_dvc_exp=False,
                          report=None, monitor_system=False)

    def log(self, step: int, metrics: dict[str, float]) -> None:
        """Record ``metrics`` at optimiser step ``step`` (history + summary)."""
        if self._live is None:
            return
        self._live.step = step
        for name, value in metrics.items():
            self._live.log_metric(name, float(value))
        self._live.make_summary()

    def summary(self, metrics: dict[str, float]) -> None:
        """Values that only belong in the summary (``metrics.json``), not in the history."""
        if self._live is None:
            return
        for name, value in metrics.items():
            self._live.log_metric(name, float(value), plot=False)
        self._live.make_summary()

    def close(self) -> None:
        if self._live is not None:
            self._live.end()
            self._live = None


def _truncate_history(plots_dir: Path, last_step: int) -> None:
    """Drop rows with ``step > last_step`` from every dvclive ``.tsv`` history file."""
    if not plots_dir.exists():
        return
    for path in plots_dir.rglob("*.tsv"):
        with path.open(newline="") as f:
            rows = list(csv.reader(f, delimiter="\t"))
        if not rows or "step" not in rows[0]:
            continue
        col = rows[0].index("step")
        kept = [rows[0]] + [r for r in rows[1:] if len(r) > col and int(float(r[col])) <= last_step]
        with path.open("w", newline="") as f:
            csv.writer(f, delimiter="\t").writerows(kept)
