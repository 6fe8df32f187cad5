"""Hyperparameter search: grid and random search over the training settings of
:data:`fastopt.train.recipe.DEFAULTS` (optimizer, lr, batch size, schedule, regularization, layer
sizes, ...), scored by k-fold or hold-out validation.

>>> result = grid_search(X, y, {"optimizer": ["adam", "sgd"], "lr": [1e-3, 1e-2]}, cv=3)
>>> print(result.table()); result.best_params, result.best_score

Scores are "greater is better", as in scikit-learn: ``accuracy`` or ``neg_log_loss`` for
classification, ``r2`` or ``neg_mse`` for regression.  For parallel searches use the
scikit-learn estimators in :mod:`fastopt.sklearn` with ``GridSearchCV(..., n_jobs=...)``.
"""
from __future__ import annotations

import csv
import itertools
import math
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import numpy as np

from .nn.losses import softmax_cross_entropy
from .train import recipe
from .train.trainer import Trainer, _check_data

SCORINGS = {"classification": ("accuracy", "neg_log_loss"), "regression": ("r2", "neg_mse")}


# -- distributions for random search -----------------------------------------------------------

class loguniform:
    """Log-uniform on [low, high] (scipy.stats.loguniform): for learning rates and penalties."""

    def __init__(self, low: float, high: float):
        if not 0 < low < high:
            raise ValueError(f"loguniform needs 0 < low < high, got {low!r}, {high!r}")
        self.low, self.high = float(low), float(high)

    def sample(self, rng: np.random.Generator) -> float:
        return float(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))

    def __repr__(self) -> str:
        return f"loguniform({self.low:g}, {self.high:g})"


class uniform:
    """Uniform on [low, high]."""

    def __init__(self, low: float, high: float):
        if not low < high:
            raise ValueError(f"uniform needs low < high, got {low!r}, {high!r}")
        self.low, self.high = float(low), float(high)

    def sample(self, rng: np.random.Generator) -> float:
        return float(rng.uniform(self.low, self.high))

    def __repr__(self) -> str:
        return f"uniform({self.low:g}, {self.high:g})"


class randint:
    """An integer in [low, high), as numpy's ``integers``."""

    def __init__(self, low: int, high: int):
        if not int(low) < int(high):
            raise ValueError(f"randint needs low < high, got {low!r}, {high!r}")
        self.low, self.high = int(low), int(high)

    def sample(self, rng: np.random.Generator) -> int:
        return int(rng.integers(self.low, self.high))

    def __repr__(self) -> str:
        return f"randint({self.low}, {self.high})"


def _draw(name: str, dist: Any, rng: np.random.Generator) -> Any:
    if hasattr(dist, "sample"):
        return dist.sample(rng)
    if hasattr(dist, "rvs"):  # a scipy.stats distribution
        value = dist.rvs(random_state=int(rng.integers(2 ** 31)))
        return value.item() if hasattr(value, "item") else value
    if isinstance(dist, (list, tuple)) and len(dist) > 0:
        return dist[int(rng.integers(len(dist)))]
    raise ValueError(f"space[{name!r}] must be a non-empty list or a distribution, got {dist!r}")


# -- splitting ---------------------------------------------------------------------------------

def kfold(y: np.ndarray, k: int, stratify: bool, seed: Optional[int]) -> List[np.ndarray]:
    """Test-index arrays of ``k`` shuffled folds; stratified: each class dealt round-robin, so
    every fold holds each class in proportion (scikit-learn's StratifiedKFold idea)."""
    n = len(y)
    if not 2 <= k <= n:
        raise ValueError(f"cv must be between 2 and the number of samples ({n}), got {k}")
    rng = np.random.default_rng(seed)
    folds: List[List[int]] = [[] for _ in range(k)]
    if stratify:
        offset = 0
        for c in np.unique(y):
            idx = rng.permutation(np.flatnonzero(y == c))
            for j, i in enumerate(idx):
                folds[(offset + j) % k].append(int(i))
            offset += len(idx)
    else:
        for j, i in enumerate(rng.permutation(n)):
            folds[j % k].append(int(i))
    return [np.sort(np.array(f, dtype=np.int64)) for f in folds]


