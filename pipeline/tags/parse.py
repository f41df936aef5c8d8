"""Split a model's answer into candidate tags (before any cleaning).

Handles what LLMs actually send back: bullet lists (``-``, ``*``, ``•``), numbered lists
(``1.``, ``2)``, ``(3)``), a list hidden in a sentence ("Here are the tags: a, b, c"), JSON
lists or objects (optionally in a code fence), markdown emphasis, and "tag: explanation" or
"tag - explanation" items. Preamble and closing lines around a list are dropped.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Literal

Status = Literal["ok", "empty", "unparseable"]

_FENCE = re.compile(r"```[a-zA-Z]*\s*(.*?)```", re.S)
_BULLET = re.compile(r"^\s*(?:[-*•·▪►+–—]|\(?\d{1,2}[.):\]]|#\d{1,2}[.:)]?)\s+(.*\S)\s*$")
_INLINE_NUMBER = re.compile(r"(?:^|\s)\(?\d{1,2}[.)]\s+")
_SPLIT = re.compile(r"\s*[,;|]\s*")
_EXPLANATION = re.compile(r"\s+[-–—]\s+|:\s+")
_PAREN = re.compile(r"\s*[(\[][^)\]]*[)\]]")
_EMPHASIS = re.compile(r"[*_`]+")


@dataclass(frozen=True)
class Parsed:
    status: Status
    items: list[str]


def _strip_item(item: str) -> str:
    item = _EMPHASIS.sub("", item).strip()
    head = _EXPLANATION.split(item, maxsplit=1)[0]  # "teamwork: working together" -> "teamwork"
    head = _PAREN.sub("", head)  # "growth (expansion)" -> "growth"
    return head.strip().strip("\"'“”‘’").rstrip(".!?:").strip()


def _json_items(text: str) -> list[str] | None:
    candidates = [text]
    start, end = text.find("["), text.rfind("]")
    if 0 <= start < end:
        candidates.append(text[start:end + 1])
    for candidate in candidates:
        try:
            data = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(data, dict):  # {"tags": [...]} or any single list value
            lists = [v for k, v in data.items() if isinstance(v, list)]
            data = data.get("tags") if isinstance(data.get("tags"), list) else (lists[0] if lists else None)
        if isinstance(data, list):
            return [str(x) for x in data if isinstance(x, (str, int, float)) and not isinstance(x, bool)]
    return None


def _split_all(pieces: list[str]) -> list[str]:
    items = []
    for piece in pieces:
        items.extend(p for p in _SPLIT.split(piece) if p.strip())
    return items


def _unfold_inline_numbers(line: str) -> list[str]:
    """"1. motion 2. growth 3. colour" on one line -> one line per number."""
    if len(_INLINE_NUMBER.findall(line)) < 2:
        return [line]
    head, *rest = _INLINE_NUMBER.split(line)
    return ([head] if head.strip() else []) + [f"- {p}" for p in rest if p.strip()]


def _list_items(text: str) -> list[str]:
    lines = [u for line in text.splitlines() if line.strip() for u in _unfold_inline_numbers(line)]
    bullets = [m.group(1) for line in lines if (m := _BULLET.match(line))]
    if bullets:
        return _split_all(bullets)
    pieces = []
    for line in lines:
        line = line.strip()
        if line.endswith(":"):
            continue  # a preamble such as "Here are the top 10 general tags:"
        head, sep, tail = line.partition(":")
        if sep and ("," in tail or ";" in tail):
            line = tail  # "The tags are: motion, growth, colour"
        pieces.append(line)
    return _split_all(pieces)


def parse_response(text: str) -> Parsed:
    """Candidate tags of one answer, with whether it was empty or had no recognisable list."""
    text = (text or "").strip()
    if not text:
        return Parsed("empty", [])
    fenced = _FENCE.search(text)
    body = fenced.group(1).strip() if fenced else text
    items = _json_items(body)
    if items is None:
        items = _list_items(body)
    items = [s for s in (_strip_item(i) for i in items) if s]
    return Parsed("ok" if items else "unparseable", items)
