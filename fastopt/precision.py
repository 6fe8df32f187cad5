"""Lean precision: bfloat16 and float16 parameters, bfloat16 and 8-bit blockwise optimizer state.

The update rules compute in float32 whatever the arrays hold: the kernels widen each block of
bfloat16, float16 or 8-bit values on load and narrow it on store, in the same pass (no
temporaries).  Bytes moved per element by Adam on float32 parameters: 28 with float32 state, 20
with bfloat16 state, about 16 with 8-bit state; the optimizer state itself takes 8, 4 and about
2 bytes per parameter.

- **bfloat16** arrays are NumPy arrays of ``ml_dtypes.bfloat16`` (``pip install fastopt[lean]``);
  float16 is NumPy's own.  Stores round to nearest even, or stochastically
  (``stochastic_rounding=True``) with random bits from a counter-based hash of the seed, the
  array, its role and the element index: the same bits for a given seed whatever the thread
  count.
- **8-bit blockwise state** (:class:`Blockwise8`, after Dettmers et al. 2021, "8-bit Optimizers
  via Block-wise Quantization"): one float32 ``absmax`` per block of 256 elements and one uint8
  code per element.  Signed states (first moments, momentum) use the FP8 E4M3 code
  (``ml_dtypes.float8_e4m3fn``: 3 mantissa bits, values down to 2**-17 of the block's largest)
  of ``x * 448 / absmax``; states of values >= 0 (second moments, Adagrad's sums) use an unsigned
  E5M3 code (5 exponent bits, 3 mantissa bits, no sign bit) of ``x * 122880 / absmax``: values
  down to 6e-11 of the block's largest, within 6.25% (3.1% in their square root, the
  denominator of Adam's step).  The codes are written out in :mod:`fastopt.reference`.
"""
from __future__ import annotations

import mmap
from dataclasses import dataclass
from typing import Any, Union

import numpy as np

from . import _core

__all__ = ["Blockwise8", "quantize_8bit", "dequantize_8bit", "bfloat16", "STATE_DTYPES", "BLOCK"]

#: elements per block of 8-bit state (one float32 absmax each)
BLOCK = int(_core.QBLOCK)
#: the ``state_dtype`` values every optimizer takes
STATE_DTYPES = ("float32", "bfloat16", "int8")


def bfloat16() -> Any:
    """NumPy's bfloat16 dtype (from ml_dtypes); ImportError with the remedy when it is missing."""
    try:
        import ml_dtypes
    except ImportError:
        raise ImportError("bfloat16 arrays need ml_dtypes: pip install ml-dtypes (or fastopt[lean])") from None
    return np.dtype(ml_dtypes.bfloat16)


def is_lean_dtype(dtype: np.dtype) -> bool:
    """bfloat16 or float16."""
    return dtype == np.float16 or (dtype.kind == "V" and dtype.itemsize == 2 and dtype.name == "bfloat16")


@dataclass(eq=False)
class Blockwise8:
    """One 8-bit blockwise state: ``codes`` (uint8, the parameter's shape) and ``absmax``
    (float32, one per block of 256 elements of the flattened array); ``nonneg`` picks the code of
    values >= 0.  Pass it wherever a kernel takes a state array."""

    codes: np.ndarray
    absmax: np.ndarray
    nonneg: bool = False

    def __post_init__(self) -> None:
        self.nonneg = bool(self.nonneg)

    @property
    def shape(self):
        return self.codes.shape

    @property
    def size(self) -> int:
        return int(self.codes.size)

    @property
    def nbytes(self) -> int:
        return int(self.codes.nbytes + self.absmax.nbytes)

    def dequantize(self) -> np.ndarray:
        """The float32 values, in the codes' shape."""
        return dequantize_8bit(self)

    def copy(self) -> "Blockwise8":
        return Blockwise8(self.codes.copy(), self.absmax.copy(), self.nonneg)

    def __repr__(self) -> str:
        kind = "nonneg" if self.nonneg else "signed"
        return f"Blockwise8(shape={self.shape}, {kind}, {self.absmax.size} blocks)"


def staggered(n: int, dtype: Any, slot: int) -> np.ndarray:
    """An uninitialized 1-D array of n elements starting on a 64-byte boundary (a cache line),
    moved by ``slot`` steps of 8320 bytes (two pages and two cache lines) inside a slightly larger
    allocation (from 1 MiB up; from ``HUGE_MIN`` up in transparent huge pages).

    Large buffers of the same power-of-two size land at the same offset of consecutive mappings;
    an update walking five of them at once then loses up to a third of its speed to conflicts in
    the memory system (measured: Adam over 64M bfloat16 elements, 41 ms with aligned buffers, 26 ms
    with the state buffers moved).  NumPy starts a large array 16 bytes past a cache line, which
    makes the 8-bit Adam step over 64M float32 parameters and gradients there 4-12% slower than over
    arrays from here.  The optimizers allocate their state this way, and the MLP its parameters and
    gradients."""
    dtype = np.dtype(dtype)
    shift = stagger_shift(n, dtype.itemsize, slot)
    total = (int(n) + shift) * dtype.itemsize
    if total >= HUGE_MIN and _huge_pages():
        try:
            return _huge_buffer(total).view(dtype)[shift:]
        except OSError:  # no mapping to be had (limits): ordinary memory
            pass
    raw = np.empty(total + CACHE_LINE, np.uint8)
    start = -raw.ctypes.data % CACHE_LINE
    return raw[start:start + total].view(dtype)[shift:]


