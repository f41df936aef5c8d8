"""The authors' trained checkpoints: official state dicts -> the project's backbone + head.

A released ``pytorch_model.bin`` is the ``state_dict()`` of the official model class
(adrianofragomeni/MAC-VR-code, or jpthu17/DiCoSA for DiCoSA), saved by ``torch.save``:

- ``clip.*``: the checkpoint's own fine-tuned CLIP, with OpenAI's key names (often fp16 tensors:
  the official code converts CLIP to fp16 on a GPU);
- ``frame_position_embeddings.weight`` [77, W] (CLIP's context length rows; the first N_v used),
  ``transformerClip.resblocks.<i>.*`` (the residual temporal transformer, W / 64 heads);
- ``weight_fc.0`` / ``weight_fc.2``: the confidence MLP, input 4d (MAC-VR: [e_t, e_av, e_at, e_v])
  or 2d (DiCoSA: [e_t, e_v]), hidden twice the input.

Keys may carry DDP's ``module.`` prefix. Every key must land somewhere: the official loader's
``load_state_dict(strict=False)`` silently ignores keys it does not know (and leaves missing ones
at their initialisation), so a mismatched file there evaluates a half-random model; here a missing
or unknown key refuses the file in one line that names them. Tensors are read as float32 (fp16
values are exact in fp32).

What the weights do not say comes from the variant's resolved ``train.model`` (pooling
temperature and mask order, LayerNorm epsilon: use the reference profile for the official
values); the number of concepts K follows from the MLP's input width and the variant's tag slots.
The result is an ordinary ``model.pt`` of the train stage whose backbone is the checkpoint's CLIP,
so evaluation re-encodes every item with it, exactly as for an end-to-end fine-tuned variant.
"""

from __future__ import annotations

import logging
import math
import re
import shutil
from pathlib import Path
from typing import Any

import torch

from pipeline.backbone.arch import ClipArch
from pipeline.io import load_torch

log = logging.getLogger(__name__)

FORMATS = ("macvr", "dicosa")
CLIP_PREFIX = "clip."
BLOCK_RE = re.compile(r"^transformerClip\.resblocks\.(\d+)\.(.+)$")
BLOCK_PARAMS = ("attn.in_proj_weight", "attn.in_proj_bias", "attn.out_proj.weight", "attn.out_proj.bias",
                "ln_1.weight", "ln_1.bias", "mlp.c_fc.weight", "mlp.c_fc.bias", "mlp.c_proj.weight",
                "mlp.c_proj.bias", "ln_2.weight", "ln_2.bias")
MLP_KEYS = {"weight_fc.0.weight": "confidence.fc1.weight", "weight_fc.0.bias": "confidence.fc1.bias",
            "weight_fc.2.weight": "confidence.fc2.weight", "weight_fc.2.bias": "confidence.fc2.bias"}
POSITIONS = "frame_position_embeddings.weight"
# Buffers of OpenAI's TorchScript archives that build_model drops; harmless if a state dict has them.
CLIP_IGNORED = ("input_resolution", "context_length", "vocab_size")
SHOWN = 12


class ReleasedCheckpointError(ValueError):
    """A released checkpoint cannot be read or does not fit the official model class."""


def _names(keys: list[str]) -> str:
    keys = sorted(keys)
    return ", ".join(keys[:SHOWN]) + (f" (and {len(keys) - SHOWN} more)" if len(keys) > SHOWN else "")


