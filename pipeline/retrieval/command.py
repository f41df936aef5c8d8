"""``macvr metrics SIM.npy``: retrieval metrics of a saved similarity matrix, JSON on stdout.

Only the JSON goes to stdout (so it pipes into ``jq`` or a file); the one-line summary,
tie warnings and errors go to stderr.
"""

from __future__ import annotations

import inspect
import json
import warnings
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import typer

from pipeline.retrieval.evaluation import RetrievalConfig, evaluate_all
from pipeline.retrieval.metrics import TIE_POLICIES, check_caption_video, check_scores
from pipeline.retrieval.strategies import STRATEGIES


def _load_matrix(path: Path, option: str) -> np.ndarray:
    """A 2-D real, NaN-free array from a ``.npy`` file, or a BadParameter naming ``option``."""
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise typer.BadParameter(f"{path}: not a readable .npy array ({err})", param_hint=option) from None
    if not isinstance(arr, np.ndarray):  # np.load returns an NpzFile for .npz archives
        raise typer.BadParameter(f"{path}: expected one array saved with numpy.save (.npy), "
                                 "got an .npz archive", param_hint=option)
    try:
        return check_scores(arr, str(path))
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint=option) from None

def _parse_ids(path: Path) -> np.ndarray:
    """Ground-truth columns from ``.npy`` (1-D ints), ``.json`` (list of ints) or text (one per line)."""
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            return np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as err:
            raise ValueError(f"not a readable .npy array ({err})") from None
    text = path.read_text()
    if suffix == ".json":
        try:
            values = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"invalid JSON ({err})") from None
        if not isinstance(values, list):
            raise ValueError(f"expected a JSON list of integers, got {type(values).__name__}")
        for i, v in enumerate(values):
            if isinstance(v, bool) or not isinstance(v, int):
                raise ValueError(f"entry {i} is {v!r}, not an integer")
        return np.asarray(values, dtype=np.int64).reshape(-1)
    lines = text.splitlines()
    while lines and not lines[-1].strip():  # tolerate trailing blank lines only
        lines.pop()
    values = []
    for number, line in enumerate(lines, start=1):
        try:
            values.append(int(line.strip()))
        except ValueError:
            raise ValueError(f"line {number}: {line!r} is not an integer") from None
    return np.asarray(values, dtype=np.int64)


def _load_ids(path: Path, n_rows: int, n_cols: int) -> np.ndarray:
    try:
        return check_caption_video(_parse_ids(path), n_rows, n_cols, name=str(path))
    except ValueError as err:
        msg = str(err) if str(err).startswith(str(path)) else f"{path}: {err}"
        raise typer.BadParameter(msg, param_hint="--ids") from None


