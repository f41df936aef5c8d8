"""The fused and pooled exact scorers: same numbers as the direct form; the fallback when no kernel."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from pipeline import kernels, scoring
from pipeline.kernels import cpu
from tests.test_scoring import VARIANTS, make_data, make_model

ROOT = Path(__file__).resolve().parents[1]


def cpu_kernel_or_skip(dtype=torch.float64):
    kernel, why = cpu.load_kernel(dtype)
    if kernel is None:
        pytest.skip(f"fused CPU kernel unavailable here: {why}")
    return kernel


@pytest.mark.parametrize("overrides", VARIANTS)
def test_fused_equals_direct_in_float64(overrides):
    cpu_kernel_or_skip()
    model = make_model(**overrides)
    text, frames, mask, tags_v, tags_t = make_data()
    # Odd chunks that divide neither 11 captions nor 13 videos, and blocks smaller than the sets.
    kw = dict(text_chunk=3, video_chunk=5, text_block=7, video_block=6)
    fused = scoring.score_matrix(model, text, frames, mask, tags_v, tags_t, method="fused", **kw)
    direct = scoring.score_matrix(model, text, frames, mask, tags_v, tags_t, method="direct")
    assert fused.shape == (11, 13) and fused.dtype == torch.float64
    assert (fused - direct).abs().max().item() <= 1e-9
    assert direct.abs().max().item() > 0.1


@pytest.mark.parametrize("overrides", [dict(), dict(variant="dicosa"), dict(pool_masking="after_softmax"),
                                       dict(variant="dicosa", pool_masking="after_softmax")])
def test_fused_equals_direct_in_float32(overrides):
    cpu_kernel_or_skip(torch.float32)
    model = make_model(dtype=torch.float32, **overrides)
    text, frames, mask, tags_v, tags_t = make_data(nt=37, nv=29, dtype=torch.float32)
    encoded = model.encode_frames(frames, mask).detach()
    queries = scoring.prepare_queries(model, text, tags_t)
    videos = scoring.prepare_videos(model, encoded, mask, tags_v)
    fused = scoring.fused_scores(model, queries, videos, text_chunk=5, video_chunk=7)
    direct = scoring.direct_scores(model, text, encoded, mask, tags_v, tags_t)
    assert fused.dtype == torch.float32
    assert (fused - direct).abs().max().item() <= 1e-4


def test_fused_skips_padded_rows_anywhere_in_the_mask():
    """Padding is usually a suffix; a mask with holes takes the kernel's row-gathering path."""
    cpu_kernel_or_skip()
    for masking in ("before_softmax", "after_softmax"):
        model = make_model(pool_masking=masking)
        text, frames, mask, tags_v, tags_t = make_data()
        mask = mask.clone()
        mask[3] = torch.tensor([False, True, False, True, True, False])
        mask[4] = torch.tensor([False] * 5 + [True])
        fused = scoring.score_matrix(model, text, frames, mask, tags_v, tags_t, method="fused")
        direct = scoring.score_matrix(model, text, frames, mask, tags_v, tags_t, method="direct")
        assert (fused - direct).abs().max().item() <= 1e-9


def test_fused_kernel_threads_give_the_same_scores():
    kernel = cpu_kernel_or_skip()
    model = make_model()
    text, frames, mask, tags_v, tags_t = make_data(nt=9, nv=23)
    one = scoring.score_matrix(model, text, frames, mask, tags_v, tags_t, method="fused", video_chunk=23)
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        three = scoring.score_matrix(model, text, frames, mask, tags_v, tags_t, method="fused", video_chunk=23)
    finally:
        torch.set_num_threads(before)
    assert kernel.name == "cpu-cpp"
    # The kernel scores each video on one thread in a fixed order; the surrounding GEMMs (pooling
    # weights, cosines) may round differently with another BLAS thread count.
    assert (one - three).abs().max().item() <= 1e-6


@pytest.mark.parametrize("overrides", VARIANTS)
def test_pooled_equals_direct(overrides):
    model = make_model(**overrides)
    text, frames, mask, tags_v, tags_t = make_data()
    direct = scoring.score_matrix(model, text, frames, mask, tags_v, tags_t, method="direct")
    # 1 and 3 captions take the concatenated-slot path, 11 the per-video one.
    for rows in (slice(0, 1), slice(2, 5), slice(0, 11)):
        pooled = scoring.score_matrix(model, text[rows], frames, mask, tags_v, tags_t[rows], method="pooled",
                                      video_chunk=4, video_block=9)
        assert (pooled - direct[rows]).abs().max().item() <= 1e-9


def test_fused_falls_back_to_fast_when_no_kernel(monkeypatch, caplog):
    model = make_model()
    text, frames, mask, tags_v, tags_t = make_data()
    monkeypatch.setattr(kernels, "_warned", set())
    monkeypatch.setattr(cpu, "load_kernel", lambda dtype: (None, "no C++ compiler found"))
    with caplog.at_level(logging.WARNING, logger="pipeline.kernels"):
        fused = scoring.score_matrix(model, text, frames, mask, tags_v, tags_t, method="fused", video_block=5)
    fast = scoring.score_matrix(model, text, frames, mask, tags_v, tags_t, method="fast")
    assert torch.equal(fused, fast)
    lines = [r.getMessage() for r in caplog.records if "fused scorer unavailable" in r.getMessage()]
    assert len(lines) == 1 and "no C++ compiler" in lines[0]  # one line, not one per block


