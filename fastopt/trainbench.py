"""The end-to-end training benchmark: one MLP trained by fastopt's Trainer, by torch and by
scikit-learn, with the same architecture, data, epochs, batch size and learning rate.

Each run is a fresh process (thread settings such as ``OPENBLAS_NUM_THREADS`` act at start-up),
the peers are interleaved round by round, and the median of the rounds is reported, with the
accuracy on held-out rows.  ``fastopt bench --train`` prints the table; ``bench/test_bench_train.py``
runs the same cases under pytest-benchmark.

Cases
-----
mnist : 60,000 x 784 float32 rows, 10 classes from a random linear map of the rows (learnable),
        784-256-128-10 relu, Adam lr 1e-3, batch 128, 2 epochs; 10,000 held-out rows.
digits: scikit-learn's digits (1,797 x 64, scaled to [0, 1]), 64-64-10 relu, Adam lr 1e-3,
        batch 32, 30 epochs; a stratified quarter held out.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np


@dataclass(frozen=True)
class Case:
    name: str
    hidden: Tuple[int, ...]
    batch_size: int
    epochs: int
    lr: float = 1e-3


CASES = {"mnist": Case("mnist", (256, 128), 128, 2), "digits": Case("digits", (64,), 32, 30)}
_EXTRA: Dict[str, Any] = {}  # what a peer reports beside its seconds and accuracy
PEERS = ("fastopt", "torch", "sklearn")


def load(case: str, smoke: bool = False):
    """(X_train, y_train, X_test, y_test) of a case, float32 rows and int64 labels."""
    if case == "mnist":
        n = 6_000 if smoke else 60_000
        rng = np.random.default_rng(0)
        X = rng.standard_normal((n + n // 6, 784), dtype=np.float32)
        y = (X @ rng.standard_normal((784, 10), dtype=np.float32)).argmax(axis=1).astype(np.int64)
        return X[:n], y[:n], X[n:], y[n:]
    from sklearn.datasets import load_digits
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    rng = np.random.default_rng(0)
    test = np.zeros(len(X), bool)
    for k in np.unique(y):  # a stratified quarter held out
        idx = np.flatnonzero(y == k)
        test[rng.choice(idx, len(idx) // 4, replace=False)] = True
    return X[~test], y[~test].astype(np.int64), X[test], y[test].astype(np.int64)


def _train_fastopt(c: Case, X, y, Xt, yt, seed: int = 0) -> Tuple[float, float]:
    from .nn import MLP, Dense
    from .train import Trainer
    model = MLP(X.shape[1], [Dense(h) for h in c.hidden] + [Dense(10, "softmax")], dtype=np.float32, seed=seed)
    trainer = Trainer(model, "adam", lr=c.lr)
    t0 = time.perf_counter()
    trainer.fit(X, y, epochs=c.epochs, batch_size=c.batch_size, verbose=False, seed=seed)
    seconds = time.perf_counter() - t0
    _EXTRA["threads"] = list(trainer._thread_plan or ())  # (BLAS, kernels) as the trainer chose them
    return seconds, trainer.evaluate(Xt, yt)["accuracy"]


def _train_torch(c: Case, X, y, Xt, yt, seed: int = 0, optimizer: str = "torch") -> Tuple[float, float]:
    import torch
    torch.manual_seed(seed)
    sizes = (X.shape[1],) + c.hidden + (10,)
    layers: List[torch.nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        lin = torch.nn.Linear(a, b)
        torch.nn.init.kaiming_normal_(lin.weight, nonlinearity="relu")  # He, as fastopt's relu layers
        torch.nn.init.zeros_(lin.bias)
        layers += [lin] + ([torch.nn.ReLU()] if i < len(sizes) - 2 else [])
    net = torch.nn.Sequential(*layers)
    if optimizer == "fastopt":
        import fastopt.torch
        opt = fastopt.torch.Adam(net.parameters(), lr=c.lr)
    else:
        opt = torch.optim.Adam(net.parameters(), lr=c.lr, fused=True)
    Xs, ys = torch.from_numpy(X), torch.from_numpy(y)
    gen = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    for _ in range(c.epochs):
        perm = torch.randperm(len(Xs), generator=gen)
        for s in range(0, len(Xs), c.batch_size):
            b = perm[s:s + c.batch_size]
            loss = torch.nn.functional.cross_entropy(net(Xs[b]), ys[b])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    seconds = time.perf_counter() - t0
    with torch.no_grad():
        acc = float((net(torch.from_numpy(Xt)).argmax(1) == torch.from_numpy(yt)).float().mean())
    return seconds, acc


def _timed_sklearn_fit(est, X, y, Xt, yt) -> Tuple[float, float]:
    """Seconds of ``est.fit(X, y)`` (max_iter reached is expected: no ConvergenceWarning) and its score."""
    import warnings
    from sklearn.exceptions import ConvergenceWarning
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, y)
    seconds = time.perf_counter() - t0
    return seconds, float(est.score(Xt, yt))


def _train_sklearn(c: Case, X, y, Xt, yt, seed: int = 0) -> Tuple[float, float]:
    from sklearn.neural_network import MLPClassifier
    clf = MLPClassifier(c.hidden, solver="adam", alpha=0.0, learning_rate_init=c.lr, batch_size=c.batch_size,
                        max_iter=c.epochs, tol=0.0, n_iter_no_change=c.epochs + 1, random_state=seed)
    return _timed_sklearn_fit(clf, X, y, Xt, yt)


def _train_fastopt_torch(c: Case, X, y, Xt, yt, seed: int = 0) -> Tuple[float, float]:
    """torch's network and loop with ``fastopt.torch.Adam`` in place of ``torch.optim.Adam``."""
    return _train_torch(c, X, y, Xt, yt, seed, optimizer="fastopt")


