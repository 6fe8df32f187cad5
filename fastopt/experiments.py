"""Tuning experiments as one-liners: train one problem with several settings and compare the
curves (:func:`compare`), and find a learning rate with Smith's range test (:func:`lr_find`).

>>> cmp = compare(X, y, {"lr": [1e-4, 1e-3, 1e-2, 1e-1]}, epochs=20)
>>> print(cmp.table()); cmp.plot("lr.png")
>>> found = lr_find(X, y); found.suggestion; found.plot("lr_find.png")

The settings are those of :data:`fastopt.train.recipe.DEFAULTS` (the names ``fastopt train``, the
search and the recipe use).  Plots are drawn on a matplotlib ``Figure`` made directly (in a
notebook it shows itself), so the global backend is never switched.
"""
from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import numpy as np

from .train import recipe
from .train.trainer import History, _check_data

Settings = Dict[str, Any]


def _figure(ncols: int, width: float = 5.0, height: float = 3.6):
    """A matplotlib Figure that does not touch pyplot's global state (nor its backend)."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError("plots need matplotlib: pip install 'fastopt[train]'") from None
    fig = Figure(figsize=(width * ncols, height))
    return fig, [fig.add_subplot(1, ncols, k + 1) for k in range(ncols)]


def _save(fig, path: Optional[str]) -> None:
    if path is not None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        FigureCanvasAgg(fig)
        fig.tight_layout()
        fig.savefig(path, dpi=110)


# -- compare -----------------------------------------------------------------------------------

@dataclass
class Run:
    """One setting's training: its settings, history, time and held-out scores."""
    settings: Settings
    history: History
    seconds: float
    test: Dict[str, float] = field(default_factory=dict)

    def label(self, varied: Sequence[str]) -> str:
        return ", ".join(f"{k}={self.settings[k]}" for k in varied) or "run"


