"""One training recipe from flat settings: the knobs ``fastopt train``, the hyperparameter search
and the scikit-learn estimators share, so a configuration means the same thing in all three."""
from __future__ import annotations

import numbers
from typing import Any, Dict, Optional, Tuple

import numpy as np

from .. import optim
from .. import schedules as S
from ..nn.losses import LOSSES
from ..nn.mlp import MLP, Dense
from .trainer import EarlyStopping, History, Trainer

#: every setting with its default (Keras / torch names; see fastopt.sklearn for scikit-learn's)
DEFAULTS: Dict[str, Any] = {
    "hidden_layer_sizes": (64,),   # units of each hidden layer
    "activation": "relu",          # of the hidden layers: relu, tanh, sigmoid, identity
    "dropout": 0.0,                # inverted dropout after each hidden layer
    "optimizer": "adam",           # a name from fastopt.optim.OPTIMIZERS
    "lr": 1e-3,                    # learning rate (the peak for schedules)
    "schedule": "constant",        # a name from fastopt.schedules.make
    "warmup": 0,                   # linear warm-up steps
    "epochs": 30,
    "batch_size": 32,
    "l1": 0.0,                     # penalties fused into the update
    "l2": 0.0,
    "weight_decay": None,          # the optimizer's own weight_decay (None: its default)
    "clipnorm": None,              # per-array gradient norm limit
    "clipvalue": None,             # gradient element limit
    "global_clipnorm": None,       # global gradient norm limit
    "patience": 5,                 # early stopping on the validation loss (0: off)
    "validation_split": 0.1,       # share of the training data held out for early stopping
    "loss": None,                  # None: softmax_cross_entropy (classification) or mse (regression)
    "loss_kwargs": None,           # the loss's options: {"gamma": 2.0} (focal), {"label_smoothing": 0.1}
    "dtype": "float32",
    "state_dtype": "float32",      # the optimizer's state: float32, bfloat16 or int8 (fastopt.precision)
    "optimizer_kwargs": None,      # any other hyperparameter of the optimizer, e.g. {"momentum": 0.9}
}

TASKS = ("classification", "regression")


def settings(**params: Any) -> Dict[str, Any]:
    """``DEFAULTS`` updated with ``params``; an unknown name raises TypeError naming it."""
    unknown = sorted(set(params) - set(DEFAULTS))
    if unknown:
        raise TypeError(f"unknown setting(s) {unknown}; the settings are {', '.join(DEFAULTS)}")
    return {**DEFAULTS, **params}


def build(n_inputs: int, n_outputs: int, n_train: int, task: str = "classification", seed: Optional[int] = 0,
          **params: Any) -> Tuple[Trainer, Dict[str, Any]]:
    """The model and trainer for ``params`` (see :data:`DEFAULTS`), checked before any training.

    n_train: the number of training samples (it sets the steps of the schedules).  Returns the
    trainer and the settings in full.
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    p = settings(**params)
    hidden = p["hidden_layer_sizes"]
    hidden = (hidden,) if isinstance(hidden, (int, np.integer)) else tuple(hidden)
    for name in ("epochs", "batch_size"):
        if not (isinstance(p[name], numbers.Integral) and p[name] >= 1):
            raise ValueError(f"{name} must be an integer >= 1, got {p[name]!r}")
    if not (isinstance(p["lr"], numbers.Real) and p["lr"] > 0):
        raise ValueError(f"lr must be > 0, got {p['lr']!r}")
    if not 0.0 <= p["validation_split"] < 1.0:
        raise ValueError(f"validation_split must be in [0, 1), got {p['validation_split']!r}")
    if p["patience"] < 0:
        raise ValueError(f"patience must be >= 0, got {p['patience']!r}")
    loss = p["loss"] or ("softmax_cross_entropy" if task == "classification" else "mse")
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; choose from {', '.join(LOSSES)}")
    if p["optimizer"].lower() not in optim.OPTIMIZERS:
        raise ValueError(f"unknown optimizer {p['optimizer']!r}; choose from {', '.join(optim.OPTIMIZERS)}")
    out_activation = "softmax" if task == "classification" else "identity"
    layers = [Dense(int(h), p["activation"], dropout=p["dropout"]) for h in hidden] + \
        [Dense(int(n_outputs), out_activation)]
    model = MLP(n_inputs, layers, dtype=p["dtype"], seed=seed)
    n_fit = n_train - int(round(p["validation_split"] * n_train)) if p["validation_split"] else n_train
    steps = -(-max(1, n_fit) // p["batch_size"]) * p["epochs"]
    schedule = S.make(p["schedule"], p["lr"], steps, warmup=p["warmup"])
    extra = dict(p["optimizer_kwargs"] or {})
    for name in ("l1", "l2", "clipnorm", "clipvalue", "global_clipnorm"):
        if p[name]:
            extra[name] = p[name]
    if p["weight_decay"] is not None:
        extra["weight_decay"] = p["weight_decay"]
    if p["state_dtype"] != "float32":
        extra["state_dtype"] = p["state_dtype"]
    es = None
    if p["patience"] > 0:
        es = EarlyStopping("val_loss" if p["validation_split"] > 0 else "loss", patience=p["patience"])
    trainer = Trainer(model, p["optimizer"], lr=schedule, loss=loss, early_stopping=es, loss_kwargs=p["loss_kwargs"],
                      **extra)
    return trainer, p


def fit(X, y, task: str = "classification", n_outputs: Optional[int] = None, seed: Optional[int] = 0,
        verbose: bool = False, validation_data=None, **params: Any) -> Tuple[Trainer, History]:
    """Build (see :func:`build`) and train on ``X, y``.  Classification takes labels 0..k-1
    (``n_outputs`` defaults to ``y.max() + 1``); regression takes y of shape (n,) or (n, k)."""
    X = np.asarray(X)
    y = np.asarray(y)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D (samples, features), got shape {X.shape}")
    if n_outputs is None:
        if task == "classification":
            n_outputs = int(y.max()) + 1 if y.size else 1
        else:
            n_outputs = 1 if y.ndim == 1 else y.shape[1]
    trainer, p = build(X.shape[1], n_outputs, len(X), task=task, seed=seed, **params)
    split = 0.0 if validation_data is not None else p["validation_split"]
    history = trainer.fit(X, y, epochs=p["epochs"], batch_size=p["batch_size"], validation_split=split,
                          validation_data=validation_data, seed=seed, verbose=verbose)
    return trainer, history
