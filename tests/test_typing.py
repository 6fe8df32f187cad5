"""The typed API: _core.pyi matches the compiled module, py.typed ships, and the public API passes
``mypy --strict`` on a file that uses it (tests/typing_check.py)."""
import ast
import os
import re
import shutil
import subprocess
import sys

import pytest

import fastopt
from fastopt import _core

HERE = os.path.dirname(__file__)


def _stub_functions():
    path = os.path.join(os.path.dirname(fastopt.__file__), "_core.pyi")
    tree = ast.parse(open(path, encoding="utf-8").read())
    return {n.name: [a.arg for a in n.args.args] for n in tree.body if isinstance(n, ast.FunctionDef)}


def test_py_typed_and_stub_ship():
    folder = os.path.dirname(fastopt.__file__)
    assert os.path.exists(os.path.join(folder, "py.typed")) and os.path.exists(os.path.join(folder, "_core.pyi"))


def test_stub_matches_the_extension():
    stub = _stub_functions()
    live = {name for name in dir(_core) if callable(getattr(_core, name)) and not name.startswith("__")}
    assert set(stub) == live
    for name, params in stub.items():
        first = getattr(_core, name).__doc__.splitlines()[0]
        inside = first[first.index("(") + 1:first.rindex(") ->")]
        assert re.findall(r"(\w+):", inside) == params, name


def test_public_api_passes_mypy_strict(tmp_path):
    if shutil.which("mypy") is None and subprocess.run([sys.executable, "-m", "mypy", "--version"],
                                                      capture_output=True).returncode != 0:
        pytest.skip("mypy is not installed")
    shutil.copy(os.path.join(HERE, "typing_check.py"), tmp_path)
    out = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-incremental", "typing_check.py"],
                         capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
