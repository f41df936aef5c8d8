"""Backbone kind ``open_clip``: any open_clip model by name, with the user's own weights.

``backbone.model`` is an open_clip model name (``ViT-B-16``, ``ViT-L-14``, ``ViT-B-16-SigLIP``,
... ; OpenAI's weights need the ``-quickgelu`` names, e.g. ``ViT-B-32-quickgelu``, because OpenAI
trained with QuickGELU) and ``backbone.path`` a local weights file: an open_clip checkpoint, a
plain state dict, or an OpenAI JIT archive. No download is attempted. ``backbone.sha256``: a
64-hex checksum to verify the file, or null (there is no published checksum to look up).

Texts: for models with CLIP's BPE tokenizer, each text is cut to ``max_words`` tokens exactly as
for clip-anytorch and padded to the model's context (open_clip adds its whole position table;
the causal mask keeps the end-token embedding independent of the padding). Models with another
tokenizer (e.g. SigLIP's) use it at the model's own context length.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pipeline.backbone.base import BLOCK_KEYS, Backbone, BackboneError, BackboneFamily, BuildInputs, TextBatch
from pipeline.backbone.base import register_family
from pipeline.backbone.clip_model import clip_tokenize
from pipeline.backbone.io import file_sha256

log = logging.getLogger(__name__)


def _open_clip():
    try:
        import open_clip
    except ImportError as err:  # pragma: no cover - a declared dependency
        raise BackboneError(f"backbone.kind open_clip needs the open-clip-torch package ({err})") from None
    return open_clip


def create(name: str) -> nn.Module:
    """A randomly initialised float32 open_clip model ``name`` (no download)."""
    open_clip = _open_clip()
    if name not in open_clip.list_models():
        raise BackboneError(f"backbone.model: {name!r} is not an open_clip model (e.g. ViT-B-32-quickgelu, "
                            f"ViT-B-16, ViT-L-14, ViT-B-16-SigLIP; `open_clip.list_models()` lists all)")
    root = logging.getLogger()
    quiet = _DropInfo()
    root.addFilter(quiet)  # open_clip narrates model creation on the root logger
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return open_clip.create_model(name, pretrained=None, load_weights=False).float()
    finally:
        root.removeFilter(quiet)


class _DropInfo(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR


class OpenClipModel(Backbone):
    """An open_clip ``CLIP`` / ``CustomTextCLIP`` behind the backbone interface."""

    kind = "open_clip"

    def __init__(self, model: nn.Module, name: str) -> None:
        super().__init__()
        self.model, self.name = model, name
        self._tokenizer = _open_clip().get_tokenizer(name)
        self._bpe = isinstance(self._tokenizer, _open_clip().tokenizer.SimpleTokenizer)

    @property
    def inner(self) -> nn.Module:
        return self.model

    @property
    def embed_dim(self) -> int:
        return int(self.model.visual.output_dim)

    @property
    def image_size(self) -> int:
        size = self.model.visual.image_size
        size = size[0] if isinstance(size, (tuple, list)) else size
        return int(size)

    @property
    def context_length(self) -> int:
        text = getattr(self.model, "text", None)
        return int(getattr(text, "context_length", None) or self.model.context_length)

    @property
    def mean(self) -> tuple[float, float, float]:
        return tuple(getattr(self.model.visual, "image_mean", None) or super().mean)

    @property
    def std(self) -> tuple[float, float, float]:
        return tuple(getattr(self.model.visual, "image_std", None) or super().std)

    @property
    def logit_scale(self) -> nn.Parameter:
        return self.model.logit_scale

    def tokenize(self, texts: Sequence[str], max_words: int) -> TextBatch:
        if not self._bpe:
            ids = self._tokenizer(list(texts))
            return TextBatch(ids, ids != 0, (ids != 0).all(dim=1).numpy())
        if max_words > self.context_length:
            raise ValueError(f"max_words {max_words} exceeds the text context of {self.name} "
                             f"({self.context_length} tokens)")
        cut = clip_tokenize(texts, max_words)
        ids = torch.zeros(len(texts), self.context_length, dtype=torch.long)
        ids[:, :max_words] = cut.ids
        return TextBatch(ids, ids != 0, cut.truncated)

    def encode_text(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.model.encode_text(ids.to(self.device)).float()

    def encode_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(pixels.to(self.device)).float()

    def _blocks(self):
        transformer = getattr(self.model, "transformer", None)
        blocks = getattr(transformer, "resblocks", None)
        if blocks is None or not isinstance(getattr(blocks[0], "attn", None), nn.MultiheadAttention):
            raise ValueError(f"{self.name}'s text tower is not a CLIP-layout transformer")
        return blocks

    def text_block_states(self, layers: int) -> list[dict[str, torch.Tensor]]:
        blocks = self._blocks()
        if len(blocks) < layers:
            raise ValueError(f"{self.name} has {len(blocks)} text layers, {layers} were asked for")
        return [{k: v for k, v in b.state_dict().items() if k in BLOCK_KEYS} for b in blocks[:layers]]

    def text_positions(self, count: int) -> torch.Tensor:
        table = getattr(self.model, "positional_embedding", None)
        if table is None or table.shape[0] < count:
            raise ValueError(f"{self.name} has no text position table of {count} rows")
        return table[:count]

    @property
    def text_width(self) -> int:
        return int(self._blocks()[0].attn.embed_dim)

    @property
    def text_heads(self) -> int:
        return int(self._blocks()[0].attn.num_heads)

    def arch(self) -> dict[str, Any]:
        return {"model": self.name}


def _state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Weights from an open_clip checkpoint, a state dict, or an OpenAI JIT archive."""
    from pipeline.backbone.clip_family import _state_dict_from_file

    state = _state_dict_from_file(path)
    if "state_dict" in state and isinstance(state["state_dict"], dict):  # an open_clip training checkpoint
        state = state["state_dict"]
    return {k.removeprefix("module."): v for k, v in state.items()}


