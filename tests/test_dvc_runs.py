"""Whole ``dvc repro`` runs of a miniature synthetic project, as a user runs them.

- Two runs from scratch give byte-identical files for every output in ``dvc.lock``, the second
  one having been killed at random points (SIGKILL of the whole process group, SIGTERM, SIGINT)
  and re-run, as ``make run`` does (``macvr repair-lock`` then ``dvc repro``): a kill leaves
  no debris (no temp file anywhere in the workspace) and changes no hash.
- A tag-only change (``features.tag_control``) re-runs what reads tags and not DiCoSA's stages.
- A miniature of each paper table from a real ``dvc exp run`` of a row ``macvr paper-tables``
  asks for: Tab. 5 (α), Fig. 4 (the 6-6 point, with its DVC plots), Tab. 6 with Tab. 10/11 (the
  offline "weaker" taggers) and Tab. 7 (visual auxiliary captions); each checks which stages the
  changed value re-runs and which it leaves alone.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from tests.project_copy import copy_project

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DVC, MACVR = str(BIN / "dvc"), str(BIN / "macvr")
OUTPUT_DIRS = ("data", "models", "eval", "metrics", "dvclive", "plots", "reports")

pytestmark = pytest.mark.slow


def env(repo: Path) -> dict[str, str]:
    return {**os.environ, "DVC_NO_ANALYTICS": "1", "PYTHONPATH": str(repo), "GIT_AUTHOR_NAME": "t",
            "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}


def sh(args: list[str], repo: Path, timeout: float = 1200) -> str:
    done = subprocess.run(args, cwd=repo, env=env(repo), capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(args)}\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    return done.stdout + done.stderr


def miniature_params() -> dict:
    """params.yaml at a size that runs every stage in a couple of minutes on one core."""
    p = yaml.safe_load((ROOT / "params.yaml").read_text())
    p["prepare"]["datasets"]["synthetic"].update(num_videos=36, captions_per_video=3, width=32, height=32,
                                                 min_seconds=1.0, max_seconds=1.5)
    p["frames"].update(num_frames=4, image_size=32, vlm_num_frames=2, vlm_max_side=32, workers=1)
    p["backbone"]["torch_threads"] = 1
    p["backbone"]["tiny"].update(embed_dim=16, vision_width=64, vision_layers=1, text_width=32, text_heads=1,
                                 text_layers=1, epochs=2, batch_size=8, frames_per_sample=2, captions_per_sample=1)
    p["tag_video"]["workers"] = 1
    p["features"].update(train_tag_draws=2, torch_threads=1)
    p["train"].update(epochs=3, batch_size=8, checkpoint_every=1, monitor_videos=0)
    p["train"]["model"].update(num_concepts=4, temporal_layers=1, temporal_heads=1)
    p["variants"] = {"dicosa": {}, "macvr": {}}
    p["evaluate"]["bootstrap"]["resamples"] = 100
    p["compare"]["bootstrap"]["resamples"] = 100
    p["compare"].update(table2=["dicosa", "macvr"], table4=["macvr", "dicosa"])
    p["report"].update(top_tags=20, tsne={"max_pairs": 6, "perplexity": 2.0, "max_iter": 250, "seed": 0})
    return p


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """The project's tracked files with the miniature params, committed, nothing run."""
    repo = copy_project(tmp_path_factory.mktemp("dvc_runs") / "template")
    (repo / "params.yaml").write_text(yaml.safe_dump(miniature_params(), sort_keys=False))
    sh(["git", "init", "-q"], repo)
    sh(["git", "add", "-A"], repo)
    sh(["git", "commit", "-qm", "miniature"], repo)
    return repo


def clone(template: Path, name: str) -> Path:
    repo = template.parent / name
    shutil.copytree(template, repo, symlinks=True)
    return repo


def out_hashes(repo: Path) -> dict[str, str]:
    """``{stage: {path: md5}}`` of every output in dvc.lock."""
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    return {f"{stage}:{o['path']}": o.get("md5") for stage, entry in lock["stages"].items()
            for o in entry.get("outs", [])}


