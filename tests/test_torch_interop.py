"""fastopt.torch: torch.optim.Optimizer subclasses over fastopt's kernels, against torch.optim.

Tolerances as in test_torch.py (torch contracts multiply-adds into FMA; fastopt does not):
float32 rtol 2e-5 / atol 2e-6 after 10 steps, float64 1e-12, NAdam float64 1e-7 (torch keeps
mu_product in float32).
"""
import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import fastopt.torch as ft  # noqa: E402
from fastopt import optim  # noqa: E402
from fastopt import precision as P  # noqa: E402

SHARED = ["SGD", "Adam", "AdamW", "Adagrad", "RMSprop", "Adadelta", "Adamax", "NAdam", "RAdam"]
HYPER = {"SGD": {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-3},
         "Adam": {"lr": 1e-2, "amsgrad": True, "weight_decay": 1e-3}, "AdamW": {"lr": 1e-2},
         "Adagrad": {"lr": 0.05, "lr_decay": 1e-3, "initial_accumulator_value": 0.1},
         "RMSprop": {"lr": 1e-2, "momentum": 0.5, "centered": True}, "Adadelta": {"lr": 1.0},
         "Adamax": {"lr": 1e-2}, "NAdam": {"lr": 1e-2, "decoupled_weight_decay": True, "weight_decay": 1e-2},
         "RAdam": {"lr": 1e-2, "weight_decay": 1e-3}}
TOL = {torch.float32: {"rtol": 2e-5, "atol": 2e-6}, torch.float64: {"rtol": 1e-12, "atol": 1e-12}}


def net(dtype=torch.float32, seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(20, 64), torch.nn.Tanh(), torch.nn.Linear(64, 3)).to(dtype)


def data(dtype=torch.float32):
    g = torch.Generator().manual_seed(1)
    return torch.randn(128, 20, generator=g, dtype=dtype), torch.randint(0, 3, (128,), generator=g)


def train(model, opt, X, y, steps):
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(X), y).backward()
        opt.step()


