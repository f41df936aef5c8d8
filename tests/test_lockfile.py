"""``macvr repair-lock``: a dvc.lock torn mid-write is restored from git (or removed); a good one,
or one a cut left parseable, is left alone."""

from __future__ import annotations

import os
import subprocess

import pytest
from typer.testing import CliRunner

from stages.cli import app
from stages.lockfile import lock_problem, repair

LOCK = """schema: '2.0'
stages:
  prepare:
    cmd: python -m stages.prepare --params params.yaml --out data/prepared
    outs:
    - path: data/prepared
      hash: md5
      md5: 0123456789abcdef0123456789abcdef.dir
"""


def git(cwd, *args):
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, env=env)


@pytest.mark.parametrize("torn, problem", [
    ("", "empty"),
    (LOCK + "  features:\n    cmd: 'python -m stages.feat", "not YAML"),  # cut inside a quoted string
    ("schema: '2.0'\nstages:\n  prepare:", "stage entries cut short"),
    (LOCK[:14], "no 'schema' and 'stages'"),
    ("\x00\x00\x00", "not YAML"),
])
def test_a_torn_lock_is_restored_from_git(tmp_path, torn, problem):
    git(tmp_path, "init", "-q")
    lock = tmp_path / "dvc.lock"
    lock.write_text(LOCK)
    git(tmp_path, "add", "dvc.lock")
    git(tmp_path, "commit", "-qm", "lock")
    assert lock_problem(lock) is None and repair(lock) is None
    lock.write_text(torn)
    assert problem in lock_problem(lock)
    result = CliRunner().invoke(app, ["repair-lock", "--lock", str(lock)])
    assert result.exit_code == 0, result.output
    assert "was torn" in result.output and "restored the committed one from git" in result.output
    assert lock.read_text() == LOCK


def test_without_git_a_torn_lock_is_removed_and_a_cut_but_parseable_one_kept(tmp_path):
    lock = tmp_path / "dvc.lock"
    assert repair(lock) is None  # no lock: nothing to do
    cut = LOCK[:LOCK.index("      hash")]  # a whole-line cut still parses: DVC re-runs what differs
    lock.write_text(cut)
    assert repair(lock) is None and lock.read_text() == cut
    lock.write_text("schema: '2.0'\nstages: [")
    message = repair(lock)
    assert "git has no good copy; removed it" in message and not lock.exists()
