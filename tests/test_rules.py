"""Every rule x option x dtype against fastopt.reference, over several steps.

Tolerance: the kernels compute each element with the same operations in the same order as
the reference (no fused multiply-add, -ffp-contract=off), so they agree to the last bit here;
the tolerance allows 4 ulp-scale differences (rtol 4 eps of the dtype) for a libm that rounds a
per-step constant (pow, sqrt) differently, and LAMB's norms, which the reference sums in
another order.
"""
import numpy as np
import pytest

import fastopt
from fastopt import _core
from cases import CASES, PRE, RULES, case_id, make_arrays, run_fastopt, run_reference

SIZES = [0, 1, 7, 16, 17, 1000, 3 * 16384 + 5]
STEPS = 8  # RAdam's rectification starts at step 6 with beta2 = 0.999


def tol(dtype):
    eps = np.finfo(dtype).eps
    return {"rtol": 4 * eps, "atol": 4 * eps}


def run_both(name, hyper, dtype, pre=None, sizes=SIZES, steps=STEPS):
    nstate = RULES[name][1]
    params, states, rng = make_arrays(sizes, dtype, nstate)
    grads = [[rng.standard_normal(n).astype(dtype) for n in sizes] for _ in range(steps)]
    ref_p = [p.copy() for p in params]
    ref_s = [[s.copy() for s in ss] for ss in states]
    run_fastopt(name, hyper, params, grads, states, pre)
    run_reference(name, hyper, ref_p, grads, ref_s, pre)
    return params, states, ref_p, ref_s


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_rule_matches_reference(case, dtype):
    name, hyper = case
    params, states, ref_p, ref_s = run_both(name, hyper, dtype)
    for a, b in zip(params, ref_p):
        np.testing.assert_allclose(a, b, **tol(dtype))
    for ss, rr in zip(states, ref_s):
        for a, b in zip(ss, rr):
            np.testing.assert_allclose(a, b, **tol(dtype))
    assert any(not np.array_equal(p, q) for p, q in zip(params, make_arrays(SIZES, dtype, 0)[0])), "no update"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", sorted(RULES))
def test_fused_preprocessing_matches_reference(name, dtype):
    """grad_scale, clip_value, maximize and the l1/l2 penalty fused into every rule."""
    hyper = next(h for n, h in CASES if n == name)
    params, states, ref_p, ref_s = run_both(name, hyper, dtype, pre=PRE)
    for a, b in zip(params, ref_p):
        np.testing.assert_allclose(a, b, **tol(dtype))


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_every_isa_bit_identical(case, restore_isa):
    name, hyper = case
    results = {}
    for isa in _core.supported_isas():
        _core._set_isa(isa)
        for dtype in (np.float32, np.float64):
            params, states, _, _ = run_both(name, hyper, dtype, pre=PRE, steps=3)
            results.setdefault(dtype, []).append((isa, params + [s for ss in states for s in ss]))
    for dtype, runs in results.items():
        isa0, base = runs[0]
        for isa, arrays in runs[1:]:
            for a, b in zip(base, arrays):
                assert np.array_equal(a, b, equal_nan=True), f"{isa} differs from {isa0} ({dtype.__name__})"


@pytest.mark.parametrize("case", CASES[::3], ids=case_id)
def test_thread_counts_and_call_patterns_bit_identical(case, restore_threads):
    name, hyper = case
    sizes = [5 * 16384 + 3, 1, 70000, 0, 33]
    runs = []
    for threads, per_array in [(1, False), (2, False), (3, False), (4, False), (2, True)]:
        fastopt.set_num_threads(threads)
        params, states, rng = make_arrays(sizes, np.float32, RULES[name][1])
        grads = [[rng.standard_normal(n).astype(np.float32) for n in sizes] for _ in range(3)]
        run_fastopt(name, hyper, params, grads, states, PRE, per_array=per_array)
        runs.append(params + [s for ss in states for s in ss])
    for other in runs[1:]:
        for a, b in zip(runs[0], other):
            assert np.array_equal(a, b)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("hyper", [h for n, h in CASES if n == "lamb"])