GRID = {"lr": [1e-3, 3e-3], "hidden_layer_sizes": [(64,), (128,)]}


def _grid_sklearn_api(c: Case, X, y, Xt, yt, seed: int = 0) -> Tuple[float, float]:
    """fastopt's estimator in scikit-learn's ``GridSearchCV(n_jobs=2)``, 3 folds, 4 candidates."""
    from sklearn.model_selection import GridSearchCV
    from .sklearn import MLPClassifier
    est = MLPClassifier(max_iter=c.epochs, batch_size=c.batch_size, n_iter_no_change=c.epochs + 1, dtype="float32",
                        random_state=seed)
    grid = {"learning_rate_init": GRID["lr"], "hidden_layer_sizes": GRID["hidden_layer_sizes"]}
    return _timed_sklearn_fit(GridSearchCV(est, grid, cv=3, n_jobs=2), X, y, Xt, yt)


def _grid_fastopt_search(c: Case, X, y, Xt, yt, seed: int = 0) -> Tuple[float, float]:
    """``fastopt.search.grid_search`` over the same grid, 3 folds (serial)."""
    from .search import grid_search
    t0 = time.perf_counter()
    result = grid_search(X, y, dict(GRID), cv=3,
                         epochs=c.epochs, batch_size=c.batch_size, patience=0, verbose=False, seed=seed)
    seconds = time.perf_counter() - t0
    return seconds, float(result.best_trainer.evaluate(Xt, yt)["accuracy"])


TRAIN = {"fastopt": _train_fastopt, "torch": _train_torch, "sklearn": _train_sklearn,
         "fastopt.torch": _train_fastopt_torch, "GridSearchCV": _grid_sklearn_api, "fastopt.search": _grid_fastopt_search}


def run_one(case: str, peer: str, smoke: bool = False, seed: int = 0) -> Dict[str, Any]:
    """Train once in this process: seconds of the fit (data loading excluded) and held-out accuracy.
    ``seed``: the model's initialization and the minibatches' order (the data stay the same)."""
    if os.environ.get("FASTOPT_BENCH_THREADS"):  # a hand-picked count for fastopt's kernels alone
        from ._config import set_num_threads
        set_num_threads(int(os.environ["FASTOPT_BENCH_THREADS"]))
    c = CASES[case]
    if smoke:
        c = Case(c.name, c.hidden, c.batch_size, 1)
    _EXTRA.clear()
    seconds, acc = TRAIN[peer](c, *load(case, smoke), seed=seed)
    return {"seconds": seconds, "seconds_per_epoch": seconds / c.epochs, "accuracy": acc, **_EXTRA}


def run_subprocess(case: str, peer: str, env: Optional[Dict[str, str]] = None, smoke: bool = False,
                   timeout: float = 600, seed: int = 0) -> Dict[str, Any]:
    """:func:`run_one` in a fresh interpreter, with ``env`` added to the environment."""
    cmd = [sys.executable, "-m", "fastopt.trainbench", case, peer, f"--seed={int(seed)}"] + (["--smoke"] if smoke else [])
    out = subprocess.run(cmd, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=timeout,
                         cwd=tempfile.gettempdir())
    if out.returncode != 0:
        raise RuntimeError(f"{peer} on {case} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


class Busy:
    """One unrelated busy process (a spinning Python loop) for the life of the context."""

    def __enter__(self) -> "Busy":
        self.proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        time.sleep(0.2)
        return self

    def __exit__(self, *exc) -> None:
        self.proc.kill()
        self.proc.wait()


def compare(cases: Sequence[str], peers: Sequence[Tuple[str, str, Dict[str, str]]], rounds: int = 3,
            busy: bool = False, smoke: bool = False, progress=None) -> List[Dict[str, object]]:
    """Each (label, peer, env) on each case, interleaved for ``rounds`` rounds; medians of the
    seconds per row, and the held-out accuracy as the mean over the rounds, round k trained with
    seed k by every peer (one fit's accuracy moves with its initialization by more than the peers
    differ)."""
    results: Dict[Tuple[str, str], List[Dict[str, Any]]] = {}
    for seed in range(rounds):
        for case in cases:
            for label, peer, env in peers:
                if busy:
                    with Busy():
                        r = run_subprocess(case, peer, env, smoke, seed=seed)
                else:
                    r = run_subprocess(case, peer, env, smoke, seed=seed)
                results.setdefault((case, label), []).append(r)
                if progress is not None:
                    progress()
    rows = []
    for (case, label), runs in results.items():
        secs = sorted(r["seconds"] for r in runs)
        rows.append({"case": case, "peer": label, "busy": busy, "seconds": float(np.median(secs)),
                     "min": secs[0], "max": secs[-1],
                     "seconds_per_epoch": float(np.median([r["seconds_per_epoch"] for r in runs])),
                     "accuracy": float(np.mean([r["accuracy"] for r in runs])),
                     "accuracy_min": min(r["accuracy"] for r in runs), "accuracy_max": max(r["accuracy"] for r in runs),
                     "runs": runs})
    return rows


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    smoke = "--smoke" in args
    seed = int(next((a.split("=", 1)[1] for a in args if a.startswith("--seed=")), 0))
    case, peer = [a for a in args if not a.startswith("--")][:2]
    print(json.dumps(run_one(case, peer, smoke, seed)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
