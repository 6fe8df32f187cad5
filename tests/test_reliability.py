"""Hostile calls: each raises TypeError / ValueError naming the argument with every array
unchanged, or works; never a crash, never a half-written state."""
import threading

import numpy as np
import pytest

import fastopt
from fastopt import optim

from cases import RULES

N = 10


def _arrays(k, n=N):
    return [[np.full(n, 0.5 + i, np.float32)] for i in range(k)]


# each rule's positional arrays: params, grads, then the states the rule needs by default
POSITIONAL = {"gd": 2, "sgd": 2, "adam": 4, "adagrad": 3, "rmsprop": 3, "adadelta": 4, "adamax": 4, "nadam": 4,
              "radam": 4, "lion": 3, "lamb": 4}


def _call(rule, arrays, **kw):
    fn, _, takes_step = RULES[rule]
    extra = {"step": 1} if takes_step else {}
    if rule in ("gd", "sgd"):
        extra["lr"] = 0.1
    if rule == "sgd":
        arrays = arrays + [None]
    if rule == "rmsprop":
        arrays = arrays + [None, None]
    if rule == "nadam":
        extra["mu_product"] = 0.9
    return fn(*arrays, **{**extra, **kw})


@pytest.mark.parametrize("rule", list(POSITIONAL))
def test_none_in_every_required_position_raises_and_writes_nothing(rule):
    k = POSITIONAL[rule]
    for pos in range(k):
        arrays = _arrays(k)
        before = [a[0].copy() for a in arrays]
        arrays[pos] = None
        with pytest.raises(TypeError, match="is required"):
            _call(rule, arrays)
        for a, b in zip(arrays, before):
            if a is not None:
                np.testing.assert_array_equal(a[0], b)


@pytest.mark.parametrize("fn", [fastopt.all_finite, fastopt.global_norm, fastopt.array_norms, fastopt.clip_grad_value_
                                and (lambda a: fastopt.clip_grad_value_(a, 1.0)), lambda a: fastopt.scale_(a, 2.0),
                                lambda a: fastopt.penalty(a, 1.0), lambda a: fastopt.clip_grad_norm_(a, 1.0)])
def test_none_is_not_an_empty_list(fn):
    with pytest.raises(TypeError, match="is required"):
        fn(None)


def test_step_is_bounded():
    p = _arrays(4)
    with pytest.raises(ValueError, match=r"step must be in \[1, 2\*\*53\]"):
        fastopt.nadam_(*p, step=2**63 - 1, mu_product=0.5)
    assert np.all(p[0][0] == 0.5)


@pytest.mark.parametrize("rule", ["adam", "adagrad", "adamax", "nadam", "radam", "lamb", "adadelta"])
def test_eps_that_is_zero_in_float32_is_refused(rule):
    p = _arrays(POSITIONAL[rule])
    for eps in (5e-324, 1e-46):
        with pytest.raises(ValueError, match="is 0 in float32"):
            _call(rule, p, eps=eps)
    assert np.all(p[0][0] == 0.5)
    p64 = [[a[0].astype(np.float64)] for a in p]
    _call(rule, p64, eps=1e-46)  # representable in float64


def test_scale_takes_any_finite_factor_and_names_it():
    g = np.array([1.0, -2.0], np.float32)
    fastopt.scale_(g, -1)
    np.testing.assert_array_equal(g, [-1.0, 2.0])
    with pytest.raises(ValueError, match="factor must be a finite number"):
        fastopt.scale_(g, float("nan"))


def test_clip_grad_norm_nan_with_a_read_only_array_writes_nothing():
    a = np.array([np.nan, 1.0], np.float32)
    b = np.ones(3, np.float32)
    b.flags.writeable = False
    with pytest.raises(ValueError, match=r"grads\[1\] is read-only"):
        fastopt.clip_grad_norm_([a, b], 1.0)
    assert a[1] == 1.0


class FreshItems(list):
    """A list whose items are new arrays at every access."""

    def __getitem__(self, i):
        return np.ones(1 << 17, np.float32)

    def __iter__(self):
        return (self[i] for i in range(len(self)))


def test_list_subclass_returning_fresh_arrays_is_safe():
    params = FreshItems([0, 0])
    grads = FreshItems([0, 0])
    assert fastopt.gd_(params, grads, lr=0.1)


