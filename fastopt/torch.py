"""PyTorch interop: ``torch.optim.Optimizer`` subclasses that run fastopt's kernels in place on
the tensors' own memory (CPU, float32 / float64, in any dense layout, no copies).

>>> opt = fastopt.torch.Adam(model.parameters(), lr=1e-3)      # instead of torch.optim.Adam
>>> loss.backward(); opt.step(); opt.zero_grad()

They are torch optimizers: parameter groups, ``zero_grad``, ``torch.optim.lr_scheduler``,
``closure``, and ``state_dict`` / ``load_state_dict`` in torch's own layout and state names, so a
checkpoint of ``torch.optim.Adam`` loads into ``fastopt.torch.Adam`` and back.  Each parameter
group is one kernel call per step (one per dtype and step count when those differ within a
group).  Beyond torch's hyperparameters every class takes fastopt's fused options
(``global_clipnorm``, ``clipnorm``, ``clipvalue``, ``l1``, ``l2``, ``check_finite``; see
:class:`fastopt.optim.Optimizer`).  Lion and LAMB have no torch.optim counterpart.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Tuple

import functools
import inspect
import itertools
import math
import operator

import numpy as np
import torch
import torch.optim.optimizer as _torch_optim

from . import _core, functional as F
from . import optim as _optim
from . import precision as P
from .optim.optimizer import COMMON, KEPT_ON_LOAD

__all__ = ["FastoptOptimizer", "SGD", "Adam", "AdamW", "Adagrad", "RMSprop", "Adadelta", "Adamax", "NAdam",
           "RAdam", "Lion", "LAMB", "clip_grad_norm_", "clip_grad_value_"]

#: torch.optim's implementation switches: accepted as torch takes them.  ``foreach`` and ``fused``
#: change nothing (a fastopt step is always one fused kernel per group); ``capturable`` and
#: ``differentiable`` must be False.
TORCH_OPTIONS = {"foreach": None, "fused": None, "capturable": False, "differentiable": False}

_DTYPES = (torch.float32, torch.float64, torch.bfloat16, torch.float16)

#: the fewest elements a step's call must have before fastopt's helper threads join it, while
#: torch runs more than one thread and its team cannot be used (below): right after a parallel
#: torch op (its OpenMP workers still spinning), Adam on 64K-128K elements took 15-20% longer on
#: two threads than on one, 256K the same, 512K and more less on two (2-core AMD EPYC).  The
#: kernels' own default is 64K.
TORCH_PARALLEL_MIN = 1 << 18

#: whether a step runs on torch's own OpenMP team while torch runs more than one thread: right
#: after a parallel torch op (the backward) that team's workers are spinning on the cores and take
#: the step's items at once, where fastopt's helpers would wait for the cores.  Adam right after a
#: torch matmul, 2 threads, 2-core AMD EPYC: 256K elements 140 us on fastopt's team, 99 us on one
#: thread, 60 us on torch's; 1M 638, 593 and 350 us.
TORCH_TEAM = "parallel backend: OpenMP" in torch.__config__.parallel_info() and _core._omp_team_available()


def _np(t: torch.Tensor) -> np.ndarray:
    """A NumPy view of a CPU tensor's memory (bfloat16 as ml_dtypes' bfloat16); a dense tensor whose
    dimensions lie in another order (channels_last) as a 1-D view in memory order."""
    if not t.is_contiguous():
        t = t.as_strided((t.numel(),), (1,))
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(P.bfloat16())
    return t.numpy()


def _dense(t: torch.Tensor) -> bool:
    """Whether t's elements fill its memory span without gaps or overlaps, in any order of its
    dimensions (contiguous, channels_last, a transpose): an update element by element can then
    run over that memory as one flat array, with the gradient and the states laid out alike."""
    if t.is_contiguous():
        return True
    expected = 1
    for stride, size in sorted((st, n) for st, n in zip(t.stride(), t.shape) if n != 1):
        if stride != expected:
            return False
        expected *= size
    return True


def _same_layout(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether a and b (of one shape) map their elements to memory in the same order."""
    if a.is_contiguous() and b.is_contiguous():
        return True
    return all(x == y for x, y, n in zip(a.stride(), b.stride(), a.shape) if n != 1)


