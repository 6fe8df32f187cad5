"""How many threads a training run gives BLAS and fastopt's kernels.

A minibatch step alternates matmuls (BLAS's threads) and the update (fastopt's team); the two
never run at once, so each may use every free core.  Two things limit that number, both
measured (see the README, "Threads"):

- the other processes on the machine: a BLAS call splits its work evenly between its threads
  and waits for the slowest, so a thread that shares its core with a busy process holds up
  every matmul (the MNIST-shaped fit ran 2.8x slower with two BLAS threads than with one beside
  one busy process on two cores, and 1.4x faster on a quiet machine);
- the size of the matmuls: a thread needs about :data:`FLOPS_PER_THREAD` of work per call to
  pay for waking it (on a 16-core Xeon the 128 x 784 x 256 matmuls ran fastest on 4 threads).

The trainer takes the smaller of the two for BLAS, and the free cores for fastopt's kernels,
within any lower limit already set (``threadpool_limits``, ``OPENBLAS_NUM_THREADS``, ...); an
MLP's forward pass outside training (predictions, scores) gives BLAS the same share for its
rows.  The free cores are read at most every :data:`FREE_CORES_TTL` seconds.
"""
from __future__ import annotations

import contextlib
import os
import time
from typing import Iterator, Optional, Sequence, Tuple

from ._config import get_num_threads

#: floating-point operations of one matmul per BLAS thread below which another thread does not pay
FLOPS_PER_THREAD = 12.5e6
#: seconds a reading of the free cores is reused
FREE_CORES_TTL = 1.0

_free_cache = [0.0, 0]  # (time read, value)
_blas_cache: list = []  # threadpoolctl's BLAS controllers, found once


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _runnable() -> Optional[int]:
    """Threads of other processes running or ready to run now (Linux), else None."""
    try:
        with open("/proc/loadavg") as f:
            everyone = int(f.read().split()[3].split("/")[0])
        mine = 0  # this process's own: the caller, and BLAS threads still spinning after a call
        for tid in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{tid}/stat") as f:
                mine += f.read().rsplit(")", 1)[1].split()[0] == "R"
        return max(0, everyone - mine)
    except (OSError, ValueError, IndexError):
        return None


def free_cores(samples: int = 5, interval: float = 0.001, ttl: float = FREE_CORES_TTL) -> int:
    """Cores not taken by other processes: this process's CPUs minus the other processes' threads
    that are running or ready (median of a few instantaneous samples, reused for ``ttl`` seconds;
    every CPU where that is unknown)."""
    now = time.monotonic()
    if ttl > 0 and now - _free_cache[0] < ttl:
        return _free_cache[1]
    _free_cache[:] = [now, _free_cores(samples, interval)]
    return _free_cache[1]


#: a second look, where the first saw other threads: (samples, seconds apart)
CONFIRM = (7, 0.003)


def _others(samples: int, interval: float) -> Optional[int]:
    """The median of a few readings of :func:`_runnable`, ``interval`` seconds apart."""
    seen = []
    for k in range(samples):
        r = _runnable()
        if r is None:
            return None
        seen.append(r)
        if k + 1 < samples:
            time.sleep(interval)
    return sorted(seen)[len(seen) // 2]


def _free_cores(samples: int, interval: float) -> int:
    # One runnable thread that is not this process's shows up for a millisecond or two now and
    # then on a quiet machine (right after a large matmul: 1 to 3 of 5 readings 1 ms apart in
    # about a third of fits; 2 of 9 fits then ran on one thread at 1.6x the time).  A busy
    # process stays: what the first readings see is confirmed over a longer window before it
    # costs a core.
    cpus = _cpus()
    others = _others(samples, interval)
    if others:
        others = _others(*CONFIRM)
    if others is None:
        return cpus
    return max(1, min(cpus, cpus - others))


def matmul_threads(layer_sizes: Sequence[int], batch_size: int) -> int:
    """Threads the largest matmul of a step pays for (at least 1)."""
    flops = max(2.0 * batch_size * a * b for a, b in zip(layer_sizes[:-1], layer_sizes[1:]))
    return max(1, int(flops // FLOPS_PER_THREAD))


def plan(layer_sizes: Sequence[int], batch_size: int) -> Tuple[int, int]:
    """(BLAS threads, fastopt threads) for a run of this shape on this machine now."""
    free = free_cores()
    return min(free, matmul_threads(layer_sizes, batch_size)), min(free, get_num_threads())


def _blas():
    """threadpoolctl's controllers of the loaded BLAS libraries (None without threadpoolctl)."""
    if not _blas_cache:
        try:
            from threadpoolctl import ThreadpoolController
            _blas_cache.append(ThreadpoolController().select(user_api="blas"))
        except ImportError:
            _blas_cache.append(None)
    return _blas_cache[0]


@contextlib.contextmanager
def limited(blas: Optional[int], kernels: Optional[int]) -> Iterator[None]:
    """BLAS and fastopt's kernels at most at these counts inside the block (None: unchanged).
    A lower limit already in place stays; BLAS is left alone without threadpoolctl."""
    from . import _core
    with contextlib.ExitStack() as stack:
        libs = _blas() if blas is not None else None
        if libs is not None and libs.lib_controllers:
            if blas < min(lib.num_threads for lib in libs.lib_controllers):
                stack.enter_context(libs.limit(limits=blas))
        if kernels is not None and kernels < get_num_threads():
            stack.callback(_core.set_num_threads, _core._thread_setting())
            _core.set_num_threads(kernels)
        yield


def for_rows(layer_sizes: Sequence[int], rows: int) -> contextlib.AbstractContextManager:
    """BLAS's share for an MLP forward pass over ``rows`` rows (see the module's docstring)."""
    return limited(min(free_cores(), matmul_threads(layer_sizes, rows)), None)
