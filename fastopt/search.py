"""Hyperparameter search: grid and random search over the training settings of
:data:`fastopt.train.recipe.DEFAULTS` (optimizer, lr, batch size, schedule, regularization, layer
sizes, ...), scored by k-fold or hold-out validation.

>>> result = grid_search(X, y, {"optimizer": ["adam", "sgd"], "lr": [1e-3, 1e-2]}, cv=3)
>>> print(result.table()); result.best_params, result.best_score

Splits and scores are scikit-learn's: ``cv`` takes an int, a hold-out share or any splitter,
``scoring`` any scorer name or callable (greater is better); ``n_jobs`` runs the fits in
parallel with joblib.
"""
from __future__ import annotations

import csv
import itertools
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from .train import recipe
from .train.trainer import Trainer, _check_data

TASKS = ("classification", "regression")


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


# -- splitting and scoring: scikit-learn's -----------------------------------------------------

def _sklearn():
    try:
        import sklearn  # noqa: F401
    except ImportError:
        raise ImportError("fastopt.search splits and scores with scikit-learn: pip install 'fastopt[train]'") from None


def splits(X: np.ndarray, y: np.ndarray, cv: Any, classification: bool, seed: Optional[int],
           groups: Optional[np.ndarray] = None) -> List[Tuple[np.ndarray, np.ndarray]]:
    """(train, test) index pairs.  ``cv``: an int k (``StratifiedKFold`` for classification, else
    ``KFold``, shuffled with ``seed``), a float share for one hold-out split (``StratifiedShuffleSplit``
    / ``ShuffleSplit``), any scikit-learn splitter (``GroupKFold`` takes ``groups``), or an
    iterable of (train, test) index pairs."""
    _sklearn()
    from sklearn import model_selection as ms
    if isinstance(cv, bool):
        raise ValueError(f"cv must be an int (k folds), a float (hold-out share) or a splitter, got {cv!r}")
    if isinstance(cv, (int, np.integer)):
        if not 2 <= cv <= len(y):
            raise ValueError(f"cv must be between 2 and the number of samples ({len(y)}), got {cv}")
        cv = (ms.StratifiedKFold if classification else ms.KFold)(int(cv), shuffle=True, random_state=seed)
    elif isinstance(cv, (float, np.floating)):
        if not 0.0 < cv < 1.0:
            raise ValueError(f"a hold-out cv must be a share in (0, 1), got {cv!r}")
        cv = (ms.StratifiedShuffleSplit if classification else ms.ShuffleSplit)(1, test_size=float(cv),
                                                                                 random_state=seed)
    elif isinstance(cv, str) or not (hasattr(cv, "split") or hasattr(cv, "__iter__")):
        raise ValueError(f"cv must be an int (k folds), a float (hold-out share) or a splitter, got {cv!r}")
    pairs = list(cv.split(X, y, groups) if hasattr(cv, "split") else cv)
    if not pairs:
        raise ValueError("cv gave no splits")
    return [(np.asarray(tr, dtype=np.int64), np.asarray(te, dtype=np.int64)) for tr, te in pairs]


#: fastopt's earlier score names, as scikit-learn spells them
_SCORER_ALIASES = {"neg_mse": "neg_mean_squared_error"}


def scorer(scoring: Union[str, Callable[..., float], None], classification: bool) -> Callable[..., float]:
    """A scikit-learn scorer: a name (``accuracy``, ``f1_macro``, ``roc_auc``, ``neg_log_loss``,
    ``r2``, ``neg_mean_squared_error``, ...; see ``sklearn.metrics.get_scorer_names()``) or a
    callable ``scorer(estimator, X, y)``; None: accuracy or r2."""
    _sklearn()
    from sklearn.metrics import get_scorer
    if scoring is None:
        scoring = "accuracy" if classification else "r2"
    if callable(scoring):
        return scoring
    try:
        return get_scorer(_SCORER_ALIASES.get(scoring, scoring))
    except ValueError:
        raise ValueError(f"unknown scoring {scoring!r}: a scikit-learn scorer name "
                         "(sklearn.metrics.get_scorer_names()) or a callable(estimator, X, y)") from None


def _fitted(trainer: Trainer, classes: Optional[np.ndarray]):
    """The trained model as a fitted scikit-learn estimator, for the scorers."""
    from .sklearn import _Fitted
    return _Fitted(trainer.model, classes)


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


