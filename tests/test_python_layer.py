"""Optimizer classes, schedules, the flat-buffer MLP, the trainer and the train command."""

import numpy as np
import pytest

import fastopt
from fastopt import optim, schedules as S
from fastopt.nn import MLP, Dense, gradient_check
from fastopt.train import EarlyStopping, Trainer


def params_and_grads(seed=0, sizes=((30, 4), (4,), (1000,))):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(np.float32) for s in sizes], rng


@pytest.mark.parametrize("name", sorted(optim.OPTIMIZERS))
def test_optimizer_equals_functional_kernel_and_resumes_bit_identically(name, tmp_path):
    """A class step is its kernel; state_dict then load_state_dict continues bit for bit."""
    params, rng = params_and_grads()
    grads = [[rng.standard_normal(p.shape).astype(np.float32) for p in params] for _ in range(6)]
    opt = optim.get(name, [p.copy() for p in params], lr=1e-2)
    ref_params = [p.copy() for p in params]
    ref = optim.get(name, ref_params, lr=1e-2)
    for g in grads[:3]:
        opt.step(g)
        ref.step(g)
    sd = opt.state_dict()
    resumed_params = [p.copy() for p in opt.param_groups[0]["params"]]
    resumed = optim.get(name, resumed_params, lr=1e-2)
    resumed.load_state_dict(sd)
    for g in grads[3:]:
        ref.step(g)
        resumed.step(g)
    for a, b in zip(ref_params, resumed_params):
        assert np.array_equal(a, b)
    assert not np.array_equal(ref_params[2], params[2])


def test_sgd_class_matches_torch_semantics_against_functional():
    params, rng = params_and_grads()
    g = [rng.standard_normal(p.shape).astype(np.float32) for p in params]
    a = [p.copy() for p in params]
    opt = optim.SGD(a, lr=0.1, momentum=0.9, nesterov=True)
    opt.step(g)
    b = [p.copy() for p in params]
    bufs = [np.zeros_like(p) for p in params]
    fastopt.sgd_(b, g, bufs, step=1, lr=0.1, momentum=0.9, nesterov=True)
    for x, y in zip(a, b):
        assert np.array_equal(x, y)


def test_param_groups_and_fused_options():
    params, rng = params_and_grads()
    g = [rng.standard_normal(p.shape).astype(np.float32) * 100 for p in params]
    a = [p.copy() for p in params]
    opt = optim.Adam([{"params": a[:2], "lr": 0.1}, {"params": a[2:]}], lr=0.01, global_clipnorm=1.0, clipvalue=0.5)
    opt.step(g)
    b = [p.copy() for p in params]
    m, v = [np.zeros_like(p) for p in b], [np.zeros_like(p) for p in b]
    for sl, lr in ((slice(0, 2), 0.1), (slice(2, 3), 0.01)):
        scale = fastopt.clip_coef(fastopt.global_norm(g[sl]), 1.0)
        fastopt.adam_(b[sl], g[sl], m[sl], v[sl], step=1, lr=lr, grad_scale=scale, clip_value=0.5)
    for x, y in zip(a, b):
        assert np.array_equal(x, y)


@pytest.mark.parametrize("name", sorted(optim.OPTIMIZERS))
def test_kept_keywords_follow_every_change_of_a_group(name):
    """A step reuses its kernel keywords while the group's options stay the same: edits between
    steps (a schedule's lr, the rule's own options, the fused ones) step bit for bit as an
    optimizer that builds them anew each step."""
    params, rng = params_and_grads(1)
    grads = [[rng.standard_normal(p.shape).astype(np.float32) for p in params] for _ in range(7)]
    a_params, b_params = [p.copy() for p in params], [p.copy() for p in params]
    groups = lambda ps: [{"params": ps[:2]}, {"params": ps[2:], "clipnorm": 1.0}]  # noqa: E731
    a = optim.get(name, groups(a_params), lr=1e-2)
    b = optim.get(name, groups(b_params), lr=1e-2)
    b._kept_kwargs = lambda group, index: None  # always the keywords built anew
    edits = [{}, {"lr": 5e-3}, {"l2": 1e-3, "clipvalue": 0.5}, {"betas": (0.85, 0.995), "eps": 1e-6},
             {"weight_decay": 0.02, "momentum": 0.5}, {"maximize": True}, {}]
    for g, edit in zip(grads, edits):
        for opt in (a, b):
            for group in opt.param_groups:  # momentum only where it is on (it decides the states)
                group.update({k: v for k, v in edit.items() if k in group and (k != "momentum" or group[k])})
            opt.step([x.copy() for x in g])  # clipnorm scales the gradients in place
        for x, y in zip(a_params, b_params):
            assert np.array_equal(x, y)
    assert not np.array_equal(a_params[0], params[0])
    kept = a._kept[0][1]
    one_call = a._one_call(a.param_groups[0]) and not a.scalar_states
    assert (kept is not None) == one_call  # the kept keywords are what ran, where the rule allows
    assert a._kept[1][1] is None  # clipnorm: the norms first, every step
    if one_call and a.takes_step:
        assert kept["step"] == a.state[0]["step"] == 7


