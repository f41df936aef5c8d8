"""The report's Markdown summary and its small HTML page, from one plain ``report`` dict.

Images are referenced by paths relative to the report directory (which holds them), so the
page and the Markdown render from the directory as is, offline, with no external assets.
"""

from __future__ import annotations

import html
import math

from pipeline.evaluation.outputs import DIRECTION_LABELS
from pipeline.retrieval import strategy_label

METRIC_COLUMNS = (("R1", "R@1"), ("R5", "R@5"), ("R10", "R@10"), ("R50", "R@50"), ("MdR", "MdR"), ("MnR", "MnR"))
LOWER_IS_BETTER = {"MdR", "MnR"}


def _fmt(value: float, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:+.2f}" if signed else f"{value:.2f}"


def _with_interval(values: dict, key: str) -> str:
    if f"{key}_lo" in values:
        return f"{_fmt(values[key])} [{_fmt(values[key + '_lo'])}, {_fmt(values[key + '_hi'])}]"
    return _fmt(values[key])


def metric_rows(report: dict) -> list[dict]:
    """Rows (direction, strategy, variant, values) of both variants, plus a difference row."""
    base, cand = report["variants"]
    rows = []
    for direction in ("t2v", "v2t"):
        strategies = [s for s in report["metrics"][base].get(direction, {})
                      if all(s in report["metrics"][v].get(direction, {}) for v in (base, cand))]
        for strategy in strategies:
            by = {v: report["metrics"][v][direction][strategy] for v in (base, cand)}
            for v in (base, cand):
                rows.append({"direction": direction, "strategy": strategy, "variant": v,
                             "values": [_with_interval(by[v], k) for k, _ in METRIC_COLUMNS], "delta": False})
            rows.append({"direction": direction, "strategy": strategy, "variant": f"{cand} - {base}",
                         "values": [_fmt(by[cand][k] - by[base][k], signed=True) for k, _ in METRIC_COLUMNS],
                         "delta": True})
    return rows


