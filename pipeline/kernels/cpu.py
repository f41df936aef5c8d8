"""CPU backend of the fused scorer: ``fused_cpu.cpp``, compiled once per machine and cached.

Why a plain shared library through ctypes rather than a torch C++ extension: the kernel needs no
torch headers (raw pointers in, scores out), so it builds in ~1 s instead of ~1 min, needs no
ninja/pybind11, and ctypes releases the GIL during the call, which lets Python threads split a
tile's videos (``torch.get_num_threads()`` of them). It is compiled with ``-march=native`` for the
machine it runs on; the cache key covers the source, the compiler, the flags and the CPU's
feature flags, so a shared home directory on different CPUs gets one build per CPU kind.

Cache directory: ``$MACVR_KERNEL_CACHE``, else ``$XDG_CACHE_HOME/macvr/kernels``, else
``~/.cache/macvr/kernels``. ``MACVR_FUSED_KERNEL=off`` disables the kernel (the scorer then uses
the fast form). ``python -m pipeline.kernels.cpu`` builds it ahead (``make venv`` does).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("fused_cpu.cpp")
ABI_VERSION = 2
#: -fno-math-errno lets the compiler vectorise sqrt (the kernel never reads errno).
BASE_FLAGS = ("-O3", "-std=c++17", "-fno-math-errno", "-shared", "-fPIC")
#: Tried in order: the machine's own vector ISA first, a generic build if the compiler refuses it.
ARCH_FLAGS = (("-march=native",), ())
#: Videos per thread below which splitting a call across threads costs more than it saves.
MIN_VIDEOS_PER_THREAD = 2


class KernelBuildError(RuntimeError):
    """The C++ source could not be compiled (no compiler, or it failed)."""


def cache_dir() -> Path:
    """Where built libraries live (see the module docstring)."""
    if os.environ.get("MACVR_KERNEL_CACHE"):
        return Path(os.environ["MACVR_KERNEL_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "macvr" / "kernels"


def find_compiler() -> str | None:
    """$CXX, else the first of c++, g++, clang++ on the PATH."""
    if os.environ.get("CXX"):
        return shutil.which(os.environ["CXX"]) or os.environ["CXX"]
    for name in ("c++", "g++", "clang++"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _cpu_signature() -> str:
    """The CPU's feature flags (Linux), so -march=native builds are not shared across CPU kinds."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return f"{platform.machine()} {platform.processor()}"


def _compiler_version(compiler: str) -> str:
    try:
        return subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def library_path(compiler: str, arch: tuple[str, ...]) -> Path:
    """The cached library's path for this source, compiler, flags and CPU."""
    key = hashlib.sha256()
    for part in (SOURCE.read_bytes(), compiler.encode(), _compiler_version(compiler).encode(),
                 " ".join(BASE_FLAGS + arch).encode(), _cpu_signature().encode(), platform.machine().encode()):
        key.update(part)
        key.update(b"\0")
    return cache_dir() / f"macvr_fused_{key.hexdigest()[:16]}.so"


def build(force: bool = False) -> Path:
    """Compile the kernel (unless a cached build exists) and return the library's path.

    The library is written to a temporary file and renamed into place, so concurrent builders
    (parallel test workers, two stages) never see a half-written file.
    """
    compiler = find_compiler()
    if compiler is None:
        raise KernelBuildError("no C++ compiler found (set CXX or install g++/clang++)")
    errors = []
    for arch in ARCH_FLAGS:
        target = library_path(compiler, arch)
        if target.is_file() and not force:
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=target.stem, suffix=".so.tmp", dir=target.parent)
        os.close(fd)
        cmd = [compiler, *BASE_FLAGS, *arch, str(SOURCE), "-o", tmp]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        except (OSError, subprocess.SubprocessError) as err:
            proc = None
            errors.append(f"{' '.join(cmd)}: {err}")
        if proc is not None and proc.returncode == 0:
            os.replace(tmp, target)
            log.info("built the fused CPU kernel: %s", target)
            return target
        if proc is not None:
            errors.append(f"{' '.join(cmd)}: exit {proc.returncode}: {proc.stderr.strip()[-2000:]}")
        Path(tmp).unlink(missing_ok=True)
    raise KernelBuildError("compiling the fused CPU kernel failed:\n" + "\n".join(errors))