def debris(repo: Path) -> list[str]:
    """Temp files and folders of atomic writes left anywhere in the run's folders."""
    found = []
    for top in OUTPUT_DIRS:
        for p in (repo / top).rglob("*") if (repo / top).exists() else []:
            if p.name.startswith(".") and (p.name.endswith(".tmp") or p.name.endswith(".old")):
                found.append(str(p.relative_to(repo)))
    return found


@pytest.fixture(scope="module")
def clean(template) -> tuple[Path, float]:
    repo = clone(template, "clean")
    start = time.monotonic()
    sh([DVC, "repro"], repo)
    return repo, time.monotonic() - start


def test_a_run_killed_anywhere_and_rerun_gives_the_same_files_and_no_debris(template, clean):
    reference, seconds = clean
    assert debris(reference) == []
    repo = clone(template, "killed")
    rng = np.random.default_rng(7)
    kills = [(signal.SIGKILL, 0.15), (signal.SIGTERM, 0.45), (signal.SIGKILL, 0.6), (signal.SIGINT, 0.8)]
    log = []
    for sig, at in kills:
        delay = float(seconds * (at + rng.uniform(-0.05, 0.05)))
        proc = subprocess.Popen([DVC, "repro"], cwd=repo, env=env(repo), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            proc.wait(timeout=delay)
            log.append(f"finished before {sig.name} at {delay:.0f}s")
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=120)
            log.append(f"{sig.name} at {delay:.0f}s")
        # What make run does: a torn dvc.lock is put back first, then dvc repro goes on.
        sh([MACVR, "repair-lock"], repo)
    sh([DVC, "repro"], repo)
    assert debris(repo) == [], log
    assert out_hashes(repo) == out_hashes(reference), log
    for name in ("dicosa", "macvr", "comparison"):
        assert (repo / f"metrics/{name}.json").read_text() == (reference / f"metrics/{name}.json").read_text()
    # The resumed training kept its curve: one row per logged step, as in the clean run.
    curve = "dvclive/train/macvr/plots/metrics/train/total.tsv"
    assert (repo / curve).read_text() == (reference / curve).read_text()
    assert "up to date" in sh([DVC, "status"], repo).lower()


