"""Start and stop a model server around a stage (``openai.launch: true``), waiting on /health.

The server runs in its own process group, logs to a file, and is stopped with SIGTERM (then
SIGKILL after a grace period) even when the stage fails. Only the process this module started
is signalled.

The command is completed by :func:`launch_argv`: without a ``--host`` of its own it binds to the
host of ``base_url`` (loopback in the defaults) instead of ``vllm serve``'s default of every
interface, which would expose an unauthenticated model server to the network for the whole run.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from urllib.parse import urlsplit

import httpx

STOP_GRACE_S = 30.0


class ServerStartError(RuntimeError):
    """The launched server exited or did not become healthy in time."""


def _option(argv: Sequence[str], name: str) -> str | None:
    """The value of ``--name VALUE`` or ``--name=VALUE`` in ``argv`` (None when absent)."""
    for i, arg in enumerate(argv):
        if arg == name:
            return argv[i + 1] if i + 1 < len(argv) else ""
        if arg.startswith(name + "="):
            return arg[len(name) + 1:]
    return None


def launch_argv(command: Sequence[str], base_url: str) -> list[str]:
    """``command`` plus ``--host``/``--port`` taken from ``base_url`` when it lacks them.

    An explicit ``--host`` is kept (binding elsewhere is then the user's choice); a ``--port``
    that differs from the URL's is refused: the stage would wait on a port nobody serves.
    """
    parts = urlsplit(base_url)
    if not parts.hostname:
        raise ValueError(f"base_url {base_url!r} has no host")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    argv = list(command)
    given = _option(argv, "--port")
    if given is not None and given != str(port):
        raise ValueError(f"launch_command has --port {given} but base_url {base_url} uses port {port}")
    if _option(argv, "--host") is None:
        argv += ["--host", parts.hostname]
    if given is None:
        argv += ["--port", str(port)]
    return argv


def health_url(base_url: str) -> str:
    """vLLM serves /health at the root, beside the /v1 API."""
    root = base_url.rstrip("/")
    if root.endswith("/v1"):
        root = root[: -len("/v1")]
    return root + "/health"


def _log_tail(log_path: Path | None, chars: int = 3000) -> str:
    if log_path is None or not log_path.exists():
        return ""
    text = log_path.read_text(errors="replace")
    return f"\n--- last lines of {log_path} ---\n{text[-chars:]}"


def wait_healthy(base_url: str, timeout_s: float, proc: subprocess.Popen | None = None,
                 log_path: Path | None = None, poll_s: float = 1.0) -> float:
    """Poll ``/health`` until HTTP 200; return the seconds waited."""
    url, start = health_url(base_url), time.monotonic()
    while True:
        if proc is not None and proc.poll() is not None:
            raise ServerStartError(f"server exited with code {proc.returncode} before {url} "
                                   f"was healthy{_log_tail(log_path)}")
        try:
            if httpx.get(url, timeout=5.0).status_code == 200:
                return time.monotonic() - start
        except httpx.HTTPError:
            pass  # not listening yet
        if time.monotonic() - start > timeout_s:
            raise ServerStartError(f"{url} not healthy after {timeout_s:.0f} s{_log_tail(log_path)}")
        time.sleep(poll_s)


def stop_server(proc: subprocess.Popen, grace_s: float = STOP_GRACE_S) -> None:
    """SIGTERM the server's process group, SIGKILL it if it lingers."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=grace_s)


@contextlib.contextmanager
def launched_server(command: Sequence[str], base_url: str, timeout_s: float, log_path: Path,
                    env: dict[str, str] | None = None) -> Iterator[subprocess.Popen]:
    """Run ``command`` until the block ends; yields once ``/health`` answers 200."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        try:
            proc = subprocess.Popen(list(command), stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        except OSError as err:
            raise ServerStartError(f"cannot start the server {list(command)}: {err}") from None
    try:
        wait_healthy(base_url, timeout_s, proc, log_path)
        yield proc
    finally:
        stop_server(proc)