@functools.lru_cache(maxsize=1)
def _library() -> tuple[ctypes.CDLL | None, str]:
    """(the loaded library, "") or (None, why not); built on first use, then cached per process."""
    if os.environ.get("MACVR_FUSED_KERNEL", "").lower() in ("0", "off", "false", "no"):
        return None, "disabled by MACVR_FUSED_KERNEL"
    try:
        lib = ctypes.CDLL(str(build()))
    except (KernelBuildError, OSError) as err:
        return None, str(err).splitlines()[0]
    if lib.macvr_fused_abi_version() != ABI_VERSION:
        return None, f"stale kernel library (ABI {lib.macvr_fused_abi_version()} != {ABI_VERSION})"
    ptr, i64 = ctypes.c_void_p, ctypes.c_int64
    for name, scalar in (("macvr_fused_scores_f32", ctypes.c_float), ("macvr_fused_scores_f64", ctypes.c_double)):
        fn = getattr(lib, name)
        fn.restype = None
        fn.argtypes = [i64] * 6 + [ptr] * 5 + [scalar] + [ptr] * 4 + [i64] * 3
    return lib, ""


_pools: dict[int, ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()


def _pool(threads: int) -> ThreadPoolExecutor:
    with _pools_lock:
        if threads not in _pools:
            _pools[threads] = ThreadPoolExecutor(threads, thread_name_prefix="macvr-fused")
        return _pools[threads]


class CpuFusedKernel:
    """Calls the compiled kernel on contiguous CPU tensors, splitting videos across threads."""

    name = "cpu-cpp"

    def __init__(self, lib: ctypes.CDLL, dtype: torch.dtype) -> None:
        self.dtype = dtype
        self._fn = lib.macvr_fused_scores_f32 if dtype == torch.float32 else lib.macvr_fused_scores_f64
        self.vector_bytes = int(lib.macvr_fused_vector_bytes())

    def __call__(self, a: torch.Tensor, mask: torch.Tensor, extra_row: bool, proj: torch.Tensor, cap: torch.Tensor,
                 w2: torch.Tensor, b2: float, r: torch.Tensor, ga: torch.Tensor, t_norm: torch.Tensor,
                 caption_block: int) -> torch.Tensor:
        j, n, i = a.shape
        k, h = t_norm.shape[0], w2.shape[0]
        rows = n + int(extra_row)
        shapes = {"mask": (mask.shape, (j, n)), "proj": (proj.shape, (j, rows, k * h)), "cap": (cap.shape, (i, k * h)),
                  "r": (r.shape, (k, j, n, i)), "ga": (ga.shape, (j, k, n, i)), "t_norm": (t_norm.shape, (k, i))}
        bad = {name: tuple(got) for name, (got, want) in shapes.items() if tuple(got) != want}
        if bad:
            raise ValueError(f"fused kernel: inconsistent shapes for a {tuple(a.shape)}: {bad}")
        dt = self.dtype
        a, proj, cap, w2, r, ga, t_norm = (x.to(dt).contiguous() for x in (a, proj, cap, w2, r, ga, t_norm))
        mask = mask.to(torch.uint8).contiguous()
        out = torch.empty(j, i, dtype=dt)
        args = (j, i, n, k, h, int(extra_row), a.data_ptr(), mask.data_ptr(), proj.data_ptr(), cap.data_ptr(),
                w2.data_ptr(), float(b2), r.data_ptr(), ga.data_ptr(), t_norm.data_ptr(), out.data_ptr())
        threads = min(torch.get_num_threads(), j // MIN_VIDEOS_PER_THREAD)
        if threads <= 1:
            self._fn(*args, 0, j, caption_block)
        else:
            bounds = [j * t // threads for t in range(threads + 1)]
            # ctypes releases the GIL: the threads run the kernel truly in parallel.
            jobs = [_pool(threads).submit(self._fn, *args, lo, hi, caption_block)
                    for lo, hi in zip(bounds[:-1], bounds[1:])]
            for job in jobs:
                job.result()
        return out


def load_kernel(dtype: torch.dtype) -> tuple[CpuFusedKernel | None, str]:
    """(kernel, "") for float32/float64, or (None, why not)."""
    if dtype not in (torch.float32, torch.float64):
        return None, f"the CPU kernel computes in float32 or float64, not {dtype}"
    lib, why = _library()
    if lib is None:
        return None, why
    return CpuFusedKernel(lib, dtype), ""


def main() -> int:
    """Build ahead of use; exit 1 (with the reason) when no build is possible."""
    try:
        path = build()
    except KernelBuildError as err:
        print(f"fused CPU kernel not built ({err}); method=fused will fall back to the fast form", file=sys.stderr)
        return 1
    print(f"fused CPU kernel: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
