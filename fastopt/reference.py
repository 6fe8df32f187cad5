"""Plain NumPy versions of every update rule, clip and penalty: the executable spec.

Each rule updates one parameter array and its state in place, element by element in the same
order of operations as the C++ kernels (and torch.optim's single-tensor code).  Python floats
meet arrays under NumPy's rules (NEP 50): a constant is rounded to the array's dtype, as the
kernels round their per-step constants.  Written for clarity, not speed: this is also the naive
baseline of the benchmarks.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np


def lerp(start: np.ndarray, end: np.ndarray, weight: float) -> np.ndarray:
    """torch.lerp: start + w (end - start) for |w| < 0.5, else end - (end - start)(1 - w)."""
    t = start.dtype.type
    if abs(weight) < 0.5:
        return start + t(weight) * (end - start)
    return end - (end - start) * (t(1) - t(weight))


def preprocess(g: np.ndarray, p: np.ndarray, *, grad_scale: float = 1.0, clip_value: Optional[float] = None,
               maximize: bool = False, l1: float = 0.0, l2: float = 0.0) -> np.ndarray:
    """The gradient an update rule sees: scaled, clamped, negated to maximize, plus the penalty gradient."""
    g = g * grad_scale
    if clip_value is not None and math.isfinite(clip_value):
        g = np.clip(g, -clip_value, clip_value)
    if maximize:
        g = -g
    if l1 != 0.0 or l2 != 0.0:
        g = g + (l1 * np.sign(p) + (2.0 * l2) * p)
    return g


def gd(p, g, *, lr):
    p += -lr * g


def sgd(p, g, buf, *, step, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, convention="torch"):
    if convention == "keras":  # v = mu v - lr g; p += v (nesterov: p += mu v - lr g); decoupled decay
        if weight_decay != 0:
            p *= 1.0 - lr * weight_decay
        if momentum != 0:
            buf[...] = -g * lr + buf * momentum
            p += -g * lr + buf * momentum if nesterov else buf
        else:
            p -= g * lr
        return
    if weight_decay != 0:
        g = g + weight_decay * p
    if momentum != 0:
        b = g.copy() if step <= 1 else buf * momentum + (1.0 - dampening) * g
        buf[...] = b
        g = g + momentum * b if nesterov else b
    p += -lr * g


def adam(p, g, m, v, vmax, *, step, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0,
         amsgrad=False, decoupled_weight_decay=False, eps_root=0.0, bias_correction=True, convention="torch",
         nesterov=False):
    """torch: p -= lr/bc1 m / (sqrt(v + eps_root) (1/sqrt(bc2)) + eps); keras: p -= lr sqrt(bc2)/bc1 m /
    (sqrt(v + eps_root) + eps); optax: p -= lr/bc1 m / (sqrt(v/bc2 + eps_root) + eps), AMSGrad's
    maximum over the corrected v; bc = 1 - beta^t, or 1 without bias correction.  nesterov (optax's
    nadam): the numerator b1 m / (1 - b1^(t+1)) + (1 - b1) g / bc1.  (The same order of operations
    as the kernel.)"""
    if weight_decay != 0 and decoupled_weight_decay:
        p *= 1.0 - lr * weight_decay
    elif weight_decay != 0:
        g = g + weight_decay * p
    m[...] = lerp(m, g, 1.0 - beta1)
    v[...] = v * beta2 + (1.0 - beta2) * g * g
    vv = v
    bc1 = 1.0 - beta1 ** step if bias_correction else 1.0
    bc2 = 1.0 - beta2 ** step if bias_correction else 1.0
    # the bias corrections of v multiply by their reciprocals (one division per element)
    if convention == "optax":
        vv = vv * vv.dtype.type(1.0 / bc2)
    if amsgrad:
        np.maximum(vmax, vv, out=vmax)
        vv = vmax
    inv_root = 1.0 / math.sqrt(bc2) if convention == "torch" else 1.0
    denom = np.sqrt(vv + eps_root) * inv_root + eps
    if nesterov:
        c_m = beta1 / (1.0 - beta1 ** (step + 1) if bias_correction else 1.0)
        c_g = (1.0 - beta1) / bc1
        p += -lr * ((c_m * m + c_g * g) / denom)
        return
    step_size = lr * math.sqrt(bc2) / bc1 if convention == "keras" else lr / bc1
    p += -step_size * (m / denom)


def adagrad(p, g, s, *, step, lr=1e-2, lr_decay=0.0, weight_decay=0.0, eps=1e-10, convention="torch"):
    if convention != "torch":  # Keras / optax: p -= lr g / sqrt(s + eps); decoupled decay
        if weight_decay != 0:
            p *= 1.0 - lr * weight_decay
        s += g * g
        p -= lr * g / np.sqrt(s + eps)
        return
    if weight_decay != 0:
        g = g + weight_decay * p
    clr = lr / (1.0 + (step - 1) * lr_decay)
    s += g * g
    p += -clr * (g / (np.sqrt(s) + eps))


def rmsprop(p, g, sq, grad_avg, buf, *, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0,
            centered=False, convention="torch"):
    if convention != "torch":  # Keras / optax: eps inside the root, lr inside the momentum buffer
        if weight_decay != 0:
            p *= 1.0 - lr * weight_decay
        sq[...] = alpha * sq + (1.0 - alpha) * (g * g)
        if centered:
            grad_avg[...] = alpha * grad_avg + (1.0 - alpha) * g
            denom = sq - grad_avg * grad_avg + eps
        else:
            denom = sq + eps
        inc = lr * g / np.sqrt(denom)
        if momentum > 0:
            buf[...] = momentum * buf + inc
            p -= buf
        else:
            p -= inc
        return
    if weight_decay != 0:
        g = g + weight_decay * p
    sq[...] = sq * alpha + (1.0 - alpha) * g * g
    if centered:
        grad_avg[...] = lerp(grad_avg, g, 1.0 - alpha)
        # an infinite sq stays infinite (the variance of huge gradients), not inf - inf = NaN
        with np.errstate(invalid="ignore", over="ignore"):
            avg = np.sqrt(np.where(np.isposinf(sq), sq, sq + -1.0 * grad_avg * grad_avg))
    else:
        avg = np.sqrt(sq)
    avg = avg + eps
    if momentum > 0:
        buf[...] = buf * momentum + g / avg
        p += -lr * buf
    else:
        p += -lr * (g / avg)


def adadelta(p, g, sq, acc, *, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0, convention="torch"):
    """keras: the weight decay apart (p *= 1 - lr wd first), as Keras' optimizers decay."""
    if weight_decay != 0 and convention == "keras":
        p *= 1.0 - lr * weight_decay
    elif weight_decay != 0:
        g = g + weight_decay * p
    sq[...] = sq * rho + (1.0 - rho) * g * g
    std = np.sqrt(sq + eps)
    delta = np.sqrt(acc + eps) / std * g
    acc[...] = acc * rho + (1.0 - rho) * delta * delta
    p += -lr * delta


