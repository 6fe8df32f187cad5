"""The fuzzer (fuzz_kernels.py) in a child process: a crash or a hang fails this test.

``pytest tests/test_fuzz.py --fuzz-examples 5000`` runs longer than CI's bounded default.
"""
import os
import subprocess
import sys
import tempfile


def test_fuzz_every_kernel_with_hostile_arguments(request):
    n = request.config.getoption("--fuzz-examples")
    script = os.path.join(os.path.dirname(__file__), "fuzz_kernels.py")
    out = subprocess.run([sys.executable, script, "--examples", str(n)], capture_output=True, text=True,
                         timeout=600, cwd=tempfile.gettempdir())
    assert out.returncode == 0, f"exit {out.returncode}\n{out.stdout[-3000:]}\n{out.stderr[-6000:]}"
    assert f"ok: {n} examples" in out.stdout
