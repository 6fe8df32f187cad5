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
    path = os.path.join(os.path.dirname(fastopt.__file__), "_core.pyi")
    classes = {n.name for n in ast.parse(open(path, encoding="utf-8").read()).body if isinstance(n, ast.ClassDef)}
    assert set(stub) | classes == live
    assert all(isinstance(getattr(_core, name), type) for name in classes)
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


def _stub_classes(path):
    tree = ast.parse(open(path, encoding="utf-8").read())
    out = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name == "__init__":
                    a = item.args
                    names = [x.arg for x in a.args[1:]] + [x.arg for x in a.kwonlyargs]
                    defaults = [ast.literal_eval(d) for d in a.defaults] + \
                        [ast.literal_eval(d) if d is not None else None for d in a.kw_defaults]
                    out[node.name] = (names, defaults)
    return out


@pytest.mark.parametrize("module", ["fastopt.optim.optimizers", "fastopt.torch"])
def test_optimizer_stubs_match_the_classes(module):
    import importlib
    import inspect
    if module == "fastopt.torch":
        pytest.importorskip("torch")
    mod = importlib.import_module(module)
    stub = _stub_classes(mod.__file__[:-3] + ".pyi")
    classes = {n: c for n, c in vars(mod).items() if isinstance(c, type) and c.__module__ == mod.__name__
               and hasattr(c, "__signature__")}
    assert set(classes) <= set(stub) and len(classes) == 11
    for name, cls in classes.items():
        sig = list(inspect.signature(cls).parameters.values())
        names, defaults = stub[name]
        assert names == [p.name for p in sig], name
        assert defaults == [p.default for p in sig[1:]], name


def test_mypy_sees_the_optimizer_keywords(tmp_path):
    if subprocess.run([sys.executable, "-m", "mypy", "--version"], capture_output=True).returncode != 0:
        pytest.skip("mypy is not installed")
    (tmp_path / "bad.py").write_text("import numpy as np\nfrom fastopt import optim\n"
                                     "optim.Adam([np.zeros(3)], lr=1e-3, betaz=(0.9, 0.99))\n")
    out = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-incremental", "bad.py"],
                         capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert out.returncode == 1 and 'Unexpected keyword argument "betaz"' in out.stdout, out.stdout
