"""The whole params file (pipeline.params): every section loads, sections that must agree do, each
problem names both keys; ``macvr check-params`` and the stages' up-front checks."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from pipeline.config import load_params
from pipeline.params import SECTIONS, Params, check_agreement, check_file
from stages.cli import app as macvr

ROOT = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, edit=None) -> Path:
    """The repository's params.yaml, edited by ``edit(params)``, written to tmp_path."""
    params = copy.deepcopy(load_params(ROOT / "params.yaml"))
    if edit is not None:
        edit(params)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def clip_backbone(p: dict, model: str = "ViT-B/32") -> None:
    p["backbone"].update(kind="clip", model=model)


def test_the_default_params_load_and_agree(tmp_path):
    errors, problems = check_file(write(tmp_path))
    assert errors == {} and problems == []
    p = Params(write(tmp_path))
    assert set(SECTIONS) <= set(p.raw) and all(p.get(s) is not None for s in SECTIONS)
    assert list(p.variants()) == list(p.raw["variants"])


def _set(path: str, value):
    def edit(p: dict) -> None:
        node = p
        *parents, leaf = path.split(".")
        for key in parents:
            node = node[key]
        node[leaf] = value
    return edit


def _all(*edits):
    def edit(p: dict) -> None:
        for e in edits:
            e(p)
    return edit


@pytest.mark.parametrize("edit, keys", [
    # the backbone's input size is frames.image_size
    (_all(clip_backbone, _set("frames.image_size", 64)),
     ["frames.image_size (64)", "backbone.model ViT-B/32 (224)", "set frames.image_size: 224"]),
    (_set("frames.image_size", 72), ["frames.image_size (72)", "backbone.tiny.vision_patch_size (16)"]),
    # the backbone's text context bounds text.max_words
    (_all(clip_backbone, _set("frames.image_size", 224), _set("text.max_words", 80)),
     ["text.max_words (80)", "backbone.model ViT-B/32 (77 tokens)"]),
    # K concepts split the backbone's width
    (_set("train.model.num_concepts", 6), ["train.model.num_concepts (6)", "backbone.tiny.embed_dim", "(64"]),
    (_all(clip_backbone, _set("frames.image_size", 224), _set("train.model.num_concepts", 7)),
     ["train.model.num_concepts (7)", "(512, backbone.model)"]),
    (_set("train.model.temporal_heads", 3), ["train.model.temporal_heads (3)", "backbone width (64)"]),
    # the global batch must fit in the synthetic training pairs
    (_all(_set("prepare.datasets.synthetic.num_videos", 10), _set("prepare.datasets.synthetic.captions_per_video", 1)),
     ["train.batch_size (32)", "6 training pairs", "prepare.datasets.synthetic"]),
    # compare.baseline must be trained
    (_set("compare.baseline", "clip4clip"), ["compare.baseline (clip4clip)", "variants (dicosa, macvr"]),
    # the official temporal init needs the backbone's text layout
    (_set("train.init_temporal_from_backbone", True),
     ["train.init_temporal_from_backbone", "text width (128)", "embedding width (64)"]),
])
def test_cross_section_problems_name_both_keys(tmp_path, edit, keys):
    errors, problems = check_file(write(tmp_path, edit))
    assert errors == {}, errors  # every section loads on its own: only their agreement fails
    assert problems, "the disagreement was not reported"
    for problem in problems:  # one problem (per variant when it depends on the variant)
        for key in keys:
            assert key in problem, (key, problem)


def test_variant_overrides_are_checked_per_variant(tmp_path):
    path = write(tmp_path, _set("variants.macvr", {"model": {"num_concepts": 6}}))
    _, problems = check_file(path)
    assert problems == ["train.model.num_concepts (6) must divide the backbone width (64, backbone.tiny.embed_dim)"]


def test_section_errors_are_kept_per_section(tmp_path):
    path = write(tmp_path, _all(_set("frames.padding", "noise"), _set("variants.macvr_x", {}),
                                _set("evaluate.retrieval.strategies", {"magic": {}})))
    errors, problems = check_file(path)
    assert set(errors) == {"frames", "variants.macvr_x", "evaluate"}
    assert "frames.padding" in errors["frames"] and "noise" in errors["frames"]
    assert "'macvr_x' is not a registered variant" in errors["variants.macvr_x"]
    assert "unknown inference strategy 'magic'; registered: none, dsl, qb" in errors["evaluate"]
    assert problems == []  # checks over a section that does not load are left to its error


def test_check_agreement_runs_only_the_checks_of_given_sections(tmp_path):
    path = write(tmp_path, _all(_set("frames.image_size", 72), _set("compare.baseline", "nope")))
    assert [p.split(" ")[0] for p in check_agreement(path)] == ["frames.image_size", "compare.baseline"]
    assert [p.split(" ")[0] for p in check_agreement(path, {"frames"})] == ["frames.image_size"]
    assert [p.split(" ")[0] for p in check_agreement(path, {"compare"})] == ["compare.baseline"]
    assert check_agreement(path, {"search"}) == []


def test_check_params_command_exit_codes(tmp_path):
    ok = CliRunner().invoke(macvr, ["check-params", str(write(tmp_path))])
    assert ok.exit_code == 0, ok.output
    for section in [*SECTIONS, "variants"]:
        assert f"ok    {section}" in ok.stdout
    bad = CliRunner().invoke(macvr, ["check-params", str(write(tmp_path, _all(
        _set("frames.image_size", 72), _set("features.tag_control", "psychic"))))])
    assert bad.exit_code == 1
    assert "ERROR features:" in bad.stderr and "tag_control" in bad.stderr
    assert "ERROR frames.image_size (72)" in bad.stderr and "ok    features" not in bad.stdout
    assert "ok    frames" in bad.stdout  # the section itself loads; the disagreement is reported apart
    missing = CliRunner().invoke(macvr, ["check-params", str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 1 and "params file not found" in missing.stderr


def test_a_stage_refuses_to_start_when_its_sections_disagree(tmp_path):
    """The backbone stage checks frames/backbone/text agreement before loading any weights."""
    from stages.backbone import app

    path = write(tmp_path, _all(clip_backbone, _set("backbone.path", str(tmp_path / "absent.pt"))))
    result = CliRunner().invoke(app, ["--params", str(path), "--frames", str(tmp_path), "--captions",
                                      str(tmp_path / "c.parquet"), "--out", str(tmp_path / "b.pt")])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "config error" in result.output and "frames.image_size (64)" in result.output
    assert "absent.pt" not in result.output  # stopped before touching the weights
