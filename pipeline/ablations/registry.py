"""The paper's ablation tables (Tab. 5-7, Fig. 4) as sweeps of params keys, one registry entry each.

A table names the params keys it sweeps, the rows the paper shows (each a set of values of those
keys and the ``dvc exp`` name to queue it under), its reference row (the one every other row is
compared with, paired) and what it shows (a variant's text-to-video metrics per inference
strategy). :mod:`pipeline.ablations.match` matches ``dvc exp`` runs to the rows;
:mod:`pipeline.ablations.render` renders them.

Every table is on the synthetic default here unless params.yaml says otherwise; the published
values (MSR-VTT, DSL, text-to-video) are kept beside each row for orientation only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

ALPHA = "variants.macvr.loss.alpha_align"
TRAIN_TAGS, INFER_TAGS = "features.train_tags_per_draw", "features.infer_tags"
TAGGERS = ("tag_text", "tag_video")

#: Keys that may differ between runs of any table: they cannot change the metrics (thread and
#: worker counts: the same numbers for any count; report/search: not upstream of the metrics).
FREE = ("*.torch_threads", "frames.workers", "tag_video.workers", "report", "search")
#: Serving knobs of an LLM tagger (where and how fast it is asked, not what it answers).
SERVING = ("base_urls", "api_key_env", "concurrency", "timeout_s", "max_retries", "backoff_s", "max_backoff_s",
           "breaker_failures", "launch", "launch_command", "launch_timeout_s")


@dataclass(frozen=True)
class Row:
    """One row the paper shows: ``values`` of the swept keys, queued as ``dvc exp`` ``name``."""

    label: str
    values: dict[str, Any]
    name: str
    paper: tuple[float, ...] | None = None  # published R@1, R@5, R@10, MdR, MnR (MSR-VTT, DSL)
    needs: str = ""  # what the run needs beyond this box: its queue command is printed commented out


@dataclass(frozen=True)
class SweepTable:
    """A paper table as a sweep. ``keys``: swept params keys (a key also covers everything under
    it); ``free``: further keys allowed to differ (see :data:`FREE`); ``defaults``: the value of a
    swept key params.yaml leaves out; ``accepts``: which swept values belong to this table
    (Fig. 4a: N = M); ``relevant``: drops swept values that cannot matter (an offline tagger's
    model name); ``label``: a row label for swept values no registered row has; ``reference``:
    the label of the reference row (every Δ is row − reference)."""

    id: str
    title: str
    keys: tuple[str, ...]
    rows: tuple[Row, ...]
    reference: str
    label: Callable[[dict[str, Any], dict[str, Any]], str]
    axis: str = "row"
    free: tuple[str, ...] = ()
    defaults: dict[str, Any] = field(default_factory=dict)
    accepts: Callable[[dict[str, Any]], bool] | None = None
    relevant: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    variant: str = "macvr"
    direction: str = "t2v"
    metrics: tuple[str, ...] = ("R1", "R5", "R10", "MnR")
    strategies: tuple[str, ...] = ("none", "qb", "dsl")
    plot: bool = False  # Fig. 4: also a CSV for `dvc plots` (x = "n-m")
    built: bool = True  # False: the pipeline cannot produce this table's runs yet
    note: str = ""


def _alpha_default() -> float:
    # the registered macvr variant's weight: what a run uses while params.yaml leaves it out
    from pipeline.train.variants import VARIANTS

    return float(VARIANTS.get("macvr").overrides["loss"]["alpha_align"])


def _diff_label(values: dict[str, Any], reference: dict[str, Any]) -> str:
    # keys a change made irrelevant (an offline tagger's knobs once it is openai) go unsaid
    return ", ".join(f"{k}={v}" for k, v in sorted(values.items()) if reference.get(k) != v) or "as params.yaml"


def _tags_label(values: dict[str, Any], reference: dict[str, Any]) -> str:
    return f"{values[TRAIN_TAGS]}-{values[INFER_TAGS]}"


def _tagger_relevant(values: dict[str, Any]) -> dict[str, Any]:
    """Only the knobs of the backend each tagger uses (an offline tagger ignores the model name)."""
    out = {}
    for key, value in values.items():
        side, _, rest = key.partition(".")
        backend = values.get(f"{side}.backend")
        if rest.startswith("openai.") and backend != "openai" or rest.startswith("offline.") and backend != "offline":
            continue
        out[key] = value
    return out


def _tagger_row(label: str, name: str, video: str, text: str, paper: tuple[float, ...]) -> Row:
    return Row(label, {"tag_video.backend": "openai", "tag_video.openai.model": video,
                       "tag_text.backend": "openai", "tag_text.openai.model": text}, name, paper,
               needs="an OpenAI-compatible server serving both models at tag_*.openai.base_urls")


def _tables() -> dict[str, SweepTable]:
    fig4_values = (1, 2, 4, 6, 8, 10, 12)
    tags_note = ("The figure's ticks are not in the paper's text; the rows cover every count it names (1, 2, 6, "
                 "8, 12). On the synthetic default an item has 11 to 28 tags (the union of 4 temperatures, "
                 "measured on the default run's tags.parquet), so 12 is a real count there.")
    return {t.id: t for t in (
        SweepTable(
            "tab5", "Tab. 5: the alignment-loss weight α", (ALPHA,),
            tuple(Row(f"{a:g}", {ALPHA: a}, f"tab5-a{a:g}", p) for a, p in (
                (0.0, (52.1, 77.3, 85.9, 1, 12.9)), (0.5, (53.1, 76.7, 85.5, 1, 10.0)),
                (1.0, (53.2, 77.7, 85.3, 1, 10.0)), (2.0, (53.0, 77.5, 85.4, 1, 10.1)),
                (5.0, (52.1, 76.7, 85.6, 1, 10.9)), (10.0, (52.5, 77.5, 85.4, 1, 10.5)))),
            reference="1", axis="α", defaults={ALPHA: _alpha_default()},
            label=lambda v, r: f"{v[ALPHA]:g}",
            note="α = 1 is the paper's best and the registered macvr variant's weight: the default run."),
        SweepTable(
            "fig4a", "Fig. 4a: tags in training and inference (N = M)", (TRAIN_TAGS, INFER_TAGS),
            tuple(Row(f"{n}-{n}", {TRAIN_TAGS: n, INFER_TAGS: n}, f"fig4a-n{n}-m{n}") for n in fig4_values),
            reference="6-6", axis="n-m", label=_tags_label, plot=True,
            accepts=lambda v: v[TRAIN_TAGS] == v[INFER_TAGS],
            note="Reference 6-6: the paper's best of Fig. 4a (DSL) and our training N = 6; the default run "
                 "(6-8) has N ≠ M and is not on this curve. " + tags_note),
        SweepTable(
            "fig4b", "Fig. 4b: tags in inference only (N = 6)", (TRAIN_TAGS, INFER_TAGS),
            tuple(Row(f"6-{m}", {TRAIN_TAGS: 6, INFER_TAGS: m}, f"fig4b-n6-m{m}") for m in fig4_values),
            reference="6-8", axis="n-m", label=_tags_label, plot=True, accepts=lambda v: v[TRAIN_TAGS] == 6,
            note="Reference 6-8: the default run and the paper's best at inference with DSL. N = 6 as in the "
                 "paper (a run with another N is on neither curve unless N = M). " + tags_note),
        SweepTable(
            "tab6", "Tab. 6: the tags' foundation models",
            tuple(f"{s}.{k}" for s in TAGGERS for k in ("backend", "openai.model", "openai.revision", "offline")),
            (Row("params.yaml taggers", {}, "tab6-default"),
             _tagger_row("VL2 + L3.1", "tab6-vl2-l31", "DAMO-NLP-SG/VideoLLaMA2-7B",
                         "meta-llama/Llama-3.1-8B-Instruct", (53.2, 77.7, 85.3, 1, 10.0)),
             _tagger_row("VL + L2", "tab6-vl-l2", "DAMO-NLP-SG/Video-LLaMA-2-7B-Finetuned",
                         "meta-llama/Llama-2-7b-chat-hf", (52.0, 77.5, 84.9, 1, 10.4))),
            reference="params.yaml taggers", axis="taggers", label=_diff_label, relevant=_tagger_relevant,
            free=tuple(f"{s}.openai.{k}" for s in TAGGERS for k in SERVING),
            note="Reference: the default run's taggers (the synthetic default: the offline taggers; their knobs "
                 "tag_*.offline.* make further rows). The paper's rows need an OpenAI-compatible server "
                 "(tag_*.openai.base_urls) serving each model under that name; VideoLLaMA2 and Video-LLaMA "
                 "are not vLLM architectures, so serve them with a server of their own."),
        SweepTable(
            "tab7", "Tab. 7: tags vs auxiliary captions", (),
            (Row("Captions: Blip2 + PG", {}, "tab7-blip2-pg", (51.2, 76.2, 85.0, 1, 11.2)),
             Row("Captions: Blip2 + L3.1", {}, "tab7-blip2-l31", (51.6, 76.7, 85.5, 1, 10.9)),
             Row("Captions: VL2 + L3.1", {}, "tab7-vl2-l31", (50.4, 75.9, 84.7, 1, 11.5)),
             Row("Tags: VL2 + L3.1", {}, "tab7-tags", (53.2, 77.7, 85.3, 1, 10.0))),
            reference="Tags: VL2 + L3.1", axis="auxiliary input", label=_diff_label, built=False,
            note="Not built: the pipeline makes tags only, no auxiliary captions (BLIP-2 / VideoLLaMA2 captions, "
                 "PEGASUS / Llama 3.1 paraphrases), and no params key selects them, so no run can be matched "
                 "or queued for this table."),
    )}


TABLES: dict[str, SweepTable] = _tables()