#: the alignment of every buffer from :func:`staggered`
CACHE_LINE = 64


#: buffers from this size (bytes) start on a 2 MiB boundary in memory the kernel is asked to back
#: with transparent huge pages (Linux, where THP is not off): an update streaming four 16 MiB
#: arrays through 4 KiB pages misses the TLB on every page of each
HUGE_MIN = 4 << 20
_HUGE_PAGE = 2 << 20
_huge_state: list = []


def _huge_pages() -> bool:
    """Whether madvise(MADV_HUGEPAGE) can give huge pages here (checked once)."""
    if not _huge_state:
        ok = hasattr(mmap, "MADV_HUGEPAGE")
        try:
            with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
                ok = ok and "[never]" not in f.read()
        except OSError:
            ok = False
        _huge_state.append(ok)
    return bool(_huge_state[0])


def _huge_buffer(nbytes: int) -> np.ndarray:
    """``nbytes`` zeroed bytes (uint8) from an anonymous mapping, starting on a 2 MiB boundary,
    advised for huge pages; the mapping lives as long as an array on it does.  The slack before
    the boundary is never touched, so it takes address space, not memory."""
    m = mmap.mmap(-1, nbytes + _HUGE_PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    try:
        m.madvise(mmap.MADV_HUGEPAGE)
    except OSError:  # refused: ordinary pages
        pass
    raw = np.frombuffer(m, np.uint8)
    start = -raw.ctypes.data % _HUGE_PAGE
    return raw[start:start + nbytes]


def stagger_shift(n: int, itemsize: int, slot: int) -> int:
    """Elements :func:`staggered` moves the start of buffer ``slot`` of n elements by (0 below
    ``STAGGER_MIN`` bytes)."""
    return 0 if int(n) * itemsize < STAGGER_MIN else (slot + 1) * 8320 // itemsize


#: buffers smaller than this (bytes) are not moved
STAGGER_MIN = 1 << 20


def blocks(n: int) -> int:
    """Blocks of 256 that n elements make."""
    return (int(n) + BLOCK - 1) // BLOCK


def empty_8bit(shape: Union[int, tuple], nonneg: bool = False, slot: int = 0) -> Blockwise8:
    """An all-zero 8-bit state of ``shape`` (its codes placed as :func:`staggered` places them)."""
    size = int(np.prod(shape))
    codes = staggered(size, np.uint8, slot)
    codes[...] = 0
    return Blockwise8(codes.reshape(shape), np.zeros(blocks(size), np.float32), bool(nonneg))


def quantize_8bit(x: np.ndarray, nonneg: bool = False) -> Blockwise8:
    """The 8-bit blockwise code of ``x`` (any float dtype, converted to float32; blocks run over
    the flattened array).  ``nonneg=True`` for values >= 0 (second moments)."""
    x32 = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
    if nonneg and np.any(x32 < 0):
        raise ValueError("x has negative values; nonneg=True codes values >= 0")
    q = empty_8bit(x32.shape, nonneg)
    _core.quantize_8bit_(x32.reshape(-1), q.codes.reshape(-1), q.absmax, bool(nonneg))
    return q


def dequantize_8bit(q: Blockwise8) -> np.ndarray:
    """The float32 values of an 8-bit state, in its codes' shape."""
    codes = np.ascontiguousarray(q.codes)
    out = np.empty(codes.shape, np.float32)
    _core.dequantize_8bit_(codes.reshape(-1), np.ascontiguousarray(q.absmax, dtype=np.float32), out.reshape(-1),
                           bool(q.nonneg))
    return out


def check_state_dtype(state_dtype: Any) -> str:
    if state_dtype not in STATE_DTYPES:
        raise ValueError(f"state_dtype must be one of {STATE_DTYPES}, got {state_dtype!r}")
    return str(state_dtype)


def step_seed(seed: int, step: int) -> int:
    """The kernel's seed for one step: the optimizer's seed mixed with the step count, so each
    step rounds with fresh bits (64-bit, wrapping)."""
    return (int(seed) ^ (int(step) * 0x9E3779B97F4A7C15)) & 0xFFFFFFFFFFFFFFFF
