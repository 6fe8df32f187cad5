"""Lean precision: bfloat16 / float16 parameters, bfloat16 and 8-bit state, against
fastopt.reference's conversions (exact) and its lean_step (the float32 rule between them).

Tolerance of a step: the kernels and the reference apply the same float32 operations in the
same order (test_rules.py finds them equal to the last bit), so the narrowed results are
compared exactly; where a per-step constant from libm (pow, sqrt) may differ by an ulp, one
rounding step of the stored dtype may flip, so at most 1 in 1000 stored values may differ,
each by one code or one bfloat16 / float16 ulp.
"""
import sys

import numpy as np
import pytest

import fastopt
from fastopt import _core, precision as P, reference as R
from fastopt.precision import Blockwise8, dequantize_8bit, empty_8bit, quantize_8bit

ml_dtypes = pytest.importorskip("ml_dtypes")
BF16 = np.dtype(ml_dtypes.bfloat16)
SIZES = [1, 255, 257, 3 * 16384 + 300]


def spread(rng, n, nonneg=False):
    """Values over many decades, with zeros, as optimizer states hold."""
    x = (rng.standard_normal(n) * np.exp(rng.uniform(-25, 5, n))).astype(np.float32)
    x[::11] = 0
    return x * x if nonneg else x


# ---- the conversions, exactly -------------------------------------------------------------

@pytest.mark.parametrize("nonneg", [False, True])
@pytest.mark.parametrize("n", [0, 1, 255, 256, 257, 70000])
def test_quantizer_matches_reference_exactly(n, nonneg):
    x = spread(np.random.default_rng(n), n, nonneg)
    q = quantize_8bit(x, nonneg)
    codes, absmax = R.quantize_8bit(x, nonneg)
    assert np.array_equal(q.codes, codes) and np.array_equal(q.absmax, absmax)
    assert np.array_equal(dequantize_8bit(q), R.dequantize_8bit(codes, absmax, nonneg))


def test_signed_code_is_ml_dtypes_float8_e4m3fn():
    x = spread(np.random.default_rng(1), 4096)
    q = quantize_8bit(x)
    scale = np.repeat(np.float32(448) / q.absmax, 256)
    assert np.array_equal(q.codes, (x * scale).astype(ml_dtypes.float8_e4m3fn).view(np.uint8))


@pytest.mark.parametrize("nonneg", [False, True])
def test_every_code_decodes_and_encodes_back(nonneg):
    codes = np.arange(256, dtype=np.uint8)
    if not nonneg:
        codes = codes[(codes & 0x7F) != 0x7F]  # 0x7f, 0xff: float8_e4m3fn's NaN, never written
    absmax = np.array([3.0], np.float32)
    x = dequantize_8bit(Blockwise8(codes, absmax, nonneg))
    assert np.array_equal(x, R.dequantize_8bit(codes, absmax, nonneg))
    q = quantize_8bit(x, nonneg)
    assert np.array_equal(q.codes[codes != 0x80], codes[codes != 0x80])  # -0 keeps its sign bit only as 0x80
    assert q.absmax[0] == 3.0


