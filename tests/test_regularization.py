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


def test_l1_l2_penalize_the_weights_only_by_default():
    """Ridge regression with a free bias: the closed form (X'X + n l2' I) w = X'(y - b), b = mean(y - Xw)."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 2)) + 3.0
    y = X @ np.array([2.0, -0.65]) + 6.2 + 0.01 * rng.standard_normal(200)
    l2 = 0.05
    for bias in (False, True):
        m = MLP(2, [Dense(1, "identity", init="zeros")], dtype=np.float64, seed=0)
        from fastopt import schedules
        t = Trainer(m, "adam", lr=schedules.CosineAnnealing(0.1, 4000), loss="mse", l2=l2, regularize_bias=bias,
                    threads=1)
        t.fit(X, y, epochs=4000, batch_size=200, shuffle=False, verbose=False)
        # the loss is mean((Xw + b - y)^2) + l2 |w|^2 (+ l2 b^2): its minimum in closed form
        A = np.c_[X, np.ones(len(X))]
        reg = np.diag([l2, l2, l2 if bias else 0.0]) * len(X)
        want = np.linalg.solve(A.T @ A + reg, A.T @ y)
        got = np.r_[m.W[0][:, 0], m.b[0]]
        np.testing.assert_allclose(got, want, atol=2e-3)
    assert len(t.optimizer.param_groups) == 1  # regularize_bias=True: one fused call over everything
    free = Trainer(MLP(2, [Dense(1, "identity")]), "adam", l2=0.1)
    assert [g["l2"] for g in free.optimizer.param_groups] == [0.1, 0.0]


def test_weights_only_penalty_resumes_from_a_checkpoint(tmp_path):
    rng = np.random.default_rng(1)
    X, y = rng.standard_normal((64, 4)), rng.integers(0, 3, 64)
    kw = dict(batch_size=16, verbose=False)
    a = Trainer(MLP(4, [Dense(8), Dense(3, "softmax")]), "adam", lr=1e-2, l1=1e-3, l2=1e-3, threads=1)
    a.fit(X, y, epochs=4, **kw)
    b = Trainer(MLP(4, [Dense(8), Dense(3, "softmax")]), "adam", lr=1e-2, l1=1e-3, l2=1e-3, threads=1)
    b.fit(X, y, epochs=2, **kw)
    b.save(tmp_path / "c.npz")
    c = Trainer.load(tmp_path / "c.npz")
    assert [g["l1"] for g in c.optimizer.param_groups] == [1e-3, 0.0]
    c.fit(X, y, epochs=4, **kw)
    np.testing.assert_array_equal(c.model.params, a.model.params)


def test_estimator_with_weights_only_l1_pickles_and_warm_starts():
    import pickle
    pytest.importorskip("sklearn")
    import warnings
    from fastopt.sklearn import MLPClassifier
    rng = np.random.default_rng(2)
    X, y = rng.standard_normal((60, 4)), rng.integers(0, 2, 60)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = MLPClassifier((8,), l1=1e-3, max_iter=3, warm_start=True, random_state=0).fit(X, y)
        b = pickle.loads(pickle.dumps(a))
        a.fit(X, y)
        b.fit(X, y)
    np.testing.assert_array_equal(a.model_.params, b.model_.params)
    assert b.n_iter_ == 6


def test_named_schedules_match_torch_and_keras():
    from fastopt import schedules as S
    torch = pytest.importorskip("torch")

    def torch_rates(make, steps, lr=0.1):
        p = torch.zeros(1, requires_grad=True)
        opt = torch.optim.SGD([p], lr=lr)
        sched = make(opt)
        out = []
        for _ in range(steps):
            out.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        return out

    lr_ = torch.optim.lr_scheduler
    cases = [
        (S.Linear(0.1, 0.25, 1.0, 7), lambda o: lr_.LinearLR(o, 0.25, 1.0, 7)),
        (S.Polynomial(0.1, 9, 0.0, 2.0), lambda o: lr_.PolynomialLR(o, 9, 2.0)),
        (S.Cyclic(0.01, 0.1, 4), lambda o: lr_.CyclicLR(o, 0.01, 0.1, 4, cycle_momentum=False)),
        (S.Cyclic(0.01, 0.1, 3, "triangular2"),
         lambda o: lr_.CyclicLR(o, 0.01, 0.1, 3, mode="triangular2", cycle_momentum=False)),
        (S.Lambda(0.1, lambda t: 0.9 ** t), lambda o: lr_.LambdaLR(o, lambda t: 0.9 ** t)),
        (S.Sequential([S.Constant(0.1), S.Exponential(0.1, 0.5)], [5]),
         lambda o: lr_.SequentialLR(o, [lr_.ConstantLR(o, 1.0, 5), lr_.ExponentialLR(o, 0.5)], [5])),
    ]
    for ours, theirs in cases:
        np.testing.assert_allclose([ours(t) for t in range(20)], torch_rates(theirs, 20), rtol=1e-6, err_msg=repr(ours))
    # Keras' formulas, written out
    assert [S.PiecewiseConstant([3, 6], [1.0, 0.5, 0.1])(t) for t in (0, 3, 4, 6, 7)] == [1.0, 1.0, 0.5, 0.5, 0.1]
    assert S.InverseTime(0.1, 10, 0.5)(20) == pytest.approx(0.1 / 2.0)
    assert S.InverseTime(0.1, 10, 0.5, staircase=True)(19) == pytest.approx(0.1 / 1.5)
    assert S.ResetExponential(1.0, 0.5, [10])(12) == pytest.approx(0.25) and S.ResetExponential(1.0, 0.5, [10])(9) == \
        pytest.approx(0.5 ** 9)
    chained = S.Chained(S.Constant(0.1), S.StepDecay(1.0, 5, 0.5), S.Exponential(1.0, 0.9))
    assert chained(7) == pytest.approx(0.1 * 0.5 * 0.9 ** 7)
    for name in ("linear", "polynomial", "inverse_time", "cyclic"):
        s = S.make(name, 0.1, 100)
        assert s(0) > 0 and S.from_config(S.to_config(s))(37) == s(37)
    seq = S.Sequential([S.Linear(0.1, 0.1, 1.0, 10), S.CosineAnnealing(0.1, 90)], [10])
    assert S.from_config(S.to_config(seq))(50) == seq(50)
    with pytest.raises(TypeError, match="cannot be saved"):
        S.to_config(S.Lambda(0.1, lambda t: 1.0))


def test_loss_options_reach_the_training_step():
    from fastopt.cli import main
    from fastopt.nn.losses import focal, softmax_cross_entropy
    rng = np.random.default_rng(3)
    z, y = rng.standard_normal((6, 4)), rng.integers(0, 4, 6)
    plain, _ = softmax_cross_entropy(z, y)
    smooth, g = softmax_cross_entropy(z, y, label_smoothing=0.2)
    t = np.eye(4)[y] * 0.8 + 0.05
    logp = z - np.log(np.exp(z).sum(1, keepdims=True))
    assert smooth == pytest.approx(-(t * logp).sum() / 6) and smooth != plain
    assert focal(z, y, gamma=0.0)[0] == pytest.approx(plain)
    X = rng.standard_normal((40, 4))
    yy = rng.integers(0, 3, 40)
    a = Trainer(MLP(4, [Dense(3, "softmax")], dtype=np.float64), "sgd", lr=0.1, loss_kwargs={"label_smoothing": 0.3})
    b = Trainer(MLP(4, [Dense(3, "softmax")], dtype=np.float64), "sgd", lr=0.1)
    a.fit(X, yy, epochs=2, verbose=False)
    b.fit(X, yy, epochs=2, verbose=False)
    assert not np.allclose(a.model.params, b.model.params)
    with pytest.raises(ValueError, match="label_smoothing must be in"):
        Trainer(MLP(4, [Dense(3, "softmax")]), loss_kwargs={"label_smoothing": 2.0})
    with pytest.raises(TypeError):
        Trainer(MLP(4, [Dense(3, "softmax")]), loss_kwargs={"gama": 2.0})
    assert main(["train", "--loss", "focal", "--focal-gamma", "1.5", "--epochs", "1", "--no-progress"]) == 0
    assert main(["train", "--label-smoothing", "0.1", "--epochs", "1", "--no-progress"]) == 0


def test_layer_rates_and_frozen_layers(tmp_path):
    from fastopt import schedules
    rng = np.random.default_rng(4)
    X, y = rng.standard_normal((64, 5)), rng.integers(0, 3, 64)

    def model(dtype=np.float32):
        return MLP(5, [Dense(8), Dense(8), Dense(3, "softmax")], dtype=dtype, seed=0)

    m = model()
    first = m.W[0].copy(), m.b[0].copy()
    t = Trainer(m, "sgd", lr=schedules.StepDecay(0.1, 4, 0.5), layer_lr={2: 0.01}, frozen=[0], threads=1, l2=1e-3)
    t.fit(X, y, epochs=2, batch_size=16, verbose=False)
    assert np.array_equal(m.W[0], first[0]) and np.array_equal(m.b[0], first[1])  # frozen
    rates = {round(g["lr"], 12) for g in t.optimizer.param_groups}
    assert rates == {0.1 * 0.5 ** (7 // 4), 0.01 * 0.5 ** (7 // 4)}  # the schedule scales each layer's rate
    # one layer at a tenth of the rate moves about a tenth as far in the first step of plain SGD
    a, b = model(np.float64), model(np.float64)
    Trainer(a, "sgd", lr=0.1, threads=1).fit(X[:16], y[:16], epochs=1, batch_size=16, verbose=False)
    Trainer(b, "sgd", lr=0.1, layer_lr={1: 0.01}, threads=1).fit(X[:16], y[:16], epochs=1, batch_size=16,
                                                                    verbose=False)
    base = model(np.float64)
    np.testing.assert_allclose(b.W[1] - base.W[1], (a.W[1] - base.W[1]) / 10, rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(b.W[0], a.W[0])
    for bad, match in (({"layer_lr": {3: 0.1}}, "not a layer"), ({"frozen": [0, 1, 2]}, "every layer is frozen"),
                       ({"layer_lr": {0: -1.0}}, "must be > 0")):
        with pytest.raises(ValueError, match=match):
            Trainer(model(), "adam", **bad)
    # checkpoints keep the groups and resume exactly
    kw = dict(batch_size=16, verbose=False)
    whole = Trainer(model(), "adam", lr=1e-2, layer_lr={1: 1e-3}, frozen=[2], threads=1)
    whole.fit(X, y, epochs=4, **kw)
    part = Trainer(model(), "adam", lr=1e-2, layer_lr={1: 1e-3}, frozen=[2], threads=1)
    part.fit(X, y, epochs=2, **kw)
    part.save(tmp_path / "l.npz")
    back = Trainer.load(tmp_path / "l.npz")
    assert back.frozen == [2] and back.layer_lr == {1: 1e-3}
    back.fit(X, y, epochs=4, **kw)
    np.testing.assert_array_equal(back.model.params, whole.model.params)