def close(a, b, tol):
    for pa, pb in zip(a.parameters(), b.parameters()):
        np.testing.assert_allclose(pa.detach().numpy(), pb.detach().numpy(), **tol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", SHARED)
def test_same_training_as_torch_optim(name, dtype):
    X, y = data(dtype)
    a, b = net(dtype), net(dtype)
    theirs = getattr(torch.optim, name)(a.parameters(), foreach=False, **HYPER[name])
    ours = getattr(ft, name)(b.parameters(), **HYPER[name])
    assert isinstance(ours, torch.optim.Optimizer)
    train(a, theirs, X, y, 10)
    train(b, ours, X, y, 10)
    tol = {"rtol": 1e-7, "atol": 1e-9} if (name, dtype) == ("NAdam", torch.float64) else TOL[dtype]
    close(a, b, tol)
    for p in a.parameters():  # the same state, under torch's names
        assert set(theirs.state[p]) - {"step"} <= set(ours.state[dict(zip(a.parameters(), b.parameters()))[p]])


@pytest.mark.parametrize("name", ["Adam", "SGD", "NAdam", "Adagrad"])
def test_checkpoints_move_between_torch_and_fastopt(name):
    X, y = data()
    hyper = HYPER[name]
    a, b = net(), net()
    theirs = getattr(torch.optim, name)(a.parameters(), foreach=False, **hyper)
    train(a, theirs, X, y, 3)
    b.load_state_dict(a.state_dict())
    ours = getattr(ft, name)(b.parameters(), **hyper)
    ours.load_state_dict(copy.deepcopy(theirs.state_dict()))  # torch's checkpoint into fastopt
    train(a, theirs, X, y, 4)
    train(b, ours, X, y, 4)
    close(a, b, TOL[torch.float32])
    c = net()
    c.load_state_dict(b.state_dict())
    back = getattr(torch.optim, name)(c.parameters(), foreach=False, **hyper)
    back.load_state_dict(copy.deepcopy(ours.state_dict()))  # and fastopt's back into torch
    train(c, back, X, y, 3)
    train(b, ours, X, y, 3)
    close(b, c, TOL[torch.float32])


def test_adam_decoupled_weight_decay_as_torch():
    """torch's Adam(decoupled_weight_decay=True) is AdamW; the group's flag counts, so an AdamW
    checkpoint loaded into Adam keeps decaying apart, in torch and in fastopt alike."""
    X, y = data()
    hyper = {"lr": 1e-2, "weight_decay": 0.1, "decoupled_weight_decay": True}
    a, b = net(), net()
    theirs = torch.optim.Adam(a.parameters(), foreach=False, **hyper)
    ours = ft.Adam(b.parameters(), **hyper)
    assert ours.param_groups[0]["decoupled_weight_decay"] is True
    train(a, theirs, X, y, 5)
    train(b, ours, X, y, 5)
    close(a, b, TOL[torch.float32])
    coupled = net()
    train(coupled, ft.Adam(coupled.parameters(), lr=1e-2, weight_decay=0.1), X, y, 5)
    assert not np.allclose(coupled[0].weight.detach().numpy(), b[0].weight.detach().numpy(), rtol=1e-3)

    c, d = net(), net()
    saver = torch.optim.AdamW(c.parameters(), foreach=False, lr=1e-2, weight_decay=0.1)
    train(c, saver, X, y, 3)
    d.load_state_dict(c.state_dict())
    theirs = torch.optim.Adam(c.parameters(), foreach=False, lr=1e-2)
    theirs.load_state_dict(copy.deepcopy(saver.state_dict()))
    ours = ft.Adam(d.parameters(), lr=1e-2)
    ours.load_state_dict(copy.deepcopy(saver.state_dict()))
    assert ours.param_groups[0]["decoupled_weight_decay"] is True
    train(c, theirs, X, y, 4)
    train(d, ours, X, y, 4)
    close(c, d, TOL[torch.float32])


@pytest.mark.parametrize("hyper,match", [({"betas": (1.5, 0.9)}, r"\['betas'\] must be in \[0, 1\)"),
                                         ({"weight_decay": -0.1}, r"\['weight_decay'\] must be >= 0"),
                                         ({"eps": float("nan")}, r"\['eps'\] must be a finite number")])
def test_bad_hyperparameters_raise_when_made_as_in_torch(hyper, match):
    with pytest.raises(ValueError):
        torch.optim.Adam(net().parameters(), **hyper)
    with pytest.raises(ValueError, match=match):
        ft.Adam(net().parameters(), **hyper)
    opt = ft.Adam(net().parameters())
    with pytest.raises(ValueError, match=r"param_groups\[1\]" + match):
        opt.add_param_group({"params": [torch.zeros(3, requires_grad=True)], **hyper})
    assert len(opt.param_groups) == 1


def test_named_parameters_as_torch():
    """torch.optim takes model.named_parameters() and keeps the names in the groups and
    checkpoints (param_names): so does fastopt.torch, and the checkpoints move both ways."""
    X, y = data()
    a, b = net(), net()
    theirs = torch.optim.Adam(a.named_parameters(), foreach=False, lr=1e-2)
    ours = ft.Adam(b.named_parameters(), lr=1e-2)
    assert ours.param_groups[0]["param_names"] == [n for n, _ in b.named_parameters()]
    train(a, theirs, X, y, 3)
    train(b, ours, X, y, 3)
    close(a, b, TOL[torch.float32])
    assert ours.state_dict()["param_groups"][0]["param_names"] == theirs.state_dict()["param_groups"][0]["param_names"]
    c, d = net(), net()
    c.load_state_dict(a.state_dict())
    d.load_state_dict(b.state_dict())
    into_ours = ft.Adam(c.named_parameters(), lr=1e-2)
    into_ours.load_state_dict(copy.deepcopy(theirs.state_dict()))
    into_theirs = torch.optim.Adam(d.named_parameters(), foreach=False, lr=1e-2)
    into_theirs.load_state_dict(copy.deepcopy(ours.state_dict()))
    for m, o in ((a, theirs), (b, ours), (c, into_ours), (d, into_theirs)):
        train(m, o, X, y, 3)
    close(a, c, TOL[torch.float32])
    close(b, d, TOL[torch.float32])
    close(a, b, TOL[torch.float32])
    with pytest.raises(TypeError, match=r"params'\]\[1\] \('0.bias'\) must be a torch.Tensor"):
        ft.Adam([("0.weight", b[0].weight), ("0.bias", 1.0)])
    with pytest.raises(TypeError, match="is a set"):  # as torch: a group's params in a set
        ft.Adam([{"params": set(b.parameters())}])
    with pytest.raises(ValueError, match="with/without names"):  # torch's own check, as in torch
        ft.Adam([("0.weight", b[0].weight), b[0].bias])


def test_numpy_adam_with_decoupled_decay_is_adamw():
    rng = np.random.default_rng(3)
    p0 = rng.standard_normal(3000).astype(np.float32)
    grads = [rng.standard_normal(3000).astype(np.float32) for _ in range(4)]
    p1, p2 = p0.copy(), p0.copy()
    o1 = optim.Adam([p1], lr=1e-2, weight_decay=0.1, decoupled_weight_decay=True)
    o2 = optim.AdamW([p2], lr=1e-2, weight_decay=0.1)
    for g in grads:
        o1.step([g.copy()])
        o2.step([g.copy()])
    np.testing.assert_array_equal(p1, p2)
    sd = o2.state_dict()
    assert sd["param_groups"][0]["decoupled_weight_decay"] is True
    with pytest.raises(ValueError, match="decoupled_weight_decay"):
        optim.Adam([p1], decoupled_weight_decay="yes")


def test_lion_and_lamb_equal_the_numpy_optimizers():
    X, y = data()
    for name in ("Lion", "LAMB"):
        model = net()
        start = [p.detach().numpy().copy() for p in model.parameters()]
        ours = getattr(ft, name)(model.parameters(), lr=1e-3, weight_decay=0.01)
        ref = getattr(optim, name)([p.copy() for p in start], lr=1e-3, weight_decay=0.01)
        for _ in range(5):
            ours.zero_grad()
            torch.nn.functional.cross_entropy(model(X), y).backward()
            grads = [p.grad.numpy().copy() for p in model.parameters()]
            ours.step()
            ref.step(grads)
        flat = [p for g in ref.param_groups for p in g["params"]]
        for p, r in zip(model.parameters(), flat):
            np.testing.assert_array_equal(p.detach().numpy(), r)  # the same kernel: bit-identical


def test_lr_scheduler_closure_groups_and_missing_grads():
    X, y = data()
    a, b = net(), net()
    groups = lambda m: [{"params": m[0].parameters()}, {"params": m[2].parameters(), "lr": 0.01}]  # noqa: E731
    theirs = torch.optim.SGD(groups(a), lr=0.1, momentum=0.9, foreach=False)
    ours = ft.SGD(groups(b), lr=0.1, momentum=0.9)
    sched = [torch.optim.lr_scheduler.StepLR(o, step_size=2, gamma=0.5) for o in (theirs, ours)]
    frozen = b[2].bias.detach().clone()
    for _ in range(5):
        for m, o in ((a, theirs), (b, ours)):
            def closure(m=m, o=o):
                o.zero_grad()
                loss = torch.nn.functional.cross_entropy(m(X), y)
                loss.backward()
                m[2].bias.grad = None  # a parameter without a gradient is left alone
                return loss
            loss = o.step(closure)
            assert torch.isfinite(loss)
        for s in sched:
            s.step()
    assert [g["lr"] for g in ours.param_groups] == [g["lr"] for g in theirs.param_groups] == [0.025, 0.0025]  # 5 steps: halved twice
    close(a, b, TOL[torch.float32])
    assert torch.equal(b[2].bias.detach(), frozen) and b[2].bias not in ours.state


def test_mixed_dtypes_in_one_group_and_fused_options():
    w32 = torch.zeros(5, dtype=torch.float32, requires_grad=True)
    w64 = torch.zeros(7, dtype=torch.float64, requires_grad=True)
    opt = ft.Adam([w32, w64], lr=0.1, clipvalue=0.5)
    w32.grad = torch.full((5,), 3.0)
    w64.grad = torch.full((7,), -3.0, dtype=torch.float64)
    opt.step()
    # Adam's first step: lr * g / (|g| + eps) with the clipped g = +-0.5
    move = 0.1 * 0.5 / (0.5 + 1e-8)
    np.testing.assert_allclose(w32.detach().numpy(), -move, rtol=1e-6)
    np.testing.assert_allclose(w64.detach().numpy(), move, rtol=1e-12)
    with pytest.raises(ValueError, match="global_clipnorm needs one dtype per group"):
        ft.Adam([w32, w64], global_clipnorm=1.0).step()


def test_global_clipnorm_matches_torch_clip_then_step():
    X, y = data()
    a, b = net(), net()
    theirs = torch.optim.AdamW(a.parameters(), lr=1e-2, foreach=False)
    ours = ft.AdamW(b.parameters(), lr=1e-2, global_clipnorm=0.1)
    for _ in range(5):
        theirs.zero_grad()
        torch.nn.functional.cross_entropy(a(X), y).backward()
        torch.nn.utils.clip_grad_norm_(a.parameters(), 0.1)
        theirs.step()
        train(b, ours, X, y, 1)
    close(a, b, TOL[torch.float32])


def test_check_finite_skips_the_step():
    w = torch.ones(4, requires_grad=True)
    opt = ft.Adam([w], lr=0.1, check_finite=True)
    w.grad = torch.tensor([1.0, float("nan"), 1.0, 1.0])
    opt.step()
    assert torch.equal(w.detach(), torch.ones(4)) and opt.skipped_steps == 1
    assert int(opt.state[w]["step"]) == 0


def test_bad_parameters_and_gradients():
    with pytest.raises(TypeError, match=r"param_groups\[0\]\['params'\]\[0\] has dtype torch.int32"):
        ft.Adam([torch.zeros(3, dtype=torch.int32)])
    with pytest.raises(ValueError, match="has gaps or overlaps in its memory"):
        ft.Adam([torch.zeros(4, 8)[:, ::2].detach().requires_grad_()])
    with pytest.raises(ValueError, match="lr must be a finite number >= 0"):
        ft.SGD([torch.zeros(3, requires_grad=True)], lr=-1.0)
    with pytest.raises(TypeError, match="unknown hyperparameters \\['momentun'\\]"):
        ft.SGD([torch.zeros(3, requires_grad=True)], momentun=0.9)
    opt = ft.Adam([torch.zeros(3, requires_grad=True)])
    with pytest.raises(ValueError, match=r"param_groups\[1\]\['params'\]\[0\] is on meta"):
        opt.add_param_group({"params": [torch.zeros(2, device="meta", requires_grad=True)]})
    with pytest.raises(ValueError, match="lr must be a finite number >= 0"):
        opt.add_param_group({"params": [torch.zeros(2, requires_grad=True)], "lr": float("nan")})
    assert len(opt.param_groups) == 1
    w = torch.zeros(3, requires_grad=True)
    opt = ft.Adam([w])
    w.grad = torch.ones(3).to_sparse()
    with pytest.raises(ValueError, match=r"param_groups\[0\]\['params'\]\[0\]\.grad is sparse"):
        opt.step()
    assert not opt.state and not w.detach().any()  # nothing written


def _pair(name="Adam", **hyper):
    a, b = net(), net()
    return a, b, getattr(torch.optim, name)(a.parameters(), **hyper), getattr(ft, name)(b.parameters(), **hyper)


def _train(model, opt, steps, seed=0, sched=None):
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        X = torch.randn(16, 20, generator=g)
        y = torch.randint(0, 3, (16,), generator=g)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(X), y).backward()
        opt.step()
        if sched is not None:
            sched.step()


