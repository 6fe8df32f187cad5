"""The fused layer passes (fastopt.nn.fused) against their NumPy spec in fastopt.reference."""
import numpy as np
import pytest

from fastopt import _core, reference as ref
from fastopt.nn.fused import act_backward_, bias_act_, softmax_xent_

# tanh, sigmoid and exp are libm calls on either side; the kernels and NumPy may round the
# last bit differently, and relu / identity are exact.
RTOL = {np.float32: 4 * np.finfo(np.float32).eps, np.float64: 4 * np.finfo(np.float64).eps}


@pytest.fixture(params=_core.supported_isas())
def isa(request, restore_isa):
    _core._set_isa(request.param)
    return request.param


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("act", ["identity", "relu", "tanh", "sigmoid"])
@pytest.mark.parametrize("shape", [(1, 1), (7, 33), (128, 256)])
def test_bias_act_and_backward_match_numpy(isa, dtype, act, shape):
    rng = np.random.default_rng(0)
    z = (rng.standard_normal(shape) * 3).astype(dtype)
    b = rng.standard_normal(shape[1]).astype(dtype)
    want = ref.bias_act(z, b, act)
    got = bias_act_(z.copy(), b, act)
    exact = act in ("identity", "relu")
    np.testing.assert_allclose(got, want, rtol=0 if exact else RTOL[dtype], atol=0 if exact else RTOL[dtype])
    d = rng.standard_normal(shape).astype(dtype)
    np.testing.assert_allclose(act_backward_(d.copy(), got, act), ref.act_backward(d, got, act),
                               rtol=RTOL[dtype], atol=RTOL[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1, 1), (5, 2), (128, 10), (3, 1000)])
def test_softmax_xent_matches_numpy(isa, dtype, shape):
    rng = np.random.default_rng(1)
    z = (rng.standard_normal(shape) * 5).astype(dtype)
    y = rng.integers(0, shape[1], shape[0]).astype(np.int64)
    dz = np.empty_like(z)
    loss, hits = softmax_xent_(z, y, dz, 1.0 / shape[0])
    want_loss, want_hits, want_dz = ref.softmax_xent(z, y, 1.0 / shape[0])
    assert hits == want_hits
    assert loss == pytest.approx(want_loss, rel=1e-5 if dtype == np.float32 else 1e-12, abs=1e-6)
    np.testing.assert_allclose(dz, want_dz, rtol=8 * np.finfo(dtype).eps, atol=8 * np.finfo(dtype).eps)


def test_layer_passes_check_arguments_before_writing():
    z = np.ones((4, 3), np.float32)
    with pytest.raises(ValueError, match="b has 2 elements but z has 3 columns"):
        bias_act_(z, np.ones(2, np.float32), "relu")
    with pytest.raises(TypeError, match="share one dtype"):
        bias_act_(z, np.ones(3, np.float64), "relu")
    with pytest.raises(ValueError, match="act must be"):
        bias_act_(z, np.ones(3, np.float32), "softmax")
    with pytest.raises(ValueError, match="not C-contiguous"):
        bias_act_(np.ones((3, 4), np.float32).T, np.ones(3, np.float32), "relu")
    with pytest.raises(TypeError, match="must be a numpy.ndarray"):
        act_backward_(None, z, "relu")
    dz = np.full((4, 3), 7.0, np.float32)
    with pytest.raises(ValueError, match=r"y\[2\] = 3 is not a class in \[0, 3\)"):
        softmax_xent_(z, np.array([0, 1, 3, 0]), dz, 1.0)
    assert np.all(dz == 7.0)
    with pytest.raises(TypeError, match="int64"):
        softmax_xent_(z, np.zeros(4, np.int32), dz, 1.0)
    with pytest.raises(ValueError, match="read-only"):
        z.flags.writeable = False
        bias_act_(z, np.ones(3, np.float32), "relu")


@pytest.mark.parametrize("act", ["relu", "tanh", "sigmoid", "softmax"])
@pytest.mark.parametrize("loss", ["softmax_cross_entropy", "focal", "mse"])
def test_training_step_matches_the_numpy_forward_and_backward(act, loss):
    from fastopt.nn import MLP, Dense
    from fastopt.nn.losses import LOSSES
    rng = np.random.default_rng(2)
    X = rng.standard_normal((33, 12))
    y = rng.integers(0, 4, 33)
    target = y if loss != "mse" else rng.standard_normal((33, 4))
    model = MLP(12, [Dense(16, act), Dense(8, act), Dense(4, "softmax")], dtype=np.float64)
    value, hits = model.train_batch(X, target, loss)
    fused = model.grads.copy()
    want_value, dz = LOSSES[loss][0](model.forward(X), target)
    model.backward(dz)
    np.testing.assert_allclose(fused, model.grads, rtol=1e-10, atol=1e-12)
    assert value == pytest.approx(want_value, rel=1e-12)
    z = model.forward(X)
    assert hits == (None if loss == "mse" else int(np.sum(z.argmax(1) == y)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,batch", [((1, 1), 1), ((50, 3), 17), ((3000, 784), 128), ((100, 1000), 100)])
@pytest.mark.parametrize("threads", [1, 2, 4])
def test_take_rows_matches_numpy_take(dtype, shape, batch, threads, restore_threads):
    """The trainer's minibatch gather: equal to numpy.take on every thread count (repeated rows
    and the full permutation included)."""
    import fastopt
    fastopt.set_num_threads(threads)
    rng = np.random.default_rng(2)
    x = rng.standard_normal(shape).astype(dtype)
    for index in (rng.integers(0, shape[0], batch), rng.permutation(shape[0])[:batch]):
        out = np.full((batch, shape[1]), np.nan, dtype)
        _core.take_rows_(x, index.astype(np.int64), out)
        assert np.array_equal(out, np.take(x, index, axis=0))


def test_take_rows_checks_arguments_before_writing():
    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    out = np.full((2, 3), -1.0, np.float32)
    for index, exc, match in [(np.array([0, 4]), ValueError, r"index\[1\] = 4 is not a row of x"),
                              (np.array([-1, 0]), ValueError, r"index\[0\] = -1"),
                              (np.array([0, 1, 2]), ValueError, "out must have shape"),
                              (np.array([0, 1], np.int32), TypeError, "index has dtype int32")]:
        with pytest.raises(exc, match=match):
            _core.take_rows_(x, index, out)
        assert np.all(out == -1.0)
    with pytest.raises(TypeError, match="must share one dtype"):
        _core.take_rows_(x, np.array([0, 1]), out.astype(np.float64))
    with pytest.raises(ValueError, match="overlap"):
        _core.take_rows_(x, np.array([0, 1]), x[1:3])
    with pytest.raises(ValueError, match="read-only"):
        ro = out.copy()
        ro.flags.writeable = False
        _core.take_rows_(x, np.array([0, 1]), ro)
