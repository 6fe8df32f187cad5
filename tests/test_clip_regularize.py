"""Clipping, norms and penalties against fastopt.reference (float64 accumulation: rtol 1e-12)."""
import math

import numpy as np
import pytest

import fastopt
from fastopt import reference


def grads_list(dtype, seed=0, sizes=(0, 1, 33, 16384 + 1, 100000)):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(n).astype(dtype) * 3 for n in sizes]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("p", [1.0, 2.0, math.inf, 3.0, 0.5])
def test_global_norm(dtype, p):
    gs = grads_list(dtype)
    assert fastopt.global_norm(gs, p) == pytest.approx(reference.global_norm(gs, p), rel=1e-12)
    per = fastopt.array_norms(gs, p)
    assert per.shape == (len(gs),)
    for x, g in zip(per, gs):
        assert x == pytest.approx(reference.global_norm([g], p), rel=1e-12, abs=0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("p", [1.0, 2.0, math.inf])
def test_clip_grad_norm(dtype, p):
    gs, ref = grads_list(dtype), grads_list(dtype)
    total = fastopt.clip_grad_norm_(gs, 5.0, p)
    ref_total = reference.clip_grad_norm(ref, 5.0, p)
    assert total == pytest.approx(ref_total, rel=1e-12)
    for a, b in zip(gs, ref):
        np.testing.assert_allclose(a, b, rtol=4 * np.finfo(dtype).eps)
    assert fastopt.global_norm(gs, p) == pytest.approx(5.0, rel=1e-5)


def test_clip_grad_norm_below_max_leaves_grads():
    gs = grads_list(np.float32)
    before = [g.copy() for g in gs]
    total = fastopt.clip_grad_norm_(gs, 1e9)
    assert total > 0
    for a, b in zip(gs, before):
        assert np.array_equal(a, b)


def test_clip_grad_norm_nonfinite():
    gs = grads_list(np.float32)
    gs[2][0] = np.nan
    before = [g.copy() for g in gs]
    with pytest.raises(RuntimeError, match="non-finite"):
        fastopt.clip_grad_norm_(gs, 1.0, error_if_nonfinite=True)
    for a, b in zip(gs, before):
        assert np.array_equal(a, b, equal_nan=True)
    assert math.isnan(fastopt.clip_grad_norm_(gs, 1.0))
    assert all(np.isnan(g).all() for g in gs)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_clip_grad_value(dtype):
    gs, ref = grads_list(dtype), grads_list(dtype)
    fastopt.clip_grad_value_(gs, 0.7)
    reference.clip_grad_value(ref, 0.7)
    for a, b in zip(gs, ref):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("l1,l2", [(0.01, 0.0), (0.0, 0.1), (0.01, 0.1)])
def test_regularize_and_penalty(dtype, l1, l2):
    params = grads_list(dtype, seed=5)
    gs, ref = grads_list(dtype), grads_list(dtype)
    fastopt.regularize_grad_(gs, params, l1=l1, l2=l2)
    reference.regularize_grad(ref, params, l1=l1, l2=l2)
    for a, b in zip(gs, ref):
        np.testing.assert_allclose(a, b, rtol=4 * np.finfo(dtype).eps, atol=4 * np.finfo(dtype).eps)
    assert fastopt.penalty(params, l1, l2) == pytest.approx(reference.penalty(params, l1, l2), rel=1e-12)


def test_elastic_net_matches_sklearn_convention():
    l1, l2 = fastopt.elastic_net(0.1, 0.3)
    assert (l1, l2) == pytest.approx((0.03, 0.035))
    with pytest.raises(ValueError, match="l1_ratio"):
        fastopt.elastic_net(0.1, 1.5)


def test_scale_and_all_finite():
    gs = grads_list(np.float64)
    before = [g.copy() for g in gs]
    fastopt.scale_(gs, 0.25)
    for a, b in zip(gs, before):
        assert np.array_equal(a, b * 0.25)
    assert fastopt.all_finite(gs)
    gs[3][-1] = -np.inf
    assert not fastopt.all_finite(gs)


def test_norms_bit_identical_across_threads_and_isas(restore_threads, restore_isa):
    from fastopt import _core
    gs = grads_list(np.float32, sizes=(1, 5 * 16384 + 7, 300000, 17))
    seen = set()
    for isa in _core.supported_isas():
        _core._set_isa(isa)
        for n in (1, 2, 3, 4):
            fastopt.set_num_threads(n)
            seen.add(tuple(fastopt.global_norm(gs, p) for p in (1.0, 2.0, math.inf, 3.0)))
    assert len(seen) == 1
