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
    plot: str = ""  # Fig. 4: the swept count on the figure's x axis ("n" or "m"); also a CSV and a PNG
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


#: The synthetic analogue of the older tag models (Appx. F: Video-LLaMA + Llama 2 hallucinate tags
#: and list them in a less telling order): the offline taggers with a generic filler slipping into
#: nearly every answer and a noisier order, so the first tags are less often the salient ones.
WEAKER_TAGGERS = {f"{s}.offline.sampling.{k}": v for s in TAGGERS
                  for k, v in (("filler_prob", 1.0), ("order_noise", 2.0))}


def _tagger_row(label: str, name: str, video: str, text: str, paper: tuple[float, ...]) -> Row:
    return Row(label, {"tag_video.backend": "openai", "tag_video.openai.model": video,
                       "tag_text.backend": "openai", "tag_text.openai.model": text}, name, paper,
               needs="an OpenAI-compatible server serving both models at tag_*.openai.base_urls")


AUX_KEYS = ("features.auxiliary", "caption_video", "caption_text", "clean_captions")
AUX_FREE = (tuple(f"{s}.openai.{k}" for s in ("caption_video", "caption_text") for k in SERVING)
            + ("caption_text.seq2seq.device", "caption_text.seq2seq.batch_size"))
_AUX_SOURCE = {"caption_video": "visual", "caption_text": "textual"}
_BACKEND_BLOCKS = ("openai", "offline", "seq2seq")
_SERVED_ONLY = ("prompt", "api", "video_input")  # knobs only a served model reads


def _aux_relevant(values: dict[str, Any]) -> dict[str, Any]:
    """Only what the model's auxiliary input depends on: a caption stage's knobs only while its
    modality reads captions, and only those of the backend it uses (and of its input)."""
    reads = {m: values.get(f"features.auxiliary.{m}") == "captions" for m in ("visual", "textual")}
    out = {}
    for key, value in values.items():
        section, _, rest = key.partition(".")
        if section == "clean_captions" and not any(reads.values()):
            continue
        if section in _AUX_SOURCE:
            backend = values.get(f"{section}.backend")
            block = rest.partition(".")[0]
            if not reads[_AUX_SOURCE[section]] or (block in _BACKEND_BLOCKS and block != backend and "." in rest):
                continue
            if rest in _SERVED_ONLY and backend != "openai":
                continue
            if rest == "video_input" and values.get("caption_video.input") != "video":
                continue
        out[key] = value
    return out


def _aux_label(values: dict[str, Any], reference: dict[str, Any]) -> str:
    parts = []
    for modality, section in (("visual", "caption_video"), ("textual", "caption_text")):
        if values.get(f"features.auxiliary.{modality}") != "captions":
            parts.append(f"{modality} tags")
            continue
        backend = values.get(f"{section}.backend")
        model = values.get(f"{section}.{backend}.model") if backend in ("openai", "seq2seq") else "offline"
        where = f", {values.get('caption_video.input')}" if section == "caption_video" else ""
        parts.append(f"{modality} captions ({model}{where})")
    rest = _diff_label({k: v for k, v in values.items() if not k.startswith("features.auxiliary")
                        and k.partition(".")[2] not in ("backend", "input", "openai.model", "seq2seq.model")},
                       reference)
    return " + ".join(parts) + ("" if rest == "as params.yaml" else f" [{rest}]")


