"""Request bodies for the OpenAI-compatible API (text: chat or completions; video: chat).

Sampling is always explicit (temperature, top_p, seed, max_tokens): left unset, vLLM would use
the model's generation config instead (Llama 3.1: 0.6 / 0.9). A ``structured_outputs``
constraint is sent as vLLM's top-level extra field (the old ``guided_*`` fields are silently
ignored by current vLLM).
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pipeline.tags.prompts import PromptTemplate

CHAT_PATH = "/chat/completions"
COMPLETIONS_PATH = "/completions"


@dataclass(frozen=True)
class Sampling:
    """Per-request sampling fields."""

    temperature: float
    top_p: float
    seed: int
    max_tokens: int
    structured_outputs: dict[str, Any] | None


def _sampling_fields(model: str, s: Sampling) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "temperature": s.temperature, "top_p": s.top_p,
                            "seed": s.seed, "max_tokens": s.max_tokens, "n": 1, "stream": False}
    if s.structured_outputs is not None:
        body["structured_outputs"] = dict(s.structured_outputs)
    return body


def text_request(model: str, prompt: PromptTemplate, caption: str, sampling: Sampling,
                 api: Literal["chat", "completions"]) -> tuple[str, dict[str, Any]]:
    """(path, body) asking for the tags of one caption."""
    body = _sampling_fields(model, sampling)
    if api == "chat":
        body["messages"] = prompt.chat_messages(caption)
        return CHAT_PATH, body
    if api == "completions":
        body["prompt"] = prompt.completion_prompt(caption)
        return COMPLETIONS_PATH, body
    raise ValueError(f"unknown api {api!r} (expected 'chat' or 'completions')")


def frames_data_url(jpegs: Sequence[bytes]) -> str:
    """vLLM's pre-sampled-frames form: ``data:video/jpeg;base64,<f1>,<f2>,...``."""
    if not jpegs:
        raise ValueError("no frames to send")
    return "data:video/jpeg;base64," + ",".join(base64.b64encode(j).decode("ascii") for j in jpegs)


def video_request(model: str, prompt: PromptTemplate, jpegs: Sequence[bytes], sampling: Sampling,
                  video_input: Literal["video", "images"]) -> tuple[str, dict[str, Any]]:
    """(path, body) asking for the tags of one video given its sampled JPEG frames.

    ``video``: one ``video_url`` part with all frames (the model sees them as one clip; vLLM
    needs ``--limit-mm-per-prompt '{"video": 1}'``). ``images``: one ``image_url`` part per
    frame, for servers/models without video input (``'{"image": 8}'``).
    """
    if video_input == "video":
        media = [{"type": "video_url", "video_url": {"url": frames_data_url(jpegs)}}]
    elif video_input == "images":
        if not jpegs:
            raise ValueError("no frames to send")
        media = [{"type": "image_url",
                  "image_url": {"url": "data:image/jpeg;base64," + base64.b64encode(j).decode("ascii")}}
                 for j in jpegs]
    else:
        raise ValueError(f"unknown video_input {video_input!r} (expected 'video' or 'images')")
    messages = prompt.chat_messages()
    user = messages[-1]
    user["content"] = [*media, {"type": "text", "text": user["content"]}]
    body = _sampling_fields(model, sampling)
    body["messages"] = messages
    return CHAT_PATH, body
