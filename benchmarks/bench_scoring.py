"""Exact pairwise scoring: fast split algebra vs the direct per-pair form, in one run.

    python benchmarks/bench_scoring.py [--captions 256] [--videos 128] [--threads 1] [--grid]

D=512, K=8, N_v=12 (ViT-B/32 MAC-VR), random weights and features (some videos padded). Both
methods score the same caption x video matrix; the temporal transformer runs once beforehand
(shared by both, reported separately). Prints pairs/s of each, the ratio (target >= 10x) and
the max abs difference (target <= 1e-4 in float32). Both forms run in alternation for --repeats
rounds (pairs/s: the best round; ratio: the median of the per-round ratios), so load from
other processes disturbs the comparison less. --grid also times the fast form over tile sizes.
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
from pipeline.model import MacVR, ModelConfig  # noqa: E402


def build_model(device: str) -> MacVR:
    config = ModelConfig(
        variant="macvr", embed_dim=512, num_concepts=8, pool_temperature=3.0, pool_masking="before_softmax",
        temporal_layers=4, temporal_heads=8, max_frames=12, concept_projection="chunk",
        confidence_hidden_ratio=2, use_visual_tags=True, use_textual_tags=True, init_logit_scale=math.log(100))
    model = MacVR(config)
    # PyTorch's default Linear init gives the confidence MLP realistic (not ~0) outputs.
    model.confidence.fc1.reset_parameters()
    model.confidence.fc2.reset_parameters()
    return model.to(device).eval()


def best_time(fn, repeats: int) -> tuple[float, torch.Tensor]:
    result, best = None, math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        if result.is_cuda:
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--captions", type=int, default=512)
    parser.add_argument("--videos", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 = quiet, comparable)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--text-chunk", type=int, default=scoring.DEFAULT_TEXT_CHUNK)
    parser.add_argument("--video-chunk", type=int, default=scoring.DEFAULT_VIDEO_CHUNK)
    parser.add_argument("--direct-chunk", type=int, default=scoring.DIRECT_CHUNK, help="direct form tiles (square)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--grid", action="store_true", help="also time the fast form over tile sizes")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dev = args.device
    model = build_model(dev)
    nt, nv, n, d = args.captions, args.videos, 12, 512
    text, tags_t = torch.randn(nt, d, device=dev), torch.randn(nt, d, device=dev)
    frames, tags_v = torch.randn(nv, n, d, device=dev), torch.randn(nv, d, device=dev)
    lengths = torch.randint(4, n + 1, (nv,), device=dev)
    mask = torch.arange(n, device=dev)[None] < lengths[:, None]
    pairs = nt * nv

    with torch.no_grad():
        t_enc, encoded = best_time(lambda: model.encode_frames(frames, mask), args.repeats)

    def fast(tc: int = args.text_chunk, vc: int = args.video_chunk) -> torch.Tensor:
        queries = scoring.prepare_queries(model, text, tags_t)
        videos = scoring.prepare_videos(model, encoded, mask, tags_v)
        return scoring.fast_scores(model, queries, videos, tc, vc)

    def direct() -> torch.Tensor:
        return scoring.direct_scores(model, text, encoded, mask, tags_v, tags_t, args.direct_chunk, args.direct_chunk)

    # Interleave the two forms round by round so that load from other processes hits both alike;
    # the ratio reported is the median of the per-round ratios.
    t_direct = t_fast = math.inf
    ratios = []
    for _ in range(args.repeats):
        td, s_direct = best_time(direct, 1)
        tf, s_fast = best_time(fast, 1)
        t_direct, t_fast = min(t_direct, td), min(t_fast, tf)
        ratios.append(td / tf)
    diff = (s_fast - s_direct).abs().max().item()
    ratio = statistics.median(ratios)
    print(f"device {dev}, {torch.get_num_threads()} thread(s), D=512 K=8 N_v=12, {nt} captions x {nv} videos")
    print(f"temporal encoding (shared, not in the pair timings): {nv / t_enc:,.0f} videos/s")
    print(f"direct ({args.direct_chunk}x{args.direct_chunk} tiles): {pairs / t_direct:12,.0f} pairs/s")
    print(f"fast   ({args.text_chunk}x{args.video_chunk} tiles):  {pairs / t_fast:12,.0f} pairs/s")
    print(f"ratio fast/direct: {ratio:.1f}x (median of {len(ratios)} interleaved rounds: "
          f"{', '.join(f'{r:.1f}' for r in ratios)}; target >= 10x)")
    print(f"max |fast - direct|: {diff:.2e} "
          f"(target <= 1e-4; scores up to {s_direct.abs().max().item():.2f})")
    if args.grid:
        for tc in (4, 8, 16, 32, 64):
            line = []
            for vc in (1, 2, 4, 8, 16):
                t, _ = best_time(lambda: fast(tc, vc), args.repeats)
                line.append(f"{vc}:{pairs / t / 1e3:5.0f}k")
            print(f"fast grid text_chunk={tc:3d}  video_chunk:pairs/s  " + "  ".join(line))


if __name__ == "__main__":
    main()
