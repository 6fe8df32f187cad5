"""Adam's formula as torch, Keras and optax write it, and the textbook forms (eps_root,
bias_correction): the kernel against fastopt.reference on every instruction set, and both against
the formulas written out as each framework's code does.  Tolerance: 4 machine epsilons against
the reference (same order of operations); 1e-12 relative in float64 against the written-out
formulas (those order the operations their own way)."""
import math

import numpy as np
import pytest

import fastopt
from fastopt import _core, optim, reference

CONVENTIONS = ["torch", "keras", "optax"]


@pytest.fixture(params=_core.supported_isas())
def isa(request, restore_isa):
    _core._set_isa(request.param)


def _problem(dtype, n=257, seed=0):
    rng = np.random.default_rng(seed)
    p = rng.standard_normal(n).astype(dtype)
    grads = [rng.standard_normal(n).astype(dtype) for _ in range(5)]
    return p, grads


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("convention", CONVENTIONS)
@pytest.mark.parametrize("options", [{}, {"eps_root": 1e-6}, {"bias_correction": False}, {"amsgrad": True},
                                     {"eps": 0.0, "eps_root": 1e-8, "bias_correction": False},
                                     {"weight_decay": 0.1, "decoupled": True}])
def test_kernel_matches_reference(isa, dtype, convention, options):
    options = dict(options)
    decoupled = options.pop("decoupled", False)
    p, grads = _problem(dtype)
    q = p.copy()
    m, v, vmax = (np.zeros_like(p) for _ in range(3))
    rm, rv, rvmax = (np.zeros_like(p) for _ in range(3))
    for t, g in enumerate(grads, start=1):
        fastopt.adam_(p, g, m, v, vmax, step=t, lr=1e-2, convention=convention, decoupled_weight_decay=decoupled,
                      **options)
        reference.adam(q, g, rm, rv, rvmax, step=t, lr=1e-2, convention=convention,
                       decoupled_weight_decay=decoupled, **options)
    tol = 4 * np.finfo(dtype).eps
    np.testing.assert_allclose(p, q, rtol=tol, atol=tol)


def _written_out(convention, p, grads, lr=1e-2, b1=0.9, b2=0.999, eps=1e-7, eps_root=0.0, bias=True):
    m = np.zeros_like(p)
    v = np.zeros_like(p)
    for t, g in enumerate(grads, start=1):
        bc1 = 1 - b1 ** t if bias else 1.0
        bc2 = 1 - b2 ** t if bias else 1.0
        if convention == "keras":  # keras/src/optimizers/adam.py
            alpha = lr * math.sqrt(bc2) / bc1
            m += (g - m) * (1 - b1)
            v += (g * g - v) * (1 - b2)
            p -= (m * alpha) / (np.sqrt(v + eps_root) + eps)
        elif convention == "optax":  # optax scale_by_adam, then scale(-lr)
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * g * g
            p += -lr * ((m / bc1) / (np.sqrt(v / bc2 + eps_root) + eps))
        else:  # torch/optim/adam.py, single tensor
            m = m + (1 - b1) * (g - m)
            v = b2 * v + (1 - b2) * g * g
            p -= lr / bc1 * m / (np.sqrt(v + eps_root) / math.sqrt(bc2) + eps)
    return p


@pytest.mark.parametrize("convention", CONVENTIONS)
@pytest.mark.parametrize("eps_root, bias", [(0.0, True), (1e-6, True), (1e-8, False)])
def test_kernel_matches_each_frameworks_written_formula(convention, eps_root, bias):
    p, grads = _problem(np.float64, seed=1)
    want = _written_out(convention, p.copy(), grads, eps_root=eps_root, bias=bias)
    m, v = np.zeros_like(p), np.zeros_like(p)
    for t, g in enumerate(grads, start=1):
        fastopt.adam_(p, g, m, v, step=t, lr=1e-2, eps=1e-7, eps_root=eps_root, bias_correction=bias,
                      convention=convention)
    np.testing.assert_allclose(p, want, rtol=1e-12, atol=1e-14)


def test_the_textbook_adam():
    """p -= lr m / sqrt(v + eps), no bias correction: Adam(eps=0.0, eps_root=1e-8, bias_correction=False)."""
    p, grads = _problem(np.float64, seed=2)
    want = p.copy()
    m, v = np.zeros_like(p), np.zeros_like(p)
    for g in grads:
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        want -= 1e-2 * m / np.sqrt(v + 1e-8)
    opt = optim.Adam([p], lr=1e-2, eps=0.0, eps_root=1e-8, bias_correction=False)
    for g in grads:
        opt.step([g])
    np.testing.assert_allclose(p, want, rtol=1e-12)