def grid_search(X, y, space: Mapping[str, Sequence[Any]], cv: Any = 3, task: str = "classification",
                scoring: Union[str, Callable[..., float], None] = None, refit: bool = True,
                seed: Optional[int] = 0, verbose: bool = True, n_jobs: Optional[int] = None,
                groups: Optional[np.ndarray] = None, **fixed: Any) -> SearchResult:
    """Every combination of the values in ``space`` (a dict: setting name -> list of values).

    cv: an integer k >= 2 for k-fold cross-validation (stratified for classification), a float in
    (0, 1) for one hold-out split of that share, any scikit-learn splitter (``KFold``,
    ``GroupKFold`` with ``groups``, ``ShuffleSplit``, ...) or (train, test) index pairs.
    scoring: a scikit-learn scorer name or callable (default accuracy / r2).  n_jobs: candidates
    and folds in parallel with joblib (-1: every core), with the serial search's exact scores.
    ``fixed``: settings shared by every candidate (e.g. ``epochs=20``).  Every candidate is
    checked before any training.
    """
    names = list(space)
    for name in names:
        values = space[name]
        if not isinstance(values, (list, tuple)) or len(values) == 0:
            raise ValueError(f"space[{name!r}] must be a non-empty list of values, got {values!r}")
    candidates = [dict(zip(names, combo)) for combo in itertools.product(*(space[n] for n in names))]
    return _search(X, y, candidates, names, cv, task, scoring, refit, seed, verbose, fixed, n_jobs, groups)


def random_search(X, y, space: Mapping[str, Any], n_iter: int = 10, cv: Any = 3, task: str = "classification",
                  scoring: Union[str, Callable[..., float], None] = None, refit: bool = True,
                  seed: Optional[int] = 0, verbose: bool = True, n_jobs: Optional[int] = None,
                  groups: Optional[np.ndarray] = None, **fixed: Any) -> SearchResult:
    """``n_iter`` candidates drawn from ``space``: each value a list (one item drawn uniformly),
    :class:`loguniform`, :class:`uniform`, :class:`randint`, or a scipy.stats distribution.
    Otherwise as :func:`grid_search`; the draws are reproducible with ``seed``."""
    if not (isinstance(n_iter, (int, np.integer)) and n_iter >= 1):
        raise ValueError(f"n_iter must be an integer >= 1, got {n_iter!r}")
    rng = np.random.default_rng(seed)
    names = list(space)
    candidates = [{n: _draw(n, space[n], rng) for n in names} for _ in range(int(n_iter))]
    return _search(X, y, candidates, names, cv, task, scoring, refit, seed, verbose, fixed, n_jobs, groups)


def _search(X, y, candidates, names, cv, task, scoring, refit, seed, verbose, fixed, n_jobs=None,
            groups=None) -> SearchResult:
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    classification = task == "classification"
    score = scorer(scoring, classification)
    scoring_name = scoring if isinstance(scoring, str) else (getattr(scoring, "__name__", "score") if scoring
                                                            else ("accuracy" if classification else "r2"))
    X, y = _check_data(X, y)
    classes = None
    if classification:
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
    folds = splits(X, y, cv, classification, seed, groups)
    y_true = classes[y] if classes is not None else y
    jobs = [(i, train, test) for i in range(len(candidates)) for train, test in folds]
    bar = _progress(len(jobs), verbose)

    def run(i, train, test):
        t0 = time.perf_counter()
        trainer, history = recipe.fit(X[train], y[train], task=task, n_outputs=n_out, seed=seed, **fixed,
                                      **candidates[i])
        value = float(score(_fitted(trainer, classes), X[test], y_true[test]))
        return value, len(history.history["loss"]), time.perf_counter() - t0, history

    if n_jobs in (None, 1):
        results = []
        for job in jobs:
            results.append(run(*job))
            bar.update(1)
    else:
        from joblib import Parallel, delayed
        results = Parallel(n_jobs=n_jobs)(delayed(run)(*job) for job in jobs)
        bar.update(len(jobs))
    bar.close()
    rows = []
    for i, c in enumerate(candidates):
        mine = [r for (j, _, _), r in zip(jobs, results) if j == i]
        scores = [r[0] for r in mine]
        rows.append({"params": c, "scores": scores, "mean_score": float(np.mean(scores)),
                     "std_score": float(np.std(scores)), "mean_epochs": float(np.mean([r[1] for r in mine])),
                     "fit_time": float(sum(r[2] for r in mine)), "histories": [r[3] for r in mine]})
    result = SearchResult(rows, names, scoring_name, classes=classes, fixed=dict(fixed))
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