def _like(p: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """t laid out as p (dense): t itself where it is, else a copy in p's layout."""
    return t if _same_layout(t, p) else torch.empty_like(p, dtype=t.dtype).copy_(t)


def _staggered(t: torch.Tensor, slot: int) -> torch.Tensor:
    """A copy of ``t`` placed as :func:`fastopt.precision.staggered` places NumPy buffers."""
    shift = P.stagger_shift(t.numel(), t.element_size(), slot)
    if shift == 0:
        return t
    if (t.numel() + shift) * t.element_size() >= P.HUGE_MIN:  # NumPy's memory, kept alive by the tensor
        raw = P.staggered(t.numel(), np.uint8 if t.element_size() == 1 else f"i{t.element_size()}", slot)
        out = torch.from_numpy(raw).view(t.dtype).view(t.shape)
    else:
        out = torch.empty(t.numel() + shift, dtype=t.dtype)[shift:].view(t.shape)
    out.copy_(t)
    return out


def _plain(v: Any, where: str) -> Any:
    """A hyperparameter with its one-element tensors (torch takes them for lr and the betas) as
    Python floats."""
    if isinstance(v, torch.Tensor):
        if v.numel() != 1:
            raise ValueError(f"{where}: a tensor must have one element, got {v.numel()}")
        return float(v)
    if isinstance(v, tuple) and any(isinstance(x, torch.Tensor) for x in v):
        return tuple(_plain(x, where) for x in v)
    return v


def _check_param(p: torch.Tensor, where: str) -> None:
    if not isinstance(p, torch.Tensor):
        raise TypeError(f"{where} must be a torch.Tensor, got {type(p).__name__}")
    if p.device.type != "cpu":
        raise ValueError(f"{where} is on {p.device}; fastopt updates CPU tensors")
    if p.dtype not in _DTYPES:
        raise TypeError(f"{where} has dtype {p.dtype}; fastopt optimizes float32, float64, bfloat16 or float16 "
                        "tensors")
    if p.dtype == torch.bfloat16:
        P.bfloat16()  # ImportError naming ml-dtypes when it is missing
    if not _dense(p):
        raise ValueError(f"{where} has gaps or overlaps in its memory (strides {tuple(p.stride())}); fastopt updates "
                         "dense tensors in place (contiguous, channels_last, ...): make it contiguous first, e.g. "
                         "`param.data = param.data.contiguous()`")


class FastoptOptimizer(torch.optim.Optimizer):
    """The torch face of a :mod:`fastopt.optim` class (``rule``): same update, torch's state."""

    rule: type = _optim.Optimizer

    def __init__(self, params, **hyper: Any) -> None:
        unknown = set(hyper) - set(self.rule.defaults) - set(COMMON) - set(TORCH_OPTIONS)
        if unknown:
            raise TypeError(f"{type(self).__name__} got unknown hyperparameters {sorted(unknown)}")
        _check_torch_options(hyper, type(self).__name__)
        defaults = {**COMMON, **self.rule.defaults, **TORCH_OPTIONS,
                    **self.rule.convention_defaults.get(hyper.get("convention", ""), {}), **hyper}
        self.skipped_steps = 0
        self._plans: Dict[int, Any] = {}
        super().__init__(params, defaults)

    def add_param_group(self, param_group: Dict[str, Any]) -> None:
        """torch's, with fastopt's checks of the tensors and hyperparameters."""
        i = len(self.param_groups)
        params = param_group["params"]
        if isinstance(params, set):
            raise TypeError(f"param_groups[{i}]['params'] is a set, whose order changes between runs: use a list")
        params = [params] if isinstance(params, torch.Tensor) else list(params)
        tensors = []  # torch takes (name, tensor) pairs too, as model.named_parameters() gives
        for j, p in enumerate(params):
            named = isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], str)
            tensors.append(p[1] if named else p)
            _check_param(tensors[-1], f"param_groups[{i}]['params'][{j}]" + (f" ({p[0]!r})" if named else ""))
        _check_torch_options(param_group, f"param_groups[{i}]")
        sample = np.zeros(1, np.float32)
        if tensors and tensors[0].dtype != torch.float32:
            sample = _np(torch.zeros(1, dtype=tensors[0].dtype))
        merged = {**self.defaults, **param_group, "params": [sample]}
        for k, v in merged.items():  # torch takes one-element tensors for lr and the betas
            if k != "params":
                merged[k] = _plain(v, f"param_groups[{i}][{k!r}]")
        self.rule._check_group(merged, i)
        super().add_param_group({**param_group, "params": params})
        self.__dict__.setdefault("_plans", {}).clear()

    def _hyper(self, group: Dict[str, Any]) -> Dict[str, Any]:
        keys, getter, _ = _hyper_keys(self.rule)
        try:  # every option in the group (as add_param_group leaves it): one C-level lookup
            h = dict(zip(keys, getter(group)))
        except KeyError:  # a group loaded from torch.optim's state_dict may lack fastopt's options
            h = {**COMMON, **self.rule.defaults}
            h.update({k: group[k] for k in h if k in group})
        h["lr"] = float(h["lr"])
        betas = h.get("betas")
        if betas is not None and not all(type(b) is float for b in betas):
            h["betas"] = _plain(betas, "betas")
        return h

    def _init_state(self, p: torch.Tensor, h: Dict[str, Any]) -> Dict[str, Any]:
        state = self.state[p]
        if "step" not in state:
            # torch's SGD keeps no step: a momentum buffer means it has stepped before
            has_buf = state.get("momentum_buffer") is not None
            state["step"] = torch.tensor(1.0 if has_buf else 0.0, dtype=torch.float32)
        elif not isinstance(state["step"], torch.Tensor):  # a checkpoint with a plain number
            state["step"] = torch.tensor(float(state["step"]), dtype=torch.float32)
        kind = h["state_dtype"]
        lean_param = p.dtype in (torch.bfloat16, torch.float16)
        dtype = torch.bfloat16 if kind == "bfloat16" else torch.float32 if lean_param else p.dtype
        # every state laid out as its parameter (the update runs over their memory as flat arrays)
        for slot, name in enumerate(self.rule._needed_states(h)):
            buf = self._state_tensor(state, name, p, kind, dtype, h)
            if buf is not state.get(name) and p.is_contiguous():  # made here: placed apart from the others
                buf = _staggered(buf, slot)
            state[name] = buf
        if h["master_weights"]:
            master = state.get("master_param")
            if master is None or master.shape != p.shape:
                state["master_param"] = _like(p, p.detach().to(torch.float32))
            elif master.dtype != torch.float32 or not _same_layout(master, p):
                state["master_param"] = _like(p, master.to(torch.float32))
        else:
            state.pop("master_param", None)
        if h["kahan"]:  # bfloat16 parameters' rounding error (Kahan)
            comp = state.get("compensation")
            if comp is None or comp.shape != p.shape or comp.dtype != torch.bfloat16 or not _same_layout(comp, p):
                comp = torch.zeros(p.shape, dtype=torch.bfloat16)
                state["compensation"] = _staggered(comp, 3) if p.is_contiguous() else _like(p, comp)
        else:
            state.pop("compensation", None)
        for name, value in self.rule.scalar_states.items():  # NAdam's mu_product
            if not isinstance(state.get(name, value), torch.Tensor) or name not in state:
                state[name] = torch.tensor(float(state.get(name, value)), dtype=torch.float64)
        return state

    def _check_state(self, p: torch.Tensor, h: Dict[str, Any]) -> None:
        """Raise what :meth:`_init_state` would meet in ``p``'s state, changing nothing: a group's
        states are all checked before any is made or converted."""
        state = self.state.get(p, {})
        step = state.get("step")
        if step is not None:
            try:
                float(step)
            except (TypeError, ValueError, RuntimeError):
                raise ValueError(f"state 'step' must be a number, got {step!r}") from None
        for name in self.rule._needed_states(h):
            buf = state.get(name)
            if buf is None:
                continue
            if not isinstance(buf, torch.Tensor):
                raise ValueError(f"state {name!r} must be a tensor, got {type(buf).__name__}")
            if tuple(buf.shape) != tuple(p.shape):
                raise ValueError(f"state {name!r} has shape {tuple(buf.shape)}, its parameter {tuple(p.shape)}")
            absmax = state.get(name + "_absmax")
            if buf.dtype == torch.uint8 and (not isinstance(absmax, torch.Tensor)
                                             or absmax.numel() != P.blocks(p.numel())):
                raise ValueError(f"state {name!r} is 8-bit but {name + '_absmax'!r} is missing or of the wrong size")

    def _state_tensor(self, state: Dict[str, Any], name: str, p: torch.Tensor, kind: str, dtype: torch.dtype,
                      h: Dict[str, Any]) -> torch.Tensor:
        """State ``name`` of ``p`` as the group's state_dtype keeps it, laid out as ``p``, made or
        converted from a checkpoint of another kind or layout (8-bit: uint8 codes in ``name``,
        float32 maxima per block of 256 in memory order in ``name + "_absmax"``)."""
        buf, absmax = state.get(name), state.get(name + "_absmax")
        nonneg = name in self.rule.nonneg_states
        if buf is None:
            values = torch.full(p.shape, self.rule._initial_value(name, h), dtype=torch.float64 if
                                kind == "float32" and dtype == torch.float64 else torch.float32)
        elif tuple(buf.shape) != tuple(p.shape):
            raise ValueError(f"state {name!r} has shape {tuple(buf.shape)}, its parameter {tuple(p.shape)}")
        elif buf.dtype == torch.uint8:
            if absmax is None or absmax.numel() != P.blocks(p.numel()):
                raise ValueError(f"state {name!r} is 8-bit but {name + '_absmax'!r} is missing or of the wrong size")
            if kind == "int8" and _dense(buf) and _same_layout(buf, p):  # the blocks follow p's memory order
                state[name + "_absmax"] = absmax.to(torch.float32).contiguous()
                return buf
            codes = buf if _dense(buf) else buf.contiguous()  # a dense checkpoint's blocks are in its memory order
            flat = P.Blockwise8(_np(codes), absmax.to(torch.float32).contiguous().numpy(), nonneg).dequantize()
            values = torch.from_numpy(flat).as_strided(codes.shape, codes.stride())
        else:
            if kind != "int8":
                state.pop(name + "_absmax", None)
                return _like(p, buf if buf.dtype == dtype else buf.to(dtype))
            values = buf.to(torch.float32)
        state.pop(name + "_absmax", None)
        if kind != "int8":
            return _like(p, values.to(dtype))
        q = P.quantize_8bit(_np(_like(p, values.to(torch.float32))), nonneg)
        state[name + "_absmax"] = torch.from_numpy(q.absmax)
        return torch.from_numpy(q.codes).as_strided(p.shape, p.stride())

    @staticmethod
    def profile_hook_step(func: Callable[..., Any]) -> Callable[..., Any]:
        """torch's step wrapper (hooks, a profiler range) where a hook is registered or the
        profiler runs; otherwise the step alone, which saves torch's 10-15 us per step."""
        hooked = torch.optim.Optimizer.profile_hook_step(func)

        @functools.wraps(func)
        def wrapper(self, *args: Any, **kwargs: Any) -> Any:
            if (self._optimizer_step_pre_hooks or self._optimizer_step_post_hooks or _torch_optim._global_optimizer_pre_hooks
                    or _torch_optim._global_optimizer_post_hooks or torch.autograd._profiler_enabled()):
                return hooked(self, *args, **kwargs)
            return func(self, *args, **kwargs)
        return wrapper

    def step(self, closure: Optional[Callable[[], float]] = None):
        """One update of every parameter that has a gradient; returns ``closure()``'s loss.
        Inside a ``torch.compile``'d function the step runs eagerly (a graph break), as a call
        into the extension must."""
        if torch.compiler.is_compiling():
            return self._step_eagerly(closure)
        return self._step(closure)  # no torch.compiler.disable wrapper: it costs 0.5 us a step

    @torch.compiler.disable  # NumPy views and the extension: run as they are inside a compiled function
    def _step_eagerly(self, closure: Optional[Callable[[], float]]):
        return self._step(closure)

    def _step(self, closure: Optional[Callable[[], float]]):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        # Beside torch's OpenMP workers, which spin for milliseconds after each parallel op (the
        # backward just before), the step runs on that team (TORCH_TEAM), else helpers join only
        # calls of TORCH_PARALLEL_MIN elements or more.
        many = torch.get_num_threads() > 1
        team = _core._set_thread_omp_team(many and TORCH_TEAM)
        prev = _core._set_thread_parallel_min(TORCH_PARALLEL_MIN if many and not TORCH_TEAM else 0)
        try:
            for i, group in enumerate(self.param_groups):
                self._step_group(group, i)  # the kernels write through NumPy views: no autograd involved
        finally:
            _core._set_thread_parallel_min(prev)
            _core._set_thread_omp_team(team)
        return loss

    # A group's plan: the NumPy views of its parameters and states, bucketed by dtype and step
    # count, built once and reused while the group's parameters, their storage and the set of
    # those with a gradient stay the same.  Where the group is one bucket whose step is its kernel
    # call alone, the extension keeps that call (plan.prepared) and each later step hands it the
    # group's current gradients (autograd may hand out new tensors), step and lr; it checks them
    # and answers None where the group is not as the plan found it, and the full path runs.
    # load_state_dict and add_param_group drop the plans.

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        """torch's; the state is then kept as this optimizer's ``state_dtype`` and
        ``master_weights`` say (a checkpoint of another kind is converted at the next step)."""
        self._plans = {}
        kept = [{k: g[k] for k in KEPT_ON_LOAD if k in g} for g in self.param_groups]
        super().load_state_dict(state_dict)
        for group, mine in zip(self.param_groups, kept):
            group.update(mine)
        # torch casts every floating state to its parameter's dtype: 8-bit codes would become
        # numbers, a bfloat16 model's float32 state and master copy would be rounded.  The state
        # is kept as saved instead; the next step converts it to this optimizer's kinds.
        saved = state_dict["state"]
        ids = itertools.chain.from_iterable(g["params"] for g in state_dict["param_groups"])
        params = itertools.chain.from_iterable(g["params"] for g in self.param_groups)
        for k, p in zip(ids, params):
            mine = self.state.get(p)
            if k not in saved or mine is None:
                continue
            for name, value in saved[k].items():
                if (name != "step" and isinstance(value, torch.Tensor) and isinstance(mine.get(name), torch.Tensor)
                        and mine[name].dtype != value.dtype):
                    mine[name] = value.to(device=p.device)

    def _plan(self, group: Dict[str, Any], index: int, h: Dict[str, Any], tensors_same: bool = False) -> "_Plan":
        """The group's plan, made anew where its key changed (tensors_same: the parameters, their
        addresses and which have a gradient are known to be the plan's)."""
        params = group["params"]
        plans = self.__dict__.setdefault("_plans", {})
        plan = plans.get(index)
        kinds = (h.get("amsgrad"), h.get("momentum"), h.get("centered"), h["state_dtype"], h["master_weights"], h["kahan"])
        if tensors_same and plan is not None:
            key = plan.key[:3] + kinds
        else:
            key = (tuple(map(id, params)), tuple([p.grad is not None for p in params]),
                   tuple([p.data_ptr() for p in params])) + kinds
        if plan is None or plan.key != key:
            plan = plans[index] = _Plan(self, group, index, h, key)
        return plan

    def _step_group(self, group: Dict[str, Any], index: int) -> None:
        plan = self.__dict__.get("_plans", {}).get(index)
        tried = False  # the group's tensors were found not to be the plan's
        if plan is not None and plan.fast is not None and plan.contiguous:  # the prepared step, while the group is as it found it
            try:  # every option but lr as the plan found it (lr goes to the kernel as it is now)
                lr = float(group["lr"])
                same = plan.options(group) == plan.values
            except KeyError:
                same = False
            if same and plan.prepared is not None:  # the kernel call kept in the extension
                b = plan.buckets[0]
                scalars = self._next_scalars(plan) if b.scalars else None  # NAdam's mu_product
                applied = (plan.prepared.run(group["params"], b.step + 1, lr, *scalars.values()) if scalars
                           else plan.prepared.run(group["params"], b.step + 1, lr))
                if applied is not None:
                    return self._count(plan, applied, scalars)
                tried = True
            elif same:
                grads = _core._torch_grads(group["params"], *plan.expect)
                if grads is not None:
                    return self._run_fast(plan, grads, lr)
                tried = True
        h = self._hyper(group)
        # the gradients' views: read in the extension where the plan's tensors are unchanged
        grads = (_core._torch_grads(group["params"], *plan.expect) if plan is not None and plan.contiguous and not tried
                 else None)
        tensors_same = grads is not None
        if grads is None:
            grads = self._grads(group, index)
        if not grads:
            return
        plan = self._plan(group, index, h, tensors_same)
        if h != plan.h:  # an lr scheduler, or any change of the group's options
            plan.prepare(self.rule, h)
        if plan.fast is not None:  # one bucket and the call prepared
            return self._run_fast(plan, grads, h["lr"])
        if h["check_finite"] and len(plan.buckets) > 1 and not F.all_finite(grads):
            self.skipped_steps += 1  # one bucket must not step while another skips
            return
        shared = None
        if len(plan.dtypes) == 1:  # the global norm and its scale cover the whole group
            shared = self.rule._fused_options(h, grads)
            if shared is None:  # check_finite met a NaN or Inf norm
                self.skipped_steps += 1
                return
        skipped = False
        for b in plan.buckets:
            bgrads = [grads[k] for k in b.members]
            opts = shared if shared is not None else self.rule._fused_options(h, bgrads)
            state = {"step": b.step + 1, **b.scalars}
            state.update(b.views)
            if b.master is not None:
                state["master_views"] = b.master
            if b.comp is not None:
                state["compensation_views"] = b.comp
            if opts is None or not self.rule._update({**h, "params": b.params}, state, bgrads, opts):
                skipped = True  # check_finite met a NaN or Inf
                continue
            b.step += 1
            b.steps.fill(b.step)  # every parameter's own step tensor, in one pass (they are views of it)
            for k in self.rule.scalar_states:  # NAdam's mu_product, likewise
                b.scalars[k] = state[k]
                b.scalar_values[k][...] = state[k]
        self.skipped_steps += skipped


    @staticmethod
    def _grads(group: Dict[str, Any], index: int) -> List[np.ndarray]:
        """NumPy views of the group's gradients, checked before any state is made or written."""
        grads = []
        for j, p in enumerate(group["params"]):
            g = p.grad
            if g is None:
                continue
            if g.is_sparse or g.shape != p.shape or g.dtype != p.dtype:
                where = f"param_groups[{index}]['params'][{j}].grad"
                if g.is_sparse:
                    raise ValueError(f"{where} is sparse; fastopt takes dense gradients")
                raise ValueError(f"{where} is {g.dtype} {tuple(g.shape)}, the parameter {p.dtype} {tuple(p.shape)}")
            grads.append(_np(g if _same_layout(g, p) else _like(p, g)))  # laid out as its parameter
        return grads

    def _run_fast(self, plan: "_Plan", grads: List[np.ndarray], lr: float) -> None:
        """The group's one kernel call with the plan's keywords; the first such call without
        stochastic rounding is also kept in the extension (plan.prepared) for the next steps."""
        b, kw = plan.buckets[0], plan.fast
        assert kw is not None
        kw["lr"] = lr
        if self.rule.takes_step:
            kw["step"] = b.step + 1
        args = (b.master if b.master is not None else b.params, grads, *b.state_lists)
        scalars = self._next_scalars(plan)
        kw.update(scalars)  # NAdam's mu_product: a keyword of each step (and of each kept call's run)
        if plan.h["stochastic_rounding"]:  # a seed per step: no kept call
            kw["seed"] = P.step_seed(plan.h["seed"], b.step + 1)
            applied = self.rule.kernel(*args, **kw)
        elif not plan.contiguous:  # another layout: the extension's check of the gradients is for C's
            applied = self.rule.kernel(*args, **kw)
        else:
            applied, plan.prepared = _core._prepare(self.rule.kernel, *args, **kw)
            plan.prepared.expect_torch(*plan.expect[:5])
        self._count(plan, applied, scalars)

    def _next_scalars(self, plan: "_Plan") -> Dict[str, float]:
        """The one bucket's scalar states after this step (none but NAdam's mu_product)."""
        b = plan.buckets[0]
        return self.rule._step_scalars(plan.h, b.step + 1, b.scalars) if b.scalars else {}

    def _count(self, plan: "_Plan", applied: bool, scalars: Optional[Dict[str, float]] = None) -> None:
        if applied:
            b = plan.buckets[0]
            b.step += 1
            b.steps.fill(b.step)  # a fill costs an eighth of an in-place add on NumPy's side
            if scalars:  # every parameter's own scalar tensor, likewise (NAdam's mu_product)
                for k, v in scalars.items():
                    b.scalars[k] = v
                    b.scalar_values[k].fill(v)
        else:
            self.skipped_steps += 1  # check_finite met a NaN or Inf


