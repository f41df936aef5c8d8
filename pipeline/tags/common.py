"""Helpers shared by the tag stages: answers -> raw rows, the failure check, provenance, hints."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from pipeline.tags.failures import FailedItem, enforce_failure_limit, summarise_failures
from pipeline.tags.generate import Answered, Judge
from pipeline.tags.parse import Judgement, cap_candidates, judge_answer
from pipeline.tags.raw import RawRow, write_raw


def offline_fingerprint(cfg: object, lexicon_sha: str) -> str:
    """Hash of an offline tagger's knobs (a dataclass, or a mapping of the knobs that count) + lexicon:
    its stand-in for a prompt hash."""
    knobs = cfg if isinstance(cfg, dict) else asdict(cfg)
    blob = json.dumps({"config": knobs, "lexicon": lexicon_sha}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def start_hint(section: str, example: str) -> str:
    """What to do when no server answers (appended to the 'cannot reach' error)."""
    return (f"Start an OpenAI-compatible server, e.g.\n  {example}\n"
            f"then point {section}.openai.base_urls/model at it; or set {section}.openai.launch: "
            f"true with a launch_command; or use {section}.backend: offline (no server).")


def answered_row(a: Answered, temperature: float, model: str, revision: str, prompt_hash: str,
                 max_tags: int) -> RawRow:
    """The raw row of one server outcome (a kept answer capped to ``max_tags``, or a failure)."""
    answer = a.answer
    verdict, candidates = (cap_candidates(Judgement("ok", a.items), max_tags) if a.ok
                           else (a.verdict, None))
    return RawRow(a.item_id, temperature, a.seed, a.attempt, answer.model if answer else model,
                  revision, prompt_hash, answer.response if answer else None,
                  answer.finish_reason if answer else "", verdict, a.detail, candidates)


def offline_row(item_id: str, temperature: float, seed: int, model: str, revision: str,
                prompt_hash: str, text: str, judge: Judge = judge_answer) -> RawRow:
    """The raw row of an offline tagger's answer, judged like a server's (never capped)."""
    judgement = judge(text, "stop")
    if not judgement.ok:
        return RawRow(item_id, temperature, seed, 0, model, revision, prompt_hash, text, "stop",
                      judgement.verdict, "the offline generator gave no usable list", None)
    verdict, candidates = cap_candidates(judgement, None)
    return RawRow(item_id, temperature, seed, 0, model, revision, prompt_hash, text, "stop",
                  verdict, "", candidates)


def check_and_write(rows: Sequence[RawRow], out_path: Path, max_failed_fraction: float, where: str,
                    param: str) -> None:
    """Write the raw file unless more items failed than allowed (then raise, writing nothing)."""
    failed = [FailedItem(r.item_id, r.verdict, r.detail) for r in rows if not r.tagged]
    enforce_failure_limit(summarise_failures(failed, len(rows)), max_failed_fraction, where, param)
    write_raw(rows, out_path)
