"""Losses on the last layer's pre-activation z, each returning (mean loss, dL/dz).

Each loss owns its link: softmax cross-entropy takes logits (softmax inside, log-sum-exp for
stability), binary cross-entropy and focal loss take logits (sigmoid inside), MSE takes the
output itself (identity).
"""
from __future__ import annotations

from typing import Tuple

import numpy as np


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def softmax(z: np.ndarray) -> np.ndarray:
    return np.exp(_log_softmax(z))


def _log_sigmoid(z: np.ndarray) -> np.ndarray:
    return -np.logaddexp(0, -z)


def sigmoid(z: np.ndarray) -> np.ndarray:
    return np.exp(_log_sigmoid(z))


def _one_hot(y: np.ndarray, k: int, dtype) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim == 2:
        return y.astype(dtype)
    out = np.zeros((y.shape[0], k), dtype)
    out[np.arange(y.shape[0]), y.astype(np.int64)] = 1
    return out


def softmax_cross_entropy(z: np.ndarray, y: np.ndarray, label_smoothing: float = 0.0) -> Tuple[float, np.ndarray]:
    """y: class indices (n,) or one-hot / probabilities (n, k).  ``label_smoothing`` (Keras',
    torch's): the targets become (1 - s) * onehot + s / k."""
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing!r}")
    t = _one_hot(y, z.shape[1], z.dtype)
    if label_smoothing:
        t = t * z.dtype.type(1 - label_smoothing) + z.dtype.type(label_smoothing / z.shape[1])
    logp = _log_softmax(z)
    n = z.shape[0]
    return float(-(t * logp).sum() / n), ((np.exp(logp) - t) / n).astype(z.dtype)


def binary_cross_entropy(z: np.ndarray, y: np.ndarray) -> Tuple[float, np.ndarray]:
    """y in {0, 1} (or probabilities), shaped like z or (n,) for one output."""
    t = np.asarray(y, z.dtype).reshape(z.shape)
    loss = -(t * _log_sigmoid(z) + (1 - t) * _log_sigmoid(-z)).mean()
    return float(loss), ((sigmoid(z) - t) / z.size).astype(z.dtype)


def binary_log_loss(z: np.ndarray, y: np.ndarray) -> Tuple[float, np.ndarray]:
    """Binary cross-entropy summed over the outputs and averaged over the rows: scikit-learn's
    multilabel loss (its MLP's ``binary_log_loss``), the outputs' count times
    :func:`binary_cross_entropy`."""
    value, grad = binary_cross_entropy(z, y)
    k = z.shape[1] if z.ndim == 2 else 1
    return value * k, (grad * z.dtype.type(k)).astype(z.dtype)


def mse(z: np.ndarray, y: np.ndarray) -> Tuple[float, np.ndarray]:
    t = np.asarray(y, z.dtype).reshape(z.shape)
    d = z - t
    return float((d * d).mean()), (2 * d / z.size).astype(z.dtype)


def squared_error(z: np.ndarray, y: np.ndarray) -> Tuple[float, np.ndarray]:
    """Half the mean squared error, scikit-learn's MLPRegressor loss: 0.5 * mean((z - y)^2)."""
    value, grad = mse(z, y)
    return 0.5 * value, (0.5 * grad).astype(z.dtype)


def poisson(z: np.ndarray, y: np.ndarray) -> Tuple[float, np.ndarray]:
    """Half the Poisson deviance of the prediction exp(z), summed over the outputs and averaged
    over the rows: scikit-learn's MLPRegressor ``loss="poisson"``, y log(y / exp(z)) - y + exp(z)
    (0 log 0 = 0); y >= 0."""
    t = np.asarray(y, z.dtype).reshape(z.shape)
    p = np.exp(z)
    ylogy = np.where(t > 0, t * (np.log(np.where(t > 0, t, 1)) - z), 0)
    n = z.shape[0]
    return float((ylogy - t + p).sum() / n), ((p - t) / n).astype(z.dtype)


def focal(z: np.ndarray, y: np.ndarray, gamma: float = 2.0) -> Tuple[float, np.ndarray]:
    """Softmax focal loss (Lin et al., 2017): -(1 - p_t)^gamma log p_t (Keras'
    CategoricalFocalCrossentropy without alpha); gamma 0 is the cross-entropy."""
    if not gamma >= 0:
        raise ValueError(f"gamma must be >= 0, got {gamma!r}")
    t = _one_hot(y, z.shape[1], z.dtype)
    logp = _log_softmax(z)
    p = np.exp(logp)
    pt = (p * t).sum(axis=1, keepdims=True)
    logpt = (logp * t).sum(axis=1, keepdims=True)
    w = (1 - pt) ** gamma
    n = z.shape[0]
    loss = -(w * logpt).sum() / n
    # dL/dlogpt = -w, dL/dpt = gamma (1-pt)^(gamma-1) logpt; d(pt)/dz = pt (t - p); d(logpt)/dz = t - p
    coef = -w + gamma * (1 - pt) ** (gamma - 1) * logpt * pt
    return float(loss), (coef * (t - p) / n).astype(z.dtype)


# name -> (function, activation the model applies to z for predictions)
LOSSES = {
    "softmax_cross_entropy": (softmax_cross_entropy, "softmax"),
    "binary_cross_entropy": (binary_cross_entropy, "sigmoid"),
    "binary_log_loss": (binary_log_loss, "sigmoid"),
    "mse": (mse, "identity"),
    "squared_error": (squared_error, "identity"),
    "focal": (focal, "softmax"),
    "poisson": (poisson, "exp"),
}

#: the losses of a regression (no accuracy)
REGRESSION_LOSSES = ("mse", "squared_error", "poisson")
