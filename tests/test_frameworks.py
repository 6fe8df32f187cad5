"""Every convention against the framework's own optimizer, step by step: Keras 3 (its NumPy
backend) and optax (on jax), where they install; skipped where they do not.

optax in float64 (jax_enable_x64) agrees with fastopt to rtol 1e-10 over 8 steps (the same
formulas; the last bits differ where the operations are ordered differently).  In float32 both
frameworks agree to 2e-5 (a few float32 roundings per step, over 8 steps), except RAdam, where
optax computes rho_t in float32 as 1999 minus a number near 1994 (a cancellation that costs
about 1e-4 of r_t), so its float32 check is 2e-4.  Keras is compared in float32 only: its NumPy
backend rounds a float64 variable's update through float32 (SGD on float64 gives
1 - 0.05 * 0.2 = 0.99000001).
"""
import os

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "numpy")
keras = pytest.importorskip("keras")
optax = pytest.importorskip("optax")
import jax  # noqa: E402  (optax's dependency)

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402

from fastopt import optim  # noqa: E402

STEPS = 8
K = keras.optimizers


def _data(dtype):
    rng = np.random.default_rng(0)
    p0 = rng.standard_normal(64).astype(dtype)
    return p0, [rng.standard_normal(64).astype(dtype) for _ in range(STEPS)]


def keras_run(make, dtype, lrs=None):
    p0, grads = _data(dtype)
    opt = make()
    v = keras.Variable(p0.copy(), dtype=np.dtype(dtype).name)
    for t, g in enumerate(grads):
        if lrs is not None:
            opt.learning_rate = lrs[t]
        opt.apply_gradients([(g, v)])
    return np.asarray(v.numpy())


def optax_run(tx, dtype):
    p0, grads = _data(dtype)
    params = jnp.asarray(p0)
    state = tx.init(params)
    for g in grads:
        updates, state = tx.update(jnp.asarray(g), state, params)
        params = optax.apply_updates(params, updates)
    return np.asarray(params)


def fastopt_run(cls, dtype, lrs=None, **kw):
    p0, grads = _data(dtype)
    p = p0.copy()
    opt = cls([p], **kw)
    for t, g in enumerate(grads):
        if lrs is not None:
            opt.lr = lrs[t]
        opt.step([g])
    return p


KERAS = {
    "adam": (lambda: K.Adam(learning_rate=0.01), optim.Adam, {"lr": 0.01}),
    "adam-amsgrad-wd": (lambda: K.Adam(learning_rate=0.01, amsgrad=True, weight_decay=0.1), optim.Adam,
                        {"lr": 0.01, "amsgrad": True, "weight_decay": 0.1}),
    "adamw": (lambda: K.AdamW(learning_rate=0.01), optim.AdamW, {"lr": 0.01}),
    "sgd": (lambda: K.SGD(learning_rate=0.05), optim.SGD, {"lr": 0.05}),
    "sgd-momentum": (lambda: K.SGD(learning_rate=0.05, momentum=0.9), optim.SGD, {"lr": 0.05, "momentum": 0.9}),
    "sgd-nesterov-wd": (lambda: K.SGD(learning_rate=0.05, momentum=0.9, nesterov=True, weight_decay=0.1), optim.SGD,
                        {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.1}),
    "rmsprop": (lambda: K.RMSprop(learning_rate=0.01), optim.RMSprop, {"lr": 0.01}),
    "rmsprop-centered-momentum": (lambda: K.RMSprop(learning_rate=0.01, centered=True, momentum=0.9), optim.RMSprop,
                                  {"lr": 0.01, "centered": True, "momentum": 0.9}),
    "adagrad": (lambda: K.Adagrad(learning_rate=0.05), optim.Adagrad, {"lr": 0.05}),
    "adamax": (lambda: K.Adamax(learning_rate=0.01), optim.Adamax, {"lr": 0.01}),
    "nadam": (lambda: K.Nadam(learning_rate=0.01), optim.NAdam, {"lr": 0.01}),
    "adadelta-wd": (lambda: K.Adadelta(learning_rate=0.5, weight_decay=0.1), optim.Adadelta,
                    {"lr": 0.5, "weight_decay": 0.1}),
    "lion-wd": (lambda: K.Lion(learning_rate=0.01, weight_decay=0.1), optim.Lion, {"lr": 0.01, "weight_decay": 0.1}),
    "lamb-wd": (lambda: K.Lamb(learning_rate=0.01, weight_decay=0.1), optim.LAMB, {"lr": 0.01, "weight_decay": 0.1}),
}

