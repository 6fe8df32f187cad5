"""Learning-rate schedules: small objects with the learning rate at step t (``schedule(t)``).

t counts optimizer steps from 0.  Names and formulas follow torch.optim.lr_scheduler and
Keras/optax where those differ only in spelling.  Compose: ``Warmup(CosineAnnealing(...), 500)``.
"""
from __future__ import annotations

import bisect
import math
from typing import Any, Dict, Optional, Sequence


class Schedule:
    def __call__(self, t: int) -> float:
        raise NotImplementedError

    def plot(self, steps: int, path: Optional[str] = None, ax=None):
        """Draw the schedule over ``steps`` steps (matplotlib); save to ``path`` if given."""
        import matplotlib
        if path is not None:
            matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        own = ax is None
        if own:
            fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.plot(range(steps), [self(t) for t in range(steps)])
        ax.set_xlabel("step")
        ax.set_ylabel("learning rate")
        ax.set_title(repr(self))
        if own and path is not None:
            fig.tight_layout()
            fig.savefig(path, dpi=110)
            plt.close(fig)
        return ax

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"


def _positive(name: str, value: float) -> float:
    if not value > 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return value


class Constant(Schedule):
    def __init__(self, lr: float):
        self.lr = lr

    def __call__(self, t: int) -> float:
        return self.lr