def test_convention_defaults_and_checks():
    x = [np.zeros(3, np.float32)]
    assert optim.Adam(x, convention="keras").param_groups[0]["eps"] == 1e-7
    assert optim.Adam(x, convention="keras", eps=1e-3).param_groups[0]["eps"] == 1e-3
    assert optim.AdamW(x, convention="keras").param_groups[0]["weight_decay"] == 0.004
    assert optim.AdamW(x, convention="optax").param_groups[0]["weight_decay"] == 1e-4
    assert optim.Adam(x).param_groups[0]["convention"] == "torch"
    with pytest.raises(ValueError, match="convention must be"):
        optim.Adam(x, convention="jax")
    with pytest.raises(ValueError, match="convention must be"):
        fastopt.adam_(x, x, [np.zeros(3, np.float32)], [np.zeros(3, np.float32)], step=1, convention="jax")
    with pytest.raises(ValueError, match="eps must be"):
        fastopt.adam_(x, x, [np.zeros(3, np.float32)], [np.zeros(3, np.float32)], step=1, eps=0.0)


# -- SGD, RMSprop, Adagrad in Keras' form (optax's RMSprop and Adagrad are the same form) --------

def _keras_sgd(p, grads, lrs, mom, nesterov, wd):
    """keras/src/optimizers/sgd.py, weight decay as keras' apply_weight_decay."""
    v = np.zeros_like(p)
    for g, lr in zip(grads, lrs):
        p -= p * wd * lr
        if mom:
            v = -g * lr + v * mom
            p += (-g * lr + v * mom) if nesterov else v
        else:
            p -= g * lr
    return p


def _keras_rmsprop(p, grads, lr, rho, eps, mom, centered):
    """keras/src/optimizers/rmsprop.py."""
    v, a, m = np.zeros_like(p), np.zeros_like(p), np.zeros_like(p)
    for g in grads:
        v = rho * v + (1 - rho) * g * g
        if centered:
            a = rho * a + (1 - rho) * g
            denom = v - a * a + eps
        else:
            denom = v + eps
        inc = lr * g / np.sqrt(denom)
        if mom:
            m = mom * m + inc
            p -= m
        else:
            p -= inc
    return p


def _keras_adagrad(p, grads, lr, init, eps):
    """keras/src/optimizers/adagrad.py."""
    acc = np.full_like(p, init)
    for g in grads:
        acc += g * g
        p -= lr * g / np.sqrt(acc + eps)
    return p


@pytest.mark.parametrize("mom, nesterov, wd", [(0.0, False, 0.0), (0.9, False, 0.0), (0.9, True, 1e-2)])
def test_keras_sgd_velocity_form_even_as_the_rate_changes(mom, nesterov, wd):
    p, grads = _problem(np.float64, seed=3)
    lrs = [0.1, 0.05, 0.2, 0.01, 0.1]
    want = _keras_sgd(p.copy(), grads, lrs, mom, nesterov, wd)
    opt = optim.SGD([p], convention="keras", momentum=mom, nesterov=nesterov, weight_decay=wd)
    for g, lr in zip(grads, lrs):
        opt.lr = lr
        opt.step([g])
    np.testing.assert_allclose(p, want, rtol=1e-12, atol=1e-14)
    if mom:  # torch's form differs once the rate changes
        q, _ = _problem(np.float64, seed=3)
        t = optim.SGD([q], momentum=mom, nesterov=nesterov)
        for g, lr in zip(grads, lrs):
            t.lr = lr
            t.step([g])
        assert not np.allclose(q, p)


