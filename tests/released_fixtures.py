"""Official-format MAC-VR / DiCoSA checkpoints from a seeded generator (no weights to download).

``official_state_dict`` returns what ``torch.save(model.state_dict())`` of the official model class
holds: OpenAI CLIP key names under ``clip.`` (as adrianofragomeni/MAC-VR-code's ``module_clip``
names them), the temporal transformer (``transformerClip.resblocks.<i>``), the frame position
table (CLIP's context length rows) and the confidence MLP (``weight_fc.0`` / ``weight_fc.2``:
MAC-VR reads 4 concept chunks, DiCoSA 2). Values are drawn key by key, in sorted key order, from
``numpy.random.default_rng(seed)`` in float64 and rounded to the requested dtype, with scales
that keep a ViT's activations in range (fan-in scaled matrices, LayerNorm gains near 1), so the
golden test can rebuild a ViT-B/32-sized checkpoint bit for bit instead of storing 600 MB.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

BLOCK = ("attn.in_proj_weight", "attn.in_proj_bias", "attn.out_proj.weight", "attn.out_proj.bias",
         "ln_1.weight", "ln_1.bias", "mlp.c_fc.weight", "mlp.c_fc.bias", "mlp.c_proj.weight",
         "mlp.c_proj.bias", "ln_2.weight", "ln_2.bias")


@dataclass(frozen=True)
class Shapes:
    """A ViT CLIP and the head's sizes (defaults: ViT-B/32 and the official MSR-VTT head)."""

    embed_dim: int = 512
    image_resolution: int = 224
    vision_layers: int = 12
    vision_width: int = 768
    vision_patch_size: int = 32
    context_length: int = 77
    vocab_size: int = 49408
    text_width: int = 512
    text_layers: int = 12
    temporal_layers: int = 4
    num_concepts: int = 8


VIT_B_32 = Shapes()
VIT_B_16 = Shapes(vision_patch_size=16)
#: A small CLIP in the official layout (text width = embedding width, as the official head needs).
SMALL = Shapes(embed_dim=64, image_resolution=32, vision_layers=1, vision_width=64, vision_patch_size=16,
               context_length=77, text_width=64, text_layers=1, temporal_layers=2, num_concepts=8)


def _block_shapes(prefix: str, width: int) -> dict[str, tuple[int, ...]]:
    return {f"{prefix}.attn.in_proj_weight": (3 * width, width), f"{prefix}.attn.in_proj_bias": (3 * width,),
            f"{prefix}.attn.out_proj.weight": (width, width), f"{prefix}.attn.out_proj.bias": (width,),
            f"{prefix}.ln_1.weight": (width,), f"{prefix}.ln_1.bias": (width,),
            f"{prefix}.mlp.c_fc.weight": (4 * width, width), f"{prefix}.mlp.c_fc.bias": (4 * width,),
            f"{prefix}.mlp.c_proj.weight": (width, 4 * width), f"{prefix}.mlp.c_proj.bias": (width,),
            f"{prefix}.ln_2.weight": (width,), f"{prefix}.ln_2.bias": (width,)}


def key_shapes(kind: str, s: Shapes = VIT_B_32) -> dict[str, tuple[int, ...]]:
    """Every key of the official ``state_dict()`` with its shape."""
    if kind not in ("macvr", "dicosa"):
        raise ValueError(kind)
    grid = s.image_resolution // s.vision_patch_size
    shapes: dict[str, tuple[int, ...]] = {
        "clip.positional_embedding": (s.context_length, s.text_width),
        "clip.text_projection": (s.text_width, s.embed_dim),
        "clip.logit_scale": (),
        "clip.token_embedding.weight": (s.vocab_size, s.text_width),
        "clip.ln_final.weight": (s.text_width,), "clip.ln_final.bias": (s.text_width,),
        "clip.visual.class_embedding": (s.vision_width,),
        "clip.visual.positional_embedding": (grid * grid + 1, s.vision_width),
        "clip.visual.proj": (s.vision_width, s.embed_dim),
        "clip.visual.conv1.weight": (s.vision_width, 3, s.vision_patch_size, s.vision_patch_size),
        "clip.visual.ln_pre.weight": (s.vision_width,), "clip.visual.ln_pre.bias": (s.vision_width,),
        "clip.visual.ln_post.weight": (s.vision_width,), "clip.visual.ln_post.bias": (s.vision_width,),
        "frame_position_embeddings.weight": (s.context_length, s.text_width),
    }
    for i in range(s.vision_layers):
        shapes.update(_block_shapes(f"clip.visual.transformer.resblocks.{i}", s.vision_width))
    for i in range(s.text_layers):
        shapes.update(_block_shapes(f"clip.transformer.resblocks.{i}", s.text_width))
    for i in range(s.temporal_layers):
        shapes.update(_block_shapes(f"transformerClip.resblocks.{i}", s.text_width))
    d = s.text_width // s.num_concepts
    chunks = 4 if kind == "macvr" else 2
    shapes.update({"weight_fc.0.weight": (2 * chunks * d, chunks * d), "weight_fc.0.bias": (2 * chunks * d,),
                   "weight_fc.2.weight": (1, 2 * chunks * d), "weight_fc.2.bias": (1,)})
    return shapes