def test_lamb_over_groups_of_arrays(hyper, dtype, restore_threads):
    # LAMB walks a list in groups of arrays whose parameters and moments fit in 8 MiB (an array
    # larger than that alone), both passes per group: the same bits as one call per array, on
    # 1 and 2 threads, and the reference's values
    import fastopt
    sizes = [800_000, 10, 300_000, 0, 300_000, 300_000, 5, 3 * 16384 + 5]  # several groups either dtype
    runs = []
    for threads, per_array in [(1, False), (2, False), (2, True)]:
        fastopt.set_num_threads(threads)
        params, states, rng = make_arrays(sizes, dtype, 2)
        grads = [[rng.standard_normal(n).astype(dtype) for n in sizes] for _ in range(3)]
        run_fastopt("lamb", hyper, params, grads, states, per_array=per_array)
        runs.append(params + [x for ss in states for x in ss])
    for other in runs[1:]:
        for a, b in zip(runs[0], other):
            assert np.array_equal(a, b)
    params, states, rng = make_arrays(sizes, dtype, 2)
    grads = [[rng.standard_normal(n).astype(dtype) for n in sizes] for _ in range(3)]
    run_reference("lamb", hyper, params, grads, states)
    for a, b in zip(runs[0][:len(sizes)], params):
        np.testing.assert_allclose(a, b, **tol(dtype))


def test_single_array_and_nd_shapes():
    """One array instead of a list, and any C-contiguous shape, are the same update."""
    import fastopt
    rng = np.random.default_rng(1)
    p = rng.standard_normal((30, 7)).astype(np.float32)
    g = rng.standard_normal((30, 7)).astype(np.float32)
    m, v = np.zeros_like(p), np.zeros_like(p)
    q, mq, vq = p.ravel().copy(), np.zeros(210, np.float32), np.zeros(210, np.float32)
    fastopt.adam_(p, g, m, v, step=1)
    fastopt.adam_([q], [g.ravel()], [mq], [vq], step=1)
    assert np.array_equal(p.ravel(), q) and np.array_equal(m.ravel(), mq)


def test_check_finite_skips_every_array():
    import fastopt
    rng = np.random.default_rng(2)
    params = [rng.standard_normal(n).astype(np.float32) for n in (10, 100000)]
    grads = [rng.standard_normal(n).astype(np.float32) for n in (10, 100000)]
    grads[1][54321] = np.inf
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    before = [p.copy() for p in params]
    assert fastopt.adam_(params, grads, m, v, step=1, check_finite=True) is False
    for a, b in zip(params, before):
        assert np.array_equal(a, b)
    assert not any(x.any() for x in m + v)
    grads[1][54321] = 0.0
    assert fastopt.adam_(params, grads, m, v, step=1, check_finite=True) is True
    assert not np.array_equal(params[1], before[1])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_plain_sgd_is_gd_bit_for_bit(dtype):
    """sgd_ without momentum or weight decay runs gd's loop: p + (-lr) g, the bits of gd_ and of
    the reference, non-finite values included; with weight decay it is g + wd p first."""
    import fastopt
    from fastopt import reference
    rng = np.random.default_rng(5)
    p = rng.standard_normal(1000).astype(dtype)
    p[:4] = [np.inf, -np.inf, np.nan, 0.0]
    g = rng.standard_normal(1000).astype(dtype)
    a, b, ref = p.copy(), p.copy(), p.copy()
    fastopt.sgd_([a], [g], None, step=1, lr=0.1)
    fastopt.gd_([b], [g], lr=0.1)
    reference.sgd(ref, g, None, step=1, lr=0.1)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, ref)
    c, ref = p.copy(), p.copy()
    fastopt.sgd_([c], [g], None, step=1, lr=0.1, weight_decay=0.01)
    with np.errstate(invalid="ignore"):  # inf + (-inf) in the reference's NumPy: the weight decay of p = inf
        reference.sgd(ref, g, None, step=1, lr=0.1, weight_decay=0.01)
    np.testing.assert_allclose(c, ref, rtol=1e-6 if dtype == np.float32 else 1e-14)
    assert not np.array_equal(c[4:], a[4:])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("weight_decay,decoupled,extra", [
    (0.0, False, {}), (0.0, True, {}), (0.01, True, {}), (0.01, False, {}),
    (0.0, False, {"betas": (0.3, 0.999)}), (0.01, True, {"betas": (0.5, 0.999)}),
    (0.0, False, {"eps_root": 1e-6}), (0.01, True, {"eps_root": 1e-6})],
    ids=["none", "none-decoupled", "decoupled", "l2", "none-beta1-0.3", "decoupled-beta1-0.5", "none-eps_root",
         "decoupled-eps_root"])