def test_cached_plan_follows_changes_to_the_group():
    a, b, ta, fb = _pair("Adam", lr=1e-2)
    _train(a, ta, 3)
    _train(b, fb, 3)
    # replace a parameter's storage, change options, freeze a layer: the plan must follow
    for m in (a, b):
        m[0].weight.data = m[0].weight.data.clone()
    for o in (ta, fb):
        o.param_groups[0]["betas"] = (0.8, 0.99)
        o.param_groups[0]["lr"] = 5e-3
    _train(a, ta, 2)
    _train(b, fb, 2)
    for m in (a, b):
        m[2].weight.requires_grad_(False)
        m[2].weight.grad = None
    _train(a, ta, 2)
    _train(b, fb, 2)
    for m in (a, b):
        m[2].weight.requires_grad_(True)
    _train(a, ta, 2)
    _train(b, fb, 2)
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pb, pa, **TOL[torch.float32])
        torch.testing.assert_close(fb.state[pb]["step"], ta.state[pa]["step"])
    # a scheduler changes lr every step; a checkpoint reload replaces the state
    sa = torch.optim.lr_scheduler.StepLR(ta, 1, gamma=0.9)
    sb = torch.optim.lr_scheduler.StepLR(fb, 1, gamma=0.9)
    _train(a, ta, 3, sched=sa)
    _train(b, fb, 3, sched=sb)
    fb.load_state_dict(copy.deepcopy(ta.state_dict()))
    _train(a, ta, 2)
    _train(b, fb, 2)
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pb, pa, **TOL[torch.float32])


