"""Benchmarks never rot: every benchmarks/bench_*.py runs here at a tiny size and prints its ratios."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(p.name for p in (ROOT / "benchmarks").glob("bench_*.py"))

#: Tiny arguments and the lines each script must print (regexes). A new benchmark script must be
#: added here: test_every_benchmark_is_covered fails otherwise.
TINY = {
    "bench_scoring.py": (
        ["--captions", "6", "--videos", "5", "--dim", "64", "--frames", "6", "--repeats", "1"],
        [r"ratio fused/direct: [\d.]+x", r"ratio fast/direct: [\d.]+x", r"max \|fused - direct\|: ([\d.e+-]+)",
         r"max \|fast - direct\|: ([\d.e+-]+)"],
    ),
    "bench_released_eval.py": (
        ["--small", "--image-size", "32", "--videos", "3", "--frames", "4", "--texts", "8", "--pairs", "6",
         "--batch", "8", "--threads", "1"],
        [r"videos: +[\d.]+ s per 1000 videos", r"texts: +[\d.]+ s per 1000 texts",
         r"scoring: +[\d.]+ s per 1000 x 1000 pairs", r"querybank  9000: +[\d.]+ min per variant"],
    ),
    "bench_search.py": (
        ["--videos", "400", "--queries", "6", "--dim", "32", "--topics", "20", "--train-steps", "2",
         "--train-batch", "8", "--exhaustive-queries", "2", "--candidates", "10,400", "--backend", "exact"],
        [r"two-stage C=\s*10: recall@10 vs exhaustive [\d.]+", r"two-stage C=\s*400: recall@10 vs exhaustive [\d.]+",
         r"exhaustive exact .*p50\s+[\d.]+ ms", r"exhaustive p50 [\d.]+ ms"],
    ),
}


def test_every_benchmark_is_covered():
    assert SCRIPTS and sorted(TINY) == SCRIPTS


@pytest.mark.parametrize("script", SCRIPTS)
def test_benchmark_runs_at_a_tiny_size(script):
    args, patterns = TINY[script]
    env = dict(os.environ, DVC_NO_ANALYTICS="1")
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{script} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    for pattern in patterns:
        assert re.search(pattern, proc.stdout), f"{script}: no line matching {pattern!r} in:\n{proc.stdout}"
    if script == "bench_scoring.py":  # exactness holds even at the tiny size
        for diff in re.findall(r"max \|\w+ - direct\|: ([\d.e+-]+)", proc.stdout):
            assert float(diff) <= 1e-4
    if script == "bench_search.py":  # with every video a candidate, two-stage is exhaustive search
        recall = float(re.search(r"two-stage C=\s*400: recall@10 vs exhaustive ([\d.]+)", proc.stdout).group(1))
        assert recall >= 0.95  # (not 1: the ground truth's batched scorer may break float near-ties apart)
