"""The lean-precision benchmark: one Adam step over n parameters with float32, bfloat16 and 8-bit
state, on a float32 model and on a bfloat16 model (also with stochastic rounding, as pure bfloat16
training runs), against torch's fused Adam, bitsandbytes' 8-bit Adam (where it installs) and the
bandwidth probe moving the same bytes.

Every peer works on its own arrays of n elements, prepared once: fastopt's parameters and
gradients placed as its MLP places them and its state as its optimizer classes place it
(:func:`fastopt.precision.staggered`: on a cache line, apart from each other), torch's tensors
where torch's allocator puts them.  One more row runs the float32 model's 8-bit step on arrays as
NumPy places them (16 bytes past a cache line), as a NumPy user's own arrays lie, against the same
probe.  The peers are interleaved round by round, each round in a new order, each timed step right
after an untimed step of the same peer (:func:`fastopt.benchmarks.time_interleaved`), and the
median of the rounds is reported.
``torch-fused (A/A)`` is torch's fused Adam timed twice as two peers: their ratio says how noisy
the machine is.  ``fastopt bench --lean``
prints the table; ``bench/test_bench_lean.py`` runs the same peers under pytest-benchmark.

Bytes per element (read + written): a float32 model's Adam moves params 4+4, grads 4 and two
states; float32 state 8+8 (28 B), bfloat16 4+4 (20 B), 8-bit 2+2 plus 4 bytes of absmax per 256
elements per state (16.1 B).  A bfloat16 model: params 2+2, grads 2, then the state (22, 14 or
10.1 B).  The probe of an 8-bit step moves the same bytes but the absmax (16 or 10) with
one bfloat16 state (no conversions); ``8-bit conversions`` runs the 8-bit loads and stores of
two states with no rule: what the codes cost.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

import numpy as np

from . import _core, functional as F
from .benchmarks import _copy_placed, time_interleaved
from .precision import BLOCK, empty_8bit, staggered


@dataclass
class Peer:
    name: str
    model: str              # "float32" or "bfloat16": the parameters' dtype
    state: str              # what the optimizer keeps
    bytes_per_element: float
    probe: Optional[str]    # the probe moving the same bytes (None for the probes themselves)
    step: Callable[[], None]


def state_bytes(state: str) -> float:
    """Optimizer-state bytes per parameter of Adam (two states)."""
    return {"float32": 8.0, "bfloat16": 4.0, "int8": 2.0 + 8.0 / BLOCK}[state]


def moved_bytes(model: str, state: str) -> float:
    p = 4 if model == "float32" else 2
    return 3 * p + 2 * state_bytes(state)


def _adam_arrays(n: int, model: str, state: str, rng: np.random.Generator, numpy_placement: bool = False):
    """Parameters and gradients placed as fastopt's MLP places them (or, ``numpy_placement``, as
    NumPy places a new array: from 1 MiB up, 16 bytes past a cache line), and Adam's two states."""
    from .nn.mlp import PARAM_SLOT
    from .precision import bfloat16
    dtype = np.float32 if model == "float32" else bfloat16()
    p = rng.standard_normal(n, dtype=np.float32).astype(dtype)
    g = (rng.standard_normal(n, dtype=np.float32) * 0.01).astype(dtype)
    if not numpy_placement:
        p, g = _copy_placed(p, PARAM_SLOT), _copy_placed(g, PARAM_SLOT + 1)
    if state == "int8":
        s = [empty_8bit(n, slot=0), empty_8bit(n, nonneg=True, slot=1)]
    else:  # allocated as the optimizer classes allocate their state
        s = [staggered(n, np.float32 if state == "float32" else bfloat16(), k) for k in range(2)]
        for a in s:
            a[...] = 0
    return p, g, s


