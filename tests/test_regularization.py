"""Initializers, input dropout, gradient_check in float32, and penalties on the weights only."""
import numpy as np
import pytest

from fastopt.nn import INITIALIZERS, MLP, Dense, gradient_check
from fastopt.train import Trainer


@pytest.mark.parametrize("name", sorted(INITIALIZERS))
def test_initializers_have_their_variance(name):
    fan_in, fan_out = 400, 300
    m = MLP(fan_in, [Dense(fan_out, "tanh", init=name)], dtype=np.float64, seed=0)
    W = m.W[0]
    fan_kind, scale, uniform = INITIALIZERS[name]
    assert not m.b[0].any()
    if scale == 0:
        assert not W.any()
        return
    fan = fan_in if fan_kind == "in" else (fan_in + fan_out) / 2
    assert W.var() == pytest.approx(scale / fan, rel=0.03)
    if uniform:
        assert np.abs(W).max() <= np.sqrt(3 * scale / fan)


def test_unknown_initializer_raises():
    with pytest.raises(ValueError, match="unknown init 'orthogonal'"):
        Dense(4, init="orthogonal")


def test_input_dropout_drops_inputs_in_training_only():
    m = MLP(1000, [Dense(1, "identity", init="zeros")], dtype=np.float64, input_dropout=0.5, seed=0)
    m.W[0][...] = 1.0
    X = np.ones((1, 1000))
    assert m.forward(X)[0, 0] == 1000.0  # no dropout outside training
    m.train_batch(X, np.zeros((1, 1)), "mse")
    kept = np.count_nonzero(m.dW[0])
    assert 400 < kept < 600  # about half the inputs reach the gradient, scaled by 2
    assert set(np.unique(m.dW[0][m.dW[0] != 0] / m.dW[0][m.dW[0] != 0][0])) == {1.0}
    with pytest.raises(ValueError, match="input_dropout"):
        MLP(3, [Dense(2)], input_dropout=1.0)
    back = MLP(3, [Dense(2)], input_dropout=0.25)
    import pickle
    assert pickle.loads(pickle.dumps(back)).input_dropout == 0.25


def test_gradient_check_of_a_float32_model_goes_through_float64():
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((8, 5)), rng.integers(0, 3, 8)
    m = MLP(5, [Dense(7, "tanh"), Dense(3, "softmax")], dtype=np.float32)
    before = m.params.copy()
    with pytest.warns(RuntimeWarning, match="float64 copy"):
        err = gradient_check(m, X, y)
    assert err < 1e-5 and np.array_equal(m.params, before)