class _Plan:
    """The cached NumPy side of one parameter group (see FastoptOptimizer._plan)."""

    class Bucket:
        def __init__(self):
            self.members: List[int] = []       # indices into the plan's items
            self.params: List[np.ndarray] = []
            self.master: Optional[List[np.ndarray]] = None  # float32 master copies (master_weights)
            self.comp: Optional[List[np.ndarray]] = None    # Kahan compensation (kahan)
            self.views: Dict[str, List[np.ndarray]] = {}
            self.steps: np.ndarray = np.zeros(0, np.float32)  # the bucket's step tensors' memory
            self.scalar_values: Dict[str, np.ndarray] = {}
            self.state_lists: List[Optional[List[np.ndarray]]] = []
            self.step = 0
            self.scalars: Dict[str, float] = {}

    def __init__(self, opt: "FastoptOptimizer", group: Dict[str, Any], index: int, h: Dict[str, Any], key) -> None:
        self.key = key
        params = group["params"]
        self.items = [(j, p) for j, p in enumerate(params) if p.grad is not None]
        self.dtypes = {p.dtype for _, p in self.items}
        if len(self.dtypes) > 1 and h["global_clipnorm"] is not None:
            raise ValueError(f"param_groups[{index}] mixes {sorted(map(str, self.dtypes))}: global_clipnorm needs "
                             "one dtype per group (put each dtype in its own group)")
        rule = opt.rule
        names = rule._needed_states(h)
        for _, p in self.items:  # all or nothing: every state checked before any is made or converted
            opt._check_state(p, h)
        by_key: Dict[Tuple[Any, ...], _Plan.Bucket] = {}
        states = []
        for k, (_, p) in enumerate(self.items):
            st = opt._init_state(p, h)
            states.append(st)
            bkey = (p.dtype, int(st["step"])) + tuple(float(st[n]) for n in rule.scalar_states)
            b = by_key.get(bkey)
            if b is None:
                b = by_key[bkey] = _Plan.Bucket()
                b.step = int(st["step"])
                b.scalars = {n: float(st[n]) for n in rule.scalar_states}
                b.views = {n + "_views": [] for n in names}
            b.members.append(k)
            b.params.append(_np(p.detach()))
            if h["master_weights"]:
                b.master = (b.master or []) + [_np(st["master_param"])]
            if h["kahan"]:
                b.comp = (b.comp or []) + [_np(st["compensation"])]
            for n in names:
                if h["state_dtype"] == "int8":
                    b.views[n + "_views"].append(P.Blockwise8(_np(st[n]), st[n + "_absmax"].numpy(),
                                                              n in rule.nonneg_states))
                else:
                    b.views[n + "_views"].append(_np(st[n]))
        # Each parameter keeps its own step tensor (torch's layout), made a view of one buffer per
        # bucket so that a step counts them all in one pass.
        for b in by_key.values():
            steps = torch.full((len(b.members),), float(b.step), dtype=torch.float32)
            b.steps = steps.numpy()
            scalars = {n: torch.full((len(b.members),), b.scalars[n], dtype=torch.float64) for n in rule.scalar_states}
            b.scalar_values = {n: t.numpy() for n, t in scalars.items()}
            for i, k in enumerate(b.members):
                states[k]["step"] = steps[i]
                for n, t in scalars.items():
                    states[k][n] = t[i]
        self.buckets = list(by_key.values())
        for b in self.buckets:
            b.state_lists = [b.views.get(n + "_views") for n in rule.state_names]
        # What _core._torch_grads checks each step before the prepared call: the same parameters
        # at the same addresses, gradients where there were (their sizes), of the one dtype, each
        # C-contiguous; so only a group of C-contiguous parameters takes it (in another layout, a
        # gradient must be found laid out as its parameter, or copied so: the Python path).
        self.contiguous = all(p.is_contiguous() for _, p in self.items)
        dtype = next(iter(self.dtypes)) if len(self.dtypes) == 1 else None
        self.expect = (tuple(params), tuple([p.data_ptr() for p in params]),
                       tuple([p.numel() if p.grad is not None else -1 for p in params]), dtype, torch.strided,
                       np.dtype(P.bfloat16() if dtype == torch.bfloat16 else
                                torch.empty(0, dtype=dtype or torch.float32).numpy().dtype))
        self.prepare(rule, h)

    def prepare(self, rule: type, h: Dict[str, Any]) -> None:
        """The kernel's keywords for the common case: one bucket, a rule whose step is its kernel
        call alone, no clipping that needs a norm each step (else ``fast`` is None)."""
        self.h = dict(h)
        self.fast: Optional[Dict[str, Any]] = None
        self.prepared: Optional[Any] = None  # the kernel call kept in the extension (_core._Prepared)
        self.options = _hyper_keys(rule)[2]
        self.values = self.options(h)  # the group's options but lr, as a tuple: compared each step
        if len(self.buckets) == 1 and rule._one_call(h) and h["clipnorm"] is None and h["global_clipnorm"] is None:
            self.fast = {**rule._kernel_kwargs(h, {"step": 0}), **rule._fused_options(h, [])}
            if h["master_weights"]:
                self.fast["low_params"] = self.buckets[0].params
            if h["kahan"]:
                self.fast["compensation"] = self.buckets[0].comp
            if h["stochastic_rounding"]:
                self.fast["stochastic_rounding"] = True
            # keywords at the kernel's own defaults are left out: a call parses 2 instead of 15
            defaults = _kernel_defaults(rule.kernel)
            self.fast = {k: v for k, v in self.fast.items()
                         if k == "step" or k not in defaults or type(v) is not type(defaults[k]) or v != defaults[k]}


