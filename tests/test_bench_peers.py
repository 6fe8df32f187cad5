"""The benchmark peers compute the same step: a fast wrong peer would make a wrong comparison.

The in-place NumPy peer orders its operations differently from reference.py (and LAMB's norms
accumulate in the array's dtype), so float32 agrees to rtol 1e-5 (a few ulps of the values that
move), float64 to 1e-12.
"""
import importlib.util

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


@pytest.mark.parametrize("op", sorted(B.CLIP_OPS))
def test_clip_peers_agree(op):
    """The clip and penalty peers leave the same gradients and return the same value (the norms
    and penalties sum in float64 in both; rtol 1e-6 covers float32 rounding of the scale)."""
    torch_installed = importlib.util.find_spec("torch") is not None
    out = {}
    for peer in B.CLIP_PEERS:
        pr = B.Problem.make("gd", np.float32, [5000, 17], seed=1)
        fn = B.clip_peer(pr, op, peer)
        if fn is None:
            assert peer == "torch" and (op in ("regularize_grad_", "penalty") or not torch_installed)
            continue
        value = fn()
        out[peer] = (None if value is None else float(value), [g.copy() for g in pr.grads])
    ref_value, ref_grads = out["numpy"]
    for peer, (value, grads) in out.items():
        if ref_value is not None and value is not None:
            assert value == pytest.approx(ref_value, rel=1e-6), peer
        for g, r in zip(grads, ref_grads):
            np.testing.assert_allclose(g, r, rtol=1e-6, atol=1e-9, err_msg=peer)


def test_network_lists_have_the_published_sizes():
    assert (len(B.resnet50_sizes()), sum(B.resnet50_sizes())) == (161, 25_557_032)
    assert (len(B.gpt2_small_sizes()), sum(B.gpt2_small_sizes())) == (148, 124_439_808)