def boundaries(nonneg):
    """Every code's value, the midpoints between neighbours (the ties), one float32 ulp either
    side of each, and the specials, as values y = x * scale with scale 1 (the block maximum is
    the largest code); signed ones with both signs."""
    top = 122880.0 if nonneg else 448.0
    codes = np.arange(256 if nonneg else 127, dtype=np.uint8)
    v = R.q8_decode(codes, nonneg).astype(np.float64)
    mids = (v[:-1] + v[1:]) / 2  # exact in float32: one bit more than the code
    pts = np.concatenate([v, mids, [top * 1.5, 2.0 ** -20, 2.0 ** -30, 1e-45]]).astype(np.float32)
    pts = np.concatenate([pts, np.nextafter(pts, np.float32(np.inf)), np.nextafter(pts, np.float32(0))])
    if not nonneg:
        pts = np.concatenate([pts, -pts])
    pts = pts[np.abs(pts) <= top]
    blocks = -(-pts.size // 255)  # each block of 256 starts with the block maximum, so scale is 1
    x = np.zeros(blocks * 256, np.float32)
    x[::256] = top
    rest = np.flatnonzero(np.arange(x.size) % 256)
    x[rest[:pts.size]] = pts
    return x


@pytest.mark.parametrize("nonneg", [False, True])
def test_codes_at_every_rounding_boundary_on_every_isa(nonneg, restore_isa):
    # ties round to the even code, a float32 ulp either side to the nearer one: on every
    # instruction set (the AVX-512 path has loops of its own) and through the update's path
    x = boundaries(nonneg)
    codes, absmax = R.quantize_8bit(x, nonneg)
    assert np.all(absmax == x[0])
    for isa in _core.supported_isas():
        _core._set_isa(isa)
        q = quantize_8bit(x, nonneg)
        assert np.array_equal(q.codes, codes), isa
        assert np.array_equal(dequantize_8bit(q), R.dequantize_8bit(codes, absmax, nonneg)), isa
        if not nonneg:  # the update's direct path: the probe adds 0 * g to each state
            s = [Blockwise8(codes.copy(), absmax.copy()), Blockwise8(codes.copy(), absmax.copy())]
            p = np.zeros(x.size, np.float32)
            _core.stream_(p, p.copy(), s, 0.0)
            want = R.quantize_8bit(R.dequantize_8bit(codes, absmax) + np.float32(0), False)[0]  # -0 + 0 is +0
            assert all(np.array_equal(a.codes, want) for a in s), isa


def normal_boundaries(nonneg, seed=0):
    """As boundaries, but only values of normal codes (from the smallest normal code's value,
    2^-6 or 2^-14, up), each block's free places filled with more of them: blocks whose codes
    are all normal, which encode by the normal codes' own loops; then the same values over
    blocks of random maxima (scale not 1)."""
    top = np.float32(122880.0 if nonneg else 448.0)
    small = np.float32(2.0 ** -14 if nonneg else 2.0 ** -6)
    x = boundaries(nonneg)
    pts = x[np.abs(x) >= small]
    pts = pts[np.abs(pts) < top]
    per = -(-pts.size // 255)
    out = np.full(per * 256, top, np.float32)
    rest = np.flatnonzero(np.arange(out.size) % 256)
    out[rest[:pts.size]] = pts
    out[rest[pts.size:]] = np.resize(pts, rest.size - pts.size)
    rng = np.random.default_rng(seed)
    scaled = out * np.repeat(rng.uniform(1e-3, 1e3, per).astype(np.float32), 256)
    return np.concatenate([out, scaled])


@pytest.mark.parametrize("nonneg", [False, True])
def test_blocks_of_normal_codes_encode_exactly_on_every_isa(nonneg, restore_isa):
    # blocks whose codes are all normal take the encode without the subnormal path and the
    # clamp; the same codes on every instruction set, through quantize_8bit and the update's
    # direct paths (float32 and bfloat16 models); one value just below the smallest normal one,
    # or a zero, in a block sends that block back to the general loop
    x = normal_boundaries(nonneg)
    small = np.float32(2.0 ** -14 if nonneg else 2.0 ** -6)
    y = x.copy()
    y[256 + 7] = np.nextafter(small, np.float32(0))  # block 1: one subnormal code
    y[512 + 300 % 256] = 0.0  # block 2: a zero
    y[768 + 5] = small  # block 3: still all normal, at the line
    cases = [(v, *R.quantize_8bit(v, nonneg)) for v in (x, y)]
    # and a last block shorter than 256 (the loops' tails), all normal: 64 + 16 + 1, 128 + 32 + 4
    cases += [(v, *R.quantize_8bit(v, nonneg)) for v in (x[:768 + 81], x[256:1024 + 164])]
    # and blocks of float32 subnormals, whose scale (448 or 122880 / absmax) overflows: not normal
    tiny = np.repeat(np.array([1e-40, 3e-43], np.float32), 256)
    with np.errstate(over="ignore"):
        cases.append((tiny, *R.quantize_8bit(tiny, nonneg)))
    assert np.all((cases[0][1] & 0x7F if not nonneg else cases[0][1]) >= 8)  # all normal
    for isa in _core.supported_isas():
        _core._set_isa(isa)
        for v, codes, absmax in cases:
            q = quantize_8bit(v, nonneg)
            assert np.array_equal(q.codes, codes) and np.array_equal(q.absmax, absmax), isa
            before = _core._q8_direct_calls()
            if nonneg:  # Adagrad's sum from zero: sum = g * g
                g = np.sqrt(v).astype(np.float32)
                s = empty_8bit(v.size, nonneg=True)
                fastopt.functional.adagrad_(np.zeros(v.size, np.float32), g, s, step=1)
                assert np.array_equal(s.codes, R.quantize_8bit(g * g, True)[0]), isa
            else:  # the probe from zero states: s = 0 + 1 * g
                for model in (np.float32, BF16):
                    g = v.astype(model)
                    s = [empty_8bit(v.size), empty_8bit(v.size)]
                    _core.stream_(np.zeros(v.size, model), g, s, 1.0)
                    want = R.quantize_8bit(g.astype(np.float32), False)
                    assert all(np.array_equal(a.codes, want[0]) and np.array_equal(a.absmax, want[1])
                               for a in s), (isa, model)
            assert _core._q8_direct_calls() > before, isa


@pytest.mark.parametrize("nonneg", [False, True])
def test_every_code_decodes_for_every_kind_of_block_maximum(nonneg, restore_isa):
    # a block of normal codes decodes as its bits times absmax / 448 * 2^120 (or / 122880 *
    # 2^112) where that is finite; a block holding a subnormal code, or whose factor overflows, as
    # the reference does: every code in blocks of both kinds, both sides of the overflow line, a
    # subnormal and a zero block maximum, infinity and NaN, on every instruction set
    every = np.arange(256, dtype=np.uint8)
    normal = np.where(((every & 0x7F if not nonneg else every) - 1).astype(np.uint8) < 7, 0, every).astype(np.uint8)
    top = np.float32(122880.0 if nonneg else 448.0)
    edge = top * np.float32(2.0 ** (16 if nonneg else 8))  # the smallest absmax whose factor overflows
    maxima = [3.0, edge, np.nextafter(edge, np.float32(0)), np.float32(3e38), 1e-40, 0.0, np.inf, np.nan,
              1.0, 2.0 ** -126, 65504.0, 7e9]
    codes = np.concatenate([normal, every] * len(maxima))
    absmax = np.repeat(np.array(maxima, np.float32), 2)
    with np.errstate(invalid="ignore"):  # 0 * inf
        want = R.dequantize_8bit(codes, absmax, nonneg)
    for isa in _core.supported_isas():
        _core._set_isa(isa)
        got = dequantize_8bit(Blockwise8(codes, absmax, nonneg))
        assert np.array_equal(got.view(np.uint32), want.view(np.uint32)), isa


@pytest.mark.parametrize("param", ["float32", "bfloat16"])
@pytest.mark.parametrize("name, used", [("lion", 1), ("adam", 2), ("adagrad", 1), ("adadelta", 2)])
def test_8bit_blocks_beyond_the_fast_decode_match_reference(name, used, param):
    # blocks whose maximum makes the fast decode's factor overflow take the reference's decode,
    # within an array whose other blocks take the fast one: the same values either way (the
    # states the rule uses, each kept from step to step)
    kp, ks, _, rp, rs, _ = run_lean(name, param, "int8", huge_blocks=True)
    for a, b in zip(kp, rp):
        assert_close_stored(as_bits(a), b, "params")
    for krole, rrole in zip(ks[:used], rs[:used]):
        for k, r in zip(krole or [], rrole or []):
            assert np.array_equal(k.absmax, r[1])
            assert_close_stored(k.codes, r[0], "codes")
        if krole:  # the large arrays hold both kinds of block
            assert max(k.absmax.max() for k in krole) > 2.0 ** 30 > min(k.absmax.min() for k in krole)


def test_8bit_decode_is_exact_when_subnormals_read_as_zero(restore_isa):
    # a thread that reads subnormals as zero (MXCSR's DAZ, as torch.set_flush_denormal(True) sets)
    # would read subnormal codes' bits as zero in the fast decode: their blocks decode as the
    # reference does
    torch = pytest.importorskip("torch")
    x = boundaries(False)
    codes, absmax = R.quantize_8bit(x, False)
    sub = (codes & 0x7F) < 8
    assert sub.sum() > 20 and np.all(R.dequantize_8bit(codes, absmax)[sub & ((codes & 0x7F) > 0)] != 0)
    want = R.dequantize_8bit(codes, absmax)
    step_want = R.quantize_8bit(want + np.float32(0), False)[0]
    # and one subnormal code at each place of a block of normal ones (the scan finds each)
    lone = {nn: np.full((256, 256), 0x40, np.uint8) for nn in (False, True)}
    for nn, c in lone.items():
        c[np.arange(256), np.arange(256)] = 3 if nn else 0x85
    lone_absmax = np.linspace(1, 2, 256, dtype=np.float32)
    lone_want = {nn: R.dequantize_8bit(c.ravel(), lone_absmax, nn) for nn, c in lone.items()}
    fastopt.set_num_threads(1)  # the kernels run on this thread
    if not torch.set_flush_denormal(True):
        pytest.skip("this CPU cannot read subnormals as zero")
    try:
        for isa in _core.supported_isas():
            _core._set_isa(isa)
            got = dequantize_8bit(Blockwise8(codes, absmax))
            s = [Blockwise8(codes.copy(), absmax.copy()), Blockwise8(codes.copy(), absmax.copy())]
            p = np.zeros(x.size, np.float32)
            _core.stream_(p, p.copy(), s, 0.0)
            assert np.array_equal(got.view(np.uint32), want.view(np.uint32)), isa
            assert all(np.array_equal(a.codes, step_want) for a in s), isa
            for nn, c in lone.items():
                got = dequantize_8bit(Blockwise8(c.ravel(), lone_absmax, nn))
                assert np.array_equal(got.view(np.uint32), lone_want[nn].view(np.uint32)), (isa, nn)
    finally:
        torch.set_flush_denormal(False)
        fastopt.set_num_threads(0)


@pytest.mark.parametrize("nonneg", [False, True])
def test_quantization_error_is_bounded(nonneg):
    x = spread(np.random.default_rng(2), 65536, nonneg)
    y = dequantize_8bit(quantize_8bit(x, nonneg))
    big = np.abs(x) > np.repeat(quantize_8bit(x, nonneg).absmax, 256) * 1e-3  # normal codes
    assert big.sum() > 1000
    rel = np.abs(y - x)[big] / np.abs(x)[big]
    # three mantissa bits either way: within half a step of 1/8
    assert rel.max() <= (1 / 16) * 1.0001


def test_bfloat16_nearest_matches_reference_and_ml_dtypes():
    x = spread(np.random.default_rng(3), 100000)
    x[:4] = [np.inf, -np.inf, 3.3895314e38, -3.3895314e38]
    bits = R.bf16_nearest(x)
    assert np.array_equal(bits, x.astype(BF16).view(np.uint16))
    p = np.zeros(x.size, BF16)  # the kernel's store: p = 0 - 1 * (-x)
    fastopt.gd_(p, (-x).astype(np.float32), lr=1.0)
    assert np.array_equal(p.view(np.uint16), bits)


# ---- steps against lean_step ------------------------------------------------------------------

# rule -> (kernel, hyper, nonneg per state argument of the reference rule, states present)
LEAN_CASES = {
    "gd": (fastopt.gd_, {"lr": 0.1}, []),
    "sgd": (fastopt.sgd_, {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.01}, [False]),
    "adam": (fastopt.adam_, {"lr": 0.01}, [False, True, True]),
    "adamw": (fastopt.adam_, {"lr": 0.01, "weight_decay": 0.1, "decoupled_weight_decay": True, "amsgrad": True},
              [False, True, True]),
    # AdamW's own loop (decoupled decay only, no AMSGrad); "adam" runs the loop without weight decay
    "adamw-plain": (fastopt.adam_, {"lr": 0.01, "weight_decay": 0.1, "decoupled_weight_decay": True},
                    [False, True, True]),
    "adagrad": (fastopt.adagrad_, {"lr": 0.1}, [True]),
    "rmsprop": (fastopt.rmsprop_, {"lr": 0.01, "momentum": 0.9, "centered": True}, [True, False, False]),
    "rmsprop-plain": (fastopt.rmsprop_, {"lr": 0.01, "momentum": 0.9}, [True, None, False]),
    "adadelta": (fastopt.adadelta_, {"lr": 1.0}, [True, True]),
    "adamax": (fastopt.adamax_, {"lr": 0.01}, [False, True]),
    "radam": (fastopt.radam_, {"lr": 0.01}, [False, True]),
    "lion": (fastopt.lion_, {"lr": 0.01}, [False]),
}
REF_NAME = {"adamw": "adam", "adamw-plain": "adam", "rmsprop-plain": "rmsprop"}
BETAS = {"adam", "adamw", "adamw-plain", "adamax", "radam", "lion"}
TAKES_STEP = {"sgd", "adam", "adamw", "adamw-plain", "adagrad", "adamax", "radam"}


def kernel_hyper(name, hyper, step):
    kw = dict(hyper)
    if LEAN_CASES[name][0] is fastopt.adam_:
        kw.setdefault("weight_decay", 0.0)
        kw.setdefault("decoupled_weight_decay", False)
        kw.setdefault("amsgrad", False)
    if name in TAKES_STEP:
        kw["step"] = step
    return kw


def ref_hyper(name, hyper, step):
    kw = {k: v for k, v in hyper.items()}
    if name in TAKES_STEP:
        kw["step"] = step
    return kw


def as_bits(a):
    return a.view(np.uint16) if a.dtype == BF16 else a


def make(kind, x):
    return x.astype({"float32": np.float32, "bfloat16": BF16, "float16": np.float16}[kind])


def ref_state(kind, x, nonneg):
    if kind == "int8":
        return R.quantize_8bit(x, nonneg)
    return make(kind, x)


def kernel_state(kind, ref, nonneg):
    if kind == "int8":
        return Blockwise8(ref[0].copy(), ref[1].copy(), nonneg)
    return ref.copy()


def run_lean(name, param, state, low=None, stochastic=False, steps=3, sizes=SIZES, threads=None, seed=7,
             kahan=False, huge_blocks=False, dense=False):
    """huge_blocks: every other block of 256 of each state scaled by 2^40 (second moments 2^80).
    dense: states over a few decades with no zeros, as training holds them (spread's otherwise)."""
    kernel, hyper, nonneg = LEAN_CASES[name]
    rng = np.random.default_rng(len(name))
    p0 = [rng.standard_normal(n).astype(np.float32) for n in sizes]

    def start(n, nn):
        if not dense:
            return spread(rng, n, nn)
        x = (rng.standard_normal(n) * 0.1 + np.where(rng.random(n) < 0.5, -0.05, 0.05)).astype(np.float32)
        return x * x if nn else x

    s0 = [None if nn is None else [start(n, nn) for n in sizes] for nn in nonneg]  # None: not used
    if huge_blocks:
        for role, nn in zip(s0, nonneg):
            for x in role or []:
                x.reshape(-1)[(np.arange(x.size) // 256) % 2 == 1] *= np.float32(2.0 ** (80 if nn else 40))
    if name == "rmsprop":  # centered: the mean gradient's square below the mean square
        s0[1] = [np.sqrt(x) * np.float32(0.5) for x in s0[0]]
    grads = [[(rng.standard_normal(n) * 0.5).astype(np.float32) for n in sizes] for _ in range(steps)]
    master = low is not None
    kp = [make("float32" if master else param, x) for x in p0]
    rp = [as_bits(a).copy() for a in kp]
    klow = [make(low, x) for x in p0] if master else None
    rlow = [as_bits(a).copy() for a in klow] if master else None
    rs = [None if role is None else [ref_state(state, x, nn) for x in role] for role, nn in zip(s0, nonneg)]
    rs_bits = [None if role is None else [r if state == "int8" else as_bits(r).copy() for r in role] for role in rs]
    ks = [None if role is None else [kernel_state(state, r, nn) for r in role] for role, nn in zip(rs, nonneg)]
    gdt = low if master else param
    kcomp = [np.zeros(n, BF16) for n in sizes] if kahan else None
    rcomp = [c.view(np.uint16).copy() for c in kcomp] if kahan else None
    if threads is not None:
        fastopt.set_num_threads(threads)
    try:
        for t in range(1, steps + 1):
            g = [make(gdt, x) for x in grads[t - 1]]
            kernel(kp, g, *ks, **kernel_hyper(name, hyper, t), low_params=klow, stochastic_rounding=stochastic,
                   seed=seed + t, compensation=kcomp)
            states = rs_bits
            R.lean_step(REF_NAME.get(name, name), rp, [as_bits(x) for x in g], states,
                        nonneg=nonneg + [False] * (len(states) - len(nonneg)),
                        param_dtype="float32" if master else param, state_dtype=state, low=rlow, low_dtype=low,
                        stochastic=stochastic, seed=seed + t, compensation=rcomp,
                        **ref_hyper(name, rename(name, hyper), t))
    finally:
        if threads is not None:
            fastopt.set_num_threads(0)
    if kahan:
        return kp, ks, kcomp, rp, rs_bits, rcomp
    return kp, ks, klow, rp, rs_bits, rlow


def rename(name, hyper):
    return dict(hyper)


def assert_close_stored(a, b, what):
    """Equal, but for at most 1 in 1000 values one rounding step apart (see the module docstring)."""
    a = np.asarray(a).reshape(-1)
    b = np.asarray(b).reshape(-1)
    both_nan = np.isnan(a) & np.isnan(b) if a.dtype.kind == "f" else np.zeros(a.shape, bool)
    if a.dtype == np.float16:
        a, b = a.view(np.uint16), b.view(np.uint16)
    elif a.dtype == np.float32:
        a, b = a.view(np.int32), b.view(np.int32)
    diff = (a != b) & ~both_nan
    assert diff.sum() <= max(1, a.size // 1000), f"{what}: {diff.sum()} of {a.size} differ"
    step = np.abs(a[diff].astype(np.int64) - b[diff].astype(np.int64))
    assert (step <= 1).all(), f"{what}: differences of {step.max()} steps"


PARAMS = ["float32", "bfloat16", "float16", "master-bfloat16", "master-float16"]


@pytest.mark.parametrize("state", ["float32", "bfloat16", "int8"])
@pytest.mark.parametrize("param", PARAMS)
@pytest.mark.parametrize("name", sorted(LEAN_CASES))
def test_lean_step_matches_reference(name, param, state):
    if param == "float32" and state == "float32":
        pytest.skip("the plain float32 kernels: test_rules.py")
    if name == "rmsprop" and state == "int8":  # the 8-bit mean square can fall below the squared mean: NaN
        pytest.skip("centered RMSprop refuses 8-bit state (fastopt.optim.RMSprop); rmsprop-plain covers it")
    low = param.split("-")[1] if param.startswith("master") else None
    kp, ks, klow, rp, rs, rlow = run_lean(name, "float32" if low else param, state, low=low)
    for a, b in zip(kp, rp):
        assert_close_stored(as_bits(a), b, "params")
    for a, b in zip(klow or [], rlow or []):
        assert_close_stored(as_bits(a), b, "low_params")
    for role_k, role_r in zip(ks, rs):
        for a, b in zip(role_k or [], role_r or []):
            if state == "int8":
                assert_close_stored(a.codes, b[0], "codes")
                np.testing.assert_allclose(a.absmax, b[1], rtol=1e-6)
            else:
                assert_close_stored(as_bits(a), b, "state")


@pytest.mark.parametrize("param", ["float32", "bfloat16"])
@pytest.mark.parametrize("name", sorted(LEAN_CASES))
def test_8bit_step_over_blocks_of_normal_codes_matches_reference(name, param):
    # states as training holds them: most blocks' codes are all normal, which the encode takes in
    # loops of their own (spread's zeros and 30 decades send almost every block to the general one)
    if name == "rmsprop":
        pytest.skip("centered RMSprop refuses 8-bit state; rmsprop-plain covers it")
    if not LEAN_CASES[name][2]:
        pytest.skip("no state")
    kp, ks, _, rp, rs, _ = run_lean(name, param, "int8", dense=True)
    for a, b in zip(kp, rp):
        assert_close_stored(as_bits(a), b, "params")
    normal = []
    for role_k, role_r, nn in zip(ks, rs, LEAN_CASES[name][2]):
        for a, b in zip(role_k or [], role_r or []):
            assert_close_stored(a.codes, b[0], "codes")
            np.testing.assert_allclose(a.absmax, b[1], rtol=1e-6)
            full = b[0][: b[0].size // 256 * 256].reshape(-1, 256)
            normal.append(((full if nn else full & 0x7F) >= 8).all(axis=1))
    normal = np.concatenate(normal)
    assert normal.mean() > 0.9, f"{normal.mean():.2f} of the blocks hold normal codes only"


@pytest.mark.parametrize("state", ["bfloat16", "float32"])
@pytest.mark.parametrize("name", ["adam", "sgd", "lion"])
def test_stochastic_rounding_matches_reference_bits(name, state):
    kp, ks, _, rp, rs, _ = run_lean(name, "bfloat16", state, stochastic=True)
    for a, b in zip(kp, rp):
        assert_close_stored(as_bits(a), b, "params")
    for role_k, role_r in zip(ks, rs):
        for a, b in zip(role_k, role_r):
            assert_close_stored(as_bits(a), b, "state")


@pytest.mark.parametrize("state", ["float32", "bfloat16", "int8"])
@pytest.mark.parametrize("name", ["adam", "sgd", "lion", "rmsprop-plain"])
def test_kahan_compensation_matches_reference(name, state):
    kp, ks, kcomp, rp, rs, rcomp = run_lean(name, "bfloat16", state, kahan=True)
    for a, b in zip(kp, rp):
        assert_close_stored(as_bits(a), b, "params")
    for a, b in zip(kcomp, rcomp):
        assert_close_stored(as_bits(a), b, "compensation")
    assert any(np.any(c.view(np.uint16) != 0) for c in kcomp)


@pytest.mark.parametrize("stochastic", [True, False])  # the buffered path, and the direct one for bfloat16
@pytest.mark.parametrize("state", ["bfloat16", "int8"])
def test_lean_steps_bit_identical_across_threads_and_isas(state, stochastic, restore_isa):
    sizes = [5 * 16384 + 3, 1, 70000, 33]
    runs = []
    for isa in _core.supported_isas():
        _core._set_isa(isa)
        for threads in (1, 2, 3):
            kp, ks, _, _, _, _ = run_lean("adam", "bfloat16", state, stochastic=stochastic, sizes=sizes,
                                          threads=threads)
            flat = [as_bits(p) for p in kp]
            for role in ks:
                flat += [np.concatenate([a.codes.ravel(), a.absmax.view(np.uint8)]) if state == "int8" else as_bits(a)
                         for a in role]
            runs.append((isa, threads, flat))
    for isa, threads, flat in runs[1:]:
        for a, b in zip(runs[0][2], flat):
            assert np.array_equal(a, b), f"{isa} on {threads} threads differs"


def assert_direct_path_gives_the_buffered_bits(name, param, state, stochastic=False):
    """Steps on the direct path (1 and 2 threads) and on the buffered one (1 thread), on every
    instruction set: all the same bits (parameters, states, 8-bit codes and absmax)."""
    sizes = [2 * 16384 + 300, 1, 255, 257]
    runs = []
    try:
        for isa in _core.supported_isas():
            _core._set_isa(isa)
            for direct, threads in ((True, 1), (True, 2), (False, 1)):
                _core._set_direct_lean(direct)
                kp, ks, _, _, _, _ = run_lean(name, param, state, stochastic=stochastic, sizes=sizes, threads=threads)
                flat = [a.reshape(-1).view(np.uint8) for a in kp] + [  # bytes: -0.0 and NaN compare too
                    np.concatenate([a.codes.ravel(), a.absmax.view(np.uint8)]) if state == "int8"
                    else a.reshape(-1).view(np.uint8) for role in ks if role for a in role]
                runs.append((isa, direct, threads, flat))
    finally:
        _core._set_direct_lean(True)
    for isa, direct, threads, flat in runs[1:]:
        for a, b in zip(runs[0][3], flat):
            assert np.array_equal(a, b), f"{isa}, direct={direct}, {threads} threads"


@pytest.mark.parametrize("param", ["float32", "bfloat16"])
@pytest.mark.parametrize("name", ["sgd", "lion", "adagrad", "adam", "adamax", "radam", "adadelta", "rmsprop-plain"])
def test_8bit_direct_path_gives_the_buffered_paths_bits(name, param, restore_isa):
    # a float32 or bfloat16 model with 8-bit state takes the direct path
    assert_direct_path_gives_the_buffered_bits(name, param, "int8")


@pytest.mark.parametrize("state", ["bfloat16", "float32"])
@pytest.mark.parametrize("name", ["sgd", "lion", "adam", "adagrad", "radam"])
def test_stochastic_rounding_direct_path_gives_the_buffered_paths_bits(name, state, restore_isa):
    # bfloat16 parameters rounded stochastically take the direct path (the same random bits per
    # element, role and array)
    assert_direct_path_gives_the_buffered_bits(name, "bfloat16", state, stochastic=True)


BF16_PAIR_CASES = {  # a rule with one, two and three states, with and without gradient pre-processing
    "sgd": (fastopt.sgd_, 1, dict(lr=0.1, momentum=0.9, nesterov=True, clip_value=0.5)),
    "lion": (lambda *a, step, **k: fastopt.lion_(*a, **k), 1, dict(lr=1e-2, weight_decay=0.1)),  # no step count
    "adam": (fastopt.adam_, 2, dict(lr=1e-2)),
    "adamw-amsgrad": (fastopt.adam_, 3, dict(lr=1e-2, amsgrad=True, weight_decay=0.1, decoupled_weight_decay=True,
                                             l1=1e-3, l2=1e-2, maximize=True)),
}


@pytest.mark.parametrize("name", sorted(BF16_PAIR_CASES))
def test_bfloat16_model_and_state_equal_the_float32_step_rounded(name, restore_isa):
    # all-bfloat16 steps run two elements per 32-bit word: the same float32 operations as the
    # float32 kernel on the widened values, then round to nearest even (ml_dtypes), bit for bit;
    # odd sizes, a view starting at an odd element (words not 4-byte aligned), every instruction set
    fn, nstate, hyper = BF16_PAIR_CASES[name]
    rng = np.random.default_rng(11)
    for isa in _core.supported_isas():
        _core._set_isa(isa)
        for n, off in ((1, 0), (2, 1), (37, 1), (16384 * 3 + 301, 0), (70001, 1)):
            base = [rng.standard_normal(n + off).astype(BF16) for _ in range(2 + nstate)]
            base[1][::7] = 0
            for s in base[2:]:
                s[...] = np.abs(s)  # second moments and amsgrad's maximum are >= 0
            p, g, *s = [a[off:] for a in base]
            p32, g32, s32 = p.astype(np.float32), g.astype(np.float32), [a.astype(np.float32) for a in s]
            for step in (1, 2):
                fn([p32], [g32], *[[a] for a in s32], step=step, **hyper)
                fn([p], [g], *[[a] for a in s], step=step, **hyper)
                want = [p32.astype(BF16)] + [a.astype(BF16) for a in s32]
                for k, (a, b) in enumerate(zip([p] + s, want)):
                    assert np.array_equal(a.view(np.uint16), b.view(np.uint16)), f"{isa}, n={n}, array {k}"
                p32, s32 = p.astype(np.float32), [a.astype(np.float32) for a in s]


def test_8bit_direct_path_of_the_probe_gives_the_buffered_bits():
    rng = np.random.default_rng(3)
    n = 16384 + 700
    p0, g = rng.standard_normal(n).astype(np.float32), rng.standard_normal(n).astype(np.float32)
    s0 = [fastopt.quantize_8bit(spread(rng, n), False) for _ in range(2)]
    out = []
    try:
        for direct in (True, False):
            _core._set_direct_lean(direct)
            p, s = p0.copy(), [Blockwise8(q.codes.copy(), q.absmax.copy(), False) for q in s0]
            for c in (0.5, -0.25):
                _core.stream_(p, g, s, c)
            out.append([p.view(np.uint8)] + [np.concatenate([q.codes, q.absmax.view(np.uint8)]) for q in s])
    finally:
        _core._set_direct_lean(True)
    assert all(np.array_equal(a, b) for a, b in zip(*out))


def test_stochastic_rounding_is_unbiased_and_seeded():
    """Many updates too small for bfloat16: nearest even loses them all, stochastic rounding
    keeps their sum in expectation; the bits depend on the seed only."""
    n, steps, g = 4096, 200, np.float32(1e-4)
    grads = np.full(n, g, np.float32)
    nearest = np.ones(n, BF16)
    runs = {}
    for seed in (1, 1, 2):
        p = np.ones(n, BF16)
        for t in range(steps):
            fastopt.gd_(p, grads, lr=1.0, stochastic_rounding=True, seed=seed * 1000 + t)
        runs.setdefault(seed, []).append(p.astype(np.float32))
    for t in range(steps):
        fastopt.gd_(nearest, grads, lr=1.0)
    assert np.all(nearest.astype(np.float32) == 1.0)  # 1 - 1e-4 rounds back to 1 every time
    assert np.array_equal(runs[1][0], runs[1][1])
    assert not np.array_equal(runs[1][0], runs[2][0])
    mean = runs[1][0].mean()
    expected = 1.0 - steps * float(g)  # 0.98
    assert abs(mean - expected) < 0.002, mean


# The rules whose 8-bit step with float32 or bfloat16 parameters is one pass (one or two states):
# the direct path is compiled for the signs of each rule's states (rules.hpp's nonneg), so a sign
# there that disagrees with the bindings' roles would send the rule down the buffered path.
DIRECT_8BIT = ["adadelta", "adagrad", "adam", "adamax", "adamw-plain", "lion", "radam", "rmsprop-plain", "sgd"]


@pytest.mark.parametrize("param", ["float32", "bfloat16"])
@pytest.mark.parametrize("name", sorted(LEAN_CASES))
def test_8bit_step_takes_the_direct_path_where_it_applies(name, param):
    before = _core._q8_direct_calls()
    run_lean(name, param, "int8", steps=1, sizes=[300])
    calls = _core._q8_direct_calls() - before
    if name in DIRECT_8BIT:
        assert calls == 1, f"{name}: the 8-bit step took the buffered path"
    else:  # three states (AMSGrad, centered RMSprop with momentum) or no state: the buffered path
        assert calls == 0, f"{name}: {calls} direct calls"


def _q8(n, nonneg):
    return quantize_8bit(np.full(n, 0.5, np.float32), nonneg=nonneg)


# The other conventions' loops and NAdam: the same roles, their own rules.
DIRECT_8BIT_OTHERS = {
    "sgd-keras": lambda p, g: fastopt.sgd_(p, g, _q8(p.size, False), step=2, lr=0.1, momentum=0.9, convention="keras"),
    "adagrad-keras": lambda p, g: fastopt.adagrad_(p, g, _q8(p.size, True), step=2, lr=0.1, convention="keras"),
    "rmsprop-keras": lambda p, g: fastopt.rmsprop_(p, g, _q8(p.size, True), None, _q8(p.size, False), lr=0.1,
                                                   momentum=0.9, convention="keras"),
    "adadelta-keras": lambda p, g: fastopt.adadelta_(p, g, _q8(p.size, True), _q8(p.size, True), lr=0.1,
                                                     convention="keras"),
    "adamax-keras": lambda p, g: fastopt.adamax_(p, g, _q8(p.size, False), _q8(p.size, True), step=2, lr=0.1,
                                                 convention="keras"),
    "adam-keras": lambda p, g: fastopt.adam_(p, g, _q8(p.size, False), _q8(p.size, True), step=2, lr=0.1,
                                             convention="keras"),
    "adam-optax": lambda p, g: fastopt.adam_(p, g, _q8(p.size, False), _q8(p.size, True), step=2, lr=0.1,
                                             convention="optax"),
    "nadam": lambda p, g: fastopt.nadam_(p, g, _q8(p.size, False), _q8(p.size, True), step=2, lr=0.1,
                                         mu_product=0.8),
}


@pytest.mark.parametrize("name", sorted(DIRECT_8BIT_OTHERS))
def test_8bit_step_of_other_conventions_takes_the_direct_path(name):
    p = np.linspace(-1.0, 1.0, 300, dtype=np.float32)
    g = np.full(300, 0.1, np.float32)
    before = _core._q8_direct_calls()
    DIRECT_8BIT_OTHERS[name](p, g)
    assert _core._q8_direct_calls() - before == 1, f"{name}: the 8-bit step took the buffered path"


# ---- refusals: named, before anything is written ------------------------------------------

def test_lean_refusals_name_the_argument_and_write_nothing():
    p = np.ones(300, BF16)
    g = np.ones(300, BF16)
    m, v = np.zeros(300, np.float32), np.zeros(300, np.float32)
    before = p.copy()
    with pytest.raises(TypeError, match="exp_avg_sqs is bfloat16 but exp_avgs is float32"):
        fastopt.adam_(p, g, m, np.zeros(300, BF16), step=1)
    with pytest.raises(TypeError, match="exp_avgs is float16"):
        fastopt.adam_(p, g, np.zeros(300, np.float16), np.zeros(300, np.float16), step=1)
    with pytest.raises(TypeError, match="float64 mixes with nothing"):
        fastopt.adam_(p, g, np.zeros(300), np.zeros(300), step=1)
    with pytest.raises(TypeError, match="compensation is for bfloat16 params"):
        fastopt.adam_(np.ones(300, np.float32), g, m, v, step=1, compensation=np.zeros(300, BF16))
    with pytest.raises(TypeError, match="compensation and stochastic_rounding exclude each other"):
        fastopt.adam_(p, g, m, v, step=1, compensation=np.zeros(300, BF16), stochastic_rounding=True)
    with pytest.raises(TypeError, match="low_params and compensation exclude each other"):
        fastopt.adam_(p, g, m, v, step=1, compensation=np.zeros(300, BF16), low_params=np.zeros(300, BF16))
    with pytest.raises(TypeError, match="low_params need float32 params"):
        fastopt.adam_(p, g, m, v, step=1, low_params=np.zeros(300, BF16))
    with pytest.raises(TypeError, match="float32 or float64 arrays only"):
        fastopt.lamb_(p, g, m, v, step=1)
    with pytest.raises(ValueError, match=r"exp_avg_sqs is signed \(nonneg=False\)"):
        fastopt.adam_(p, g, empty_8bit(300), empty_8bit(300), step=1)
    with pytest.raises(ValueError, match=r"exp_avgs.absmax has 1 elements"):
        fastopt.adam_(p, g, Blockwise8(np.zeros(300, np.uint8), np.zeros(1, np.float32)), empty_8bit(300, True), step=1)
    with pytest.raises(ValueError, match=r"seed must be an int in \[0, 2\*\*64\)"):
        fastopt.gd_(p, g, lr=0.1, stochastic_rounding=True, seed=-1)
    with pytest.raises(TypeError, match="seed must be an int"):
        fastopt.gd_(p, g, lr=0.1, stochastic_rounding=True, seed=1.5)

    class NotBlockwise:
        codes, absmax, nonneg = np.zeros(300, np.uint8), np.zeros(2, np.float32), "no"
    with pytest.raises(TypeError, match=r"momentum_buffers must be a numpy.ndarray or a fastopt.Blockwise8"):
        fastopt.sgd_(p, g, NotBlockwise(), step=1, lr=0.1, momentum=0.9)
    with pytest.raises(TypeError, match="8-bit state is a fastopt"):
        fastopt.sgd_(p, g, np.zeros(300, np.uint8), step=1, lr=0.1, momentum=0.9)
    q = empty_8bit(300)
    with pytest.raises(ValueError, match="share memory"):
        fastopt.adam_(p, g, q, Blockwise8(q.codes, np.zeros(2, np.float32), True), step=1)
    assert np.array_equal(p.view(np.uint16), before.view(np.uint16))


def test_blockwise_arrays_are_named_with_their_field_and_index():
    p, g = [np.ones(300, np.float32), np.ones(600, np.float32)], [np.ones(300, np.float32), np.ones(600, np.float32)]
    before = [a.copy() for a in p]
    v = [empty_8bit(300, True), empty_8bit(600, True)]
    bad_dtype = Blockwise8(np.zeros(600, np.float32), np.zeros(3, np.float32))
    with pytest.raises(TypeError, match=r"exp_avgs\[1\].codes must be uint8, got float32"):
        fastopt.adam_(p, g, [empty_8bit(300), bad_dtype], v, step=1)
    with pytest.raises(ValueError, match=r"exp_avgs\[1\].codes has 300 elements but params\[1\] has 600"):
        fastopt.adam_(p, g, [empty_8bit(300), empty_8bit(300)], v, step=1)
    with pytest.raises(TypeError, match=r"exp_avgs\[1\].absmax must be float32, got float64"):
        fastopt.adam_(p, g, [empty_8bit(300), Blockwise8(np.zeros(600, np.uint8), np.zeros(3))], v, step=1)
    with pytest.raises(ValueError, match=r"exp_avgs.absmax is read-only"):
        q = empty_8bit(300)
        q.absmax.flags.writeable = False
        fastopt.adam_(p[0], g[0], q, v[0], step=1)

    class Raising:  # an attribute that raises something other than AttributeError: that error, as it is
        nonneg = False

        @property
        def codes(self):
            raise RuntimeError("codes are not ready")
    with pytest.raises(RuntimeError, match="codes are not ready"):
        fastopt.adam_(p[0], g[0], Raising(), v[0], step=1)

    class NoAbsmax:
        codes, nonneg = np.zeros(300, np.uint8), False
    with pytest.raises(TypeError, match=r"exp_avgs must be a numpy.ndarray or a fastopt.Blockwise8 .* got NoAbsmax"):
        fastopt.adam_(p[0], g[0], NoAbsmax(), v[0], step=1)
    for got, want in zip(p, before):
        assert np.array_equal(got, want)


def test_check_finite_and_norms_read_16_bit_gradients():
    p = np.ones(1000, BF16)
    g = np.ones(1000, BF16)
    g[500] = np.inf
    assert fastopt.adam_(p, g, np.zeros(1000, np.float32), np.zeros(1000, np.float32), step=1, check_finite=True) is False
    assert np.all(p.astype(np.float32) == 1.0)
    h = np.full(1000, 2.0, np.float16)
    assert fastopt.global_norm(h) == pytest.approx(np.sqrt(4000))
    assert fastopt.global_norm([np.ones(10, BF16)]) == pytest.approx(np.sqrt(10))
    assert fastopt.all_finite([h]) and not fastopt.all_finite([g])


@pytest.mark.parametrize("nonneg", [False, True])
def test_a_non_finite_value_makes_its_block_non_finite(nonneg):
    """No NaN code: the block's absmax carries it (as reference.quantize_8bit says)."""
    x = np.abs(spread(np.random.default_rng(4), 768, nonneg)) if nonneg else spread(np.random.default_rng(4), 768)
    x[300] = np.nan
    x[600] = np.inf
    q = quantize_8bit(x, nonneg)
    codes, absmax = R.quantize_8bit(x, nonneg)
    assert np.array_equal(q.codes, codes) and np.array_equal(q.absmax, absmax, equal_nan=True)
    y = dequantize_8bit(q)
    assert np.isfinite(y[:256]).all()
    assert not np.isfinite(y[256:]).any()


# ---- where the optimizers place their state ------------------------------------------------

def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint8])
def test_staggered_buffers_are_placed_and_usable(dtype):
    itemsize = np.dtype(dtype).itemsize
    small = P.staggered(1000, dtype, 2)
    assert small.shape == (1000,) and small.dtype == dtype and small.flags.writeable
    for slot in range(4):
        n = (P.HUGE_MIN // itemsize) + 12345  # from HUGE_MIN: a 2 MiB boundary plus the slot's shift
        a = P.staggered(n, dtype, slot)
        assert a.shape == (n,) and a.dtype == dtype and a.flags.writeable and a.flags.c_contiguous
        shift = P.stagger_shift(n, itemsize, slot) * itemsize
        assert shift == (slot + 1) * 8320
        if P._huge_pages():
            assert a.ctypes.data % (2 << 20) == shift
        a[...] = 7
        assert a[0] == 7 and a[-1] == 7


@pytest.mark.parametrize("nbytes", [0, 100, 4096, (1 << 20) + 4, (3 << 20) + 8, P.HUGE_MIN + 12])
def test_staggered_buffers_start_on_a_cache_line(nbytes):
    """Every size, in ordinary memory and in huge pages: NumPy starts its large arrays 16 bytes
    past a cache line, which the 8-bit step runs slower on."""
    for dtype in (np.uint8, np.float32, np.float64):
        n = nbytes // np.dtype(dtype).itemsize
        for slot in range(6):
            a = P.staggered(n, dtype, slot)
            assert a.shape == (n,) and (n == 0 or a.ctypes.data % P.CACHE_LINE == 0)


def test_mlp_parameters_and_gradients_are_placed_as_the_state():
    """The MLP's flat buffers come from staggered (slots PARAM_SLOT and PARAM_SLOT + 1): on a cache
    line and apart from each other; its layer views still write into them, and a pickled model
    gets placed buffers again."""
    import pickle
    from fastopt.nn import mlp as M
    model = M.MLP(600, [M.Dense(512), M.Dense(10, "softmax")], seed=0)  # about 1.2 MiB of float32 each
    for flat, slot in ((model.params, M.PARAM_SLOT), (model.grads, M.PARAM_SLOT + 1)):
        assert flat.ctypes.data % P.CACHE_LINE == 0 and flat.dtype == np.float32
        off = flat.ctypes.data - flat.base.ctypes.data  # into its allocation: under a line, then the slot's shift
        assert off - off % P.CACHE_LINE == (slot + 1) * 8320
    assert np.array_equal(model.grads, np.zeros_like(model.grads))
    model.W[0][0, 0] = 3.0
    model.dW[1][2, 3] = 5.0
    assert model.params[0] == 3.0 and model.grads[600 * 512 + 512 + 2 * 10 + 3] == 5.0
    back = pickle.loads(pickle.dumps(model))
    assert back.params.ctypes.data % P.CACHE_LINE == 0 and np.array_equal(back.params, model.params)
    back.W[0][0, 1] = 7.0
    assert back.params[1] == 7.0


def test_staggered_falls_back_to_ordinary_memory(monkeypatch):
    import mmap

    def refuse(*args, **kwargs):
        raise OSError(12, "Cannot allocate memory")
    monkeypatch.setattr(mmap, "mmap", refuse)
    n = P.HUGE_MIN // 4 + 1
    a = P.staggered(n, np.float32, 1)
    a[...] = 2
    assert a.shape == (n,) and a.sum() == 2 * n and a.ctypes.data % P.CACHE_LINE == 0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/statm")
def test_huge_state_buffers_are_freed_with_their_arrays():
    n = 64 << 20
    before = _rss_bytes()
    for k in range(12):  # 768 MiB in all, one 64 MiB buffer alive at a time
        a = P.staggered(n, np.uint8, k % 4)
        a[::4096] = 1  # touch every page
        del a
    assert _rss_bytes() - before < 256 << 20


def test_large_state_in_huge_buffers_steps_as_the_reference():
    """Optimizer state from HUGE_MIN up lives in the huge-page buffers: fastopt.optim's and
    fastopt.torch's Adam on 1.5M elements agree with the reference and torch.optim (float32 rtol
    2e-5, as the kernel tests)."""
    from fastopt import optim as O
    n = 1_500_000
    rng = np.random.default_rng(3)
    p0 = rng.standard_normal(n).astype(np.float32)
    grads = [rng.standard_normal(n).astype(np.float32) for _ in range(3)]
    p = p0.copy()
    opt = O.Adam([p], lr=1e-2)
    m, v = np.zeros(n, np.float32), np.zeros(n, np.float32)
    want = p0.copy()
    for t, g in enumerate(grads, 1):
        opt.step([g])
        R.adam(want, g, m, v, None, step=t, lr=1e-2)
    np.testing.assert_allclose(p, want, rtol=2e-5, atol=1e-7)
    torch = pytest.importorskip("torch")
    import fastopt.torch as ft
    a, b = torch.from_numpy(p0.copy()), torch.from_numpy(p0.copy())
    fo, to = ft.Adam([a], lr=1e-2), torch.optim.Adam([b], lr=1e-2)
    for g in grads:
        a.grad, b.grad = torch.from_numpy(g), torch.from_numpy(g)
        fo.step()
        to.step()
    torch.testing.assert_close(a, b, rtol=2e-5, atol=1e-7)
    st = fo.state[a]["exp_avg_sq"]
    if P._huge_pages():
        assert st.data_ptr() % (2 << 20) == P.stagger_shift(n, 4, 1) * 4
    torch.testing.assert_close(st, to.state[b]["exp_avg_sq"], rtol=2e-5, atol=1e-12)
