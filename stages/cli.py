"""The ``macvr`` command: every DVC stage and the user utilities behind one ``--help``.

It lives with the stages (the entry points), not in the library: ``pipeline`` never imports
``stages``.

Subcommands are imported lazily (a stage may pull in torch or CLIP), so ``macvr --help`` is fast.
Each stage subcommand is the same typer command DVC runs as ``python -m stages.<name>``.
"""

from __future__ import annotations

import importlib

import typer
import typer.main
from typer.core import TyperGroup

# name -> (module:attribute of a typer app or command function, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "prepare": ("stages.prepare:app", "Stage: build videos/captions tables (a registered dataset adapter)."),
    "frames": ("stages.frames:app", "Stage: sample frames with decord (backbone frames + VLM JPEGs)."),
    "tag-text": ("stages.tag_text:app", "Stage: textual tags for each caption (LLM or offline tagger)."),
    "tag-video": ("stages.tag_video:app", "Stage: visual tags for each video (video LLM or offline tagger)."),
    "clean-tags": ("stages.clean_tags:app", "Stage: clean raw LLM responses into tags.parquet + statistics."),
    "backbone": ("stages.backbone:app", "Stage: the backbone weights (tiny, OpenAI CLIP or open_clip)."),
    "features": ("stages.features:app", "Stage: cache frozen backbone features (frames, captions, tag sentences)."),
    "train": ("stages.train:app", "Stage: train one variant (cached features or end to end)."),
    "evaluate": ("stages.evaluate:app", "Stage: retrieval metrics with intervals, t2v/v2t x every strategy."),
    "compare": ("stages.compare:app", "Stage: every variant vs the baseline (paired), Tab. 2/4-like tables."),
    "report": ("stages.report:app", "Stage: tag histograms, concept t-SNE, qualitative ranks (PNG + HTML)."),
    "metrics": ("pipeline.retrieval.command:metrics", "Retrieval metrics for any similarity matrix (JSON on stdout)."),
    "diff": ("pipeline.compare.command:diff", "Paired comparison of two evaluations (dirs or dvc experiments)."),
    "seeds": ("pipeline.compare.command:seeds", "Mean ± sd of every metric over a set of dvc experiments."),
    "paper-tables": ("pipeline.ablations.command:paper_tables",
                     "The paper's ablations (Tab. 5-7, Fig. 4) from dvc experiments; queues missing rows."),
    "import-tags": ("pipeline.released.command:import_tags", "The MAC-VR authors' tag files -> a tags.parquet."),
    "export-tags": ("pipeline.released.command:export_tags", "A tags.parquet in the official formats (CSV / concepts JSON)."),
    "tags-diff": ("pipeline.released.command:tags_diff", "Compare two tag sets item by item (overlap, vocabulary)."),
    "index": ("pipeline.index.command:index", "Index a folder of videos (or a features split) for `search --index`."),
    "search": ("pipeline.search:search", "Rank a gallery (the test split, or a `macvr index`) for a free-text query."),
    "check-params": ("stages.cli:check_params", "Validate every section of a params file and their agreement."),
    "repair-lock": ("stages.lockfile:repair_lock", "Restore a dvc.lock torn by a killed dvc command (make run does it)."),
    "overrides": ("stages.cli:overrides", "The `dvc exp run -S` flags that turn params.yaml into another params file."),
}


def _load(target: str):
    module_name, attr = target.split(":")
    obj = getattr(importlib.import_module(module_name), attr)
    if not isinstance(obj, typer.Typer):
        single = typer.Typer(add_completion=False)
        single.command()(obj)
        obj = single
    return typer.main.get_command(obj)


class LazyGroup(TyperGroup):
    """A typer group whose subcommands are imported only when invoked (``--help`` stays fast).

    It subclasses typer's own group class: typer ships a private copy of click, so its usage
    errors are only rendered as usage errors by typer's classes, not by a plain ``click.Group``.
    """

    def list_commands(self, ctx) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx, name: str):
        if name not in COMMANDS:
            return None
        command = _load(COMMANDS[name][0])
        command.help = command.help or COMMANDS[name][1]
        return command

    def format_commands(self, ctx, formatter) -> None:
        # List from COMMANDS: the default listing would import every subcommand for its help.
        with formatter.section("Commands"):
            formatter.write_dl([(name, help_) for name, (_, help_) in COMMANDS.items()])


app = typer.Typer(cls=LazyGroup, add_completion=False, no_args_is_help=True,
                  rich_markup_mode=None, context_settings={"help_option_names": ["-h", "--help"]})


def _version(value: bool) -> None:
    if value:
        from pipeline import __version__

        typer.echo(f"macvr {__version__}")
        raise typer.Exit()


@app.callback()
def main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                      help="Show the version and exit.")) -> None:
    """MAC-VR text-to-video retrieval with modality-specific tags.

    The pipeline is a DVC DAG: run `dvc repro` to rebuild everything, `dvc exp run -S
    section.key=value` to sweep, `dvc metrics diff` to compare. Each stage below is also a
    command (`macvr frames --help`), identical to what dvc.yaml runs.
    """


def check_params(params: str = typer.Argument("params.yaml", help="Params file to validate.")) -> None:
    """Load every section into its typed config (train once per variant) and check that the
    sections agree (backbone vs frames/text, head vs backbone, batch vs data, ...)."""
    from pipeline.config import ConfigError
    from pipeline.params import SECTIONS, check_file

    try:
        errors, problems = check_file(params)
    except ConfigError as err:
        typer.echo(f"ERROR {err}", err=True)
        raise typer.Exit(1) from None
    for section in [*SECTIONS, "variants"]:
        if section not in errors and not any(k.startswith(f"{section}.") for k in errors):
            typer.echo(f"ok    {section}")
    for key, message in errors.items():
        typer.echo(f"ERROR {key}: {message}", err=True)
    for problem in problems:
        typer.echo(f"ERROR {problem}", err=True)
    if errors or problems:
        raise typer.Exit(1)


def _leaves(tree, prefix: str = "") -> dict:
    if isinstance(tree, dict) and tree:
        out = {}
        for key, value in tree.items():
            out.update(_leaves(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: tree}


def overrides(
    profile: str = typer.Argument(..., help="The params file to reproduce, e.g. params.reference.yaml."),
    base: str = typer.Option("params.yaml", help="The params file the experiment starts from."),
) -> None:
    """Print one -S flag per value that differs, for `dvc exp run -n NAME $(macvr overrides FILE)`."""
    import json
    import shlex

    from pipeline.config import ConfigError, load_params

    try:
        want, have = _leaves(load_params(profile)), _leaves(load_params(base))
    except ConfigError as err:
        typer.echo(f"overrides: {err}", err=True)
        raise typer.Exit(1) from None
    missing = sorted(set(have) - set(want))
    if missing:
        typer.echo(f"overrides: {profile} lacks keys of {base}: {', '.join(missing[:5])}", err=True)
        raise typer.Exit(1)
    flags = []
    for key, value in want.items():
        if key not in have or have[key] != value:
            text = json.dumps(value) if not isinstance(value, str) else value
            flags.append(f"-S {shlex.quote(f'{key}={text}')}")
    typer.echo(" ".join(flags))