def test_a_tag_only_change_reruns_only_what_reads_tags(template, clean):
    reference, _ = clean
    repo = clone(template, "tag_control")
    shutil.copy2(reference / "dvc.lock", repo / "dvc.lock")
    sh([DVC, "checkout", "-q"], repo) if (repo / ".dvc/cache").exists() else None
    for top in OUTPUT_DIRS:  # the clean run's outputs, as a checkout would give them
        if (reference / top).exists():
            shutil.rmtree(repo / top, ignore_errors=True)
            shutil.copytree(reference / top, repo / top, symlinks=True)
    shutil.rmtree(repo / ".dvc/cache", ignore_errors=True)
    shutil.copytree(reference / ".dvc/cache", repo / ".dvc/cache", symlinks=True)
    assert "up to date" in sh([DVC, "status"], repo).lower()
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["features"]["tag_control"] = "shuffled"
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = sh([DVC, "repro"], repo)
    ran = {line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage")}
    assert {"features", "inputs@macvr", "train@macvr", "evaluate@macvr", "compare"} <= ran, out
    assert not ran & {"train@dicosa", "evaluate@dicosa", "backbone", "clean_tags"}, out
    before, after = out_hashes(reference), out_hashes(repo)
    for key in before:
        if "dicosa" in key:
            assert before[key] == after[key], key  # DiCoSA's outputs were not touched
    assert json.loads((repo / "metrics/dicosa.json").read_text()) == json.loads(
        (reference / "metrics/dicosa.json").read_text())


def committed_default_run(template: Path, clean: tuple[Path, float], name: str) -> Path:
    """A clone holding the clean run's outputs, cache and dvc.lock, committed (the default run)."""
    reference, _ = clean
    repo = clone(template, name)
    for top in (*OUTPUT_DIRS, ".dvc/cache"):
        if (reference / top).exists():
            shutil.rmtree(repo / top, ignore_errors=True)
            shutil.copytree(reference / top, repo / top, symlinks=True)
    shutil.copy2(reference / "dvc.lock", repo / "dvc.lock")
    sh(["git", "add", "-A"], repo)
    sh(["git", "commit", "-qm", "the default run"], repo)
    return repo


def _exp_run_now(command: str, repo: Path) -> set[str]:
    """Run a `dvc exp run --queue ...` line at once; the stages it ran."""
    out = sh([DVC, "exp", "run", *[a for a in command.split()[3:] if a != "--queue"]], repo)
    return {line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage")}


def test_a_paper_table_from_a_real_dvc_experiment(template, clean):
    """The miniature of Tab. 5: the default run committed, one `dvc exp run` of the α row that
    `macvr paper-tables` asks for, then the table: both rows, the paired Δ to the reference."""
    repo = committed_default_run(template, clean, "paper_table")
    queue = sh([MACVR, "paper-tables", "-t", "tab5", "--queue-commands"], repo)
    command = next(line for line in queue.splitlines() if "-n tab5-a0 " in line)
    assert command.startswith("dvc exp run --queue ") and "++variants.macvr.loss.alpha_align=0" in command
    ran = _exp_run_now(command, repo)
    assert "train@macvr" in ran and "train@dicosa" not in ran, ran  # α feeds MAC-VR's training only
    sh([MACVR, "paper-tables", "-t", "tab5", "--out", "paper", "--resamples", "200"], repo)
    table = json.loads((repo / "paper/tab5.json").read_text())
    by_run = {row["run"]: row for row in table["rows"].values() if row["run"]}
    assert set(by_run) >= {"HEAD", "tab5-a0"}, table
    row = by_run["tab5-a0"]
    metrics = json.loads(sh(["git", "show", f"{row['rev']}:metrics/macvr.json"], repo))
    assert row["values"]["none"]["R1"] == round(metrics["t2v"]["none"]["R1"], 3)
    diff = row["diff"]["none"]["R1"]
    assert diff["lo"] <= diff["diff"] <= diff["hi"] and 0 < diff["p"] <= 1 and diff["p_holm"] >= diff["p"]
    assert "tab5-a0.5" in " ".join(table["queue"])  # the rows still missing, as commands


def test_tab7_auxiliary_captions_from_a_real_dvc_experiment(template, clean):
    """The miniature of Tab. 7: the row with visual auxiliary captions, as `macvr paper-tables`
    queues it, re-runs the visual caption stage, the cleaning, the features and MAC-VR (not the
    paraphraser, the taggers, the backbone or DiCoSA); the table then has it beside the tags."""
    repo = committed_default_run(template, clean, "tab7")
    queue = sh([MACVR, "paper-tables", "-t", "tab7", "--queue-commands"], repo)
    command = next(line for line in queue.splitlines() if "-n tab7-video-tags " in line)
    assert command == "dvc exp run --queue -n tab7-video-tags -S features.auxiliary.visual=captions", queue
    ran = _exp_run_now(command, repo)
    assert {"caption_video", "clean_captions", "features", "train@macvr", "evaluate@macvr"} <= ran, ran
    assert not ran & {"caption_text", "backbone", "clean_tags", "train@dicosa", "evaluate@dicosa"}, ran
    refs = sh(["git", "for-each-ref", "--format=%(objectname) %(refname)", "refs/exps"], repo).split("\n")
    (rev,) = [line.split()[0] for line in refs if line.endswith("/tab7-video-tags")]
    aux = json.loads(sh(["git", "show", f"{rev}:metrics/aux_captions.json"], repo))
    assert aux["auxiliary"] == {"visual": "captions", "textual": "tags"} and aux["visual"]["without_captions"] == 0
    sh([MACVR, "paper-tables", "-t", "tab7", "--out", "paper", "--resamples", "200"], repo)
    table = json.loads((repo / "paper/tab7.json").read_text())
    by_run = {row["run"]: (label, row) for label, row in table["rows"].items() if row["run"]}
    assert by_run["HEAD"][0] == "Tags (params.yaml taggers)"
    label, row = by_run["tab7-video-tags"]
    assert label == "Visual captions (offline clip) + textual tags"
    diff = row["diff"]["none"]["R1"]
    assert diff["lo"] <= diff["diff"] <= diff["hi"] and 0 < diff["p"] <= 1


def test_fig4_point_from_a_real_dvc_experiment_with_its_plots(template, clean):
    """The miniature of Fig. 4: the 6-6 point (on both curves) re-runs the features and MAC-VR only;
    both figures then have it, Fig. 4b with the paired Δ to the default run (6-8), and the
    dvc.yaml plots draw them through `dvc plots show` with the interval-band template."""
    repo = committed_default_run(template, clean, "fig4")
    queue = sh([MACVR, "paper-tables", "-t", "fig4a", "-t", "fig4b", "--queue-commands"], repo).splitlines()
    command = next(line for line in queue if "-n fig4a-n6-m6 " in line)
    assert command == "dvc exp run --queue -n fig4a-n6-m6 -S features.infer_tags=6", queue
    assert not any("-n fig4b-n6-m6 " in line for line in queue)  # one run for the point both curves share
    ran = _exp_run_now(command, repo)
    assert {"features", "train@macvr", "evaluate@macvr"} <= ran, ran
    assert not ran & {"clean_tags", "caption_video", "caption_text", "backbone", "train@dicosa",
                      "evaluate@dicosa"}, ran
    assert not any(stage.startswith(("tag_text@", "tag_video@")) for stage in ran), ran
    sh([MACVR, "paper-tables", "-t", "fig4a", "-t", "fig4b", "--resamples", "200"], repo)  # -> metrics/paper
    fig4a = json.loads((repo / "metrics/paper/fig4a.json").read_text())
    fig4b = json.loads((repo / "metrics/paper/fig4b.json").read_text())
    assert fig4a["rows"]["6-6"]["run"] == "fig4a-n6-m6" and fig4b["rows"]["6-6"]["run"] == "fig4a-n6-m6"
    assert fig4b["reference"] == "6-8" and fig4b["rows"]["6-8"]["run"] == "HEAD"
    diff = fig4b["rows"]["6-6"]["diff"]["dsl"]["R1"]
    assert diff["lo"] <= diff["diff"] <= diff["hi"] and 0 < diff["p"] <= 1
    shown = json.loads(sh([DVC, "plots", "show", "--json"], repo))["data"]
    for name, x, points in (("Fig. 4a", "n", {"6"}), ("Fig. 4b", "m", {"6", "8"})):
        (spec,) = [items[0]["content"] for key, items in shown.items() if key.startswith(name)]
        records = spec["data"]["values"]
        assert {r[x] for r in records} == points and {r["field"] for r in records} == {"none", "qb", "dsl"}
        for r in records:
            assert float(r[r["field"] + "_lo"]) <= float(r[r["field"]]) <= float(r[r["field"] + "_hi"])
    assert any(key.endswith("metrics/paper/fig4b.png") for key in shown)


def test_tab6_offline_tag_model_row_from_a_real_dvc_experiment(template, clean):
    """The miniature of Tab. 6 (and Tab. 10/11): the offline "weaker" taggers re-run the DAG from
    the taggers on (never prepare or frames); the tables have both tag models, with tag counts."""
    repo = committed_default_run(template, clean, "tab6")
    queue = sh([MACVR, "paper-tables", "-t", "tab6", "--queue-commands"], repo).splitlines()
    command = next(line for line in queue if "-n tab6-offline-weaker " in line)
    assert command.startswith("dvc exp run --queue ") and "sampling.filler_prob=1.0" in command, queue
    ran = _exp_run_now(command, repo)
    temperatures = {f"{s}@{t}" for s in ("tag_text", "tag_video") for t in ("t07", "t08", "t09", "t10")}
    assert temperatures | {"clean_tags", "backbone", "features", "train@macvr", "train@dicosa"} <= ran, ran
    assert not ran & {"prepare", "frames", "caption_video", "caption_text"}, ran
    sh([MACVR, "paper-tables", "-t", "tab6", "-t", "tab10", "-t", "tab11", "--out", "paper", "--resamples", "200"],
       repo)
    tab6 = json.loads((repo / "paper/tab6.json").read_text())
    by_run = {row["run"]: (label, row) for label, row in tab6["rows"].items() if row["run"]}
    assert by_run["HEAD"][0] == "params.yaml taggers"
    label, row = by_run["tab6-offline-weaker"]
    assert label.startswith("offline, weaker")
    diff = row["diff"]["none"]["R1"]
    assert diff["lo"] <= diff["diff"] <= diff["hi"] and 0 < diff["p"] <= 1
    for stats in ("tab10", "tab11"):
        rows = json.loads((repo / f"paper/{stats}.json").read_text())["rows"]
        assert len(rows) == 2, rows
