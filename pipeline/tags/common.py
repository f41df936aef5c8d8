"""Small helpers shared by the tag stages (provenance of offline answers, server hints)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict


def offline_fingerprint(cfg: object, lexicon_sha: str) -> str:
    """Hash of an offline tagger's knobs + lexicon: its stand-in for a prompt hash."""
    blob = json.dumps({"config": asdict(cfg), "lexicon": lexicon_sha}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def start_hint(section: str, example: str) -> str:
    """What to do when no server answers (appended to the 'cannot reach' error)."""
    return (f"Start an OpenAI-compatible server, e.g.\n  {example}\n"
            f"then point {section}.openai.base_urls/model at it; or set {section}.openai.launch: "
            f"true with a launch_command; or use {section}.backend: offline (no server).")