def adamax(p, g, m, u, *, step, lr=2e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, convention="torch"):
    if convention == "keras":  # eps added to u at the update; decoupled decay
        if weight_decay != 0:
            p *= 1.0 - lr * weight_decay
        m += (g - m) * (1.0 - beta1)
        u[...] = np.maximum(beta2 * u, np.abs(g))
        p -= (lr * m) / ((1.0 - beta1 ** step) * (u + eps))
        return
    if weight_decay != 0:
        g = g + weight_decay * p
    m[...] = lerp(m, g, 1.0 - beta1)
    u[...] = np.maximum(u * beta2, np.abs(g) + eps)
    p += -(lr / (1.0 - beta1 ** step)) * (m / u)


def nadam_mu(step, beta1=0.9, momentum_decay=4e-3):
    return beta1 * (1.0 - 0.5 * (0.96 ** (step * momentum_decay)))


def nadam(p, g, m, v, *, step, mu_product, lr=2e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0,
          momentum_decay=4e-3, decoupled_weight_decay=False, convention="torch"):
    if weight_decay != 0 and decoupled_weight_decay:
        p *= 1.0 - lr * weight_decay
    elif weight_decay != 0:
        g = g + weight_decay * p
    mu = nadam_mu(step, beta1, momentum_decay)
    mu_next = nadam_mu(step + 1, beta1, momentum_decay)
    m[...] = lerp(m, g, 1.0 - beta1)
    v[...] = v * beta2 + (1.0 - beta2) * g * g
    # one division per element (as the kernel): the corrected root's reciprocal, then products
    inv = 1.0 / (np.sqrt(v * (1.0 / (1.0 - beta2 ** step))) + eps)
    p += (-lr * (1.0 - mu) / (1.0 - mu_product)) * (g * inv)
    p += ((-lr * mu_next) / (1.0 - mu_product * mu_next)) * (m * inv)