def _scale(key: str, shape: tuple[int, ...]) -> tuple[float, float]:
    """(mean, std) of a key's values: fan-in scaled matrices, near-unit LayerNorm gains."""
    last = key.rsplit(".", 1)[-1]
    if key.endswith("logit_scale"):
        return math.log(100.0), 0.0
    if ".ln_" in key or "ln_final" in key or "ln_pre" in key or "ln_post" in key:
        return (1.0, 0.1) if last == "weight" else (0.0, 0.05)
    if last.endswith("bias"):
        return 0.0, 0.02
    if key.endswith("token_embedding.weight"):
        return 0.0, 0.02
    if "positional_embedding" in key or "position_embeddings" in key:
        return 0.0, 0.05
    if key.endswith("class_embedding"):
        return 0.0, shape[0] ** -0.5
    if key.endswith("text_projection") or key.endswith("visual.proj"):
        return 0.0, shape[0] ** -0.5
    fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
    if key == "weight_fc.2.weight":
        # Small confidences keep scores in a trained model's range (|s| < 1): the official QB-Norm
        # computes exp(70 s) in float32, which overflows above s = 1.27.
        return 0.0, 0.25 * fan_in ** -0.5
    return 0.0, fan_in ** -0.5


def official_state_dict(kind: str = "macvr", shapes: Shapes = VIT_B_32, seed: int = 0,
                        clip_dtype: torch.dtype = torch.float32, module_prefix: bool = False
                        ) -> "OrderedDict[str, torch.Tensor]":
    """The seeded official-format state dict (``clip_dtype`` for the ``clip.*`` matrices, as the
    official GPU runs store CLIP in fp16; 1-D gains, biases and embeddings stay fp32)."""
    rng = np.random.default_rng(seed)
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    for key, shape in sorted(key_shapes(kind, shapes).items()):
        mean, std = _scale(key, shape)
        values = mean + std * rng.standard_normal(shape) if std else np.full(shape, mean)
        tensor = torch.from_numpy(np.asarray(values, dtype=np.float32))
        if key.startswith("clip.") and len(shape) >= 2 and "embedding" not in key:
            tensor = tensor.to(clip_dtype)
        out[("module." if module_prefix else "") + key] = tensor
    return out


# --------------------------------------------------------------------------- a tiny MSR-VTT release
#: (video id, seconds at 5 fps, captions) of the tiny MSR-VTT-format release the golden test uses:
#: short clips (padded slots), clips longer than 12 s at 1 fps (subsampled), several captions per
#: training video (the first is QB-Norm's text querybank), a caption longer than 32 tokens (cut).
TRAIN_VIDEOS = [
    ("video9000", 3, ["a man is cooking pasta in a kitchen", "someone boils water on a stove"]),
    ("video9001", 7, ["A dog runs across the park!", "a brown dog chasing a ball"]),
    ("video9002", 13, ["children are playing football outside", "kids kick a ball on a field"]),
    ("video9003", 2, ["a woman sings on stage", "a singer performs a song for the crowd"]),
    ("video9004", 16, ["cars race around a track", "a red car overtakes two others in a race"]),
    ("video9005", 5, ["a cat sleeps on a sofa", "a kitten naps"]),
    ("video9006", 9, ["people dance at a party", "a group of friends dancing to loud music"]),
    ("video9007", 12, ["a chef explains a recipe", "a man talks about how to cook rice"]),
]
TEST_VIDEOS = [
    ("video7010", 4, "a man is talking about cars in a garage"),
    ("video7011", 14, "two women are laughing while they cook dinner together in a small kitchen and the "
                      "camera slowly moves around them showing every pot, pan and plate on the crowded table"),
    ("video7012", 2, "a dog jumps into a pool"),
    ("video7013", 11, "someone plays the guitar"),
    ("video7014", 17, "a soccer player scores a goal"),
    ("video7015", 6, "a cartoon character is running"),
]
TAG_WORDS = ["cooking", "kitchen", "food preparation", "dog", "outdoors", "sports", "music", "performance",
             "racing", "speed", "pets", "relaxation", "celebration", "dance", "recipe", "education",
             "conversation", "automobiles", "laughter", "friendship", "swimming", "guitar", "soccer",
             "animation", "children's games", "Teamwork", "home life", "entertainment"]


