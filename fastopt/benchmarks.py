"""Peers for the benchmarks: the same update done by fastopt, the bandwidth probe, NumPy and torch.

Shared by the pytest-benchmark suite (``bench/``) and ``fastopt bench``.  Every peer is a
zero-argument callable doing one optimizer step in place on arrays prepared here.
"""
from __future__ import annotations

import math
import random
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from . import _core, functional as F, numpy_inplace, reference
from .precision import staggered

# rule -> (kernel, per-array reference name, torch class name, default hyperparameters)
RULES: Dict[str, tuple] = {
    "gd": (F.gd_, "gd", "SGD", {"lr": 1e-3}),
    "sgd": (F.sgd_, "sgd", "SGD", {"lr": 1e-3, "momentum": 0.9}),
    "adam": (F.adam_, "adam", "Adam", {"lr": 1e-3}),
    "adamw": (F.adamw_, "adam", "AdamW", {"lr": 1e-3, "weight_decay": 1e-2}),
    "adagrad": (F.adagrad_, "adagrad", "Adagrad", {"lr": 1e-2}),
    "rmsprop": (F.rmsprop_, "rmsprop", "RMSprop", {"lr": 1e-2}),
    "adadelta": (F.adadelta_, "adadelta", "Adadelta", {"lr": 1.0}),
    "adamax": (F.adamax_, "adamax", "Adamax", {"lr": 2e-3}),
    "nadam": (F.nadam_, "nadam", "NAdam", {"lr": 2e-3}),
    "radam": (F.radam_, "radam", "RAdam", {"lr": 1e-3}),
    "lion": (F.lion_, "lion", None, {"lr": 1e-4}),
    "lamb": (F.lamb_, "lamb", None, {"lr": 1e-3}),
}
# state arrays each kernel takes (positional, after params and grads) and how many it touches
STATE_ARGS = {"gd": 0, "sgd": 1, "adam": 2, "adamw": 2, "adagrad": 1, "rmsprop": 1, "adadelta": 2, "adamax": 2,
              "nadam": 2, "radam": 2, "lion": 1, "lamb": 2}
TAKES_STEP = {"sgd", "adam", "adamw", "adagrad", "adamax", "nadam", "radam", "lamb"}
TORCH_FUSED = {"adam", "adamw", "sgd", "adagrad"}
PEERS = ["fastopt", "probe", "numpy", "numpy-inplace", "torch", "torch-foreach", "torch-fused", "fastopt.torch"]
STEP = 10  # the step count passed to the kernels: past every first-step special case


def bytes_per_element(rule: str, itemsize: int) -> int:
    """Bytes an update must move per element: params, grads and states read; params and states written."""
    s = STATE_ARGS[rule]
    return itemsize * ((2 + s) + (1 + s))


def resnet50_sizes() -> List[int]:
    """Element counts of ResNet-50's 161 parameter tensors (25.6M parameters)."""
    sizes = [64 * 3 * 7 * 7, 64, 64]
    cin = 64
    for width, blocks in ((64, 3), (128, 4), (256, 6), (512, 3)):
        for b in range(blocks):
            sizes += [width * cin, width, width, width * width * 9, width, width, 4 * width * width, 4 * width,
                      4 * width]
            if b == 0:
                sizes += [4 * width * cin, 4 * width, 4 * width]
            cin = 4 * width
    return sizes + [1000 * 2048, 1000]


def gpt2_small_sizes() -> List[int]:
    """Element counts of GPT-2 small's 148 parameter tensors (124.4M parameters; the output layer
    shares the token embedding): a transformer's list, two huge embeddings and many small vectors."""
    d, vocab, ctx, layers = 768, 50257, 1024, 12
    sizes = [vocab * d, ctx * d]
    for _ in range(layers):
        sizes += [d, d, d * 3 * d, 3 * d, d * d, d, d, d, d * 4 * d, 4 * d, 4 * d * d, d]
    return sizes + [d, d]


#: the named parameter lists of real networks
NETWORKS = {"resnet50": resnet50_sizes, "gpt2-small": gpt2_small_sizes}


def _zeros_placed(n: int, dtype, slot: int) -> np.ndarray:
    a = staggered(n, dtype, slot)
    a[...] = 0
    return a


def _copy_placed(x: np.ndarray, slot: int) -> np.ndarray:
    a = staggered(x.size, x.dtype, slot)
    a[...] = x
    return a