class StepDecay(Schedule):
    """lr * gamma ** (t // step_size), as torch's StepLR."""

    def __init__(self, lr: float, step_size: int, gamma: float = 0.1):
        self.lr, self.step_size, self.gamma = lr, int(_positive("step_size", step_size)), gamma

    def __call__(self, t: int) -> float:
        return self.lr * self.gamma ** (t // self.step_size)


class MultiStep(Schedule):
    """lr * gamma ** (number of milestones <= t), as torch's MultiStepLR."""

    def __init__(self, lr: float, milestones: Sequence[int], gamma: float = 0.1):
        self.lr, self.milestones, self.gamma = lr, sorted(int(m) for m in milestones), gamma

    def __call__(self, t: int) -> float:
        return self.lr * self.gamma ** bisect.bisect_right(self.milestones, t)


class Exponential(Schedule):
    """lr * gamma ** (t / decay_steps) (Keras' ExponentialDecay; decay_steps=1 is torch's ExponentialLR)."""

    def __init__(self, lr: float, gamma: float, decay_steps: int = 1, staircase: bool = False):
        self.lr, self.gamma, self.decay_steps, self.staircase = lr, gamma, _positive("decay_steps", decay_steps), staircase

    def __call__(self, t: int) -> float:
        e = t / self.decay_steps
        return self.lr * self.gamma ** (math.floor(e) if self.staircase else e)


class CosineAnnealing(Schedule):
    """eta_min + (lr - eta_min) (1 + cos(pi t / T_max)) / 2, held at eta_min after T_max."""

    def __init__(self, lr: float, T_max: int, eta_min: float = 0.0):
        self.lr, self.T_max, self.eta_min = lr, int(_positive("T_max", T_max)), eta_min

    def __call__(self, t: int) -> float:
        t = min(t, self.T_max)
        return self.eta_min + (self.lr - self.eta_min) * (1 + math.cos(math.pi * t / self.T_max)) / 2


class CosineWarmRestarts(Schedule):
    """SGDR (Loshchilov & Hutter, 2017), as torch's CosineAnnealingWarmRestarts: cosine cycles of
    T_0, T_0 T_mult, T_0 T_mult^2, ... steps, each restarting at lr."""

    def __init__(self, lr: float, T_0: int, T_mult: int = 1, eta_min: float = 0.0):
        if int(T_mult) < 1:
            raise ValueError(f"T_mult must be an integer >= 1, got {T_mult!r}")
        self.lr, self.T_0, self.T_mult, self.eta_min = lr, int(_positive("T_0", T_0)), int(T_mult), eta_min

    def __call__(self, t: int) -> float:
        T_i, t_cur = self.T_0, t
        while t_cur >= T_i:
            t_cur -= T_i
            T_i *= self.T_mult
        return self.eta_min + (self.lr - self.eta_min) * (1 + math.cos(math.pi * t_cur / T_i)) / 2


class Warmup(Schedule):
    """Linear warm-up from ``start_factor * after(0)`` to ``after(0)`` over ``warmup_steps``, then
    ``after(t - warmup_steps)``: composes with any schedule (or a constant lr)."""

    def __init__(self, after, warmup_steps: int, start_factor: float = 0.0):
        self.after = after if isinstance(after, Schedule) else Constant(float(after))
        self.warmup_steps, self.start_factor = int(_positive("warmup_steps", warmup_steps)), start_factor

    def __call__(self, t: int) -> float:
        if t < self.warmup_steps:
            f = self.start_factor + (1 - self.start_factor) * t / self.warmup_steps
            return f * self.after(0)
        return self.after(t - self.warmup_steps)


class OneCycle(Schedule):
    """One-cycle (Smith & Topin, 2018), as torch's OneCycleLR with cosine annealing: from
    max_lr/div_factor up to max_lr over pct_start of total_steps, then down to
    max_lr/(div_factor*final_div_factor)."""

    def __init__(self, max_lr: float, total_steps: int, pct_start: float = 0.3, div_factor: float = 25.0,
                 final_div_factor: float = 1e4):
        self.max_lr, self.total_steps, self.pct_start = max_lr, int(_positive("total_steps", total_steps)), pct_start
        self.div_factor, self.final_div_factor = div_factor, final_div_factor

    def __call__(self, t: int) -> float:
        initial = self.max_lr / self.div_factor
        final = initial / self.final_div_factor
        up = max(1.0, self.pct_start * self.total_steps - 1)
        t = min(t, self.total_steps - 1)

        def cos(a, b, frac):
            return b + (a - b) * (1 + math.cos(math.pi * frac)) / 2
        if t <= up:
            return cos(initial, self.max_lr, t / up)
        return cos(self.max_lr, final, (t - up) / max(1.0, self.total_steps - 1 - up))


class ReduceOnPlateau(Schedule):
    """torch's ReduceLROnPlateau (mode min, relative threshold): ``update(metric)`` once an epoch;
    after ``patience`` epochs without improvement the rate is multiplied by ``factor``."""

    def __init__(self, lr: float, factor: float = 0.1, patience: int = 10, threshold: float = 1e-4,
                 cooldown: int = 0, min_lr: float = 0.0):
        if not 0 < factor < 1:
            raise ValueError(f"factor must be in (0, 1), got {factor!r}")
        self.lr, self.factor, self.patience, self.threshold = lr, factor, patience, threshold
        self.cooldown, self.min_lr = cooldown, min_lr
        self._best, self._bad, self._cool, self._current = math.inf, 0, 0, lr

    def update(self, metric: float) -> float:
        if metric < self._best * (1 - self.threshold):
            self._best, self._bad = metric, 0
        else:
            self._bad += 1
        if self._cool > 0:
            self._cool -= 1
            self._bad = 0
        if self._bad > self.patience:
            self._current = max(self._current * self.factor, self.min_lr)
            self._cool, self._bad = self.cooldown, 0
        return self._current

    def __call__(self, t: int) -> float:
        return self._current


class Linear(Schedule):
    """lr * (start_factor + (end_factor - start_factor) * min(t, total_steps) / total_steps), as
    torch's LinearLR (a linear decay to zero: ``Linear(lr, 1.0, 0.0, T)``)."""

    def __init__(self, lr: float, start_factor: float = 1.0 / 3, end_factor: float = 1.0, total_steps: int = 5):
        self.lr, self.start_factor, self.end_factor = lr, start_factor, end_factor
        self.total_steps = int(_positive("total_steps", total_steps))

    def __call__(self, t: int) -> float:
        f = min(t, self.total_steps) / self.total_steps
        return self.lr * (self.start_factor + (self.end_factor - self.start_factor) * f)


class Polynomial(Schedule):
    """(lr - end_lr) * (1 - min(t, decay_steps) / decay_steps) ** power + end_lr, as Keras'
    PolynomialDecay (cycle=False) and optax's polynomial_schedule; torch's PolynomialLR is
    end_lr = 0."""

    def __init__(self, lr: float, decay_steps: int, end_lr: float = 0.0, power: float = 1.0):
        self.lr, self.decay_steps, self.end_lr, self.power = lr, int(_positive("decay_steps", decay_steps)), end_lr, power

    def __call__(self, t: int) -> float:
        return (self.lr - self.end_lr) * (1 - min(t, self.decay_steps) / self.decay_steps) ** self.power + self.end_lr


class InverseTime(Schedule):
    """lr / (1 + decay_rate * t / decay_steps), as Keras' InverseTimeDecay (``staircase``: t //
    decay_steps)."""

    def __init__(self, lr: float, decay_steps: int, decay_rate: float, staircase: bool = False):
        self.lr, self.decay_steps, self.decay_rate = lr, int(_positive("decay_steps", decay_steps)), decay_rate
        self.staircase = staircase

    def __call__(self, t: int) -> float:
        p = t // self.decay_steps if self.staircase else t / self.decay_steps
        return self.lr / (1 + self.decay_rate * p)


class Cyclic(Schedule):
    """torch's CyclicLR: from ``base_lr`` up to ``max_lr`` over ``step_size_up`` steps and down
    again; ``mode="triangular2"`` halves the amplitude each cycle."""

    def __init__(self, base_lr: float, max_lr: float, step_size_up: int = 2000, mode: str = "triangular"):
        if mode not in ("triangular", "triangular2"):
            raise ValueError(f"mode must be 'triangular' or 'triangular2', got {mode!r}")
        self.base_lr, self.max_lr, self.step_size_up, self.mode = base_lr, max_lr, int(_positive("step_size_up", step_size_up)), mode
        self.lr = base_lr

    def __call__(self, t: int) -> float:
        cycle = math.floor(1 + t / (2 * self.step_size_up))
        x = 1.0 + t / self.step_size_up - 2 * cycle
        scale = 1.0 if self.mode == "triangular" else 1 / (2.0 ** (cycle - 1))
        return self.base_lr + (self.max_lr - self.base_lr) * max(0.0, 1 - abs(x)) * scale


class Lambda(Schedule):
    """lr * fn(t), as torch's LambdaLR (``fn`` any function of the step; not saved in checkpoints)."""

    def __init__(self, lr: float, fn):
        if not callable(fn):
            raise ValueError(f"fn must be callable, got {fn!r}")
        self.lr, self.fn = lr, fn

    def __call__(self, t: int) -> float:
        return self.lr * float(self.fn(t))


class PiecewiseConstant(Schedule):
    """values[0] up to boundaries[0] (included), values[1] up to boundaries[1], ..., values[-1]
    after, as Keras' PiecewiseConstantDecay."""

    def __init__(self, boundaries: Sequence[int], values: Sequence[float]):
        if len(values) != len(boundaries) + 1:
            raise ValueError(f"values must have one more entry than boundaries, got {len(values)} and {len(boundaries)}")
        if list(boundaries) != sorted(boundaries):
            raise ValueError(f"boundaries must be increasing, got {list(boundaries)}")
        self.boundaries, self.values = [int(b) for b in boundaries], [float(v) for v in values]
        self.lr = self.values[0]

    def __call__(self, t: int) -> float:
        return self.values[bisect.bisect_left(self.boundaries, t)]


class Sequential(Schedule):
    """``schedules[0]`` until ``milestones[0]``, then ``schedules[1]`` (counting its steps from 0),
    ..., as torch's SequentialLR and optax's join_schedules."""

    def __init__(self, schedules: Sequence[Schedule], milestones: Sequence[int]):
        if len(schedules) != len(milestones) + 1:
            raise ValueError(f"schedules must have one more entry than milestones, got {len(schedules)} and "
                             f"{len(milestones)}")
        self.schedules, self.milestones = list(schedules), [int(m) for m in milestones]
        self.lr = self.schedules[0](0)

    def __call__(self, t: int) -> float:
        k = bisect.bisect_right(self.milestones, t)
        return self.schedules[k](t - (self.milestones[k - 1] if k else 0))


class Chained(Schedule):
    """``first`` multiplied by each other schedule's factor ``s(t) / s(0)``: torch's
    ChainedScheduler of multiplicative schedulers, e.g. ``Chained(CosineAnnealing(...), StepDecay(1.0, ...))``."""

    def __init__(self, first: Schedule, *others: Schedule):
        self.first, self.others = first, list(others)
        self.lr = first(0)

    def __call__(self, t: int) -> float:
        out = self.first(t)
        for s in self.others:
            out *= s(t) / s(0)
        return out


class ResetExponential(Schedule):
    """lr * gamma ** ((t - r) / decay_steps), r the last of ``resets`` at or before t: an
    exponential decay restarted at given steps."""

    def __init__(self, lr: float, gamma: float, resets: Sequence[int], decay_steps: int = 1):
        self.lr, self.gamma, self.resets = lr, gamma, sorted(int(r) for r in resets)
        self.decay_steps = int(_positive("decay_steps", decay_steps))

    def __call__(self, t: int) -> float:
        k = bisect.bisect_right(self.resets, t)
        start = self.resets[k - 1] if k else 0
        return self.lr * self.gamma ** ((t - start) / self.decay_steps)


SCHEDULES = {"constant": Constant, "step": StepDecay, "multistep": MultiStep, "exponential": Exponential,
             "cosine": CosineAnnealing, "cosine_restarts": CosineWarmRestarts, "onecycle": OneCycle,
             "plateau": ReduceOnPlateau, "linear": Linear, "polynomial": Polynomial, "inverse_time": InverseTime,
             "cyclic": Cyclic}


def make(name: str, lr: float, total_steps: int, warmup: int = 0) -> Schedule:
    """A schedule by name, shaped for a run of ``total_steps`` optimizer steps; the choices used by
    ``fastopt train``, the search and the scikit-learn estimators:

    ========================  ======================================================
    ``constant``              ``lr`` throughout
    ``step``                  x0.1 after each third of the run
    ``multistep``             x0.1 at 50% and again at 75% of the run
    ``exponential``           smooth decay to ``lr / 100`` at the end
    ``cosine``                cosine annealing to 0 over the run
    ``cosine_restarts``       SGDR: restarts after 1/7, 3/7 of the run (T_mult 2)
    ``onecycle``              one-cycle to peak ``lr`` at 30%
    ``plateau``               x0.5 when the validation loss stalls for 3 epochs
    ``linear``                linear decay to 0 over the run
    ``polynomial``            quadratic decay to 0 over the run (power 2)
    ``inverse_time``          lr / (1 + 9 t / total): lr / 10 at the end
    ``cyclic``                4 triangular cycles between lr / 10 and lr
    ========================  ======================================================

    ``warmup`` > 0 adds a linear warm-up over that many steps (not for ``plateau``).
    """
    _positive("lr", lr)
    if int(warmup) < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup!r}")
    total = max(1, int(total_steps))
    if name == "constant":
        sch: Schedule = Constant(lr)
    elif name == "step":
        sch = StepDecay(lr, step_size=max(1, total // 3), gamma=0.1)
    elif name == "multistep":
        sch = MultiStep(lr, milestones=[max(1, total // 2), max(2, 3 * total // 4)], gamma=0.1)
    elif name == "exponential":
        sch = Exponential(lr, gamma=0.01, decay_steps=total)
    elif name == "cosine":
        sch = CosineAnnealing(lr, T_max=total)
    elif name == "cosine_restarts":
        sch = CosineWarmRestarts(lr, T_0=max(1, total // 7), T_mult=2)
    elif name == "onecycle":
        sch = OneCycle(lr, total_steps=total)
    elif name == "plateau":
        return ReduceOnPlateau(lr, factor=0.5, patience=3)
    elif name == "linear":
        sch = Linear(lr, 1.0, 0.0, total)
    elif name == "polynomial":
        sch = Polynomial(lr, total, 0.0, 2.0)
    elif name == "inverse_time":
        sch = InverseTime(lr, total, 9.0)
    elif name == "cyclic":
        sch = Cyclic(lr / 10, lr, step_size_up=max(1, total // 8))
    else:
        raise ValueError(f"unknown schedule {name!r}; choose from {', '.join(SCHEDULES)}")
    return Warmup(sch, int(warmup)) if warmup else sch


def to_config(schedule: Schedule) -> Dict[str, Any]:
    """A JSON-able description of a schedule of this module (its class and attributes, inner
    schedules included, with ReduceOnPlateau's running state), for checkpoints."""
    cls = type(schedule)
    if globals().get(cls.__name__) is not cls or not issubclass(cls, Schedule) or cls is Lambda:
        raise TypeError(f"{cls.__name__} is not a fastopt.schedules class with plain settings: it cannot be saved")

    def conf(v):
        if isinstance(v, Schedule):
            return to_config(v)
        if isinstance(v, list):
            return [conf(x) for x in v]
        return v
    attrs = {k: conf(v) for k, v in vars(schedule).items()}
    return {"class": cls.__name__, "attrs": attrs}


def from_config(config: Dict[str, Any]) -> Schedule:
    """The schedule :func:`to_config` described."""
    cls = globals().get(config.get("class"))
    if not (isinstance(cls, type) and issubclass(cls, Schedule)):
        raise ValueError(f"unknown schedule class {config.get('class')!r}")
    def back(v):
        if isinstance(v, dict) and "class" in v and "attrs" in v:
            return from_config(v)
        if isinstance(v, list):
            return [back(x) for x in v]
        return v
    obj = cls.__new__(cls)
    for k, v in config["attrs"].items():
        setattr(obj, k, back(v))
    return obj
