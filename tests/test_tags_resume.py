"""kill -9 in the middle of tag_text, then rerun: only missing answers are asked again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import yaml

from pipeline.tags.raw import read_raw
from pipeline.tags.seeds import derive_seed
from tests.tags_fake_server import FakeOpenAIServer, Reply, default_params, write_captions_parquet

ROOT = Path(__file__).resolve().parents[1]
N_ITEMS, CONCURRENCY = 40, 4


def caption_of(body: dict) -> str:
    return body["messages"][-1]["content"].split("1) ", 1)[1].split("\n", 1)[0]


def answer(body: dict, n: int) -> Reply:
    return Reply(f"- answer for {caption_of(body)}\n- seed {body['seed']}")


def run_stage(params: Path, captions: Path, cache: Path, out: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "stages.tag_text", "--params", str(params), "--captions",
           str(captions), "--temperature", "0.7", "--cache", str(cache), "--out", str(out)]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_sigkill_then_resume_asks_each_missing_item_once(tmp_path):
    captions = tmp_path / "captions.parquet"
    write_captions_parquet(captions, {f"cap{i:02d}": (f"v{i}", "train", f"item {i:02d} moves")
                                      for i in range(N_ITEMS)})
    cache, out = tmp_path / "cache.sqlite", tmp_path / "text_t07.parquet"
    with FakeOpenAIServer(answer, delay_s=0.05) as server:
        params = default_params(server.base_url)
        params["tag_text"]["backend"] = "openai"
        params["tag_text"]["openai"]["concurrency"] = CONCURRENCY
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))

        proc = run_stage(tmp_path / "params.yaml", captions, cache, out)
        deadline = time.monotonic() + 60
        while server.answered() < 12 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        assert proc.poll() is None, "stage finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL and not out.exists()
        first = len(server.posts())
        assert 12 <= first < N_ITEMS

        proc = run_stage(tmp_path / "params.yaml", captions, cache, out)
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, stderr.decode()[-2000:]
        asked = Counter(caption_of(r.body) for r in server.posts())

    total = sum(asked.values())
    # Every item asked; only requests in flight at the kill (at most `concurrency`) asked twice.
    assert set(asked) == {f"item {i:02d} moves" for i in range(N_ITEMS)}
    assert max(asked.values()) <= 2
    assert N_ITEMS <= total <= N_ITEMS + CONCURRENCY
    assert sum(c == 2 for c in asked.values()) == total - N_ITEMS

    df = read_raw(out)
    assert list(df["item_id"]) == [f"cap{i:02d}" for i in range(N_ITEMS)]
    for item, response, seed in zip(df["item_id"], df["response"], df["seed"]):
        i = int(item[3:])
        assert seed == derive_seed(1234, item, 0.7)
        assert response == f"- answer for item {i:02d} moves\n- seed {seed}"
    assert (df["temperature"] == 0.7).all() and (df["finish_reason"] == "stop").all()

    # A third run needs no server at all (it is stopped now) and rewrites the same answers.
    out.unlink()
    proc = run_stage(tmp_path / "params.yaml", captions, cache, out)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr.decode()[-2000:]
    assert read_raw(out)[["item_id", "response", "seed"]].equals(df[["item_id", "response", "seed"]])


def test_unreachable_server_fails_fast_with_instructions(tmp_path):
    captions = tmp_path / "captions.parquet"
    write_captions_parquet(captions, {"c0": ("v0", "train", "a dog")})
    params = default_params("http://127.0.0.1:9/v1")  # port 9 (discard): nothing listens
    params["tag_text"]["backend"] = "openai"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    start = time.monotonic()
    proc = run_stage(tmp_path / "params.yaml", captions, tmp_path / "c.sqlite", tmp_path / "o.parquet")
    _, stderr = proc.communicate(timeout=60)
    message = stderr.decode()
    assert proc.returncode == 1
    assert time.monotonic() - start < 30
    assert "cannot reach the OpenAI-compatible server at http://127.0.0.1:9/v1" in message
    assert "vllm serve meta-llama/Llama-3.1-8B-Instruct" in message
    assert "tag_text.backend: offline" in message and "Traceback" not in message
    assert not (tmp_path / "o.parquet").exists()