def radam(p, g, m, v, *, step, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0,
          decoupled_weight_decay=False, eps_root=0.0, convention="torch"):
    """optax: eps on the corrected root, 1 / (sqrt(v/bc2 + eps_root) + eps), rectified from rho_t >= 5."""
    if weight_decay != 0 and decoupled_weight_decay:
        p *= 1.0 - lr * weight_decay
    elif weight_decay != 0:
        g = g + weight_decay * p
    m[...] = lerp(m, g, 1.0 - beta1)
    v[...] = v * beta2 + (1.0 - beta2) * g * g
    bc2 = 1.0 - beta2 ** step
    rho_inf = 2.0 / (1.0 - beta2) - 1.0
    rho_t = rho_inf - 2.0 * step * beta2 ** step / bc2
    u = m * (1.0 / (1.0 - beta1 ** step)) * lr  # reciprocals of the corrections, as the kernel
    optax = convention == "optax"
    if rho_t >= 5.0 if optax else rho_t > 5.0:
        rect = math.sqrt((rho_t - 4.0) * (rho_t - 2.0) * rho_inf / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t))
        if optax:
            t = v.dtype.type
            p -= u * (t(1) / (np.sqrt(v * t(1.0 / bc2) + t(eps_root)) + t(eps))) * t(rect)
            return
        p -= u * (math.sqrt(bc2) / (np.sqrt(v) + eps)) * rect
    else:
        p -= u


def lion(p, g, m, *, lr=1e-4, beta1=0.9, beta2=0.99, weight_decay=0.0, convention="torch"):
    if weight_decay != 0:
        p *= 1.0 - lr * weight_decay
    p += -lr * np.sign(m * beta1 + (1.0 - beta1) * g)
    m[...] = m * beta2 + (1.0 - beta2) * g


def lamb(p, g, m, v, *, step, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-6, weight_decay=0.0, convention="torch"):
    """keras: the weights decay apart (p *= 1 - lr wd), no wd p in r, the norm of the decayed weights."""
    keras = convention == "keras"
    m[...] = lerp(m, g, 1.0 - beta1)
    v[...] = v * beta2 + (1.0 - beta2) * g * g
    # the bias corrections multiply by their reciprocals (as the kernel: one division per element)
    r = m * (1.0 / (1.0 - beta1 ** step)) / (np.sqrt(v * (1.0 / (1.0 - beta2 ** step))) + eps) \
        + (0.0 if keras else weight_decay) * p
    decay = 1.0 - lr * weight_decay if keras else 1.0
    p_norm = abs(decay) * math.sqrt(np.sum(p.astype(np.float64) ** 2))
    r_norm = math.sqrt(np.sum(r.astype(np.float64) ** 2))
    trust = p_norm / r_norm if p_norm > 0 and r_norm > 0 else 1.0
    if keras and weight_decay != 0:
        p[...] = p * p.dtype.type(decay) + (-lr * trust) * r
        return
    p += (-lr * trust) * r


RULES = {
    "gd": (gd, 0), "sgd": (sgd, 1), "adam": (adam, 3), "adagrad": (adagrad, 1), "rmsprop": (rmsprop, 3),
    "adadelta": (adadelta, 2), "adamax": (adamax, 2), "nadam": (nadam, 2), "radam": (radam, 2),
    "lion": (lion, 1), "lamb": (lamb, 2),
}
"""name -> (per-array rule, number of state arrays it takes)."""


def step(name, params, grads, states, *, grad_scale=1.0, clip_value=None, maximize=False, l1=0.0, l2=0.0,
         check_finite=False, **hyper) -> bool:
    """One step of rule ``name`` over lists: ``states`` is a list (one per state role) of lists of arrays."""
    if check_finite and not all(np.all(np.isfinite(g)) for g in grads):
        return False
    rule, _ = RULES[name]
    for i, (p, g) in enumerate(zip(params, grads)):
        g = preprocess(g, p, grad_scale=grad_scale, clip_value=clip_value, maximize=maximize, l1=l1, l2=l2)
        rule(p, g, *(s[i] if s is not None else None for s in states), **hyper)
    return True


# ---- clipping and regularization ----------------------------------------------------------

def global_norm(arrays, norm_type=2.0) -> float:
    flat = [np.abs(a.astype(np.float64).ravel()) for a in arrays]
    if not flat:
        return 0.0
    x = np.concatenate(flat)
    if math.isinf(norm_type):
        return float(x.max()) if x.size else 0.0
    return float(np.sum(x ** norm_type) ** (1.0 / norm_type))


