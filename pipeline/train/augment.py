"""Training-time frame augmentation for end-to-end fine-tuning (``train.augment``).

``randaugment`` is the official MSR-VTT recipe: timm's RandAugment policy
``rand-m7-n4-mstd0.5-inc1`` (4 operations from the "increasing" set, magnitude 7 with a Gaussian
jitter of 0.5) applied *identically to every frame of a video* -- the operations, their
probabilities, magnitudes and signs are drawn once per video and load, as the official video
RandAugment does, so motion is not turned into flicker. Draws are seeded by (seed, epoch, pair),
like the tag draws, so an epoch is reproducible and independent of data-loader workers.

Differences from the official loader (documented in the README's deviations table): the policy
runs on the stored ``frames.image_size`` crops rather than on the decoded frames before
resizing (translations scale with the crop), and padded slots stay blank (the official pads
after augmenting, which is the same).
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np
from PIL import Image

POLICY = "rand-m7-n4-mstd0.5-inc1"


class VideoRandAugment:
    """timm's RandAugment ``policy``, one draw per video applied to all its frames."""

    def __init__(self, image_size: int, policy: str = POLICY) -> None:
        from timm.data.auto_augment import rand_augment_transform

        hparams = {"translate_const": int(image_size * 0.45), "img_mean": (124, 116, 104),
                   "interpolation": Image.BICUBIC}
        self.transform = rand_augment_transform(policy, hparams)

    def __call__(self, frames: Sequence[np.ndarray], seed: Sequence[int]) -> list[np.ndarray]:
        """uint8 [H, W, 3] frames of one video -> augmented frames (same draw for every frame)."""
        rng = np.random.default_rng(list(seed))
        t = self.transform
        replace = t.choice_weights is None
        chosen = rng.choice(len(t.ops), t.num_layers, replace=replace, p=t.choice_weights)
        images = [Image.fromarray(np.asarray(f)) for f in frames]
        saved = random.getstate()  # timm's level functions draw signs from the global RNG
        try:
            random.seed(int(rng.integers(2**63)))
            for index in chosen:
                op = t.ops[index]
                if op.prob < 1.0 and rng.random() > op.prob:
                    continue
                magnitude = op.magnitude
                if op.magnitude_std > 0:
                    magnitude = (rng.uniform(0, magnitude) if op.magnitude_std == float("inf")
                                 else rng.normal(magnitude, op.magnitude_std))
                magnitude = max(0.0, min(magnitude, op.magnitude_max or 10.0))
                args = op.level_fn(magnitude, op.hparams) if op.level_fn is not None else ()
                images = [op.aug_fn(img, *args, **op.kwargs) for img in images]
        finally:
            random.setstate(saved)
        return [np.asarray(img.convert("RGB")) for img in images]
