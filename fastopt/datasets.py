"""scikit-learn's handwritten digits, read from the file scikit-learn ships, without importing
scikit-learn (which takes about a second), and a stratified split."""
from __future__ import annotations

import importlib.util
import os
from typing import Tuple

import numpy as np


def load_digits() -> Tuple[np.ndarray, np.ndarray]:
    """(X, y): 1,797 8x8 images as float64 rows of 64 pixels in [0, 16], labels 0-9 as int64;
    the same arrays as ``sklearn.datasets.load_digits(return_X_y=True)``."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or spec.origin is None:
        raise ImportError("the digits data set ships with scikit-learn: pip install 'fastopt[train]'")
    path = os.path.join(os.path.dirname(spec.origin), "datasets", "data", "digits.csv.gz")
    data = np.loadtxt(path, delimiter=",")
    return data[:, :-1], data[:, -1].astype(np.int64)


def stratified_split(y: np.ndarray, test_size: float, seed: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """(train indices, test indices): ``test_size`` of each class held out (at least one row of
    each class with two or more), drawn with ``seed``."""
    if not 0.0 < test_size < 1.0:
        raise ValueError(f"test_size must be in (0, 1), got {test_size!r}")
    rng = np.random.default_rng(seed)
    test = np.zeros(len(y), bool)
    for k in np.unique(y):
        idx = np.flatnonzero(y == k)
        n = int(round(test_size * len(idx)))
        n = min(max(n, 1 if len(idx) > 1 else 0), len(idx) - 1)
        test[rng.choice(idx, n, replace=False)] = True
    return np.flatnonzero(~test), np.flatnonzero(test)
