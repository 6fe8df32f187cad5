"""Every rule, fastopt against the bandwidth probe, NumPy (naive and in place) and torch.optim, grouped
by case."""
import numpy as np
import pytest

from fastopt import _core
from fastopt import benchmarks as B

ALL = _core.get_num_threads()
THREADS = sorted({1, ALL})


def run_peer(benchmark, rule, dtype, sizes, threads, peer, label=None):
    B.set_threads(threads)
    pr = B.Problem.make(rule, dtype, sizes)
    fn = B.make_peer(pr, peer)
    if fn is None:
        pytest.skip(f"{peer} has no {rule}")
    label = label or str(sizes[0])
    benchmark.group = f"{rule} {np.dtype(dtype).name} n={label} threads={threads}"
    benchmark.extra_info.update(bytes=pr.bytes, elements=pr.elements, peer=peer)
    benchmark(fn)
    if peer != "probe":  # the step ran: the parameters moved (the probe writes them back unchanged)
        assert any(np.any(p != q) for p, q in zip(pr.params, B.Problem.make(rule, dtype, sizes).params))


@pytest.mark.parametrize("peer", B.PEERS)
@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rule", sorted(B.RULES))
def test_size_sweep(benchmark, rule, dtype, size, threads, peer):
    """Every rule, both dtypes, from 1K (in cache: per-call overhead) to 64M (memory-bound), one
    thread and all; the full matrix is long: pick with -k, e.g. -k "adam and float32"."""
    run_peer(benchmark, rule, dtype, [size], threads, peer)


@pytest.mark.parametrize("peer", ["fastopt", "probe", "numpy-inplace", "torch-foreach", "torch-fused", "fastopt.torch"])
@pytest.mark.parametrize("rule", ["adam", "adamw", "sgd"])
@pytest.mark.parametrize("network", sorted(B.NETWORKS))
def test_network_parameter_list(benchmark, smoke, network, rule, peer):
    """A real network's parameter list in one call: ResNet-50 (161 arrays, 25.6M elements) and
    GPT-2 small (148 arrays, 124.4M elements)."""
    sizes = B.NETWORKS[network]()
    if smoke:
        sizes = [max(1, n // 1000) for n in sizes]
    run_peer(benchmark, rule, np.float32, sizes, ALL, peer, label=network)


@pytest.mark.parametrize("way", ["fastopt-fused", "fastopt-separate", "torch-fused"])
def test_fused_clip_adamw(benchmark, smoke, way):
    """Global-norm clip + AdamW: fused into the update vs clip then update."""
    pr = B.Problem.make("adamw", np.float32, [1024 if smoke else 16 << 20])
    for g in pr.grads:
        g *= 1e4  # over max_norm, so the clip scales
    steps = B.fused_clip_steps(pr)
    if way not in steps:
        pytest.skip("torch is not installed")
    benchmark.group = f"clip+adamw float32 n={pr.elements}"
    benchmark.extra_info.update(bytes=pr.bytes, elements=pr.elements, peer=way)
    benchmark(steps[way])


@pytest.mark.parametrize("rule", ["gd", "sgd", "adam", "lamb"])
def test_call_overhead_tiny(benchmark, rule):
    """One call on 16 elements: the fixed cost of a step."""
    pr = B.Problem.make(rule, np.float32, [16])
    benchmark.group = "overhead n=16"
    benchmark(B.fastopt_step(pr))


@pytest.mark.parametrize("peer", B.CLIP_PEERS)
@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("op", sorted(B.CLIP_OPS))
def test_clip_and_regularize(benchmark, op, dtype, size, threads, peer):
    """The clip and penalty kernels against the NumPy reference and torch's clip functions."""
    B.set_threads(threads)
    pr = B.Problem.make("gd", dtype, [size])
    fn = B.clip_peer(pr, op, peer)
    if fn is None:
        pytest.skip(f"{peer} has no {op}")
    benchmark.group = f"{op} {np.dtype(dtype).name} n={size} threads={threads}"
    benchmark.extra_info.update(bytes=size * np.dtype(dtype).itemsize * B.CLIP_OPS[op], elements=size, peer=peer)
    benchmark(fn)