def test_adam_weight_decay_forms_match_the_reference_bit_for_bit(dtype, weight_decay, decoupled, extra, restore_isa):
    """Adam runs a loop of its own for no weight decay (its default) and for decoupled decay
    (AdamW's), for calls with eps_root = 0 and beta1 > 0.5 (the others take the general loop): on
    every instruction set, each gives the reference's bits over three steps, infinities, NaNs and
    signed zeros in the parameters and gradients included."""
    import fastopt
    from fastopt import reference
    rng = np.random.default_rng(11)
    p0 = rng.standard_normal(1000).astype(dtype)
    p0[:5] = [np.inf, -np.inf, np.nan, 0.0, -0.0]
    g = rng.standard_normal(1000).astype(dtype)
    g[5:9] = [np.inf, np.nan, 0.0, -0.0]
    hyper = dict(lr=0.01, weight_decay=weight_decay, decoupled_weight_decay=decoupled, **extra)
    ref_p, ref_m, ref_v = p0.copy(), np.zeros_like(p0), np.zeros_like(p0)
    ref_hyper = {k: v for k, v in hyper.items() if k != "betas"}
    if "betas" in hyper:
        ref_hyper["beta1"], ref_hyper["beta2"] = hyper["betas"]
    with np.errstate(invalid="ignore", over="ignore"):
        for t in range(1, 4):
            reference.adam(ref_p, g, ref_m, ref_v, None, step=t, **ref_hyper)
    for isa in _core.supported_isas():
        _core._set_isa(isa)
        p, m, v = p0.copy(), np.zeros_like(p0), np.zeros_like(p0)
        for t in range(1, 4):
            fastopt.adam_([p], [g], [m], [v], step=t, **hyper)
        for a, b in ((p, ref_p), (m, ref_m), (v, ref_v)):
            np.testing.assert_array_equal(a, b, err_msg=f"{isa}, {dtype.__name__}")
            assert np.array_equal(np.signbit(a), np.signbit(b)), f"{isa}, {dtype.__name__}: signs of zeros"


def _at(buf, offset, n, dtype):
    """n elements of dtype starting ``offset`` bytes into buf."""
    return buf[offset:offset + n * np.dtype(dtype).itemsize].view(dtype)


class _StepsInto:
    """Each step's gradients copied into the same arrays (placed ones) before the step."""
    def __init__(self, into, steps):
        self.into, self.steps = into, steps

    def __len__(self):
        return len(self.steps)

    def __iter__(self):
        for step in self.steps:
            for dst, src in zip(self.into, step):
                dst[...] = src
            yield self.into


# where p, g and the states start (bytes modulo 4 KiB): arrays stored that start a little above
# arrays loaded would stall a walk up on 4K aliasing, and the sweep walks down where no pair would
# stall that way (the first two); in a row 16 bytes apart pairs stall either way: it walks up
PLACEMENTS = {"g 16 below p": (16, 0, 1024, 2048, 3072), "first state 64 above g": (2048, 0, 64, 1024, 3072),
              "a row 16 apart": (0, 16, 32, 48, 64), "apart": (0, 1024, 2048, 3072, 512)}


