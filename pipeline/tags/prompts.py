"""Prompt templates for tag generation (the paper's Appendix C prompts, kept as data files).

A template file is either a plain user message or the Vicuna-style form the paper prints
(``<system> USER: <user> ASSISTANT:``). ``{}`` marks where the caption goes; it is replaced
literally (no ``str.format``), so braces inside captions are safe.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

PROMPT_DIR = Path(__file__).with_name("data") / "prompts"
PLACEHOLDER = "{}"
_USER, _ASSISTANT = "USER:", "ASSISTANT:"


class PromptError(ValueError):
    """A prompt file is missing or malformed."""


@dataclass(frozen=True)
class PromptTemplate:
    """One prompt: its raw text, the chat split, and a content hash."""

    source: str
    raw: str
    system: str | None
    user: str
    sha256: str

    @property
    def has_placeholder(self) -> bool:
        return PLACEHOLDER in self.raw

    def chat_messages(self, text: str | None = None) -> list[dict]:
        """System (if any) + user message, with ``text`` in the placeholder."""
        messages = []
        if self.system:
            messages.append({"role": "system", "content": self.system})
        messages.append({"role": "user", "content": self._fill(self.user, text)})
        return messages

    def completion_prompt(self, text: str | None = None) -> str:
        """The whole template as one raw completion prompt (ends with ``ASSISTANT:``)."""
        return self._fill(self.raw, text)

    def _fill(self, template: str, text: str | None) -> str:
        if self.has_placeholder:
            if text is None:
                raise PromptError(f"{self.source}: template has a {PLACEHOLDER} but no text was given")
            return template.replace(PLACEHOLDER, text, 1)
        if text is not None:
            raise PromptError(f"{self.source}: template has no {PLACEHOLDER} for the text")
        return template


def resolve_prompt_path(name: str) -> Path:
    """A bare name means ``pipeline/tags/data/prompts/<name>.txt``; anything else is a path."""
    path = Path(name)
    if path.suffix != ".txt" and "/" not in name:
        path = PROMPT_DIR / f"{name}.txt"
    if not path.is_file():
        shipped = sorted(p.stem for p in PROMPT_DIR.glob("*.txt"))
        raise PromptError(f"prompt '{name}': {path} not found (shipped prompts: {shipped})")
    return path


def parse_template(raw: str, source: str) -> PromptTemplate:
    """Split a template into system/user parts and hash it."""
    raw = raw.strip()
    if not raw:
        raise PromptError(f"{source}: empty prompt")
    if raw.count(PLACEHOLDER) > 1:
        raise PromptError(f"{source}: more than one {PLACEHOLDER} placeholder")
    system: str | None = None
    user = raw
    if _USER in raw:
        head, _, rest = raw.partition(_USER)
        if _ASSISTANT not in rest:
            raise PromptError(f"{source}: has '{_USER}' but no '{_ASSISTANT}' after it")
        body, _, tail = rest.rpartition(_ASSISTANT)
        if tail.strip():
            raise PromptError(f"{source}: text after the final '{_ASSISTANT}': {tail.strip()[:60]!r}")
        system, user = head.strip() or None, body.strip()
    digest = hashlib.sha256(raw.encode("utf-8")).hexdigest()
    return PromptTemplate(source=source, raw=raw, system=system, user=user, sha256=digest)


def load_prompt(name: str) -> PromptTemplate:
    """Load a shipped prompt by name (``text_appx_c``) or any ``.txt`` file by path."""
    path = resolve_prompt_path(name)
    return parse_template(path.read_text(encoding="utf-8"), str(path))