def _parse_value(text: str):
    """A ``--set`` value: YAML scalar syntax (``20``, ``0.5``, ``true``), else the string."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _strategy_config(params: Optional[Path], ties: Optional[str], names: list[str],
                     overrides: list[str]) -> RetrievalConfig:
    """The retrieval config: a params file's ``evaluate.retrieval`` or the registered strategies'
    official settings, restricted to ``names``, with ``--set strategy.key=value`` applied."""
    from pipeline.config import ConfigError, from_mapping, load_params, to_dict

    if params is not None:
        try:
            section = load_params(params).get("evaluate", {}).get("retrieval")
            if section is None:
                raise ConfigError(f"{params}: no evaluate.retrieval section")
            base = from_mapping(RetrievalConfig, section, where=f"{params}: evaluate.retrieval")
        except ConfigError as err:
            raise typer.BadParameter(str(err), param_hint="--params") from None
        mapping = {"ties": base.ties, "strategies": {n: to_dict(p) for n, p in base.strategies.items()}}
    else:
        mapping = {"ties": "optimistic",
                   "strategies": {n: to_dict(STRATEGIES.get(n).reference()) for n in STRATEGIES.names()}}
    if ties is not None:
        mapping["ties"] = ties
    if names:
        unknown = [n for n in names if n not in STRATEGIES]
        if unknown:
            raise typer.BadParameter(f"unknown strategy {unknown[0]!r}; registered: {', '.join(STRATEGIES.names())}",
                                     param_hint="--strategy")
        mapping["strategies"] = {n: mapping["strategies"].get(n, to_dict(STRATEGIES.get(n).reference()))
                                 for n in names}
    for item in overrides:
        key, sep, value = item.partition("=")
        parts = key.strip().split(".")
        if not sep or len(parts) < 2 or not all(parts):
            raise typer.BadParameter(f"{item!r}: expected STRATEGY.KEY=VALUE, e.g. qb.t2v.beta=20",
                                     param_hint="--set")
        if parts[0] not in mapping["strategies"]:
            raise typer.BadParameter(f"{item!r}: strategy {parts[0]!r} is not evaluated "
                                     f"(evaluated: {', '.join(mapping['strategies'])})", param_hint="--set")
        node = mapping["strategies"][parts[0]]
        for part in parts[1:-1]:
            if not isinstance(node.get(part), dict):
                raise typer.BadParameter(f"{item!r}: {parts[0]} has no group {part!r}", param_hint="--set")
            node = node[part]
        if parts[-1] not in node:
            raise typer.BadParameter(f"{item!r}: unknown key {parts[-1]!r} (keys: {sorted(node)})",
                                     param_hint="--set")
        node[parts[-1]] = _parse_value(value.strip())
    try:
        return from_mapping(RetrievalConfig, mapping, where="retrieval settings")
    except ConfigError as err:
        raise typer.BadParameter(str(err), param_hint="--set") from None


def _strategies_help() -> str:
    from pipeline.config import to_dict

    return "; ".join(f"{name}: {entry.description} (official: {json.dumps(to_dict(entry.reference()))})"
                     for name, entry in STRATEGIES.items())


_FILE = dict(exists=True, dir_okay=False, readable=True)
Ties = Enum("Ties", {t: t for t in TIE_POLICIES}, type=str)  # from the one list of policies


def metrics(
    sim: Annotated[Path, typer.Argument(
        metavar="SIM.npy", **_FILE,
        help="Similarity matrix saved with numpy.save: rows = text queries, columns = videos, "
             "higher = more similar. Without --ids the ground truth is the diagonal.")],
    ids: Annotated[Optional[Path], typer.Option(
        "--ids", metavar="FILE", **_FILE,
        help="Ground truth for multi-caption test sets: for each row of SIM, the 0-based column "
             "of its video. Formats by extension: .npy (1-D integer array), .json (a list of "
             "integers), anything else = text with one integer per line. Several rows may "
             "share a column; every column needs at least one row (for video-to-text).")] = None,
    querybank: Annotated[Optional[Path], typer.Option(
        "--querybank", metavar="P.npy", **_FILE,
        help="Text-to-video querybank for strategies that need one (QB-Norm): querybank text "
             "queries (e.g. training captions) x the same videos as SIM's columns.")] = None,
    querybank_v2t: Annotated[Optional[Path], typer.Option(
        "--querybank-v2t", metavar="P.npy", **_FILE,
        help="Video-to-text querybank: querybank videos (e.g. training videos) x the same "
             "captions as SIM's rows.")] = None,
    strategy: Annotated[Optional[list[str]], typer.Option(
        "--strategy", "-s", metavar="NAME",
        help="Strategy to evaluate (repeatable; default: every registered one, or the params "
             "file's). Registered: " + ", ".join(STRATEGIES.names()) + ".")] = None,
    set_: Annotated[Optional[list[str]], typer.Option(
        "--set", metavar="STRATEGY.KEY=VALUE",
        help="Change one knob of a strategy (repeatable), e.g. --set qb.t2v.beta=20 "
             "--set dsl.t2v_temp=0.05.")] = None,
    params: Annotated[Optional[Path], typer.Option(
        "--params", metavar="params.yaml", **_FILE,
        help="Take the tie policy and strategies from this file's evaluate.retrieval section "
             "(default: the official MAC-VR evaluation settings).")] = None,
    ties: Annotated[Optional[Ties], typer.Option(
        help="Tie policy for equal scores (default: optimistic, or the params file's): optimistic = "
             "1 + number of items scoring strictly higher; pessimistic also counts the other tied "
             "items; average takes the mean of the two; official pools every tied position as the "
             "official compute_metrics does.")] = None,
) -> None:
    """Retrieval metrics of a similarity matrix, as JSON on stdout.

    Prints {"t2v": {"none": {...}, "dsl": {...}, "qb": {...}}, "v2t": {...}} where each leaf
    holds R1, R5, R10, R50 (recall at k in percent, 0-100, as in the papers' tables), MdR
    (median rank) and MnR (mean rank), ranks being 1-based. Strategies re-score SIM before
    ranking; one that needs a querybank appears in a direction only when that querybank is
    given. Video-to-text ranks each video by its best-ranked ground-truth caption.

    Example: macvr metrics sim.npy --ids caption_video.txt --querybank qb.npy | jq .t2v.dsl
    """
    config = _strategy_config(params, None if ties is None else ties.value, strategy or [], set_ or [])
    matrix = _load_matrix(sim, "SIM")
    n_rows, n_cols = matrix.shape
    if ids is None and n_rows != n_cols:
        raise typer.BadParameter(
            f"{sim}: {n_rows}x{n_cols} is not square, so the ground truth cannot be the diagonal; "
            "pass --ids with each row's video column", param_hint="SIM")
    caption_video = None if ids is None else _load_ids(ids, n_rows, n_cols)
    bank_t2v = None if querybank is None else _load_matrix(querybank, "--querybank")
    if bank_t2v is not None and bank_t2v.shape[1] != n_cols:
        raise typer.BadParameter(
            f"{querybank}: has {bank_t2v.shape[1]} columns but SIM has {n_cols} videos; the t2v "
            "querybank must score the same videos", param_hint="--querybank")
    bank_v2t = None if querybank_v2t is None else _load_matrix(querybank_v2t, "--querybank-v2t")
    if bank_v2t is not None and bank_v2t.shape[1] != n_rows:
        raise typer.BadParameter(
            f"{querybank_v2t}: has {bank_v2t.shape[1]} columns but SIM has {n_rows} captions (rows); "
            "the v2t querybank must score the same captions", param_hint="--querybank-v2t")

    typer.echo(f"{sim}: {n_rows} queries x {n_cols} videos ({matrix.dtype}), ground truth "
               f"{'diagonal' if ids is None else f'from {ids}'}, ties {config.ties}, strategies "
               f"{', '.join(config.strategies)}", err=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = evaluate_all(matrix, caption_video, bank_t2v, bank_v2t, config=config)
        except ValueError as err:  # inconsistent inputs found by the library (e.g. a video without captions)
            typer.echo(f"Error: {err}", err=True)
            raise typer.Exit(1) from None
    for warning in caught:
        typer.echo(f"warning: {warning.message}", err=True)
    typer.echo(json.dumps(result, indent=2))


# typer 0.29 keeps single line breaks inside later help paragraphs, which garbles the wrapped
# --help text; re-flow each docstring paragraph into one line so it wraps to the terminal.
metrics.__doc__ = "\n\n".join(" ".join(paragraph.split())
                                for paragraph in inspect.cleandoc((metrics.__doc__ or "")
                                                                  + "\n\nStrategies: " + _strategies_help())
                                .split("\n\n"))
