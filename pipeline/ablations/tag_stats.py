"""The paper's tag statistics (Tab. 1, 10, 11) from runs' ``metrics/tags.json``.

Tab. 1: the default run's tags per modality and split: "#Tags" (distinct tags over the split's
items) and "Avg #Tags" (tags per item), after cleaning, as ``clean_tags`` counts them. Tab. 10
(textual) and Tab. 11 (visual): the same per tag-model setting, i.e. per row of Tab. 6 that has a
run (:mod:`pipeline.ablations.match` places the runs). A split the data lacks is "–".
"""

from __future__ import annotations

import json
from typing import Any

from pipeline.ablations.match import TableMatch
from pipeline.compare.command import _git

SPLITS = ("train", "val", "test")
MODALITIES = {"visual": "Visual tags (VT)", "textual": "Textual tags (TT)"}
STAT_TABLES = {"tab1": "Tab. 1: tag statistics after extraction (the default run)",
               "tab10": "Tab. 10: textual tag statistics per tag model (runs of Tab. 6)",
               "tab11": "Tab. 11: visual tag statistics per tag model (runs of Tab. 6)"}


def tag_metrics(rev: str) -> dict[str, Any] | None:
    """A run's ``metrics/tags.json`` (None when it has none)."""
    try:
        return json.loads(_git("show", f"{rev}:metrics/tags.json"))
    except ValueError:
        return None


def split_stats(metrics: dict[str, Any], modality: str) -> dict[str, dict[str, float] | None]:
    """``{split: {"tags": distinct tags, "avg": tags per item}}`` (None: no such split)."""
    by = metrics.get(modality, {})
    return {s: ({"tags": int(by[s]["unique_tags"]), "avg": float(by[s]["avg_tags"])} if s in by else None)
            for s in SPLITS}


def _cells(stats: dict[str, dict[str, float] | None]) -> list[str]:
    counts = [f"{stats[s]['tags']:,}" if stats[s] else "–" for s in SPLITS]
    avgs = [f"{stats[s]['avg']:.2f}" if stats[s] else "–" for s in SPLITS]
    return counts + avgs


def _header(first: str) -> list[str]:
    return [f"| {first} | " + " | ".join([f"#Tags {s}" for s in SPLITS] + [f"Avg #Tags {s}" for s in SPLITS]) + " |",
            "|---|" + "---:|" * (2 * len(SPLITS))]


def build_stats(table: str, tab6: TableMatch, dataset: str) -> tuple[str, dict[str, Any]]:
    """(Markdown, JSON) of one statistics table; ``tab6``: the matched Tab. 6 (HEAD included)."""
    lines = [f"## {STAT_TABLES[table]}", ""]
    data: dict[str, Any] = {"table": table, "title": STAT_TABLES[table], "rows": {}}
    if table == "tab1":
        head = tab6.reference.run if tab6.reference.run and tab6.reference.run.name == "HEAD" else None
        metrics = tag_metrics(head.rev if head else "HEAD")
        if metrics is None:
            return "\n".join(lines + ["The default run has no metrics/tags.json."]) + "\n", data
        for modality, title in MODALITIES.items():
            stats = split_stats(metrics, modality)
            lines += [f"**{title}**", "", *_header("dataset"), f"| {dataset} | " + " | ".join(_cells(stats)) + " |", ""]
            data["rows"].setdefault(dataset, {})[modality] = stats
        return "\n".join(lines) + "\n", data
    modality = "textual" if table == "tab10" else "visual"
    lines += [f"**{MODALITIES[modality]}** on {dataset}, one row per tag-model setting with a run", "",
              *_header("tag models (Tab. 6 row)")]
    missing = []
    for row in tab6.rows:
        metrics = tag_metrics(row.run.rev) if row.run else None
        if metrics is None:
            missing.append(row.label)
            continue
        stats = split_stats(metrics, modality)
        lines.append(f"| {row.label} ({row.run.name}) | " + " | ".join(_cells(stats)) + " |")
        data["rows"][row.label] = {"run": row.run.name, "rev": row.run.rev, modality: stats}
    if missing:
        lines += ["", "No run yet: " + "; ".join(missing) + " (queue them with `macvr paper-tables -t tab6 "
                  "--queue-commands`)."]
    data["missing"] = missing
    return "\n".join(lines) + "\n", data
