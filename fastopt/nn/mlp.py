"""A small multi-layer perceptron whose weights and biases are views into one flat buffer.

The gradients live in a second flat buffer laid out the same way, so one fastopt kernel call
updates the whole model: ``optimizer = Adam([model.params])`` and ``optimizer.step([model.grads])``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .. import precision as _precision
from .. import threads as _threads
from .fused import FUSED_ACTIVATIONS, act_backward_, bias_act_, softmax_xent_
from .losses import LOSSES, REGRESSION_LOSSES, _log_softmax, _one_hot, sigmoid, softmax

#: the :func:`fastopt.precision.staggered` slots of the parameters and the gradients (the
#: optimizers' state takes 0 to 3)
PARAM_SLOT = 4

ACTIVATIONS = ("relu", "tanh", "sigmoid", "identity", "softmax", "exp")


#: weight initializers (Keras' names; "he" and "glorot" are the normal forms): name -> (fan, scale, uniform)
#: with variance scale / fan, fan being fan_in, (fan_in + fan_out) / 2 or fan_out
INITIALIZERS = {
    "zeros": (None, 0.0, False),
    "glorot_normal": ("avg", 1.0, False), "glorot_uniform": ("avg", 1.0, True), "glorot": ("avg", 1.0, False),
    "he_normal": ("in", 2.0, False), "he_uniform": ("in", 2.0, True), "he": ("in", 2.0, False),
    "lecun_normal": ("in", 1.0, False), "lecun_uniform": ("in", 1.0, True),
}


@dataclass
class Dense:
    """A fully connected layer: ``activation(x @ W + b)``.  ``init``: a name of
    :data:`INITIALIZERS` (default He normal for relu, Glorot normal otherwise, as Keras' and
    torch's usual choices); biases start at zero."""
    units: int
    activation: str = "relu"
    dropout: float = 0.0  # inverted dropout on this layer's output, in training only
    init: Optional[str] = None

    def __post_init__(self):
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {self.activation!r}; choose from {ACTIVATIONS}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if int(self.units) < 1:
            raise ValueError(f"units must be >= 1, got {self.units!r}")
        if self.init is not None and self.init not in INITIALIZERS:
            raise ValueError(f"unknown init {self.init!r}; choose from {', '.join(INITIALIZERS)}")


def _act(name: str, z: np.ndarray) -> np.ndarray:
    if name == "relu":
        return np.maximum(z, 0)
    if name == "tanh":
        return np.tanh(z)
    if name == "sigmoid":
        return sigmoid(z)
    if name == "softmax":
        return softmax(z)
    if name == "exp":
        return np.exp(z)
    return z


def _act_backward(name: str, z: np.ndarray, a: np.ndarray, da: np.ndarray) -> np.ndarray:
    if name == "relu":
        return da * (z > 0)
    if name == "tanh":
        return da * (1 - a * a)
    if name == "sigmoid":
        return da * a * (1 - a)
    if name == "softmax":
        return a * (da - (da * a).sum(axis=1, keepdims=True))
    if name == "exp":
        return da * a
    return da


class MLP:
    """``MLP(n_inputs, [Dense(64), Dense(10, "softmax")])``; parameters in ``model.params`` (flat)."""

    def __init__(self, n_inputs: int, layers: Sequence[Dense], dtype=np.float32, seed: Optional[int] = 0,
                 input_dropout: float = 0.0):
        if not layers:
            raise ValueError("layers is empty")
        if not 0.0 <= input_dropout < 1.0:
            raise ValueError(f"input_dropout must be in [0, 1), got {input_dropout!r}")
        self.n_inputs, self.layers, self.dtype = int(n_inputs), list(layers), np.dtype(dtype)
        self.input_dropout = float(input_dropout)  # inverted dropout on the inputs, in training only
        shapes: List[Tuple[int, int]] = []
        fan_in = self.n_inputs
        for layer in self.layers:
            shapes.append((fan_in, layer.units))
            fan_in = layer.units
        total = sum(i * o + o for i, o in shapes)
        # placed as the optimizers place their state (on a cache line, apart from the other buffers)
        self.params = _precision.staggered(total, self.dtype, PARAM_SLOT)
        self.grads = _precision.staggered(total, self.dtype, PARAM_SLOT + 1)
        self.params[...] = 0
        self.grads[...] = 0
        self.W: List[np.ndarray] = []
        self.b: List[np.ndarray] = []
        self.dW: List[np.ndarray] = []
        self.db: List[np.ndarray] = []
        k = 0
        for i, o in shapes:
            for flat, dst in ((self.params, self.W), (self.grads, self.dW)):
                dst.append(flat[k:k + i * o].reshape(i, o))
            k += i * o
            for flat, dst in ((self.params, self.b), (self.grads, self.db)):
                dst.append(flat[k:k + o])
            k += o
        self.init(seed)
        self.training = False
        self._rng = np.random.default_rng(seed)
        self._ws: Dict[int, Dict[str, list]] = {}  # training buffers by batch size

    def init(self, seed: Optional[int] = 0) -> None:
        """Each layer's ``init`` (He normal for relu layers, Glorot normal otherwise); zero biases.
        Normal forms draw N(0, scale / fan); uniform forms U(-limit, limit), limit = sqrt(3 scale / fan)."""
        rng = np.random.default_rng(seed)
        for layer, W, b in zip(self.layers, self.W, self.b):
            fan_in, fan_out = W.shape
            fan_kind, scale, uniform = INITIALIZERS[layer.init or ("he" if layer.activation == "relu" else "glorot")]
            fan = {"in": fan_in, "avg": (fan_in + fan_out) / 2.0, None: 1.0}[fan_kind]
            if scale == 0.0:
                W[...] = 0
            elif uniform:
                limit = np.sqrt(3.0 * scale / fan)
                W[...] = rng.uniform(-limit, limit, W.shape)
            else:
                W[...] = rng.standard_normal(W.shape) * np.sqrt(scale / fan)
            b[...] = 0

    @property
    def n_params(self) -> int:
        return self.params.size

    def forward(self, X: np.ndarray, train: bool = False) -> np.ndarray:
        """The last layer's pre-activation z (the losses apply their own link).  BLAS gets the
        threads these matmuls pay for on the free cores (:mod:`fastopt.threads`)."""
        X = np.asarray(X, self.dtype)
        if X.ndim != 2 or X.shape[1] != self.n_inputs:
            raise ValueError(f"X must have shape (n, {self.n_inputs}), got {X.shape}")
        sizes = [self.n_inputs] + [layer.units for layer in self.layers]
        with _threads.for_rows(sizes, X.shape[0]):
            return self._forward(X, train)

    def _drop_inputs(self, X: np.ndarray) -> np.ndarray:
        keep = 1.0 - self.input_dropout
        return X * ((self._rng.random(X.shape) < keep).astype(self.dtype) / self.dtype.type(keep))

    def _forward(self, X: np.ndarray, train: bool) -> np.ndarray:
        self._cache = []
        a = self._drop_inputs(X) if train and self.input_dropout > 0 else X
        for j, (layer, W, b) in enumerate(zip(self.layers, self.W, self.b)):
            z = a @ W + b
            last = j == len(self.layers) - 1
            out = z if last else _act(layer.activation, z)
            mask = None
            if train and layer.dropout > 0 and not last:
                keep = 1.0 - layer.dropout
                mask = (self._rng.random(out.shape) < keep).astype(self.dtype) / keep
                out = out * mask
            self._cache.append((a, z, out, mask))
            a = out
        return a

    def backward(self, dz: np.ndarray) -> None:
        """Fill ``model.grads`` from dL/dz of the last layer (after :meth:`forward`)."""
        d = dz
        for j in range(len(self.layers) - 1, -1, -1):
            a_in, z, out, mask = self._cache[j]
            if j != len(self.layers) - 1:
                if mask is not None:
                    d = d * mask
                    out = out / np.where(mask == 0, 1, mask)  # the activation before dropout
                d = _act_backward(self.layers[j].activation, z, out, d)
            np.matmul(a_in.T, d, out=self.dW[j])
            np.sum(d, axis=0, out=self.db[j])
            if j:
                d = d @ self.W[j].T

    def predict_output(self, X: np.ndarray) -> np.ndarray:
        """The network's output with the last layer's activation applied."""
        return _act(self.layers[-1].activation, self.forward(X))

    def loss_and_grad(self, X: np.ndarray, y: np.ndarray, loss: str = "softmax_cross_entropy",
                      train: bool = True, loss_kwargs: Optional[Dict[str, float]] = None) -> float:
        """The mean loss on (X, y); fills ``model.grads``."""
        return self.train_batch(X, y, loss, train, loss_kwargs=loss_kwargs)[0]

    # -- the training step: preallocated buffers and fused passes ----------------------------

    def _workspace(self, n: int) -> Dict[str, list]:
        ws = self._ws.get(n)
        if ws is None:
            if len(self._ws) >= 2:  # a full and a last, shorter batch
                self._ws.clear()
            units = [layer.units for layer in self.layers]
            drop = [layer.dropout > 0 for layer in self.layers[:-1]] + [False]
            ws = {"z": [np.empty((n, u), self.dtype) for u in units],
                  "d": [np.empty((n, u), self.dtype) for u in units],
                  "out": [np.empty((n, u), self.dtype) if k else None for u, k in zip(units, drop)],
                  "mask": [np.empty((n, u), self.dtype) if k else None for u, k in zip(units, drop)],
                  "rand": [np.empty((n, u)) if k else None for u, k in zip(units, drop)]}
            self._ws[n] = ws
        return ws

    def train_batch(self, X: np.ndarray, y: np.ndarray, loss: str = "softmax_cross_entropy",
                    train: bool = True, row_weights: Optional[np.ndarray] = None,
                    loss_kwargs: Optional[Dict[str, float]] = None) -> Tuple[float, Optional[int]]:
        """Forward and backward on one batch into reused buffers; fills ``model.grads``.

        Returns the mean loss and the rows predicted right (``None`` for a regression loss).
        Softmax cross-entropy on integer labels runs as one fused pass (softmax, loss, gradient,
        hits); the hidden layers' bias and activation, and their derivatives, too.
        ``row_weights``: the loss is the weighted mean ``sum(w_i loss_i) / sum(w)`` instead
        (scikit-learn's ``sample_weight``).  ``loss_kwargs``: the loss's options (``gamma`` of
        focal, ``label_smoothing`` of softmax cross-entropy).
        """
        X = np.asarray(X, self.dtype)
        if X.ndim != 2 or X.shape[1] != self.n_inputs:
            raise ValueError(f"X must have shape (n, {self.n_inputs}), got {X.shape}")
        n = X.shape[0]
        ws = self._workspace(n)
        last = len(self.layers) - 1
        inputs = []
        a = self._drop_inputs(X) if train and self.input_dropout > 0 else X
        for j, (layer, W, b) in enumerate(zip(self.layers, self.W, self.b)):
            inputs.append(a)
            z = ws["z"][j]
            np.matmul(a, W, out=z)
            act = "identity" if j == last else layer.activation
            if act in FUSED_ACTIVATIONS:
                bias_act_(z, b, act)
            else:
                z += b
                z[...] = _act(act, z)
            a = z
            if train and ws["mask"][j] is not None:
                mask, out = ws["mask"][j], ws["out"][j]
                keep = 1.0 - layer.dropout
                self._rng.random(out=ws["rand"][j])
                np.less(ws["rand"][j], keep, out=mask, casting="unsafe")
                mask *= self.dtype.type(1.0 / keep)
                np.multiply(z, mask, out=out)
                a = out
        z = ws["z"][last]
        dz = ws["d"][last]
        y = np.asarray(y)
        if loss == "softmax_cross_entropy" and y.ndim == 1 and y.dtype.kind in "iub" and not loss_kwargs:
            total, hits = softmax_xent_(z, y.astype(np.int64, copy=False), dz, 1.0 / n)
            value: float = total / n
        else:
            value, grad = LOSSES[loss][0](z, y, **(loss_kwargs or {}))
            dz[...] = grad
            hits = _hits(z, y, loss)
        if row_weights is not None:  # each row's share of the mean becomes w_i / sum(w)
            w = np.asarray(row_weights, dtype=np.float64).reshape(-1)
            if w.shape != (n,) or not np.all(np.isfinite(w)) or np.any(w < 0) or not w.sum() > 0:
                raise ValueError("row_weights must be n finite values >= 0 with a positive sum")
            share = (w * (n / w.sum())).astype(self.dtype)
            dz *= share[:, None]
            value = float(np.dot(_row_losses(z, y, loss, loss_kwargs), w) / w.sum())
        for j in range(last, -1, -1):
            d = ws["d"][j]
            np.matmul(inputs[j].T, d, out=self.dW[j])
            np.sum(d, axis=0, out=self.db[j])
            if j:
                prev = ws["d"][j - 1]
                np.matmul(d, self.W[j].T, out=prev)
                if train and ws["mask"][j - 1] is not None:
                    prev *= ws["mask"][j - 1]
                act = self.layers[j - 1].activation
                if act in FUSED_ACTIVATIONS:
                    act_backward_(prev, ws["z"][j - 1], act)
                else:
                    prev[...] = _act_backward(act, None, ws["z"][j - 1], prev)
        return value, hits

    def get_weights(self) -> np.ndarray:
        return self.params.copy()

    def set_weights(self, flat: np.ndarray) -> None:
        """Copy ``flat`` (shaped as ``model.params``) into the weights."""
        flat = np.asarray(flat)
        if flat.shape != self.params.shape:
            raise ValueError(f"weights have shape {flat.shape}, the model {self.params.shape}")
        self.params[...] = flat

    def __getstate__(self) -> Dict:
        # the layer views must point into the flat buffers again after unpickling
        return {"config": self.config(), "params": self.params, "training": self.training,
                "rng": self._rng.bit_generator.state}

    def __setstate__(self, state: Dict) -> None:
        cfg = state["config"]
        self.__init__(cfg["n_inputs"], [Dense(**layer) for layer in cfg["layers"]], dtype=cfg["dtype"], seed=None,
                      input_dropout=cfg.get("input_dropout", 0.0))
        self.set_weights(state["params"])
        self.training = state["training"]
        self._rng.bit_generator.state = state["rng"]

    def config(self) -> Dict:
        return {"n_inputs": self.n_inputs, "dtype": self.dtype.name, "input_dropout": self.input_dropout,
                "layers": [vars(layer).copy() for layer in self.layers]}


def _row_losses(z: np.ndarray, y: np.ndarray, loss: str, loss_kwargs: Optional[Dict[str, float]] = None) -> np.ndarray:
    """Each row's loss (the losses of fastopt.nn.losses are their means over rows and outputs)."""
    y = np.asarray(y)
    if loss in ("mse", "squared_error"):
        d = z.astype(np.float64) - y.reshape(z.shape)
        return (d * d).mean(axis=1) * (0.5 if loss == "squared_error" else 1.0)
    if loss == "softmax_cross_entropy" and y.ndim == 1 and not (loss_kwargs or {}).get("label_smoothing"):
        return _xent_rows(z, y)
    if loss in ("binary_cross_entropy", "binary_log_loss", "poisson"):
        z64 = z.astype(np.float64)
        t = y.astype(np.float64).reshape(z.shape)
        if loss == "poisson":
            ylogy = np.where(t > 0, t * (np.log(np.where(t > 0, t, 1)) - z64), 0)
            return (ylogy - t + np.exp(z64)).sum(axis=1)
        e = np.logaddexp(0, -z64) * t + np.logaddexp(0, z64) * (1 - t)  # -(t log s(z) + (1 - t) log s(-z))
        return e.sum(axis=1) if loss == "binary_log_loss" else e.mean(axis=1)
    if loss in ("softmax_cross_entropy", "focal"):  # one-hot, smoothed or given targets
        kw = loss_kwargs or {}
        logp = _log_softmax(z.astype(np.float64))
        t = _one_hot(y, z.shape[1], np.float64)
        if loss == "focal":
            pt = (np.exp(logp) * t).sum(axis=1)
            return -((1 - pt) ** kw.get("gamma", 2.0)) * (logp * t).sum(axis=1)
        s = kw.get("label_smoothing", 0.0)
        if s:
            t = t * (1 - s) + s / z.shape[1]
        return -(t * logp).sum(axis=1)
    fn = LOSSES[loss][0]  # any other, row by row
    return np.array([fn(z[i:i + 1], y[i:i + 1], **(loss_kwargs or {}))[0] for i in range(len(z))])


def _xent_rows(z: np.ndarray, y: np.ndarray) -> np.ndarray:
    z = z.astype(np.float64)
    m = z.max(axis=1, keepdims=True)
    lse = m[:, 0] + np.log(np.exp(z - m).sum(axis=1))
    return lse - z[np.arange(len(y)), y.astype(np.int64)]


def _hits(z: np.ndarray, y: np.ndarray, loss: str) -> Optional[int]:
    """Rows predicted right from the last layer's pre-activation z (None for mse)."""
    if loss in REGRESSION_LOSSES:
        return None
    if z.shape[1] == 1:  # sigmoid(z) > 0.5 exactly when z > 0
        return int(np.sum((z[:, 0] > 0) == (np.asarray(y).reshape(-1) > 0.5)))
    if LOSSES[loss][1] == "sigmoid":  # several labels: a row is right when all its labels are
        return int(np.sum(np.all((z > 0) == (np.asarray(y).reshape(z.shape) > 0.5), axis=1)))
    labels = y.argmax(axis=1) if y.ndim == 2 else y
    return int(np.sum(z.argmax(axis=1) == labels))


def gradient_check(model: MLP, X: np.ndarray, y: np.ndarray, loss: str = "softmax_cross_entropy",
                   eps: float = 1e-6, n_checks: Optional[int] = None, seed: int = 0) -> float:
    """Central finite differences against backprop; returns the worst relative error
    |num - ana| / max(|num| + |ana|, 1e-12) over the checked parameters (all, or n_checks random).

    float32 rounding swamps the differences, so a float32 model is checked through a float64
    copy of it (with a warning); the model itself is left as it was."""
    if model.dtype != np.float64:
        import warnings
        warnings.warn(f"gradient_check: a {model.dtype} model is checked through a float64 copy (its own rounding "
                      "would swamp the finite differences)", RuntimeWarning, stacklevel=2)
        copy = MLP(model.n_inputs, model.layers, dtype=np.float64, seed=None, input_dropout=model.input_dropout)
        copy.set_weights(model.params.astype(np.float64))
        model = copy
    model.loss_and_grad(X, y, loss, train=False)
    analytic = model.grads.copy()
    idx = np.arange(model.n_params)
    if n_checks is not None and n_checks < model.n_params:
        idx = np.random.default_rng(seed).choice(model.n_params, n_checks, replace=False)
    fn, _ = LOSSES[loss]
    worst = 0.0
    for i in idx:
        old = model.params[i]
        model.params[i] = old + eps
        up = fn(model.forward(X), y)[0]
        model.params[i] = old - eps
        down = fn(model.forward(X), y)[0]
        model.params[i] = old
        num = (up - down) / (2 * eps)
        worst = max(worst, abs(num - analytic[i]) / max(abs(num) + abs(analytic[i]), 1e-12))
    return worst
