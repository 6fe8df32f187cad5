"""Lean precision through the optimizer classes, fastopt.torch, the Trainer, the estimators and the
CLI: training with bfloat16 or 8-bit state ends near the float32 run, and checkpoints round-trip.

Tolerances: the 8-bit codes keep 3 mantissa bits (6% per value) and bfloat16 8 bits, so a run
with lean state follows another path than the float32 run; on digits (15 epochs) the final
training loss stays within 0.05 of the float32 run's and the accuracy within 2 points, measured
here at 0.116-0.131 against 0.128 and 97.6-97.9% against 97.7% (tests/test_lean.py checks the
arithmetic itself, exactly).
"""
import numpy as np
import pytest

from fastopt import optim
from fastopt.datasets import load_digits
from fastopt.precision import Blockwise8, quantize_8bit
from fastopt.train import recipe
from fastopt.train.trainer import Trainer

ml_dtypes = pytest.importorskip("ml_dtypes")
BF16 = np.dtype(ml_dtypes.bfloat16)
STATE_DTYPES = ["float32", "bfloat16", "int8"]


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits()
    return X.astype(np.float32) / 16, y


def fit_digits(X, y, **kw):
    tr, hist = recipe.fit(X, y, epochs=15, seed=0, patience=0, validation_split=0.0, lr=1e-3, batch_size=32, **kw)
    return tr, hist.history["loss"][-1], float((tr.model.forward(X).argmax(1) == y).mean())


@pytest.fixture(scope="module")
def float32_run(digits):
    return fit_digits(*digits)


@pytest.mark.parametrize("state_dtype", ["bfloat16", "int8"])
def test_digits_training_with_lean_state_ends_near_float32(digits, float32_run, state_dtype):
    _, loss32, acc32 = float32_run
    tr, loss, acc = fit_digits(*digits, state_dtype=state_dtype)
    assert abs(loss - loss32) <= 0.05 and abs(acc - acc32) <= 0.02, (loss, loss32, acc, acc32)
    kind = Blockwise8 if state_dtype == "int8" else np.ndarray
    assert isinstance(tr.optimizer.state[0]["exp_avg"], kind)


@pytest.mark.parametrize("state_dtype", ["bfloat16", "int8"])
def test_trainer_checkpoint_continues_bit_for_bit(digits, tmp_path, state_dtype):
    X, y = digits
    full, _ = recipe.build(64, 10, len(X), seed=0, state_dtype=state_dtype, patience=0, validation_split=0.0)
    full.fit(X, y, epochs=2, verbose=False, seed=1)
    half, _ = recipe.build(64, 10, len(X), seed=0, state_dtype=state_dtype, patience=0, validation_split=0.0)
    half.fit(X, y, epochs=1, verbose=False, seed=1)
    half.save(str(tmp_path / "ck.npz"))
    resumed = Trainer.load(str(tmp_path / "ck.npz"))
    resumed.fit(X, y, epochs=2, verbose=False, seed=1)
    assert np.array_equal(full.model.params, resumed.model.params)
    a, b = full.optimizer.state[0]["exp_avg_sq"], resumed.optimizer.state[0]["exp_avg_sq"]
    if state_dtype == "int8":
        assert a.nonneg and np.array_equal(a.codes, b.codes) and np.array_equal(a.absmax, b.absmax)
    else:
        assert a.dtype == BF16 and np.array_equal(a.view(np.uint16), b.view(np.uint16))


def _params(rng, dtype=np.float32):
    return [rng.standard_normal(1000).astype(dtype), rng.standard_normal((30, 7)).astype(dtype)]


def _steps(opt, params, n, seed=0):
    rng = np.random.default_rng(seed)
    for _ in range(n):
        opt.step([rng.standard_normal(p.shape).astype(p.dtype) for p in params])


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd", "rmsprop", "adagrad", "lion", "adadelta", "adamax", "nadam",
                                  "radam"])
