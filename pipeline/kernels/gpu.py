"""GPU backend of the fused scorer: a Triton kernel of the same tile computation as the CPU one.

One program scores BLOCK_I captions x BLOCK_J videos. For each concept k it first reduces the
cosines (sum over frames of the pooling weights times two small GEMM outputs), then for each
BLOCK_H-wide slice of the hidden layer it loads the captions' part once, and for each video forms
    z = cap[i, k, h-slice] + a[j, i, :] @ proj[j, :, k, h-slice]      (tl.dot, rows padded to 16)
applies the ReLU and dots with w2 -- z lives in registers only -- and accumulates
w[j, i] += sum_h relu(z) w2; at the end of the concept s[j, i] += (w + b2) cos[j, k, i]. The rows'
dot runs in IEEE fp32 by default (``input_precision="ieee"``): TF32 products (10-bit mantissa)
would break the 1e-4 exactness target. ``tf32x3`` (three TF32 products, ~fp32 accuracy on tensor
cores) is a knob to try where speed matters more (MACVR_TRITON_PRECISION).

Triton is imported lazily (never at import time of the scorer). Without a GPU the kernel can be
checked on the CPU with Triton's interpreter (``TRITON_INTERPRET=1``, set before Triton is first
imported; tests/test_scoring_fused.py does so in a subprocess).
"""

from __future__ import annotations

import functools
import os

import torch

#: Tile of one program (captions x videos x hidden lanes); rows (frames + 1) pad to >= 16 for tl.dot.
BLOCK_I = 64
BLOCK_J = 4
BLOCK_H = 64
NUM_WARPS = 4
PRECISIONS = ("ieee", "tf32x3", "tf32")


@functools.lru_cache(maxsize=1)
def _compiled():
    """The @triton.jit kernel, defined on first use (importing Triton costs ~1 s)."""
    import triton
    import triton.language as tl

    @triton.jit
    def fused_tile(a_ptr, proj_ptr, cap_ptr, w2_ptr, r_ptr, ga_ptr, tn_ptr, out_ptr, b2, J, I, N, K, H,
                   EXTRA: tl.constexpr, BLOCK_I: tl.constexpr, BLOCK_J: tl.constexpr, BLOCK_R: tl.constexpr,
                   BLOCK_H: tl.constexpr, PRECISION: tl.constexpr):
        pid_i = tl.program_id(0)
        pid_j = tl.program_id(1)
        offs_i = pid_i * BLOCK_I + tl.arange(0, BLOCK_I)
        offs_r = tl.arange(0, BLOCK_R)
        offs_jj = tl.arange(0, BLOCK_J)
        m_i = offs_i < I
        m_n = offs_r < N  # frame rows
        m_r = offs_r < N + EXTRA  # frame rows + the video-only row
        kh = K * H
        score = tl.zeros([BLOCK_J, BLOCK_I], dtype=tl.float32)
        for k in range(0, K):
            # Cosines of concept k: sum_n a r / (sqrt(sum_n a ga) ||e_t^k||), per video of the tile.
            t_norm = tl.load(tn_ptr + k * I + offs_i, mask=m_i, other=1.0)
            cos = tl.zeros([BLOCK_J, BLOCK_I], dtype=tl.float32)
            for jj in tl.static_range(BLOCK_J):
                j = pid_j * BLOCK_J + jj
                m = (j < J) & m_n[:, None] & m_i[None, :]
                a_t = tl.load(a_ptr + (j * N + offs_r[:, None]) * I + offs_i[None, :], mask=m, other=0.0)
                r = tl.load(r_ptr + ((k * J + j) * N + offs_r[:, None]) * I + offs_i[None, :], mask=m, other=0.0)
                ga = tl.load(ga_ptr + ((j * K + k) * N + offs_r[:, None]) * I + offs_i[None, :], mask=m, other=0.0)
                c = tl.sum(a_t * r, axis=0) / (tl.sqrt(tl.maximum(tl.sum(a_t * ga, axis=0), 0.0)) * t_norm)
                cos = tl.where(offs_jj[:, None] == jj, c[None, :], cos)
            w = tl.zeros([BLOCK_J, BLOCK_I], dtype=tl.float32)
            for h0 in range(0, H, BLOCK_H):
                offs_h = h0 + tl.arange(0, BLOCK_H)
                m_h = offs_h < H
                cap = tl.load(cap_ptr + offs_i[:, None] * kh + k * H + offs_h[None, :],
                              mask=m_i[:, None] & m_h[None, :], other=0.0)
                w2 = tl.load(w2_ptr + offs_h, mask=m_h, other=0.0)
                for jj in tl.static_range(BLOCK_J):
                    j = pid_j * BLOCK_J + jj
                    ok = j < J
                    a = tl.load(a_ptr + (j * N + offs_r[None, :]) * I + offs_i[:, None],
                                mask=ok & m_i[:, None] & m_n[None, :], other=0.0)
                    if EXTRA:
                        a = tl.where(offs_r[None, :] == N, 1.0, a)
                    p = tl.load(proj_ptr + (j * (N + EXTRA) + offs_r[:, None]) * kh + k * H + offs_h[None, :],
                                mask=ok & m_r[:, None] & m_h[None, :], other=0.0)
                    z = tl.dot(a, p, acc=cap, input_precision=PRECISION)
                    part = tl.sum(tl.maximum(z, 0.0) * w2[None, :], axis=1)  # [BLOCK_I]
                    w = tl.where(offs_jj[:, None] == jj, w + part[None, :], w)
            score += (w + b2) * cos
        offs_j = pid_j * BLOCK_J + offs_jj
        tl.store(out_ptr + offs_j[:, None] * I + offs_i[None, :], score,
                 mask=(offs_j[:, None] < J) & m_i[None, :])

    return triton, fused_tile