@dataclass
class Problem:
    rule: str
    dtype: type
    sizes: List[int]
    params: List[np.ndarray] = field(default_factory=list)
    grads: List[np.ndarray] = field(default_factory=list)
    states: List[List[np.ndarray]] = field(default_factory=list)

    @classmethod
    def make(cls, rule: str, dtype=np.float32, sizes: Sequence[int] = (1 << 20,), seed: int = 0,
             staggered_params: bool = False) -> "Problem":
        """Random parameters and gradients (the same values for a seed), in NumPy's new arrays
        (where its allocator puts them, as a user's own arrays) or, ``staggered_params``, placed as
        fastopt's MLP places its parameters and gradients (:func:`fastopt.precision.staggered`,
        slots 4 and 5); the states zeroed, placed as the optimizer classes place theirs."""
        from .nn.mlp import PARAM_SLOT
        rng = np.random.default_rng(seed)
        pr = cls(rule, np.dtype(dtype).type, list(sizes))
        pr.params = [rng.standard_normal(n, dtype=np.float32).astype(dtype) for n in sizes]
        pr.grads = [(rng.standard_normal(n, dtype=np.float32) * 1e-3).astype(dtype) for n in sizes]
        if staggered_params:
            pr.params = [_copy_placed(a, PARAM_SLOT) for a in pr.params]
            pr.grads = [_copy_placed(a, PARAM_SLOT + 1) for a in pr.grads]
        # the state placed as the optimizer classes place theirs (fastopt.precision.staggered)
        pr.states = [[_zeros_placed(n, dtype, slot) for n in sizes] for slot in range(STATE_ARGS[rule])]
        return pr

    @property
    def elements(self) -> int:
        return sum(self.sizes)

    @property
    def bytes(self) -> int:
        return self.elements * bytes_per_element(self.rule, np.dtype(self.dtype).itemsize)


#: the page size whose offsets decide 4K aliasing (README, "On a 16-core Intel Xeon")
PAGE = 4096


def placement(pr: Problem, fns: Optional[Dict[str, Callable[[], object]]] = None) -> Dict[str, object]:
    """Where each array of a case starts, in bytes modulo a 4 KiB page: the parameters, gradients
    and states (one list per state, one entry per array), and the states of ``fns``'
    ``fastopt.torch`` peer where it has one.  A step's speed on some CPUs depends on these (4K
    aliasing), and NumPy's allocator places the parameters and gradients where it happens to."""
    off = lambda arrays: [int(a.ctypes.data % PAGE) for a in arrays]  # noqa: E731
    out: Dict[str, object] = {"params": off(pr.params), "grads": off(pr.grads),
                              "states": [off(s) for s in pr.states]}
    opt = getattr((fns or {}).get("fastopt.torch"), "__self__", None)
    if opt is not None:  # fastopt.torch keeps a state of its own
        per_param = [opt.state.get(p, {}) for g in opt.param_groups for p in g["params"]]
        names = [k for k, v in per_param[0].items() if getattr(v, "numel", lambda: 0)() > 1] if per_param else []
        out["fastopt.torch states"] = [[int(st[k].data_ptr() % PAGE) for st in per_param] for k in names]
    return out


def fastopt_step(pr: Problem, **extra) -> Callable[[], object]:
    fn = RULES[pr.rule][0]
    kw = dict(_kernel_hyper(pr), **extra)
    return lambda: fn(pr.params, pr.grads, *pr.states, **kw)


def probe_step(pr: Problem) -> Callable[[], object]:
    """The bandwidth limit: the same loads and stores as the rule, no math."""
    return lambda: _core.stream_(pr.params, pr.grads, pr.states)


def numpy_step(pr: Problem) -> Callable[[], object]:
    """The naive NumPy version a user writes: fastopt.reference, one array at a time."""
    ref = RULES[pr.rule][1]
    hyper = _kernel_hyper(pr)
    if pr.rule == "adamw":
        hyper["decoupled_weight_decay"] = True
    unused = {"adam": 1, "rmsprop": 2}.get(ref, 0)  # amsgrad's and centered/momentum's states
    states = pr.states + [[None] * len(pr.sizes)] * unused
    return lambda: reference.step(ref, pr.params, pr.grads, states, **hyper)


def _kernel_hyper(pr: Problem) -> Dict[str, object]:
    """The hyperparameters every peer of ``pr`` uses, with the step (and NAdam's mu_product)."""
    _, _, _, hyper = RULES[pr.rule]
    kw = dict(hyper)
    if pr.rule in TAKES_STEP:
        kw["step"] = STEP
    if pr.rule == "nadam":
        kw["mu_product"] = math.prod(reference.nadam_mu(t) for t in range(1, STEP + 1))
    return kw