@register_family
class OpenClip(BackboneFamily):
    """``kind: open_clip``: ``backbone.model`` by name, weights from ``backbone.path``."""

    kind = "open_clip"
    description = "any open_clip model by name (backbone.model) with local weights (backbone.path)"

    def build(self, cfg: Any, inputs: BuildInputs, progress: bool = True
              ) -> tuple[Backbone, dict[str, Any], dict[str, Any]]:
        if cfg.path is None or not Path(cfg.path).expanduser().is_file():
            raise BackboneError(f"backbone.path must name a local weights file for open_clip model {cfg.model!r} "
                                f"(got {cfg.path!r}); open_clip downloads are not used")
        path = Path(cfg.path).expanduser()
        got = file_sha256(path)
        if cfg.sha256 == "official":
            raise BackboneError("backbone.sha256: open_clip weights have no published checksum here; "
                                "give the file's 64-hex SHA-256 or null")
        if cfg.sha256 is not None and got != cfg.sha256:
            raise BackboneError(f"{path}: SHA256 mismatch: file has {got}, expected {cfg.sha256}")
        model = create(cfg.model)
        try:
            model.load_state_dict(_state_dict(path), strict=True)
        except RuntimeError as err:
            raise BackboneError(f"{path}: not weights of open_clip model {cfg.model!r}: {err}") from None
        source = {"kind": self.kind, "name": cfg.model, "file": str(path), "file_sha256": got,
                  "verified_sha256": cfg.sha256 is not None}
        return OpenClipModel(model.eval(), cfg.model), source, {}

    def rebuild(self, arch: dict[str, Any], state_dict: dict[str, torch.Tensor]) -> Backbone:
        model = create(str(arch["model"]))
        model.load_state_dict(state_dict, strict=True)
        return OpenClipModel(model.eval(), str(arch["model"])).eval()

    def expected_image_size(self, cfg: Any) -> int | None:
        config = _open_clip().get_model_config(cfg.model) or {}
        size = config.get("vision_cfg", {}).get("image_size")
        return int(size[0] if isinstance(size, (list, tuple)) else size) if size else None

    def expected_context_length(self, cfg: Any) -> int | None:
        config = _open_clip().get_model_config(cfg.model) or {}
        return config.get("text_cfg", {}).get("context_length", 77)
