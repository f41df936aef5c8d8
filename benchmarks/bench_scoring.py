"""Exact pairwise scoring: fused and fast forms vs the direct per-pair form, in one run.

    python benchmarks/bench_scoring.py [--captions 512] [--videos 128] [--threads 1] [--grid]
    python benchmarks/bench_scoring.py --device cuda --captions 2048 --videos 1024 \\
        --text-chunk 256 --video-chunk 64 --direct-chunk 64 --fused-video-chunk 1024

D=512, K=8, N_v=12 (ViT-B/32 MAC-VR), random weights and features (some videos padded). All
methods score the same caption x video matrix; the temporal transformer runs once beforehand
(shared, reported separately). Prints pairs/s of each, the ratios fused/direct and fast/direct
(target >= 10x for fused) and the max abs differences (target <= 1e-4 in float32). The forms run
in alternation for --repeats rounds (pairs/s: the best round; ratios: the median of the
per-round ratios), so load from other processes disturbs the comparison less. On a GPU it also
prints the fused form's pairs/s against the FP32 FLOP floor of the fast form's MACs per pair
(target: within 4x). --grid also times the fast and fused forms over tile sizes.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline import scoring  # noqa: E402
from pipeline.kernels import fused_kernel  # noqa: E402
from pipeline.model import MacVR, ModelConfig  # noqa: E402

#: FP32 lanes per SM by compute capability (CUDA programming guide, "arithmetic instructions").
FP32_LANES_PER_SM = {(7, 0): 64, (7, 5): 64, (8, 0): 64, (8, 6): 128, (8, 7): 128, (8, 9): 128,
                     (9, 0): 128, (10, 0): 128, (12, 0): 128}


def build_model(device: str, dim: int = 512, frames: int = 12) -> MacVR:
    config = ModelConfig(
        tags=("visual", "textual"), embed_dim=dim, num_concepts=8, pool_temperature=3.0,
        pool_masking="before_softmax", temporal_layers=4, temporal_heads=8, temporal_ln_eps=1e-12,
        max_frames=frames, concept_projection="chunk", confidence_hidden_ratio=2, init_logit_scale=math.log(100))
    model = MacVR(config)
    # PyTorch's default Linear init gives the confidence MLP realistic (not ~0) outputs.
    model.confidence.fc1.reset_parameters()
    model.confidence.fc2.reset_parameters()
    return model.to(device).eval()


def fast_macs_per_pair(model: MacVR, frames: int) -> int:
    """MACs per pair of the fast form: hidden rows + w2 + pooling logits + cosine numerators + Gram."""
    cfg = model.config
    kh = cfg.num_concepts * cfg.confidence_hidden
    return frames * kh + kh + 2 * frames * cfg.embed_dim + cfg.num_concepts * frames * frames


def gpu_peak_fp32_flops(device: torch.device) -> tuple[float, str]:
    """(peak FP32 FLOP/s, how it was obtained): SMs x FP32 lanes x 2 x boost clock."""
    props = torch.cuda.get_device_properties(device)
    lanes = FP32_LANES_PER_SM.get((props.major, props.minor), 128)
    clock_hz = props.clock_rate * 1e3  # kHz
    peak = props.multi_processor_count * lanes * 2 * clock_hz
    return peak, (f"{props.name}: {props.multi_processor_count} SMs x {lanes} FP32 lanes x 2 x "
                  f"{clock_hz / 1e9:.2f} GHz = {peak / 1e12:.1f} TFLOP/s")


def best_time(fn, repeats: int) -> tuple[float, torch.Tensor]:
    result, best = None, math.inf
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        result = fn()
        if result.is_cuda:
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best, result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--captions", type=int, default=512)
    parser.add_argument("--videos", type=int, default=128)
    parser.add_argument("--dim", type=int, default=512, help="embedding width D (512: ViT-B/32)")
    parser.add_argument("--frames", type=int, default=12, help="frame slots per video N_v")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 = quiet, comparable)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--text-chunk", type=int, default=scoring.DEFAULT_TEXT_CHUNK)
    parser.add_argument("--video-chunk", type=int, default=scoring.DEFAULT_VIDEO_CHUNK)
    parser.add_argument("--fused-text-chunk", type=int, default=scoring.DEFAULT_FUSED_TEXT_CHUNK)
    parser.add_argument("--fused-video-chunk", type=int, default=None,
                        help=f"videos per fused kernel call (default: {scoring.DEFAULT_FUSED_VIDEO_CHUNK} on a CPU, "
                             f"{scoring.DEFAULT_FUSED_GPU_VIDEO_CHUNK} on a GPU)")
    parser.add_argument("--direct-chunk", type=int, default=scoring.DIRECT_CHUNK, help="direct form tiles (square)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--grid", action="store_true", help="also time the fast and fused forms over tile sizes")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dev = args.device
    n, d = args.frames, args.dim
    model = build_model(dev, d, n)
    nt, nv = args.captions, args.videos
    text, tags_t = torch.randn(nt, d, device=dev), torch.randn(nt, d, device=dev)
    frames, tags_v = torch.randn(nv, n, d, device=dev), torch.randn(nv, d, device=dev)
    lengths = torch.randint(max(1, n // 3), n + 1, (nv,), device=dev)
    mask = torch.arange(n, device=dev)[None] < lengths[:, None]
    pairs = nt * nv
    kernel = fused_kernel(torch.device(dev), torch.float32)

    with torch.no_grad():
        t_enc, encoded = best_time(lambda: model.encode_frames(frames, mask), args.repeats)

    def fast(tc: int = args.text_chunk, vc: int = args.video_chunk) -> torch.Tensor:
        queries = scoring.prepare_queries(model, text, tags_t)
        videos = scoring.prepare_videos(model, encoded, mask, tags_v)
        return scoring.fast_scores(model, queries, videos, tc, vc)

    if args.fused_video_chunk is None:
        args.fused_video_chunk = (scoring.DEFAULT_FUSED_VIDEO_CHUNK if dev == "cpu"
                                  else scoring.DEFAULT_FUSED_GPU_VIDEO_CHUNK)

    def fused(tc: int = args.fused_text_chunk, vc: int = args.fused_video_chunk) -> torch.Tensor:
        queries = scoring.prepare_queries(model, text, tags_t)
        videos = scoring.prepare_videos(model, encoded, mask, tags_v)
        return scoring.fused_scores(model, queries, videos, tc, vc)

    def direct() -> torch.Tensor:
        return scoring.direct_scores(model, text, encoded, mask, tags_v, tags_t, args.direct_chunk, args.direct_chunk)

    with torch.no_grad():
        fused()  # first call: builds/loads the kernel (not timed)
    # Interleave the forms round by round so that load from other processes hits them alike;
    # the ratios reported are the medians of the per-round ratios.
    best = {"direct": math.inf, "fast": math.inf, "fused": math.inf}
    ratios: dict[str, list[float]] = {"fast": [], "fused": []}
    out = {}
    with torch.no_grad():
        for _ in range(args.repeats):
            times = {}
            for name, fn in (("direct", direct), ("fast", fast), ("fused", fused)):
                times[name], out[name] = best_time(fn, 1)
                best[name] = min(best[name], times[name])
            for name in ratios:
                ratios[name].append(times["direct"] / times[name])
    scale = out["direct"].abs().max().item()
    print(f"device {dev}, {torch.get_num_threads()} thread(s), D={d} K=8 N_v={n}, {nt} captions x {nv} videos "
          f"({mask.float().mean().item():.0%} real frames)")
    print(f"fused kernel: {kernel.name if kernel is not None else 'unavailable (fused falls back to fast)'}")
    print(f"temporal encoding (shared, not in the pair timings): {nv / t_enc:,.0f} videos/s")
    print(f"direct ({args.direct_chunk}x{args.direct_chunk} tiles): {pairs / best['direct']:12,.0f} pairs/s")
    print(f"fast   ({args.text_chunk}x{args.video_chunk} tiles):  {pairs / best['fast']:12,.0f} pairs/s")
    print(f"fused  ({args.fused_text_chunk}x{args.fused_video_chunk} tiles): {pairs / best['fused']:12,.0f} pairs/s")
    for name in ("fused", "fast"):
        target = "; target >= 10x" if name == "fused" else ""
        print(f"ratio {name}/direct: {statistics.median(ratios[name]):.1f}x (median of {len(ratios[name])} "
              f"interleaved rounds: {', '.join(f'{r:.1f}' for r in ratios[name])}{target})")
    for name in ("fused", "fast"):
        diff = (out[name] - out["direct"]).abs().max().item()
        print(f"max |{name} - direct|: {diff:.2e} (target <= 1e-4; scores up to {scale:.2f})")
    if out["fused"].is_cuda:
        peak, how = gpu_peak_fp32_flops(out["fused"].device)
        macs = fast_macs_per_pair(model, n)
        floor = peak / (2 * macs)
        fused_rate = pairs / best["fused"]
        print(f"GPU FP32 peak: {how}")
        print(f"FLOP floor of the fast form ({macs:,} MACs/pair): {floor:,.0f} pairs/s; fused reaches "
              f"{fused_rate:,.0f} pairs/s = 1/{floor / fused_rate:.1f} of it (target: within 4x)")
    if args.grid:
        with torch.no_grad():
            for label, fn, tcs, vcs in (("fast", fast, (4, 8, 16, 32, 64), (1, 2, 4, 8, 16)),
                                        ("fused", fused, (16, 32, 64, 128, 512), (4, 8, 16, 32, 64))):
                for tc in tcs:
                    line = []
                    for vc in vcs:
                        t, _ = best_time(lambda: fn(tc, vc), args.repeats)
                        line.append(f"{vc}:{pairs / t / 1e3:5.0f}k")
                    print(f"{label:5s} grid text_chunk={tc:3d}  video_chunk:pairs/s  " + "  ".join(line))


if __name__ == "__main__":
    main()
