"""What the built extension needs at run time: the C and C++ runtimes only (no OpenMP runtime
to vendor), so auditwheel / cibuildwheel make a manylinux wheel of it unchanged."""
import os
import struct
import sys

import pytest

import fastopt
from fastopt import _core

ALLOWED = ("libstdc++.so", "libm.so", "libgcc_s.so", "libc.so", "libpthread.so", "ld-linux", "libdl.so")


def _needed(path):
    """DT_NEEDED entries of a 64-bit little-endian ELF file."""
    data = open(path, "rb").read()
    assert data[:4] == b"\x7fELF" and data[4] == 2 and data[5] == 1
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    dynamic = next(s for s in sections if s[1] == 6)  # SHT_DYNAMIC
    strtab = sections[dynamic[6]]  # sh_link
    out = []
    for off in range(dynamic[4], dynamic[4] + dynamic[5], 16):
        tag, val = struct.unpack_from("<qQ", data, off)
        if tag == 0:
            break
        if tag == 1:  # DT_NEEDED
            start = strtab[4] + val
            out.append(data[start:data.index(b"\0", start)].decode())
    return out


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ELF")
def test_extension_needs_only_the_c_and_cxx_runtimes():
    needed = _needed(_core.__file__)
    assert needed and all(n.startswith(ALLOWED) for n in needed), needed
    assert not any("gomp" in n or "omp" in n for n in needed)


def test_package_carries_its_types():
    folder = os.path.dirname(fastopt.__file__)
    assert os.path.exists(os.path.join(folder, "py.typed")) and os.path.exists(os.path.join(folder, "_core.pyi"))
