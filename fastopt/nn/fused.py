"""The fused elementwise passes of an MLP's training step, run by the C++ extension.

Each replaces several NumPy passes (and their temporaries) with one in-place pass over a
minibatch; the NumPy versions in :mod:`fastopt.reference` are the spec.  They run on the calling
thread: between two matmuls the cores belong to BLAS.
"""
from __future__ import annotations

from typing import Tuple

import numpy as np

from .. import _core

#: activations with a fused pass (softmax is the loss's own)
FUSED_ACTIVATIONS = ("identity", "relu", "tanh", "sigmoid")


def bias_act_(z: np.ndarray, b: np.ndarray, act: str) -> np.ndarray:
    """``z <- act(z + b)`` in place (``b`` added to every row); returns ``z``."""
    _core.bias_act_(z, b, act)
    return z


def act_backward_(d: np.ndarray, a: np.ndarray, act: str) -> np.ndarray:
    """``d <- d * act'(z)`` in place, from the activation's output ``a = act(z)``; returns ``d``."""
    _core.act_backward_(d, a, act)
    return d


def softmax_xent_(z: np.ndarray, y: np.ndarray, dz: np.ndarray, scale: float) -> Tuple[float, int]:
    """Softmax cross-entropy on logits ``z`` (rows) and int64 class labels ``y``.

    Writes ``dz <- (softmax(z) - onehot(y)) * scale`` and returns the sum of the rows' losses
    ``logsumexp(z) - z[y]`` (in float64) and the count of rows whose first argmax is ``y``.
    """
    loss, hits = _core.softmax_xent_(z, y, dz, float(scale))
    return float(loss), int(hits)
