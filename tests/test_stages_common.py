"""stages.common.run / stage_config: an expected failure is one line ``stage: message`` on stderr
and exit status 1 (no traceback); MACVR_TRACEBACK=1 re-raises it for debugging."""

from __future__ import annotations

import errno
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from pipeline.config import ConfigError
from pipeline.registry import RegistryError
from stages.common import one_line, run, stage_config

ROOT = Path(__file__).resolve().parents[1]


def _app(error: BaseException | None, stage: str = "demo") -> typer.Typer:
    app = typer.Typer(add_completion=False)

    def fail() -> str:
        if error is not None:
            raise error
        return "done"

    @app.command()
    def main() -> None:
        typer.echo(run(stage, fail))

    return app


@pytest.mark.parametrize("error, line", [
    (ValueError("features: 3 videos\nhave no frames"), "demo: features: 3 videos have no frames"),
    (FileNotFoundError(errno.ENOENT, "No such file or directory", "data/x.parquet"),
     "demo: data/x.parquet: No such file or directory"),
    (FileNotFoundError("data/x: not found (did the stage that writes it run?)"),
     "demo: data/x: not found (did the stage that writes it run?)"),
    (RuntimeError("no CUDA device"), "demo: no CUDA device"),
    (ConfigError("params.yaml: frames: missing key 'padding'"), "demo: config error: params.yaml: frames: missing key 'padding'"),
    (RegistryError("unknown inference strategy 'x'; registered: none"), "demo: unknown inference strategy 'x'; registered: none"),
    (sqlite3.DatabaseError("file is not a database"), "demo: file is not a database"),
    (ValueError(""), "demo: ValueError"),
])
def test_an_expected_error_is_one_line_and_exit_1(monkeypatch, error, line):
    monkeypatch.delenv("MACVR_TRACEBACK", raising=False)
    result = CliRunner().invoke(_app(error), [])
    assert result.exit_code == 1
    assert result.stderr == line + "\n" and result.stdout == ""
    assert "Traceback" not in result.output


def test_success_passes_the_value_through(monkeypatch):
    result = CliRunner().invoke(_app(None), [])
    assert result.exit_code == 0 and result.stdout == "done\n"


def test_traceback_env_re_raises(monkeypatch):
    monkeypatch.setenv("MACVR_TRACEBACK", "1")
    result = CliRunner().invoke(_app(ValueError("boom")), [])
    assert result.exit_code == 1 and isinstance(result.exception, ValueError) and str(result.exception) == "boom"
    assert result.stderr == ""  # not swallowed into a line


def test_unexpected_errors_and_exits_are_not_swallowed(monkeypatch):
    monkeypatch.delenv("MACVR_TRACEBACK", raising=False)
    bug = CliRunner().invoke(_app(TypeError("a bug")), [])
    assert isinstance(bug.exception, TypeError)  # a programming error keeps its traceback
    stop = CliRunner().invoke(_app(typer.Exit(3)), [])
    assert stop.exit_code == 3
    with pytest.raises(KeyboardInterrupt):
        run("demo", lambda: (_ for _ in ()).throw(KeyboardInterrupt()))


def test_one_line_flattens_messages():
    assert one_line(ValueError("a\n  b\tc ")) == "a b c"
    assert one_line(PermissionError(errno.EACCES, "Permission denied", "/x")) == "/x: Permission denied"
    assert one_line(OSError("plain")) == "plain"


def test_stage_config_errors_are_one_line_too(tmp_path, monkeypatch):
    monkeypatch.delenv("MACVR_TRACEBACK", raising=False)
    from pipeline.text import TextConfig

    app = typer.Typer(add_completion=False)

    @app.command()
    def main(params: Path) -> None:
        typer.echo(stage_config(TextConfig, "text", params, stage="features"))

    (tmp_path / "params.yaml").write_text("text:\n  max_words: 2\n")
    result = CliRunner().invoke(app, [str(tmp_path / "params.yaml")])
    assert result.exit_code == 1 and result.stderr.count("\n") == 1
    assert result.stderr.startswith("features: config error: ") and "text.max_words must be >= 3" in result.stderr
    result = CliRunner().invoke(app, [str(tmp_path / "missing.yaml")])
    assert result.exit_code == 1 and "params file not found" in result.stderr


def test_a_real_stage_process_fails_with_one_line(tmp_path):
    """As DVC runs it: ``python -m stages.compare`` on a missing evaluation directory."""
    (tmp_path / "params.yaml").write_text(yaml_text())
    result = subprocess.run([sys.executable, "-m", "stages.compare", "--params", str(tmp_path / "params.yaml"),
                             "--eval-dir", str(tmp_path / "eval"), "--out", str(tmp_path / "c.json"),
                             "--tables", str(tmp_path / "t.md")], cwd=ROOT, capture_output=True, text=True,
                            timeout=300, env={**__import__("os").environ, "MACVR_TRACEBACK": ""})
    assert result.returncode == 1, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("compare: ")]
    assert len(lines) == 1 and "metrics.json not found: run the evaluate stage for it first" in lines[0]
    assert "Traceback" not in result.stderr and not (tmp_path / "c.json").exists()


def yaml_text() -> str:
    return ("compare:\n  baseline: dicosa\n  table2: [dicosa, macvr]\n  table4: [macvr, dicosa]\n"
            "  metrics: [R1, MnR]\n  bootstrap: {resamples: 200, seed: 0, level: 0.95}\n  paper: {}\n"
            "variants:\n  dicosa: {}\n  macvr: {}\n")


def test_the_macvr_command_lists_every_command_lazily():
    from stages.cli import COMMANDS, app

    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    for name in COMMANDS:
        assert name in result.stdout, name
    assert {"compare", "diff", "seeds", "check-params", "metrics", "search"} <= set(COMMANDS)
    version = CliRunner().invoke(app, ["--version"])
    assert version.exit_code == 0 and version.stdout.startswith("macvr ")
    diff_help = CliRunner().invoke(app, ["diff", "--help"])
    assert diff_help.exit_code == 0 and "REV:VARIANT" in diff_help.stdout


def test_sigterm_unwinds_so_a_stage_leaves_no_temp_file(tmp_path):
    """``kill`` (SIGTERM) mid-write: the stage exits 143 and its atomic writer removes its temp file;
    ``kill -9`` cannot be caught, and the next start's remove_stale clears what it left."""
    import signal

    script = tmp_path / "stage.py"
    out = tmp_path / "raw" / "text_t07.parquet"
    script.write_text(f"""
import sys, time
sys.path.insert(0, {str(Path.cwd())!r})
from stages.common import setup_logging
from pipeline.io import atomic_path
setup_logging()
with atomic_path({str(out)!r}) as tmp:
    tmp.write_text("half")
    print("writing", flush=True)
    time.sleep(60)
""")
    for sig, code in ((signal.SIGTERM, 143), (signal.SIGKILL, -9)):
        proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "writing"
        proc.send_signal(sig)
        assert proc.wait(timeout=30) == code
        left = list(out.parent.glob(".text_t07.parquet.*.tmp"))
        assert (left == []) == (sig == signal.SIGTERM)
    from stages.common import remove_stale

    remove_stale(out)
    assert list(out.parent.iterdir()) == []
