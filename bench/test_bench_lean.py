"""Lean precision: one Adam step with float32, bfloat16 and 8-bit state, on a float32 and a
bfloat16 model, against torch's fused Adam, bitsandbytes' 8-bit Adam (where it installs) and the
probe moving the same bytes (fastopt.leanbench; ``fastopt bench --lean`` prints the table with
the ratios).  64M elements, or 64K with ``--benchmark-disable`` (the smoke test CI runs)."""
import pytest

pytest.importorskip("ml_dtypes")
from fastopt import leanbench as L  # noqa: E402

NAMES = [p.name for p in L.peers(16)]  # the peers this machine can run


@pytest.fixture(scope="module")
def problem(request):
    smoke = request.config.getoption("benchmark_disable", False)
    n = 1 << 16 if smoke else 64 * 2**20
    return {p.name: p for p in L.peers(n)}, n


@pytest.mark.parametrize("name", NAMES)
def test_lean_adam(benchmark, problem, name):
    peers, n = problem
    peer = peers[name]
    benchmark.group = f"adam lean {peer.model} model, n={n}"
    benchmark.extra_info.update({"state": peer.state, "bytes_per_element": peer.bytes_per_element,
                                 "state_bytes_per_param": L.state_bytes(peer.state)})
    benchmark(peer.step)