def test_prepared_step_falls_back_where_the_group_changed():
    # after the first steps a group runs its prepared call; each change below must leave it for
    # the full path and give torch.optim's result (or its error, with nothing written)
    a, b, ta, fb = _pair("Adam", lr=1e-2)
    _train(a, ta, 2)
    _train(b, fb, 2)
    for m in (a, b):  # a non-contiguous gradient (made contiguous by the full path)
        w = m[0].weight
        w.grad = torch.ones(w.shape[1], w.shape[0]).t() * 0.1
    ta.step()
    fb.step()
    for m, o in ((a, ta), (b, fb)):  # another tensor in the group's list
        m[2].bias = torch.nn.Parameter(m[2].bias.detach().clone())
        o.param_groups[0]["params"][-1] = m[2].bias
    _train(a, ta, 2)
    _train(b, fb, 2)
    fb.param_groups[0]["params"] = tuple(fb.param_groups[0]["params"])  # a tuple for the list
    _train(b, fb, 1)
    fb.param_groups[0]["params"] = list(fb.param_groups[0]["params"])
    _train(a, ta, 1)
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pb, pa, **TOL[torch.float32])
    before = [p.detach().clone() for p in b.parameters()]
    b[0].bias.grad = torch.ones(b[0].bias.shape).to_sparse()
    with pytest.raises(ValueError, match=r"param_groups\[0\]\['params'\]\[1\]\.grad is sparse"):
        fb.step()
    assert all(torch.equal(p0, p.detach()) for p0, p in zip(before, b.parameters()))


def test_check_finite_skips_a_prepared_step():
    w = torch.ones(4, requires_grad=True)
    opt = ft.Adam([w], lr=0.1, check_finite=True)
    for _ in range(2):  # the second step runs the kept call
        w.grad = torch.ones(4)
        opt.step()
    assert opt._plans[0].prepared is not None
    before = w.detach().clone()
    w.grad = torch.tensor([1.0, float("inf"), 1.0, 1.0])
    opt.step()
    assert torch.equal(w.detach(), before) and opt.skipped_steps == 1 and int(opt.state[w]["step"]) == 2
    w.grad = torch.ones(4)
    opt.step()
    assert int(opt.state[w]["step"]) == 3 and not torch.equal(w.detach(), before)


@pytest.mark.parametrize("name", ["Adam", "SGD", "Adagrad", "RMSprop", "NAdam"])
def test_random_changes_between_steps_match_torch_optim(name):
    # a seeded random walk of what training loops do between steps; fastopt.torch (its kept call
    # and every fall-back) against torch.optim after each step, in float64
    rng = np.random.default_rng(11)
    shapes = [(7, 5), (5,), (3, 7), (1,)]
    ours = [torch.zeros(s, dtype=torch.float64).normal_(generator=torch.Generator().manual_seed(i)).requires_grad_()
            for i, s in enumerate(shapes)]
    theirs = [p.detach().clone().requires_grad_() for p in ours]
    hyper = {"Adam": {"lr": 1e-2}, "SGD": {"lr": 1e-2, "momentum": 0.9}, "Adagrad": {"lr": 1e-2},
             "RMSprop": {"lr": 1e-3, "momentum": 0.5}, "NAdam": {"lr": 1e-2}}[name]
    # torch keeps NAdam's mu_product in float32 (see the module's docstring)
    tol = {"rtol": 1e-7, "atol": 1e-9} if name == "NAdam" else {"rtol": 1e-12, "atol": 1e-12}
    fo, to = getattr(ft, name)(ours, **hyper), getattr(torch.optim, name)(theirs, **hyper)
    for t in range(60):
        action = rng.integers(0, 7)
        grads = [torch.from_numpy(rng.standard_normal(s)) for s in shapes]
        frozen = int(rng.integers(0, len(shapes))) if action == 1 else -1
        for j, (a, b) in enumerate(zip(ours, theirs)):
            if j == frozen:
                a.grad = b.grad = None
            elif action == 2:  # non-contiguous gradients
                a.grad = torch.stack([grads[j], grads[j]], -1)[..., 0]  # a strided view of the same values
                assert a.grad.numel() == 1 or not a.grad.is_contiguous()
                b.grad = grads[j].clone()
            elif action == 6 and a.grad is not None:  # accumulated into the same tensors
                a.grad.mul_(0).add_(grads[j])
                b.grad = grads[j].clone()
            else:
                a.grad, b.grad = grads[j].clone(), grads[j].clone()
        if action == 3:
            for o in (fo, to):
                o.param_groups[0]["lr"] *= 0.9
        elif action == 4:
            key, value = {"Adam": ("betas", (0.8, 0.99)), "SGD": ("momentum", 0.5), "Adagrad": ("lr_decay", 1e-3),
                          "RMSprop": ("alpha", 0.9), "NAdam": ("momentum_decay", 1e-2)}[name]
            for o in (fo, to):
                o.param_groups[0][key] = value
        elif action == 5:
            j = int(rng.integers(0, len(shapes)))
            ours[j].data = ours[j].data.clone()
            theirs[j].data = theirs[j].data.clone()
        fo.step()
        to.step()
        for a, b in zip(ours, theirs):
            torch.testing.assert_close(a, b, **tol, msg=f"step {t}, action {action}")


