"""dvc.yaml stays honest: each stage's ``params:`` are exactly the sections its code reads, its
``deps`` cover every library module it imports (so editing the code re-runs the stage), the
dataset's input folders are dependencies, and the default params load and agree."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest
import yaml

from pipeline.params import check_file

ROOT = Path(__file__).resolve().parents[1]
# Validation-only modules: what they import decides whether a stage starts, never what it writes.
NOT_FOLLOWED = {"pipeline/params.py"}


def _variables() -> dict:
    """dvc.yaml ``vars`` plus params.yaml (DVC's default template variables)."""
    doc = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    variables = dict(yaml.safe_load((ROOT / "params.yaml").read_text()))
    for entry in doc.get("vars", []):
        if isinstance(entry, dict):
            variables.update(entry)
    return variables


def _lookup(variables: dict, dotted: str):
    value = variables
    for part in dotted.split("."):
        value = value[part]
    return value


def _stages() -> dict[str, dict]:
    """dvc.yaml stages with ``foreach`` expanded into one entry per generated name."""
    doc = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    variables = _variables()
    out = {}
    for name, stage in doc["stages"].items():
        if "foreach" in stage:
            items = stage["foreach"]
            if isinstance(items, str):  # ${variants}: a mapping from params.yaml
                items = _lookup(variables, items.strip("${}"))
            pairs = items.items() if isinstance(items, dict) else ((i, i) for i in items)
            for key, item in pairs:
                out[f"{name}@{key}"] = _interp(stage["do"], {**variables, "key": key, "item": item})
        else:
            out[name] = _interp(stage, variables)
    return out


def _interp(obj, variables):
    if isinstance(obj, dict):
        return {_interp(k, variables): _interp(v, variables) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_interp(v, variables) for v in obj]
    if isinstance(obj, str):
        return re.sub(r"\$\{([^}]+)\}", lambda m: str(_lookup(variables, m.group(1))), obj)
    return obj


def _stage_module(cmd: str) -> str:
    match = re.search(r"python -m (stages\.\w+)", cmd)
    assert match, f"stage command must run `python -m stages.<name>`: {cmd}"
    return match.group(1)


def _pipeline_imports(module: str, seen: set[str] | None = None) -> set[str]:
    """Repo-relative files of every ``pipeline``/``stages`` module reachable from ``module``'s imports."""
    seen = set() if seen is None else seen
    path = ROOT / (module.replace(".", "/") + ".py")
    if not path.exists():
        path = ROOT / module.replace(".", "/") / "__init__.py"
    rel = str(path.relative_to(ROOT))
    if rel in seen:
        return seen
    seen.add(rel)
    if rel in NOT_FOLLOWED:
        return seen
    tree = ast.parse(path.read_text())
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        for name in names:
            if name.split(".")[0] not in ("pipeline", "stages"):
                continue
            candidate = ROOT / name.replace(".", "/")
            if candidate.with_suffix(".py").exists() or (candidate / "__init__.py").exists():
                _pipeline_imports(name, seen)
    return seen


STAGES = _stages()


@pytest.mark.parametrize("name", sorted(STAGES))
def test_params_are_exactly_the_sections_the_stage_reads(name):
    stage = STAGES[name]
    module = importlib.import_module(_stage_module(stage["cmd"]))
    key = name.split("@", 1)[1] if "@" in name else None
    expected = []
    for section in module.PARAMS:  # {section: ConfigClass} read by this stage
        # A per-variant stage reads only its own variant's entry (so editing one variant re-runs
        # only its stages); a stage over all variants reads the whole section.
        if section == "variants" and key is not None and name.split("@")[0] in ("inputs", "train", "evaluate"):
            expected.append(f"variants.{key}")
        else:
            expected.append(section)
    declared = sorted(p for p in stage.get("params", []) if isinstance(p, str))
    assert declared == sorted(expected), f"{name}: dvc.yaml params differ from {module.__name__}.PARAMS"


@pytest.mark.parametrize("name", sorted(STAGES))
def test_deps_cover_imported_library_modules(name):
    stage = STAGES[name]
    deps = [d.rstrip("/") for d in stage.get("deps", [])]
    files = _pipeline_imports(_stage_module(stage["cmd"]))
    missing = [f for f in sorted(files)
               if f != "stages/__init__.py"
               and not any(f == d or f.startswith(d + "/") for d in deps)]
    assert not missing, f"{name}: dvc.yaml deps miss imported modules {missing}"


def test_the_dataset_inputs_are_dependencies():
    """Editing an annotation file re-runs prepare; a changed video re-runs frames."""
    raw = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    assert "${prepare.source.annotations}" in raw["prepare"]["deps"]
    assert "${prepare.source.videos}" in raw["frames"]["deps"]
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert STAGES["prepare"]["deps"][-1] == params["prepare"]["source"]["annotations"]


def test_every_variant_has_train_and_evaluate_stages():
    variants = yaml.safe_load((ROOT / "params.yaml").read_text())["variants"]
    for v in variants:
        assert f"train@{v}" in STAGES and f"evaluate@{v}" in STAGES
        assert f"variants.{v}" in STAGES[f"train@{v}"]["params"]


def test_default_params_load_and_agree():
    errors, problems = check_file(ROOT / "params.yaml")
    assert not errors and not problems, (errors, problems)


@pytest.mark.parametrize("profile", sorted(p.name for p in ROOT.glob("params.*.yaml")))
def test_other_profiles_load_and_agree(profile):
    errors, problems = check_file(ROOT / profile)
    assert not errors and not problems, (errors, problems)


OUTPUT_OPTIONS = {"--out", "--metrics", "--plots", "--live-dir", "--cache", "--tables"}


def _path_options(cmd: str) -> dict[str, list[str]]:
    """``{--option: [values]}`` of a stage command's path-like options."""
    out: dict[str, list[str]] = {}
    for opt, value in re.findall(r"(--[\w-]+) (\S+)", cmd):
        if "/" in value or value.endswith((".yaml", ".json", ".parquet", ".pt")):
            out.setdefault(opt, []).append(value)
    return out


@pytest.mark.parametrize("name", sorted(STAGES))
def test_every_input_path_of_the_command_is_a_dependency(name):
    """What a stage reads is a dep; train/evaluate read the features' tag encodings and
    tags.parquet only through their variant's manifest (inputs@<variant>), the rest file by file."""
    from pipeline.train.inputs import TAG_FREE_FILES

    stage = STAGES[name]
    deps = [d.rstrip("/") for d in stage.get("deps", [])]
    base, _, key = name.partition("@")
    for opt, values in _path_options(stage["cmd"]).items():
        if opt in OUTPUT_OPTIONS or opt == "--params":
            continue
        for value in values:
            if base in ("train", "evaluate") and opt == "--features":
                assert value not in deps, f"{name}: depends on all of {value}, tag encodings included"
                assert all(f"{value}/{f}" in deps for f in TAG_FREE_FILES), f"{name}: {value}'s tag-free files"
                continue
            if base in ("train", "evaluate") and opt == "--tags":
                assert value not in deps, f"{name}: depends on {value} directly (DiCoSA reads no tags)"
                continue
            assert any(value == d or value.startswith(d + "/") for d in deps), f"{name}: {opt} {value} is no dep"
    if base in ("train", "evaluate"):
        manifest = STAGES[f"inputs@{key}"]
        assert _path_options(manifest["cmd"])["--out"][0] in deps, f"{name}: not on its variant's manifest"
        assert {"data/features", "data/tags/tags.parquet"} <= set(manifest["deps"])