def holdout(y: np.ndarray, share: float, stratify: bool, seed: Optional[int]) -> np.ndarray:
    """Test indices of one shuffled hold-out split of ``share`` of the samples (per class when
    stratified, at least one test and one training sample of each class that has two)."""
    if not 0.0 < share < 1.0:
        raise ValueError(f"a hold-out cv must be a share in (0, 1), got {share!r}")
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(y == c) for c in np.unique(y)] if stratify else [np.arange(len(y))]
    test = []
    for idx in groups:
        k = int(round(share * len(idx)))
        k = min(max(k, 1 if len(idx) > 1 else 0), len(idx) - 1)
        test.append(rng.permutation(idx)[:k])
    out = np.sort(np.concatenate(test)).astype(np.int64)
    if len(out) == 0:
        raise ValueError(f"cv={share} leaves no samples to validate on")
    return out


def splits(y: np.ndarray, cv: Union[int, float], stratify: bool, seed: Optional[int]) -> List[np.ndarray]:
    """The test indices of each split: ``cv`` an int k (k folds) or a float (one hold-out share)."""
    if isinstance(cv, (float, np.floating)):
        return [holdout(y, float(cv), stratify, seed)]
    if isinstance(cv, (int, np.integer)) and not isinstance(cv, bool):
        return kfold(y, int(cv), stratify, seed)
    raise ValueError(f"cv must be an int (k folds) or a float (hold-out share), got {cv!r}")


def _score(trainer: Trainer, X: np.ndarray, y: np.ndarray, scoring: str) -> float:
    model = trainer.model
    if scoring == "accuracy":
        return float((model.forward(X).argmax(axis=1) == y).mean())
    if scoring == "neg_log_loss":
        return -softmax_cross_entropy(model.forward(X), y)[0]
    pred = model.forward(X).reshape(np.shape(y))
    err = float(((pred - y) ** 2).mean())
    if scoring == "neg_mse":
        return -err
    total = float(((y - y.mean(axis=0)) ** 2).mean())
    return 1.0 - err / total if total > 0 else 0.0


# -- the search --------------------------------------------------------------------------------

@dataclass
class SearchResult:
    """Every candidate's scores (``rows``, in the order tried), the best one, and the model
    refitted on all the data with the best settings (``best_trainer``, if ``refit``)."""
    rows: List[Dict[str, Any]]
    varied: List[str]
    scoring: str
    best_trainer: Optional[Trainer] = None
    classes: Optional[np.ndarray] = None
    fixed: Dict[str, Any] = field(default_factory=dict)

    @property
    def best_index(self) -> int:
        return int(np.argmax([r["mean_score"] for r in self.rows]))

    @property
    def best_params(self) -> Dict[str, Any]:
        """The varied settings of the best candidate."""
        return dict(self.rows[self.best_index]["params"])

    @property
    def best_score(self) -> float:
        return self.rows[self.best_index]["mean_score"]

    def ranked(self) -> List[Dict[str, Any]]:
        return sorted(self.rows, key=lambda r: -r["mean_score"])

    def table(self, top: Optional[int] = None) -> str:
        """The candidates best first: rank, mean score +- std over the folds, the settings, epochs
        run (mean over folds) and fit time."""
        rows = self.ranked()[:top]
        head = ["rank", self.scoring, "+-"] + self.varied + ["epochs", "fit s"]
        body = [[str(i + 1), f"{r['mean_score']:.4f}", f"{r['std_score']:.4f}"] +
                [_fmt(r["params"][k]) for k in self.varied] + [f"{r['mean_epochs']:.1f}", f"{r['fit_time']:.2f}"]
                for i, r in enumerate(rows)]
        widths = [max(len(h), *(len(b[j]) for b in body)) for j, h in enumerate(head)]
        lines = ["  ".join(h.rjust(w) for h, w in zip(head, widths))]
        lines += ["  ".join(c.rjust(w) for c, w in zip(b, widths)) for b in body]
        return "\n".join(lines)

    def to_csv(self, path: str) -> None:
        """One line per candidate: its settings, each fold's score, mean, std, epochs, time."""
        n_folds = len(self.rows[0]["scores"])
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(self.varied + [f"fold{i}" for i in range(n_folds)] +
                       ["mean_score", "std_score", "mean_epochs", "fit_time"])
            for r in self.rows:
                w.writerow([_fmt(r["params"][k]) for k in self.varied] + list(r["scores"]) +
                           [r["mean_score"], r["std_score"], r["mean_epochs"], r["fit_time"]])

    def __repr__(self) -> str:
        return (f"SearchResult({len(self.rows)} candidates, best {self.scoring}={self.best_score:.4f} "
                f"with {self.best_params})")


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (list, tuple)):
        return "-".join(map(str, v))
    return str(v)


