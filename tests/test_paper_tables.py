"""``macvr paper-tables`` on a miniature repository: HEAD (the default run) and experiment commits
under refs/exps, made with plain git. Checks which runs land in which row (only params that differ
in a table's swept keys), the queue commands of missing rows (applied with DVC's own override
code, they make params that land in their row), the cells against the metrics files, and the
paired Δ with Holm over each table."""

from __future__ import annotations

import csv
import io
import json
import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from pipeline.ablations.match import RowMatch, Run, TableMatch, flatten, match_table
from pipeline.ablations.registry import ALPHA, INFER_TAGS, TABLES, TRAIN_TAGS
from pipeline.ablations.render import build
from pipeline.compare.config import BootstrapSettings
from pipeline.compare.paired import compare_results
from pipeline.evaluation.results import EvalResult
from pipeline.retrieval.uncertainty import holm
from stages.cli import COMMANDS, app
from tests.test_compare import eval_dir, rank_sets

REAL_PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"
STRATEGIES = ("none", "dsl", "qb")
METRIC_OFFSETS = {"R1": 0.0, "R5": 20.0, "R10": 30.0, "R50": 60.0, "MdR": 5.0, "MnR": 25.0}


def metrics_file(base: float) -> dict:
    """A metrics/<variant>.json whose every number is distinct (strategy, metric, bound)."""
    def block(shift: float) -> dict:
        return {s: {k: v for m, off in METRIC_OFFSETS.items()
                    for k, v in ((m, base + shift + off + i), (f"{m}_lo", base + shift + off + i - 1.25),
                                 (f"{m}_hi", base + shift + off + i + 1.5))}
                for i, s in enumerate(STRATEGIES)}
    return {"t2v": block(0.0), "v2t": block(0.5), "val": {"t2v": block(3.0), "v2t": block(3.5)}}


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], check=True, capture_output=True, text=True).stdout.strip()


DELETE = object()


def _set(params: dict, dotted: str, value) -> None:
    *parents, leaf = dotted.split(".")
    for p in parents:
        params = params.setdefault(p, {})
    if value is DELETE:
        params.pop(leaf, None)
    else:
        params[leaf] = value


