"""The kernels against torch.optim on the same data (skipped where torch is not installed).

Tolerance: torch's CPU kernels contract some multiply-adds into FMA and compute lerp with
their own vector code, so the last bits differ per step; after 8 steps float32 agrees to
rtol 2e-5 / atol 2e-6 (a few ulps of the step size, which is what moves) and float64 to 1e-12.
NAdam in float64 is the exception: torch keeps its running mu_product as a float32 tensor
(torch.optim.optimizer._get_scalar_dtype), so its step sizes carry float32 rounding (~1e-8).
"""
import numpy as np
import pytest

from cases import CASES, RULES, case_id, make_arrays, run_fastopt

torch = pytest.importorskip("torch")

TORCH = {
    "gd": lambda h: (torch.optim.SGD, {"lr": h["lr"]}),
    "sgd": lambda h: (torch.optim.SGD, h),
    "adam": lambda h: (torch.optim.AdamW if h.get("decoupled_weight_decay") else torch.optim.Adam,
                       {k: v for k, v in h.items() if k != "decoupled_weight_decay"}),
    "adagrad": lambda h: (torch.optim.Adagrad, h),
    "rmsprop": lambda h: (torch.optim.RMSprop, h),
    "adadelta": lambda h: (torch.optim.Adadelta, h),
    "adamax": lambda h: (torch.optim.Adamax, h),
    "nadam": lambda h: (torch.optim.NAdam, h),
    "radam": lambda h: (torch.optim.RAdam, h),
}
STEPS = 8
TOL = {np.float32: {"rtol": 2e-5, "atol": 2e-6}, np.float64: {"rtol": 1e-12, "atol": 1e-13}}


def torch_hyper(hyper):
    h = dict(hyper)
    if "beta1" in h:
        h["betas"] = (h.pop("beta1"), h.pop("beta2", 0.999))
    if h.get("decoupled_weight_decay") is False:
        h.pop("decoupled_weight_decay")
    return h


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("maximize", [False, True])
@pytest.mark.parametrize("case", [c for c in CASES if c[0] in TORCH and c[1].get("convention", "torch") == "torch"],
                         ids=case_id)
def test_matches_torch_optim(case, dtype, maximize):
    name, hyper = case
    sizes = [1, 100, 40000]
    params, states, rng = make_arrays(sizes, dtype, RULES[name][1])
    grads = [[rng.standard_normal(n).astype(dtype) for n in sizes] for _ in range(STEPS)]
    tparams = [torch.tensor(p.copy(), requires_grad=True) for p in params]
    cls, kw = TORCH[name](torch_hyper(hyper))
    if name != "gd" or maximize:
        kw = dict(kw, maximize=maximize)
    opt = cls(tparams, foreach=False, **kw)
    for gs in grads:
        for tp, g in zip(tparams, gs):
            tp.grad = torch.from_numpy(g.copy())
        opt.step()
    run_fastopt(name, hyper, params, grads, states, {"maximize": maximize})
    tol = {"rtol": 1e-7, "atol": 1e-9} if (name, dtype) == ("nadam", np.float64) else TOL[dtype]
    for p, tp in zip(params, tparams):
        np.testing.assert_allclose(p, tp.detach().numpy(), **tol)


@pytest.mark.parametrize("norm_type", [1.0, 2.0, float("inf")])
def test_clip_grad_norm_matches_torch(norm_type):
    import fastopt
    rng = np.random.default_rng(0)
    gs = [rng.standard_normal(n).astype(np.float32) * 4 for n in (3, 1000, 50000)]
    ts = [torch.zeros(g.shape, requires_grad=True) for g in gs]
    for t, g in zip(ts, gs):
        t.grad = torch.from_numpy(g.copy())
    total_t = torch.nn.utils.clip_grad_norm_(ts, 2.0, norm_type)
    total = fastopt.clip_grad_norm_(gs, 2.0, norm_type)
    assert total == pytest.approx(float(total_t), rel=1e-5)
    for g, t in zip(gs, ts):
        np.testing.assert_allclose(g, t.grad.numpy(), rtol=1e-5, atol=1e-7)


def test_fused_clip_matches_torch_clip_then_adamw():
    """grad_scale = clip_coef(global_norm) fused into AdamW equals clip_grad_norm_ then AdamW.step()."""
    import fastopt
    rng = np.random.default_rng(3)
    p = [rng.standard_normal(n).astype(np.float32) for n in (10, 20000)]
    m, v = [np.zeros_like(x) for x in p], [np.zeros_like(x) for x in p]
    tp = [torch.tensor(x.copy(), requires_grad=True) for x in p]
    opt = torch.optim.AdamW(tp, lr=1e-2, foreach=False)
    for t in range(1, 6):
        gs = [rng.standard_normal(x.size).astype(np.float32) * 10 for x in p]
        for a, g in zip(tp, gs):
            a.grad = torch.from_numpy(g.copy())
        torch.nn.utils.clip_grad_norm_(tp, 1.0)
        opt.step()
        scale = fastopt.clip_coef(fastopt.global_norm(gs), 1.0)
        fastopt.adamw_(p, gs, m, v, step=t, lr=1e-2, grad_scale=scale)
    for a, b in zip(p, tp):
        np.testing.assert_allclose(a, b.detach().numpy(), **TOL[np.float32])
