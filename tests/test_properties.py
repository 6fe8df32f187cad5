"""Property-based: sizes (0, 1, odd, around SIMD widths and block edges), values, hyperparameters."""
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import fastopt
from fastopt import reference

CHUNK = 16384
sizes = st.one_of(
    st.sampled_from([0, 1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, CHUNK - 1, CHUNK, CHUNK + 1,
                     2 * CHUNK + 15]),
    st.integers(0, 3000),
)
values = st.floats(-1e3, 1e3, allow_nan=False, width=32)
dtypes = st.sampled_from([np.float32, np.float64])


def arr(draw, n, dtype):
    return np.array(draw(st.lists(values, min_size=n, max_size=n)) if n <= 64 else
                    np.random.default_rng(draw(st.integers(0, 2**32 - 1))).uniform(-1e3, 1e3, n), dtype=dtype)


@st.composite
def problem(draw):
    dtype = draw(dtypes)
    ns = draw(st.lists(sizes, min_size=1, max_size=4))
    params = [arr(draw, n, dtype) for n in ns]
    grads = [arr(draw, n, dtype) for n in ns]
    return dtype, params, grads


def close(a, b, dtype):
    eps = np.finfo(dtype).eps
    np.testing.assert_allclose(a, b, rtol=4 * eps, atol=4 * eps)


@settings(max_examples=60, deadline=None)
@given(problem(), st.floats(0, 1), st.floats(0, 0.999), st.floats(0, 0.9999), st.floats(1e-10, 1e-2),
       st.floats(0, 1), st.booleans(), st.integers(1, 50))
def test_adam_any_input(prob, lr, b1, b2, eps, wd, amsgrad, step):
    dtype, params, grads = prob
    states = [[np.zeros_like(p) for p in params] for _ in range(3)]
    ref_p = [p.copy() for p in params]
    ref_s = [[s.copy() for s in ss] for ss in states]
    fastopt.adam_(params, grads, *states, step=step, lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd,
                  amsgrad=amsgrad)
    reference.step("adam", ref_p, grads, ref_s, step=step, lr=lr, beta1=b1, beta2=b2, eps=eps,
                   weight_decay=wd, amsgrad=amsgrad)
    for a, b in zip(params, ref_p):
        close(a, b, dtype)


@settings(max_examples=60, deadline=None)
@given(problem(), st.floats(0, 1), st.floats(0, 0.99), st.booleans(), st.floats(0.01, 10), st.floats(0, 0.1),
       st.floats(0, 0.1))
def test_sgd_with_fused_preprocessing_any_input(prob, lr, momentum, nesterov, clip, l1, l2):
    dtype, params, grads = prob
    bufs = [np.zeros_like(p) for p in params]
    ref_p, ref_b = [p.copy() for p in params], [b.copy() for b in bufs]
    nesterov = nesterov and momentum > 0
    pre = {"clip_value": clip, "l1": l1, "l2": l2, "grad_scale": 0.5}
    for t in (1, 2):
        fastopt.sgd_(params, grads, bufs, step=t, lr=lr, momentum=momentum, nesterov=nesterov, **pre)
        reference.step("sgd", ref_p, grads, [ref_b], step=t, lr=lr, momentum=momentum, nesterov=nesterov, **pre)
    for a, b in zip(params, ref_p):
        close(a, b, dtype)


@settings(max_examples=60, deadline=None)
@given(problem(), st.sampled_from([1.0, 2.0, float("inf"), 3.0]))
def test_global_norm_any_input(prob, p):
    _, _, grads = prob
    expect = reference.global_norm(grads, p)
    got = fastopt.global_norm(grads, p)
    assert abs(got - expect) <= 1e-12 * max(expect, 1e-300)