def test_another_thread_clearing_the_lists_is_safe(restore_threads):
    fastopt.set_num_threads(2)
    n = 1 << 22
    p = [np.ones(n, np.float32) for _ in range(4)]
    lists = [list(p[:1]), list(p[1:2]), list(p[2:3]), list(p[3:])]
    del p
    import time

    def clear():
        time.sleep(0.002)  # while the kernel runs without the GIL
        for lst in lists:
            lst.clear()

    t = threading.Thread(target=clear)
    t.start()
    try:
        fastopt.adam_(*lists, step=1)
    except ValueError as e:  # the lists were emptied before the call read them: refused whole
        assert "has 1 arrays but params has 0" in str(e) or "has 0 arrays" in str(e)
    t.join()


@pytest.mark.parametrize("name", ["adam", "nadam", "sgd"])
def test_optimizer_step_is_all_or_nothing(name):
    ps = [np.ones(4, np.float32), np.ones(3, np.float32)]
    opt = optim.get(name, [{"params": [ps[0]]}, {"params": [ps[1]]}], lr=0.1, **({"momentum": 0.9} if name == "sgd" else {}))
    opt.step([np.ones(4, np.float32), np.ones(3, np.float32)])
    snapshot = opt.state_dict()
    before = [p.copy() for p in ps]
    for bad in ([np.ones(4, np.float32), np.ones(3, np.float64)],      # wrong dtype in the second group
                [np.ones(4, np.float32), np.ones(2, np.float32)],      # wrong size
                [np.ones(4, np.float32), np.ones(6, np.float32)[::2]]):  # not contiguous
        with pytest.raises((TypeError, ValueError), match="grads"):
            opt.step(bad)
        for p, b in zip(ps, before):
            np.testing.assert_array_equal(p, b)
        after = opt.state_dict()
        for s0, s1 in zip(snapshot["state"], after["state"]):
            assert s0.keys() == s1.keys()
            for k in s0:
                np.testing.assert_array_equal(s0[k], s1[k])


def _trained(name="adam", **hyper):
    ps = [np.ones(4, np.float32), np.ones(3, np.float32)]
    opt = optim.get(name, [{"params": [ps[0]]}, {"params": [ps[1]]}], **hyper)
    opt.step([np.full(4, 0.5, np.float32), np.full(3, 0.25, np.float32)])
    return opt


def _bad_state_dicts():
    good = _trained().state_dict()

    def edit(fn):
        import copy
        sd = copy.deepcopy(good)
        fn(sd)
        return sd

    yield "float64 1e300", TypeError, edit(lambda sd: sd["state"][0].update(exp_avg=np.full(4, 1e300)))
    yield "list of None", TypeError, edit(lambda sd: sd["state"][0].update(exp_avg=[None] * 4))
    for step in (-3, "x", None, 2.5, True, 2**60):
        yield f"step {step!r}", ValueError, edit(lambda sd, s=step: sd["state"][1].update(step=s))
    yield "lr nan", ValueError, edit(lambda sd: sd["param_groups"][1].update(lr=float("nan")))
    yield "eps 0", ValueError, edit(lambda sd: sd["param_groups"][1].update(eps=0.0))
    yield "betas", ValueError, edit(lambda sd: sd["param_groups"][1].update(betas=(0.9, 1.5)))
    yield "no groups", ValueError, edit(lambda sd: (sd["param_groups"].clear(), sd["state"].clear()))
    yield "amsgrad without its buffer", ValueError, edit(lambda sd: sd["param_groups"][1].update(amsgrad=True))
    yield "missing key in group 1", ValueError, edit(lambda sd: sd["state"][1].pop("exp_avg_sq"))
    yield "unknown state key", ValueError, edit(lambda sd: sd["state"][1].update(exp_avg_views=[np.zeros(3)]))
    yield "unknown hyperparameter", ValueError, edit(lambda sd: sd["param_groups"][1].update(momentum=0.9))
    yield "wrong size", ValueError, edit(lambda sd: sd["state"][1].update(exp_avg=np.zeros(5, np.float32)))
    yield "skipped_steps", ValueError, edit(lambda sd: sd.update(skipped_steps=-1))