def read_state_dict(path: str | Path, info: dict[str, Any] | None = None) -> dict[str, torch.Tensor]:
    """The checkpoint's tensors, ``module.`` prefixes removed, as float32 CPU tensors.

    ``info`` (if given) receives what was converted: stored dtypes and whether keys had ``module.``."""
    obj = load_torch(path, ReleasedCheckpointError, "released checkpoint not found",
                     "not a readable PyTorch state dict")
    if isinstance(obj, dict) and len(obj) == 1 and next(iter(obj)) in ("state_dict", "model"):
        obj = next(iter(obj.values()))  # a state dict wrapped once, as some tools save it
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ReleasedCheckpointError(f"{path}: expected a state dict (a mapping of names to tensors), "
                                      f"got {type(obj).__name__}")
    out: dict[str, torch.Tensor] = {}
    dtypes: dict[str, int] = {}
    for key, value in obj.items():
        dtype = str(value.dtype).replace("torch.", "")
        dtypes[dtype] = dtypes.get(dtype, 0) + 1
        name = key[len("module."):] if key.startswith("module.") else key
        if name in out:
            raise ReleasedCheckpointError(f"{path}: {name!r} appears both with and without the 'module.' prefix")
        if not value.is_floating_point():
            raise ReleasedCheckpointError(f"{path}: {key} holds {value.dtype} values, expected floating point")
        out[name] = value.detach().to(torch.float32)
    if info is not None:
        info.update(dtypes=dict(sorted(dtypes.items())), module_prefix=any(k.startswith("module.") for k in obj))
    return out