class TritonFusedKernel:
    """Calls the Triton kernel on contiguous float32 tensors of one device."""

    name = "triton"

    def __init__(self, precision: str = "ieee", block_i: int = BLOCK_I, block_j: int = BLOCK_J,
                 block_h: int = BLOCK_H, num_warps: int = NUM_WARPS) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"triton precision must be one of {PRECISIONS}, got {precision!r}")
        for name, value, low in (("block_i", block_i, 16), ("block_j", block_j, 1), ("block_h", block_h, 16)):
            if value < low or value & (value - 1):
                raise ValueError(f"triton {name} must be a power of two >= {low} (tl.arange, tl.dot), got {value}")
        self.precision, self.block_i, self.block_j, self.block_h = precision, block_i, block_j, block_h
        self.num_warps = num_warps

    def __call__(self, a: torch.Tensor, mask: torch.Tensor, extra_row: bool, proj: torch.Tensor, cap: torch.Tensor,
                 w2: torch.Tensor, b2: float, r: torch.Tensor, ga: torch.Tensor, t_norm: torch.Tensor,
                 caption_block: int) -> torch.Tensor:
        # ``mask`` is not needed: padded frames carry weight 0 and cost no extra time in tl.dot
        # (rows are padded to 16 anyway). ``caption_block`` is a CPU cache knob: BLOCK_I here.
        del mask, caption_block
        triton, kernel = _compiled()
        j, n, i = a.shape
        k, h = t_norm.shape[0], w2.shape[0]
        a, proj, cap, w2, r, ga, t_norm = (x.to(torch.float32).contiguous() for x in (a, proj, cap, w2, r, ga, t_norm))
        out = torch.empty(j, i, dtype=torch.float32, device=a.device)
        block_r = max(16, triton.next_power_of_2(n + int(extra_row)))
        grid = (triton.cdiv(i, self.block_i), triton.cdiv(j, self.block_j))
        kernel[grid](a, proj, cap, w2, r, ga, t_norm, out, float(b2), j, i, n, k, h, EXTRA=int(extra_row),
                     BLOCK_I=self.block_i, BLOCK_J=self.block_j, BLOCK_R=block_r, BLOCK_H=self.block_h,
                     PRECISION=self.precision, num_warps=self.num_warps)
        return out


def triton_available() -> tuple[bool, str]:
    """(True, "") when Triton imports, else (False, why)."""
    try:
        import triton  # noqa: F401
        import triton.language  # noqa: F401
    except Exception as err:  # ImportError, or a broken install raising anything at import
        return False, f"triton not importable: {err}"
    return True, ""


def load_kernel(dtype: torch.dtype) -> tuple[TritonFusedKernel | None, str]:
    """(kernel, "") for float32 on a CUDA device with Triton, or (None, why not)."""
    if os.environ.get("MACVR_FUSED_KERNEL", "").lower() in ("0", "off", "false", "no"):
        return None, "disabled by MACVR_FUSED_KERNEL"
    if dtype != torch.float32:
        return None, f"the Triton kernel computes in float32, not {dtype}"
    ok, why = triton_available()
    if not ok:
        return None, why
    return TritonFusedKernel(os.environ.get("MACVR_TRITON_PRECISION", "ieee")), ""
