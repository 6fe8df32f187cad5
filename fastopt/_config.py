"""Build and run-time configuration: instruction set, threads, OpenMP."""
from __future__ import annotations

import os
import platform
import warnings
from typing import Any, Dict

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
    """Threads the kernels use (OMP_NUM_THREADS, or every core, unless set)."""
    return _core.get_num_threads()


def set_num_threads(n: int) -> None:
    """Use ``n`` threads in the kernels from now on.  Results do not depend on it."""
    _core.set_num_threads(int(n))


def config() -> Dict[str, Any]:
    """The configuration :func:`show_config` prints, as a dict."""
    omp = _core.openmp_info()
    return {
        "version": __version__,
        "isa": _core.isa(),
        "isa_compiled": list(_core.compiled_isas()),
        "isa_supported": list(_core.supported_isas()),
        "openmp": {"version": omp["version"], "library": omp["library"]},
        "num_threads": get_num_threads(),
        "machine": platform.machine(),
        "python": platform.python_version(),
    }


def show_config() -> None:
    """Print version, instruction set in use and available, OpenMP runtime and threads."""
    c = config()
    print(f"fastopt {c['version']}")
    print(f"  instruction set : {c['isa']} (compiled: {', '.join(c['isa_compiled'])}; "
          f"this CPU: {', '.join(c['isa_supported'])}; FASTOPT_ISA forces a lower one)")
    print(f"  OpenMP          : {c['openmp']['version']} ({c['openmp']['library']})")
    print(f"  threads         : {c['num_threads']} (set_num_threads, OMP_NUM_THREADS)")
    print(f"  machine         : {c['machine']}, Python {c['python']}")