OPTAX = {
    "adam": (lambda: optax.adam(0.01), optim.Adam, {"lr": 0.01}),
    "adam-eps-root": (lambda: optax.adam(0.01, eps_root=1e-8), optim.Adam, {"lr": 0.01, "eps_root": 1e-8}),
    "adamw": (lambda: optax.adamw(0.01, weight_decay=0.1), optim.AdamW, {"lr": 0.01, "weight_decay": 0.1}),
    "amsgrad": (lambda: optax.amsgrad(0.01), optim.Adam, {"lr": 0.01, "amsgrad": True}),
    "sgd-momentum": (lambda: optax.sgd(0.05, momentum=0.9), optim.SGD, {"lr": 0.05, "momentum": 0.9}),
    "sgd-nesterov": (lambda: optax.sgd(0.05, momentum=0.9, nesterov=True), optim.SGD,
                     {"lr": 0.05, "momentum": 0.9, "nesterov": True}),
    "rmsprop": (lambda: optax.rmsprop(0.01), optim.RMSprop, {"lr": 0.01}),
    "rmsprop-centered-momentum": (lambda: optax.rmsprop(0.01, centered=True, momentum=0.9), optim.RMSprop,
                                  {"lr": 0.01, "centered": True, "momentum": 0.9}),
    "adagrad": (lambda: optax.adagrad(0.05), optim.Adagrad, {"lr": 0.05}),
    "adamax": (lambda: optax.adamax(0.01), optim.Adamax, {"lr": 0.01}),
    "nadam": (lambda: optax.nadam(0.01), optim.NAdam, {"lr": 0.01}),
    "nadamw": (lambda: optax.nadamw(0.01, weight_decay=0.1), optim.NAdam,
               {"lr": 0.01, "weight_decay": 0.1, "decoupled_weight_decay": True}),
    "radam": (lambda: optax.radam(0.01), optim.RAdam, {"lr": 0.01}),
    "radam-eps-root": (lambda: optax.radam(0.01, eps_root=1e-6), optim.RAdam, {"lr": 0.01, "eps_root": 1e-6}),
    "adadelta": (lambda: optax.adadelta(0.5), optim.Adadelta, {"lr": 0.5}),
    "lion": (lambda: optax.lion(0.01), optim.Lion, {"lr": 0.01}),
    "lamb-wd": (lambda: optax.lamb(0.01, weight_decay=0.1), optim.LAMB, {"lr": 0.01, "weight_decay": 0.1}),
}


def _tol(dtype, name):
    if dtype == np.float64:
        return {"rtol": 1e-10, "atol": 1e-12}
    return {"rtol": 2e-4 if name.startswith("radam") else 2e-5, "atol": 1e-6}


@pytest.mark.parametrize("dtype", [np.float32])
@pytest.mark.parametrize("name", sorted(KERAS))
def test_keras_convention_matches_keras(name, dtype):
    make, cls, kw = KERAS[name]
    want = keras_run(make, dtype)
    got = fastopt_run(cls, dtype, convention="keras", **kw)
    np.testing.assert_allclose(got, want, **_tol(dtype, name))
    assert not np.allclose(got, _data(dtype)[0])  # it moved


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", sorted(OPTAX))
def test_optax_convention_matches_optax(name, dtype):
    make, cls, kw = OPTAX[name]
    want = optax_run(make(), dtype)
    got = fastopt_run(cls, dtype, convention="optax", **kw)
    np.testing.assert_allclose(got, want, **_tol(dtype, name))
    assert not np.allclose(got, _data(dtype)[0])


def test_keras_sgd_with_a_changing_rate():
    """Keras' velocity holds the rate: with a schedule its steps differ from torch's form."""
    lrs = [0.1 / (1 + t) for t in range(STEPS)]
    want = keras_run(lambda: K.SGD(learning_rate=0.1, momentum=0.9), np.float32, lrs)
    got = fastopt_run(optim.SGD, np.float32, lrs, momentum=0.9, convention="keras")
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-6)
    torch_form = fastopt_run(optim.SGD, np.float32, lrs, momentum=0.9)
    assert not np.allclose(torch_form, want, rtol=1e-3)


def test_keras_and_optax_defaults():
    """With a convention the classes take the framework's defaults for what is not passed."""
    cases = [(optim.Adam, "keras", K.Adam(), {"eps": "epsilon"}),
             (optim.AdamW, "keras", K.AdamW(), {"eps": "epsilon", "weight_decay": "weight_decay"}),
             (optim.Adadelta, "keras", K.Adadelta(), {"lr": "learning_rate", "rho": "rho", "eps": "epsilon"}),
             (optim.Lion, "keras", K.Lion(), {"lr": "learning_rate"}),
             (optim.LAMB, "keras", K.Lamb(), {"lr": "learning_rate", "eps": "epsilon"}),
             (optim.Nadam if hasattr(optim, "Nadam") else optim.NAdam, "keras", K.Nadam(),
              {"lr": "learning_rate", "eps": "epsilon"}),
             (optim.RMSprop, "keras", K.RMSprop(), {"lr": "learning_rate", "alpha": "rho", "eps": "epsilon"}),
             (optim.Adagrad, "keras", K.Adagrad(), {"lr": "learning_rate", "eps": "epsilon",
                                                    "initial_accumulator_value": "initial_accumulator_value"})]
    for cls, conv, theirs, names in cases:
        group = cls([np.zeros(3)], convention=conv).param_groups[0]
        for ours, attr in names.items():
            value = getattr(theirs, attr)
            value = float(np.asarray(value.numpy() if hasattr(value, "numpy") else value))
            assert group[ours] == pytest.approx(value, rel=1e-6), (cls.__name__, ours)
    assert optim.Lion([np.zeros(3)], convention="optax").param_groups[0]["weight_decay"] == 1e-3
    assert optim.AdamW([np.zeros(3)], convention="optax").param_groups[0]["weight_decay"] == 1e-4
