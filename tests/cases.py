"""The rules under test, their options, and one runner shared by the tests and the benchmarks.

A case names a rule, a set of hyperparameters in the reference's spelling (beta1/beta2), and
the number of state arrays.  ``run_fastopt`` and ``run_reference`` take the same arrays and
apply ``steps`` steps with the kernels and with fastopt.reference.
"""
from __future__ import annotations

import numpy as np

import fastopt
from fastopt import reference

# rule -> (kernel function, number of state arrays, takes a step count)
RULES = {
    "gd": (fastopt.gd_, 0, False),
    "sgd": (fastopt.sgd_, 1, True),
    "adam": (fastopt.adam_, 3, True),
    "adagrad": (fastopt.adagrad_, 1, True),
    "rmsprop": (fastopt.rmsprop_, 3, False),
    "adadelta": (fastopt.adadelta_, 2, False),
    "adamax": (fastopt.adamax_, 2, True),
    "nadam": (fastopt.nadam_, 2, True),
    "radam": (fastopt.radam_, 2, True),
    "lion": (fastopt.lion_, 1, False),
    "lamb": (fastopt.lamb_, 2, True),
}

CASES = [
    ("gd", {"lr": 0.1}),
    ("sgd", {"lr": 0.1}),
    ("sgd", {"lr": 0.1, "momentum": 0.9}),
    ("sgd", {"lr": 0.05, "momentum": 0.9, "dampening": 0.1, "weight_decay": 0.01}),
    ("sgd", {"lr": 0.05, "momentum": 0.8, "nesterov": True, "weight_decay": 0.1}),
    ("adam", {"lr": 0.01}),
    ("adam", {"lr": 0.01, "weight_decay": 0.1}),
    ("adam", {"lr": 0.01, "amsgrad": True, "beta1": 0.3}),
    ("adam", {"lr": 0.01, "weight_decay": 0.1, "decoupled_weight_decay": True}),
    ("adam", {"lr": 0.01, "weight_decay": 0.1, "decoupled_weight_decay": True, "amsgrad": True}),
    ("adagrad", {"lr": 0.1}),
    ("adagrad", {"lr": 0.1, "lr_decay": 0.01, "weight_decay": 0.1}),
    ("rmsprop", {"lr": 0.01}),
    ("rmsprop", {"lr": 0.01, "centered": True}),
    ("rmsprop", {"lr": 0.01, "momentum": 0.9, "weight_decay": 0.1}),
    ("rmsprop", {"lr": 0.01, "momentum": 0.9, "centered": True, "alpha": 0.9}),
    ("adadelta", {"lr": 1.0}),
    ("adadelta", {"lr": 0.5, "rho": 0.95, "weight_decay": 0.1}),
    ("adamax", {"lr": 0.01}),
    ("adamax", {"lr": 0.01, "weight_decay": 0.1}),
    ("nadam", {"lr": 0.01}),
    ("nadam", {"lr": 0.01, "weight_decay": 0.1}),
    ("nadam", {"lr": 0.01, "weight_decay": 0.1, "decoupled_weight_decay": True}),
    ("radam", {"lr": 0.01}),
    ("radam", {"lr": 0.01, "weight_decay": 0.1, "decoupled_weight_decay": True}),
    ("lion", {"lr": 0.01}),
    ("lion", {"lr": 0.01, "weight_decay": 0.1, "beta1": 0.95, "beta2": 0.98}),
    ("lamb", {"lr": 0.01}),
    ("lamb", {"lr": 0.01, "weight_decay": 0.1}),
    # the other frameworks' forms (tests/test_conventions.py, tests/test_frameworks.py)
    ("adam", {"lr": 0.01, "convention": "optax", "nesterov": True, "weight_decay": 0.1,
              "decoupled_weight_decay": True}),
    ("adam", {"lr": 0.01, "convention": "optax", "amsgrad": True, "beta1": 0.3}),
    ("adadelta", {"lr": 0.5, "weight_decay": 0.1, "convention": "keras"}),
    ("radam", {"lr": 0.01, "convention": "optax", "eps_root": 1e-6}),
    ("lamb", {"lr": 0.01, "weight_decay": 0.1, "convention": "keras"}),
]

PRE = {"maximize": True, "grad_scale": 0.5, "clip_value": 0.8, "l1": 1e-3, "l2": 1e-2}


def case_id(case) -> str:
    name, hyper = case
    return name + "-" + "-".join(f"{k}={v}" for k, v in hyper.items())


def make_arrays(sizes, dtype, nstate, seed=0):
    """Parameters, gradients (per step) and zeroed states for arrays of the given sizes."""
    rng = np.random.default_rng(seed)
    params = [rng.standard_normal(n).astype(dtype) for n in sizes]
    states = [[np.zeros(n, dtype) for n in sizes] for _ in range(nstate)]
    return params, states, rng


def kernel_kwargs(name, hyper, t, mu_product):
    kw = dict(hyper)
    if "beta1" in kw or "beta2" in kw:
        kw["betas"] = (kw.pop("beta1", 0.9), kw.pop("beta2", 0.999 if name != "lion" else 0.99))
    if RULES[name][2]:
        kw["step"] = t
    if name == "nadam":
        kw["mu_product"] = mu_product
    return kw


def reference_kwargs(name, hyper, t, mu_product):
    kw = dict(hyper)
    if RULES[name][2]:
        kw["step"] = t
    if name == "nadam":
        kw["mu_product"] = mu_product
    return kw


def _mu_products(name, hyper, steps):
    out, prod = [], 1.0
    for t in range(1, steps + 1):
        prod *= reference.nadam_mu(t, hyper.get("beta1", 0.9), hyper.get("momentum_decay", 4e-3))
        out.append(prod)
    return out


def run_fastopt(name, hyper, params, grads_per_step, states, pre=None, per_array=False):
    """Apply len(grads_per_step) steps with the kernels; per_array: one call per array."""
    fn, _, _ = RULES[name]
    mus = _mu_products(name, hyper, len(grads_per_step))
    for t, grads in enumerate(grads_per_step, start=1):
        kw = kernel_kwargs(name, hyper, t, mus[t - 1])
        kw.update(pre or {})
        if per_array:
            for i in range(len(params)):
                fn([params[i]], [grads[i]], *[[s[i]] for s in states], **kw)
        else:
            fn(params, grads, *states, **kw)


def run_reference(name, hyper, params, grads_per_step, states, pre=None):
    mus = _mu_products(name, hyper, len(grads_per_step))
    for t, grads in enumerate(grads_per_step, start=1):
        reference.step(name, params, grads, states, **(pre or {}), **reference_kwargs(name, hyper, t, mus[t - 1]))
