"""The benchmark peers compute the same step: a fast wrong peer would make a wrong comparison.

The in-place NumPy peer orders its operations differently from reference.py (and LAMB's norms
accumulate in the array's dtype), so float32 agrees to rtol 1e-5 (a few ulps of the values that
move), float64 to 1e-12.
"""
import numpy as np
import pytest

from fastopt import benchmarks as B

TOL = {np.float32: {"rtol": 1e-5, "atol": 1e-7}, np.float64: {"rtol": 1e-12, "atol": 1e-14}}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rule", sorted(B.RULES))
def test_peers_agree_with_the_reference(rule, dtype):
    sizes = [1000, 37]
    peers = {name: B.Problem.make(rule, dtype, sizes, seed=3) for name in ("numpy", "numpy-inplace", "fastopt")}
    for pr in peers.values():  # non-zero states, as after some steps
        for states in pr.states:
            for s in states:
                s[...] = np.abs(np.random.default_rng(4).standard_normal(s.size)).astype(dtype) * 1e-3
    for _ in range(3):
        for name, pr in peers.items():
            B.make_peer(pr, name)()
    ref = peers["numpy"]
    start = B.Problem.make(rule, dtype, sizes, seed=3)
    assert any(np.any(p != q) for p, q in zip(ref.params, start.params))
    for name in ("numpy-inplace", "fastopt"):
        pr = peers[name]
        for a, b in zip(pr.params + sum(pr.states, []), ref.params + sum(ref.states, [])):
            np.testing.assert_allclose(a, b, err_msg=f"{name} {rule}", **TOL[dtype])


def test_every_rule_has_an_inplace_numpy_peer():
    assert all(callable(B.make_peer(B.Problem.make(r, np.float32, [8]), "numpy-inplace")) for r in B.RULES)