def test_check_finite_skips_and_counts():
    params, rng = params_and_grads()
    before = [p.copy() for p in params]
    opt = optim.AdamW(params, check_finite=True)
    g = [np.full(p.shape, np.nan, np.float32) for p in params]
    assert opt.step(g) is False and opt.skipped_steps == 1 and opt.state[0]["step"] == 0
    for a, b in zip(params, before):
        assert np.array_equal(a, b)


def _edited(opt, **hyper):
    """opt with its first group's hyperparameters changed behind its back (the kernel checks them)."""
    opt.param_groups[0].update(hyper)
    return opt


@pytest.mark.parametrize("bad,match", [
    (lambda p: optim.Adam(p, lr=-1), "lr must be"),
    (lambda p: optim.Adam(p, betas=(1.5, 0.9)), r"param_groups\[0\]\['betas'\] must be in \[0, 1\)"),
    (lambda p: optim.Adam(p, eps=-1e-8), r"\['eps'\] must be >= 0"),
    (lambda p: optim.Adam(p, amsgrad="yes"), r"\['amsgrad'\] must be a bool"),
    (lambda p: optim.Adam(p, decoupled_weight_decay=None), r"\['decoupled_weight_decay'\] must be a bool"),
    (lambda p: _edited(optim.Adam(p), betas=(1.5, 0.9)).step([np.zeros_like(x) for x in p]), "beta1"),
    (lambda p: optim.SGD(p, lr=0.1, momentum=0.9).step([np.zeros(3, np.float32)]), "grads has 1 arrays"),
    (lambda p: optim.get("adamq", p), "unknown optimizer"),
    (lambda p: optim.Adam([]), "params is empty"),
    (lambda p: optim.Adam(p, clipnorm=0.0), "clipnorm must be > 0"),
])
def test_optimizer_bad_input(bad, match):
    params, _ = params_and_grads()
    with pytest.raises((ValueError, TypeError), match=match):
        bad(params)


def test_schedules_match_torch_formulas():
    torch = pytest.importorskip("torch")
    p = torch.nn.Parameter(torch.zeros(1))
    pairs = [
        (S.StepDecay(0.1, 7, 0.5), lambda o: torch.optim.lr_scheduler.StepLR(o, 7, 0.5)),
        (S.MultiStep(0.1, [3, 11], 0.3), lambda o: torch.optim.lr_scheduler.MultiStepLR(o, [3, 11], 0.3)),
        (S.Exponential(0.1, 0.9), lambda o: torch.optim.lr_scheduler.ExponentialLR(o, 0.9)),
        (S.CosineAnnealing(0.1, 20, 1e-3), lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, 20, 1e-3)),
        (S.CosineWarmRestarts(0.1, 5, 2, 1e-3),
         lambda o: torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(o, 5, 2, 1e-3)),
        (S.OneCycle(0.1, 40), lambda o: torch.optim.lr_scheduler.OneCycleLR(o, 0.1, total_steps=40)),
    ]
    for ours, make in pairs:
        opt = torch.optim.SGD([p], lr=0.1)
        sched = make(opt)
        # past T_max torch's cosine climbs again; ours holds eta_min, as Keras' and optax's cosine decay
        for t in range(21 if isinstance(ours, S.CosineAnnealing) else 40):
            assert ours(t) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-9, abs=1e-12), (ours, t)
            opt.step()
            sched.step()