@dataclass
class Comparison:
    """Every run of :func:`compare`, in the order given."""
    runs: List[Run]
    varied: List[str]

    def table(self) -> str:
        """One line per run: the varied settings, the final and best losses and accuracies, the
        epochs run and the seconds."""
        keys = [k for k in ("loss", "val_loss", "accuracy", "val_accuracy") if all(k in r.history.history
                                                                                for r in self.runs)]
        test = sorted({k for r in self.runs for k in r.test})
        w = max([len("run")] + [len(r.label(self.varied)) for r in self.runs])
        head = [f"{'run':{w}}"] + [f"{k:>12}" for k in keys] + [f"{'test ' + k:>13}" for k in test] + \
            [f"{'epochs':>6}", f"{'seconds':>8}"]
        lines = [" ".join(head)]
        for r in self.runs:
            h = r.history.history
            cells = [f"{r.label(self.varied):{w}}"] + [f"{h[k][-1]:12.4f}" for k in keys] + \
                [f"{r.test.get(k, float('nan')):13.4f}" for k in test] + [f"{len(h['loss']):6d}", f"{r.seconds:8.2f}"]
            lines.append(" ".join(cells))
        return "\n".join(lines)

    def best(self, metric: str = "val_loss") -> Run:
        """The run with the best final ``metric`` (lowest for losses, highest otherwise)."""
        sign = 1.0 if "loss" in metric else -1.0
        return min(self.runs, key=lambda r: sign * r.history.history.get(metric, [math.inf * sign])[-1])

    def plot(self, path: Optional[str] = None, metrics: Sequence[str] = ("loss", "accuracy")):
        """All runs' curves on shared axes, one panel per metric (training solid, validation
        dashed in the same colour); returns the matplotlib Figure, saved to ``path`` if given."""
        fig, axes = _figure(len(metrics))
        for ax, metric in zip(axes, metrics):
            for k, r in enumerate(self.runs):
                h = r.history.history
                color = f"C{k % 10}"
                style = ["-", "--", "-.", ":"][(k // 10) % 4]
                if metric in h:
                    ax.plot(range(1, len(h[metric]) + 1), h[metric], color=color, linestyle=style,
                            label=r.label(self.varied))
                if "val_" + metric in h:
                    ax.plot(range(1, len(h["val_" + metric]) + 1), h["val_" + metric], color=color, linestyle=":",
                            alpha=0.8)
            ax.set_xlabel("epoch")
            ax.set_ylabel(metric)
            if metric == "loss":
                ax.set_yscale("log")
            ax.set_title(f"{metric} (dotted: validation)")
            ax.grid(True, alpha=0.3)
        axes[0].legend(fontsize=7)
        _save(fig, path)
        return fig


def _grid(vary: Union[Mapping[str, Sequence[Any]], Sequence[Settings]]) -> List[Settings]:
    if isinstance(vary, Mapping):
        for k, v in vary.items():
            if not isinstance(v, (list, tuple)) or not v:
                raise ValueError(f"vary[{k!r}] must be a non-empty list of values, got {v!r}")
        names = list(vary)
        return [dict(zip(names, combo)) for combo in itertools.product(*(vary[n] for n in names))]
    out = [dict(s) for s in vary]
    if not out:
        raise ValueError("vary is empty: give a dict of lists or a list of settings")
    return out


def compare(X, y, vary: Union[Mapping[str, Sequence[Any]], Sequence[Settings]], task: str = "classification",
            X_test=None, y_test=None, seed: Optional[int] = 0, verbose: bool = False, **fixed: Any) -> Comparison:
    """Train each setting of ``vary`` on the same data and keep every run's history.

    vary: a dict of lists (every combination, e.g. ``{"lr": [1e-3, 1e-2], "optimizer": ["adam",
    "sgd"]}``) or a list of settings dicts.  ``fixed``: settings shared by every run (``epochs``,
    ``validation_split``, ...).  Every run is built and checked before the first trains; each
    starts from the same seed (the same initial weights where the shapes agree).  With
    ``X_test, y_test`` each run is also scored on them.
    """
    X, y = _check_data(X, y)
    settings = _grid(vary)
    names = list(dict.fromkeys(k for s in settings for k in s))
    classes = None
    if task == "classification":
        classes, y = np.unique(y, return_inverse=True)
    n_out = len(classes) if classes is not None else (1 if y.ndim == 1 else y.shape[1])
    for s in settings:  # every run checked first
        overlap = set(s) & set(fixed)
        if overlap:
            raise ValueError(f"{sorted(overlap)} given both in vary and as a fixed setting")
        recipe.build(X.shape[1], n_out, len(X), task=task, seed=seed, **fixed, **s)
    runs = []
    for s in settings:
        t0 = time.perf_counter()
        trainer, history = recipe.fit(X, y, task=task, n_outputs=n_out, seed=seed, verbose=verbose, **fixed, **s)
        run = Run(s, history, time.perf_counter() - t0)
        if X_test is not None:
            yt = np.searchsorted(classes, y_test) if classes is not None else y_test
            run.test = trainer.evaluate(X_test, yt)
        runs.append(run)
    return Comparison(runs, names)


# -- the learning-rate range test ----------------------------------------------------------------

@dataclass
class LRFind:
    """The range test's record: the rate and loss of every step, the smoothed loss, and the
    suggested rate."""
    lrs: np.ndarray
    losses: np.ndarray
    smoothed: np.ndarray
    suggestion: float

    def plot(self, path: Optional[str] = None):
        """The smoothed loss against the rate on a log axis, the suggestion marked."""
        fig, (ax,) = _figure(1, width=6.0)
        ax.plot(self.lrs, self.losses, color="C0", alpha=0.25, label="loss")
        ax.plot(self.lrs, self.smoothed, color="C0", label="smoothed loss")
        ax.axvline(self.suggestion, color="C3", linestyle="--", label=f"suggested lr {self.suggestion:.2g}")
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("training loss")
        low, first = float(np.nanmin(self.smoothed)), float(self.smoothed[0])
        span = max(first - low, 1e-3 * abs(first) + 1e-12)
        ax.set_ylim(max(float(np.nanmin(self.losses)), low - span) - 0.05 * span, first + 1.5 * span)
        ax.set_title("learning-rate range test")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        _save(fig, path)
        return fig


def lr_find(X, y, start_lr: float = 1e-7, end_lr: float = 10.0, num_steps: int = 200, beta: float = 0.98,
            diverge: float = 4.0, task: str = "classification", seed: Optional[int] = 0, **settings: Any) -> LRFind:
    """Smith's learning-rate range test (Smith 2017, "Cyclical Learning Rates"; fastai's and
    Keras-tuner's LR finder): train from fresh weights for up to ``num_steps`` minibatches while the
    rate grows exponentially from ``start_lr`` to ``end_lr``, record the loss, smooth it with an
    exponential average (``beta``, bias-corrected), stop once it exceeds ``diverge`` times its
    minimum, and suggest the rate where the smoothed loss falls fastest (the steepest slope
    against log lr).  ``settings``: the model and optimizer (``hidden_layer_sizes``,
    ``optimizer``, ``batch_size``, ...; the schedule is ignored)."""
    if not 0 < start_lr < end_lr:
        raise ValueError(f"need 0 < start_lr < end_lr, got {start_lr!r}, {end_lr!r}")
    if not (isinstance(num_steps, int) and num_steps >= 10):
        raise ValueError(f"num_steps must be an int >= 10, got {num_steps!r}")
    if not 0 <= beta < 1:
        raise ValueError(f"beta must be in [0, 1), got {beta!r}")
    X, y = _check_data(X, y)
    if task == "classification":
        _, y = np.unique(y, return_inverse=True)
    n_out = int(y.max()) + 1 if task == "classification" else (1 if y.ndim == 1 else y.shape[1])
    trainer, p = recipe.build(X.shape[1], n_out, len(X), task=task, seed=seed,
                              **{**settings, "schedule": "constant", "lr": start_lr})
    model, opt = trainer.model, trainer.optimizer
    X = np.ascontiguousarray(X, dtype=model.dtype)
    y = y.astype(np.int64) if task == "classification" else np.asarray(y, model.dtype)
    rng = np.random.default_rng(seed)
    bs = int(p["batch_size"])
    lrs = start_lr * (end_lr / start_lr) ** (np.arange(num_steps) / (num_steps - 1))
    losses, smoothed, avg, best = [], [], 0.0, math.inf
    order, pos = rng.permutation(len(X)), 0
    for i, lr in enumerate(lrs):
        if pos + bs > len(X):
            order, pos = rng.permutation(len(X)), 0
        b = order[pos:pos + bs]
        pos += bs
        for g in opt.param_groups:
            g["lr"] = float(lr)
        value, _ = model.train_batch(X[b], y[b], trainer.loss, loss_kwargs=trainer.loss_kwargs)
        if not math.isfinite(value):
            break
        opt.step(trainer._grads)
        avg = beta * avg + (1 - beta) * value
        smooth = avg / (1 - beta ** (i + 1))
        losses.append(value)
        smoothed.append(smooth)
        best = min(best, smooth)
        if smooth > diverge * best and i > 10:
            break
    n = len(losses)
    if n < 5:
        raise ValueError(f"the loss diverged after {n} steps: lower start_lr")
    s = np.array(smoothed)
    log_lr = np.log(lrs[:n])
    slope = np.gradient(s, log_lr)
    lo, hi = max(1, n // 10), max(2, n - max(1, n // 20))
    i_best = lo + int(np.argmin(slope[lo:hi]))
    return LRFind(lrs[:n], np.array(losses), s, float(lrs[i_best]))