def test_torch_grads_views_or_none():
    from fastopt import _core
    p, q = torch.zeros(5, requires_grad=True), torch.zeros(3, requires_grad=True)
    p.grad = torch.arange(5.0)
    params = [p, q]
    expect = (tuple(params), (p.data_ptr(), q.data_ptr()), (5, -1), torch.float32, torch.strided, np.dtype(np.float32))
    views = _core._torch_grads(params, *expect)
    assert len(views) == 1 and views[0].base is p.grad and views[0].ctypes.data == p.grad.data_ptr()
    np.testing.assert_array_equal(views[0], np.arange(5.0, dtype=np.float32))
    assert _core._torch_grads([q, p], *expect) is None                       # other tensors
    assert _core._torch_grads(params, expect[0], (0, q.data_ptr()), *expect[2:]) is None  # moved memory
    assert _core._torch_grads(params, *expect[:2], (5, 3), *expect[3:]) is None  # a gradient that was not there
    assert _core._torch_grads(params, *expect[:3], torch.float64, *expect[4:]) is None
    p.grad = torch.ones(10)[::2]
    assert _core._torch_grads(params, *expect) is None                       # not contiguous
    p.grad = torch.ones(5).to_sparse()
    assert _core._torch_grads(params, *expect) is None
    p.grad = None
    assert _core._torch_grads(params, *expect) is None
    assert _core._torch_grads(tuple(params), *expect) is None                 # not the group's list
    with pytest.raises(TypeError):
        _core._torch_grads(params, list(expect[0]), *expect[1:])


def test_prepared_call_runs_the_kept_update_on_new_gradients():
    import fastopt.functional as F
    from fastopt import _core
    rng = np.random.default_rng(0)
    w = torch.from_numpy(rng.standard_normal(300).astype(np.float32)).requires_grad_()
    m, v = np.zeros(300, np.float32), np.zeros(300, np.float32)
    ref = [w.detach().numpy().copy(), m.copy(), v.copy()]
    w.grad = torch.from_numpy(rng.standard_normal(300).astype(np.float32))
    applied, kept = _core._prepare(F.adam_, [w.detach().numpy()], [w.grad.numpy()], [m], [v], step=1, lr=1e-2,
                                   weight_decay=0.1)
    F.adam_([ref[0]], [w.grad.numpy()], [ref[1]], [ref[2]], step=1, lr=1e-2, weight_decay=0.1)
    assert applied is True
    kept.expect_torch((w,), (w.data_ptr(),), (300,), torch.float32, torch.strided)
    for step, lr in ((2, 1e-2), (3, 5e-3)):  # new gradient tensors, a new lr: the same as the functional call
        w.grad = torch.from_numpy(rng.standard_normal(300).astype(np.float32))
        assert kept.run([w], step, lr) is True
        F.adam_([ref[0]], [w.grad.numpy()], [ref[1]], [ref[2]], step=step, lr=lr, weight_decay=0.1)
        np.testing.assert_array_equal(w.detach().numpy(), ref[0])
        np.testing.assert_array_equal(m, ref[1])
        np.testing.assert_array_equal(v, ref[2])
    before = w.detach().clone()
    with pytest.raises(ValueError, match="step must be in"):
        kept.run([w], 0, 1e-2)
    with pytest.raises(ValueError, match="lr must be a finite number"):
        kept.run([w], 4, float("nan"))
    assert kept.run([w.detach().clone()], 4, 1e-2) is None  # another tensor
    w.grad = None
    assert kept.run([w], 4, 1e-2) is None
    w.grad = w.detach()  # the parameter's own memory as its gradient
    with pytest.raises(ValueError, match="share memory"):
        kept.run([w], 4, 1e-2)
    assert torch.equal(w.detach(), before)
    with pytest.raises(ValueError, match="ran no update"):
        _core._prepare(lambda: None)
    with pytest.raises(ValueError, match="lr must be"):  # the kernel's own checks, nothing kept
        _core._prepare(F.adam_, [w.detach().numpy()], [w.grad.numpy().copy()], [m], [v], step=1, lr=-1.0)