def test_warmup_and_plateau(tmp_path):
    w = S.Warmup(S.CosineAnnealing(1.0, 10), 5)
    assert [w(t) for t in (0, 5)] == [0.0, 1.0] and w(3) == pytest.approx(0.6)
    r = S.ReduceOnPlateau(1.0, factor=0.5, patience=1)
    for loss in (1.0, 1.0, 1.0):
        r.update(loss)
    assert r(0) == 0.5
    w.plot(20, str(tmp_path / "s.png"))
    assert (tmp_path / "s.png").stat().st_size > 1000


def test_mlp_parameters_are_one_buffer_and_gradients_check():
    m = MLP(5, [Dense(8, "tanh"), Dense(6, "relu"), Dense(3, "softmax")], dtype=np.float64)
    assert all(np.shares_memory(w, m.params) for w in m.W + m.b)
    assert all(np.shares_memory(w, m.grads) for w in m.dW + m.db)
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((16, 5)), rng.integers(0, 3, 16)
    for loss in ("softmax_cross_entropy", "focal"):
        assert gradient_check(m, X, y, loss) < 1e-5


def test_sigmoid_and_poisson_losses_against_their_formulas_and_gradients():
    """binary_log_loss (several labels) and poisson (exp outputs, a hidden exp layer too): the
    values against the formulas written out, the gradients against finite differences."""
    from fastopt.nn import binary_log_loss, poisson
    rng = np.random.default_rng(1)
    X = rng.standard_normal((16, 5))
    m = MLP(5, [Dense(8, "tanh"), Dense(3, "sigmoid")], dtype=np.float64)
    Y = rng.integers(0, 2, (16, 3))
    z = m.forward(X)
    p = 1 / (1 + np.exp(-z))
    value, grad = binary_log_loss(z, Y)
    np.testing.assert_allclose(value, -np.mean(np.sum(Y * np.log(p) + (1 - Y) * np.log(1 - p), axis=1)), rtol=1e-12)
    np.testing.assert_allclose(grad, (p - Y) / 16, rtol=1e-10, atol=1e-16)
    assert gradient_check(m, X, Y, "binary_log_loss") < 1e-5
    m = MLP(5, [Dense(8, "exp"), Dense(2, "exp")], dtype=np.float64, seed=2)
    m.W[0][...] *= 0.3
    counts = rng.poisson(2.0, (16, 2)).astype(np.float64)  # zeros among them: 0 log 0 = 0
    z = m.forward(X)
    mu = np.exp(z)
    with np.errstate(divide="ignore", invalid="ignore"):
        ylogy = np.where(counts > 0, counts * np.log(counts / mu), 0.0)
    value, grad = poisson(z, counts)
    assert (counts == 0).any()
    np.testing.assert_allclose(value, np.sum(ylogy - counts + mu) / 16, rtol=1e-12)
    np.testing.assert_allclose(grad, (mu - counts) / 16, rtol=1e-12)
    assert gradient_check(m, X, counts, "poisson") < 1e-5


@pytest.mark.parametrize("loss", ["softmax_cross_entropy", "binary_cross_entropy", "binary_log_loss", "mse",
                                  "squared_error", "focal", "poisson"])
def test_each_rows_loss_is_the_loss_of_that_row_alone(loss):
    """The rows' losses that weight a batch (sample_weight) against the loss function on one row
    at a time: the vectorized forms are the same numbers."""
    from fastopt.nn import LOSSES
    from fastopt.nn.mlp import _row_losses
    rng = np.random.default_rng(4)
    z = rng.standard_normal((12, 3))
    y = {"softmax_cross_entropy": rng.integers(0, 3, 12), "focal": rng.integers(0, 3, 12),
         "poisson": rng.poisson(1.0, (12, 3)).astype(float)}.get(loss, rng.integers(0, 2, (12, 3)).astype(float))
    if loss in ("mse", "squared_error"):
        y = rng.standard_normal((12, 3))
    fn = LOSSES[loss][0]
    options = [{}] + ([{"label_smoothing": 0.1}] if loss == "softmax_cross_entropy" else
                      [{"gamma": 0.5}] if loss == "focal" else [])
    targets = [y] + ([np.eye(3)[y] * 0.8 + 0.2 / 3] if loss == "softmax_cross_entropy" else [])
    for kw in options:
        for t in targets:
            expected = [fn(z[i:i + 1], t[i:i + 1], **kw)[0] for i in range(12)]
            np.testing.assert_allclose(_row_losses(z, t, loss, kw), expected, rtol=1e-12)
            np.testing.assert_allclose(np.mean(_row_losses(z, t, loss, kw)), fn(z, t, **kw)[0], rtol=1e-12)