@pytest.mark.parametrize("state_dtype", ["bfloat16", "int8"])
def test_state_dict_round_trips_and_converts(name, state_dtype):
    rng = np.random.default_rng(0)
    hyper = {"momentum": 0.9} if name in ("sgd", "rmsprop") else {}
    params = _params(rng)
    opt = optim.get(name, params, lr=1e-2, state_dtype=state_dtype, **hyper)
    _steps(opt, params, 3)
    sd = opt.state_dict()
    states = [k for k in sd["state"][0] if k in opt.state_names]
    assert states
    for k in states:  # stored as kept: no up-cast
        v = sd["state"][0][k]
        assert isinstance(v, Blockwise8) if state_dtype == "int8" else v.dtype == BF16
    # the same kind: the next steps are bit for bit those of the uninterrupted optimizer
    twin_params = [p.copy() for p in params]
    twin = optim.get(name, twin_params, lr=1e-2, state_dtype=state_dtype, **hyper)
    twin.load_state_dict(sd)
    _steps(opt, params, 2, seed=5)
    _steps(twin, twin_params, 2, seed=5)
    for a, b in zip(params, twin_params):
        assert np.array_equal(a, b)
    # into a float32 optimizer: the state's values, dequantized or widened; and back again
    wide = optim.get(name, [p.copy() for p in params], lr=1e-2, **hyper)
    wide.load_state_dict(opt.state_dict())
    for k in states:
        v = opt.state[0][k]
        expected = v.dequantize().reshape(-1) if state_dtype == "int8" else v.astype(np.float32)
        if state_dtype == "int8":  # dequantized per parameter
            expected = np.concatenate([q.dequantize().reshape(-1) for q in opt.state[0][k + "_views"]])
        assert wide.state[0][k].dtype == np.float32 and np.array_equal(wide.state[0][k], expected)
    back = optim.get(name, [p.copy() for p in params], lr=1e-2, state_dtype=state_dtype, **hyper)
    back.load_state_dict(wide.state_dict())
    for k in states:
        a, b = back.state[0][k], opt.state[0][k]
        if state_dtype == "int8":  # the codes come back; absmax is recomputed as code value x absmax / max
            assert np.array_equal(a.codes, b.codes)
            np.testing.assert_allclose(a.absmax, b.absmax, rtol=2 ** -23)
        else:
            assert np.array_equal(a.view(np.uint16), b.view(np.uint16))


def test_bfloat16_parameters_master_weights_and_stochastic_rounding():
    rng = np.random.default_rng(0)
    x = (1 + rng.random(5000)).astype(BF16).astype(np.float32)  # bfloat16's step here: 2**-7
    grads = [np.full(5000, 1e-3, BF16)] * 50
    runs = {}
    for label, kw in {"nearest": {}, "master": {"master_weights": True},
                      "sr1": {"stochastic_rounding": True, "seed": 1}, "sr1b": {"stochastic_rounding": True, "seed": 1},
                      "sr2": {"stochastic_rounding": True, "seed": 2}, "kahan": {"kahan": True}}.items():
        p = x.astype(BF16)
        opt = optim.SGD([p], lr=1e-2, **kw)  # steps of 1e-5: far below bfloat16's resolution near 1
        for g in grads:
            opt.step([g])
        runs[label] = (p.astype(np.float32), opt)
    exact = x - 50 * 1e-5
    err = {k: float(np.mean(v[0] - exact)) for k, v in runs.items()}
    assert np.array_equal(runs["nearest"][0], x.astype(BF16).astype(np.float32))  # every step lost
    assert abs(err["sr1"]) < 1e-4 and abs(err["nearest"]) > 4e-4, err  # kept in expectation, lost by rounding
    assert np.array_equal(runs["sr1"][0], runs["sr1b"][0]) and not np.array_equal(runs["sr1"][0], runs["sr2"][0])
    master = runs["master"][1].state[0]["master"]  # kept by the float32 copy
    assert master.dtype == np.float32 and np.allclose(master, exact, atol=1e-6)
    assert np.array_equal(runs["master"][0], master.astype(BF16).astype(np.float32))
    kahan = runs["kahan"][0] + runs["kahan"][1].state[0]["compensation"].astype(np.float32)  # kept by the residual
    assert np.allclose(kahan, exact, atol=1e-4) and runs["kahan"][1].state[0]["compensation"].dtype == BF16


