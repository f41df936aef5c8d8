"""Which runs are which rows of a paper table (:data:`pipeline.ablations.registry.TABLES`).

The rule: a run (a ``dvc exp`` commit, or HEAD: the default run) is a row of a table when its
params.yaml differs from HEAD's only in the table's swept keys (a key covers everything under it;
the table's and :data:`~pipeline.ablations.registry.FREE` keys may differ too, as they cannot change
the metrics) and the table accepts its swept values (Fig. 4a: N = M). Its row is its effective
swept values: params.yaml's, else the table's defaults (α of the registered variant), keeping
only those that can matter. So a seed experiment is in no table, and ``-S alpha_align=1`` is the
reference row again.

Several runs with one row's values: the first in this order is shown, the others are listed:
HEAD; runs on HEAD's code (their baseline commit is HEAD) before others; a run named as the row's
queue name; the newest. Runs are never averaged: a paired Δ needs one run's per-query ranks.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from typing import Any

from pipeline.ablations.registry import FREE, Row, SweepTable

#: A dvc experiment ref: refs/exps/<baseline sha[:2]>/<baseline sha[2:]>/<name> (not the queue's
#: stash or executor refs, which live under refs/exps too).
EXP_REF = re.compile(r"^refs/exps/([0-9a-f]{2})/([0-9a-f]+)/([^/]+)$")
_MISSING = object()
_PLAIN = re.compile(r"^[A-Za-z0-9_./:@+-]+$")  # a string the override grammar reads unquoted


@dataclass(frozen=True)
class Run:
    """One finished run: the default run (HEAD) or a ``dvc exp`` commit."""

    name: str
    rev: str
    params: dict[str, Any]
    metrics: dict[str, Any] | None  # metrics/<variant>.json, None if the run has none
    baseline: str | None = None     # the commit an experiment ran on; None for HEAD
    time: int = 0                   # commit time, to prefer the newest


@dataclass
class RowMatch:
    """A row of a table and the runs that have its values (``runs[0]`` is shown)."""

    label: str
    values: dict[str, Any]
    row: Row | None                 # the registered row, None for values only a run has
    runs: list[Run] = field(default_factory=list)

    @property
    def run(self) -> Run | None:
        return self.runs[0] if self.runs else None


@dataclass
class TableMatch:
    table: SweepTable
    rows: list[RowMatch]
    reference: RowMatch
    queue: list[str]                # one `dvc exp run --queue` command per missing registered row
    skipped: dict[str, str]         # run name -> why it is not in this table
    head: str = ""                  # HEAD's commit


def on_head(run: Run, head: str) -> bool:
    """Whether ``run`` ran on HEAD's code (HEAD itself, or an experiment whose baseline is HEAD)."""
    return run.name == "HEAD" or bool(run.baseline) and head.startswith(run.baseline)


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted leaves of a params mapping (an empty mapping is a leaf ``{}``)."""
    if isinstance(tree, dict) and tree:
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: tree}


def canon(value: Any) -> Any:
    """A hashable form in which 1 == 1.0 and lists compare as tuples."""
    if isinstance(value, bool) or value is None or value is _MISSING:
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, (list, tuple)):
        return tuple(canon(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, canon(v)) for k, v in value.items()))
    return value


def covered(key: str, patterns: tuple[str, ...]) -> bool:
    """Whether ``key`` is one of ``patterns`` or under one (``*.name``: that last part anywhere)."""
    for p in patterns:
        if p.startswith("*.") and (key == p[2:] or key.endswith(p[1:])):
            return True
        if key == p or key.startswith(p + "."):
            return True
    return False


def differing(a: dict[str, Any], b: dict[str, Any]) -> set[str]:
    """Keys whose values differ between two flattened params (a key one side lacks included)."""
    keys = set(a) | set(b)
    # `variants.macvr: {}` filled by `-S ++variants.macvr.loss.alpha_align=..`: the key, not the `{}`, differs
    filled = {k for k in keys if (a.get(k) == {} or b.get(k) == {}) and any(o.startswith(k + ".") for o in keys)}
    return {k for k in keys - filled if canon(a.get(k, _MISSING)) != canon(b.get(k, _MISSING))}


def swept_values(table: SweepTable, leaves: dict[str, Any]) -> dict[str, Any]:
    """A run's effective values of the table's swept keys."""
    values = {k: v for k, v in leaves.items() if covered(k, table.keys) and v != {}}
    values.update({k: v for k, v in table.defaults.items() if k not in values})
    return table.relevant(values) if table.relevant else values


def identity(values: dict[str, Any]) -> tuple:
    return tuple(sorted((k, canon(v)) for k, v in values.items()))


def place(table: SweepTable, run: dict[str, Any], reference: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
    """(swept values, "") when flattened params ``run`` are a row of ``table``; else (None, why not)."""
    if not table.built:
        return None, "this table is not built"
    outside = sorted(k for k in differing(run, reference) if not covered(k, table.keys + table.free + FREE))
    if outside:
        more = f" and {len(outside) - 3} more" if len(outside) > 3 else ""
        return None, f"differs in {', '.join(outside[:3])}{more}"
    values = swept_values(table, run)
    if table.accepts and not table.accepts(values):
        return None, "its swept values are not on this table (" + table.label(values, {}) + ")"
    return values, ""


def _choice(row: Row | None, head: str):
    """Sort key of a row's runs: the first is shown (see the module's docstring)."""
    def key(run: Run) -> tuple:
        return (run.name != "HEAD", not on_head(run, head), not (row and run.name == row.name), -run.time, run.name)
    return key


def _numeric(rows: list[RowMatch]) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for r in rows for v in r.values.values())


def match_table(table: SweepTable, head: Run, runs: list[Run]) -> TableMatch:
    """The table's rows (registered ones first, then values only runs have), each with its runs."""
    ref_leaves = flatten(head.params)
    ref_values = swept_values(table, ref_leaves)
    rows: dict[tuple, RowMatch] = {}
    for row in table.rows:
        values = swept_values(table, {**ref_leaves, **row.values})
        if table.built and identity(values) in rows:  # two registered rows the default run makes one
            rows[identity(values)].label += f" = {row.label}"
            continue
        rows[identity(values) if table.built else (row.label,)] = RowMatch(row.label, values, row)
    skipped = {}
    for run in [head, *runs]:
        if run.metrics is None:
            skipped[run.name] = f"no metrics/{table.variant}.json"
            continue
        values, why = place(table, flatten(run.params), ref_leaves)
        if values is None:
            skipped[run.name] = why
            continue
        match = rows.setdefault(identity(values), RowMatch(table.label(values, ref_values), values, None))
        match.runs.append(run)
    for match in rows.values():
        match.runs.sort(key=_choice(match.row, head.rev))
    ordered = list(rows.values())
    if _numeric(ordered):
        ordered.sort(key=lambda r: [float(v) for _, v in sorted(r.values.items())])
    reference = next((r for r in ordered if r.row and r.row.label == table.reference), ordered[0])
    queue = [queue_command(r.row, ref_leaves) for r in ordered if r.row and not r.runs and table.built]
    return TableMatch(table, ordered, reference, queue, skipped, head.rev)


def _override_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)  # 10.0, not 10: the params keep their float type
    if isinstance(value, str) and not _PLAIN.match(value):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return str(value)


def queue_command(row: Row, reference: dict[str, Any]) -> str:
    """``dvc exp run --queue -n NAME -S ...``: one -S per value that differs from params.yaml
    (``++key`` for a key params.yaml lacks: plain ``key=`` cannot add one). A row that needs more
    than this box (a served LLM) comes commented out, so piping the commands to sh skips it."""
    flags = []
    for key, value in row.values.items():
        if key in reference and canon(reference[key]) == canon(value):
            continue
        prefix = "" if key in reference else "++"
        flags.append("-S " + shlex.quote(f"{prefix}{key}={_override_value(value)}"))
    command = " ".join(["dvc exp run --queue -n", shlex.quote(row.name), *flags])
    return f"# needs {row.needs}: {command}" if row.needs else command