def _hyper_keys(rule: type) -> Tuple[Tuple[str, ...], Callable[[Dict[str, Any]], Tuple[Any, ...]],
                                      Callable[[Dict[str, Any]], Tuple[Any, ...]]]:
    """The option names of a rule's groups, a getter of their values and one of all but lr's
    (cached per rule)."""
    cache = _hyper_keys.__dict__.setdefault("cache", {})
    got = cache.get(rule)
    if got is None:
        keys = tuple({**COMMON, **rule.defaults})
        got = cache[rule] = (keys, operator.itemgetter(*keys), operator.itemgetter(*[k for k in keys if k != "lr"]))
    return got


def _kernel_defaults(kernel: Callable[..., Any]) -> Dict[str, Any]:
    """A functional kernel's keyword defaults (cached per kernel)."""
    cache = _kernel_defaults.__dict__.setdefault("cache", {})
    d = cache.get(kernel)
    if d is None:
        d = cache[kernel] = {k: v.default for k, v in inspect.signature(kernel).parameters.items()
                             if v.default is not inspect.Parameter.empty}
    return d


def _check_torch_options(options: Dict[str, Any], where: str) -> None:
    for name in ("capturable", "differentiable"):
        if options.get(name):
            raise NotImplementedError(f"{where}: {name}=True is not supported: fastopt's step runs on the CPU "
                                      "through NumPy views, outside autograd and graph capture")


