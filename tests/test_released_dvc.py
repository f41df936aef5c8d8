"""``dvc repro`` with the paper-reproduction profile, as a user runs it: the authors' tags and two
released checkpoints (MAC-VR's and DiCoSA's model classes) in ``released/``, one command, and
``metrics/tables.md`` with the paper's Tab. 2 beside the measurement.

The release is the tiny MSR-VTT one of the golden test with small official-format checkpoints
(a 32-pixel ViT CLIP), so the whole DAG runs in a couple of minutes on a CPU.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from tests.project_copy import copy_project
from tests.released_fixtures import SMALL, official_state_dict, write_msrvtt_annotations

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "golden" / "released" / "msrvtt"
DVC = str(Path(sys.executable).parent / "dvc")

pytestmark = pytest.mark.slow


def sh(args: list[str], cwd: Path) -> str:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "PYTHONPATH": str(cwd)}
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, f"{' '.join(args)}\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    repo = copy_project(tmp_path_factory.mktemp("paper_repro"))
    sh(["git", "init", "-q"], repo)
    released = repo / "released"
    anns = released / "data/MSR-VTT/anns"
    write_msrvtt_annotations(FIXTURE / "anns", anns)
    shutil.copytree(FIXTURE / "anns", anns / "llama3")
    shutil.copytree(FIXTURE / "videos", released / "data/MSR-VTT/videos")
    for kind, seed in (("MAC-VR", 11), ("DiCoSA", 12)):
        target = released / f"weights/MSR-VTT/{kind}/pytorch_model.bin"
        target.parent.mkdir(parents=True)
        state = official_state_dict("macvr" if kind == "MAC-VR" else "dicosa", SMALL, seed=seed,
                                    clip_dtype=torch.float16, module_prefix=kind == "DiCoSA")
        torch.save(state, target)
    params = yaml.safe_load((ROOT / "params.released.msrvtt.yaml").read_text())
    params["backbone"]["model"] = "small-test-clip"      # a 32-pixel ViT, not ViT-B/32
    params["frames"].update(image_size=32, workers=1)
    for section in ("backbone", "features", "train", "evaluate"):
        params[section]["torch_threads"] = 2
    params["evaluate"]["device"] = params["features"]["device"] = params["report"]["device"] = "cpu"
    params["evaluate"]["bootstrap"]["resamples"] = 200
    params["compare"]["bootstrap"]["resamples"] = 200
    params["report"]["tsne"].update(max_pairs=6, perplexity=2.0, max_iter=250)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh(["git", "add", "-A"], repo)
    sh(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "paper profile"], repo)
    sh([DVC, "repro"], repo)
    return repo


def test_one_command_gives_the_paper_beside_the_measurement(repo):
    tables = (repo / "metrics/tables.md").read_text()
    assert "## The paper's Tab. 2 beside the measurement" in tables
    assert "| No IS | macvr (MAC-VR) |" in tables or "macvr (MAC-VR)" in tables
    assert "MAC-VR − DiCoSA" in tables
    comparison = json.loads((repo / "metrics/comparison.json").read_text())
    cell = comparison["paper"]["rows"]["macvr"]["dsl"]["R1"]
    assert cell["published"] == 53.2 and cell["outside"] == (not cell["lo"] <= 53.2 <= cell["hi"])
    assert comparison["paper"]["gain"]["none"]["R1"]["published"] == pytest.approx(1.6)
    tags = json.loads((repo / "metrics/tags.json").read_text())
    assert tags["released"]["rows"] == 22 and tags["released"]["skipped"] == {}
    for variant in ("macvr", "dicosa"):
        live = json.loads((repo / f"dvclive/train/{variant}/metrics.json").read_text())
        assert live["released"] == 1
        metrics = json.loads((repo / f"metrics/{variant}.json").read_text())
        assert set(metrics["t2v"]) == {"none", "dsl", "qb"}


def test_nothing_ran_for_tags_and_an_edited_tag_file_reruns_what_reads_it(repo):
    import pandas as pd

    for t in ("t07", "t08", "t09", "t10"):
        assert pd.read_parquet(repo / f"data/tags/raw/text_{t}.parquet").empty
    assert "up to date" in sh([DVC, "status"], repo).lower() or sh([DVC, "status"], repo).strip() == ""
    testing = repo / "released/data/MSR-VTT/anns/llama3/testing.csv"
    testing.write_text(testing.read_text().replace("'music'", "'jazz'", 1))
    status = sh([DVC, "status"], repo)
    assert "clean_tags" in status and "prepare" in status  # prepare reads the anns folder too
    assert "train@macvr" in status  # released.dir is its dependency (the import itself is byte-identical)