def numpy_inplace_step(pr: Problem) -> Callable[[], object]:
    """The best NumPy can do: every operation in place with ``out=`` into preallocated scratch
    (:mod:`fastopt.numpy_inplace`)."""
    fn, _ = numpy_inplace.RULES["adam" if pr.rule == "adamw" else pr.rule]
    kw = _kernel_hyper(pr)
    scratch = [(np.empty_like(p), np.empty_like(p)) for p in pr.params]

    def step():
        for i, (p, g) in enumerate(zip(pr.params, pr.grads)):
            fn(p, g, *(s[i] for s in pr.states), *scratch[i], **kw)
    return step


def torch_step(pr: Problem, mode: str) -> Optional[Callable[[], object]]:
    """torch.optim on tensors that share memory with the problem's arrays; mode: single, foreach, fused."""
    try:
        import torch
    except ImportError:
        return None
    _, _, cls_name, hyper = RULES[pr.rule]
    if cls_name is None or (mode == "fused" and pr.rule not in TORCH_FUSED):
        return None
    tensors = [torch.from_numpy(p) for p in pr.params]
    for t, g in zip(tensors, pr.grads):
        t.grad = torch.from_numpy(g)
    kw = dict(hyper)
    if mode == "fused":
        kw["fused"] = True
    else:
        kw["foreach"] = mode == "foreach"
    opt = getattr(torch.optim, cls_name)(tensors, **kw)
    opt.step()  # creates the state
    return opt.step


def fastopt_torch_step(pr: Problem) -> Optional[Callable[[], object]]:
    """fastopt.torch's optimizer on tensors that share memory with the problem's arrays: what a
    torch user runs, Python layer included."""
    try:
        import torch
        import fastopt.torch as ft
    except ImportError:
        return None
    _, _, cls_name, hyper = RULES[pr.rule]
    cls = getattr(ft, cls_name or {"lion": "Lion", "lamb": "LAMB"}.get(pr.rule, ""), None)
    if cls is None:
        return None
    tensors = [torch.from_numpy(p) for p in pr.params]
    for t, g in zip(tensors, pr.grads):
        t.grad = torch.from_numpy(g)
    opt = cls(tensors, **hyper)
    opt.step()  # creates the state
    return opt.step


def make_peer(pr: Problem, peer: str) -> Optional[Callable[[], object]]:
    """A step callable for the named peer, or None where the peer has no such rule."""
    if peer == "fastopt":
        return fastopt_step(pr)
    if peer == "probe":
        return probe_step(pr)
    if peer == "numpy":
        return numpy_step(pr)
    if peer == "numpy-inplace":
        return numpy_inplace_step(pr)
    if peer == "fastopt.torch":
        return fastopt_torch_step(pr)
    if peer.startswith("torch"):
        return torch_step(pr, {"torch": "single", "torch-foreach": "foreach", "torch-fused": "fused"}[peer])
    raise ValueError(f"unknown peer {peer!r}; choose from {PEERS}")


def fused_clip_steps(pr: Problem, max_norm: float = 1.0) -> Dict[str, Callable[[], object]]:
    """Global-norm clip + AdamW: fused in one update, as two fastopt passes, and torch's sequence."""
    fn, _, _, hyper = RULES["adamw"]
    kw = dict(hyper, step=STEP)

    def fused():
        F.adamw_(pr.params, pr.grads, *pr.states, grad_scale=F.clip_coef(F.global_norm(pr.grads), max_norm), **kw)

    def separate():
        F.clip_grad_norm_(pr.grads, max_norm)
        F.adamw_(pr.params, pr.grads, *pr.states, **kw)

    out = {"fastopt-fused": fused, "fastopt-separate": separate}
    try:
        import torch
    except ImportError:
        return out
    tensors = [torch.from_numpy(p) for p in pr.params]
    for t, g in zip(tensors, pr.grads):
        t.grad = torch.from_numpy(g)
    opt = torch.optim.AdamW(tensors, fused=True, **hyper)

    def torch_seq():
        torch.nn.utils.clip_grad_norm_(tensors, max_norm)
        opt.step()
    out["torch-fused"] = torch_seq
    return out


#: the clip and penalty kernels benchmarked, with the bytes each moves per element (in units of itemsize)
CLIP_OPS = {"global_norm": 1, "clip_grad_norm_": 3, "clip_grad_value_": 2, "regularize_grad_": 3, "penalty": 1}
CLIP_PEERS = ["fastopt", "numpy", "torch"]