def _grads_by_dtype(parameters) -> Dict[torch.dtype, List[np.ndarray]]:
    params = [parameters] if isinstance(parameters, torch.Tensor) else list(parameters)
    out: Dict[torch.dtype, List[np.ndarray]] = {}
    for j, p in enumerate(params):
        g = p.grad
        if g is None:
            continue
        _check_param(g, f"parameters[{j}].grad")
        out.setdefault(g.dtype, []).append(_np(g))
    return out


def clip_grad_norm_(parameters, max_norm: float, norm_type: float = 2.0, error_if_nonfinite: bool = False,
                    foreach: Optional[bool] = None) -> torch.Tensor:
    """``torch.nn.utils.clip_grad_norm_`` with fastopt's fused reductions: scales the gradients in
    place so their total norm is at most ``max_norm`` and returns that norm (before clipping) as a
    tensor.  One read pass per dtype, and one write pass only when clipping; ``foreach`` is
    accepted and changes nothing."""
    groups = _grads_by_dtype(parameters)
    max_norm, norm_type = float(max_norm), float(norm_type)
    if not max_norm >= 0.0:
        raise ValueError(f"max_norm must be >= 0, got {max_norm}")
    if not groups:
        return torch.tensor(0.0)
    norms = [F.global_norm(gs, norm_type) for gs in groups.values()]
    total = max(norms) if math.isinf(norm_type) else math.fsum(n ** norm_type for n in norms) ** (1.0 / norm_type)
    if len(norms) == 1:
        total = norms[0]
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(f"The total norm of order {norm_type} for gradients from `parameters` is non-finite, so it "
                           "cannot be clipped. To disable this error and scale the gradients by the non-finite norm "
                           "anyway, set `error_if_nonfinite=False`")
    coef = F.clip_coef(total, max_norm)
    for gs in groups.values():
        if math.isnan(coef):
            for g in gs:
                g.fill(np.nan)
        elif coef < 1.0 and P.is_lean_dtype(gs[0].dtype):
            for g in gs:
                g[...] = (g.astype(np.float32) * np.float32(coef)).astype(g.dtype)
        elif coef < 1.0:
            F.scale_(gs, coef)
    return torch.tensor(total, dtype=next(iter(groups)))


