"""Bad input raises a TypeError or ValueError naming the argument, and nothing is written."""
import numpy as np
import pytest

import fastopt


def arrays(n=3, size=100, dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(size).astype(dtype) for _ in range(n)]


def snapshot(*lists):
    return [[a.copy() for a in lst] for lst in lists]


def unchanged(before, *lists):
    return all(np.array_equal(a, b, equal_nan=True) for bl, lst in zip(before, lists) for a, b in zip(bl, lst))


def adam_call(**over):
    p, g, m, v = arrays(seed=1), arrays(seed=2), arrays(seed=3), arrays(seed=4)
    args = {"params": p, "grads": g, "exp_avgs": m, "exp_avg_sqs": v}
    kw = {"step": 1, "lr": 1e-3}
    for k, val in over.items():
        (args if k in args else kw)[k] = val(args) if callable(val) else val
    return args, kw


BAD = [
    ("dtype", TypeError, "grads\\[1\\] .*float64", {"grads": lambda a: [a["grads"][0], a["grads"][1].astype(np.float64), a["grads"][2]]}),
    ("int dtype", TypeError, "params\\[0\\] has dtype int64", {"params": lambda a: [np.zeros(100, np.int64)] + a["params"][1:]}),
    ("not array", TypeError, "exp_avgs\\[2\\] must be a numpy.ndarray", {"exp_avgs": lambda a: a["exp_avgs"][:2] + [[0.0] * 100]}),
    ("not list", TypeError, "grads must be a numpy.ndarray or a list", {"grads": 5}),
    ("strided", ValueError, "exp_avg_sqs\\[0\\] is not C-contiguous", {"exp_avg_sqs": lambda a: [np.zeros(200, np.float32)[::2]] + a["exp_avg_sqs"][1:]}),
    ("size", ValueError, "grads\\[1\\] has 99 elements but params\\[1\\] has 100", {"grads": lambda a: [a["grads"][0], a["grads"][1][:99].copy(), a["grads"][2]]}),
    ("length", ValueError, "exp_avgs has 2 arrays but params has 3", {"exp_avgs": lambda a: a["exp_avgs"][:2]}),
    ("alias", ValueError, "share memory", {"exp_avgs": lambda a: [a["params"][0]] + a["exp_avgs"][1:]}),
    ("alias states", ValueError, "share memory", {"exp_avg_sqs": lambda a: [a["exp_avgs"][1]] + a["exp_avg_sqs"][1:]}),
    ("lr", ValueError, "lr must be", {"lr": -1.0}),
    ("nan lr", ValueError, "lr must be", {"lr": float("nan")}),
    ("beta1", ValueError, "beta1 must be in \\[0, 1\\)", {"betas": (1.0, 0.999)}),
    ("beta2", ValueError, "beta2 must be in \\[0, 1\\)", {"betas": (0.9, -0.1)}),
    ("betas shape", ValueError, "betas must be a pair", {"betas": (0.9,)}),
    ("eps", ValueError, "eps must be", {"eps": 0.0}),
    ("step", ValueError, r"step must be in \[1, 2\*\*53\]", {"step": 0}),
    ("weight_decay", ValueError, "weight_decay must be", {"weight_decay": -0.1}),
    ("grad_scale", ValueError, "grad_scale must be", {"grad_scale": -1.0}),
    ("clip_value", ValueError, "clip_value must be > 0", {"clip_value": 0.0}),
    ("l1", ValueError, "l1 must be", {"l1": -1.0}),
    ("amsgrad", ValueError, "max_exp_avg_sqs are required", {"amsgrad": True}),
]


@pytest.mark.parametrize("what,exc,match,over", BAD, ids=[b[0] for b in BAD])
def test_bad_adam_input_raises_and_writes_nothing(what, exc, match, over):
    args, kw = adam_call(**over)
    lists = [x for x in args.values() if isinstance(x, list) and all(isinstance(a, np.ndarray) for a in x)]
    before = snapshot(*lists)
    with pytest.raises(exc, match=match):
        fastopt.adam_(args["params"], args["grads"], args["exp_avgs"], args["exp_avg_sqs"], **kw)
    assert unchanged(before, *lists)


def test_read_only_params():
    p, g, m, v = arrays(), arrays(), arrays(), arrays()
    p[1].flags.writeable = False
    before = snapshot(p, m, v)
    with pytest.raises(ValueError, match="params\\[1\\] is read-only"):
        fastopt.adam_(p, g, m, v, step=1)
    assert unchanged(before, p, m, v)


def test_read_only_grads_are_fine():
    p, g, m, v = arrays(), arrays(), arrays(), arrays()
    for x in g:
        x.flags.writeable = False
    assert fastopt.adam_(p, g, m, v, step=1)


@pytest.mark.parametrize("call,match", [
    (lambda p, g, b: fastopt.sgd_(p, g, b, step=1, lr=0.1, nesterov=True), "nesterov"),
    (lambda p, g, b: fastopt.sgd_(p, g, None, step=1, lr=0.1, momentum=0.9), "momentum_buffers are required"),
    (lambda p, g, b: fastopt.sgd_(p, g, b, step=1, lr=0.1, momentum=-0.5), "momentum must be"),
    (lambda p, g, b: fastopt.rmsprop_(p, g, b, lr=0.1, centered=True), "grad_avgs are required"),
    (lambda p, g, b: fastopt.adadelta_(p, g, b, b, lr=0.1), "share memory"),
    (lambda p, g, b: fastopt.adadelta_(p, g, b, [x.copy() for x in b], rho=1.5), "rho must be"),
    (lambda p, g, b: fastopt.nadam_(p, g, b, [x.copy() for x in b], step=1, mu_product=1.0), "mu_product"),
    (lambda p, g, b: fastopt.global_norm(g, 0.0), "norm_type must be > 0"),
    (lambda p, g, b: fastopt.regularize_grad_(g, p[:2], l1=0.1), "grads has 3 arrays but params has 2"),
    (lambda p, g, b: fastopt.clip_grad_norm_(g, -1.0), "max_norm"),
])
def test_other_bad_inputs(call, match):
    p, g, b = arrays(seed=1), arrays(seed=2), arrays(seed=3)
    before = snapshot(p, g, b)
    with pytest.raises(ValueError, match=match):
        call(p, g, b)
    assert unchanged(before, p, g, b)


def test_empty_and_size_zero_are_fine():
    assert fastopt.adam_([], [], [], [], step=1)
    z = np.zeros(0, np.float32)
    assert fastopt.adam_(z, z.copy(), z.copy(), z.copy(), step=1)
    assert fastopt.global_norm([z]) == 0.0


def test_set_num_threads_validates(restore_threads):
    for bad in (-1, 1025, 50000, 100000, 2**40):
        with pytest.raises(ValueError, match=r"n must be in \[1, 1024\]"):
            fastopt.set_num_threads(bad)
    for bad in (2.0, "2", None, True):
        with pytest.raises(TypeError, match="n must be an int"):
            fastopt.set_num_threads(bad)
    fastopt.set_num_threads(3)
    assert fastopt.get_num_threads() == 3
