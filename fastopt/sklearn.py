"""scikit-learn estimators over the fastopt MLP: ``GridSearchCV``, ``RandomizedSearchCV``,
``cross_val_score`` and pipelines work unchanged, in parallel with ``n_jobs``.

>>> from sklearn.model_selection import GridSearchCV
>>> search = GridSearchCV(MLPClassifier(epochs=20), {"lr": [1e-3, 1e-2], "optimizer": ["adam", "lion"]},
...                       n_jobs=2).fit(X, y)

The parameters are the settings of :data:`fastopt.train.recipe.DEFAULTS` (shared with
``fastopt train`` and :mod:`fastopt.search`) plus ``random_state`` and ``verbose``.  Against
``sklearn.neural_network.MLPClassifier``: ``lr`` is its ``learning_rate_init``, ``epochs`` its
``max_iter``, ``patience`` its ``n_iter_no_change``, ``validation_split`` its
``validation_fraction``; ``l2`` adds ``l2 * sum(w**2)`` to the loss per batch (scikit-learn's
``alpha`` is scaled by the batch share); ``activation="logistic"`` is accepted for ``"sigmoid"``.
The estimators compute in float64 by default (``dtype="float64"``), as scikit-learn's MLP does
for float64 input, so predictions do not depend on how the rows are batched; ``dtype="float32"``
halves the memory traffic of every step.
Needs scikit-learn 1.6 or newer (``pip install "fastopt[sklearn]"``, also in ``[train]``).
"""
from __future__ import annotations

from typing import Any, Dict

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, check_random_state

from .nn.losses import softmax
from .train import recipe

from sklearn.utils.validation import validate_data as _validate_data  # scikit-learn >= 1.6

__all__ = ["MLPClassifier", "MLPRegressor"]

_D = recipe.DEFAULTS


class _MLP(BaseEstimator):
    _task = "classification"

    def __init__(self, hidden_layer_sizes=_D["hidden_layer_sizes"], activation=_D["activation"],
                 dropout=_D["dropout"], optimizer=_D["optimizer"], lr=_D["lr"], schedule=_D["schedule"],
                 warmup=_D["warmup"], epochs=_D["epochs"], batch_size=_D["batch_size"], l1=_D["l1"], l2=_D["l2"],
                 weight_decay=_D["weight_decay"], clipnorm=_D["clipnorm"], clipvalue=_D["clipvalue"],
                 global_clipnorm=_D["global_clipnorm"], patience=_D["patience"],
                 validation_split=_D["validation_split"], loss=_D["loss"], dtype="float64",
                 optimizer_kwargs=_D["optimizer_kwargs"], random_state=None, verbose=False):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.dropout = dropout
        self.optimizer = optimizer
        self.lr = lr
        self.schedule = schedule
        self.warmup = warmup
        self.epochs = epochs
        self.batch_size = batch_size
        self.l1 = l1
        self.l2 = l2
        self.weight_decay = weight_decay
        self.clipnorm = clipnorm
        self.clipvalue = clipvalue
        self.global_clipnorm = global_clipnorm
        self.patience = patience
        self.validation_split = validation_split
        self.loss = loss
        self.dtype = dtype
        self.optimizer_kwargs = optimizer_kwargs
        self.random_state = random_state
        self.verbose = verbose

    def _settings(self) -> Dict[str, Any]:
        s = {k: getattr(self, k) for k in recipe.DEFAULTS}
        if s["activation"] == "logistic":
            s["activation"] = "sigmoid"
        return s

    def _fit(self, X, y, n_outputs: int):
        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        settings = self._settings()
        if len(X) < 2:  # nothing to hold out
            settings["validation_split"] = 0.0
        trainer, history = recipe.fit(X, y, task=self._task, n_outputs=n_outputs, seed=seed,
                                      verbose=bool(self.verbose), **settings)
        self.model_ = trainer.model
        self.history_ = history.history
        self.loss_curve_ = list(history.history["loss"])
        self.n_iter_ = len(self.loss_curve_)
        self.stop_reason_ = history.stop_reason
        self.best_epoch_ = history.best_epoch
        return self

    def _output(self, X) -> np.ndarray:
        check_is_fitted(self, "model_")
        X = _validate_data(self, X, reset=False, dtype=(np.float64, np.float32))
        return self.model_.forward(X).astype(np.float64)


class MLPClassifier(ClassifierMixin, _MLP):
    """A fastopt MLP classifier (softmax output, softmax cross-entropy or ``loss="focal"``).

    Attributes after ``fit``: ``classes_``, ``n_features_in_``, ``model_`` (the
    :class:`fastopt.nn.MLP`), ``history_`` (per-epoch loss / accuracy / lr), ``loss_curve_``,
    ``n_iter_`` (epochs run), ``best_epoch_``, ``stop_reason_``.
    """
    _task = "classification"

    def fit(self, X, y) -> "MLPClassifier":
        X, y = _validate_data(self, X, y, dtype=(np.float64, np.float32))
        check_classification_targets(y)
        self.classes_, encoded = np.unique(y, return_inverse=True)
        return self._fit(X, encoded, n_outputs=len(self.classes_))

    def predict_proba(self, X) -> np.ndarray:
        p = softmax(self._output(X))
        return p / p.sum(axis=1, keepdims=True)

    def predict_log_proba(self, X) -> np.ndarray:
        return np.log(self.predict_proba(X))

    def predict(self, X) -> np.ndarray:
        out = self._output(X)
        return self.classes_[out.argmax(axis=1)]


class MLPRegressor(RegressorMixin, _MLP):
    """A fastopt MLP regressor (identity output, mean squared error); y of shape (n,) or (n, k).

    Attributes after ``fit`` as :class:`MLPClassifier`, without ``classes_``.
    """
    _task = "regression"

    def fit(self, X, y) -> "MLPRegressor":
        X, y = _validate_data(self, X, y, dtype=(np.float64, np.float32), y_numeric=True, multi_output=True)
        y = np.asarray(y, dtype=np.float64)
        self._y_ndim = y.ndim
        return self._fit(X, y, n_outputs=1 if y.ndim == 1 else y.shape[1])

    def predict(self, X) -> np.ndarray:
        out = self._output(X)
        return out[:, 0] if self._y_ndim == 1 else out

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        return tags


class _Fitted(BaseEstimator):
    """A trained :class:`fastopt.nn.MLP` as a fitted estimator, for scikit-learn's scorers
    (``classes`` given: a classifier with ``predict_proba``; else a regressor)."""

    def __init__(self, model=None, classes=None):
        self.model = model
        self.classes = classes
        if classes is not None:
            self.classes_ = classes

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.estimator_type = "classifier" if self.classes is not None else "regressor"
        return tags

    def fit(self, X, y=None):
        return self

    def predict_proba(self, X):
        return self.model.predict_output(np.asarray(X, dtype=self.model.dtype))

    def decision_function(self, X):
        z = self.model.forward(np.asarray(X, dtype=self.model.dtype))
        return z[:, 1] - z[:, 0] if z.shape[1] == 2 else z

    def predict(self, X):
        out = self.model.forward(np.asarray(X, dtype=self.model.dtype))
        if self.classes is not None:
            return self.classes[out.argmax(axis=1)]
        return out[:, 0] if out.shape[1] == 1 else out
