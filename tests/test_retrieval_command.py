"""``macvr metrics``: JSON-only stdout, every input format, and clear failures."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from pipeline.retrieval.command import metrics
from pipeline.retrieval import DSLParams, QBDirection, QBParams, RetrievalConfig, reference_config
from pipeline.retrieval.evaluation import evaluate_all
from pipeline.retrieval.strategies import NoParams

MACVR_REFERENCE = reference_config()


@pytest.fixture(scope="module")
def invoke():
    app = typer.Typer(add_completion=False)
    app.command("metrics")(metrics)

    @app.command("other")  # a second command keeps "metrics" a real subcommand, as in `macvr`
    def other() -> None:
        pass

    runner = CliRunner()
    return lambda *args: runner.invoke(app, ["metrics", *map(str, args)])


def flat(text: str) -> str:
    """Error text without rich's box drawing and line wrapping."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", text).split())


@pytest.fixture
def case(tmp_path):
    rng = np.random.default_rng(0)
    gt = np.repeat(np.arange(20), 3)  # 60 captions, 3 per video
    sim = rng.normal(size=(60, 20)).astype(np.float32)
    sim[np.arange(60), gt] += 1.0
    np.save(tmp_path / "sim.npy", sim)
    np.save(tmp_path / "qb.npy", rng.normal(size=(30, 20)).astype(np.float32))
    np.save(tmp_path / "qb_v2t.npy", rng.normal(size=(25, 60)).astype(np.float32))
    return tmp_path, sim, gt


def test_diagonal_default_prints_only_json(invoke, tmp_path):
    rng = np.random.default_rng(1)
    sim = rng.normal(size=(12, 12)) + 2 * np.eye(12)
    np.save(tmp_path / "sq.npy", sim)
    result = invoke(tmp_path / "sq.npy")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == evaluate_all(sim, config=MACVR_REFERENCE)
    assert "12 queries x 12 videos" in result.stderr and "diagonal" in result.stderr


@pytest.mark.parametrize("fmt", ["npy", "json", "txt"])
def test_ids_formats_and_querybanks(invoke, case, fmt):
    tmp, sim, gt = case
    ids = tmp / f"ids.{fmt}"
    if fmt == "npy":
        np.save(ids, gt)
    elif fmt == "json":
        ids.write_text(json.dumps(gt.tolist()))
    else:
        ids.write_text("\n".join(map(str, gt)) + "\n\n")
    result = invoke(tmp / "sim.npy", "--ids", ids, "--querybank", tmp / "qb.npy",
                    "--querybank-v2t", tmp / "qb_v2t.npy")
    assert result.exit_code == 0, result.stderr
    expected = evaluate_all(sim, gt, np.load(tmp / "qb.npy"), np.load(tmp / "qb_v2t.npy"),
                            config=MACVR_REFERENCE)
    assert json.loads(result.stdout) == expected
    assert set(expected["t2v"]) == set(expected["v2t"]) == {"none", "dsl", "qb"}


def test_options_reach_the_library(invoke, case):
    tmp, sim, gt = case
    np.save(tmp / "ids.npy", gt)
    result = invoke(tmp / "sim.npy", "--ids", tmp / "ids.npy", "--querybank", tmp / "qb.npy",
                    "--set", "qb.t2v.beta=20", "--set", "qb.t2v.k=2", "--set", "qb.t2v.theta=1",
                    "--set", "dsl.t2v_temp=0.5", "--set", "dsl.v2t_temp=0.5", "--ties", "pessimistic")
    assert result.exit_code == 0, result.stderr
    config = RetrievalConfig(ties="pessimistic", strategies={
        "none": NoParams(), "dsl": DSLParams(t2v_temp=0.5, v2t_temp=0.5),
        "qb": QBParams(t2v=QBDirection(beta=20.0, k=2, theta=1), v2t=QBDirection(beta=70.0, k=1, theta=5))})
    out = json.loads(result.stdout)
    assert out == evaluate_all(sim, gt, np.load(tmp / "qb.npy"), config=config)
    assert "qb" not in out["v2t"]
    assert out != json.loads(invoke(tmp / "sim.npy", "--ids", tmp / "ids.npy",
                                    "--querybank", tmp / "qb.npy").stdout)


def test_tie_warnings_go_to_stderr(invoke, tmp_path):
    np.save(tmp_path / "zeros.npy", np.zeros((3, 3), dtype=np.int64))
    result = invoke(tmp_path / "zeros.npy")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["t2v"]["none"]["R1"] == 100.0  # optimistic default
    assert "warning: t2v/none: 3 of 3 queries" in result.stderr


def test_help_reads_well(invoke):
    result = invoke("--help")
    text = flat(result.stdout)
    assert result.exit_code == 0
    for phrase in ["rows = text queries", "percent", "one integer per line", "--querybank-v2t",
                   '"beta": 70.0', '"theta": 3', '"theta": 5', '"t2v_temp": 0.01', "optimistic",
                   "Registered: none, dsl, qb", "qb.t2v.beta=20"]:
        assert phrase in text, phrase


