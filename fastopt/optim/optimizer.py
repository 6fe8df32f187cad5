"""The optimizer base: parameter groups, flat state buffers, one kernel call per group and step."""
from __future__ import annotations

import math
import operator
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from .. import functional as F
from .. import precision as P

ParamsT = Union[Sequence[np.ndarray], Sequence[Dict[str, Any]]]

# options every optimizer takes, with Keras' names for the clipping ones
COMMON = {"clipnorm": None, "clipvalue": None, "global_clipnorm": None, "l1": 0.0, "l2": 0.0,
          "maximize": False, "check_finite": False,
          "state_dtype": "float32", "master_weights": False, "stochastic_rounding": False, "seed": 0,
          "kahan": False}
#: the options of lean precision (fastopt.precision): not the kernel's hyperparameters
LEAN = ("state_dtype", "master_weights", "stochastic_rounding", "seed", "kahan")
#: how the state is kept is the loading optimizer's choice: a checkpoint's state is converted to it
KEPT_ON_LOAD = ("state_dtype", "master_weights", "kahan")


class Optimizer:
    """Holds hyperparameters and state; ``step(grads)`` updates the parameters in place.

    Parameters are NumPy arrays (C-contiguous, float32 or float64, one dtype per group), or
    parameter groups: dicts with ``"params"`` and any hyperparameter to override for that group,
    as in ``torch.optim``.  Each state (e.g. Adam's ``exp_avg``) lives in one flat buffer per
    group; the per-parameter states are views of it, so a step makes no copy.

    Options of every optimizer, applied inside the update kernel (no extra pass over the
    gradients except where noted):

    - ``global_clipnorm``: scale all gradients so their global L2 norm is at most this (Keras,
      torch's ``clip_grad_norm_``): one read-only norm pass, the scale fused into the update.
    - ``clipnorm``: clip each array's gradient to this L2 norm (Keras); arrays over the limit
      are scaled in place first.
    - ``clipvalue``: clamp every gradient element to ``[-clipvalue, clipvalue]``.
    - ``l1``, ``l2``: add the gradient of ``l1 sum|p| + l2 sum p^2`` (Keras' ``L1L2``).
    - ``maximize``: ascend.
    - ``check_finite``: skip the whole step when a gradient holds NaN or Inf
      (``step`` returns False and ``skipped_steps`` counts it).

    Lean precision (:mod:`fastopt.precision`; every rule but LAMB):

    - parameters may be bfloat16 (``ml_dtypes``) or float16; the state is then float32 (mixed
      precision) unless ``state_dtype`` says otherwise.
    - ``state_dtype``: ``"float32"`` (the parameters' dtype for float64), ``"bfloat16"`` (half the
      bytes) or ``"int8"`` (8-bit blockwise, :class:`fastopt.precision.Blockwise8`; a quarter).
    - ``master_weights``: keep a float32 copy of bfloat16 / float16 parameters, update it, and
      round it into the parameters after each step.
    - ``stochastic_rounding``, ``seed``: round bfloat16 stores (parameters, state)
      stochastically, with bits from the seed and the step count: the same for a given seed
      whatever the thread count.
    - ``kahan``: Kahan-compensated bfloat16 parameters: one more bfloat16 buffer keeps what
      rounding the parameters dropped, so small updates accumulate (the alternative to a float32
      master copy at a quarter of its bytes, and to stochastic rounding, deterministic).
    """

    #: names of the state buffers, in the kernel's argument order
    state_names: Sequence[str] = ()
    #: per-group scalar states beyond the step count, with their initial values
    scalar_states: Dict[str, float] = {}
    #: hyperparameters with torch's defaults; each is the kernel's keyword of the same name ...
    defaults: Dict[str, Any] = {}
    #: ... except these, used only to set the state up
    set_up_only: Sequence[str] = ()
    #: defaults that differ under ``convention="keras"`` / ``"optax"`` (rules that take one)
    convention_defaults: Dict[str, Dict[str, Any]] = {}
    conventions: Sequence[str] = ("torch", "keras", "optax")
    #: the fused update (a fastopt.functional rule) and whether it takes the step count
    kernel: Callable[..., bool]
    takes_step: bool = True
    #: states that hold values >= 0 (their 8-bit code is the unsigned one)
    nonneg_states: Sequence[str] = ()
    #: whether the kernel takes lean arrays (bfloat16 / float16 / 8-bit)
    lean: bool = True

    def __init__(self, params: ParamsT, **hyper: Any) -> None:
        unknown = set(hyper) - set(self.defaults) - set(COMMON)
        if unknown:
            raise TypeError(f"{type(self).__name__} got unknown hyperparameters {sorted(unknown)}")
        base = {**COMMON, **self.defaults, **self.convention_defaults.get(hyper.get("convention", ""), {}), **hyper}
        self.param_groups: List[Dict[str, Any]] = []
        groups = list(params)
        if not groups:
            raise ValueError("params is empty: give the arrays to optimize")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for i, g in enumerate(groups):
            group = {**base, **g, "params": list(g["params"])}
            self._check_group(group, i)
            self.param_groups.append(group)
        self.state: List[Dict[str, Any]] = [self._new_state(g) for g in self.param_groups]
        self.skipped_steps = 0

    # -- set-up ------------------------------------------------------------------------------

    @classmethod
    def _check_group(cls, group: Dict[str, Any], index: int) -> None:
        params = group["params"]
        if not params:
            raise ValueError(f"param_groups[{index}] has no params")
        for j, p in enumerate(params):
            if not isinstance(p, np.ndarray):
                raise TypeError(f"params[{j}] must be a numpy.ndarray, got {type(p).__name__}")
            if p.dtype not in (np.float32, np.float64) and not P.is_lean_dtype(p.dtype):
                raise TypeError(f"params[{j}] has dtype {p.dtype}; fastopt optimizes float32, float64, bfloat16 "
                                "or float16 arrays")
            if p.dtype != params[0].dtype:
                raise TypeError(f"params[{j}] is {p.dtype} but params[0] is {params[0].dtype}: one dtype per group")
        _check_lr(group.get("lr", 0.0))
        cls._check_lean(group, params[0].dtype)
        if "convention" in group and group["convention"] not in cls.conventions:
            raise ValueError(f"convention must be one of {cls.conventions} for {cls.__name__}, "
                             f"got {group['convention']!r}")
        for name in ("clipnorm", "clipvalue", "global_clipnorm"):
            v = group[name]
            if v is not None and not v > 0:
                raise ValueError(f"{name} must be > 0 or None, got {v!r}")
        for name in ("l1", "l2"):
            if not group[name] >= 0:
                raise ValueError(f"{name} must be >= 0, got {group[name]!r}")
        cls._check_hyper({k: v for k, v in group.items() if k in cls.defaults}, index)

    @classmethod
    def _check_lean(cls, group: Dict[str, Any], dtype: np.dtype) -> None:
        state_dtype = P.check_state_dtype(group["state_dtype"])
        low = P.is_lean_dtype(dtype)
        if not cls.lean and (low or state_dtype != "float32"):
            raise ValueError(f"{cls.__name__} keeps float32 or float64 parameters and state "
                             f"(got {dtype} parameters, state_dtype={state_dtype!r})")
        if dtype == np.float64 and state_dtype != "float32":
            raise ValueError(f"state_dtype={state_dtype!r} needs float32, bfloat16 or float16 parameters, got float64")
        if not isinstance(group["master_weights"], (bool, np.bool_)):
            raise ValueError(f"master_weights must be a bool, got {group['master_weights']!r}")
        if group["master_weights"] and not low:
            raise ValueError(f"master_weights=True keeps a float32 copy of bfloat16 or float16 parameters; "
                             f"these are {dtype}")
        if not isinstance(group["stochastic_rounding"], (bool, np.bool_)):
            raise ValueError(f"stochastic_rounding must be a bool, got {group['stochastic_rounding']!r}")
        if not isinstance(group["kahan"], (bool, np.bool_)):
            raise ValueError(f"kahan must be a bool, got {group['kahan']!r}")
        if group["kahan"] and (dtype.name != "bfloat16" or group["master_weights"] or group["stochastic_rounding"]):
            raise ValueError(f"kahan=True compensates bfloat16 parameters (without master_weights or stochastic "
                             f"rounding); these are {dtype}")
        seed = group["seed"]
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**64:
            raise ValueError(f"seed must be an int in [0, 2**64), got {seed!r}")

    @classmethod
    def _initial_value(cls, name: str, group: Dict[str, Any]) -> float:
        return 0.0

    @classmethod
    def _needed_states(cls, group: Dict[str, Any]) -> Sequence[str]:
        """The states this group's options use (e.g. no momentum buffer without momentum)."""
        return cls.state_names

    def _new_state(self, group: Dict[str, Any]) -> Dict[str, Any]:
        params = group["params"]
        total = sum(p.size for p in params)
        state: Dict[str, Any] = {"step": 0, **self.scalar_states}
        kind = group["state_dtype"]
        float_dtype = np.float32 if P.is_lean_dtype(params[0].dtype) else params[0].dtype
        for slot, name in enumerate(self._needed_states(group)):
            value = self._initial_value(name, group)
            if kind == "int8":
                flat = _blockwise(params, name in self.nonneg_states, slot)
                if value != 0:
                    for view, p in zip(_q8_views(flat, params), params):
                        _quantize_into(view, np.full(p.size, value, np.float32))
                state[name] = flat
                state[name + "_views"] = _q8_views(flat, params)
                continue
            flat = P.staggered(total, P.bfloat16() if kind == "bfloat16" else float_dtype, slot)
            flat[...] = value
            state[name] = flat
            state[name + "_views"] = _views(flat, params)
        if group["kahan"]:
            flat = P.staggered(total, P.bfloat16(), 3)
            flat[...] = 0
            state["compensation"] = flat
            state["compensation_views"] = _views(flat, params)
        if group["master_weights"]:
            flat = P.staggered(total, np.float32, 3)
            flat[...] = np.concatenate([p.reshape(-1).astype(np.float32) for p in params])
            state["master"] = flat
            state["master_views"] = _views(flat, params)
        return state

    # -- the step ----------------------------------------------------------------------------

    def step(self, grads: Union[Sequence[np.ndarray], Sequence[Sequence[np.ndarray]]]) -> bool:
        """Update every parameter in place from ``grads`` (one array per parameter, in order; or
        one list per group).  Returns False if ``check_finite`` skipped the step."""
        per_group = self._split(grads)
        for i, (group, g) in enumerate(zip(self.param_groups, per_group)):
            _check_grads(group["params"], g, i)  # all or nothing: every group checked before any steps
        applied = True
        for i, (group, state, g) in enumerate(zip(self.param_groups, self.state, per_group)):
            kept = self._kept_kwargs(group, i)
            opts = {} if kept is not None else self._fused_options(group, g)
            if opts is None:
                applied = False
                continue
            state["step"] += 1
            try:
                if kept is not None:  # the group's one kernel call (as _update makes it), its keywords as last time
                    if self.takes_step:
                        kept["step"] = state["step"]
                    ok = self._run(group, state, g, kept, {})
                else:
                    ok = self._update(group, state, g, opts)
            except BaseException:
                state["step"] -= 1
                raise
            if not ok:
                state["step"] -= 1
                applied = False
        if not applied:
            self.skipped_steps += 1
        return applied

    def _kept_kwargs(self, group: Dict[str, Any], index: int) -> Optional[Dict[str, Any]]:
        """The kernel's keywords for group ``index`` where its step is the kernel called once with
        them and the step count (no norm to take first, no scalar state, no master copy, Kahan
        buffer or per-step seed), kept from the last step while the group's options are the same
        (compared each step: a schedule's lr, an edited group); else None.  Building them anew
        cost about 1.5 us a step (Adam on one 1K array: 8 us a step against 6.5)."""
        kept = self.__dict__.setdefault("_kept", {})
        values = _option_getter(type(self))(group)
        last = kept.get(index)
        if last is not None and last[0] == values:
            return last[1]
        kw = None
        if (self._one_call(group) and not self.scalar_states and group["clipnorm"] is None
                and group["global_clipnorm"] is None and not group["stochastic_rounding"]
                and not group["master_weights"] and not group["kahan"]):
            kw = {**self._kernel_kwargs(group, {"step": 0}), **self._fused_options(group, [])}
        kept[index] = (values, kw)
        return kw

    def _split(self, grads) -> List[List[np.ndarray]]:
        grads = list(grads)
        if len(self.param_groups) > 1 and grads and isinstance(grads[0], (list, tuple)):
            out = [list(g) for g in grads]
        else:
            out, k = [], 0
            for group in self.param_groups:
                n = len(group["params"])
                out.append(grads[k:k + n])
                k += n
            if k != len(grads):
                raise ValueError(f"grads has {len(grads)} arrays but the optimizer has {k} parameters")
        for group, g in zip(self.param_groups, out):
            if len(g) != len(group["params"]):
                raise ValueError(f"grads has {len(g)} arrays for a group of {len(group['params'])} parameters")
        return out

    @classmethod
    def _fused_options(cls, group: Dict[str, Any], grads: List[np.ndarray]) -> Optional[Dict[str, Any]]:
        opts: Dict[str, Any] = {"maximize": group["maximize"], "l1": group["l1"], "l2": group["l2"],
                                "check_finite": group["check_finite"], "clip_value": group["clipvalue"]}
        if group["clipnorm"] is not None:
            norms = F.array_norms(grads)
            if group["check_finite"] and not np.all(np.isfinite(norms)):
                return None
            for g, n in zip(grads, norms):
                if n > group["clipnorm"]:
                    if P.is_lean_dtype(g.dtype):
                        g[...] = (g.astype(np.float32) * np.float32(group["clipnorm"] / n)).astype(g.dtype)
                    else:
                        F.scale_(g, group["clipnorm"] / n)
        if group["global_clipnorm"] is not None:
            total = F.global_norm(grads)
            if group["check_finite"] and not math.isfinite(total):
                return None
            opts["grad_scale"] = F.clip_coef(total, group["global_clipnorm"])
        return opts

    @classmethod
    def _kernel_kwargs(cls, group: Dict[str, Any], state: Dict[str, Any]) -> Dict[str, Any]:
        """The kernel's keyword arguments: the group's hyperparameters (named as the kernel names
        them) and the step count."""
        kw = {k: group[k] for k in cls.defaults if k not in cls.set_up_only}
        if cls.takes_step:
            kw["step"] = state["step"]
        return kw

    @classmethod
    def _run(cls, group: Dict[str, Any], state: Dict[str, Any], grads: List[np.ndarray], kw: Dict[str, Any],
             opts: Dict[str, Any], kernel: Optional[Callable[..., bool]] = None) -> bool:
        states = [cls.views(state, name) for name in cls.state_names]
        params = group["params"]
        if group["master_weights"]:
            kw = {**kw, "low_params": params}
            params = state["master_views"]
        if group["kahan"]:
            kw = {**kw, "compensation": state["compensation_views"]}
        if group["stochastic_rounding"]:
            kw = {**kw, "stochastic_rounding": True, "seed": P.step_seed(group["seed"], state["step"])}
        return (kernel or cls.kernel)(params, grads, *states, **kw, **opts)

    @classmethod
    def _update(cls, group: Dict[str, Any], state: Dict[str, Any], grads: List[np.ndarray],
                opts: Dict[str, Any]) -> bool:
        """One fused kernel call for the group; False if ``check_finite`` skipped it.  The
        scalar states (``_step_scalars``) are the kernel's keywords and change only if it stepped."""
        scalars = cls._step_scalars(group, state["step"], state)
        ok = cls._run(group, state, grads, {**cls._kernel_kwargs(group, state), **scalars}, opts)
        if ok:
            state.update(scalars)
        return ok

    @classmethod
    def _step_scalars(cls, group: Dict[str, Any], step: int, scalars: Dict[str, Any]) -> Dict[str, float]:
        """The scalar states after step number ``step`` (the kernel's keywords), from their values
        before it (``scalars``); none for most rules."""
        return {}

    @classmethod
    def _one_call(cls, group: Dict[str, Any]) -> bool:
        """Whether a step of the group is ``kernel`` called once with ``_kernel_kwargs`` and
        ``_step_scalars`` (what fastopt.torch keeps prepared); a class whose ``_update`` does more
        says so here."""
        return cls._update.__func__ is Optimizer._update.__func__  # type: ignore[attr-defined]

    @classmethod
    def views(cls, state: Dict[str, Any], name: str) -> Optional[List[np.ndarray]]:
        return state.get(name + "_views")

    # -- learning rate and checkpoints -------------------------------------------------------

    @property
    def lr(self) -> float:
        return self.param_groups[0]["lr"]

    @lr.setter
    def lr(self, value: float) -> None:
        _check_lr(value)
        for g in self.param_groups:
            g["lr"] = float(value)

    def state_dict(self) -> Dict[str, Any]:
        """Hyperparameters and copies of the state buffers (no parameters), as torch's, and the
        optimizer's class name, so a checkpoint of another rule is refused."""
        return {
            "optimizer": type(self).__name__,
            "param_groups": [{k: v for k, v in g.items() if k != "params"} for g in self.param_groups],
            "state": [{k: (v.copy() if isinstance(v, (np.ndarray, P.Blockwise8)) else v) for k, v in s.items()
                       if not k.endswith("_views")} for s in self.state],
            "skipped_steps": self.skipped_steps,
        }

    def load_state_dict(self, sd: Dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned; the next step continues bit for bit.

        Everything is checked before anything changes (all or nothing): the class, the number of
        groups, every hyperparameter (known names, valid values), every state (present, known,
        of the parameters' size and a dtype that converts exactly), the step counts.
        """
        if not isinstance(sd, dict):
            raise TypeError(f"state_dict must be a dict, got {type(sd).__name__}")
        for key in ("param_groups", "state"):
            if not isinstance(sd.get(key), (list, tuple)):
                raise ValueError(f"state_dict[{key!r}] must be a list, one entry per parameter group")
        name = sd.get("optimizer", type(self).__name__)
        if name != type(self).__name__:
            raise ValueError(f"state_dict is of {name}, not {type(self).__name__}")
        for key in ("param_groups", "state"):
            if len(sd[key]) != len(self.param_groups):
                raise ValueError(f"state_dict has {len(sd[key])} {key} entries, the optimizer "
                                 f"{len(self.param_groups)} parameter groups")
        skipped = sd.get("skipped_steps", 0)
        if not _is_count(skipped):
            raise ValueError(f"skipped_steps must be an int >= 0, got {skipped!r}")
        new_groups, new_states = [], []
        for i, (group, saved_group, saved) in enumerate(zip(self.param_groups, sd["param_groups"], sd["state"])):
            new_groups.append(self._loaded_group(group, saved_group, i))
            new_states.append(self._loaded_state(new_groups[-1], saved, i))
        for group, new_group, state, new_state in zip(self.param_groups, new_groups, self.state, new_states):
            group.update(new_group)
            state.clear()
            state.update(new_state)
        self.skipped_steps = int(skipped)

    def _loaded_group(self, group: Dict[str, Any], saved: Any, i: int) -> Dict[str, Any]:
        if not isinstance(saved, dict):
            raise TypeError(f"param_groups[{i}] must be a dict, got {type(saved).__name__}")
        known = set(self.defaults) | set(COMMON)
        unknown = set(saved) - known - {"params"}
        if unknown:
            raise ValueError(f"param_groups[{i}] has hyperparameters {sorted(unknown)} that "
                             f"{type(self).__name__} does not take")
        new = {**group, **{k: (tuple(v) if isinstance(v, list) else v) for k, v in saved.items()
                           if k != "params" and k not in KEPT_ON_LOAD}}
        self._check_group(new, i)
        return new

    def _loaded_state(self, group: Dict[str, Any], saved: Any, i: int) -> Dict[str, Any]:
        if not isinstance(saved, dict):
            raise TypeError(f"state[{i}] must be a dict, got {type(saved).__name__}")
        allowed = {"step", "master", "compensation"} | set(self.state_names) | set(self.scalar_states)
        unknown = set(saved) - allowed
        if unknown:
            raise ValueError(f"state[{i}] has entries {sorted(unknown)} that {type(self).__name__} does not keep")
        step = saved.get("step")
        if not _is_count(step) or step > 2**53:
            raise ValueError(f"state[{i}]['step'] must be an int in [0, 2**53], got {step!r}")
        new = self._new_state(group)
        new["step"] = int(step)
        for name, initial in self.scalar_states.items():
            v = saved.get(name, initial)
            if isinstance(v, bool) or not isinstance(v, (int, float, np.floating)) or not 0.0 <= v <= 1.0:
                raise ValueError(f"state[{i}][{name!r}] must be a number in [0, 1], got {v!r}")
            new[name] = float(v)
        names = list(self._needed_states(group)) + (["master"] if group["master_weights"] else []) + \
            (["compensation"] if group["kahan"] else [])
        for name in names:
            if name not in saved:
                if name in ("master", "compensation"):  # saved without: the parameters are exact as they are
                    continue
                raise ValueError(f"state[{i}] has no {name!r} state (the group's options need it)")
            _load_buffer(saved[name], new[name], group["params"], f"state[{i}][{name!r}]")
        return new

    @classmethod
    def _check_hyper(cls, group: Dict[str, Any], i: int) -> None:
        """The rule's own hyperparameters, as the kernel would check them at the next step."""
        for k, v in group.items():
            if k in ("params", "lr") or k in COMMON:
                continue
            where = f"param_groups[{i}][{k!r}]"
            if k == "betas":
                try:
                    b1, b2 = v
                except (TypeError, ValueError):
                    raise ValueError(f"{where} must be a pair, got {v!r}") from None
                for b in (b1, b2):
                    if isinstance(b, bool) or not isinstance(b, (int, float, np.floating)) or not 0.0 <= b < 1.0:
                        raise ValueError(f"{where} must be in [0, 1), got {v!r}")
            elif isinstance(cls.defaults.get(k), str):  # convention: checked by _check_group
                continue
            elif isinstance(cls.defaults.get(k), bool):
                if not isinstance(v, (bool, np.bool_)):
                    raise ValueError(f"{where} must be a bool, got {v!r}")
            elif isinstance(v, bool) or not isinstance(v, (int, float, np.floating)) or not math.isfinite(v):
                raise ValueError(f"{where} must be a finite number, got {v!r}")
            elif v < 0 and k != "dampening":
                raise ValueError(f"{where} must be >= 0, got {v!r}")
            elif k == "eps" and not v > 0 and not group.get("eps_root", 0.0) > 0:  # eps_root keeps 0/0 away
                raise ValueError(f"{where} must be > 0, got {v!r}")


def _option_getter(cls: type) -> Callable[[Dict[str, Any]], Tuple[Any, ...]]:
    """A getter of every option a group of ``cls`` has, as a tuple (cached per class)."""
    cache = _option_getter.__dict__.setdefault("cache", {})
    got = cache.get(cls)
    if got is None:
        keys = tuple({**COMMON, **cls.defaults})
        got = cache[cls] = operator.itemgetter(*keys)
    return got


def _is_count(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 0


def _fits(buf: np.ndarray, dtype: np.dtype) -> bool:
    """Every finite value of buf stays finite in dtype."""
    finite = buf[np.isfinite(buf)]
    return finite.size == 0 or float(np.max(np.abs(finite))) <= float(np.finfo(dtype).max)


def _check_grads(params: Sequence[np.ndarray], grads: Sequence[np.ndarray], group: int) -> None:
    """What the kernel would refuse, found before any group is stepped."""
    for j, (p, g) in enumerate(zip(params, grads)):
        where = f"grads[{j}] of param_groups[{group}]"
        if not isinstance(g, np.ndarray):
            raise TypeError(f"{where} must be a numpy.ndarray, got {type(g).__name__}")
        if g.dtype != p.dtype:
            raise TypeError(f"{where} is {g.dtype} but its parameter is {p.dtype}")
        if g.size != p.size:
            raise ValueError(f"{where} has {g.size} elements but its parameter has {p.size}")
        if not (g.flags.c_contiguous and g.flags.aligned):
            raise ValueError(f"{where} is not C-contiguous (numpy.ascontiguousarray makes a contiguous copy)")


def _check_lr(lr: Any) -> None:
    if not (isinstance(lr, (int, float, np.floating)) and lr >= 0 and math.isfinite(lr)):
        raise ValueError(f"lr must be a finite number >= 0, got {lr!r}")


def _blockwise(params: Sequence[np.ndarray], nonneg: bool, slot: int) -> P.Blockwise8:
    """One flat 8-bit state for a group: codes for every element, absmax for every array's blocks."""
    codes = P.staggered(sum(p.size for p in params), np.uint8, slot)
    codes[...] = 0
    return P.Blockwise8(codes, np.zeros(sum(P.blocks(p.size) for p in params), np.float32), nonneg)


def _q8_views(flat: P.Blockwise8, params: Sequence[np.ndarray]) -> List[P.Blockwise8]:
    out, k, b = [], 0, 0
    for p in params:
        nb = P.blocks(p.size)
        out.append(P.Blockwise8(flat.codes[k:k + p.size].reshape(p.shape), flat.absmax[b:b + nb], flat.nonneg))
        k += p.size
        b += nb
    return out


def _quantize_into(view: P.Blockwise8, values: np.ndarray) -> None:
    q = P.quantize_8bit(values.reshape(-1), view.nonneg)
    view.codes.reshape(-1)[...] = q.codes
    view.absmax[...] = q.absmax


def _as_float32(buf: Any, params: Sequence[np.ndarray]) -> np.ndarray:
    """A saved state buffer (any float dtype, or 8-bit) as one flat float32 vector."""
    if isinstance(buf, P.Blockwise8):
        return np.concatenate([v.dequantize().reshape(-1) for v in _q8_views(buf, params)] or [np.zeros(0, np.float32)])
    return np.asarray(buf, dtype=np.float32).reshape(-1)


def _load_buffer(buf: Any, target: Any, params: Sequence[np.ndarray], where: str) -> None:
    """Copy a saved state into the optimizer's: exactly where the kinds match, else converted
    (8-bit dequantized or quantized, floats rounded to the target dtype)."""
    total = sum(p.size for p in params)
    if isinstance(buf, P.Blockwise8):
        if buf.codes.dtype != np.uint8 or buf.absmax.dtype != np.float32:
            raise TypeError(f"{where} must hold uint8 codes and float32 absmax")
        blocks = sum(P.blocks(p.size) for p in params)
        if buf.codes.size != total or buf.absmax.size != blocks:
            raise ValueError(f"{where} has {buf.codes.size} codes and {buf.absmax.size} blocks, the parameters "
                             f"{total} elements in {blocks} blocks")
    elif not isinstance(buf, np.ndarray) or not (buf.dtype.kind == "f" or P.is_lean_dtype(buf.dtype)):
        raise TypeError(f"{where} must be a float numpy array or a Blockwise8, got "
                        f"{getattr(buf, 'dtype', type(buf).__name__)}")
    elif buf.size != total:
        raise ValueError(f"{where} has {buf.size} elements, the parameters {total}")
    if isinstance(target, P.Blockwise8):
        if isinstance(buf, P.Blockwise8) and buf.nonneg == target.nonneg:
            target.codes[...] = buf.codes.reshape(-1)
            target.absmax[...] = buf.absmax
            return
        values = _as_float32(buf, params)
        if target.nonneg and np.any(values < 0):
            raise ValueError(f"{where} has negative values; this state holds values >= 0")
        for view, p, k in zip(_q8_views(target, params), params, np.cumsum([0] + [p.size for p in params])):
            _quantize_into(view, values[k:k + p.size])
        return
    if isinstance(buf, P.Blockwise8):
        buf = _as_float32(buf, params)
    if buf.dtype.kind == "f" and target.dtype.kind == "f" and (
            not np.can_cast(buf.dtype, target.dtype, "same_kind") or (
            buf.dtype.itemsize > target.dtype.itemsize and not _fits(buf, target.dtype))):
        raise TypeError(f"{where} is {buf.dtype} with values {target.dtype} cannot hold")
    target[...] = buf.reshape(-1).astype(target.dtype)


def _views(flat: np.ndarray, params: Sequence[np.ndarray]) -> List[np.ndarray]:
    out, k = [], 0
    for p in params:
        out.append(flat[k:k + p.size].reshape(p.shape))
        k += p.size
    return out