def test_nadam_runs_its_kept_call_with_each_steps_mu_product():
    import fastopt.functional as F
    from fastopt import _core
    rng = np.random.default_rng(3)
    w = torch.from_numpy(rng.standard_normal(300)).requires_grad_()
    m, v = np.zeros(300), np.zeros(300)
    ref = [w.detach().numpy().copy(), m.copy(), v.copy()]
    w.grad = torch.from_numpy(rng.standard_normal(300))
    mu = F.nadam_mu(1)
    applied, kept = _core._prepare(F.nadam_, [w.detach().numpy()], [w.grad.numpy()], [m], [v], step=1, mu_product=mu)
    F.nadam_([ref[0]], [w.grad.numpy()], [ref[1]], [ref[2]], step=1, mu_product=mu)
    assert applied is True
    kept.expect_torch((w,), (w.data_ptr(),), (300,), torch.float64, torch.strided)
    for step in (2, 3):  # the kept call with this step's mu_product: the functional call's bits
        w.grad = torch.from_numpy(rng.standard_normal(300))
        mu *= F.nadam_mu(step)
        assert kept.run([w], step, 2e-3, mu) is True
        F.nadam_([ref[0]], [w.grad.numpy()], [ref[1]], [ref[2]], step=step, mu_product=mu)
        for got, want in zip((w.detach().numpy(), m, v), ref):
            np.testing.assert_array_equal(got, want)
    before = w.detach().clone()
    with pytest.raises(ValueError, match="takes mu_product"):
        kept.run([w], 4, 2e-3)
    with pytest.raises(ValueError, match=r"mu_product must be in \[0, 1\)"):
        kept.run([w], 4, 2e-3, 1.0)
    adam_m, adam_v = np.zeros(300), np.zeros(300)
    _, adam = _core._prepare(F.adam_, [w.detach().numpy()], [w.grad.numpy()], [adam_m], [adam_v], step=1, lr=0.0)
    adam.expect_torch((w,), (w.data_ptr(),), (300,), torch.float64, torch.strided)
    with pytest.raises(ValueError, match="takes no mu_product"):
        adam.run([w], 2, 1e-2, 0.5)
    assert torch.equal(w.detach(), before)
    # through fastopt.torch: the group's kept call from the second step, mu_product as torch.optim's
    a, b, ta, fb = _pair("NAdam", lr=1e-2)
    _train(a, ta, 3)
    _train(b, fb, 3)
    assert fb._plans[0].prepared is not None
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pb, pa, **TOL[torch.float32])
        assert float(fb.state[pb]["mu_product"]) == pytest.approx(float(ta.state[pa]["mu_product"]), rel=1e-6)


def test_step_hooks_and_separate_step_tensors():
    _, b, _, fb = _pair("AdamW", lr=1e-2)
    calls = []
    h1 = fb.register_step_pre_hook(lambda opt, args, kwargs: calls.append("pre"))
    h2 = fb.register_step_post_hook(lambda opt, args, kwargs: calls.append("post"))
    _train(b, fb, 2)
    assert calls == ["pre", "post"] * 2
    h1.remove()
    h2.remove()
    _train(b, fb, 1)
    assert len(calls) == 4
    steps = [fb.state[p]["step"] for p in b.parameters()]
    assert all(float(s) == 3.0 for s in steps)
    steps[0].fill_(0.0)  # each parameter's step is its own (views of one buffer, no sharing)
    assert float(steps[1]) == 3.0


def test_torch_keywords_tensor_lr_and_signatures():
    import inspect
    m = net()
    opt = ft.AdamW(m.parameters(), lr=torch.tensor(1e-2), foreach=True, fused=True, capturable=False,
                   differentiable=False)
    ref = torch.optim.AdamW(net().parameters(), lr=torch.tensor(1e-2), foreach=False)
    assert opt.param_groups[0]["fused"] is True  # kept as given; the step is fused either way
    for name in ("capturable", "differentiable"):
        with pytest.raises(NotImplementedError, match=f"{name}=True is not supported"):
            ft.Adam(net().parameters(), **{name: True})
    _train(m, opt, 3)
    r = net()
    ref = torch.optim.AdamW(r.parameters(), lr=torch.tensor(1e-2))
    _train(r, ref, 3)
    for a, b in zip(m.parameters(), r.parameters()):
        torch.testing.assert_close(a, b, **TOL[torch.float32])
    betas = (torch.tensor(0.8), torch.tensor(0.99))  # torch takes tensor betas too
    m, r = net(), net()
    _train(m, ft.Adam(m.parameters(), lr=torch.tensor(1e-2), betas=betas), 3)
    _train(r, torch.optim.Adam(r.parameters(), lr=torch.tensor(1e-2), betas=betas, foreach=False), 3)
    for a, b in zip(m.parameters(), r.parameters()):
        torch.testing.assert_close(a, b, **TOL[torch.float32])
    with pytest.raises(ValueError, match=r"\['betas'\]: a tensor must have one element"):
        ft.Adam(net().parameters(), betas=(torch.tensor([0.9, 0.9]), 0.999))
    for cls in (ft.Adam, optim.Adam):
        sig = inspect.signature(cls)
        assert list(sig.parameters)[:3] == ["params", "lr", "betas"] and sig.parameters["eps"].default == 1e-8
    assert "foreach" in inspect.signature(ft.SGD).parameters and "momentum" in inspect.signature(optim.SGD).parameters
    with pytest.raises(ValueError, match=r"has gaps or overlaps in its memory \(strides \(8, 2\)\).*make it contiguous"):
        ft.Adam([torch.empty_strided((4, 4), (8, 2)).requires_grad_()])
    with pytest.raises(ValueError, match="has gaps or overlaps"):  # overlapping: a broadcast
        ft.Adam([torch.zeros(4, 1).expand(4, 4).requires_grad_()])


