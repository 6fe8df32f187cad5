import os
import subprocess
import sys
import tempfile

import fastopt
from fastopt import _core


def test_show_config(capsys):
    fastopt.show_config()
    out = capsys.readouterr().out
    c = fastopt.config()
    assert out.startswith(f"fastopt {fastopt.__version__}")
    assert c["isa"] in out and c["isa"] in c["isa_supported"]
    assert set(c["isa_supported"]) <= set(c["isa_compiled"]) and "baseline" in c["isa_supported"]
    assert c["num_threads"] == fastopt.get_num_threads() >= 1
    assert c["thread_pool"]["max_threads"] == 1024 and c["thread_pool"]["spin_us"] >= 0
    from fastopt import precision as P
    m = c["state_memory"]
    assert m == {"huge_pages": P._huge_pages(), "huge_min_bytes": P.HUGE_MIN, "stagger_min_bytes": P.STAGGER_MIN,
                 "alignment": 64}
    assert "state memory" in out and ("huge pages (madvise)" in out) == m["huge_pages"]
    assert "every buffer on a 64-byte boundary" in out


def test_best_isa_by_default():
    assert _core.isa() == _core.supported_isas()[-1] or os.environ.get("FASTOPT_ISA")


def _isa_in_subprocess(env):
    code = "import fastopt; print(fastopt.config()['isa'], fastopt.get_num_threads())"
    # run outside the source folder, whose fastopt/ has no compiled core
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True,
                         check=True, cwd=tempfile.gettempdir())
    return out.stdout.split(), out.stderr


def test_fastopt_isa_forces_each_supported_path():
    for isa in _core.supported_isas():
        (got, _), _ = _isa_in_subprocess({"FASTOPT_ISA": isa}), None
        assert got[0] == isa


def test_unknown_fastopt_isa_warns_and_falls_back():
    (isa, _), err = _isa_in_subprocess({"FASTOPT_ISA": "sse9"})
    assert isa == _core.supported_isas()[-1]
    assert "FASTOPT_ISA='sse9'" in err


def test_omp_num_threads_is_honoured():
    (_, threads), _ = _isa_in_subprocess({"OMP_NUM_THREADS": "3"})
    assert threads == "3"


def _vendor():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("vendor_id"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def test_walk_down_against_4k_aliasing_by_vendor_and_overridden():
    """On by default on Intel CPUs only; FASTOPT_ALIAS_WALK=1 or 0 overrides; show_config says it."""
    code = "import fastopt; c = fastopt.config(); print(c['alias_walk']); fastopt.show_config()"
    runs = {}
    for value in (None, "1", "0", "yes"):
        env = {k: v for k, v in os.environ.items() if k != "FASTOPT_ALIAS_WALK"}
        if value is not None:
            env["FASTOPT_ALIAS_WALK"] = value
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True,
                             cwd=tempfile.gettempdir()).stdout
        runs[value] = out.split("\n", 1)
    vendor = _vendor()
    if vendor is not None:
        assert runs[None][0] == str(vendor == "GenuineIntel")
    assert runs["1"][0] == "True" and "4K aliasing     : on" in runs["1"][1]
    assert runs["0"][0] == "False" and "4K aliasing     : off" in runs["0"][1]
    assert runs["yes"][0] == runs[None][0]  # not 0 or 1: the default