@pytest.mark.parametrize("label,exc,sd", list(_bad_state_dicts()), ids=lambda v: v if isinstance(v, str) else "")
def test_load_state_dict_is_all_or_nothing(label, exc, sd):
    opt = _trained()
    opt.step([np.full(4, 0.1, np.float32), np.full(3, 0.1, np.float32)])  # differs from the checkpoint
    before = opt.state_dict()
    with pytest.raises(exc):
        opt.load_state_dict(sd)
    after = opt.state_dict()
    assert after["param_groups"] == before["param_groups"] and after["skipped_steps"] == before["skipped_steps"]
    for s0, s1 in zip(before["state"], after["state"]):
        assert s0.keys() == s1.keys()
        for k in s0:
            np.testing.assert_array_equal(s0[k], s1[k])


@pytest.mark.parametrize("other", ["radam", "nadam", "lion", "sgd"])
def test_another_rules_state_is_refused(other):
    sd = _trained("adam").state_dict()
    target = _trained(other, **({"momentum": 0.9} if other == "sgd" else {}))
    with pytest.raises(ValueError):
        target.load_state_dict(sd)


def test_amsgrad_checkpoint_loads_into_plain_adam_and_steps_as_amsgrad():
    src = _trained("adam", amsgrad=True)
    dst = _trained("adam")
    dst.load_state_dict(src.state_dict())
    assert dst.param_groups[0]["amsgrad"] and "max_exp_avg_sq" in dst.state[0]
    g = [np.full(4, 0.3, np.float32), np.full(3, 0.3, np.float32)]
    src.step(g)
    dst.step(g)
    for a, b in zip(src.state_dict()["state"], dst.state_dict()["state"]):
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])


def _resume_setup(dropout=0.2, patience=None):
    from fastopt import schedules
    from fastopt.nn import MLP, Dense
    from fastopt.train import EarlyStopping, Trainer
    rng = np.random.default_rng(0)
    X = rng.standard_normal((120, 6)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] > 0).astype(np.int64) + (X[:, 2] > 1)
    model = MLP(6, [Dense(16, "relu", dropout=dropout), Dense(3, "softmax")], seed=1)
    es = EarlyStopping("val_loss", patience=patience, restore_best_weights=False) if patience else None
    sched = schedules.Warmup(schedules.CosineAnnealing(5e-3, 200), 10)
    return X, y, Trainer(model, "adamw", lr=sched, early_stopping=es, threads=1, global_clipnorm=1.0)


@pytest.mark.parametrize("patience", [None, 3])
def test_trainer_resume_is_bit_identical(tmp_path, patience):
    from fastopt.train import Trainer
    kw = dict(batch_size=16, validation_split=0.2, seed=3, verbose=False)
    X, y, whole = _resume_setup(patience=patience)
    h_whole = whole.fit(X, y, epochs=6, **kw)
    X, y, first = _resume_setup(patience=patience)
    first.fit(X, y, epochs=3, **kw)
    first.save(tmp_path / "t.npz")
    resumed = Trainer.load(tmp_path / "t.npz")
    h_rest = resumed.fit(X, y, epochs=6, **kw)
    np.testing.assert_array_equal(resumed.model.params, whole.model.params)
    assert resumed.steps == whole.steps and resumed.epoch == whole.epoch
    assert h_rest.history["loss"] == h_whole.history["loss"][3:len(h_rest.history["loss"]) + 3]
    for a, b in zip(resumed.optimizer.state_dict()["state"], whole.optimizer.state_dict()["state"]):
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])
    # in one process too: continuing at the epoch reached
    X, y, again = _resume_setup(patience=patience)
    again.fit(X, y, epochs=3, **kw)
    again.fit(X, y, epochs=6, initial_epoch=3, **kw)
    np.testing.assert_array_equal(again.model.params, whole.model.params)


def test_checkpoint_says_which_epoch_weights_and_optimizer_are_from(tmp_path):
    import json
    from fastopt.nn import MLP, Dense
    from fastopt.train import EarlyStopping, Trainer
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 3))
    y = rng.integers(0, 2, 60)  # noise: validation loss stops improving
    t = Trainer(MLP(3, [Dense(32), Dense(2, "softmax")]), "adam", lr=0.05, threads=1,
                early_stopping=EarlyStopping("val_loss", patience=2, restore_best_weights=True))
    h = t.fit(X, y, epochs=40, validation_split=0.3, verbose=False)
    assert h.stopped_epoch is not None
    t.save(tmp_path / "es.npz")
    with np.load(tmp_path / "es.npz") as z:
        meta = json.loads(str(z["meta"]))
    assert meta["weights_epoch"] == h.best_epoch and meta["optimizer_epoch"] == h.stopped_epoch