def clip_grad_norm(grads, max_norm, norm_type=2.0) -> float:
    total = global_norm(grads, norm_type)
    coef = min(1.0, max_norm / (total + 1e-6))
    for g in grads:
        g *= coef
    return total


def clip_grad_value(grads, clip_value) -> None:
    for g in grads:
        np.clip(g, -clip_value, clip_value, out=g)


def regularize_grad(grads, params, l1=0.0, l2=0.0) -> None:
    for g, p in zip(grads, params):
        g += l1 * np.sign(p) + (2.0 * l2) * p


def penalty(params, l1=0.0, l2=0.0) -> float:
    return float(sum(l1 * np.sum(np.abs(p.astype(np.float64))) + l2 * np.sum(p.astype(np.float64) ** 2)
                     for p in params))


# ---- the fused layer passes of the MLP (fastopt.nn.fused) -----------------------------------

def activation(z: np.ndarray, act: str) -> np.ndarray:
    """relu, tanh, sigmoid (1 / (1 + exp(-z))) or identity of z, in z's dtype."""
    if act == "relu":
        return np.maximum(z, z.dtype.type(0))
    if act == "tanh":
        return np.tanh(z)
    if act == "sigmoid":
        one = z.dtype.type(1)
        with np.errstate(over="ignore"):
            return one / (one + np.exp(-z))
    return z.copy()


def bias_act(z: np.ndarray, b: np.ndarray, act: str) -> np.ndarray:
    """act(z + b), b added to every row."""
    return activation(z + b, act)


def act_backward(d: np.ndarray, a: np.ndarray, act: str) -> np.ndarray:
    """d * act'(z), written through the output a = act(z)."""
    one = a.dtype.type(1)
    if act == "relu":
        return np.where(a > 0, d, a.dtype.type(0))
    if act == "tanh":
        return d * (one - a * a)
    if act == "sigmoid":
        return d * a * (one - a)
    return d.copy()


def softmax_xent(z: np.ndarray, y: np.ndarray, scale: float):
    """(sum of -log softmax(z)[y] over rows, rows whose first argmax is y, (softmax(z) - onehot(y)) * scale)."""
    m = z.max(axis=1, keepdims=True)
    e = np.exp(z - m)
    s = e.sum(axis=1, keepdims=True)
    rows = np.arange(len(y))
    loss = float(np.sum(m[:, 0].astype(np.float64) + np.log(s[:, 0].astype(np.float64)) - z[rows, y]))
    dz = e * (z.dtype.type(scale) / s)
    dz[rows, y] -= z.dtype.type(scale)
    return loss, int(np.sum(z.argmax(axis=1) == y)), dz


# ---- lean precision: bfloat16 rounding and the 8-bit blockwise codes ----------------------
# The kernels (csrc/lean.hpp) widen bfloat16, float16 and 8-bit state to float32, apply the rule,
# and narrow back; these are the same conversions, bit for bit, in float32 and uint32 arithmetic.
# bfloat16 values are handled as their uint16 bits.

_M32 = np.uint32


def mix32(h: np.ndarray) -> np.ndarray:
    """murmur3's 32-bit finalizer, elementwise on uint32."""
    h = np.asarray(h, dtype=np.uint32).copy()
    h ^= h >> _M32(16)
    h *= _M32(0x85EBCA6B)
    h ^= h >> _M32(13)
    h *= _M32(0xC2B2AE35)
    h ^= h >> _M32(16)
    return h


def sr_key(seed: int, array: int, role: int, index_hi: int = 0) -> np.uint32:
    """The key of the random bits of one role (0 parameters, 2.. states, 8 the low-precision copy)
    of array ``array`` of a call; ``index_hi``: bits 32.. of the element index."""
    lo, hi = np.uint32(seed & 0xFFFFFFFF), np.uint32((seed >> 32) & 0xFFFFFFFF)
    inner = mix32(np.asarray([hi], np.uint32) + np.asarray([(0x9E3779B9 * (role + 1)) & 0xFFFFFFFF], np.uint32))
    k = mix32(np.asarray([lo], np.uint32) ^ inner)
    k = mix32(k ^ np.uint32(array & 0xFFFFFFFF))
    return mix32(k ^ np.uint32(index_hi & 0xFFFFFFFF))[0]


