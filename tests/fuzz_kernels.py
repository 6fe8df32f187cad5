"""Fuzzing every public kernel function (the rules, and the clip, norm and penalty functions) with
hostile arguments (run by test_fuzz.py in a child
process, so a crash fails the test instead of killing the run).

Each example takes a valid call (a rule, its options, one to three arrays per role) and either
leaves it valid, and then the result must match fastopt.reference, or spoils one thing (None in a
position, a wrong dtype, a non-contiguous / negative-stride / Fortran / 0-d / misaligned /
read-only / overlapping array, mismatched lists, a list subclass, a huge list of tiny arrays,
NaN / Inf / negative / huge hyperparameters, a bad step), and then the call must either work or
raise TypeError / ValueError with every array unchanged.

    python tests/fuzz_kernels.py --examples 300
"""
import argparse
import os
import sys

import numpy as np
from hypothesis import HealthCheck, given, settings, strategies as st

sys.path.insert(0, os.path.dirname(__file__))
import fastopt  # noqa: E402
from cases import CASES, RULES, kernel_kwargs, run_reference  # noqa: E402

MUTATIONS = ["none", "none", "none", "None", "float16", "int32", "bool", "object", "complex64", "bigendian",
             "strided", "negstride", "fortran", "zerod", "misaligned", "readonly", "overlap", "shortlist",
             "subclass", "tuple", "many", "hyper_nan", "hyper_inf", "hyper_neg", "hyper_huge", "step_zero",
             "step_neg", "step_huge", "step_bool"]


class Sub(list):
    pass


def misaligned(n, dtype):
    buf = np.zeros(n * np.dtype(dtype).itemsize + 1, np.uint8)
    return buf[1:].view(dtype)


def build(draw_sizes, dtype, mutation, pos, rng, nstate):
    k = 2 + nstate
    sizes = draw_sizes
    roles = [[rng.standard_normal(n).astype(dtype) for n in sizes] for _ in range(k)]
    for r in roles[2:]:
        for a in r:
            a[...] = np.abs(a) * 0.1  # non-negative second moments
    pos = pos % k
    if mutation == "None":
        roles[pos] = None
    elif mutation in ("float16", "int32", "bool", "object", "complex64"):
        roles[pos][0] = roles[pos][0].astype(mutation if mutation != "bool" else np.bool_)
    elif mutation == "bigendian":
        roles[pos][0] = roles[pos][0].astype(np.dtype(dtype).newbyteorder(">"))
    elif mutation == "strided":
        roles[pos][0] = np.repeat(roles[pos][0], 2)[::2]
    elif mutation == "negstride":
        roles[pos][0] = roles[pos][0][::-1]
    elif mutation == "fortran":
        n = roles[pos][0].size
        roles[pos][0] = np.asfortranarray(np.zeros((n, 2), dtype))[:, 0]
    elif mutation == "zerod":
        roles[pos][0] = np.array(1.0, dtype)
    elif mutation == "misaligned":
        a = misaligned(roles[pos][0].size, dtype)
        a[...] = roles[pos][0]
        roles[pos][0] = a
    elif mutation == "readonly":
        roles[pos][0].flags.writeable = False
    elif mutation == "overlap":
        other = (pos + 1) % k
        roles[pos][0] = roles[other][0]
    elif mutation == "shortlist":
        roles[pos] = roles[pos][:-1]
    elif mutation == "subclass":
        roles[pos] = Sub(roles[pos])
    elif mutation == "tuple":
        roles[pos] = tuple(roles[pos])
    elif mutation == "many":
        roles = [[np.full(1, 0.5, dtype) for _ in range(300)] for _ in range(k)]
    return roles


def snapshot(roles):
    out = []
    for r in roles:
        if r is None:
            continue
        for a in r:
            if isinstance(a, np.ndarray):
                out.append((a, a.copy()))
    return out


def unchanged(snap):
    return all(a.dtype == b.dtype and a.tobytes() == b.tobytes() for a, b in snap)


