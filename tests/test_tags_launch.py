"""``openai.launch: true``: the stage starts the server, waits on /health, and stops it."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

from pipeline.config import from_mapping
from pipeline.tags.raw import read_raw
from pipeline.config import ConfigError
from pipeline.tags.server import ServerStartError, health_url, launch_argv, launched_server
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
    log = (tmp_path / "cache.server.log").read_text()
    # The command had no --host: the stage bound the server to base_url's loopback host (the
    # fake server, like vllm serve, would otherwise listen on every interface).
    assert f"fake server on 127.0.0.1:{port} " in log and "'--host', '127.0.0.1'" in log
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


def test_launch_argv_binds_to_the_base_url_host():
    vllm = ["vllm", "serve", "m", "--port", "8000", "--dtype", "bfloat16"]
    assert launch_argv(vllm, "http://127.0.0.1:8000/v1") == vllm + ["--host", "127.0.0.1"]
    assert launch_argv(["vllm", "serve", "m"], "http://localhost:8001/v1") == [
        "vllm", "serve", "m", "--host", "localhost", "--port", "8001"]
    assert launch_argv(["s", "--port=9000"], "http://[::1]:9000/v1") == ["s", "--port=9000", "--host", "::1"]
    explicit = ["vllm", "serve", "m", "--host", "0.0.0.0", "--port", "8000"]
    assert launch_argv(explicit, "http://127.0.0.1:8000/v1") == explicit  # the user's own choice
    assert launch_argv(["s", "--host=10.0.0.5"], "https://gpu:8443/v1") == ["s", "--host=10.0.0.5", "--port", "8443"]
    with pytest.raises(ValueError, match="--port 8000 but base_url http://127.0.0.1:8001/v1 uses port 8001"):
        launch_argv(vllm, "http://127.0.0.1:8001/v1")


def test_default_launch_commands_bind_to_loopback():
    import yaml
    from pipeline.tags.client import OpenAIConfig
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for section in ("tag_text", "tag_video"):
        raw = params[section]["openai"] | {"launch": True}
        cfg = from_mapping(OpenAIConfig, raw, section)
        argv = launch_argv(cfg.launch_command, cfg.base_urls[0])
        assert argv[argv.index("--host") + 1] == "127.0.0.1"
    raw = params["tag_text"]["openai"] | {"launch": True, "base_urls": ["http://127.0.0.1:9999/v1"]}
    with pytest.raises(ConfigError, match="--port 8000 but base_url"):
        from_mapping(OpenAIConfig, raw, "tag_text.openai")
