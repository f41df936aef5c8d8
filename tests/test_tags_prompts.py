"""The shipped prompts are the paper's Appx. C text, and render correctly in both API forms."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pipeline.tags.prompts import PromptError, load_prompt, parse_template

ROOT = Path(__file__).resolve().parents[1]
PAPER = ROOT.parent / "shared" / "paper" / "MAC-VR.txt"


def _words(text: str) -> list[str]:
    return re.findall(r"[\w’'{}()]+|[.,?:]", text)


def _paper_prompt(start: str, end: str, after: str = "") -> str:
    """The paper's prompt between two markers (the first after ``after``), PDF line numbers and
    hyphenation undone."""
    text = PAPER.read_text()
    text = text[text.index(after):] if after else text
    body = text[text.index(start):]
    body = body[: body.index(end) + len(end)]
    body = re.sub(r"^\d{3,4} ", "", body, flags=re.M)  # "897 A general tag" -> "A general tag"
    return body.replace("es-\nsential", "essential")


@pytest.mark.skipif(not PAPER.exists(), reason=f"paper text not found at {PAPER}")
def test_prompts_are_verbatim_from_the_paper():
    text_prompt = _paper_prompt("A chat between a curious user", "ASSISTANT:")
    assert _words(load_prompt("text_appx_c").raw) == _words(text_prompt)
    video_prompt = _paper_prompt("A general tag of an action is", "do not give any explanation.")
    assert _words(load_prompt("video_appx_c").raw) == _words(video_prompt)


@pytest.mark.skipif(not PAPER.exists(), reason=f"paper text not found at {PAPER}")
def test_auxiliary_caption_prompts_are_verbatim_from_appendix_g():
    appx_g = "G HOW TO GENERATE AUXILIARY CAPTIONS"
    paraphrase = _paper_prompt("A chat between a curious user", "ASSISTANT:", after=appx_g)
    assert _words(load_prompt("paraphrase_appx_g").raw) == _words(paraphrase)
    video = _paper_prompt("You are a conversational AI agent. You typically look at a video",
                          "Give me a bullet list as output.", after=appx_g)
    assert _words(load_prompt("caption_video_appx_g").raw) == _words(video)
    assert load_prompt("paraphrase_appx_g").has_placeholder and not load_prompt("caption_video_appx_g").has_placeholder


def test_key_sentences_are_present():
    text = load_prompt("text_appx_c")
    assert text.system == ("A chat between a curious user and an artificial intelligence assistant. "
                           "The assistant gives helpful, detailed, and polite answers to the user’s questions.")
    assert "Given the following action: 1) {}" in text.user
    assert text.user.endswith("Use one or two significant words per tag and do not give any explanation.")
    video = load_prompt("video_appx_c")
    assert video.system is None and not video.has_placeholder
    assert "Give me a bullet list as output where each point is a general tag" in video.user


def test_rendering_is_literal():
    text = load_prompt("text_appx_c")
    caption = "a {weird} caption with 1) braces and {} inside"
    (system, user) = text.chat_messages(caption)
    assert system["role"] == "system" and user["role"] == "user"
    assert f"1) {caption}\n" in user["content"]
    raw = text.completion_prompt(caption)
    assert raw == text.raw.replace("{}", caption, 1) and raw.endswith("ASSISTANT:")
    with pytest.raises(PromptError, match="no text was given"):
        text.chat_messages()
    with pytest.raises(PromptError, match="no {} for the text"):
        load_prompt("video_appx_c").chat_messages("x")


def test_hash_tracks_content(tmp_path):
    a = load_prompt("text_appx_c")
    edited = tmp_path / "mine.txt"
    edited.write_text(a.raw.replace("top 10", "top 12"))
    b = load_prompt(str(edited))
    assert a.sha256 != b.sha256 and len(a.sha256) == 64
    assert load_prompt("text_appx_c").sha256 == a.sha256


@pytest.mark.parametrize("raw, message", [
    ("", "empty prompt"), ("USER: hi {}", "no 'ASSISTANT:'"), ("{} and {}", "more than one"),
    ("USER: x ASSISTANT: trailing", "text after the final")])
def test_malformed_templates(raw, message):
    with pytest.raises(PromptError, match=message):
        parse_template(raw, "t.txt")


def test_unknown_prompt_lists_shipped_ones():
    shipped = r"\['caption_frame', 'caption_video_appx_g', 'paraphrase_appx_g', 'text_appx_c', 'video_appx_c'\]"
    with pytest.raises(PromptError, match=r"shipped prompts: " + shipped):
        load_prompt("nope")
