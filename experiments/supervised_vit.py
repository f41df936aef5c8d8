"""Can the tiny ViT learn shape kind / position from single frames at all? (supervised check)

python -m experiments.supervised_vit PATCH STEPS
"""
from __future__ import annotations

import sys
import time

import numpy as np
import torch

from experiments.common import setup, tiny_config
from pipeline.backbone.clip_model import ClipModel
from pipeline.backbone.tiny import tiny_arch
from pipeline.data.synth_render import render_frames
from pipeline.data.synth_scene import SHAPES, sample_scene


def main() -> None:
    setup()
    patch, steps = int(sys.argv[1]), int(sys.argv[2])
    rng = np.random.default_rng(0)
    frames, kinds, xbin = [], [], []
    while len(frames) < 3000:
        sc = sample_scene(rng, 20, 10)
        if len(sc.shapes) != 1 or sc.shapes[0].event != "none":
            continue
        frames.append(render_frames(sc, [0], 64, 64)[0])
        kinds.append(SHAPES.index(sc.shapes[0].shape))
        xbin.append(min(int(sc.shapes[0].start[0] * 3), 2))
    X = np.stack(frames)
    y = np.stack([kinds, xbin], 1)
    tr, te = slice(0, 2500), slice(2500, 3000)
    torch.manual_seed(0)
    backbone = ClipModel(tiny_arch(tiny_config({"vision_patch_size": patch}), 64, 32).build().float(), "tiny")
    vis = backbone.model.visual
    head = torch.nn.Linear(vis.output_dim, 6)
    opt = torch.optim.AdamW(list(vis.parameters()) + list(head.parameters()), lr=1e-3, weight_decay=0.1)
    start = time.process_time()
    for s in range(steps):
        idx = rng.integers(0, 2500, 64)
        out = head(vis(backbone.preprocess(X[idx])))
        t = torch.as_tensor(y[idx])
        loss = torch.nn.functional.cross_entropy(out[:, :3], t[:, 0]) + torch.nn.functional.cross_entropy(out[:, 3:], t[:, 1])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        out = head(vis(backbone.preprocess(X[te])))
    acc = (out[:, :3].argmax(1).numpy() == y[te, 0]).mean(), (out[:, 3:].argmax(1).numpy() == y[te, 1]).mean()
    print(f"patch {patch} steps {steps}: test acc kind {acc[0]:.2f} (chance .33) x-position {acc[1]:.2f} (chance .33); cpu {time.process_time() - start:.0f}s")


if __name__ == "__main__":
    main()
