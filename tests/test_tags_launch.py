"""``openai.launch: true``: the stage starts the server, waits on /health, and stops it."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

from pipeline.config import from_mapping
from pipeline.tags.raw import read_raw
from pipeline.tags.server import ServerStartError, health_url, launched_server
from pipeline.tags.tag_text import TagTextConfig, tag_text
from tests.tags_fake_server import default_params, write_captions_parquet

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def launch_cfg(port: int, command: list[str]) -> TagTextConfig:
    raw = default_params(f"http://127.0.0.1:{port}/v1")["tag_text"]
    raw["backend"] = "openai"
    raw["openai"] |= {"launch": True, "launch_command": command, "launch_timeout_s": 60.0}
    return from_mapping(TagTextConfig, raw, "test")


@pytest.fixture(autouse=True)
def _repo_on_path(monkeypatch):
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("PYTHONPATH", str(ROOT))


def test_health_url():
    assert health_url("http://h:8000/v1") == "http://h:8000/health"
    assert health_url("http://h:8000/v1/") == "http://h:8000/health"
    assert health_url("http://h:8000") == "http://h:8000/health"


def test_stage_launches_and_stops_its_server(tmp_path):
    captions = tmp_path / "captions.parquet"
    write_captions_parquet(captions, {f"c{i}": ("v", "train", f"caption {i}") for i in range(3)})
    port = free_port()
    command = [sys.executable, "-m", "tests.tags_fake_server", "--port", str(port)]
    cache = tmp_path / "cache.sqlite"
    rows = tag_text(launch_cfg(port, command), captions, 0.7, cache, tmp_path / "out.parquet")
    assert [r.item_id for r in rows] == ["c0", "c1", "c2"]
    assert all(r.response.startswith("- tag of caption") for r in rows)
    assert not listening(port)  # stopped again
    assert "fake server on 127.0.0.1" in (tmp_path / "cache.server.log").read_text()
    # Fully cached: nothing to ask, so nothing is launched (this command would fail).
    broken = [sys.executable, "-c", "raise SystemExit(9)"]
    rows2 = tag_text(launch_cfg(port, broken), captions, 0.7, cache, tmp_path / "out2.parquet")
    assert [r.response for r in rows2] == [r.response for r in rows]
    assert read_raw(tmp_path / "out2.parquet").equals(read_raw(tmp_path / "out.parquet"))


def test_a_server_that_dies_at_start_is_reported_with_its_log(tmp_path):
    command = [sys.executable, "-c", "import sys; print('CUDA out of memory', flush=True); sys.exit(3)"]
    with pytest.raises(ServerStartError, match=r"(?s)exited with code 3.*CUDA out of memory"):
        with launched_server(command, f"http://127.0.0.1:{free_port()}/v1", 30, tmp_path / "s.log"):
            pass


def test_a_server_that_never_gets_healthy_times_out(tmp_path):
    command = [sys.executable, "-c", "import time; time.sleep(60)"]
    with pytest.raises(ServerStartError, match="not healthy after 2 s"):
        with launched_server(command, f"http://127.0.0.1:{free_port()}/v1", 2, tmp_path / "s.log"):
            pass