def test_lean_options_are_checked_before_anything_is_made():
    p = [np.ones(10, np.float32)]
    with pytest.raises(ValueError, match="state_dtype must be one of"):
        optim.Adam(p, state_dtype="float16")
    with pytest.raises(ValueError, match="LAMB keeps float32 or float64"):
        optim.LAMB(p, state_dtype="int8")
    with pytest.raises(ValueError, match="needs float32, bfloat16 or float16 parameters, got float64"):
        optim.Adam([np.ones(10)], state_dtype="bfloat16")
    with pytest.raises(ValueError, match="master_weights=True keeps a float32 copy"):
        optim.Adam(p, master_weights=True)
    with pytest.raises(ValueError, match="seed must be an int"):
        optim.Adam(p, stochastic_rounding=True, seed=-1)
    with pytest.raises(ValueError, match="centered=True takes state_dtype"):
        optim.RMSprop(p, centered=True, state_dtype="int8")
    opt = optim.Adam(p, state_dtype="int8")
    sd = opt.state_dict()
    sd["state"][0]["exp_avg"] = Blockwise8(np.zeros(11, np.uint8), np.zeros(1, np.float32))
    before = opt.state[0]["exp_avg"].codes.copy()
    with pytest.raises(ValueError, match=r"state\[0\]\['exp_avg'\] has 11 codes"):
        opt.load_state_dict(sd)
    assert np.array_equal(opt.state[0]["exp_avg"].codes, before)


def test_initial_accumulator_is_quantized():
    opt = optim.Adagrad([np.ones(700, np.float32)], state_dtype="int8", initial_accumulator_value=0.1)
    q = quantize_8bit(np.full(700, 0.1, np.float32), nonneg=True)
    assert np.array_equal(opt.state[0]["sum"].codes, q.codes) and np.array_equal(opt.state[0]["sum"].absmax,
                                                                                 q.absmax)


def test_estimator_takes_state_dtype(digits):  # the CLI's --state-dtype: tests/test_cli.py
    pytest.importorskip("sklearn")
    from fastopt.sklearn import MLPClassifier
    X, y = digits
    scores = {sd: MLPClassifier((32,), max_iter=10, random_state=0, dtype="float32", state_dtype=sd).fit(X, y).score(X, y)
              for sd in ("float32", "int8")}
    assert abs(scores["int8"] - scores["float32"]) <= 0.02, scores
    with pytest.raises(ValueError, match="needs dtype='float32'"):
        MLPClassifier((32,), max_iter=1, state_dtype="int8").fit(X, y)


# ---- torch --------------------------------------------------------------------------------

def _torch_run(torch, dtype, **kw):
    import fastopt.torch as ft
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10)).to(dtype)
    X, y = load_digits()
    X = torch.from_numpy(X.astype(np.float32) / 16).to(dtype)
    y = torch.from_numpy(y.astype(np.int64))
    opt = ft.Adam(model.parameters(), lr=3e-3, **kw)
    for epoch in range(10):
        for i in range(0, len(X), 64):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(X[i:i + 64]).float(), y[i:i + 64])
            loss.backward()
            opt.step()
    with torch.no_grad():
        full = torch.nn.functional.cross_entropy(model(X).float(), y).item()
    return model, opt, full


@pytest.mark.parametrize("dtype,kw", [("float32", {"state_dtype": "bfloat16"}), ("float32", {"state_dtype": "int8"}),
                                      ("bfloat16", {}), ("bfloat16", {"master_weights": True}),
                                      ("bfloat16", {"state_dtype": "int8", "master_weights": True}),
                                      ("float16", {"master_weights": True})])