def experiment(name: str, overrides: dict, base: float, refdir: str = "ab/cd") -> str:
    """An experiment commit (params + metrics) beside HEAD, under refs/exps/<refdir>/<name>."""
    params = yaml.safe_load(Path("params.yaml").read_text())
    for key, value in overrides.items():
        _set(params, key, value)
    _git("checkout", "-q", "-b", f"side-{name}")
    Path("params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    Path("metrics/macvr.json").write_text(json.dumps(metrics_file(base)))
    _git("commit", "-qam", name)
    sha = _git("rev-parse", "HEAD")
    _git("checkout", "-q", "main")
    _git("branch", "-qD", f"side-{name}")
    _git("update-ref", f"refs/exps/{refdir}/{name}", sha)
    return sha


RUNS = {  # name -> (params overrides, metrics base)
    "tab5-a0.5": ({ALPHA: 0.5}, 20.0),
    "a5-threads": ({ALPHA: 5.0, "train.torch_threads": 0}, 22.0),      # a free key: still Tab. 5
    "a2-seed1": ({ALPHA: 2.0, "train.seed": 1}, 24.0),                 # a seed too: in no table
    "seed1": ({"train.seed": 1}, 26.0),                                # a seed experiment
    "again": ({ALPHA: 1}, 28.0),                                       # the default's α, said aloud
    "n4m4": ({TRAIN_TAGS: 4, INFER_TAGS: 4}, 30.0),                    # Fig. 4a only
    "m4": ({INFER_TAGS: 4}, 32.0),                                     # Fig. 4b only
    "m6": ({INFER_TAGS: 6}, 34.0),                                     # both curves (6-6)
    "colour": ({"tag_video.offline.colour_penalty": 0.3}, 36.0),       # Tab. 6: an offline knob
    "unused-model": ({"tag_text.openai.model": "some/llm"}, 38.0),     # offline tagger: as the default
    "aux-video": ({"features.auxiliary.visual": "captions"}, 40.0),    # Tab. 7: visual captions only
    "aux-unused": ({"caption_text.offline.swap_prob": 0.9}, 42.0),     # Tab. 7: paraphraser unused: the default
    "aux-frame": ({"features.auxiliary.visual": "captions", "features.auxiliary.textual": "captions",
                   "caption_video.input": "middle_frame"}, 44.0),      # Tab. 7: the BLIP-2 analogue
    "pre-aux": ({"features.auxiliary": DELETE, "caption_video": DELETE, "caption_text": DELETE,
                 "clean_captions": DELETE}, 46.0),                      # a run from before captions: tags
}


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("repo")
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        mp.chdir(root)
        _git("init", "-q", "-b", "main")
        shutil.copy(REAL_PARAMS, "params.yaml")
        Path("metrics").mkdir()
        Path("metrics/macvr.json").write_text(json.dumps(metrics_file(10.0)))
        _git("add", "-A")
        _git("commit", "-qm", "default run")
        for name, (overrides, base) in RUNS.items():
            experiment(name, overrides, base)
        # the queue's own refs live under refs/exps too: never runs
        _git("update-ref", "refs/exps/celery/stash", _git("rev-parse", "HEAD"))
    return root


@pytest.fixture
def in_repo(repo, monkeypatch) -> Path:
    monkeypatch.chdir(repo)
    return repo


def _matches(ids=tuple(TABLES)) -> dict[str, TableMatch]:
    from pipeline.ablations.command import match_all

    return match_all(list(ids))


def _runs(match: TableMatch) -> dict[str, list[str]]:
    return {r.label: [run.name for run in r.runs] for r in match.rows if r.runs}


def test_runs_land_in_a_row_only_when_they_differ_in_the_swept_keys(in_repo):
    m = _matches()
    assert _runs(m["tab5"]) == {"0.5": ["tab5-a0.5"], "1": ["HEAD", "again"], "5": ["a5-threads"]}
    assert m["tab5"].reference.label == "1" and m["tab5"].reference.run.name == "HEAD"
    assert "train.seed" in m["tab5"].skipped["seed1"] and "train.seed" in m["tab5"].skipped["a2-seed1"]
    assert "stash" not in {run.name for t in m.values() for r in t.rows for run in r.runs}
    # Fig. 4a is N = M: the default run (6-8) and 6-4 are not on it; 6-6 is on both curves
    assert _runs(m["fig4a"]) == {"4-4": ["n4m4"], "6-6": ["m6"]}
    assert _runs(m["fig4b"]) == {"6-4": ["m4"], "6-6": ["m6"], "6-8": ["HEAD"]}
    assert m["fig4a"].reference.label == "6-6" and m["fig4b"].reference.label == "6-8"
    # Tab. 6: an offline tagger's knob is a row of its own; an unused model name changes nothing
    assert _runs(m["tab6"]) == {"params.yaml taggers": ["HEAD", "unused-model"],
                                "tag_video.offline.colour_penalty=0.3": ["colour"]}
    assert [r.label for r in m["tab6"].rows][:3] == ["params.yaml taggers", "VL2 + L3.1", "VL + L2"]
    # Tab. 7: a caption knob counts only while its modality reads captions
    runs7 = _runs(m["tab7"])
    reference = runs7.pop("Tags (params.yaml taggers)")  # after HEAD: the newest first (commit seconds)
    assert reference[0] == "HEAD" and sorted(reference[1:]) == ["aux-unused", "pre-aux"]
    assert runs7 == {"Visual captions (offline clip) + textual tags": ["aux-video"],
                     "Captions: offline frame + offline paraphrases": ["aux-frame"]}
    assert m["tab7"].reference.run.name == "HEAD"
    assert sorted(x.lstrip("# ").split(" -n ")[1].split()[0] for x in m["tab7"].queue) == [
        "tab7-blip2-l31", "tab7-blip2-pg", "tab7-tags-para", "tab7-video-para", "tab7-vl2-l31"]


def test_several_runs_of_one_row_pick_head_then_heads_code_then_the_newest():
    table = TABLES["tab5"]
    params = yaml.safe_load(REAL_PARAMS.read_text())
    alpha = {**params, "variants": {**params["variants"], "macvr": {"loss": {"alpha_align": 0.5}}}}
    head = Run("HEAD", "f" * 40, params, metrics_file(1.0))
    runs = [Run("old", "1" * 40, alpha, metrics_file(2.0), baseline="e" * 40, time=300),
            Run("new", "2" * 40, alpha, metrics_file(2.0), baseline="e" * 40, time=400),
            Run("on-head", "3" * 40, alpha, metrics_file(2.0), baseline="f" * 40, time=100),
            Run("tab5-a0.5", "4" * 40, alpha, metrics_file(2.0), baseline="e" * 40, time=50)]
    row = {r.label: r for r in match_table(table, head, runs).rows}["0.5"]
    assert [r.name for r in row.runs] == ["on-head", "tab5-a0.5", "new", "old"]
    assert [r.name for r in match_table(table, head, runs[:2]).rows[1].runs] == ["new", "old"]


def test_missing_rows_get_queue_commands_that_land_in_their_row(in_repo):
    from dvc.utils.hydra import apply_overrides

    result = CliRunner().invoke(app, ["paper-tables", "--queue-commands"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[:3] == ["dvc exp run --queue -n tab5-a0 -S ++variants.macvr.loss.alpha_align=0.0",
                         "dvc exp run --queue -n tab5-a2 -S ++variants.macvr.loss.alpha_align=2.0",
                         "dvc exp run --queue -n tab5-a10 -S ++variants.macvr.loss.alpha_align=10.0"]
    assert "dvc exp run --queue -n fig4a-n1-m1 -S features.train_tags_per_draw=1 -S features.infer_tags=1" in lines
    assert "dvc exp run --queue -n fig4b-n6-m1 -S features.infer_tags=1" in lines
    assert not any("-n fig4a-n6-m6" in x or "-n fig4b-n6-m6" in x or "fig4b-n6-m8" in x for x in lines)
    served = [x for x in lines if "tab6" in x and x.startswith("#")]
    assert len(served) == 2 and all(x.startswith("# needs an OpenAI-compatible server") for x in served)
    assert ("dvc exp run --queue -n tab6-offline-weaker -S tag_text.offline.sampling.filler_prob=1.0 "
            "-S tag_text.offline.sampling.order_noise=2.0 -S tag_video.offline.sampling.filler_prob=1.0 "
            "-S tag_video.offline.sampling.order_noise=2.0") in lines
    served7 = [x for x in lines if "tab7" in x and x.startswith("#")]
    assert len(served7) == 3 and all("serving the captioner" in x for x in served7)
    assert "dvc exp run --queue -n tab7-video-para -S features.auxiliary.visual=captions " \
           "-S features.auxiliary.textual=captions" in lines
    m = _matches()
    wanted = {r.row.name: (t, r.label) for t in m.values() for r in t.rows if r.row and not r.runs and t.table.built}
    assert sorted(shlex.split(x.lstrip("# "))[5] if not x.startswith("#") else x.split(" -n ")[1].split()[0]
                  for x in lines) == sorted(wanted)
    # each command, applied by DVC's own -S code to params.yaml, makes params that land in its row
    for line in lines:
        argv = shlex.split(line.split(": ", 1)[1] if line.startswith("#") else line)
        name = argv[argv.index("-n") + 1]
        table, label = wanted[name]
        work = in_repo.parent / f"p-{name}.yaml"
        shutil.copy("params.yaml", work)
        apply_overrides(str(work), [argv[i + 1] for i, a in enumerate(argv) if a == "-S"])
        run = Run(name, "0" * 40, yaml.safe_load(work.read_text()), metrics_file(0.0), "0" * 40)
        head = Run("HEAD", "1" * 40, yaml.safe_load(Path("params.yaml").read_text()), metrics_file(0.0))
        landed = {r.label: [x.name for x in r.runs] for r in match_table(table.table, head, [run]).rows}
        assert name in landed[label], (line, landed)


def test_a_point_on_both_fig4_curves_is_queued_once():
    from pipeline.ablations.command import queue_lines

    head = Run("HEAD", "f" * 40, yaml.safe_load(REAL_PARAMS.read_text()), metrics_file(1.0))
    matches = {t: match_table(TABLES[t], head, []) for t in ("fig4a", "fig4b")}
    assert "dvc exp run --queue -n fig4b-n6-m6 -S features.infer_tags=6" in matches["fig4b"].queue
    lines = queue_lines(matches)
    assert [x for x in lines if x.endswith("-S features.infer_tags=6")] == [
        "dvc exp run --queue -n fig4a-n6-m6 -S features.infer_tags=6"]
    assert len(lines) == 7 + 5  # every Fig. 4a point; Fig. 4b's but 6-6 (queued once) and 6-8 (the default run)


def _cells(md: str, first: str) -> list[list[str]]:
    out = []
    for line in md.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == first:
            out.append(cells)
    return out


def test_tables_json_and_csv_carry_the_metrics_files_numbers(in_repo, tmp_path):
    out = tmp_path / "paper"
    result = CliRunner().invoke(app, ["paper-tables", "--no-diff", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert {p.name for p in out.iterdir()} == {f"{t}.{e}" for t in (*TABLES, "tab1", "tab10", "tab11")
                                               for e in ("md", "json")} | {f"fig4{f}.{e}" for f in "ab"
                                                                           for e in ("csv", "png")}
    assert "tab5: 3 of 6 rows have a run; missing: 0, 2, 10" in result.output
    assert "not in any table: a2-seed1 (tab5: differs in train.seed" in result.output
    assert "not in any table: seed1" in result.output and "not in any table: m6" not in result.output
    md = (out / "tab5.md").read_text()
    want = {"1": metrics_file(10.0), "0.5": metrics_file(20.0), "5": metrics_file(22.0)}
    blocks = md.split("\nRuns:")[0].split("**text-to-video, ")[1:]
    assert [b.split("**")[0] for b in blocks] == ["none", "QB-Norm", "DSL"]
    for block, strategy in zip(blocks, ("none", "qb", "dsl")):
        for label, metrics in want.items():
            (row,) = _cells(block, label)
            v = metrics["t2v"][strategy]
            assert row[2:] == [f"{v[m]:.1f} [{v[m + '_lo']:.1f}, {v[m + '_hi']:.1f}]"
                               for m in ("R1", "R5", "R10", "MnR")]
        (missing,) = _cells(block, "0")
        assert missing[1:] == ["missing", "–", "–", "–", "–"]
    assert "1 | default run (HEAD)" in md and "2 runs with these params; shown: default run (HEAD); also: again" in md
    assert "dvc exp run --queue -n tab5-a2 -S ++variants.macvr.loss.alpha_align=2.0" in md
    assert "tab5-a0.5 ran on commit abcd, not on HEAD's code" in md
    data = json.loads((out / "tab5.json").read_text())
    assert data["reference"] == "1" and data["missing"] == ["0", "2", "10"] and data["keys"] == [ALPHA]
    for label, metrics in want.items():
        assert data["rows"][label]["values"] == {s: {k: metrics["t2v"][s][k] for m in ("R1", "R5", "R10", "MnR")
                                                     for k in (m, f"{m}_lo", f"{m}_hi")} for s in STRATEGIES}
    assert data["rows"]["1"]["others"] == ["again"] and data["rows"]["0"] == {"run": None}
    # Fig. 4b as a dvc plots CSV: x = "n-m", R@1 per strategy with its bounds
    rows = list(csv.DictReader(io.StringIO((out / "fig4b.csv").read_text())))
    assert [r["x"] for r in rows] == ["6-4", "6-6", "6-8"] and [r["m"] for r in rows] == ["4", "6", "8"]
    for r, base in zip(rows, (32.0, 34.0, 10.0)):
        v = metrics_file(base)["t2v"]
        assert {k: float(x) for k, x in r.items() if k not in ("x", "n", "m")} == {
            f"{s}{b}": v[s][f"R1{b}"] for s in STRATEGIES for b in ("", "_lo", "_hi")}
    tab7 = json.loads((out / "tab7.json").read_text())
    assert tab7["built"] is True and tab7["reference"] == "Tags (params.yaml taggers)"
    assert tab7["rows"]["Visual captions (offline clip) + textual tags"]["values"]["dsl"]["R1"] == \
        metrics_file(40.0)["t2v"]["dsl"]["R1"]
    assert "Captions: VL2 + L3.1" in tab7["missing"]


REPO = REAL_PARAMS.parent


def test_fig4_plots_draw_each_strategy_with_its_interval_through_dvc(in_repo, tmp_path):
    """The PNG's points are the CSV's, on the swept axis; the dvc.yaml plot definitions with the
    interval_band template render through `dvc plots show` with a band per strategy and revision."""
    from pipeline.ablations.figure import points
    from pipeline.ablations.render import build

    out = tmp_path / "paper"
    result = CliRunner().invoke(app, ["paper-tables", "--no-diff", "-t", "fig4a", "-t", "fig4b", "--out", str(out)])
    assert result.exit_code == 0, result.output
    for f in ("fig4a", "fig4b"):
        assert (out / f"{f}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    m = _matches(("fig4a", "fig4b"))
    pts = points(build(m["fig4b"], None, lambda run: None))  # x = M: N is 6 throughout
    assert {s: [p[0] for p in v] for s, v in pts.items()} == {s: [4, 6, 8] for s in ("none", "qb", "dsl")}
    assert pts["dsl"][2][1:] == tuple(metrics_file(10.0)["t2v"]["dsl"][k] for k in ("R1", "R1_lo", "R1_hi"))
    assert [p[0] for p in points(build(m["fig4a"], None, lambda run: None))["none"]] == [4, 6]  # x = N = M

    plots = [p for p in yaml.safe_load((REPO / "dvc.yaml").read_text())["plots"]
             if isinstance(p, dict) and "fig4" in json.dumps(p)]
    assert len(plots) == 2
    repo = tmp_path / "plots"
    (repo / "metrics" / "paper").mkdir(parents=True)
    for f in ("fig4a", "fig4b"):
        shutil.copy(out / f"{f}.csv", repo / "metrics" / "paper" / f"{f}.csv")
    (repo / ".dvc" / "plots").mkdir(parents=True)
    shutil.copy(REPO / ".dvc" / "plots" / "interval_band.json", repo / ".dvc" / "plots")
    (repo / ".dvc" / "config").write_text("[core]\n    no_scm = True\n")
    (repo / "dvc.yaml").write_text(yaml.safe_dump({"plots": plots}))
    shown = subprocess.run(["dvc", "plots", "show", "--json"], cwd=repo, check=True, capture_output=True,
                           text=True, env={**os.environ, "DVC_NO_ANALYTICS": "1"}).stdout
    specs = {name: items[0]["content"] for name, items in json.loads(shown)["data"].items() if items[0]["content"]}
    assert len(specs) == 2 and "<DVC_METRIC" not in json.dumps(specs)
    for name, spec in specs.items():
        x = "n" if "4a" in name else "m"
        assert spec["encoding"]["x"]["field"] == "x_value" and f"datum['{x}']" in json.dumps(spec["transform"])
        records = spec["data"]["values"]
        assert {r["field"] for r in records} == {"none", "qb", "dsl"}
        for r in records:  # what the template computes: value, lo, hi of the record's own strategy
            lo, v, hi = (float(r[r["field"] + b]) for b in ("_lo", "", "_hi"))
            assert lo < v < hi and r["x"].split("-")[0 if x == "n" else 1] == r[x]


def test_fig4_png_has_a_line_and_band_per_strategy_and_the_tag_free_baseline(in_repo, monkeypatch):
    import pipeline.ablations.command as command
    from pipeline.ablations.figure import figure
    from pipeline.ablations.render import build

    m = _matches(("fig4b",))["fig4b"]
    assert command._baseline(m) is None  # HEAD has no metrics/dicosa.json: no level drawn
    monkeypatch.setattr(command, "_variant_metrics", lambda rev, variant: metrics_file(3.0) if variant == "dicosa"
                        else None)
    baseline = command._baseline(m)
    assert baseline == {s: metrics_file(3.0)["t2v"][s]["R1"] for s in STRATEGIES}
    (ax,) = figure(build(m, None, lambda run: None), baseline).axes
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert {"none", "QB-Norm", "DSL", "DiCoSA DSL", "reference 6-8"} <= set(lines), set(lines)
    assert list(lines["DSL"].get_xdata()) == [4, 6, 8]
    assert list(lines["DSL"].get_ydata()) == [metrics_file(b)["t2v"]["dsl"]["R1"] for b in (32.0, 34.0, 10.0)]
    assert set(lines["DiCoSA DSL"].get_ydata()) == {baseline["dsl"]}
    assert lines["DiCoSA DSL"].get_color() == lines["DSL"].get_color()
    assert len(ax.collections) == 3  # one interval band per strategy


@pytest.fixture(scope="module")
def evals(tmp_path_factory) -> dict[str, Path]:
    """Per-query ranks: the reference, a clearly better run and one with the reference's ranks."""
    root = tmp_path_factory.mktemp("evals")
    base, better = rank_sets(1)
    return {"ref": eval_dir(root / "ref", "macvr", **base), "better": eval_dir(root / "better", "macvr", **better),
            "same": eval_dir(root / "same", "macvr", **base)}


def test_paired_differences_to_the_reference_row_with_holm_over_the_table(in_repo, tmp_path, monkeypatch, evals):
    import pipeline.ablations.command as command

    shas = {name: _git("rev-parse", f"refs/exps/ab/cd/{name}") for name in ("tab5-a0.5", "a5-threads")}
    dirs = {_git("rev-parse", "HEAD"): evals["ref"], shas["tab5-a0.5"]: evals["better"],
            shas["a5-threads"]: evals["same"]}

    def fake_load(spec: str, workdir: Path) -> EvalResult:
        rev, variant = spec.split(":")
        assert variant == "macvr"
        return EvalResult.read(dirs[rev])

    monkeypatch.setattr(command, "load_result", fake_load)
    out = tmp_path / "paper"
    result = CliRunner().invoke(app, ["paper-tables", "-t", "tab5", "--resamples", "400", "--out", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads((out / "tab5.json").read_text())
    assert data["resamples"] == 400 and "diff" not in data["rows"]["1"]
    settings = BootstrapSettings(resamples=400, seed=0, level=0.95)
    ref = EvalResult.read(evals["ref"])
    for label, key in (("0.5", "better"), ("5", "same")):
        want = compare_results(EvalResult.read(evals[key]), ref, settings)["t2v"]
        got = data["rows"][label]["diff"]
        assert set(got) == {"none", "dsl"}  # the strategies both evaluations ranked
        for s, by in got.items():
            for m, d in by.items():
                assert d["diff"] == pytest.approx(want[s][m]["diff"], abs=1e-3)
                assert (d["lo"], d["hi"]) == pytest.approx((want[s][m]["lo"], want[s][m]["hi"]), abs=1e-3)
                assert d["p"] == pytest.approx(want[s][m]["p"], abs=1e-6)
    assert data["rows"]["5"]["diff"]["none"]["R1"] == {"diff": 0.0, "lo": 0.0, "hi": 0.0, "p": 1.0, "p_holm": 1.0}
    # Holm over the table: every row, strategy and metric shown (2 rows x 2 strategies x 4 metrics)
    cells = [(label, s, m) for label in ("0.5", "5") for s in ("none", "dsl") for m in ("R1", "R5", "R10", "MnR")]
    ps = [data["rows"][l]["diff"][s][m]["p"] for l, s, m in cells]
    assert [data["rows"][l]["diff"][s][m]["p_holm"] for l, s, m in cells] == pytest.approx(holm(ps), abs=1e-6)
    better = data["rows"]["0.5"]["diff"]["none"]["R1"]
    assert better["diff"] > 0 and better["p_holm"] == pytest.approx(min(1.0, 16 * better["p"]), abs=1e-6)
    md = (out / "tab5.md").read_text()
    assert "over the 16 Δ cells of this table" in md
    (row,) = _cells(md.split("**text-to-video, ")[1], "0.5")
    assert f"Δ {better['diff']:+.1f} [{better['lo']:+.1f}, {better['hi']:+.1f}]" in row[2]


def test_no_delta_without_shared_test_queries_or_cached_ranks(evals):
    params = yaml.safe_load(REAL_PARAMS.read_text())
    other_data = json.loads(json.dumps(params))
    other_data["prepare"]["datasets"]["synthetic"]["seed"] = 1
    ref = Run("HEAD", "0" * 40, params, metrics_file(1.0))
    rows = [RowMatch("ref", {}, None, [ref]),
            RowMatch("seed", {}, None, [Run("s", "1" * 40, other_data, metrics_file(2.0))]),
            RowMatch("gone", {}, None, [Run("g", "2" * 40, params, metrics_file(3.0))])]
    match = TableMatch(TABLES["tab5"], rows, rows[0], [], {})

    def load(run: Run) -> EvalResult:
        if run.name == "g":
            raise ValueError("g:macvr: cannot read eval/macvr; is it in the DVC cache?")
        return EvalResult.read(evals["ref"])

    res = build(match, BootstrapSettings(resamples=200, seed=0, level=0.95), load)
    assert res.diffs == {} and set(res.no_diff) == {"seed", "gone"}
    assert "data seed" in res.no_diff["seed"] and "DVC cache" in res.no_diff["gone"]
    assert res.values["seed"]["dsl"]["R1"] == metrics_file(2.0)["t2v"]["dsl"]["R1"]


def test_flatten_keeps_empty_mappings_until_a_key_fills_them():
    from pipeline.ablations.match import differing

    head = flatten({"variants": {"macvr": {}}, "train": {"seed": 0}})
    filled = flatten({"variants": {"macvr": {"loss": {"alpha_align": 2.0}}}, "train": {"seed": 0}})
    assert differing(filled, head) == {ALPHA}
    assert differing(flatten({"variants": {"macvr": {}, "new": {}}, "train": {"seed": 0}}), head) == {"variants.new"}


def test_the_command_is_registered_and_documents_itself():
    assert "paper-tables" in COMMANDS
    listing = CliRunner().invoke(app, ["--help"])
    assert listing.exit_code == 0 and "paper-tables" in listing.stdout
    result = CliRunner().invoke(app, ["paper-tables", "--help"])
    assert result.exit_code == 0
    for text in ("--queue-commands", "--table", "--out", "dvc plots show"):
        assert text in result.stdout
    bad = CliRunner().invoke(app, ["paper-tables", "-t", "tab9"])
    assert bad.exit_code == 2 and "unknown table tab9" in bad.output


def _tag_metrics(scale: float) -> dict:
    return {m: {s: {"unique_tags": int(100 * scale) + i, "avg_tags": 20.0 * scale + i / 10, "items": 10}
                for i, s in enumerate(("train", "val", "test"))} for m in ("visual", "textual")}


def test_tag_statistics_tables_per_split_and_per_tag_model(in_repo, tmp_path, monkeypatch):
    import pipeline.ablations.tag_stats as tag_stats

    m = _matches(("tab6",))["tab6"]
    by_rev = {r.run.rev: _tag_metrics(2.0 if r.run.name == "colour" else 1.0) for r in m.rows if r.run}
    monkeypatch.setattr(tag_stats, "tag_metrics", lambda rev: by_rev.get(rev, _tag_metrics(1.0)))
    out = tmp_path / "stats"
    result = CliRunner().invoke(app, ["paper-tables", "-t", "tab1", "-t", "tab10", "-t", "tab11", "--out", str(out)])
    assert result.exit_code == 0, result.output
    tab1 = json.loads((out / "tab1.json").read_text())["rows"]["synthetic"]
    assert tab1["visual"] == {"train": {"tags": 100, "avg": 20.0}, "val": {"tags": 101, "avg": 20.1},
                              "test": {"tags": 102, "avg": 20.2}}
    assert "| synthetic | 100 | 101 | 102 | 20.00 | 20.10 | 20.20 |" in (out / "tab1.md").read_text()
    tab11 = json.loads((out / "tab11.json").read_text())
    assert tab11["rows"]["tag_video.offline.colour_penalty=0.3"]["visual"]["train"] == {"tags": 200, "avg": 40.0}
    assert tab11["rows"]["params.yaml taggers"]["run"] == "HEAD"
    assert "VL2 + L3.1" in tab11["missing"] and "No run yet" in (out / "tab11.md").read_text()
    assert json.loads((out / "tab10.json").read_text())["rows"]["params.yaml taggers"]["textual"]["test"]["tags"] == 102