# the clip, norm and penalty functions: (name, call(arrays, params, value), writes the first role)
OPS = {
    "global_norm": (lambda a, p, v: fastopt.global_norm(a, v), False),
    "array_norms": (lambda a, p, v: fastopt.array_norms(a, v), False),
    "clip_grad_norm_": (lambda a, p, v: fastopt.clip_grad_norm_(a, v), True),
    "clip_grad_value_": (lambda a, p, v: fastopt.clip_grad_value_(a, v), True),
    "scale_": (lambda a, p, v: fastopt.scale_(a, v), True),
    "regularize_grad_": (lambda a, p, v: fastopt.regularize_grad_(a, p, l1=v, l2=v), True),
    "penalty": (lambda a, p, v: fastopt.penalty(a, l1=v, l2=v), False),
    "all_finite": (lambda a, p, v: fastopt.all_finite(a), False),
}
OP_VALUES = [1.0, 2.0, 0.5, 0.0, -1.0, float("nan"), float("inf"), 1e300]


@st.composite
def op_example(draw):
    name = draw(st.sampled_from(sorted(OPS)))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    sizes = draw(st.lists(st.sampled_from([0, 1, 7, 17, 1000, 16385]), min_size=1, max_size=3))
    mutation = draw(st.sampled_from([m for m in MUTATIONS if not m.startswith(("hyper_", "step_"))]))
    return name, dtype, sizes, mutation, draw(st.integers(0, 1)), draw(st.sampled_from(OP_VALUES)), draw(
        st.integers(0, 2**16))


def check_op(ex):
    name, dtype, sizes, mutation, pos, value, seed = ex
    call, writes = OPS[name]
    roles = build(sizes, dtype, mutation, pos, np.random.default_rng(seed), 0)
    snap = snapshot(roles)
    try:
        call(roles[0], roles[1], value)
    except (TypeError, ValueError) as e:
        assert unchanged(snap), (ex, "an array changed before the error", e)
        return
    except RuntimeError as e:  # clip_grad_norm_'s error_if_nonfinite is off: never raised here
        raise AssertionError((ex, e)) from None
    if not writes:
        assert unchanged(snap), (ex, "a read-only function wrote")


@st.composite
def example(draw):
    name, hyper = draw(st.sampled_from(CASES))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    sizes = draw(st.lists(st.sampled_from([0, 1, 7, 16, 17, 33, 1000, 16385]), min_size=1, max_size=3))
    mutation = draw(st.sampled_from(MUTATIONS))
    pos = draw(st.integers(0, 4))
    seed = draw(st.integers(0, 2**16))
    return name, hyper, dtype, sizes, mutation, pos, seed


def check(ex):
    name, hyper, dtype, sizes, mutation, pos, seed = ex
    fn, nstate, takes_step = RULES[name]
    rng = np.random.default_rng(seed)
    roles = build(sizes, dtype, mutation, pos, rng, nstate)
    kw = kernel_kwargs(name, hyper, 1, fastopt.nadam_mu(1, hyper.get("beta1", 0.9), hyper.get("momentum_decay", 4e-3)))
    key = "lr"
    if mutation.startswith("hyper_"):
        key = ["lr", "weight_decay", "eps", "betas"][pos % 4] if name not in ("gd", "sgd", "lion") else "lr"
        if key == "eps" and name in ("lion",):
            key = "lr"
        value = {"hyper_nan": float("nan"), "hyper_inf": float("inf"), "hyper_neg": -0.5, "hyper_huge": 1e300}[mutation]
        kw[key] = (value, 0.999) if key == "betas" else value
    if mutation.startswith("step_") and takes_step:
        kw["step"] = {"step_zero": 0, "step_neg": -1, "step_huge": 2**60, "step_bool": True}[mutation]
    valid = mutation in ("none", "subclass", "tuple", "many")
    expected = None
    if valid:
        expected = [[a.copy() for a in r] for r in roles]
    snap = snapshot(roles)
    try:
        fn(*roles, **kw)
    except (TypeError, ValueError) as e:
        assert not valid, (ex, "a valid call raised", e)
        assert unchanged(snap), (ex, "an array changed before the error", e)
        return
    if valid:
        params, grads, states = expected[0], [expected[1]], expected[2:]
        run_reference(name, hyper, params, grads, states)
        tol = 4 * np.finfo(dtype).eps
        got = list(roles[0])
        for g, w in zip(got, params):
            np.testing.assert_allclose(g, w, rtol=tol, atol=tol, err_msg=str(ex))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--examples", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    @settings(max_examples=args.examples, derandomize=args.seed == 0, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(example())
    def run(ex):
        check(ex)

    @settings(max_examples=args.examples, derandomize=args.seed == 0, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(op_example())
    def run_ops(ex):
        check_op(ex)

    run()
    run_ops()
    print(f"ok: {args.examples} examples")


if __name__ == "__main__":
    main()
