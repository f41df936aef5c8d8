"""A local seq2seq paraphraser for the textual auxiliary captions (paper Appx. G: PEGASUS,
``tuner007/pegasus_paraphrase``, 10 paraphrases per caption).

Each caption's returned sequences become one bullet-list answer ("- sentence" per line, in the
model's order), so they go through the same answer judge as an LLM's list. Beam search is
deterministic; sampling is seeded per item and run one item at a time, so an item's answer does
not depend on which other captions share its batch.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from tqdm import tqdm

if TYPE_CHECKING:  # torch/transformers load lazily: the stage configs import this module
    import torch

PARAM = "caption_text.seq2seq"
# What a model folder holds that decides the output (the tokenizer too: it maps text to ids).
_HASHED_NAMES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                 "special_tokens_map.json", "added_tokens.json", "spiece.model", "sentencepiece.bpe.model",
                 "vocab.json", "vocab.txt", "merges.txt")
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".safetensors.index.json", ".bin.index.json")


@dataclass(frozen=True)
class Seq2SeqConfig:
    """``caption_text.seq2seq``: which local encoder-decoder model paraphrases, and how it decodes."""

    model: str  # Hugging Face id (e.g. tuner007/pegasus_paraphrase): provenance; what loads when path is null
    path: str | None  # local folder (config, tokenizer, weights) read with no network; None: from_pretrained(model)
    revision: str  # passed to from_pretrained when path is None; part of provenance
    device: Literal["cpu", "cuda", "auto"]
    batch_size: int  # captions per generate() call (beam search; sampling goes one caption at a time)
    num_beams: int  # beam width (tuner007's usage: 10); >= the captions asked for when sample is false
    max_input_tokens: int  # inputs are truncated to this many tokens
    max_new_tokens: int
    sample: bool  # false: beam search, the top beams (deterministic); true: seeded nucleus sampling
    top_p: float
    torch_threads: int  # 0 = torch's default

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model.strip():
            raise ValueError(f"{PARAM}.model must be a non-empty model id, got {self.model!r}")
        if self.path is not None and (not isinstance(self.path, str) or not self.path.strip()):
            raise ValueError(f"{PARAM}.path must be a folder or null, got {self.path!r}")
        if not isinstance(self.revision, str) or not self.revision.strip():
            raise ValueError(f"{PARAM}.revision must be a non-empty string (e.g. main), got {self.revision!r}")
        if self.device not in ("cpu", "cuda", "auto"):
            raise ValueError(f"{PARAM}.device must be auto, cpu or cuda, got {self.device!r}")
        for name in ("batch_size", "num_beams", "max_input_tokens", "max_new_tokens"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise ValueError(f"{PARAM}.{name} must be an integer >= 1, got {value!r}")
        if not isinstance(self.sample, bool):
            raise ValueError(f"{PARAM}.sample must be true or false, got {self.sample!r}")
        if isinstance(self.top_p, bool) or not isinstance(self.top_p, (int, float)) or not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"{PARAM}.top_p must be in (0, 1], got {self.top_p!r}")
        if not _is_int(self.torch_threads) or self.torch_threads < 0:
            raise ValueError(f"{PARAM}.torch_threads must be an integer >= 0 (0 = torch's default), "
                             f"got {self.torch_threads!r}")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # YAML true is not a batch size


def _folder(cfg: Seq2SeqConfig) -> Path:
    folder = Path(cfg.path).expanduser()  # type: ignore[arg-type]
    if not folder.is_dir():
        raise FileNotFoundError(f"{PARAM}.path: no model folder at {folder} (it needs config.json, the "
                                f"tokenizer files and the weights, e.g. from `huggingface-cli download "
                                f"{cfg.model} --local-dir {folder}`)")
    return folder


def load_seq2seq(cfg: Seq2SeqConfig) -> tuple[Any, Any, torch.device]:
    """(tokenizer, model in eval mode on its device, device), from ``cfg.path`` with no network
    when set, else ``from_pretrained(cfg.model, revision=cfg.revision)`` (HF cache or download)."""
    import torch
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    from pipeline.device import resolve_device

    device = resolve_device(cfg.device, key=f"{PARAM}.device")
    if cfg.torch_threads > 0:
        torch.set_num_threads(cfg.torch_threads)
    if cfg.path is not None:
        source, kwargs = str(_folder(cfg)), {"local_files_only": True}
    else:
        source, kwargs = cfg.model, {"revision": cfg.revision}
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
        model = AutoModelForSeq2SeqLM.from_pretrained(source, **kwargs)
    except (OSError, ValueError, KeyError) as exc:
        where = f"{PARAM}.path ({source})" if cfg.path is not None else f"{PARAM}.model ({source}@{cfg.revision})"
        raise ValueError(f"{where}: cannot load a seq2seq tokenizer and model: {exc}") from exc
    # float32 whatever the checkpoint says: PEGASUS is known to overflow in float16.
    model = model.to(device=device, dtype=torch.float32).eval()
    return tokenizer, model, device


def _bullets(sequences: Sequence[str]) -> str:
    """One answer: a "- sentence" line per returned sequence, whitespace (newlines too) collapsed."""
    return "\n".join("- " + " ".join(s.split()) for s in sequences)


def paraphrase(texts: Sequence[str], cfg: Seq2SeqConfig, num: int, temperature: float,
               seeds: Sequence[int], progress: bool = True) -> list[str]:
    """One bullet-list answer of ``num`` paraphrases per text, in input order.

    Beam search (``sample: false``) returns the ``num`` best of ``num_beams`` beams and ignores
    ``temperature`` and the seeds; sampling draws ``num`` sequences per text at ``temperature``
    and ``top_p`` after ``torch.manual_seed(seed)`` of that text.
    """
    if not _is_int(num) or num < 1:
        raise ValueError(f"caption_text.num_captions must be >= 1, got {num!r}")
    if len(seeds) != len(texts):
        raise ValueError(f"paraphrase: {len(texts)} texts but {len(seeds)} seeds")
    if not cfg.sample and cfg.num_beams < num:
        raise ValueError(f"{PARAM}.num_beams ({cfg.num_beams}) must be >= caption_text.num_captions ({num}) "
                         f"with beam search: each paraphrase is one beam (or set {PARAM}.sample: true)")
    if cfg.sample and not temperature > 0:
        raise ValueError(f"caption_text.temperature must be > 0 when {PARAM}.sample is true, got {temperature}")
    if not texts:
        return []

    import torch

    tokenizer, model, device = load_seq2seq(cfg)
    if cfg.sample:
        # top_k 0 turns off transformers' default top-k 50: nucleus only, as the LLM backends sample.
        generation = {"do_sample": True, "num_beams": 1, "temperature": float(temperature),
                      "top_p": float(cfg.top_p), "top_k": 0}
        batch_size = 1  # one seeded draw per caption, independent of its neighbours
    else:
        generation = {"do_sample": False, "num_beams": cfg.num_beams}
        batch_size = cfg.batch_size
    answers: list[str] = []
    with tqdm(total=len(texts), desc="caption_text seq2seq", unit="caption", disable=not progress) as bar, \
            torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            batch = [str(t) for t in texts[start:start + batch_size]]
            inputs = tokenizer(batch, truncation=True, max_length=cfg.max_input_tokens, padding="longest",
                               return_tensors="pt").to(device)
            if cfg.sample:
                torch.manual_seed(int(seeds[start]))  # seeds the CUDA generators too
            out = model.generate(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                                 max_new_tokens=cfg.max_new_tokens, num_return_sequences=num, **generation)
            decoded = tokenizer.batch_decode(out, skip_special_tokens=True, clean_up_tokenization_spaces=True)
            # generate() returns the num sequences of each input together, in input order.
            answers.extend(_bullets(decoded[i * num:(i + 1) * num]) for i in range(len(batch)))
            bar.update(len(batch))
    return answers


def model_fingerprint(cfg: Seq2SeqConfig) -> str:
    """sha256 provenance of the paraphraser: over a local folder's config, tokenizer and weight
    files (names and bytes), else over the model id and revision."""
    digest = hashlib.sha256()
    if cfg.path is None:
        digest.update(json.dumps({"model": cfg.model, "revision": cfg.revision}, sort_keys=True).encode())
        return digest.hexdigest()
    folder = _folder(cfg)
    files = sorted(p for p in folder.iterdir() if p.is_file() and (
        p.name in _HASHED_NAMES or p.name.endswith(_WEIGHT_SUFFIXES)))
    if not any(p.name.endswith(_WEIGHT_SUFFIXES) for p in files):
        raise ValueError(f"{PARAM}.path ({folder}): no weights (*.safetensors or *.bin) to fingerprint")
    for p in files:
        digest.update(f"{p.name}\0{p.stat().st_size}\0".encode())  # framed: no two file sets hash alike
        with p.open("rb") as f:
            while chunk := f.read(1 << 22):  # 4 MiB at a time: PEGASUS weights are ~2 GB
                digest.update(chunk)
    return digest.hexdigest()
