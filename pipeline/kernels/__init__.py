"""Fused exact kernels for the pairwise MAC-VR score (``pipeline.scoring``'s ``method="fused"``).

The fast form (:mod:`pipeline.scoring`) already reduces a pair's first MLP layer to a mix of
per-frame rows. For caption i, video j and concept k, with pooling weights a_ijn:

    W1 [e_t; e_av; e_at; e_v] + b1
        = (W1_t e_t^k + W1_at e_at^k)                   caption part c_ik   (once per caption)
        + (b1 + W1_av e_av^k)                           video row  u_jk     (once per video)
        + sum_n a_ijn W1_v F'^k_jn                      frame rows P_jnk    (once per video)

because the layer, the concept split and the pooling are all linear. When the weights sum to 1
(``before_softmax`` masking) u_jk folds into every frame row (P_jnk + u_jk); with the official
``after_softmax`` masking they sum to < 1 and u_jk rides along as an extra row of weight 1.
Either way the per-pair pre-activation is

    z_ijk = c_ik + sum_r A_ijr P_jrk                    (R = N or N + 1 rows, H values each)
    w_ijk = w2 . relu(z_ijk) + b2,      s_ij = sum_k w_ijk cos_ijk

The fast form evaluates z for a whole tile with one batched GEMM whose inner dimension is only
R ~ 12, writes the K*H values per pair to memory, and reads them back for the ReLU and for w2:
~16 KB of traffic per pair, which is what bounds it. The fused kernels compute the same sum in
the same order of operations per pair, but keep each z_ijk block in registers: for a register
tile of captions x H-lanes they load the caption part once, accumulate the R rows (each row
loaded once for the whole caption tile), apply the ReLU and dot with w2 before moving on, and
emit only w_ijk (or directly s_ij). Rows whose weight is zero for every caption (padded frames)
are skipped, so a padded video costs in proportion to its real frames.

The pooling weights and the two GEMMs behind the cosines (``pipeline.scoring._pair_parts``:
~2 N D MACs per pair, good GEMM shapes) stay in PyTorch; the kernels reduce them to the cosines
(sum over frames, sqrt, divide) in the same pass, which saves several memory-bound passes over
[J, K, N, I] tensors (they were ~2/3 of the time at D=64).

Backends, chosen by measurement (benchmarks/README.md):
  * CPU: :mod:`pipeline.kernels.cpu`, a small C++ source compiled on first use with the system
    compiler (``-O3 -march=native``) into a cached shared library and called through ctypes;
    ``make venv`` builds it ahead. No compiler: ``method="fused"`` falls back to ``fast``.
  * CUDA: :mod:`pipeline.kernels.gpu`, a Triton kernel of the same tile computation (fp32,
    IEEE products); no Triton: falls back to ``fast``.
Nothing is compiled at import time.
"""

from __future__ import annotations

import logging
from typing import Protocol

import torch

log = logging.getLogger(__name__)


class FusedKernel(Protocol):
    """out [J, I] = sum_k (w2 . relu(cap[i, k] + sum_r A[j, i, r] proj[j, r, k]) + b2) cos_ijk."""

    name: str

    def __call__(self, a: torch.Tensor, mask: torch.Tensor, extra_row: bool, proj: torch.Tensor, cap: torch.Tensor,
                 w2: torch.Tensor, b2: float, r: torch.Tensor, ga: torch.Tensor, t_norm: torch.Tensor,
                 caption_block: int) -> torch.Tensor:
        """a [J, N, I] pooling weights (0 on padding), mask [J, N], proj [J, N(+1), K*H] (the extra row,
        weight 1, when ``extra_row``), cap [I, K*H], w2 [H], r [K, J, N, I] = <F'^k_jn, e_t^k(i)>,
        ga [J, K, N, I] = (G^k_j a_ij)_n, t_norm [K, I] -> scores [J, I]; the cosines are
        cos_ijk = sum_n a r / (sqrt(sum_n a ga) t_norm), as in ``pipeline.scoring._pair_terms``."""
        ...


_warned: set[str] = set()


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        log.warning(message)


def fused_kernel(device: torch.device, dtype: torch.dtype) -> FusedKernel | None:
    """The fused kernel for ``device``/``dtype``, or None (after one log line) when unavailable."""
    if device.type == "cpu":
        from pipeline.kernels import cpu

        kernel, why = cpu.load_kernel(dtype)
    elif device.type == "cuda":
        from pipeline.kernels import gpu

        kernel, why = gpu.load_kernel(dtype)
    else:
        kernel, why = None, f"no fused kernel for device type {device.type!r}"
    if kernel is None:
        _warn_once(f"{device.type}:{dtype}", f"fused scorer unavailable ({why}): using the fast form")
    return kernel