def random_bits(key: np.uint32, index: np.ndarray) -> np.ndarray:
    """The 32 random bits of each element index under ``key``."""
    i = np.asarray(index, dtype=np.uint64).astype(np.uint32)
    return mix32(np.uint32(key) ^ (i * _M32(0x9E3779B9)))


def bf16_nearest(x: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bits (uint16), round to nearest even; NaN stays a quiet NaN."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    r = (u + _M32(0x7FFF) + ((u >> _M32(16)) & _M32(1))) >> _M32(16)
    return np.where(np.isnan(x), (u >> _M32(16)) | _M32(0x40), r).astype(np.uint16)


def bf16_stochastic(x: np.ndarray, bits: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bits, adding the low 16 of ``bits`` before truncating (stochastic rounding)."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    r = (u + (np.asarray(bits, np.uint32) & _M32(0xFFFF))) >> _M32(16)
    return np.where(np.isnan(x), (u >> _M32(16)) | _M32(0x40), r).astype(np.uint16)


def bf16_widen(bits: np.ndarray) -> np.ndarray:
    """bfloat16 bits -> float32 (exact)."""
    return (np.asarray(bits, np.uint16).astype(np.uint32) << _M32(16)).view(np.float32)


Q8_BLOCK = 256
Q8_SIGNED_MAX, Q8_UNSIGNED_MAX = np.float32(448.0), np.float32(122880.0)
_ROUND = np.float32(2.0 ** 23)


def q8_decode(codes: np.ndarray, nonneg: bool) -> np.ndarray:
    """The code values before the block's scale: E4M3 (signed, as ml_dtypes.float8_e4m3fn: 4
    exponent bits with bias 7, 3 mantissa bits, subnormals, max 448; no NaN code: a block holding
    a NaN or an infinity has a non-finite absmax, which makes all its values non-finite) or
    unsigned E5M3 (5 exponent bits with bias 15, 3 mantissa bits, subnormals, no sign; max 122880)."""
    c = np.asarray(codes, np.uint8).astype(np.uint32)
    if nonneg:
        return np.where(c < 8, c.astype(np.float32) * np.float32(2.0 ** -17),
                        ((c + _M32(896)) << _M32(20)).view(np.float32)).astype(np.float32)
    mag = c & _M32(0x7F)
    v = np.where(mag < 8, mag.astype(np.float32) * np.float32(2.0 ** -9), ((mag + _M32(960)) << _M32(20)).view(np.float32))
    return (v.astype(np.float32).view(np.uint32) | ((c & _M32(0x80)) << _M32(24))).view(np.float32)


def q8_encode(x: np.ndarray, scale: np.float32, nonneg: bool) -> np.ndarray:
    """Codes of x * scale (x: float32), to nearest even."""
    x = np.asarray(x, np.float32)
    ux = np.ascontiguousarray(x).view(np.uint32)
    y = x * np.float32(scale) if nonneg else (ux & _M32(0x7FFFFFFF)).view(np.float32) * np.float32(scale)
    sub_min, sub_scale, bias, top = ((np.float32(2.0 ** -14), np.float32(2.0 ** 17), 896, 255) if nonneg
                                     else (np.float32(2.0 ** -6), np.float32(2.0 ** 9), 960, 126))
    ys = np.where(y < sub_min, y, np.float32(0)).astype(np.float32)
    sub = ((ys * sub_scale + _ROUND) - _ROUND).astype(np.int32).astype(np.uint32)
    uy = np.ascontiguousarray(y).view(np.uint32)
    nrm = ((uy + _M32(0x7FFFF) + ((uy >> _M32(20)) & _M32(1))) >> _M32(20)) - _M32(bias)
    with np.errstate(invalid="ignore"):
        mag = np.where(y < sub_min, sub, nrm)
    mag = np.minimum(mag, _M32(top))
    if nonneg:
        return mag.astype(np.uint8)
    return (mag | ((ux >> _M32(24)) & _M32(0x80))).astype(np.uint8)


def _nan_absmax(x: np.ndarray) -> np.float32:
    a = np.abs(x)
    return np.float32(np.nan) if np.isnan(a).any() else (np.float32(a.max()) if a.size else np.float32(0))


def quantize_8bit(x: np.ndarray, nonneg: bool = False):
    """float32 vector -> (uint8 codes, float32 absmax per block of 256): the E4M3 code of
    x * 448 / absmax (signed values) or the unsigned E5M3 code of x * 122880 / absmax (values
    >= 0), absmax the block's largest |x|."""
    x = np.asarray(x, np.float32).ravel()
    n = x.size
    codes = np.zeros(n, np.uint8)
    absmax = np.zeros((n + Q8_BLOCK - 1) // Q8_BLOCK, np.float32)
    for b in range(absmax.size):
        blk = x[b * Q8_BLOCK:(b + 1) * Q8_BLOCK]
        amax = _nan_absmax(blk)
        scale = (Q8_UNSIGNED_MAX if nonneg else Q8_SIGNED_MAX) / amax if amax > 0 else np.float32(0)
        codes[b * Q8_BLOCK:b * Q8_BLOCK + blk.size] = q8_encode(blk, scale, nonneg)
        absmax[b] = amax
    return codes, absmax


def dequantize_8bit(codes: np.ndarray, absmax: np.ndarray, nonneg: bool = False) -> np.ndarray:
    """(codes, absmax) -> float32: the code's value times absmax / 448 (signed) or absmax / 122880
    (values >= 0)."""
    c = np.asarray(codes, np.uint8).ravel()
    top = Q8_UNSIGNED_MAX if nonneg else Q8_SIGNED_MAX
    inv = np.repeat(np.asarray(absmax, np.float32) / top, Q8_BLOCK)[:c.size]
    return (q8_decode(c, nonneg) * inv).astype(np.float32)


def lean_step(name, params, grads, states, *, nonneg, param_dtype="float32", state_dtype="float32",
              low=None, low_dtype=None, stochastic=False, seed=0, pre=None, compensation=None, **hyper) -> None:
    """One step of rule ``name`` on lean arrays, as the kernels take them: each array widened to
    float32, the float32 reference rule applied, each written array narrowed back.

    params, grads, low: lists of arrays; bfloat16 ones as uint16 bits, float16 as numpy.float16.
    states: one list (or None) per state argument of the rule; float32 arrays, bfloat16 bits, or
    (codes, absmax) pairs (``state_dtype="int8"``).  ``nonneg[k]``: state k holds values >= 0.
    The states present take the kernel's roles 2, 3, 4 in order.  low: the
    low-precision copies of float32 master params (``low_dtype`` "bfloat16" or "float16").
    Rounding: nearest even, or for bfloat16 stores (stochastic=True) random_bits(sr_key(seed,
    array, role, i >> 32), i) for element i.  compensation (Kahan, bfloat16 params): bfloat16
    bits added to the widened params before the rule; afterwards the rounded params' residual.
    """
    rule, _ = RULES[name]

    def widen(a, dtype):
        if dtype == "bfloat16":
            return bf16_widen(a)
        return np.asarray(a, np.float32).astype(np.float32)

    def narrow(x, dtype, i, role, out):
        if dtype == "bfloat16":
            if stochastic:
                idx = np.arange(x.size, dtype=np.int64)
                out[...] = bf16_stochastic(x, random_bits(sr_key(seed, i, role, 0), idx))
            else:
                out[...] = bf16_nearest(x)
        else:
            with np.errstate(over="ignore"):
                out[...] = x.astype(out.dtype)

    for i, (p, g) in enumerate(zip(params, grads)):
        g_dtype = "bfloat16" if g.dtype == np.uint16 else str(g.dtype)
        pf = widen(p, param_dtype).copy()
        if compensation is not None:
            pf = pf + bf16_widen(compensation[i])
        gf = widen(g, g_dtype)
        sf = []
        for k, role in enumerate(states):
            if role is None:
                sf.append(None)
            elif state_dtype == "int8":
                sf.append(dequantize_8bit(role[i][0], role[i][1], nonneg[k]))
            else:
                sf.append(widen(role[i], state_dtype).copy())
        gf = preprocess(gf, pf, **(pre or {}))
        rule(pf, gf, *sf, **hyper)
        narrow(pf, param_dtype, i, 0, params[i])
        if compensation is not None:
            compensation[i][...] = bf16_nearest(pf - bf16_widen(params[i]))
        if low is not None:
            narrow(pf, low_dtype, i, 8, low[i])
        slot = 2
        for k, role in enumerate(states):
            if role is None:
                continue
            slot += 1
            if state_dtype == "int8":
                codes, absmax = quantize_8bit(sf[k], nonneg[k])
                role[i][0][...] = codes.reshape(role[i][0].shape)
                role[i][1][...] = absmax
            else:
                narrow(sf[k], state_dtype, i, slot - 1, role[i])
