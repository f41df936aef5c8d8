"""Split an answer into candidate sentences and judge it (the caption analogue of tag judging).

The Appx. G prompts ask for "10 new captions" / "10 different sentences ... as a bullet list";
an image captioner (BLIP-2) answers with one plain sentence. So a usable answer is a bullet,
numbered or JSON list of sentences, one sentence per line, or a single line of at most two
sentences. Failures are named like tag failures, so the client re-asks them and the raw files
count them the same way: ``null``/``empty``, ``length`` (cut by max_tokens: the last sentence is
incomplete), ``unparseable`` (a table, garbage, or a prose paragraph instead of a list),
``refusal``. Bullets are never split on commas: a sentence holds commas.
"""

from __future__ import annotations

import json
import re

from pipeline.tags.parse import Judgement, judge_form, looks_like_refusal, parse_response, preamble

MIN_WORDS = 2  # "a dog" is a caption; one word is a tag
MAX_WORDS = 60  # longer is a paragraph, not a caption
MAX_WORD_CHARS = 24
MIN_LETTER_SHARE = 0.6
MAX_SENTENCES_PER_LINE = 2  # an unbulleted line with more is prose
MIN_LIST_SENTENCES = 3  # a refusal preamble before fewer usable sentences is a refusal

_FENCE = re.compile(r"```[a-zA-Z]*\s*(.*?)```", re.S)
_BULLET = re.compile(r"^\s*(?:[-*•·▪►+–—]|\(?\d{1,2}[.):\]]|#\d{1,2}[.:)]?)\s+(.*\S)\s*$")
_LABEL = re.compile(r"^(?:caption|sentence|paraphrase|version|option)\s*\d{0,2}\s*[:.)-]\s+", re.I)
_EMPHASIS = re.compile(r"[*_`]+")
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?])\s+(?=[A-Za-z\"'])")
_NOT_IN_SENTENCES = set("{}[]<>=\\@#$%^*~|`")


_ARTICLE = re.compile(r"\b([Aa]n?) (?=([A-Za-z]+))")


def fix_articles(text: str) -> str:
    """"a orange" -> "an orange", "an blue" -> "a blue" (by the next word's first letter)."""
    def pick(m: re.Match) -> str:
        word = "an" if m.group(2)[0].lower() in "aeiou" else "a"
        return (word.capitalize() if m.group(1)[0] == "A" else word) + " "
    return _ARTICLE.sub(pick, text)


def strip_sentence(item: str) -> str:
    """One candidate without markup, labels ("Caption 3: ...") or surrounding quotes."""
    item = _EMPHASIS.sub("", item).strip()
    item = _LABEL.sub("", item)
    return " ".join(item.strip().strip("\"'“”‘’").split())


def plausible_sentence(item: str) -> bool:
    """2-60 words, mostly letters, no markup or run-together noise."""
    words = item.split()
    if not MIN_WORDS <= len(words) <= MAX_WORDS or any(len(w) > MAX_WORD_CHARS for w in words):
        return False
    if _NOT_IN_SENTENCES & set(item):
        return False
    chars = [c for c in item if not c.isspace()]
    letters = sum(c.isalpha() for c in chars)
    return letters >= MIN_LETTER_SHARE * len(chars)


def _json_sentences(body: str) -> list[str] | None:
    if not body.lstrip().startswith(("[", "{")):
        return None
    parsed = parse_response(body)  # the tag parser reads JSON lists/objects without splitting
    if parsed.form != "json":
        return None
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if isinstance(data, dict):
        lists = [v for v in data.values() if isinstance(v, list)]
        data = lists[0] if lists else None
    if not isinstance(data, list):
        return None
    return [str(x) for x in data if isinstance(x, str)]


def split_sentences(text: str) -> tuple[list[str], str]:
    """(candidate sentences, form): ``json``, ``bullets``, ``lines`` or ``prose``."""
    fenced = _FENCE.search(text)
    body = (fenced.group(1) if fenced else text).strip()
    items = _json_sentences(body)
    if items is not None:
        return [s for s in map(strip_sentence, items) if s], "json"
    lines = [line for line in body.splitlines() if line.strip()]
    bullets = [m.group(1) for line in lines if (m := _BULLET.match(line))]
    if bullets:
        return [s for s in map(strip_sentence, bullets) if s], "bullets"
    kept = [line.strip() for line in lines if not line.strip().endswith(":")]  # "Here are 10 captions:"
    pieces = [_SENTENCE_SPLIT.split(line) for line in kept]
    form = "prose" if any(len(p) > MAX_SENTENCES_PER_LINE for p in pieces) else "lines"
    if len(kept) == 1 and len(pieces[0]) == 2:
        return [s for s in map(strip_sentence, pieces[0]) if s], form  # "A dog runs. It jumps."
    return [s for s in map(strip_sentence, kept) if s], form


def judge_sentences(text: str | None, finish_reason: str) -> Judgement:
    """Whether one answer is a usable list of captions; ``items`` are all its candidates."""
    early = judge_form(text, finish_reason)
    if early is not None:
        return early
    items, form = split_sentences(text)
    usable = [s for s in items if plausible_sentence(s)]
    if form in ("json", "bullets"):
        refused = len(usable) < MIN_LIST_SENTENCES and looks_like_refusal(
            preamble(text) if form == "bullets" else text)
    else:
        refused = looks_like_refusal(text)
    if refused:
        return Judgement("refusal", [])
    if form == "prose" or not usable:
        return Judgement("unparseable", [])
    return Judgement("ok", items)