def clip_peer(pr: Problem, op: str, peer: str) -> Optional[Callable[[], object]]:
    """One clip or penalty call on ``pr.grads`` (and ``pr.params``): fastopt's kernel, the NumPy
    reference, or torch's counterpart (``torch.nn.utils.clip_grad_norm_`` / ``clip_grad_value_``,
    ``torch.linalg.vector_norm`` for the norm); None where the peer has no such operation.
    ``clip_grad_norm_`` clips to norm 1: after the first call the norm sits at the limit and every
    call still scales (the coefficient is 1 / (1 + 1e-6), as torch's), so each call does the
    norm pass and the scale pass on data that no longer changes."""
    if op not in CLIP_OPS:
        raise ValueError(f"unknown op {op!r}; choose from {list(CLIP_OPS)}")
    if peer in ("fastopt", "numpy"):  # the reference names the in-place ones without the trailing _
        fn = getattr(F, op) if peer == "fastopt" else getattr(reference, op.rstrip("_"))
        args = {"global_norm": (pr.grads,), "clip_grad_norm_": (pr.grads, 1.0), "clip_grad_value_": (pr.grads, 1.0),
                "regularize_grad_": (pr.grads, pr.params, 1e-6, 1e-6), "penalty": (pr.params, 1e-4, 1e-4)}[op]
        return lambda: fn(*args)
    if peer != "torch":
        raise ValueError(f"unknown peer {peer!r}; choose from {CLIP_PEERS}")
    try:
        import torch
    except ImportError:
        return None
    grads = [torch.from_numpy(g) for g in pr.grads]
    params = [torch.from_numpy(p) for p in pr.params]
    for p, g in zip(params, grads):
        p.grad = g
    if op == "global_norm":
        return lambda: torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    if op == "clip_grad_norm_":
        return lambda: torch.nn.utils.clip_grad_norm_(params, 1.0, foreach=True)
    if op == "clip_grad_value_":
        return lambda: torch.nn.utils.clip_grad_value_(params, 1.0, foreach=True)
    return None


@dataclass
class Timing:
    best: float
    median: float
    spread: float  # (p90 - p10) / median
    reps: int


def _timing(samples: List[float], calls: int) -> Timing:
    samples = sorted(samples)
    med = statistics.median(samples)
    p10, p90 = samples[len(samples) // 10], samples[(len(samples) * 9) // 10]
    return Timing(samples[0], med, (p90 - p10) / med if med else 0.0, calls)


def time_interleaved(fns: Dict[str, Callable[[], object]], rounds: int = 7, min_time: float = 0.3,
                     warmup: int = 2, seed: int = 0, settle: bool = True) -> Dict[str, Timing]:
    """Every callable timed in ``rounds`` rounds, each round all of them in a new (seeded) random
    order, so that a slower or faster moment of a shared machine falls on every peer alike: one
    sample per peer and round, of enough calls for ``min_time / rounds`` seconds (at least 0.1 ms,
    for the clock).  Best and median are per call; the spread is over the rounds.

    ``settle``: each sample starts after one untimed call of the same peer, so that no peer pays
    for what the one before it left behind: torch's OpenMP workers spin for milliseconds after a
    torch step and share the cores with the next peer's threads (a 64M-element 8-bit step on 2
    cores took 27.3 ms right after torch's fused step and 23.3 ms right after itself)."""
    inner = {}
    for name, fn in fns.items():
        for _ in range(warmup):
            fn()
        t0 = time.perf_counter()
        fn()
        one = max(time.perf_counter() - t0, 1e-9)
        inner[name] = max(1, int(max(min_time / rounds, 1e-4) / one))
    samples: Dict[str, List[float]] = {name: [] for name in fns}
    order = list(fns)
    rng = random.Random(seed)
    for _ in range(rounds):
        rng.shuffle(order)
        for name in order:
            fn, k = fns[name], inner[name]
            if settle:
                fn()
            t0 = time.perf_counter()
            for _ in range(k):
                fn()
            samples[name].append((time.perf_counter() - t0) / k)
    return {name: _timing(v, rounds * inner[name]) for name, v in samples.items()}


def set_threads(n: int) -> None:
    """The same thread count for fastopt and torch."""
    _core.set_num_threads(n)
    try:
        import torch
        torch.set_num_threads(n)
    except ImportError:
        pass