def markdown(report: dict) -> str:
    base, cand = report["variants"]
    out = ["# MAC-VR report", "",
           f"Baseline **{base}** vs **{cand}**, test split: "
           f"{report['counts'][cand]['test_captions']} captions, {report['counts'][cand]['test_videos']} videos. "
           "R@K in %, MdR / MnR = median / mean rank (lower is better), each with its bootstrap "
           "interval [lo, hi]. Strategies: none (raw scores), DSL (dual softmax), QB-Norm (querybank "
           "normalisation).", "",
           "## Retrieval metrics", "",
           "| direction | strategy | variant | " + " | ".join(h for _, h in METRIC_COLUMNS) + " |",
           "|---|---|---|" + "---:|" * len(METRIC_COLUMNS)]
    for row in metric_rows(report):
        cells = [f"*{c}*" if row["delta"] else c for c in row["values"]]
        out.append(f"| {row['direction']} | {strategy_label(row['strategy'])} | {row['variant']} | "
                   + " | ".join(cells) + " |")
    if report.get("tables"):
        out += ["", "## All variants (compare stage)", "", report["tables"].split("\n", 1)[-1].strip()]
    out += ["", f"![recall@K]({report['figures']['recall']})", "", "## Tags", "",
            "| modality | split | items | without tags | mean tags / item | distinct tags |",
            "|---|---|---:|---:|---:|---:|"]
    for s in report["tag_stats"]:
        out.append(f"| {s['modality']} | {s['split']} | {s['items']} | {s['items_without_tags']} | "
                   f"{s['mean_tags']:.2f} | {s['distinct_tags']} |")
    out.append("")
    for fig in report["figures"]["tags"]:
        out.append(f"- [{fig['modality']} tags, {fig['split']}]({fig['png']}) (counts: [{fig['csv']}]({fig['csv']}))")
    c = report["concepts"]
    out += ["", "## Concepts (t-SNE)", "",
            f"{c['pairs']} test pairs, K concepts each, textual (circles) and visual (triangles). "
            "Silhouette of the concept index (cosine; higher = better separated concepts):", "",
            "| variant | all | textual | visual |", "|---|---:|---:|---:|"]
    for v in report["variants"]:
        s = c["silhouette"][v]
        out.append(f"| {v} | {_fmt(s['all'])} | {_fmt(s['textual'])} | {_fmt(s['visual'])} |")
    if c.get("note"):
        out += ["", c["note"]]
    out += ["", f"![t-SNE]({report['figures']['tsne']})", "",
            f"## Qualitative examples ({strategy_label(report['qualitative']['strategy'])} ranks)", ""]
    for ex in report["qualitative"]["examples"]:
        out += [f"- **{ex['kind']}** `{ex['caption_id']}`: \"{ex['text']}\" - rank {base} "
                f"{ex['rank_baseline']:g} -> {cand} {ex['rank_candidate']:g}",
                f"  - TT: {', '.join(ex['textual_tags']) or '(none)'}",
                f"  - VT of `{ex['video_id']}`: {', '.join(ex['visual_tags']) or '(none)'}"]
    if not report["qualitative"]["examples"]:
        out.append("No query changed rank between the two variants.")
    out += ["", f"![qualitative]({report['figures']['qualitative']})", ""]
    return "\n".join(out)


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:4px 8px;font-size:14px}
td.n{text-align:right;font-variant-numeric:tabular-nums}tr.d td{background:#f4f7fb;font-style:italic}
img{max-width:100%}.ex{border:1px solid #ddd;margin:1em 0;padding:.6em}.tags{color:#555;font-size:13px}
.gt{font-weight:bold;color:#1a7f37}details{margin:.5em 0}
"""


def _e(text: object) -> str:
    return html.escape(str(text))


def html_page(report: dict) -> str:
    base, cand = report["variants"]
    parts = ["<!DOCTYPE html><html><head><meta charset='utf-8'><title>MAC-VR report</title>",
             f"<style>{CSS}</style></head><body>", "<h1>MAC-VR report</h1>",
             f"<p>Baseline <b>{_e(base)}</b> vs <b>{_e(cand)}</b> on the test split "
             f"({report['counts'][cand]['test_captions']} captions, {report['counts'][cand]['test_videos']} videos). "
             "R@K in %; MdR / MnR: median / mean rank.</p>", "<h2>Retrieval metrics</h2><table><tr>",
             "<th>direction</th><th>strategy</th><th>variant</th>"
             + "".join(f"<th>{h}</th>" for _, h in METRIC_COLUMNS) + "</tr>"]
    for row in metric_rows(report):
        parts.append(f"<tr class='{'d' if row['delta'] else ''}'><td>{_e(DIRECTION_LABELS[row['direction']])}</td>"
                     f"<td>{_e(strategy_label(row['strategy']))}</td><td>{_e(row['variant'])}</td>"
                     + "".join(f"<td class='n'>{_e(v)}</td>" for v in row["values"]) + "</tr>")
    parts.append("</table>")
    if report.get("tables"):
        parts += ["<h2>All variants (compare stage)</h2>", markdown_tables_html(report["tables"])]
    parts += [f"<img src='{_e(report['figures']['recall'])}' alt='recall at K'>", "<h2>Tags</h2><table>",
              "<tr><th>modality</th><th>split</th><th>items</th><th>without tags</th><th>mean tags</th>"
              "<th>distinct tags</th></tr>"]
    for s in report["tag_stats"]:
        parts.append(f"<tr><td>{_e(s['modality'])}</td><td>{_e(s['split'])}</td><td class='n'>{s['items']}</td>"
                     f"<td class='n'>{s['items_without_tags']}</td><td class='n'>{s['mean_tags']:.2f}</td>"
                     f"<td class='n'>{s['distinct_tags']}</td></tr>")
    parts.append("</table>")
    for fig in report["figures"]["tags"]:
        parts.append(f"<details><summary>{_e(fig['modality'])} tags, {_e(fig['split'])} split "
                     f"(<a href='{_e(fig['csv'])}'>counts</a>)</summary><img src='{_e(fig['png'])}' "
                     f"alt='{_e(fig['modality'])} {_e(fig['split'])} tags' loading='lazy'></details>")
    c = report["concepts"]
    parts += ["<h2>Concepts (t-SNE)</h2>",
              f"<p>{c['pairs']} test pairs; silhouette of the concept index (cosine, higher = better separated).</p>",
              "<table><tr><th>variant</th><th>all</th><th>textual</th><th>visual</th></tr>"]
    for v in report["variants"]:
        s = c["silhouette"][v]
        parts.append(f"<tr><td>{_e(v)}</td>" + "".join(f"<td class='n'>{_fmt(s[k])}</td>"
                                                       for k in ("all", "textual", "visual")) + "</tr>")
    parts.append("</table>")
    if c.get("note"):
        parts.append(f"<p>{_e(c['note'])}</p>")
    parts += [f"<img src='{_e(report['figures']['tsne'])}' alt='t-SNE of concepts'>",
              f"<h2>Qualitative examples ({_e(strategy_label(report['qualitative']['strategy']))} ranks)</h2>"]
    for ex in report["qualitative"]["examples"]:
        strip = f"<img src='{_e(ex['strip'])}' alt='frames of {_e(ex['video_id'])}'><br>" if ex.get("strip") else ""
        tops = "".join(
            f"<div class='tags'>{_e(v)} top: " + "; ".join(
                f"<span class='{'gt' if t['is_ground_truth'] else ''}'>{_e(t['video_id'])}</span> "
                f"({_e(', '.join(t['visual_tags']))})" for t in videos) + "</div>"
            for v, videos in ex["top"].items())
        parts.append(f"<div class='ex'><b>{_e(ex['kind'])}</b>: &ldquo;{_e(ex['text'])}&rdquo; &mdash; rank "
                     f"{_e(base)} {ex['rank_baseline']:g} &rarr; {_e(cand)} {ex['rank_candidate']:g}<br>{strip}"
                     f"<div class='tags'>TT: {_e(', '.join(ex['textual_tags']) or '(none)')}</div>"
                     f"<div class='tags'>VT of <span class='gt'>{_e(ex['video_id'])}</span>: "
                     f"{_e(', '.join(ex['visual_tags']) or '(none)')}</div>{tops}</div>")
    if not report["qualitative"]["examples"]:
        parts.append("<p>No query changed rank between the two variants.</p>")
    parts += [f"<img src='{_e(report['figures']['qualitative'])}' alt='qualitative examples'>", "</body></html>"]
    return "\n".join(parts)


def markdown_tables_html(text: str) -> str:
    """The compare stage's Markdown (headings, paragraphs, pipe tables) as plain HTML."""
    out, rows = [], []

    def flush() -> None:
        if rows:
            head, body = rows[0], [r for r in rows[2:]]
            out.append("<table><tr>" + "".join(f"<th>{_e(c)}</th>" for c in head) + "</tr>"
                       + "".join("<tr>" + "".join(f"<td>{_cell_html(c)}</td>" for c in r) + "</tr>" for r in body)
                       + "</table>")
            rows.clear()

    for line in text.splitlines():
        if line.startswith("|"):
            rows.append([c.strip() for c in line.strip().strip("|").split("|")])
            continue
        flush()
        if line.startswith("# "):
            continue  # the report has its own title
        if line.startswith("## "):
            out.append(f"<h3>{_e(line[3:])}</h3>")
        elif line.strip():
            out.append(f"<p>{_cell_html(line)}</p>")
    flush()
    return "\n".join(out)


def _cell_html(text: str) -> str:
    import re

    escaped = _e(text).replace("&lt;br&gt;", "<br>")
    return re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", escaped)
