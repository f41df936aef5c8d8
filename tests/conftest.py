"""Shared pytest fixtures. Keep this small; module-specific fixtures live in their test files."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("DVC_NO_ANALYTICS", "1")


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny models run faster on one thread on a busy 2-core box (see FACTS.md)."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a hard dependency
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