def grid_search(X, y, space: Mapping[str, Sequence[Any]], cv: Union[int, float] = 3,
                task: str = "classification", scoring: Optional[str] = None, refit: bool = True,
                seed: Optional[int] = 0, verbose: bool = True, **fixed: Any) -> SearchResult:
    """Every combination of the values in ``space`` (a dict: setting name -> list of values).

    cv: an integer k >= 2 for k-fold cross-validation (stratified for classification), or a
    float in (0, 1) for one hold-out split of that share.  ``fixed``: settings shared by every
    candidate (e.g. ``epochs=20``).  Every candidate is checked before any training.
    """
    names = list(space)
    for name in names:
        values = space[name]
        if not isinstance(values, (list, tuple)) or len(values) == 0:
            raise ValueError(f"space[{name!r}] must be a non-empty list of values, got {values!r}")
    candidates = [dict(zip(names, combo)) for combo in itertools.product(*(space[n] for n in names))]
    return _search(X, y, candidates, names, cv, task, scoring, refit, seed, verbose, fixed)


def random_search(X, y, space: Mapping[str, Any], n_iter: int = 10, cv: Union[int, float] = 3,
                  task: str = "classification", scoring: Optional[str] = None, refit: bool = True,
                  seed: Optional[int] = 0, verbose: bool = True, **fixed: Any) -> SearchResult:
    """``n_iter`` candidates drawn from ``space``: each value a list (one item drawn uniformly),
    :class:`loguniform`, :class:`uniform`, :class:`randint`, or a scipy.stats distribution.
    Otherwise as :func:`grid_search`; the draws are reproducible with ``seed``."""
    if not (isinstance(n_iter, (int, np.integer)) and n_iter >= 1):
        raise ValueError(f"n_iter must be an integer >= 1, got {n_iter!r}")
    rng = np.random.default_rng(seed)
    names = list(space)
    candidates = [{n: _draw(n, space[n], rng) for n in names} for _ in range(int(n_iter))]
    return _search(X, y, candidates, names, cv, task, scoring, refit, seed, verbose, fixed)


def _search(X, y, candidates, names, cv, task, scoring, refit, seed, verbose, fixed) -> SearchResult:
    if task not in SCORINGS:
        raise ValueError(f"task must be one of {tuple(SCORINGS)}, got {task!r}")
    scoring = scoring or SCORINGS[task][0]
    if scoring not in SCORINGS[task]:
        raise ValueError(f"scoring for {task} must be one of {SCORINGS[task]}, got {scoring!r}")
    X, y = _check_data(X, y)
    classes = None
    if task == "classification":
        classes, y = np.unique(y, return_inverse=True)
        if len(classes) < 2:
            raise ValueError("y has a single class: nothing to classify")
    else:
        y = np.asarray(y, dtype=np.float64)
    n_out = len(classes) if classes is not None else (1 if y.ndim == 1 else y.shape[1])
    # every candidate is built once before training, so a bad value fails now, not mid-search
    for c in candidates:
        overlap = set(c) & set(fixed)
        if overlap:
            raise ValueError(f"{sorted(overlap)} given both in space and as a fixed setting")
        recipe.build(X.shape[1], n_out, len(X), task=task, seed=seed, **fixed, **c)
    folds = splits(y, cv, task == "classification", seed)
    bar = _progress(len(candidates) * len(folds), verbose)
    rows = []
    for c in candidates:
        scores, epochs, t0 = [], [], time.perf_counter()
        for test in folds:
            train = np.setdiff1d(np.arange(len(X)), test, assume_unique=True)
            trainer, history = recipe.fit(X[train], y[train], task=task, n_outputs=n_out, seed=seed,
                                          **fixed, **c)
            scores.append(_score(trainer, X[test], y[test], scoring))
            epochs.append(len(history.history["loss"]))
            bar.update(1)
        rows.append({"params": c, "scores": scores, "mean_score": float(np.mean(scores)),
                     "std_score": float(np.std(scores)), "mean_epochs": float(np.mean(epochs)),
                     "fit_time": time.perf_counter() - t0})
    bar.close()
    result = SearchResult(rows, names, scoring, classes=classes, fixed=dict(fixed))
    if refit:
        result.best_trainer, _ = recipe.fit(X, y, task=task, n_outputs=n_out, seed=seed, **fixed,
                                            **result.best_params)
    return result


def _progress(total: int, enabled: bool):
    try:
        from tqdm.auto import tqdm
        return tqdm(total=total, disable=not enabled, unit="fit", leave=False)
    except ImportError:
        class Silent:
            def update(self, k=1):
                pass

            def close(self):
                pass
        return Silent()
