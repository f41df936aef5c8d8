"""dvc.yaml stays honest: each stage's ``params:`` are exactly the keys its config reads, and its
``deps`` cover every library module the stage imports (so editing the code re-runs the stage)."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest
import yaml

from pipeline.config import leaf_keys, load_section

ROOT = Path(__file__).resolve().parents[1]


def _stages() -> dict[str, dict]:
    """dvc.yaml stages with ``foreach``/``matrix`` expanded into one entry per generated name."""
    doc = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    variables = {}
    for entry in doc.get("vars", []):
        if isinstance(entry, dict):
            variables.update(entry)
    out = {}
    for name, stage in doc["stages"].items():
        if "foreach" in stage:
            items = stage["foreach"]
            pairs = items.items() if isinstance(items, dict) else ((i, i) for i in items)
            for key, item in pairs:
                out[f"{name}@{key}"] = _interp(stage["do"], {**variables, "key": key, "item": item})
        elif "matrix" in stage:
            (key, values), = stage["matrix"].items()  # this project uses one-axis matrices
            for value in values:
                body = {k: v for k, v in stage.items() if k != "matrix"}
                out[f"{name}@{value}"] = _interp(body, {**variables, "item": {key: value}})
        else:
            out[name] = _interp(stage, variables)
    return out


def _interp(obj, variables):
    if isinstance(obj, dict):
        return {k: _interp(v, variables) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_interp(v, variables) for v in obj]
    if isinstance(obj, str):
        def lookup(match):
            value = variables
            for part in match.group(1).split("."):
                value = value[part]
            return str(value)
        return re.sub(r"\$\{([^}]+)\}", lookup, obj)
    return obj


def _stage_module(cmd: str) -> str:
    match = re.search(r"python -m (stages\.\w+)", cmd)
    assert match, f"stage command must run `python -m stages.<name>`: {cmd}"
    return match.group(1)


def _pipeline_imports(module: str, seen: set[str] | None = None) -> set[str]:
    """Repo-relative files of every ``pipeline`` module reachable from ``module``'s imports."""
    seen = set() if seen is None else seen
    path = ROOT / (module.replace(".", "/") + ".py")
    if not path.exists():
        path = ROOT / module.replace(".", "/") / "__init__.py"
    rel = str(path.relative_to(ROOT))
    if rel in seen:
        return seen
    seen.add(rel)
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
def test_params_are_exactly_what_the_stage_reads(name):
    stage = STAGES[name]
    module = importlib.import_module(_stage_module(stage["cmd"]))
    sections = module.PARAMS  # {section: ConfigClass} read by this stage
    expected = sorted(k for section, cls in sections.items() for k in leaf_keys(cls, f"{section}."))
    declared = sorted(p for p in stage.get("params", []) if isinstance(p, str))
    assert declared == expected, f"{name}: dvc.yaml params differ from {module.__name__}.PARAMS"


@pytest.mark.parametrize("name", sorted(STAGES))
def test_deps_cover_imported_library_modules(name):
    stage = STAGES[name]
    deps = [d.rstrip("/") for d in stage.get("deps", [])]
    files = _pipeline_imports(_stage_module(stage["cmd"]))
    missing = [f for f in sorted(files)
               if f != "stages/__init__.py"
               and not any(f == d or f.startswith(d + "/") for d in deps)]
    assert not missing, f"{name}: dvc.yaml deps miss imported modules {missing}"


@pytest.mark.parametrize("name", sorted(STAGES))
def test_default_params_load(name):
    module = importlib.import_module(_stage_module(STAGES[name]["cmd"]))
    for section, cls in module.PARAMS.items():
        load_section(cls, section, ROOT / "params.yaml")
