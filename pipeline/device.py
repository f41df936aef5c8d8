"""Turning a ``device: auto|cpu|cuda`` param into a torch device, the same way in every stage."""

from __future__ import annotations

import torch


class DeviceError(RuntimeError):
    """The requested device cannot be used on this machine."""


def resolve_device(setting: str, key: str = "device", local_rank: int = 0) -> torch.device:
    """``auto`` -> this rank's GPU when CUDA is available, else the CPU; ``cuda`` insists on a GPU.

    ``key`` names the param in error messages (e.g. ``features.device``); ``local_rank`` picks the
    GPU of a torchrun process.
    """
    if setting not in ("auto", "cpu", "cuda"):
        raise ValueError(f"{key} must be auto, cpu or cuda, got {setting!r}")
    if setting == "cpu" or (setting == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise DeviceError(f"{key} is 'cuda' but torch sees no CUDA device (use 'auto' or 'cpu')")
    if local_rank >= torch.cuda.device_count():
        raise DeviceError(f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} GPUs are visible")
    return torch.device("cuda", local_rank)
