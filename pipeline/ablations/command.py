"""``macvr paper-tables``: the paper's ablations (Tab. 5-7, Fig. 4) from ``dvc exp`` runs.

Reads HEAD (the default run) and every ``dvc exp`` commit through git, without a checkout:
params.yaml and metrics/<variant>.json for the matching and the cells, and each run's evaluation
directory from DVC's cache for the paired differences (:func:`pipeline.compare.command.load_result`).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import typer

from pipeline.ablations.figure import plot_png
from pipeline.ablations.match import EXP_REF, Run, TableMatch, match_table
from pipeline.ablations.registry import TABLES
from pipeline.ablations.render import build, markdown, plot_csv, to_json
from pipeline.ablations.tag_stats import STAT_TABLES, build_stats
from pipeline.compare.command import _git, _params_at, load_result
from pipeline.compare.config import BootstrapSettings
from pipeline.evaluation.results import EvalResult
from pipeline.io import atomic_path


def _variant_metrics(rev: str, variant: str) -> dict[str, Any] | None:
    try:
        return json.loads(_git("show", f"{rev}:metrics/{variant}.json"))
    except ValueError:  # the run has no such file (git failed) or it is not JSON
        return None


def load_runs(variant: str) -> tuple[Run, list[Run]]:
    """HEAD (the default run) and every ``dvc exp`` run of this repository, with params and metrics."""
    head = _git("rev-parse", "HEAD").strip()
    runs = []
    refs = _git("for-each-ref", "refs/exps", "--format=%(refname) %(objectname) %(committerdate:unix)")
    for line in refs.splitlines():
        ref, sha, time = line.split()
        hit = EXP_REF.match(ref)
        if not hit:  # the queue's stash and executor refs
            continue
        try:
            params = _params_at(sha)
        except ValueError:
            continue
        runs.append(Run(hit[3], sha, params, _variant_metrics(sha, variant), hit[1] + hit[2], int(time)))
    return Run("HEAD", head, _params_at(head), _variant_metrics(head, variant)), runs


def match_all(ids: list[str]) -> dict[str, TableMatch]:
    cache: dict[str, tuple[Run, list[Run]]] = {}
    out = {}
    for i in ids:
        table = TABLES[i]
        if table.variant not in cache:
            cache[table.variant] = load_runs(table.variant)
        out[i] = match_table(table, *cache[table.variant])
    return out


def queue_lines(matches: dict[str, TableMatch]) -> list[str]:
    """The queue commands of every missing row, once per set of overrides (Fig. 4a's 6-6 is Fig. 4b's 6-6)."""
    seen, out = set(), []
    for match in matches.values():
        for command in match.queue:
            flags = command.split(" -S ", 1)[1] if " -S " in command else ""
            if flags not in seen:
                seen.add(flags)
                out.append(command)
    return out


def _loader(workdir: Path, variant: str) -> Callable[[Run], EvalResult]:
    cache: dict[str, EvalResult] = {}

    def load(run: Run) -> EvalResult:
        if run.rev not in cache:
            cache[run.rev] = load_result(f"{run.rev}:{variant}", workdir)
        return cache[run.rev]
    return load


def _baseline(match: TableMatch, variant: str = "dicosa") -> dict[str, float] | None:
    """R@1 per strategy of the default run's ``variant`` (DiCoSA reads no tags: one level for
    every point of Fig. 4), or None when HEAD has no such metrics file."""
    metrics = _variant_metrics(match.head, variant)
    if metrics is None:
        return None
    by = metrics.get(match.table.direction, {})
    return {s: float(by[s]["R1"]) for s in match.table.strategies if s in by and "R1" in by[s]}


def _write(text: str, path: Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def paper_tables(
    table: Annotated[Optional[list[str]], typer.Option(
        "--table", "-t", help=f"A table to build: {', '.join([*TABLES, *STAT_TABLES])} "
                              "(repeatable; default: all).")] = None,
    out: Annotated[Path, typer.Option(
        help="Folder of <table>.md, <table>.json and, for Fig. 4, <table>.csv and <table>.png.")]
        = Path("metrics/paper"),
    queue_commands: Annotated[bool, typer.Option(
        "--queue-commands", help="Only print the `dvc exp run --queue` command of every missing row.")] = False,
    resamples: Annotated[Optional[int], typer.Option(
        help="Paired bootstrap resamples (default: params.yaml compare.bootstrap.resamples).")] = None,
    no_diff: Annotated[bool, typer.Option(
        "--no-diff", help="Skip the paired differences (no evaluation read from the DVC cache).")] = False,
) -> None:
    """The paper's ablation tables (Tab. 5, Fig. 4a/b, Tab. 6, Tab. 7) from the default run and
    `dvc exp` runs: a run is a row when its params differ from HEAD's only in the table's swept keys.
    The tag statistics (Tab. 1: the default run; Tab. 10/11: per Tab. 6 row) come from each run's
    metrics/tags.json.

    Queue every missing row, run them, build the tables:

    macvr paper-tables --queue-commands | sh && dvc queue start   # then, once `dvc queue status` is done:
    macvr paper-tables

    Fig. 4 as plots (one line per strategy with its interval band; also <table>.png):
    dvc plots show   # or: dvc plots diff <exp> ...
    """
    chosen = table or [*TABLES, *STAT_TABLES]
    unknown = [i for i in chosen if i not in TABLES and i not in STAT_TABLES]
    if unknown:
        typer.echo(f"paper-tables: unknown table {', '.join(unknown)}; known: "
                   f"{', '.join([*TABLES, *STAT_TABLES])}", err=True)
        raise typer.Exit(2)
    ids = [i for i in chosen if i in TABLES]
    stats = [i for i in chosen if i in STAT_TABLES]
    try:
        matches = match_all(ids)
        tab6 = matches["tab6"] if "tab6" in matches else (match_all(["tab6"])["tab6"] if stats else None)
    except (ValueError, OSError) as err:
        typer.echo(f"paper-tables: {err}", err=True)
        raise typer.Exit(1) from None
    if queue_commands:
        for line in queue_lines(matches if ids else {"tab6": tab6}):
            typer.echo(line)
        return
    params = _params_at((next(iter(matches.values())) if matches else tab6).head)  # the default run's settings
    for i in stats:
        dataset = str(params.get("prepare", {}).get("dataset", "?"))
        text, data = build_stats(i, tab6, dataset)
        _write(text, out / f"{i}.md")
        _write(json.dumps(data, indent=2) + "\n", out / f"{i}.json")
        typer.echo(f"{i}: {len(data['rows'])} rows -> {out}/{{{i}.md,{i}.json}}")
    settings = None
    if not no_diff:
        boot = dict(params.get("compare", {}).get("bootstrap", {}))
        settings = BootstrapSettings(**{**boot, **({"resamples": resamples} if resamples else {})})
    level = float(params.get("evaluate", {}).get("bootstrap", {}).get("level", 0.95))
    with tempfile.TemporaryDirectory(prefix="macvr-paper-") as tmp:
        for i, match in matches.items():
            res = build(match, settings, _loader(Path(tmp), match.table.variant))
            _write(markdown(res, level), out / f"{i}.md")
            _write(json.dumps(to_json(res), indent=2) + "\n", out / f"{i}.json")
            written = [f"{i}.md", f"{i}.json"]
            if match.table.plot:
                _write(plot_csv(res), out / f"{i}.csv")
                plot_png(res, out / f"{i}.png", baseline=_baseline(match))
                written += [f"{i}.csv", f"{i}.png"]
            _summary(match, res.no_diff, out, written)
    _unplaced(matches)


def _summary(match: TableMatch, no_diff: dict[str, str], out: Path, written: list[str]) -> None:
    have = sum(bool(r.runs) for r in match.rows)
    missing = [r.label for r in match.rows if not r.runs]
    typer.echo(f"{match.table.id}: {have} of {len(match.rows)} rows have a run"
               + (f"; missing: {', '.join(missing)}" if missing else "") + f" -> {out}/{{{','.join(written)}}}")
    if not match.table.built:
        typer.echo(f"  {match.table.note}")
    for label, why in no_diff.items():
        typer.echo(f"  no Δ for {label}: {why}")
    for command in match.queue:
        typer.echo(f"  {command}")


def _unplaced(matches: dict[str, TableMatch]) -> None:
    # runs in none of the chosen tables, with why not: a run meant for a table that did not land there
    built = [m for m in matches.values() if m.table.built]
    names = set.intersection(*(set(m.skipped) for m in built)) - {"HEAD"} if built else set()
    for name in sorted(names):
        why = "; ".join(f"{m.table.id}: {m.skipped[name]}" for m in built)
        typer.echo(f"not in any table: {name} ({why})")