def test_weights_of_the_wrong_shape_are_refused(tmp_path):
    import pickle
    from fastopt.nn import MLP, Dense
    model = MLP(3, [Dense(4), Dense(2, "softmax")])
    with pytest.raises(ValueError, match="weights have shape"):
        model.set_weights(np.zeros(1))
    state = model.__getstate__()
    state["params"] = np.zeros(1, np.float32)
    with pytest.raises(ValueError, match="weights have shape"):
        pickle.loads(pickle.dumps(model)).__setstate__(state)


def _race(fn, threads=3, rounds=3):
    errors, barrier = [], threading.Barrier(threads)

    def work():
        barrier.wait()
        for _ in range(rounds):
            try:
                fn()
            except ValueError as e:
                errors.append(str(e))

    ts = [threading.Thread(target=work) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return errors


def test_concurrent_writes_to_the_same_arrays_raise_instead_of_racing(restore_threads):
    fastopt.set_num_threads(1)
    n = 1 << 24
    p = [np.ones(n, np.float32) for _ in range(4)]
    steps = iter(range(1, 100))
    errors = _race(lambda: fastopt.adam_(*p, step=next(steps)))
    assert errors and all("is in use by a call running in another thread" in e for e in errors)
    # every call that ran was whole: the same bits as that many steps in a row
    ran = 9 - len(errors)
    q = [np.ones(n, np.float32) for _ in range(4)]
    for s in range(1, ran + 1):
        fastopt.adam_(*q, step=s)
    np.testing.assert_array_equal(p[2], q[2])


def test_concurrent_reads_of_the_same_arrays_are_allowed(restore_threads):
    fastopt.set_num_threads(1)
    g = [np.ones(1 << 24, np.float32)]
    norms = []
    assert _race(lambda: norms.append(fastopt.global_norm(g))) == []
    assert len(set(norms)) == 1 and len(norms) == 9


def _rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


@pytest.mark.skipif(not __import__("os").path.exists("/proc/self/statm"), reason="needs /proc")
def test_no_leaks_in_calls_and_error_paths():
    import sys
    p = _arrays(4, n=64)
    bad = [[np.zeros(64, np.float64)]] + p[1:]
    refs = [sys.getrefcount(a[0]) for a in p]

    def burst(k):
        for _ in range(k):
            fastopt.adam_(*p, step=1)
            fastopt.global_norm(p[1])
            for call in (lambda: fastopt.adam_(*bad, step=1), lambda: fastopt.adam_(p[0], None, *p[2:], step=1),
                         lambda: fastopt.adam_(*p, step=0)):
                try:
                    call()
                except (TypeError, ValueError):
                    pass

    burst(2000)  # warm: allocator pools, caches
    before = _rss_mb()
    burst(20000)
    if "libasan" not in __import__("os").environ.get("LD_PRELOAD", ""):  # ASan keeps freed memory in quarantine
        assert _rss_mb() - before < 8.0
    assert [sys.getrefcount(a[0]) for a in p] == refs


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # the reference squares 1e30 in float32
def test_centered_rmsprop_with_huge_gradients_stays_finite_as_torch():
    from fastopt import reference
    p = [np.ones(4, np.float32)]
    g = [np.full(4, 1e30, np.float32)]
    sq, ga = [np.zeros(4, np.float32)], [np.zeros(4, np.float32)]
    fastopt.rmsprop_(p, g, sq, ga, None, lr=0.01, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=True)
    assert np.all(np.isfinite(p[0])) and np.all(p[0] == 1.0)  # g / inf = 0: torch's result
    rp, rsq, rga = np.ones(4, np.float32), np.zeros(4, np.float32), np.zeros(4, np.float32)
    reference.rmsprop(rp, g[0], rsq, rga, None, lr=0.01, alpha=0.99, eps=1e-8, centered=True)
    np.testing.assert_array_equal(rp, p[0])