def test_xor():
    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
    y = np.array([0, 1, 1, 0])
    m = MLP(2, [Dense(8, "tanh"), Dense(2, "softmax")], seed=1)
    Trainer(m, "adam", lr=0.05).fit(X, y, epochs=300, batch_size=4, verbose=False)
    assert np.array_equal(m.predict_output(X).argmax(axis=1), y)


def test_linear_regression_recovers_slope():
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (500, 1)).astype(np.float32)
    y = 3 * x[:, 0] + rng.normal(0, 0.1, 500)
    m = MLP(1, [Dense(1, "identity")])
    Trainer(m, "sgd", lr=0.1, loss="mse").fit(x, y, epochs=50, batch_size=32, verbose=False)
    assert m.W[0][0, 0] == pytest.approx(3.0, abs=0.05)


def digits():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    X, y = load_digits(return_X_y=True)
    return train_test_split(X / 16.0, y, test_size=0.25, random_state=0, stratify=y)


def test_digits_above_95_percent_with_adam():
    X_train, X_test, y_train, y_test = digits()
    m = MLP(64, [Dense(64), Dense(10, "softmax")])
    t = Trainer(m, "adam", lr=1e-3, early_stopping=EarlyStopping(patience=5))
    t.fit(X_train, y_train, epochs=40, validation_split=0.1, verbose=False)
    assert t.evaluate(X_test, y_test)["accuracy"] > 0.95


@pytest.mark.parametrize("name", sorted(optim.OPTIMIZERS))
def test_every_optimizer_reduces_the_loss(name):
    X_train, _, y_train, _ = digits()
    lr = {"sgd": 0.05, "adadelta": 1.0, "adagrad": 0.05, "adamax": 1e-2, "radam": 1e-2, "lion": 1e-3, "lamb": 1e-2}.get(name, 1e-3)
    m = MLP(64, [Dense(32), Dense(10, "softmax")])
    h = Trainer(m, name, lr=lr).fit(X_train[:600], y_train[:600], epochs=5, verbose=False)
    assert h.history["loss"][-1] < 0.8 * h.history["loss"][0]


def test_save_load_resumes_bit_identically(tmp_path):
    X_train, _, y_train, _ = digits()
    m = MLP(64, [Dense(16), Dense(10, "softmax")])
    t = Trainer(m, "nadam", lr=1e-3)
    t.fit(X_train, y_train, epochs=2, verbose=False, seed=1)
    t.save(tmp_path / "ckpt.npz")
    t2 = Trainer.load(str(tmp_path / "ckpt.npz"))
    assert t2.epoch == 2  # a loaded trainer continues at its epoch; initial_epoch=0 starts afresh
    t.fit(X_train, y_train, epochs=1, verbose=False, seed=2, initial_epoch=0)
    t2.fit(X_train, y_train, epochs=1, verbose=False, seed=2, initial_epoch=0)
    assert np.array_equal(t.model.params, t2.model.params)


def test_early_stopping_restores_best_weights():
    X_train, _, y_train, _ = digits()
    m = MLP(64, [Dense(32), Dense(10, "softmax")])
    t = Trainer(m, "sgd", lr=3.0, early_stopping=EarlyStopping(patience=2))  # lr too large: val loss climbs
    h = t.fit(X_train, y_train, epochs=30, validation_split=0.2, verbose=False)
    assert h.stopped_epoch is not None
    best = h.best_epoch - 1
    assert min(h.history["val_loss"]) == h.history["val_loss"][best]


def test_nan_loss_stops_and_keeps_last_good_weights():
    X = np.ones((8, 2), np.float32)
    y = np.array([0, 1] * 4)
    m = MLP(2, [Dense(2, "softmax")])
    t = Trainer(m, "sgd", lr=1e30)
    h = t.fit(X * 1e10, y, epochs=5, batch_size=8, verbose=False)
    assert "loss became" in h.stop_reason
    assert np.all(np.isfinite(m.params))