def peers(n: int, include: Optional[List[str]] = None) -> List[Peer]:
    """The peers for n elements (those in ``include`` if given; optional libraries skipped when
    they do not import)."""
    rng = np.random.default_rng(0)
    out: List[Peer] = []
    counter = {"t": 0}

    def want(name: str) -> bool:
        return include is None or name in include

    def adam_step(arrays, stochastic: bool = False) -> Callable[[], None]:
        p, g, s = arrays

        def step() -> None:
            counter["t"] += 1
            extra = {"stochastic_rounding": True, "seed": counter["t"]} if stochastic else {}
            F.adam_(p, g, s[0], s[1], step=counter["t"] + 10, lr=1e-3, **extra)
        return step

    for model in ("float32", "bfloat16"):
        for state in ("float32", "bfloat16", "int8"):
            name = f"fastopt {model} model, {state} state"
            if want(name):
                out.append(Peer(name, model, state, moved_bytes(model, state), f"probe {model} model, {state} state",
                                adam_step(_adam_arrays(n, model, state, rng))))
            pname = f"probe {model} model, {state} state"
            if want(pname):
                p, g, s = _adam_arrays(n, model, "bfloat16" if state == "int8" else state, rng)
                if state == "int8":  # the same bytes but the absmax, no conversions: one bfloat16 state
                    s = s[:1]
                out.append(Peer(pname, model, state, moved_bytes(model, state), None,
                                lambda p=p, g=g, s=s: _core.stream_(p, g, s, 0.0)))
            sname = f"fastopt {model} model, {state} state, stochastic rounding"
            if model == "bfloat16" and state != "int8" and want(sname):  # pure bfloat16 training's rounding
                out.append(Peer(sname, model, state, moved_bytes(model, state), f"probe {model} model, {state} state",
                                adam_step(_adam_arrays(n, model, state, rng), stochastic=True)))
            nname = f"fastopt {model} model, {state} state, NumPy's placement"
            if model == "float32" and state == "int8" and want(nname):  # a NumPy user's own arrays
                out.append(Peer(nname, model, state, moved_bytes(model, state), f"probe {model} model, {state} state",
                                adam_step(_adam_arrays(n, model, state, rng, numpy_placement=True))))
            cname = f"8-bit conversions, {model} model (no rule)"
            if state == "int8" and want(cname):  # what decoding and encoding two 8-bit states cost
                p, g, _ = _adam_arrays(n, model, state, rng)
                s = [empty_8bit(n, slot=0), empty_8bit(n, slot=1)]
                out.append(Peer(cname, model, state, moved_bytes(model, state), None,
                                lambda p=p, g=g, s=s: _core.stream_(p, g, s, 0.0)))
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None:
        for model, label in (("float32", "torch-fused"), ("float32", "torch-fused (A/A)"),
                             ("bfloat16", "torch-fused")):
            name = f"{label} {model} model"
            if not want(name):
                continue
            t = torch.from_numpy(rng.standard_normal(n, dtype=np.float32)).to(getattr(torch, model), copy=True)
            t.grad = (torch.randn(n) * 0.01).to(t.dtype)
            opt = torch.optim.Adam([t], lr=1e-3, fused=True)
            out.append(Peer(name, model, model, moved_bytes(model, model), f"probe {model} model, {model} state",
                            opt.step))
        from . import torch as ft
        for state in ("bfloat16", "int8"):
            name = f"fastopt.torch float32 model, {state} state"
            if not want(name):
                continue
            t = torch.from_numpy(rng.standard_normal(n, dtype=np.float32)).clone()  # in torch's memory
            t.grad = torch.randn(n) * 0.01
            opt = ft.Adam([t], lr=1e-3, state_dtype=state)
            out.append(Peer(name, "float32", state, moved_bytes("float32", state), f"probe float32 model, {state} state",
                            opt.step))
        name = "bitsandbytes Adam8bit float32 model"
        if want(name):
            try:
                import bitsandbytes as bnb
            except Exception:  # not installed, or no CPU build here
                bnb = None
            if bnb is not None:
                t = torch.nn.Parameter(torch.from_numpy(rng.standard_normal(n, dtype=np.float32)).clone())
                t.grad = torch.randn(n) * 0.01
                opt = bnb.optim.Adam8bit([t], lr=1e-3, min_8bit_size=0)
                out.append(Peer(name, "float32", "int8", moved_bytes("float32", "int8"),
                                "probe float32 model, int8 state", opt.step))
    return out


def run(n: int = 64 * 2**20, rounds: int = 7, include: Optional[List[str]] = None) -> List[Dict[str, object]]:
    """Median seconds per step of every peer, interleaved over ``rounds`` (each round in a new
    seeded order, each timed step right after an untimed one of the same peer:
    :func:`fastopt.benchmarks.time_interleaved`), with the ratio to torch's fused Adam on the same
    model dtype and the fraction of the same-bytes probe."""
    ps = peers(n, include)
    # a sample: one step, or as many as 0.1 ms takes (min_time 0); the warm-up steps allocate, and
    # bitsandbytes builds its maps
    timing = time_interleaved({p.name: p.step for p in ps}, rounds=rounds, min_time=0.0, warmup=1)
    med = {k: t.median for k, t in timing.items()}
    rows = []
    for p in ps:
        torch_ref = med.get(f"torch-fused {p.model} model")
        probe = med.get(p.probe) if p.probe else None
        rows.append({
            "peer": p.name, "model": p.model, "state": p.state, "elements": n, "ms": med[p.name] * 1e3,
            "bytes_per_element": p.bytes_per_element, "state_bytes_per_param": state_bytes(p.state),
            "GB/s": p.bytes_per_element * n / med[p.name] / 1e9,
            "vs_torch_fused": torch_ref / med[p.name] if torch_ref else None,
            "of_probe": probe / med[p.name] if probe else None,
        })
    return rows