def clip_grad_value_(parameters, clip_value: float, foreach: Optional[bool] = None) -> None:
    """``torch.nn.utils.clip_grad_value_``: clamps every gradient to ``[-clip_value, clip_value]``
    in place, one fused pass per dtype; ``foreach`` is accepted and changes nothing."""
    for gs in _grads_by_dtype(parameters).values():
        if P.is_lean_dtype(gs[0].dtype):
            for g in gs:
                np.clip(g, -float(clip_value), float(clip_value), out=g)
        else:
            F.clip_grad_value_(gs, float(clip_value))


def _make(rule: type) -> type:
    name = rule.__name__
    twin = f"``torch.optim.{name}``" if hasattr(torch.optim, name) else "its paper"
    doc = (f"{name} over torch tensors with fastopt's kernel, as {twin} (the rule: "
           f":class:`fastopt.optim.{name}`).  Defaults: "
           + ", ".join(f"{k}={v!r}" for k, v in rule.defaults.items()) + ".")
    cls = type(name, (FastoptOptimizer,), {"rule": rule, "__doc__": doc, "__module__": __name__})
    keyword = inspect.Parameter.KEYWORD_ONLY
    cls.__signature__ = inspect.Signature(  # what help() and IDEs show: torch's keywords and fastopt's
        [inspect.Parameter("params", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
        + [inspect.Parameter(k, inspect.Parameter.POSITIONAL_OR_KEYWORD if k == "lr" else keyword, default=v)
           for k, v in {**rule.defaults, **COMMON, **TORCH_OPTIONS}.items()])
    return cls


SGD = _make(_optim.SGD)
Adam = _make(_optim.Adam)
AdamW = _make(_optim.AdamW)
Adagrad = _make(_optim.Adagrad)
RMSprop = _make(_optim.RMSprop)
Adadelta = _make(_optim.Adadelta)
Adamax = _make(_optim.Adamax)
NAdam = _make(_optim.NAdam)
RAdam = _make(_optim.RAdam)
Lion = _make(_optim.Lion)
LAMB = _make(_optim.LAMB)