@pytest.mark.parametrize("kwargs,match", [
    ({"X": np.ones((4, 3)), "y": np.ones(5)}, "4 samples but y has 5"),
    ({"X": np.full((4, 2), np.nan), "y": np.ones(4)}, "NaN"),
    ({"X": np.ones(4), "y": np.ones(4)}, "2-D"),
    ({"batch_size": 0}, "batch_size must be >= 1"),
])
def test_trainer_bad_input(kwargs, match):
    m = MLP(2, [Dense(2, "softmax")])
    args = {"X": np.ones((4, 2)), "y": np.array([0, 1, 0, 1]), **kwargs}
    with pytest.raises(ValueError, match=match):
        Trainer(m, "adam").fit(args.pop("X"), args.pop("y"), verbose=False, **args)
    with pytest.raises(ValueError, match="unknown optimizer"):
        Trainer(m, "adamm")
    with pytest.raises(ValueError, match="lr must be"):
        Trainer(m, "adam", lr=0)


def test_train_command_runs(tmp_path, capsys):
    from fastopt.cli import main
    assert main(["train", "--epochs", "15", "--no-progress", "--schedule", "cosine", "--warmup", "20",
                 "--global-clipnorm", "5", "--l2", "1e-5", "--plot", str(tmp_path / "c.png")]) == 0
    out = capsys.readouterr().out
    acc = float(out.split("held-out accuracy: ")[1].split()[0])
    assert acc > 0.9 and (tmp_path / "c.png").exists()


def test_bench_command_runs(tmp_path, capsys):
    from fastopt.cli import main
    assert main(["bench", "--quick", "--no-progress", "--rules", "adam,sgd", "--threads", "1",
                 "--json", str(tmp_path / "b.json")]) == 0
    import json
    data = json.loads((tmp_path / "b.json").read_text())
    assert {r["rule"] for r in data["results"]} == {"adam", "sgd"}
    assert all("probe" in r["peers"] and "fastopt" in r["peers"] for r in data["results"])
    # interleaved rounds (3 with --quick) and fastopt timed twice, an A/A control
    assert all(r["rounds"] == 3 and "fastopt (A/A)" in r["peers"] for r in data["results"])
    assert "fastopt (A/A)" in capsys.readouterr().out
    # each array's start modulo 4 KiB: one entry per array, one list per state (Adam 2, SGD 1)
    for r in data["results"]:
        where = r["placement"]
        assert len(where["params"]) == len(where["grads"]) == r["arrays"]
        assert len(where["states"]) == {"adam": 2, "sgd": 1}[r["rule"]]
        assert where["params and grads"] == "numpy"
        offsets = where["params"] + where["grads"] + sum(where["states"], [])
        assert all(isinstance(o, int) and 0 <= o < 4096 for o in offsets)


def test_bench_placement_is_where_the_arrays_start():
    from fastopt import benchmarks as B
    pr = B.Problem.make("adam", np.float32, [3000, 1 << 20])
    fns = {"fastopt": B.make_peer(pr, "fastopt")}
    where = B.placement(pr, fns)
    assert where["params"] == [a.ctypes.data % 4096 for a in pr.params]
    assert where["grads"] == [a.ctypes.data % 4096 for a in pr.grads]
    assert where["states"] == [[a.ctypes.data % 4096 for a in s] for s in pr.states]
    # the states are placed (fastopt.precision.staggered): each on a cache line
    assert all(o % 64 == 0 for s in where["states"] for o in s)
    assert "fastopt.torch states" not in where


def test_bench_staggered_params_are_the_same_values_placed_as_the_mlp_places_them():
    from fastopt import benchmarks as B
    from fastopt.nn.mlp import PARAM_SLOT
    from fastopt.precision import stagger_shift
    sizes = [3000, 300_000]  # the second over 1 MiB: moved by its slot (under 4 MiB: ordinary memory)
    plain = B.Problem.make("sgd", np.float32, sizes, seed=2)
    placed = B.Problem.make("sgd", np.float32, sizes, seed=2, staggered_params=True)
    for a, b in zip(plain.params + plain.grads, placed.params + placed.grads):
        np.testing.assert_array_equal(a, b)
        assert b.ctypes.data % 64 == 0 and b.flags.c_contiguous and b.flags.writeable
    for big, slot in ((placed.params[1], PARAM_SLOT), (placed.grads[1], PARAM_SLOT + 1)):
        off = big.ctypes.data - big.base.ctypes.data  # into its allocation: under a line, then the slot's shift
        assert off - off % 64 == stagger_shift(big.size, big.itemsize, slot) * big.itemsize == (slot + 1) * 8320
    where = B.placement(placed)
    assert all(o % 64 == 0 for o in where["params"] + where["grads"])


