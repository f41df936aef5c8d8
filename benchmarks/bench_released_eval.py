"""What evaluating a released ViT-B/32 checkpoint costs on this machine, per 1000 items.

The evaluation of a released (or fine-tuned) variant re-encodes every item with the checkpoint's
own CLIP: test videos (N_v frames each) and captions, their tag sentences, and QB-Norm's
querybank (training videos for v2t, one caption per training video for t2v); then scores every
pair with the exact head. This measures each part with random weights of the real shapes
(ViT-B/32 CLIP, the official MAC-VR head: D=512, K=8, 4 temporal layers) and prints the time per
1000 videos, per 1000 texts and per 1000 x 1000 pairs, and the estimated total for MSR-VTT 1k-A
(1000 test videos and captions) with querybanks of 0, 1000 and 9000 training videos.

    python benchmarks/bench_released_eval.py                 # CPU, 2 threads (~2 min)
    python benchmarks/bench_released_eval.py --device cuda --videos 200 --texts 2000
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=24, help="videos encoded for the timing")
    parser.add_argument("--frames", type=int, default=12, help="N_v: frame slots (all real)")
    parser.add_argument("--texts", type=int, default=256, help="texts encoded for the timing")
    parser.add_argument("--pairs", type=int, default=256, help="captions and videos scored (pairs = this squared)")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=96, help="images / texts per forward pass")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--small", action="store_true", help="a tiny CLIP instead of ViT-B/32 (tests)")
    args = parser.parse_args()
    torch.manual_seed(0)
    if args.threads:
        torch.set_num_threads(args.threads)
    from pipeline.backbone.arch import VIT_B_32, ClipArch
    from pipeline.backbone.clip_model import ClipModel
    from pipeline.backbone.encode import encode_text_array, encode_video_array
    from pipeline.model import MacVR, ModelConfig
    from pipeline.scoring import score_matrix

    arch = VIT_B_32 if not args.small else ClipArch(embed_dim=64, image_resolution=args.image_size, vision_layers=1,
                                                   vision_width=64, vision_patch_size=16, context_length=77,
                                                   vocab_size=49408, transformer_width=64, transformer_heads=1,
                                                   transformer_layers=1)
    backbone = ClipModel(arch.build().float().eval(), "clip").to(args.device)
    n, s = args.frames, arch.image_resolution
    frames = np.random.default_rng(0).integers(0, 256, (args.videos, n, s, s, 3), dtype=np.uint8)
    mask = np.ones((args.videos, n), dtype=bool)
    encode_video_array(backbone, frames, mask, np.arange(min(2, args.videos)), "blank", args.batch,
                       dtype=np.float32)  # warm-up
    started = time.perf_counter()
    feats, masks = encode_video_array(backbone, frames, mask, np.arange(args.videos), "blank", args.batch,
                                      dtype=np.float32)
    per_video = (time.perf_counter() - started) / args.videos
    words = "a man is cooking pasta in a small kitchen while a dog watches".split()
    texts = [" ".join(words[: 4 + i % 9]) + f" {i}" for i in range(args.texts)]
    encode_text_array(backbone, texts[:8], 32, args.batch, dtype=np.float32)  # warm-up
    started = time.perf_counter()
    encode_text_array(backbone, texts, 32, args.batch, dtype=np.float32)
    per_text = (time.perf_counter() - started) / args.texts
    d = arch.embed_dim
    config = ModelConfig(tags=("visual", "textual"), num_concepts=8, pool_temperature=3.0,
                         pool_masking="after_softmax", temporal_layers=4, temporal_heads=max(d // 64, 1),
                         temporal_ln_eps=1e-12, concept_projection="chunk", confidence_hidden_ratio=2,
                         init_logit_scale=4.6, embed_dim=d, max_frames=77)
    head = MacVR(config).eval().to(args.device)
    rng = np.random.default_rng(1)
    p = args.pairs
    text = rng.standard_normal((p, d)).astype(np.float32)
    video = np.repeat(feats, int(np.ceil(p / len(feats))), axis=0)[:p]
    vmask = np.repeat(masks, int(np.ceil(p / len(masks))), axis=0)[:p]
    tags_v, tags_t = (rng.standard_normal((p, d)).astype(np.float32) for _ in range(2))
    started = time.perf_counter()
    with torch.no_grad():
        score_matrix(head, text, video, vmask, tags_v, tags_t, method="fast", text_chunk=16, video_chunk=8)
    per_pair = (time.perf_counter() - started) / (p * p)
    k = 1000
    print(f"device {args.device}, {torch.get_num_threads()} threads, CLIP {'ViT-B/32' if not args.small else 'small'}"
          f" at {s} px, {n} frames per video")
    print(f"videos:  {per_video * k:8.1f} s per 1000 videos ({per_video * 1e3:.0f} ms per video, {n} frames)")
    print(f"texts:   {per_text * k:8.1f} s per 1000 texts (captions or tag sentences, 32 tokens)")
    print(f"scoring: {per_pair * k * k:8.1f} s per 1000 x 1000 pairs (exact head, fast form)")
    # test: videos, their visual tag sentences, captions, their textual tag sentences, all pairs
    test = k * per_video + 3 * k * per_text + k * k * per_pair
    for m in (0, 1000, 9000):
        # querybanks: m training videos (+ visual tags) x test captions, m captions (+ textual tags) x test videos
        qb = m * per_video + 3 * m * per_text + 2 * m * k * per_pair
        print(f"MSR-VTT 1k-A, querybank {m:5d}: {(test + qb) / 60:7.1f} min per variant")


if __name__ == "__main__":
    main()