@pytest.mark.parametrize("norm_type", [2.0, 1.0, float("inf"), 3.0])
def test_clip_grad_norm_and_value_on_tensors_match_torch(norm_type):
    a, b = net(), net()
    for m in (a, b):
        torch.nn.functional.cross_entropy(m(torch.randn(8, 20, generator=torch.Generator().manual_seed(0))),
                                          torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])).backward()
        for p in m.parameters():
            p.grad *= 10
    want = torch.nn.utils.clip_grad_norm_(a.parameters(), 0.5, norm_type=norm_type)
    got = ft.clip_grad_norm_(b.parameters(), 0.5, norm_type=norm_type)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pb.grad, pa.grad, rtol=1e-5, atol=1e-7)
    assert torch.nn.utils.clip_grad_value_(a.parameters(), 0.01) is None
    assert ft.clip_grad_value_(b.parameters(), 0.01) is None
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pb.grad, pa.grad, rtol=1e-5, atol=1e-7)
    p = torch.zeros(3, requires_grad=True)
    p.grad = torch.tensor([float("nan"), 1.0, 1.0])
    with pytest.raises(RuntimeError, match="non-finite"):
        ft.clip_grad_norm_([p], 1.0, error_if_nonfinite=True)


def _layouts():
    """Dense tensors whose dimensions lie in memory in another order than C's, and their
    contiguous twins: a conv weight in channels_last, one with 1x1 kernels (size-1 dimensions,
    whose strides say nothing), a transposed matrix, and a bias."""
    g = torch.Generator().manual_seed(5)
    shapes = [(8, 3, 3, 3), (16, 8, 1, 1), (6, 10), (8,)]
    base = [torch.randn(s, generator=g) for s in shapes]
    laid = [base[0].contiguous(memory_format=torch.channels_last),
            base[1].contiguous(memory_format=torch.channels_last), base[2].t().contiguous().t(), base[3].clone()]
    return base, laid, g


@pytest.mark.parametrize("name,hyper", [("Adam", {}), ("AdamW", {"amsgrad": True}), ("SGD", {"momentum": 0.9}),
                                        ("Adagrad", {}), ("RMSprop", {"centered": True, "momentum": 0.5}),
                                        ("NAdam", {}), ("Adam", {"state_dtype": "bfloat16"})])
def test_channels_last_and_other_dense_layouts(name, hyper):
    """torch.optim updates channels_last (and transposed) parameters; so does fastopt.torch, with
    every state laid out as its parameter: the same steps as torch.optim to the float32 tolerance,
    and bit for bit those of the same values laid out contiguously (the update is element by
    element), whether each gradient comes in its parameter's layout or in another one."""
    base, laid, g = _layouts()
    assert not laid[0].is_contiguous() and not laid[2].is_contiguous()
    ours = [t.clone().requires_grad_() for t in laid]
    for a, b in zip(ours, laid):
        assert a.stride() == b.stride()
    theirs = [t.clone().requires_grad_() for t in laid]
    flat = [t.clone().requires_grad_() for t in base]
    torch_hyper = {k: v for k, v in hyper.items() if k != "state_dtype"}
    opts = (getattr(ft, name)(ours, lr=1e-2, **hyper), getattr(torch.optim, name)(theirs, lr=1e-2, foreach=False,
                                                                                  **torch_hyper),
            getattr(ft, name)(flat, lr=1e-2, **hyper))
    for step in range(4):
        grads = [torch.randn(t.shape, generator=g) for t in base]
        for i, gr in enumerate(grads):
            in_layout = torch.empty_like(laid[i]).copy_(gr)
            ours[i].grad = in_layout if (step + i) % 2 else gr.clone()  # the parameter's layout, or C's
            theirs[i].grad = in_layout.clone()
            flat[i].grad = gr.clone()
        for o in opts:
            o.step()
    for i, (a, b, c) in enumerate(zip(ours, theirs, flat)):
        if hyper.get("state_dtype") is None:
            torch.testing.assert_close(a, b, **TOL[torch.float32])
        assert torch.equal(a, c) and a.stride() == laid[i].stride()
        for key, st in opts[0].state[a].items():
            if isinstance(st, torch.Tensor) and st.shape == a.shape:
                assert _layout(st) == _layout(a), key
                assert torch.equal(st, opts[2].state[c][key]), key


def _layout(t):
    return [s for s, n in zip(t.stride(), t.shape) if n != 1]