def _tab7_rows() -> tuple[Row, ...]:
    both = {"features.auxiliary.visual": "captions", "features.auxiliary.textual": "captions"}
    blip2 = {"caption_video.backend": "openai", "caption_video.input": "middle_frame",
             "caption_video.prompt": "caption_frame", "caption_video.openai.model": "Salesforce/blip2-opt-2.7b"}
    vl2 = {"caption_video.backend": "openai", "caption_video.input": "video",
           "caption_video.openai.model": "DAMO-NLP-SG/VideoLLaMA2-7B"}
    llama = {"caption_text.backend": "openai", "caption_text.openai.model": "meta-llama/Llama-3.1-8B-Instruct"}
    pegasus = {"caption_text.backend": "seq2seq", "caption_text.seq2seq.model": "tuner007/pegasus_paraphrase"}
    served = ("an OpenAI-compatible server serving the captioner at caption_video.openai.base_urls{}; "
              "VideoLLaMA2 is not a vLLM architecture, so serve it with a server of its own")
    return (
        Row("Captions: Blip2 + PG", {**both, **blip2, **pegasus}, "tab7-blip2-pg", (51.2, 76.2, 85.0, 1, 11.2),
            needs=served.format(" and the PEGASUS weights (caption_text.seq2seq.path or the Hugging Face cache)")),
        Row("Captions: Blip2 + L3.1", {**both, **blip2, **llama}, "tab7-blip2-l31", (51.6, 76.7, 85.5, 1, 10.9),
            needs=served.format(" and Llama 3.1 at caption_text.openai.base_urls")),
        Row("Captions: VL2 + L3.1", {**both, **vl2, **llama}, "tab7-vl2-l31", (50.4, 75.9, 84.7, 1, 11.5),
            needs=served.format(" and Llama 3.1 at caption_text.openai.base_urls")),
        Row("Tags (params.yaml taggers)", {}, "tab7-tags", (53.2, 77.7, 85.3, 1, 10.0)),
        Row("Captions: offline frame + offline paraphrases", {**both, "caption_video.input": "middle_frame"},
            "tab7-frame-para"),
        Row("Captions: offline clip + offline paraphrases", dict(both), "tab7-video-para"),
        Row("Visual captions (offline clip) + textual tags", {"features.auxiliary.visual": "captions"},
            "tab7-video-tags"),
        Row("Visual tags + textual paraphrases (offline)", {"features.auxiliary.textual": "captions"},
            "tab7-tags-para"),
    )


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
            reference="6-6", axis="n-m", label=_tags_label, plot="n",
            accepts=lambda v: v[TRAIN_TAGS] == v[INFER_TAGS],
            note="Reference 6-6: the paper's best of Fig. 4a (DSL) and our training N = 6; the default run "
                 "(6-8) has N ≠ M and is not on this curve. " + tags_note),
        SweepTable(
            "fig4b", "Fig. 4b: tags in inference only (N = 6)", (TRAIN_TAGS, INFER_TAGS),
            tuple(Row(f"6-{m}", {TRAIN_TAGS: 6, INFER_TAGS: m}, f"fig4b-n6-m{m}") for m in fig4_values),
            reference="6-8", axis="n-m", label=_tags_label, plot="m", accepts=lambda v: v[TRAIN_TAGS] == 6,
            note="Reference 6-8: the default run and the paper's best at inference with DSL. N = 6 as in the "
                 "paper (a run with another N is on neither curve unless N = M). " + tags_note),
        SweepTable(
            "tab6", "Tab. 6: the tags' foundation models",
            tuple(f"{s}.{k}" for s in TAGGERS for k in ("backend", "openai.model", "openai.revision", "offline")),
            (Row("params.yaml taggers", {}, "tab6-default"),
             _tagger_row("VL2 + L3.1", "tab6-vl2-l31", "DAMO-NLP-SG/VideoLLaMA2-7B",
                         "meta-llama/Llama-3.1-8B-Instruct", (53.2, 77.7, 85.3, 1, 10.0)),
             _tagger_row("VL + L2", "tab6-vl-l2", "DAMO-NLP-SG/Video-LLaMA-2-7B-Finetuned",
                         "meta-llama/Llama-2-7b-chat-hf", (52.0, 77.5, 84.9, 1, 10.4)),
             Row("offline, weaker (VL + L2 analogue)", WEAKER_TAGGERS, "tab6-offline-weaker")),
            reference="params.yaml taggers", axis="taggers", label=_diff_label, relevant=_tagger_relevant,
            free=tuple(f"{s}.openai.{k}" for s in TAGGERS for k in SERVING),
            note="Reference: the default run's taggers (the synthetic default: the offline taggers; their knobs "
                 "tag_*.offline.* make further rows; 'offline, weaker' is the synthetic analogue of the older "
                 "models: a generic filler in nearly every answer and a noisier order). The paper's rows need an OpenAI-compatible server "
                 "(tag_*.openai.base_urls) serving each model under that name; VideoLLaMA2 and Video-LLaMA "
                 "are not vLLM architectures, so serve them with a server of their own."),
        SweepTable(
            "tab7", "Tab. 7: tags vs auxiliary captions", AUX_KEYS, _tab7_rows(),
            reference="Tags (params.yaml taggers)", axis="auxiliary input", label=_aux_label,
            relevant=_aux_relevant, free=AUX_FREE,
            # a run from before auxiliary captions existed read tags
            defaults={"features.auxiliary.visual": "tags", "features.auxiliary.textual": "tags"},
            note="Reference: the default run (tags from params.yaml's taggers; the paper's reference is tags "
                 "from VL2 + L3.1). features.auxiliary switches each modality to auxiliary captions "
                 "(caption_video: a video LLM on the clip, or an image captioner on the middle frame; "
                 "caption_text: paraphrases); the model reads one random caption per item per epoch in "
                 "training and the first at test (Appx. G), each encoded as a sentence by the text tower. "
                 "The offline rows are the synthetic analogues: the offline captioner on the clip (VL2) or "
                 "on the middle frame only (BLIP-2), and the offline lexicon paraphraser (L3.1 / PEGASUS). "
                 "The backbone is the same in every row (it reads the tags, not the auxiliary input)."),
    )}


TABLES: dict[str, SweepTable] = _tables()