@pytest.mark.parametrize("mom, centered", [(0.0, False), (0.5, False), (0.0, True), (0.5, True)])
@pytest.mark.parametrize("convention", ["keras", "optax"])
def test_keras_and_optax_rmsprop(mom, centered, convention):
    p, grads = _problem(np.float64, seed=4)
    opt = optim.RMSprop([p.copy()], convention=convention, momentum=mom, centered=centered)
    g0 = opt.param_groups[0]
    assert g0["alpha"] == 0.9 and g0["eps"] == (1e-7 if convention == "keras" else 1e-8)
    want = _keras_rmsprop(p.copy(), grads, g0["lr"], 0.9, g0["eps"], mom, centered)
    for g in grads:
        opt.step([g])
    np.testing.assert_allclose(opt.param_groups[0]["params"][0], want, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("convention", ["keras", "optax"])
def test_keras_and_optax_adagrad(convention):
    p, grads = _problem(np.float64, seed=5)
    opt = optim.Adagrad([p.copy()], convention=convention)
    g0 = opt.param_groups[0]
    assert g0["initial_accumulator_value"] == 0.1 and g0["eps"] == 1e-7
    want = _keras_adagrad(p.copy(), grads, g0["lr"], 0.1, 1e-7)
    for g in grads:
        opt.step([g])
    np.testing.assert_allclose(opt.param_groups[0]["params"][0], want, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rule", ["sgd", "rmsprop", "adagrad"])
def test_keras_forms_match_the_reference(isa, dtype, rule):
    p, grads = _problem(dtype, seed=6)
    q = p.copy()
    s = [np.zeros_like(p) for _ in range(3)]
    r = [np.zeros_like(p) for _ in range(3)]
    for t, g in enumerate(grads, start=1):
        if rule == "sgd":
            fastopt.sgd_(p, g, s[0], step=t, lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01,
                         convention="keras")
            reference.sgd(q, g, r[0], step=t, lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01,
                          convention="keras")
        elif rule == "rmsprop":
            fastopt.rmsprop_(p, g, s[0], s[1], s[2], lr=0.01, alpha=0.9, eps=1e-7, momentum=0.5, centered=True,
                             convention="keras")
            reference.rmsprop(q, g, r[0], r[1], r[2], lr=0.01, alpha=0.9, eps=1e-7, momentum=0.5, centered=True,
                              convention="keras")
        else:
            fastopt.adagrad_(p, g, s[0], step=t, lr=0.05, eps=1e-7, convention="keras")
            reference.adagrad(q, g, r[0], step=t, lr=0.05, eps=1e-7, convention="keras")
    tol = 4 * np.finfo(dtype).eps
    np.testing.assert_allclose(p, q, rtol=tol, atol=tol)


def test_keras_form_refuses_torch_only_options():
    x = [np.zeros(3, np.float32)]
    with pytest.raises(ValueError, match="dampening must be 0"):
        fastopt.sgd_(x, [np.ones(3, np.float32)], [np.zeros(3, np.float32)], step=1, lr=0.1, momentum=0.9,
                     dampening=0.1, convention="keras")
    with pytest.raises(ValueError, match="lr_decay is torch's"):
        fastopt.adagrad_(x, [np.ones(3, np.float32)], [np.zeros(3, np.float32)], step=1, lr_decay=0.1,
                         convention="keras")


def test_keras_adamax_and_nadam():
    p, grads = _problem(np.float64, seed=7)
    opt = optim.Adamax([p.copy()], convention="keras", weight_decay=0.01)
    g0 = opt.param_groups[0]
    assert g0["lr"] == 1e-3 and g0["eps"] == 1e-7
    want = p.copy()  # keras/src/optimizers/adamax.py
    m, u = np.zeros_like(p), np.zeros_like(p)
    for t, g in enumerate(grads, start=1):
        want -= want * 0.01 * 1e-3
        m += (g - m) * (1 - 0.9)
        u = np.maximum(0.999 * u, np.abs(g))
        want -= (1e-3 * m) / ((1 - 0.9 ** t) * (u + 1e-7))
    for g in grads:
        opt.step([g])
    np.testing.assert_allclose(opt.param_groups[0]["params"][0], want, rtol=1e-12, atol=1e-14)
    q, r = p.copy(), p.copy()
    qm, qu, rm, ru = (np.zeros_like(p) for _ in range(4))
    for t, g in enumerate(grads, start=1):
        fastopt.adamax_(q, g, qm, qu, step=t, lr=1e-2, eps=1e-7, convention="keras")
        reference.adamax(r, g, rm, ru, step=t, lr=1e-2, eps=1e-7, convention="keras")
    np.testing.assert_allclose(q, r, rtol=4e-16 * 4, atol=1e-15)
    # Keras' Nadam (keras/src/optimizers/nadam.py) is torch's update with Keras' defaults, its
    # momentum schedule 0.96^t (torch's 0.96^(t momentum_decay) with momentum_decay 1)
    n = optim.NAdam([p.copy()], convention="keras")
    assert n.param_groups[0]["eps"] == 1e-7 and n.param_groups[0]["decoupled_weight_decay"]
    assert n.param_groups[0]["momentum_decay"] == 1.0
    want = p.copy()
    m, v, u_prod = np.zeros_like(p), np.zeros_like(p), 1.0
    for t, g in enumerate(grads, start=1):
        u_t = 0.9 * (1 - 0.5 * 0.96 ** t)
        u_t1 = 0.9 * (1 - 0.5 * 0.96 ** (t + 1))
        u_prod *= u_t
        m += (g - m) * 0.1
        v += (g * g - v) * 0.001
        m_hat = u_t1 * m / (1 - u_prod * u_t1) + (1 - u_t) * g / (1 - u_prod)
        want -= 1e-3 * m_hat / (np.sqrt(v / (1 - 0.999 ** t)) + 1e-7)
    for g in grads:
        n.step([g])
    np.testing.assert_allclose(n.param_groups[0]["params"][0], want, rtol=1e-12, atol=1e-14)
    with pytest.raises(ValueError, match="convention must be one of"):
        optim.NAdam([p.copy()], convention="mxnet")
