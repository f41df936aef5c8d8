"""experiments/ (the research harness, not collected here) imports cleanly: no import-time side
effects on the process (threads, environment, sys.path), against the current library API."""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(p.stem for p in (ROOT / "experiments").glob("*.py"))


@pytest.mark.parametrize("name", SCRIPTS)
def test_experiment_modules_import_without_side_effects(name):
    threads, env, path = torch.get_num_threads(), dict(os.environ), list(sys.path)
    module = importlib.import_module(f"experiments.{name}")
    assert (torch.get_num_threads(), dict(os.environ), sys.path) == (threads, env, path)
    assert name == "common" or callable(getattr(module, "main", None))
