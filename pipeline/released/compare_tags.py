"""Two tag sets item by item: how close is a tagging run to another (e.g. the project's to the authors').

Per modality: which items both sets tag, the per-item overlap (Jaccard of the tag sets, and of the
first M tags, which is what inference reads), tags per item on each side, and the vocabularies
(size, shared part, the most frequent tags only one side uses). Tags are compared lower-cased with
whitespace collapsed unless ``exact``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from statistics import mean, median
from typing import Any

from pipeline.tags.table import MODALITIES, TagTable


def _norm(tags: Sequence[str], exact: bool) -> list[str]:
    out = [t if exact else " ".join(t.lower().split()) for t in tags]
    return list(dict.fromkeys(t for t in out if t))  # de-duplicated, order kept


def jaccard(a: Sequence[str], b: Sequence[str]) -> float:
    """|A ∩ B| / |A ∪ B| of two tag lists as sets (1.0 when both are empty)."""
    sa, sb = set(a), set(b)
    return 1.0 if not sa and not sb else len(sa & sb) / len(sa | sb)


def _stats(values: list[float]) -> dict[str, float]:
    return {"mean": round(mean(values), 4), "median": round(median(values), 4)} if values else {"mean": 0.0,
                                                                                               "median": 0.0}


def compare_modality(a: dict[str, list[str]], b: dict[str, list[str]], first: int, exact: bool,
                     top: int = 10) -> dict[str, Any]:
    common = [i for i in a if i in b]
    na = {i: _norm(t, exact) for i, t in a.items()}
    nb = {i: _norm(t, exact) for i, t in b.items()}
    per_item = [jaccard(na[i], nb[i]) for i in common]
    per_first = [jaccard(na[i][:first], nb[i][:first]) for i in common]
    shared = [len(set(na[i]) & set(nb[i])) for i in common]
    freq_a = Counter(t for tags in na.values() for t in tags)
    freq_b = Counter(t for tags in nb.values() for t in tags)
    vocab_a, vocab_b = set(freq_a), set(freq_b)
    return {
        "items": {"a": len(a), "b": len(b), "both": len(common), "only_a": len(a) - len(common),
                  "only_b": len(b) - len(common)},
        "jaccard": _stats(per_item),
        f"jaccard_first_{first}": _stats(per_first),
        "shared_tags_per_item": _stats([float(s) for s in shared]),
        "identical_items": sum(1 for i in common if na[i] == nb[i]),
        "tags_per_item": {"a": _stats([float(len(na[i])) for i in common]),
                          "b": _stats([float(len(nb[i])) for i in common])},
        "vocabulary": {"a": len(vocab_a), "b": len(vocab_b), "shared": len(vocab_a & vocab_b),
                       "jaccard": round(jaccard(list(vocab_a), list(vocab_b)), 4),
                       "top_only_a": [t for t, _ in freq_a.most_common() if t not in vocab_b][:top],
                       "top_only_b": [t for t, _ in freq_b.most_common() if t not in vocab_a][:top]},
    }


def compare_tags(a: TagTable, b: TagTable, first: int = 8, exact: bool = False) -> dict[str, Any]:
    """``{modality: comparison}`` for the modalities either table holds."""
    if first < 1:
        raise ValueError(f"first must be >= 1, got {first}")
    out = {}
    for modality in MODALITIES:
        if a.of(modality) or b.of(modality):
            out[modality] = compare_modality(a.of(modality), b.of(modality), first, exact)
    return out


def summary_lines(result: dict[str, Any], first: int) -> list[str]:
    """A short human-readable summary (one block per modality)."""
    lines = []
    for modality, r in result.items():
        items, voc = r["items"], r["vocabulary"]
        lines += [
            f"{modality}: {items['both']} items in both (only A {items['only_a']}, only B {items['only_b']})",
            f"  Jaccard per item: mean {r['jaccard']['mean']:.3f}, median {r['jaccard']['median']:.3f}; "
            f"first {first}: mean {r[f'jaccard_first_{first}']['mean']:.3f}; identical {r['identical_items']}",
            f"  tags per item: A {r['tags_per_item']['a']['mean']:.2f}, B {r['tags_per_item']['b']['mean']:.2f}; "
            f"shared per item {r['shared_tags_per_item']['mean']:.2f}",
            f"  vocabulary: A {voc['a']}, B {voc['b']}, shared {voc['shared']} (Jaccard {voc['jaccard']:.3f})",
            f"  frequent only in A: {', '.join(voc['top_only_a']) or '-'}",
            f"  frequent only in B: {', '.join(voc['top_only_b']) or '-'}",
        ]
    return lines
