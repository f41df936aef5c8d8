"""``macvr diff`` (paired comparison of any two evaluations) and ``macvr seeds`` (mean ± sd over runs).

An evaluation is named by a directory (``eval/macvr``) or by a git revision or ``dvc exp`` name
plus a variant (``exp-1a2b3:macvr``, ``HEAD~1:dicosa``): its evaluation directory is then read
from DVC's cache at that revision, so two experiments are compared on their own outputs without
checking either out.
"""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import tempfile
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from pipeline.compare.config import BootstrapSettings
from pipeline.compare.paired import compare_results
from pipeline.evaluation.results import EvalResult
from pipeline.retrieval.uncertainty import METRICS, alpha_of, holm, p_resolution

EVAL_DIR = "eval"


def _git(*args: str) -> str:
    result = subprocess.run(["git", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise ValueError(result.stderr.strip() or f"git {' '.join(args)} failed")
    return result.stdout


def resolve_rev(name: str) -> str:
    """A commit for a git revision or a ``dvc exp`` name (``refs/exps/.../<name>``)."""
    refs = _git("for-each-ref", "refs/exps", "--format=%(refname) %(objectname)").splitlines()
    for line in refs:
        ref, sha = line.split()
        if ref.rsplit("/", 1)[-1] == name:
            return sha
    try:
        return _git("rev-parse", "--verify", f"{name}^{{commit}}").strip()
    except ValueError:
        raise ValueError(f"{name!r} is neither an evaluation directory, a dvc experiment nor a git revision") from None


def load_result(spec: str, workdir: Path) -> EvalResult:
    """An :class:`EvalResult` from ``DIR`` or ``REV:VARIANT`` (read through DVC at that revision)."""
    if Path(spec).is_dir():
        return EvalResult.read(spec)
    rev_name, sep, variant = spec.rpartition(":")
    if not sep or not variant:
        raise ValueError(f"{spec!r}: expected an evaluation directory or REV:VARIANT (e.g. exp-1a2b3:macvr)")
    rev = resolve_rev(rev_name)
    from dvc.api import DVCFileSystem

    target = workdir / f"{rev[:12]}-{variant}"
    try:
        DVCFileSystem(".", rev=rev).get(f"{EVAL_DIR}/{variant}", str(target), recursive=True)
    except Exception as err:  # DVC raises several types for missing revisions or outputs
        raise ValueError(f"{spec}: cannot read {EVAL_DIR}/{variant} at {rev[:12]} ({err}); is it in the DVC cache?") from None
    return EvalResult.read(target)


def diff(
    a: Annotated[str, typer.Argument(help="Evaluation A: a directory (eval/macvr) or REV:VARIANT "
                                          "(a dvc exp name or git revision, e.g. exp-1a2b3:macvr).")],
    b: Annotated[str, typer.Argument(help="Evaluation B, the reference (same forms).")],
    resamples: Annotated[int, typer.Option(help="Bootstrap resamples of the test videos.")] = 1000,
    seed: Annotated[int, typer.Option(help="Bootstrap seed.")] = 0,
    level: Annotated[float, typer.Option(help="Interval coverage.")] = 0.95,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Paired bootstrap difference A - B of every metric, direction and strategy, with intervals and p-values.

    * marks a Holm-adjusted p < 1 - level over all the printed differences (one family).

    Both must have ranked the same test queries against the same gallery. Example:
    macvr diff eval/macvr eval/dicosa; macvr diff exp-a1b2c:macvr exp-d3e4f:macvr
    """
    try:
        settings = BootstrapSettings(resamples=resamples, seed=seed, level=level)
        with tempfile.TemporaryDirectory(prefix="macvr-diff-") as tmp:
            ra, rb = load_result(a, Path(tmp)), load_result(b, Path(tmp))
            out = compare_results(ra, rb, settings)
    except (ValueError, OSError) as err:
        typer.echo(f"diff: {err}", err=True)
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(json.dumps(out, indent=2))
        return
    rows = [(direction, strategy, metric, d) for direction, by in out.items() for strategy, metrics in by.items()
            for metric, d in metrics.items()]
    # every printed difference is one family: the flag is a claim about all of them at once
    adjusted, alpha, floor = holm([d["p"] for *_, d in rows]), alpha_of(level), p_resolution(resamples)
    typer.echo(f"{a} - {b}: paired bootstrap over {ra.n_videos} test videos, {resamples} resamples")
    typer.echo(f"{'direction':9s} {'strategy':8s} {'metric':6s} {'diff':>8s} {'interval':>18s} {'p':>7s} "
               f"{'holm p':>7s}")
    for (direction, strategy, metric, d), p_holm in zip(rows, adjusted):
        flag = " *" if p_holm < alpha else ""
        typer.echo(f"{direction:9s} {strategy:8s} {metric:6s} {d['diff']:+8.2f} "
                   f"[{d['lo']:+7.2f}, {d['hi']:+7.2f}] {d['p']:7.3f} {p_holm:7.3f}{flag}")
    typer.echo(f"p: the percentile interval's test, inverted (p < {alpha:g} iff the {100 * level:g}% interval "
               f"excludes 0; never below 2/B = {floor:g}); *: Holm-adjusted p < {alpha:g} over the {len(rows)} "
               "differences above (intervals are not adjusted).")
    if len(rows) * floor >= alpha:
        typer.echo(f"With {resamples} resamples no Holm-adjusted p of {len(rows)} can go below {len(rows) * floor:g}: "
                   f"use --resamples above {math.ceil(2 * len(rows) / alpha)} for any * to be possible.")


def _experiments() -> list[tuple[str, str]]:
    """(name, commit) of every dvc experiment in this repository."""
    out = []
    for line in _git("for-each-ref", "refs/exps", "--format=%(refname) %(objectname)").splitlines():
        ref, sha = line.split()
        out.append((ref.rsplit("/", 1)[-1], sha))
    return out


def _metrics_at(rev: str) -> dict[str, Any]:
    """Every ``metrics/*.json`` (git-tracked) at ``rev``: {file stem: content}."""
    names = [n for n in _git("ls-tree", "--name-only", rev, "metrics/").splitlines() if n.endswith(".json")]
    return {Path(n).stem: json.loads(_git("show", f"{rev}:{n}")) for n in names}


def _leaves(tree: Any, prefix: str = "") -> dict[str, float]:
    if isinstance(tree, dict):
        out = {}
        for k, v in tree.items():
            out.update(_leaves(v, f"{prefix}{k}."))
        return out
    if isinstance(tree, (int, float)) and not isinstance(tree, bool):
        return {prefix[:-1]: float(tree)}
    return {}


def _summarised(leaf: str) -> bool:
    """A metric (``R1``) or a paired difference of one (``R1_diff``); not interval bounds or p-values."""
    return leaf in METRICS or (leaf.endswith("_diff") and leaf[:-len("_diff")] in METRICS)


def summarise(runs: dict[str, dict[str, Any]], files: list[str] | None = None) -> dict[str, dict[str, float]]:
    """``{file.key: {mean, sd, n, min, max}}`` over runs, for the metrics and the paired differences
    of ``comparison.json`` (not their interval bounds or p-values)."""
    values: dict[str, list[float]] = {}
    for metrics in runs.values():
        for stem, content in metrics.items():
            if files and stem not in files:
                continue
            for key, value in _leaves(content).items():
                if _summarised(key.rsplit(".", 1)[-1]):
                    values.setdefault(f"{stem}.{key}", []).append(value)
    return {k: {"mean": statistics.fmean(v), "sd": statistics.stdev(v) if len(v) > 1 else math.nan, "n": len(v),
                "min": min(v), "max": max(v)} for k, v in sorted(values.items())}


# Every random source of a run, by params key: what a seed sweep can vary. The data seed is the
# synthetic generator's (videos, captions, splits); real datasets have none.
SEED_SOURCES = {
    "data": "prepare.datasets.synthetic.seed",
    "backbone": "backbone.tiny.seed",
    "head": "train.seed",
    "tag draws": "features.seed",
    "textual tags": "tag_text.seed",
    "visual tags": "tag_video.seed",
    "intervals": "compare.bootstrap.seed",
}


def _lookup(params: dict[str, Any], dotted: str) -> Any:
    value: Any = params
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def seed_sources(params_by_run: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``{source: {key, values, varied}}``: which random sources a set of runs varied (the values
    seen, in run order without repeats) and which it held fixed."""
    out = {}
    for source, key in SEED_SOURCES.items():
        values = list(dict.fromkeys(_lookup(p, key) for p in params_by_run.values()))
        out[source] = {"key": key, "values": values, "varied": len(values) > 1}
    return out


def _params_at(rev: str) -> dict[str, Any]:
    import yaml

    return yaml.safe_load(_git("show", f"{rev}:params.yaml")) or {}


def seeds(
    runs: Annotated[Optional[list[str]], typer.Argument(
        help="dvc experiment names or git revisions (default: every dvc experiment of this repository).")] = None,
    files: Annotated[Optional[list[str]], typer.Option(
        "--file", "-f", help="Metrics files to summarise by stem, e.g. macvr (repeatable; default: all).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Mean ± sd (and n, min, max) of every metric over a set of runs, e.g. a seed sweep, and which
    random sources (data, backbone, head, tag draws, taggers, intervals) the runs varied:

    dvc exp run --queue -S backbone.tiny.seed=0,1,2 -S train.seed=0,1,2 && dvc queue start && macvr seeds
    """
    try:
        chosen = [(r, resolve_rev(r)) for r in runs] if runs else _experiments()
        if not chosen:
            raise ValueError("no dvc experiments found; name runs explicitly")
        summary = summarise({name: _metrics_at(rev) for name, rev in chosen}, files)
        sources = seed_sources({name: _params_at(rev) for name, rev in chosen})
    except (ValueError, OSError) as err:
        typer.echo(f"seeds: {err}", err=True)
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(json.dumps({"runs": [n for n, _ in chosen], "sources": sources, "metrics": summary}, indent=2))
        return
    typer.echo(f"{len(chosen)} runs: {', '.join(n for n, _ in chosen)}")
    varied = [f"{s} ({v['key']}: {', '.join(map(str, v['values']))})" for s, v in sources.items() if v["varied"]]
    held = [f"{s}={v['values'][0]}" for s, v in sources.items() if not v["varied"] and v["values"] != [None]]
    typer.echo(f"varied: {'; '.join(varied) or 'nothing'}")
    typer.echo(f"held fixed: {', '.join(held) or 'nothing'}" + (
        " (the spread below leaves these sources out)" if held else ""))
    width = max(map(len, summary), default=0)
    for key, s in summary.items():
        typer.echo(f"{key:{width}s} {s['mean']:8.2f} ± {s['sd']:6.2f}  (n={s['n']}, {s['min']:.2f}..{s['max']:.2f})")
