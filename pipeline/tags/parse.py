"""Split a model's answer into candidate tags (before any cleaning), and judge the answer.

Handles what LLMs actually send back: bullet lists (``-``, ``*``, ``•``), numbered lists
(``1.``, ``2)``, ``(3)``), a list hidden in a sentence ("Here are the tags: a, b, c"), JSON
lists or objects (optionally in a code fence), markdown emphasis, and "tag: explanation" or
"tag - explanation" items. Preamble and closing lines around a list are dropped.

:func:`judge_answer` decides whether an answer is a tag list at all (see its docstring); the
tag stages re-ask answers that are not, instead of caching them as tags.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Literal

Status = Literal["ok", "empty", "unparseable"]
Form = Literal["json", "bullets", "lines"]

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
    form: Form = "lines"  # how the items were found: a JSON list, bullet lines, or plain lines


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


def _list_items(text: str) -> tuple[list[str], Form]:
    lines = [u for line in text.splitlines() if line.strip() for u in _unfold_inline_numbers(line)]
    bullets = [m.group(1) for line in lines if (m := _BULLET.match(line))]
    if bullets:
        return _split_all(bullets), "bullets"
    pieces = []
    for line in lines:
        line = line.strip()
        if line.endswith(":"):
            continue  # a preamble such as "Here are the top 10 general tags:"
        head, sep, tail = line.partition(":")
        if sep and ("," in tail or ";" in tail):
            line = tail  # "The tags are: motion, growth, colour"
        pieces.append(line)
    return _split_all(pieces), "lines"


def parse_response(text: str) -> Parsed:
    """Candidate tags of one answer, with whether it was empty or had no recognisable list."""
    text = (text or "").strip()
    if not text:
        return Parsed("empty", [])
    fenced = _FENCE.search(text)
    body = fenced.group(1).strip() if fenced else text
    items = _json_items(body)
    form: Form = "json"
    if items is None:
        items, form = _list_items(body)
    items = [s for s in (_strip_item(i) for i in items) if s]
    return Parsed("ok" if items else "unparseable", items, form)


# -- judging an answer ----------------------------------------------------------------------------

Verdict = Literal["ok", "empty", "null", "refusal", "unparseable", "length"]
ANSWER_FAILURES: tuple[str, ...] = ("empty", "null", "refusal", "unparseable", "length")

MAX_ITEM_WORDS = 6  # a candidate longer than this is a sentence, not a tag (cleaning keeps <= 3)
MAX_WORD_CHARS = 24  # longer "words" are base64, special tokens or run-together garbage
MIN_LETTER_SHARE = 0.6  # of a candidate's non-space characters
MIN_LIST_ITEMS = 3  # a refusal preamble followed by fewer usable items is still a refusal
MIN_PLAIN_SHARE = 0.5  # an unbulleted answer needs this share of tag-like pieces

_TABLE_ROW = re.compile(r"^\s*\|.*\|\s*$")
_TABLE_RULE = re.compile(r"^\s*\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)+\|?\s*$")
_NOT_IN_TAGS = set("{}[]<>=\\@#$%^*~|`")
_SENTENCE_END = re.compile(r"[.!?]\s*$")
_REFUSAL = re.compile(
    r"(?:^|[\s\"'(])(?:i\s*(?:'|’)?\s*a?m\s+sorry|i\s+apologi[sz]e|my\s+apologies|as\s+an\s+ai\b"
    r"|i\s+(?:can\s*not|can(?:'|’)?t|am\s+unable|(?:'|’)m\s+unable|am\s+not\s+able|(?:'|’)m\s+not\s+able"
    r"|won(?:'|’)?t|will\s+not|do\s+not\s+have|don(?:'|’)?t\s+have)\s+(?:to\s+)?"
    r"(?:help|assist|provide|fulfil+|generate|comply|do|create|tag|answer|complete|process|see"
    r"|view|watch|analy[sz]e|access|identify|determine|describe|give|offer|produce|continue))",
    re.I)


def looks_like_refusal(text: str) -> bool:
    """Whether ``text`` holds a refusal ("I'm sorry, I can't ...", "As an AI ...")."""
    return bool(_REFUSAL.search(text))


def preamble(text: str) -> str:
    """The text before the first bullet or numbered line (where a refusal would sit)."""
    return _preamble(text)


@dataclass(frozen=True)
class Judgement:
    """The verdict on one answer and, when it is ``ok``, its candidate tags (uncapped)."""

    verdict: Verdict
    items: list[str]

    @property
    def ok(self) -> bool:
        return self.verdict == "ok"


def plausible_tag(item: str) -> bool:
    """Whether a parsed candidate can be a tag: 1-6 words, mostly letters, no markup or noise."""
    words = item.split()
    if not 1 <= len(words) <= MAX_ITEM_WORDS or any(len(w) > MAX_WORD_CHARS for w in words):
        return False
    if _NOT_IN_TAGS & set(item):
        return False
    chars = [c for c in item if not c.isspace()]
    letters = sum(c.isalpha() for c in chars)
    return letters > 0 and letters >= MIN_LETTER_SHARE * len(chars)


def _is_table(text: str) -> bool:
    lines = [line for line in text.splitlines() if line.strip()]
    rows = sum(bool(_TABLE_ROW.match(line)) for line in lines)
    return rows >= 2 or any(_TABLE_RULE.match(line) for line in lines)


def _preamble(text: str) -> str:
    """The text before the first bullet or numbered line (where a refusal would sit)."""
    out = []
    for line in text.splitlines():
        if _BULLET.match(line):
            break
        out.append(line)
    return "\n".join(out)


def _prose_line(line: str) -> bool:
    """A line ending like a sentence whose comma pieces are phrases, not single concepts."""
    if not _SENTENCE_END.search(line):
        return False
    pieces = [p for p in _SPLIT.split(line.partition(":")[2] or line) if p.strip()]
    return bool(pieces) and sum(len(p.split()) for p in pieces) / len(pieces) > 3


def judge_form(text: str | None, finish_reason: str) -> Judgement | None:
    """The failures any list answer is judged by before its items are read (tags and captions):
    ``null``, ``empty``, ``length`` (cut by max_tokens), ``unparseable`` for a markdown table."""
    if text is None:
        return Judgement("null", [])
    if not text.strip():
        return Judgement("empty", [])
    if finish_reason == "length":
        return Judgement("length", [])
    if _is_table(text):
        return Judgement("unparseable", [])
    return None


def judge_answer(text: str | None, finish_reason: str) -> Judgement:
    """Whether one answer is a usable tag list; a failure names why.

    Checked in order: ``null`` (the server sent no content); ``empty`` (blank); ``length`` (cut
    by ``max_tokens``: an incomplete list is re-asked rather than kept); ``unparseable`` for a
    markdown table; ``refusal`` ("I'm sorry, I can't ...", "As an AI ...") in an unbulleted
    answer, or before a list with fewer than three usable items; ``unparseable`` when no
    candidate passes :func:`plausible_tag` (garbage, special tokens, sentences), or for
    unbulleted prose (a sentence-like line, or under half of its pieces tag-like). Otherwise
    ``ok`` with every candidate of the answer (an odd implausible one is left to the cleaner):
    "Here are 10 tags:\n1. ..." followed by a sign-off is the normal case, not a failure.
    """
    early = judge_form(text, finish_reason)
    if early is not None:
        return early
    parsed = parse_response(text)
    usable = [i for i in parsed.items if plausible_tag(i)]
    structured = parsed.form in ("json", "bullets")
    if structured:
        refused = len(usable) < MIN_LIST_ITEMS and bool(_REFUSAL.search(
            _preamble(text) if parsed.form == "bullets" else text))
    else:
        refused = bool(_REFUSAL.search(text))
    if refused:
        return Judgement("refusal", [])
    if not usable:
        return Judgement("unparseable", [])
    if not structured:
        lines = [line for line in text.splitlines() if line.strip()]
        if any(_prose_line(line) for line in lines) or len(usable) < MIN_PLAIN_SHARE * len(parsed.items):
            return Judgement("unparseable", [])
    return Judgement("ok", parsed.items)


def cap_candidates(judgement: Judgement, max_tags: int | None) -> tuple[str, list[str]]:
    """``("ok", items)`` or ``("too_long", first max_tags items)`` for an ok judgement.

    An answer that ignores ``max_tokens`` can hold thousands of "tags"; only the first
    ``max_tags`` are kept (None: no cap, for the offline taggers).
    """
    if not judgement.ok:
        raise ValueError(f"only an ok answer has candidates (verdict {judgement.verdict!r})")
    if max_tags is not None and len(judgement.items) > max_tags:
        return "too_long", judgement.items[:max_tags]
    return "ok", list(judgement.items)