def test_torch_models_train_with_lean_precision(dtype, kw):
    """Digits, 10 epochs: the float32 run ends at a loss of 0.05; lean runs within 0.1 of it."""
    torch = pytest.importorskip("torch")
    _, _, ref = _torch_run(torch, torch.float32)
    model, opt, loss = _torch_run(torch, getattr(torch, dtype), **kw)
    assert loss <= ref + 0.1, (loss, ref)
    st = opt.state[next(iter(model.parameters()))]
    if kw.get("state_dtype") == "int8":
        assert st["exp_avg"].dtype == torch.uint8 and st["exp_avg_absmax"].dtype == torch.float32
    if kw.get("master_weights"):
        assert st["master_param"].dtype == torch.float32


def test_torch_state_dict_keeps_8_bit_and_converts_both_ways():
    torch = pytest.importorskip("torch")
    import fastopt.torch as ft
    model, opt, _ = _torch_run(torch, torch.float32, state_dtype="int8")
    sd = opt.state_dict()
    first = sd["state"][0]
    assert first["exp_avg"].dtype == torch.uint8 and first["exp_avg_sq_absmax"].numel() == -(-64 * 32 // 256)
    wide = ft.Adam(model.parameters(), lr=3e-3)  # float32 state: dequantized on load
    wide.load_state_dict(sd)
    x = torch.randn(8, 64)
    model(x).sum().backward()
    wide.step()
    p0 = next(iter(model.parameters()))
    q = Blockwise8(first["exp_avg_sq"].numpy(), first["exp_avg_sq_absmax"].numpy(), True)
    assert wide.state[p0]["exp_avg_sq"].dtype == torch.float32
    back = ft.Adam(model.parameters(), lr=3e-3, state_dtype="int8")  # and quantized again
    back.load_state_dict(wide.state_dict())
    model(x).sum().backward()
    back.step()
    assert back.state[p0]["exp_avg_sq"].dtype == torch.uint8
    assert q.dequantize().shape == tuple(p0.shape)
    # torch.optim's own checkpoint of a float32 model loads into 8-bit state
    tref = torch.optim.Adam(model.parameters(), lr=3e-3)
    model(x).sum().backward()
    tref.step()
    eight = ft.Adam(model.parameters(), lr=3e-3, state_dtype="int8")
    eight.load_state_dict(tref.state_dict())
    model(x).sum().backward()
    eight.step()
    assert eight.state[p0]["exp_avg"].dtype == torch.uint8


@pytest.mark.parametrize("corrupt", ["absmax", "shape"])
def test_torch_malformed_8_bit_checkpoint_changes_nothing(corrupt):
    """A checkpoint whose last parameter's 8-bit state is malformed: the step raises before any
    parameter's state is converted or any parameter written."""
    torch = pytest.importorskip("torch")
    import fastopt.torch as ft
    model, opt, _ = _torch_run(torch, torch.float32, state_dtype="int8")
    sd = opt.state_dict()
    last = max(sd["state"])
    if corrupt == "absmax":
        sd["state"][last]["exp_avg_sq_absmax"] = sd["state"][last]["exp_avg_sq_absmax"][:-1].clone()
    else:
        sd["state"][last]["exp_avg"] = torch.zeros(3, dtype=torch.uint8)
    wide = ft.Adam(model.parameters(), lr=3e-3)  # float32 state: would dequantize every 8-bit state
    wide.load_state_dict(sd)
    model(torch.randn(8, 64)).sum().backward()
    before = [p.detach().clone() for p in model.parameters()]
    loaded = {k: {n: (v.clone() if isinstance(v, torch.Tensor) else v) for n, v in st.items()}
              for k, st in enumerate(wide.state[p] for p in model.parameters())}
    with pytest.raises(ValueError, match="exp_avg"):
        wide.step()
    for p, b in zip(model.parameters(), before):
        assert torch.equal(p.detach(), b)
    for k, p in enumerate(model.parameters()):
        st = wide.state[p]
        assert sorted(st) == sorted(loaded[k])
        for n, v in loaded[k].items():
            assert st[n].dtype == v.dtype and torch.equal(st[n], v), (k, n)


def _twin(torch, model, opt, cls, **kw):
    """A copy of ``model`` with an optimizer of ``cls(**kw)`` loaded from a copy of
    ``opt.state_dict()`` (as torch.save then torch.load give: a state dict holds the optimizer's
    own tensors)."""
    import copy
    twin = copy.deepcopy(model)
    other = cls(twin.parameters(), lr=3e-3, **kw)
    other.load_state_dict(copy.deepcopy(opt.state_dict()))
    return twin, other


def _step_both(torch, pairs):
    x = torch.randn(8, 64, generator=torch.Generator().manual_seed(1))
    for model, opt in pairs:
        dtype = next(model.parameters()).dtype
        opt.zero_grad()
        model(x.to(dtype)).float().sum().backward()
        opt.step()


def test_torch_8_bit_checkpoint_loads_by_value_not_by_code():
    """torch.optim's load_state_dict casts state to the parameter's dtype; fastopt.torch keeps the
    8-bit codes and absmax as saved, so a float32 optimizer steps from the dequantized values and
    an 8-bit one from the same codes, bit for bit."""
    torch = pytest.importorskip("torch")
    import fastopt.torch as ft
    import copy
    model, opt, _ = _torch_run(torch, torch.float32, state_dtype="int8")
    sd = copy.deepcopy(opt.state_dict())
    # 8-bit into 8-bit: the same codes and maxima, then the same step as the original
    same, eight = _twin(torch, model, opt, ft.Adam, state_dtype="int8")
    for k, p in enumerate(same.parameters()):
        for n in ("exp_avg", "exp_avg_absmax", "exp_avg_sq", "exp_avg_sq_absmax"):
            assert eight.state[p][n].dtype == sd["state"][k][n].dtype and torch.equal(eight.state[p][n], sd["state"][k][n])
    # 8-bit into float32: the dequantized values; a float32 optimizer given those values by hand
    # takes the same step
    wide_model, wide = _twin(torch, model, opt, ft.Adam)
    by_hand = {"param_groups": sd["param_groups"], "state": {}}
    for k, st in sd["state"].items():
        by_hand["state"][k] = {"step": st["step"].clone()}
        for n, nonneg in (("exp_avg", False), ("exp_avg_sq", True)):
            q = Blockwise8(st[n].numpy(), st[n + "_absmax"].numpy(), nonneg)
            by_hand["state"][k][n] = torch.from_numpy(q.dequantize())
    hand_model = copy.deepcopy(model)
    hand = ft.Adam(hand_model.parameters(), lr=3e-3)
    hand.load_state_dict(by_hand)
    _step_both(torch, [(model, opt), (same, eight), (wide_model, wide), (hand_model, hand)])
    for a, b, c, d in zip(model.parameters(), same.parameters(), wide_model.parameters(), hand_model.parameters()):
        assert torch.equal(a, b)
        assert torch.equal(c, d)
        assert torch.equal(wide.state[c]["exp_avg_sq"], hand.state[d]["exp_avg_sq"])


@pytest.mark.parametrize("kw", [{}, {"master_weights": True}, {"state_dtype": "int8", "master_weights": True}])
def test_torch_bfloat16_model_checkpoint_keeps_float32_state(kw):
    """A bfloat16 model's float32 state and master copy load without being rounded to bfloat16:
    the loaded optimizer steps as the original, bit for bit."""
    torch = pytest.importorskip("torch")
    import fastopt.torch as ft
    import copy
    model, opt, _ = _torch_run(torch, torch.bfloat16, **kw)
    sd = copy.deepcopy(opt.state_dict())
    twin, other = _twin(torch, model, opt, ft.Adam, **kw)
    for k, p in enumerate(twin.parameters()):
        for n, v in sd["state"][k].items():
            assert other.state[p][n].dtype == v.dtype and torch.equal(other.state[p][n], v), n
    _step_both(torch, [(model, opt), (twin, other)])
    for a, b in zip(model.parameters(), twin.parameters()):
        assert torch.equal(a, b)
    for a, b in zip(model.parameters(), twin.parameters()):
        for n, v in opt.state[a].items():
            assert torch.equal(other.state[b][n], v), n
