"""Every Python block of the README runs as written (in a fresh interpreter, in a scratch folder)."""
import os
import re
import subprocess
import sys

import pytest

README = os.path.join(os.path.dirname(__file__), os.pardir, "README.md")
BLOCKS = re.findall(r"```python\n(.*?)```", open(README, encoding="utf-8").read(), re.S)


def test_the_readme_has_python_blocks():
    assert len(BLOCKS) >= 5


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_block_runs(index, tmp_path):
    code = BLOCKS[index]
    needs = [m for m in ("torch", "sklearn") if re.search(rf"^\s*(import|from) {m}\b", code, re.M)]
    for m in needs:
        pytest.importorskip(m)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, cwd=tmp_path,
                         env={**os.environ, "MPLBACKEND": "Agg"})
    assert out.returncode == 0, f"README block {index} failed:\n{code}\n{out.stderr[-3000:]}"