def _write(path, content):
    if isinstance(content, np.ndarray):
        np.save(path, content)
    else:
        path.write_bytes(content)
    return path


@pytest.mark.parametrize("name, content, extra, message", [
    ("missing.npy", None, [], "does not exist"),
    ("vec.npy", np.ones(5), [], "expected a 2-D score matrix"),
    ("cube.npy", np.ones((2, 2, 2)), [], "expected a 2-D score matrix"),
    ("nan.npy", np.array([[1.0, np.nan], [0.0, 1.0]]), [], "NaN score(s), first at (row, col) = (0, 1)"),
    ("text.npy", b"not numpy", [], "not a readable .npy array"),
    ("rect.npy", np.ones((3, 2)), [], "3x2 is not square"),
    ("sq.npy", np.eye(3), ["--set", "qb.t2v.beta=0"], "beta must be > 0"),
    ("sq.npy", np.eye(3), ["--set", "qb.t2v.bogus=1"], "unknown key 'bogus'"),
    ("sq.npy", np.eye(3), ["--set", "beta=1"], "expected STRATEGY.KEY=VALUE"),
    ("sq.npy", np.eye(3), ["--strategy", "magic"], "unknown strategy 'magic'"),
    ("sq.npy", np.eye(3), ["--ties", "random"], "--ties"),
])
def test_bad_inputs_fail_clearly(invoke, tmp_path, name, content, extra, message):
    path = tmp_path / name
    if content is not None:
        _write(path, content)
    result = invoke(path, *extra)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert message in flat(result.stderr)


def test_npz_archive_is_refused(invoke, tmp_path):
    np.savez(tmp_path / "a.npz", x=np.eye(2))
    result = invoke(tmp_path / "a.npz")
    assert result.exit_code == 2 and "got an .npz archive" in flat(result.stderr)


@pytest.mark.parametrize("ids_name, ids_text, message", [
    ("ids.txt", "0\n1\n", "has 2 entries but there are 3 captions"),
    ("ids.txt", "0\nx\n1\n", "line 2: 'x' is not an integer"),
    ("ids.txt", "0\n1\n7\n", "= 7 is not a video index in [0, 2)"),
    ("ids.json", '{"a": 1}', "expected a JSON list of integers"),
    ("ids.json", "[0, 1.5, 1]", "entry 1 is 1.5, not an integer"),
    ("ids.json", "[0, 1", "invalid JSON"),
])
def test_bad_ids_fail_clearly(invoke, tmp_path, ids_name, ids_text, message):
    np.save(tmp_path / "sim.npy", np.zeros((3, 2)))
    (tmp_path / ids_name).write_text(ids_text)
    result = invoke(tmp_path / "sim.npy", "--ids", tmp_path / ids_name)
    assert result.exit_code == 2 and result.stdout == ""
    assert message in flat(result.stderr) and "--ids" in flat(result.stderr)


def test_querybank_shape_and_orphan_video_errors(invoke, case):
    tmp, _, gt = case
    np.save(tmp / "ids.npy", gt)
    result = invoke(tmp / "sim.npy", "--ids", tmp / "ids.npy", "--querybank", tmp / "qb_v2t.npy")
    assert result.exit_code == 2 and "has 60 columns but SIM has 20 videos" in flat(result.stderr)
    result = invoke(tmp / "sim.npy", "--ids", tmp / "ids.npy", "--querybank-v2t", tmp / "qb.npy")
    assert result.exit_code == 2 and "has 20 columns but SIM has 60 captions" in flat(result.stderr)
    np.save(tmp / "ids.npy", np.zeros(60, dtype=np.int64))  # every caption -> video 0
    result = invoke(tmp / "sim.npy", "--ids", tmp / "ids.npy")
    assert result.exit_code == 1 and result.stdout == ""
    assert "at least one caption per video" in result.stderr


def test_strategy_subset_and_params_file(invoke, case):
    tmp, sim, gt = case
    np.save(tmp / "ids.npy", gt)
    result = invoke(tmp / "sim.npy", "--ids", tmp / "ids.npy", "--strategy", "dsl")
    assert result.exit_code == 0, result.stderr
    assert list(json.loads(result.stdout)["t2v"]) == ["dsl"]
    (tmp / "params.yaml").write_text(
        "evaluate:\n  retrieval:\n    ties: pessimistic\n    strategies:\n      none: {}\n"
        "      dsl: {t2v_temp: 0.2, v2t_temp: 0.3}\n")
    result = invoke(tmp / "sim.npy", "--ids", tmp / "ids.npy", "--params", tmp / "params.yaml")
    assert result.exit_code == 0, result.stderr
    expected = evaluate_all(sim, gt, config=RetrievalConfig(ties="pessimistic", strategies={
        "none": NoParams(), "dsl": DSLParams(t2v_temp=0.2, v2t_temp=0.3)}))
    assert json.loads(result.stdout) == expected
