"""Can the tiny ViT learn shape kind / position from single frames at all? (supervised check)

python experiments/supervised_vit.py PATCH STEPS
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from experiments.common import tiny_config  # noqa: E402
from pipeline.backbone.encode import preprocess_frames  # noqa: E402
from pipeline.backbone.tiny import tiny_arch  # noqa: E402
from pipeline.data.synth_render import render_frames  # noqa: E402
from pipeline.data.synth_scene import SHAPES, sample_scene  # noqa: E402

torch.set_num_threads(1)
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
model = tiny_arch(tiny_config({"vision_patch_size": patch})).build().float()
vis = model.visual
head = torch.nn.Linear(vis.output_dim, 6)
opt = torch.optim.AdamW(list(vis.parameters()) + list(head.parameters()), lr=1e-3, weight_decay=0.1)
start = time.process_time()
for s in range(steps):
    idx = rng.integers(0, 2500, 64)
    out = head(vis(preprocess_frames(X[idx], 64)))
    t = torch.as_tensor(y[idx])
    loss = torch.nn.functional.cross_entropy(out[:, :3], t[:, 0]) + torch.nn.functional.cross_entropy(out[:, 3:], t[:, 1])
    opt.zero_grad()
    loss.backward()
    opt.step()
with torch.no_grad():
    out = head(vis(preprocess_frames(X[te], 64)))
acc = (out[:, :3].argmax(1).numpy() == y[te, 0]).mean(), (out[:, 3:].argmax(1).numpy() == y[te, 1]).mean()
print(f"patch {patch} steps {steps}: test acc kind {acc[0]:.2f} (chance .33) x-position {acc[1]:.2f} (chance .33); cpu {time.process_time() - start:.0f}s")
