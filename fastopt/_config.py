"""Build and run-time configuration: instruction set, threads and where optimizer state lives."""
from __future__ import annotations

import os
import platform
import warnings
from typing import Any, Dict

import numpy as np

try:
    from . import _core
except ImportError as exc:  # the source folder, which has no compiled core, shadows the installed package
    import fastopt as _pkg

    raise ImportError(
        f"fastopt's compiled core (_core) is missing from {_pkg.__path__[0]}. Install with `pip install .` and "
        "run from outside the source folder (run the tests with `pytest tests`, not `python -m pytest`)."
    ) from exc

__version__: str = getattr(_core, "__version__", "0.0.0")

_forced = os.environ.get("FASTOPT_ISA")
if _forced and _forced != _core.isa():
    warnings.warn(f"FASTOPT_ISA={_forced!r} is not one of this CPU's instruction sets "
                  f"{_core.supported_isas()}; using {_core.isa()!r}", RuntimeWarning, stacklevel=2)


def get_num_threads() -> int:
    """Threads a kernel call may use: :func:`set_num_threads`' value, else ``OMP_NUM_THREADS``,
    else every CPU this process may run on.  Read at every call, so ``threadpoolctl``'s limits
    and later changes take effect at once."""
    return _core.get_num_threads()


def set_num_threads(n: int) -> None:
    """Use at most ``n`` threads (1 to 1024) in the kernels from now on; results do not depend on it.
    ``0`` goes back to the default (``OMP_NUM_THREADS``, else every CPU).

    Calls below about 64K elements run on the calling thread whatever ``n`` is.  ``threadpoolctl``
    governs the same setting: ``threadpool_limits(1)`` limits fastopt with BLAS and OpenMP.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"n must be an int, got {type(n).__name__}")
    _core.set_num_threads(int(n))


def _register_threadpoolctl() -> None:
    """Make fastopt's thread team visible to threadpoolctl (``threadpool_info``, ``threadpool_limits``)."""
    try:
        import threadpoolctl
    except ImportError:
        return
    if not hasattr(threadpoolctl, "register"):  # threadpoolctl < 3.5
        return

    class FastoptController(threadpoolctl.LibController):
        user_api = "fastopt"
        internal_api = "fastopt"
        filename_prefixes = ("_core",)
        check_symbols = ("fastopt_get_num_threads", "fastopt_set_num_threads")

        def get_num_threads(self) -> int:
            return int(self.dynlib.fastopt_get_num_threads())

        def set_num_threads(self, num_threads: int) -> None:
            self.dynlib.fastopt_set_num_threads(int(num_threads))

        def get_version(self) -> str:
            return __version__

    threadpoolctl.register(FastoptController)


_register_threadpoolctl()


def config() -> Dict[str, Any]:
    """The configuration :func:`show_config` prints, as a dict."""
    from . import precision as P  # placed here: precision is not needed to import fastopt's config

    pool = _core.pool_info()
    return {
        "version": __version__,
        "isa": _core.isa(),
        "isa_compiled": list(_core.compiled_isas()),
        "isa_supported": list(_core.supported_isas()),
        "num_threads": get_num_threads(),
        "thread_pool": {"workers": pool["workers"], "spin_us": pool["spin_us"], "max_threads": pool["max_threads"]},
        "alias_walk": _core._alias_walk(),
        "state_memory": {"huge_pages": P._huge_pages(), "huge_min_bytes": P.HUGE_MIN,
                         "stagger_min_bytes": P.STAGGER_MIN, "alignment": P.CACHE_LINE},
        "machine": platform.machine(),
        "python": platform.python_version(),
    }


def show_config() -> None:
    """Print version, instruction set in use and available, threads and where optimizer state lives."""
    c = config()
    print(f"fastopt {c['version']}")
    print(f"  instruction set : {c['isa']} (compiled: {', '.join(c['isa_compiled'])}; "
          f"this CPU: {', '.join(c['isa_supported'])}; FASTOPT_ISA forces a lower one)")
    t = c["thread_pool"]
    print(f"  threads         : {c['num_threads']} (set_num_threads, OMP_NUM_THREADS, threadpoolctl); "
          f"fastopt's own team: {t['workers']} workers started, {t['spin_us']} us spin, then sleep")
    walk = ("on: a range whose arrays would stall on 4K aliasing walking up is walked down" if c["alias_walk"]
            else "off: ranges walk up (stalls measured on Intel CPUs only; walking down was slower elsewhere)")
    print(f"  4K aliasing     : {walk} (FASTOPT_ALIAS_WALK=1 or 0 overrides)")
    m = c["state_memory"]
    where = (f"from {m['huge_min_bytes'] >> 20} MiB in transparent huge pages (madvise)" if m["huge_pages"]
             else "ordinary pages (transparent huge pages off or unavailable)")
    print(f"  state memory    : optimizer state and MLP parameters {where}; every buffer on a "
          f"{m['alignment']}-byte boundary, from {m['stagger_min_bytes'] >> 20} MiB staggered")
    print(f"  machine         : {c['machine']}, Python {c['python']}")
