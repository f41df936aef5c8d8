"""Per-request seeds and temperature names.

A request's seed depends only on (base seed, item id, temperature): reruns, reorderings and
different endpoint counts send identical requests, which is what makes the answer cache hit.
A re-ask of a bad answer (attempt ``k`` >= 1) uses :func:`attempt_seed`: a new request with its
own cache key, as reproducible as the first.
"""

from __future__ import annotations

import hashlib

SEED_MODULUS = 2**31  # vLLM/OpenAI seeds are signed 64-bit, but some servers take int32 only


def derive_seed(base_seed: int, item_id: str, temperature: float) -> int:
    """A stable 31-bit seed for one (item, temperature) request."""
    payload = f"{base_seed}\x1f{item_id}\x1f{temperature:.4f}".encode("utf-8")
    return int.from_bytes(hashlib.sha256(payload).digest()[:8], "big") % SEED_MODULUS


def attempt_seed(seed: int, attempt: int) -> int:
    """The seed of attempt ``attempt`` (0 = the request's own seed, unchanged)."""
    if attempt < 0:
        raise ValueError(f"attempt must be >= 0, got {attempt}")
    if attempt == 0:
        return seed
    payload = f"{seed}\x1fattempt\x1f{attempt}".encode("utf-8")
    return int.from_bytes(hashlib.sha256(payload).digest()[:8], "big") % SEED_MODULUS


def temperature_key(temperature: float) -> str:
    """0.7 -> 't07', 1.0 -> 't10' (the stage instance names in dvc.yaml)."""
    tenths = round(temperature * 10)
    if abs(tenths - temperature * 10) > 1e-6:
        raise ValueError(f"temperature {temperature} is not a multiple of 0.1")
    return f"t{tenths:02d}"


def check_temperature(temperature: float) -> float:
    """Reject temperatures no sampler accepts (0 means greedy; > 2 is refused by OpenAI APIs)."""
    if not 0.0 <= temperature <= 2.0:
        raise ValueError(f"temperature must be in [0, 2], got {temperature}")
    return float(temperature)