def test_no_compiler_means_no_kernel_and_no_error(monkeypatch, tmp_path):
    monkeypatch.setenv("MACVR_KERNEL_CACHE", str(tmp_path))
    monkeypatch.setattr(cpu, "find_compiler", lambda: None)
    cpu._library.cache_clear()
    try:
        kernel, why = cpu.load_kernel(torch.float32)
        assert kernel is None and "no C++ compiler" in why
        with pytest.raises(cpu.KernelBuildError):
            cpu.build()
        assert cpu.main() == 1
    finally:
        cpu._library.cache_clear()
    assert not any(tmp_path.iterdir())


def test_kernel_disabled_by_environment(monkeypatch):
    monkeypatch.setenv("MACVR_FUSED_KERNEL", "off")
    cpu._library.cache_clear()
    try:
        kernel, why = cpu.load_kernel(torch.float32)
    finally:
        cpu._library.cache_clear()
    assert kernel is None and "MACVR_FUSED_KERNEL" in why


def test_half_precision_has_no_cpu_kernel():
    kernel, why = cpu.load_kernel(torch.float16)
    assert kernel is None and "float16" in why


def test_build_is_cached_per_source_and_atomic(monkeypatch, tmp_path):
    if cpu.find_compiler() is None:
        pytest.skip("no C++ compiler here")
    monkeypatch.setenv("MACVR_KERNEL_CACHE", str(tmp_path))
    first = cpu.build()
    stamp = first.stat().st_mtime_ns
    assert first.parent == tmp_path and first.suffix == ".so"
    assert cpu.build() == first and first.stat().st_mtime_ns == stamp  # reused, not rebuilt
    assert [p.name for p in tmp_path.iterdir()] == [first.name]  # no temporary left behind


def test_kernel_rejects_inconsistent_shapes():
    kernel = cpu_kernel_or_skip(torch.float32)
    j, n, i, k, h = 2, 4, 3, 2, 5
    good = dict(a=torch.rand(j, n, i), mask=torch.ones(j, n, dtype=torch.bool), extra_row=False,
                proj=torch.rand(j, n, k * h), cap=torch.rand(i, k * h), w2=torch.rand(h), b2=0.0,
                r=torch.rand(k, j, n, i), ga=torch.rand(j, k, n, i), t_norm=torch.rand(k, i) + 1, caption_block=8)
    assert kernel(**good).shape == (j, i)
    for name, bad in (("proj", torch.rand(j, n + 1, k * h)), ("ga", torch.rand(j, k, n, i + 1)),
                      ("cap", torch.rand(i, k * h + 1))):
        with pytest.raises(ValueError, match=f"inconsistent shapes.*{name}"):
            kernel(**{**good, name: bad})
    with pytest.raises(ValueError, match="proj"):  # the extra row must be there when announced
        kernel(**{**good, "extra_row": True})


TRITON_CHECK = textwrap.dedent("""
    import json, sys, torch
    sys.path.insert(0, {root!r})
    from tests.test_scoring import make_data, make_model
    from pipeline import kernels, scoring
    from pipeline.kernels import gpu
    out = {{}}
    for name, overrides in (("macvr", {{}}), ("dicosa_after", dict(variant="dicosa", pool_masking="after_softmax"))):
        model = make_model(dtype=torch.float32, **overrides)
        text, frames, mask, tags_v, tags_t = make_data(nt=19, nv=7, dtype=torch.float32)
        enc = model.encode_frames(frames, mask).detach()
        q = scoring.prepare_queries(model, text, tags_t)
        v = scoring.prepare_videos(model, enc, mask, tags_v)
        kernel = gpu.TritonFusedKernel(block_i=16, block_j=2, block_h=16)
        kernels.fused_kernel = lambda device, dtype: kernel
        fused = scoring.fused_scores(model, q, v, text_chunk=5, video_chunk=3)
        direct = scoring.direct_scores(model, text, enc, mask, tags_v, tags_t)
        out[name] = (fused - direct).abs().max().item()
    print(json.dumps(out))
""")


def test_triton_kernel_matches_direct_in_the_interpreter():
    """No GPU here: Triton's interpreter runs the same kernel on CPU tensors (correctness only)."""
    ok, why = __import__("pipeline.kernels.gpu", fromlist=["triton_available"]).triton_available()
    if not ok:
        pytest.skip(why)
    env = dict(os.environ, TRITON_INTERPRET="1")
    proc = subprocess.run([sys.executable, "-c", TRITON_CHECK.format(root=str(ROOT))], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    diffs = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(diffs) == {"macvr", "dicosa_after"}
    assert all(d <= 1e-4 for d in diffs.values()), diffs


def test_triton_kernel_checks_its_tiles():
    from pipeline.kernels import gpu

    with pytest.raises(ValueError, match="power of two"):
        gpu.TritonFusedKernel(block_j=3)
    with pytest.raises(ValueError, match="precision"):
        gpu.TritonFusedKernel(precision="fp8")
    kernel, why = gpu.load_kernel(torch.float64)
    assert kernel is None and "float64" in why