def _frames(seed: int, seconds: int, fps: int = 5, width: int = 40, height: int = 30) -> np.ndarray:
    """Moving coloured blocks on a coloured background, deterministic per seed."""
    rng = np.random.default_rng(seed)
    n = seconds * fps
    background = rng.integers(0, 256, 3)
    frames = np.empty((n, height, width, 3), dtype=np.uint8)
    blocks = [(rng.integers(0, 256, 3), rng.uniform(0, width - 10), rng.uniform(0, height - 8),
               rng.uniform(-2, 2), rng.uniform(-1.5, 1.5)) for _ in range(3)]
    for t in range(n):
        frame = np.empty((height, width, 3), dtype=np.uint8)
        frame[:] = background
        for colour, x0, y0, vx, vy in blocks:
            x = int(x0 + vx * t) % (width - 10)
            y = int(y0 + vy * t) % (height - 8)
            frame[y:y + 8, x:x + 10] = colour
        frames[t] = frame
    return frames


def _tags(rng: np.random.Generator, count: int) -> list[str]:
    return [TAG_WORDS[i] for i in rng.permutation(len(TAG_WORDS))[:count]]


def write_msrvtt_release(root: Path, seed: int = 0) -> dict[str, Path]:
    """Videos (``root/videos``) and the two tag CSVs (``root/anns``) in the official MSR-VTT format.

    The videos are committed once as golden inputs (H.264 bytes can differ between encoder
    builds); the CSVs are exactly what this function writes."""
    from pipeline.released.tags import tag_literal
    from pipeline.videoio import write_video

    root = Path(root)
    rng = np.random.default_rng(seed)
    rows_train, rows_test = [], []
    for i, (vid, seconds, captions) in enumerate(TRAIN_VIDEOS):
        write_video(root / "videos" / f"{vid}.mp4", _frames(100 + i, seconds), fps=5)
        visual = _tags(rng, 6 + 2 * (i % 4))  # 6..12 visual tags
        for caption in captions:
            rows_train.append((vid, caption, tag_literal(_tags(rng, int(rng.integers(3, 14)))), tag_literal(visual)))
    for i, (vid, seconds, caption) in enumerate(TEST_VIDEOS):
        write_video(root / "videos" / f"{vid}.mp4", _frames(200 + i, seconds), fps=5)
        textual = [] if i == 3 else _tags(rng, int(rng.integers(4, 14)))  # one caption without textual tags
        rows_test.append((vid, caption, tag_literal(textual), tag_literal(_tags(rng, 5 + i))))
    anns = root / "anns"
    anns.mkdir(parents=True, exist_ok=True)
    columns = ["video_id", "sentence", "textual_tags", "visual_tags"]
    import pandas as pd

    pd.DataFrame(rows_train, columns=columns).to_csv(anns / "training_9k.csv", index=False)
    pd.DataFrame(rows_test, columns=columns).to_csv(anns / "testing.csv", index=False)
    return {"videos": root / "videos", "anns": anns}


def write_msrvtt_annotations(anns: Path, out: Path) -> None:
    """The standard MSR-VTT files (``MSRVTT_data.json``, ``MSRVTT_train.9k.csv``,
    ``MSRVTT_JSFUSION_test.csv``) holding the same videos and captions as the tag CSVs in ``anns``."""
    import json

    import pandas as pd

    train = pd.read_csv(anns / "training_9k.csv", dtype=str, keep_default_na=False)
    test = pd.read_csv(anns / "testing.csv", dtype=str, keep_default_na=False)
    out.mkdir(parents=True, exist_ok=True)
    sentences = [{"video_id": v, "caption": c, "sen_id": i} for i, (v, c) in
                 enumerate(zip(train.iloc[:, 0], train.iloc[:, 1]))]
    videos = [{"video_id": v} for v in dict.fromkeys(list(train.iloc[:, 0]) + list(test.iloc[:, 0]))]
    (out / "MSRVTT_data.json").write_text(json.dumps({"videos": videos, "sentences": sentences}))
    pd.DataFrame({"video_id": list(dict.fromkeys(train.iloc[:, 0]))}).to_csv(out / "MSRVTT_train.9k.csv", index=False)
    pd.DataFrame({"key": [f"ret{i}" for i in range(len(test))], "vid_key": [f"msr{v[5:]}" for v in test.iloc[:, 0]],
                  "video_id": test.iloc[:, 0], "sentence": test.iloc[:, 1]}).to_csv(
        out / "MSRVTT_JSFUSION_test.csv", index=False)