def test_channels_last_8bit_state_follows_memory_order_and_converts_across_layouts():
    """8-bit state quantizes blocks of 256 in memory order: a channels_last parameter's steps are
    bit for bit those of fastopt.optim on the same memory as flat NumPy arrays; a checkpoint moves
    between layouts by dequantizing in the saved layout's order (exactly: the same values as a
    load into its own layout) and quantizing in the new one's."""
    base, laid, g = _layouts()
    ours = [t.clone().requires_grad_() for t in laid]
    mirror = [t.detach().clone() for t in laid]  # the same memory order, as flat NumPy arrays
    flat_np = [t.as_strided((t.numel(),), (1,)).numpy() for t in mirror]
    opt = ft.Adam(ours, lr=1e-2, state_dtype="int8")
    ref = optim.Adam(flat_np, lr=1e-2, state_dtype="int8")
    for step in range(3):
        grads = [torch.empty_like(t).copy_(torch.randn(t.shape, generator=g)) for t in laid]
        for p, gr in zip(ours, grads):
            p.grad = gr
        opt.step()
        ref.step([gr.as_strided((gr.numel(),), (1,)).numpy().copy() for gr in grads])
    for p, m in zip(ours, mirror):
        assert torch.equal(p.detach(), m)
    saved = copy.deepcopy(opt.state_dict())
    values = []
    for targets in (laid, base):  # the same layout, then C's
        params = [t.clone().requires_grad_() for t in targets]
        f32 = ft.Adam(params, lr=1e-2)
        f32.load_state_dict(copy.deepcopy(saved))
        for p in params:
            p.grad = torch.zeros_like(p)
        f32.param_groups[0]["lr"] = 0.0  # a step that converts the state and moves nothing
        f32.step()
        values.append([f32.state[p]["exp_avg"].clone() for p in params])
        assert all(_layout(f32.state[p]["exp_avg"]) == _layout(p) for p in params)
    for a, b in zip(*values):
        assert torch.equal(a, b)  # dequantized exactly, whatever the layout loaded into
    back = [t.clone().requires_grad_() for t in base]
    q8 = ft.Adam(back, lr=1e-2, state_dtype="int8")
    q8.load_state_dict(copy.deepcopy(saved))
    for p in back:
        p.grad = torch.zeros_like(p)
    q8.param_groups[0]["lr"] = 0.0
    q8.step()
    for p, v in zip(back, values[1]):
        # requantized in C's order, then decoded, times beta1, encoded (the step): two roundings of
        # at most 2^-4 of a value each (E4M3), or of 2^-9 / 448 of the block's largest below 2^-6 of it
        got = torch.from_numpy(P.Blockwise8(q8.state[p]["exp_avg"].numpy(), q8.state[p]["exp_avg_absmax"].numpy(),
                                            False).dequantize())
        torch.testing.assert_close(got, v, rtol=0.13, atol=float(v.abs().max()) * 2 ** -16)


def test_a_parameter_relaid_at_the_same_address_takes_the_checked_path():
    """param.data = param.data.t() keeps the address but changes the memory order: the step kept
    in the extension must not run it with a gradient laid out otherwise (it would pair elements
    wrongly).  The gradient is laid out as the parameter and the update runs over the memory, each
    state staying with the weight it belongs to: bit for bit fastopt.optim's steps on the memory."""
    g = torch.Generator().manual_seed(7)
    ours = torch.randn(8, 8, generator=g).requires_grad_()
    memory = ours.detach().clone().view(-1).numpy()
    opt, ref = ft.Adam([ours], lr=1e-2), optim.Adam([memory], lr=1e-2)
    for step in range(5):
        if step == 2:
            ptr = ours.data_ptr()
            ours.data = ours.data.t()
            assert ours.data_ptr() == ptr and not ours.is_contiguous()
        grad = torch.randn(8, 8, generator=g)
        ours.grad = grad.clone()  # C-contiguous, whatever the parameter's layout
        opt.step()
        ref.step([(grad.t() if step >= 2 else grad).contiguous().view(-1).numpy()])
        np.testing.assert_array_equal(ours.detach().as_strided((64,), (1,)).numpy(), memory)


def test_channels_last_bfloat16_with_stochastic_rounding_follows_memory_order():
    """A bfloat16 channels_last model with stochastic rounding: each step's seed and each
    element's random bits as fastopt.optim draws them on the same memory as flat arrays."""
    pytest.importorskip("ml_dtypes")
    _, laid, g = _layouts()
    laid = [t.to(torch.bfloat16) for t in laid]
    ours = [t.clone().requires_grad_() for t in laid]
    mirror = [t.detach().clone() for t in laid]
    flat_np = [t.as_strided((t.numel(),), (1,)).view(torch.int16).numpy().view(P.bfloat16()) for t in mirror]
    opt = ft.Adam(ours, lr=1e-2, stochastic_rounding=True, seed=3)
    ref = optim.Adam(flat_np, lr=1e-2, stochastic_rounding=True, seed=3)
    for step in range(3):
        grads = [torch.empty_like(t).copy_(torch.randn(t.shape, generator=g)) for t in laid]
        for p, gr in zip(ours, grads):
            p.grad = gr
        opt.step()
        ref.step([gr.as_strided((gr.numel(),), (1,)).view(torch.int16).numpy().view(P.bfloat16()).copy()
                  for gr in grads])
        for p, m in zip(ours, mirror):
            assert torch.equal(p.detach().view(torch.int16), m.view(torch.int16)), step


def test_step_inside_a_compiled_function():
    """A training step under torch.compile that calls opt.step(): dynamo does not trace into the
    step (NumPy views and the extension) but runs it eagerly, so the compiled loop trains as the
    eager one (dynamo's eager backend: the graph capture without a C++ compiler)."""
    X, y = data()
    results = []
    for cached in (ft._hyper_keys, ft._kernel_defaults):  # the first step made under compile
        cached.__dict__.pop("cache", None)
    for compiled in (True, False):
        model = net()
        opt = ft.Adam(model.parameters(), lr=1e-2)

        def step():
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(X), y)
            loss.backward()
            opt.step()
            return loss.detach()

        if compiled:
            torch._dynamo.reset()
            step = torch.compile(step, backend="eager")
        losses = [float(step()) for _ in range(4)]
        results.append((losses, model))
    (compiled_losses, compiled_model), (eager_losses, eager) = results
    np.testing.assert_allclose(compiled_losses, eager_losses, rtol=1e-6)
    close(compiled_model, eager, TOL[torch.float32])