def test_bench_command_staggered_placement(tmp_path):
    from fastopt.cli import main
    import json
    out = tmp_path / "b.json"
    assert main(["bench", "--quick", "--no-progress", "--rules", "sgd", "--threads", "1", "--sizes", "2K,2M",
                 "--peers", "fastopt", "--placement", "staggered", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["results"]
    assert [r["placement"]["params and grads"] for r in rows] == ["staggered", "staggered"]
    assert all(o % 64 == 0 for r in rows for o in r["placement"]["params"] + r["placement"]["grads"])
    with pytest.raises(SystemExit):
        main(["bench", "--placement", "aligned"])


def test_bench_placement_records_fastopt_torch_state():
    torch = pytest.importorskip("torch")
    from fastopt import benchmarks as B
    pr = B.Problem.make("sgd", np.float32, [5000, 70000])
    fns = {"fastopt.torch": B.make_peer(pr, "fastopt.torch")}
    opt = fns["fastopt.torch"].__self__
    bufs = [opt.state[p]["momentum_buffer"] for p in opt.param_groups[0]["params"]]
    assert all(isinstance(b, torch.Tensor) for b in bufs)
    assert B.placement(pr, fns)["fastopt.torch states"] == [[b.data_ptr() % 4096 for b in bufs]]


def test_time_interleaved_shuffles_the_peers_each_round():
    import time
    from fastopt import benchmarks as B
    calls = []

    def peer(name, seconds):
        return lambda: (calls.append(name), time.sleep(seconds))

    # every call over 0.1 ms: one call a sample, so each round is one call of each peer, with
    # settle=False alone and else right after an untimed call of the same peer
    fns = {name: peer(name, 2e-4) for name in "abcd"}
    fns["slow"] = peer("slow", 3e-3)
    for settle, per_sample in ((False, 1), (True, 2)):
        calls.clear()
        out = B.time_interleaved(fns, rounds=6, min_time=0.0, warmup=1, settle=settle)
        assert set(out) == set(fns)
        timed = calls[2 * len(fns):]  # after each peer's warm-up and trial call
        assert len(timed) == 6 * len(fns) * per_sample
        samples = [timed[k:k + per_sample] for k in range(0, len(timed), per_sample)]
        assert all(len(set(s)) == 1 for s in samples)  # a settling call is the same peer's
        order = [s[0] for s in samples]
        rounds = [order[k * len(fns):(k + 1) * len(fns)] for k in range(6)]
        assert all(sorted(r) == sorted(fns) for r in rounds)
        assert len({tuple(r) for r in rounds}) > 1  # a new order each round (seeded)
        assert out["slow"].reps == 6 and out["slow"].best >= 3e-3 and out["slow"].median >= out["slow"].best
        assert all(out[n].median < out["slow"].median for n in "abcd")


def test_lean_bench_command_runs(tmp_path, capsys):
    pytest.importorskip("ml_dtypes")
    from fastopt.cli import main
    assert main(["bench", "--lean", "--quick", "--elements", "70000", "--json", str(tmp_path / "l.json")]) == 0
    import json
    rows = {r["peer"]: r for r in json.loads((tmp_path / "l.json").read_text())["lean"]}
    assert rows["fastopt float32 model, int8 state"]["state_bytes_per_param"] == 2.03125
    assert rows["fastopt float32 model, bfloat16 state"]["bytes_per_element"] == 20.0
    assert rows["fastopt float32 model, float32 state"]["of_probe"] > 0
    assert rows["fastopt float32 model, int8 state, NumPy's placement"]["of_probe"] > 0
    assert "vs torch" in capsys.readouterr().out


def test_lean_bench_places_arrays_as_fastopt_and_numpy_do():
    """fastopt's peers get parameters and gradients as the MLP places them (on a cache line, the
    MLP's slots); the NumPy row gets the arrays NumPy made."""
    pytest.importorskip("ml_dtypes")
    from fastopt import leanbench as L
    from fastopt.precision import CACHE_LINE
    rng = np.random.default_rng(0)
    n = 1 << 19  # 2 MiB of float32: moved by the stagger
    p, g, s = L._adam_arrays(n, "float32", "int8", rng)
    assert p.ctypes.data % CACHE_LINE == 0 and g.ctypes.data % CACHE_LINE == 0
    assert p.base is not None and g.base is not None  # views into staggered allocations
    q, h, _ = L._adam_arrays(n, "float32", "int8", rng, numpy_placement=True)
    assert q.base is None and h.base is None and q.dtype == np.float32