@pytest.fixture
def alias_walk_on():
    before = _core._set_alias_walk(True)  # on whatever the CPU (by default on Intel CPUs only)
    yield
    _core._set_alias_walk(before)


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_arrays_placed_for_4k_aliasing_give_the_same_bits(case, restore_isa, alias_walk_on):
    """Where a stored array starts a little above a loaded one modulo 4 KiB the elementwise rules
    walk the arrays from the end (kernels.hpp, 4K aliasing): the same bits as the walk up, on
    every instruction set, with the fused pre-processing, for lengths that leave a head of fewer
    than a vector and cross work items; and the walk down against fastopt.reference (tol)."""
    name, hyper = case
    nstate = RULES[name][1]
    sizes = [2 * 16384 + 21, 1027, 100]  # items of 16K elements; 21 and 100 elements (under a page) walk up
    walks_per_step = 3  # the two full items and the 1027 elements
    uses_state = nstate > 0 and not (name == "sgd" and not hyper.get("momentum"))  # plain SGD is gd
    span = (max(sizes) * 8 // 4096 + 2) * 4096
    for isa in _core.supported_isas():
        _core._set_isa(isa)
        for dtype in (np.float32, np.float64):
            for where, starts in PLACEMENTS.items():
                params, states, rng = make_arrays(sizes, dtype, nstate)
                grads = [[rng.standard_normal(n).astype(dtype) for n in sizes] for _ in range(3)]
                ref_p, ref_s = [p.copy() for p in params], [[s.copy() for s in ss] for ss in states]
                buf = np.zeros(span * len(sizes) * 5 + 4096, np.uint8)
                base = -buf.ctypes.data % 4096  # buf[base] starts a page
                placed = [[_at(buf, base + span * (5 * k + j) + starts[j], n, dtype) for k, n in enumerate(sizes)]
                          for j in range(2 + nstate)]
                for dst, src in zip(placed[0], params):
                    dst[...] = src
                before = _core._down_walks()
                run_fastopt(name, hyper, placed[0], _StepsInto(placed[1], grads), placed[2:], PRE)
                walked = _core._down_walks() - before
                _core._set_alias_walk(False)  # the same steps walking up
                run_fastopt(name, hyper, params, grads, states, PRE)
                _core._set_alias_walk(True)
                walked_arrays = placed[0] + [s for ss in placed[2:] for s in ss]
                for a, b in zip(params + [s for ss in states for s in ss], walked_arrays):
                    assert np.array_equal(a, b, equal_nan=True), f"{isa} {dtype.__name__} {where}"
                if where == "g 16 below p" and isa == _core.supported_isas()[-1]:  # the walk down, reference
                    run_reference(name, hyper, ref_p, grads, ref_s, PRE)
                    for a, b in zip(ref_p + [s for ss in ref_s for s in ss], walked_arrays):
                        np.testing.assert_allclose(b, a, **tol(dtype))
                down = name != "lamb" and (where == "g 16 below p" or (where == "first state 64 above g" and uses_state))
                assert walked == (3 * walks_per_step if down else 0), f"{isa} {dtype.__name__} {where}: {walked} walks down"


def test_the_walk_down_is_off_where_switched_off(alias_walk_on):
    """Switched off (the default on CPUs but Intel's), no range walks down."""
    n = 4 * 16384
    buf = np.zeros(8 * n + 3 * 4096, np.uint8)
    base = -buf.ctypes.data % 4096
    p, g = _at(buf, base + 16, n, np.float32), _at(buf, base + 4 * n + 4096, n, np.float32)  # g 16 below p
    for on, walks in ((True, 4), (False, 0)):
        _core._set_alias_walk(on)
        before = _core._down_walks()
        fastopt.gd_([p], [g], lr=0.1)
        assert _core._down_walks() - before == walks, on