def clip_arch(state: dict[str, torch.Tensor], where: str) -> ClipArch:
    """The ViT CLIP hyper-parameters implied by OpenAI-named weights (as ``clip.build_model``)."""
    try:
        conv = state["visual.conv1.weight"]
        grid = round((state["visual.positional_embedding"].shape[0] - 1) ** 0.5)
        width = int(state["ln_final.weight"].shape[0])
        return ClipArch(
            embed_dim=int(state["text_projection"].shape[1]),
            image_resolution=int(conv.shape[-1]) * grid,
            vision_layers=len({k.split(".")[3] for k in state if k.startswith("visual.transformer.resblocks.")}),
            vision_width=int(conv.shape[0]),
            vision_patch_size=int(conv.shape[-1]),
            context_length=int(state["positional_embedding"].shape[0]),
            vocab_size=int(state["token_embedding.weight"].shape[0]),
            transformer_width=width,
            transformer_heads=max(width // 64, 1),
            transformer_layers=len({k.split(".")[2] for k in state if k.startswith("transformer.resblocks.")}),
        )
    except KeyError as err:
        raise ReleasedCheckpointError(f"{where}: the clip.* weights lack {err.args[0]!r} (not a ViT CLIP)") from None


def _official_layout(state: dict[str, torch.Tensor], where: str) -> tuple[dict, dict, list[str]]:
    """(clip state without prefix, head state under official names, unknown keys)."""
    clip, head, unknown = {}, {}, []
    for key, value in state.items():
        if key.startswith(CLIP_PREFIX):
            name = key[len(CLIP_PREFIX):]
            if name not in CLIP_IGNORED:
                clip[name] = value
        elif key in MLP_KEYS or key == POSITIONS:
            head[key] = value
        elif (m := BLOCK_RE.match(key)) and m.group(2) in BLOCK_PARAMS:
            head[key] = value
        else:
            unknown.append(key)
    if not clip:
        raise ReleasedCheckpointError(f"{where}: no clip.* weights: not a MAC-VR / DiCoSA checkpoint "
                                      f"(first keys: {_names(list(state)[:5])})")
    return clip, head, unknown


def concepts_for(tags: tuple[str, ...], head: dict[str, torch.Tensor], embed_dim: int, expected: int,
                 where: str) -> int:
    """K from the confidence MLP's input width, (2 + #tag slots) * D / K, which must equal the
    variant's ``model.num_concepts`` (``expected``): shapes alone are ambiguous (a DiCoSA head
    with K = 8 reads as a MAC-VR head with K = 16), the variant's K settles it."""
    if "weight_fc.0.weight" not in head:
        raise ReleasedCheckpointError(f"{where}: missing weight_fc.0.weight (the confidence MLP)")
    fan_in = int(head["weight_fc.0.weight"].shape[1])
    slots = 2 + len(tags)
    if (slots * embed_dim) % fan_in:
        raise ReleasedCheckpointError(
            f"{where}: the confidence MLP reads {fan_in} inputs, which is not {slots} concept chunks of D/K "
            f"for D={embed_dim} and any integer K: it is not a {'MAC-VR' if tags else 'DiCoSA'} head "
            f"(MAC-VR reads 4 chunks [e_t, e_av, e_at, e_v], DiCoSA 2 [e_t, e_v]); check the variant")
    k = slots * embed_dim // fan_in
    if k != expected:
        other = "DiCoSA" if tags else "MAC-VR"
        raise ReleasedCheckpointError(
            f"{where}: as a {'MAC-VR' if tags else 'DiCoSA'} head ({slots} concept chunks), its {fan_in}-wide "
            f"confidence MLP implies K={k} concepts, but the variant has model.num_concepts={expected}: is it a "
            f"{other} checkpoint? (MAC-VR reads 4 chunks [e_t, e_av, e_at, e_v], DiCoSA 2 [e_t, e_v])")
    return k


def head_state(head: dict[str, torch.Tensor], layers: int) -> dict[str, torch.Tensor]:
    """Official head names -> the project's :class:`~pipeline.model.MacVR` names."""
    out = {MLP_KEYS[k]: v for k, v in head.items() if k in MLP_KEYS}
    out["temporal.position_embedding.weight"] = head[POSITIONS]
    for i in range(layers):
        for p in BLOCK_PARAMS:
            out[f"temporal.resblocks.{i}.{p}"] = head[f"transformerClip.resblocks.{i}.{p}"]
    return out


def expected_head_keys(layers: int) -> set[str]:
    keys = set(MLP_KEYS) | {POSITIONS}
    keys |= {f"transformerClip.resblocks.{i}.{p}" for i in range(layers) for p in BLOCK_PARAMS}
    return keys


def import_state(state: dict[str, torch.Tensor], tags: tuple[str, ...], model_params: Any,
                 where: str) -> tuple[Any, dict[str, torch.Tensor], dict[str, Any]]:
    """``(ModelConfig, head state dict, backbone payload)`` of an official state dict for a variant
    with ``tags`` (``()`` DiCoSA, ``("visual", "textual")`` MAC-VR).

    ``model_params``: the variant's resolved ``train.model`` (its non-weight knobs are used)."""
    from pipeline.model import MacVR, ModelConfig

    clip, head, unknown = _official_layout(state, where)
    arch = clip_arch(clip, where)
    # Depth from the highest block index, so a gap (a lost block) is reported as missing keys.
    layers = max((int(m.group(1)) + 1 for k in head if (m := BLOCK_RE.match(k))), default=0)
    missing = sorted(expected_head_keys(layers) - set(head))
    built = arch.build()
    clip_expected = set(built.state_dict())
    missing += sorted(CLIP_PREFIX + k for k in clip_expected - set(clip))
    unknown += sorted(CLIP_PREFIX + k for k in set(clip) - clip_expected)
    if missing or unknown:
        parts = ([f"missing {len(missing)} key(s): {_names(missing)}"] if missing else []) + \
                ([f"unknown {len(unknown)} key(s): {_names(unknown)}"] if unknown else [])
        raise ReleasedCheckpointError(f"{where}: does not fit the official {'MAC-VR' if tags else 'DiCoSA'} model "
                                      f"class: {'; '.join(parts)}")
    embed_dim = arch.embed_dim
    positions = head[POSITIONS]
    if int(positions.shape[1]) != embed_dim:
        raise ReleasedCheckpointError(f"{where}: frame_position_embeddings are {positions.shape[1]}-wide but CLIP "
                                      f"embeds in {embed_dim} dimensions (the official head needs them equal)")
    if model_params.concept_projection != "chunk":
        raise ReleasedCheckpointError(f"{where}: official checkpoints have no concept projection W_k; set the "
                                      "variant's model.concept_projection: chunk")
    k = concepts_for(tags, head, embed_dim, model_params.num_concepts, where)
    fan_in, hidden = head["weight_fc.0.weight"].shape[1], head["weight_fc.0.weight"].shape[0]
    if hidden % fan_in:
        raise ReleasedCheckpointError(f"{where}: confidence MLP hidden width {hidden} is not a multiple of its "
                                      f"input {fan_in}")
    scale = float(clip["logit_scale"])
    config = ModelConfig(tags=tags, num_concepts=k, pool_temperature=model_params.pool_temperature,
                         pool_masking=model_params.pool_masking, temporal_layers=layers,
                         temporal_heads=max(arch.transformer_width // 64, 1),
                         temporal_ln_eps=model_params.temporal_ln_eps,
                         concept_projection="chunk", confidence_hidden_ratio=hidden // fan_in,
                         init_logit_scale=min(scale, math.log(100.0)), embed_dim=embed_dim,
                         max_frames=int(positions.shape[0]))
    mapped = head_state(head, layers)
    mapped["logit_scale"] = clip["logit_scale"].reshape(())
    model = MacVR(config)
    try:
        model.load_state_dict(mapped, strict=True)
    except RuntimeError as err:
        raise ReleasedCheckpointError(f"{where}: head weights do not fit their shapes: {err}") from None
    try:
        built.load_state_dict(clip, strict=True)
    except RuntimeError as err:
        raise ReleasedCheckpointError(f"{where}: clip.* weights do not fit a {arch} CLIP: {err}") from None
    backbone = {"kind": "clip", "arch": arch.to_dict(),
                "state_dict": {k2: v.detach().clone() for k2, v in built.state_dict().items()}}
    return config, {k2: v.detach().clone() for k2, v in model.state_dict().items()}, backbone


def same_file(source: Path, target: Path) -> None:
    """``target`` with ``source``'s bytes: a hard link where the filesystem allows (an imported
    checkpoint has nothing to resume, so ``checkpoint.pt`` is ``model.pt``; a ViT-B/32 one is
    600 MB), else a copy; atomic either way."""
    import os
    import shutil

    from pipeline.io import atomic_path

    with atomic_path(target) as tmp:
        tmp.unlink()
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)


def file_format(tags: tuple[str, ...]) -> str:
    return "macvr" if tags else "dicosa"


def import_checkpoint(path: str | Path, variant: str, train_config: Any, text: Any, out_dir: str | Path,
                      live_dir: str | Path | None = None) -> dict[str, Any]:
    """The train stage for a variant with ``released: <file>``: write ``model.pt`` and
    ``checkpoint.pt`` (the same file) from the official checkpoint, and the dvclive summary.

    Returns the summary metrics (provenance: the file's SHA-256, dtypes, K, temporal layers)."""
    from pipeline.backbone.io import file_sha256
    from pipeline.config import to_dict
    from pipeline.io import write_json
    from pipeline.train import checkpoint as ckpt

    path = Path(path)
    where = str(path)
    info: dict[str, Any] = {}
    state = read_state_dict(path, info)
    tags = tuple(train_config.model.tags)
    config, head, backbone = import_state(state, tags, train_config.model, where)
    sha = file_sha256(path)
    provenance = {"file": str(path), "sha256": sha, "format": file_format(tags), "tensors": len(state), **info}
    data = {"kind": "model", "variant": variant, "model_config": to_dict(config),
            "run": {"released": provenance, "train": {"mode": "released", "model": to_dict(train_config.model)},
                    "text": to_dict(text), "padding": "blank", "features": {}},
            "epoch": 0, "global_step": 0, "world_size": 1, "fingerprint": sha, "model": head,
            "backbone": backbone, "metrics": {}}
    out_dir = Path(out_dir)
    ckpt.save(data, out_dir / "model.pt")
    same_file(out_dir / "model.pt", out_dir / "checkpoint.pt")
    summary = {"released": 1, "num_concepts": config.num_concepts, "temporal_layers": config.temporal_layers,
               "frame_positions": config.max_frames, "embed_dim": config.embed_dim}
    if live_dir is not None:
        live = Path(live_dir)
        write_json({**summary, "sha256": sha}, live / "metrics.json")
        # DVC keeps this folder between runs (persist, for resumed training): no stale curves.
        shutil.rmtree(live / "plots" / "metrics", ignore_errors=True)
        (live / "plots" / "metrics").mkdir(parents=True, exist_ok=True)
    log.info("%s: imported %s (%s, sha256 %s..., K=%d, %d temporal layers, tensors %s)", variant, path,
             provenance["format"], sha[:12], config.num_concepts, config.temporal_layers, provenance["dtypes"])
    return summary
