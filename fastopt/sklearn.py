"""scikit-learn's MLP estimators over fastopt's kernels: change the import, keep the code.

>>> from fastopt.sklearn import MLPClassifier          # instead of sklearn.neural_network
>>> MLPClassifier(hidden_layer_sizes=(64,), max_iter=300, learning_rate_init=1e-3).fit(X, y).score(X, y)

The parameters, defaults and fitted attributes are scikit-learn's (``hidden_layer_sizes``,
``activation``, ``solver``, ``alpha``, ``batch_size="auto"``, ``learning_rate``,
``learning_rate_init``, ``power_t``, ``max_iter``, ``shuffle``, ``random_state``, ``tol``,
``verbose``, ``warm_start``, ``momentum``, ``nesterovs_momentum``, ``early_stopping``,
``validation_fraction``, ``beta_1``, ``beta_2``, ``epsilon``, ``n_iter_no_change``; ``loss_``,
``best_loss_``, ``loss_curve_``, ``validation_scores_``, ``best_validation_score_``, ``t_``,
``coefs_``, ``intercepts_``, ``n_iter_``, ``n_layers_``, ``n_outputs_``, ``out_activation_``), with
the same stopping rule (no improvement by ``tol`` for more than ``n_iter_no_change`` epochs), L2
penalty (``alpha``, on the weights only, per batch), learning-rate rules for ``solver="sgd"``
(``invscaling`` per epoch on the samples seen, ``adaptive`` divides by 5), ``partial_fit`` and
``fit(X, y, sample_weight=...)``, several labels per row (a 0/1 indicator matrix y: logistic
outputs and scikit-learn's binary log loss) and ``MLPRegressor(loss="poisson")``.  ``alpha`` is
fused into the update after any clipping.  Where they differ: ``solver`` also takes fastopt's rules
("adamw", "nadam", "radam", "lion", "lamb", "rmsprop", ...; "lbfgs" is not offered); Adam and
SGD momentum use torch's formulas (epsilon added after the bias correction; momentum on the
gradient, the same steps as scikit-learn's velocity form while the rate is constant); the
weights start from He (relu) or Glorot normal.  Two classes get one logistic output, as in
scikit-learn (two softmax outputs with a softmax loss such as ``loss="focal"``).  fastopt's extras are
keywords: ``schedule``, ``warmup``, ``dropout``, ``l1``, ``weight_decay``, ``clipnorm``,
``clipvalue``, ``global_clipnorm``, ``loss`` (e.g. "focal"; the regressor's is scikit-learn's
keyword, "squared_error" by default), ``dtype`` (float64 by default, as
scikit-learn computes for float64 input; "float32" halves the memory traffic), ``state_dtype``
("bfloat16" or "int8" optimizer state, with ``dtype="float32"``; see :mod:`fastopt.precision`)
and ``optimizer_kwargs``.  Needs scikit-learn 1.6 or newer.
"""
from __future__ import annotations

import math
import types
import warnings
from typing import Any, Dict, List

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, check_random_state, column_or_1d
from sklearn.utils.validation import validate_data as _validate_data  # scikit-learn >= 1.6

from . import optim, schedules
from . import threads as _threads
from .nn import MLP, Dense
from .nn.losses import LOSSES, sigmoid, softmax
from .functional import penalty as fastopt_penalty
from .train.trainer import build_optimizer

__all__ = ["MLPClassifier", "MLPRegressor"]

ACTIVATIONS = {"identity": "identity", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu"}


class _MLP(BaseEstimator):
    _task = "classification"

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam", alpha=0.0001,
                 batch_size="auto", learning_rate="constant", learning_rate_init=0.001, power_t=0.5, max_iter=200,
                 shuffle=True, random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1, beta_1=0.9,
                 beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000, schedule=None, warmup=0,
                 dropout=0.0, l1=0.0, weight_decay=None, clipnorm=None, clipvalue=None, global_clipnorm=None,
                 loss=None, dtype="float64", state_dtype="float32", optimizer_kwargs=None):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun  # scikit-learn's, for lbfgs: accepted, unused
        self.schedule = schedule
        self.warmup = warmup
        self.dropout = dropout
        self.l1 = l1
        self.weight_decay = weight_decay
        self.clipnorm = clipnorm
        self.clipvalue = clipvalue
        self.global_clipnorm = global_clipnorm
        self.state_dtype = state_dtype
        self.loss = loss
        self.dtype = dtype
        self.optimizer_kwargs = optimizer_kwargs

    # -- checks ----------------------------------------------------------------------------------

    def _check_params(self) -> None:
        def bad(name, why):
            raise ValueError(f"{name} {why}, got {getattr(self, name)!r}")
        hidden = self.hidden_layer_sizes
        hidden = [hidden] if np.isscalar(hidden) else list(hidden)
        if any(not float(h).is_integer() or h < 1 for h in hidden):
            bad("hidden_layer_sizes", "must hold integers >= 1")
        if self.activation not in ACTIVATIONS:
            bad("activation", f"must be one of {sorted(ACTIVATIONS)}")
        if self.solver == "lbfgs":
            raise ValueError("solver='lbfgs' is not offered: fastopt trains with first-order rules "
                             f"({', '.join(sorted(optim.OPTIMIZERS))})")
        if str(self.solver).lower() not in optim.OPTIMIZERS:
            bad("solver", f"must be one of {sorted(optim.OPTIMIZERS)}")
        if self.learning_rate not in ("constant", "invscaling", "adaptive"):
            bad("learning_rate", "must be 'constant', 'invscaling' or 'adaptive'")
        if not (self.batch_size == "auto" or (isinstance(self.batch_size, (int, np.integer))
                                              and not isinstance(self.batch_size, bool) and self.batch_size >= 1)):
            bad("batch_size", "must be 'auto' or an int >= 1")
        for name in ("max_iter", "n_iter_no_change"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                bad(name, "must be an int >= 1")
        if not (isinstance(self.learning_rate_init, (int, float)) and self.learning_rate_init > 0):
            bad("learning_rate_init", "must be > 0")
        for name in ("alpha", "tol", "power_t", "momentum", "l1", "dropout"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float, np.floating)) and not isinstance(v, bool) and v >= 0
                    and math.isfinite(v)):
                bad(name, "must be a finite number >= 0")
        if not 0.0 < self.validation_fraction < 1.0:
            bad("validation_fraction", "must be in (0, 1)")
        for name in ("beta_1", "beta_2"):
            if not 0.0 <= getattr(self, name) < 1.0:
                bad(name, "must be in [0, 1)")
        if not self.epsilon > 0:
            bad("epsilon", "must be > 0")
        if self.dtype not in ("float32", "float64"):
            bad("dtype", "must be 'float32' or 'float64'")
        if self.loss is not None and self.loss not in LOSSES:
            bad("loss", f"must be one of {sorted(LOSSES)} or None")

    # -- the parts -------------------------------------------------------------------------------

    def _optimizer(self, model: MLP, lr: float) -> optim.Optimizer:
        solver = str(self.solver).lower()
        hyper: Dict[str, Any] = {}
        if solver == "sgd":
            hyper = {"momentum": self.momentum, "nesterov": bool(self.nesterovs_momentum and self.momentum > 0)}
        elif solver in ("adam", "adamw", "nadam", "radam", "adamax", "lamb", "lion"):
            hyper = {"betas": (self.beta_1, self.beta_2)}
            if solver != "lion":
                hyper["eps"] = self.epsilon
        for name in ("clipnorm", "clipvalue", "global_clipnorm", "weight_decay"):
            if getattr(self, name) is not None:
                hyper[name] = getattr(self, name)
        if self.l1:
            hyper["l1"] = self.l1
        if self.state_dtype != "float32":
            if self.dtype == "float64":
                raise ValueError(f"state_dtype={self.state_dtype!r} needs dtype='float32' (the model's parameters)")
            hyper["state_dtype"] = self.state_dtype
        if self.alpha:  # scikit-learn's L2, fused into the weights' update; set per batch in _fit
            hyper["l2"] = self.alpha
        hyper.update(self.optimizer_kwargs or {})
        opt, self._grads = build_optimizer(solver, model, lr, **hyper)  # the penalties on the weights only
        return opt

    def _new_model(self, n_in: int, n_out: int, seed: int) -> MLP:
        hidden = self.hidden_layer_sizes
        hidden = [hidden] if np.isscalar(hidden) else list(hidden)
        act = ACTIVATIONS[self.activation]
        layers = [Dense(int(h), act, dropout=self.dropout) for h in hidden]
        layers.append(Dense(n_out, self._out_link()))
        return MLP(n_in, layers, dtype=self.dtype, seed=seed)

    def _multilabel(self) -> bool:
        return getattr(self, "_is_multilabel", False)

    def _binary(self) -> bool:
        """Two classes in one logistic output, as scikit-learn has them (not with a softmax loss)."""
        return getattr(self, "_is_binary", False)

    def _out_link(self) -> str:
        """The last layer's activation: softmax, sigmoid (two classes, or several labels per row)
        or identity."""
        if self._task != "classification":
            return "exp" if self.loss == "poisson" else "identity"  # scikit-learn's poisson: exp outputs
        return "sigmoid" if self._multilabel() or self._binary() else "softmax"

    def _loss_name(self) -> str:
        return self._checked_loss(self._out_link(), self._multilabel())

    def _checked_loss(self, link: str, multilabel: bool) -> str:
        """The loss for outputs of this link (softmax, sigmoid, identity or exp): the one asked
        for, which must fit them, or the targets' own."""
        name = self.loss or ("binary_log_loss" if link == "sigmoid" else "softmax_cross_entropy" if link == "softmax"
                             else "squared_error")
        if name in LOSSES and LOSSES[name][1] != "identity" and LOSSES[name][1] != link:
            raise ValueError(f"loss={name!r} needs {LOSSES[name][1]} outputs; these targets take {link} outputs" +
                             (" (several labels per row: 'binary_log_loss' or 'binary_cross_entropy')"
                              if multilabel else ""))
        return name

    # -- training: scikit-learn's stochastic loop, fastopt's step -----------------------------------

    def _fit(self, X, y, n_out: int, sample_weight=None, incremental: bool = False):
        self._check_params()
        self._loss_name()  # raises for a loss that does not fit the targets, before anything is made
        rs = check_random_state(self.random_state)
        first = not (hasattr(self, "model_") and (self.warm_start or incremental))
        if not first and self.model_.W[-1].shape[1] != n_out:
            raise ValueError(f"the fitted model has {self.model_.W[-1].shape[1]} outputs, this y {n_out}")
        if first:
            self.model_ = self._new_model(X.shape[1], n_out, int(rs.randint(np.iinfo(np.int32).max)))
            self.n_iter_, self.t_ = 0, 0
            self.loss_curve_: List[float] = []
            self._no_improvement_count = 0
            self._lr = float(self.learning_rate_init)
            self._optim = self._optimizer(self.model_, self._lr)
            self._rng = np.random.default_rng(int(rs.randint(np.iinfo(np.int32).max)))
            self.best_loss_ = math.inf
            self.validation_scores_ = None
            self.best_validation_score_ = None
        early = bool(self.early_stopping) and not incremental
        if early:
            stratify = y if self._task == "classification" and y.ndim == 1 else None  # as scikit-learn
            idx = np.arange(len(X))
            tr, va = train_test_split(idx, random_state=rs, test_size=self.validation_fraction, stratify=stratify)
            X_val, y_val = X[va], y[va]
            X, y = X[tr], y[tr]
            sample_weight = sample_weight[tr] if sample_weight is not None else None
            if first or self.validation_scores_ is None:
                self.validation_scores_, self.best_validation_score_ = [], -math.inf
                self.best_loss_ = None
        n = len(X)
        bs = min(200, n) if self.batch_size == "auto" else min(int(self.batch_size), n)
        model, loss = self.model_, self._loss_name()
        X = np.ascontiguousarray(X, dtype=model.dtype)
        sizes = [model.n_inputs] + [layer.units for layer in model.layers]
        sched = None
        if self.schedule is not None:
            steps = -(-n // bs) * (1 if incremental else int(self.max_iter))
            sched = schedules.make(self.schedule, float(self.learning_rate_init), steps, warmup=int(self.warmup))
        xbuf = np.empty((bs, X.shape[1]), X.dtype)
        best_coefs = None
        with _threads.limited(*_threads.plan(sizes, bs)):
            for it in range(1 if incremental else int(self.max_iter)):
                order = self._rng.permutation(n) if self.shuffle else np.arange(n)
                total = 0.0
                for start in range(0, n, bs):
                    b = order[start:start + bs]
                    xb = xbuf[:len(b)]
                    np.take(X, b, axis=0, out=xb)
                    if sched is not None:
                        self._optim.lr = sched(self._optim_steps())
                    else:
                        self._optim.lr = self._lr
                    w = sample_weight[b] if sample_weight is not None else None
                    value, _ = model.train_batch(xb, y[b], loss, train=True, row_weights=w)
                    if self.alpha:  # scikit-learn's L2, 0.5 alpha |W|^2 / batch: its gradient alpha W / batch
                        # is the kernel's fused l2 on the weights' group (2 l2 W), so no pass of its own
                        self._optim.param_groups[0]["l2"] = self.alpha / (2 * len(b))
                        value += 0.5 * self.alpha * fastopt_penalty(model.W, l2=1.0) / len(b)
                    self._optim.step(self._grads)
                    total += value * len(b)
                self.n_iter_ += 1
                self.t_ += n
                self.loss_ = total / n
                self.loss_curve_.append(self.loss_)
                if not math.isfinite(self.loss_):
                    raise ValueError(f"the training loss became {self.loss_} at iteration {self.n_iter_}: "
                                     "lower learning_rate_init")
                if self.verbose:
                    print(f"Iteration {self.n_iter_}, loss = {self.loss_:.8f}")
                if early:
                    score = self._val_score(X_val, y_val)
                    self.validation_scores_.append(score)
                    self._no_improvement_count = (self._no_improvement_count + 1
                                                  if score < self.best_validation_score_ + self.tol else 0)
                    if score > self.best_validation_score_:
                        self.best_validation_score_ = score
                        best_coefs = model.get_weights()
                else:
                    self._no_improvement_count = (self._no_improvement_count + 1
                                                  if self.loss_ > self.best_loss_ - self.tol else 0)
                    self.best_loss_ = min(self.best_loss_, self.loss_)
                if str(self.solver).lower() == "sgd" and self.learning_rate == "invscaling":
                    self._lr = float(self.learning_rate_init) / (self.t_ + 1) ** self.power_t
                if self._no_improvement_count > self.n_iter_no_change:
                    if (str(self.solver).lower() == "sgd" and self.learning_rate == "adaptive"
                            and self._lr > 1e-6):
                        self._lr /= 5.0  # scikit-learn's adaptive rate
                        self._no_improvement_count = 0
                        if self.verbose:
                            print(f"Setting learning rate to {self._lr:f}")
                        continue
                    if self.verbose:
                        print(f"Training loss did not improve more than tol={self.tol} for "
                              f"{self.n_iter_no_change} consecutive epochs. Stopping.")
                    break
                if not incremental and it == int(self.max_iter) - 1:
                    warnings.warn(f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached and the "
                                  "optimization hasn't converged yet.", ConvergenceWarning)
        if early and best_coefs is not None:
            model.set_weights(best_coefs)
        return self

    def _optim_steps(self) -> int:
        return int(self._optim.state[0]["step"])

    def __getstate__(self):
        # the optimizer's arrays are views (of the model's buffers, of its own flat state): they
        # are pickled as its state_dict and rebuilt over the unpickled model
        state = self.__dict__.copy()
        state.pop("_grads", None)
        if "_optim" in state:
            state["_optim"] = state["_optim"].state_dict()
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        if isinstance(state.get("_optim"), dict):
            saved = state["_optim"]
            self._optim = self._optimizer(self.model_, self._lr)
            self._optim.load_state_dict(saved)

    # -- scikit-learn's fitted attributes ------------------------------------------------------

    @property
    def coefs_(self) -> List[np.ndarray]:
        check_is_fitted(self, "model_")
        return list(self.model_.W)

    @property
    def intercepts_(self) -> List[np.ndarray]:
        check_is_fitted(self, "model_")
        return list(self.model_.b)

    @property
    def n_layers_(self) -> int:
        check_is_fitted(self, "model_")
        return len(self.model_.layers) + 1

    @property
    def n_outputs_(self) -> int:
        check_is_fitted(self, "model_")
        return self.model_.layers[-1].units

    @property
    def out_activation_(self) -> str:
        check_is_fitted(self, "model_")
        link = self.model_.layers[-1].activation  # as fitted
        return {"softmax": "softmax", "sigmoid": "logistic", "identity": "identity", "exp": "exp"}[link]

    def _output(self, X) -> np.ndarray:
        check_is_fitted(self, "model_")
        X = _validate_data(self, X, reset=False, dtype=(np.float64, np.float32))
        return self.model_.forward(X).astype(np.float64)


class MLPClassifier(ClassifierMixin, _MLP):
    """A drop-in for ``sklearn.neural_network.MLPClassifier`` (see the module's docstring);
    softmax outputs, softmax cross-entropy (or ``loss="focal"``)."""
    _task = "classification"

    def fit(self, X, y, sample_weight=None) -> "MLPClassifier":
        X, y = _validate_data(self, X, y, dtype=(np.float64, np.float32), multi_output=True)
        y = self._targets(y)
        if self.warm_start and hasattr(self, "classes_"):
            kind = self._class_kind()
        else:
            kind = self._new_class_kind(np.arange(y.shape[1]) if y.ndim == 2 else np.unique(y), y.ndim == 2)
        encoded = self._encode(y, kind)
        sw = _check_sample_weight(sample_weight, X) if sample_weight is not None else None
        self._check_params()
        self.__dict__.update(kind)  # checked: set only now
        return self._fit(X, encoded, self._n_outputs(), sw)

    def partial_fit(self, X, y, classes=None, sample_weight=None) -> "MLPClassifier":
        """One epoch over (X, y); the first call needs ``classes`` (every label there will be)."""
        first = not hasattr(self, "classes_")
        X, y = _validate_data(self, X, y, dtype=(np.float64, np.float32), reset=first, multi_output=True)
        y = self._targets(y)
        if first:
            if classes is None:
                raise ValueError("classes must be passed on the first call to partial_fit")
            kind = self._new_class_kind(np.unique(np.asarray(classes)), y.ndim == 2)
        else:
            kind = self._class_kind()
            if classes is not None and not np.array_equal(np.unique(np.asarray(classes)), self.classes_):
                raise ValueError(f"classes {np.unique(np.asarray(classes))!r} differ from the first call's "
                                 f"{self.classes_!r}")
        encoded = self._encode(y, kind)
        sw = _check_sample_weight(sample_weight, X) if sample_weight is not None else None
        self._check_params()
        self.__dict__.update(kind)  # checked: set only now
        return self._fit(X, encoded, self._n_outputs(), sw, incremental=True)

    def _class_kind(self) -> Dict[str, Any]:
        """The fitted classes and how the outputs hold them."""
        return {"classes_": self.classes_, "_is_multilabel": self._multilabel(), "_is_binary": self._binary()}

    def _new_class_kind(self, classes: np.ndarray, multilabel: bool) -> Dict[str, Any]:
        """The same for new classes, the loss checked against their outputs; nothing set."""
        sigmoid_loss = self.loss is None or (self.loss in LOSSES and LOSSES[self.loss][1] == "sigmoid")
        binary = not multilabel and len(classes) == 2 and sigmoid_loss
        self._checked_loss("sigmoid" if multilabel or binary else "softmax", multilabel)
        return {"classes_": classes, "_is_multilabel": multilabel, "_is_binary": binary}

    def _n_outputs(self) -> int:
        return 1 if self._binary() else len(self.classes_)

    @staticmethod
    def _targets(y) -> np.ndarray:
        """y as scikit-learn's MLPClassifier takes it: labels (n,), or a 0/1 indicator matrix (n, k)
        of several labels per row; a column (n, 1) is raveled with its warning."""
        if np.ndim(y) == 2 and np.shape(y)[1] == 1:
            y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        if np.ndim(y) == 2 and type_of_target(y) != "multilabel-indicator":
            raise ValueError(f"y of shape {np.shape(y)} must be labels (n,) or a 0/1 indicator matrix (n, k) "
                             f"of several labels per row, got a {type_of_target(y)} target")
        return np.asarray(y)

    @staticmethod
    def _encode(y, kind: Dict[str, Any]) -> np.ndarray:
        """y as the outputs of ``kind`` (a class kind) take it: class indices, or the indicator matrix."""
        classes, multilabel = kind["classes_"], kind["_is_multilabel"]
        if multilabel != (y.ndim == 2):
            raise ValueError("y is " + ("an indicator matrix" if y.ndim == 2 else "a label vector") +
                             " but the model was fitted on " + ("an indicator matrix" if multilabel else
                                                              "labels") + "; refit without warm_start")
        if y.ndim == 2:
            if y.shape[1] != len(classes) or not np.array_equal(classes, np.arange(y.shape[1])):
                raise ValueError(f"y has {y.shape[1]} labels per row; classes_ is {classes!r} "
                                 f"(for several labels per row: 0 .. the labels' count - 1)")
            return y.astype(np.float64)
        idx = np.searchsorted(classes, y)
        idx = np.clip(idx, 0, len(classes) - 1)
        if not np.all(classes[idx] == y):
            raise ValueError(f"y holds labels not in classes_ {classes!r}")
        return idx.astype(np.int64)

    def _val_score(self, X, y_idx) -> float:
        z = self.model_.forward(np.asarray(X, self.model_.dtype))
        if self._multilabel():  # subset accuracy: every label of a row right
            return float(np.mean(np.all((z > 0) == (y_idx > 0.5), axis=1)))
        if self._binary():
            return float(np.mean((z[:, 0] > 0) == y_idx))
        return float(np.mean(z.argmax(axis=1) == y_idx))

    def predict_proba(self, X) -> np.ndarray:
        """Each class's probability (n, classes); with several labels per row, each label's (n, k)."""
        if self._multilabel():
            return sigmoid(self._output(X))
        if self._binary():
            p1 = sigmoid(self._output(X)[:, 0])
            return np.stack([1 - p1, p1], axis=1)
        p = softmax(self._output(X))
        return p / p.sum(axis=1, keepdims=True)

    def predict_log_proba(self, X) -> np.ndarray:
        return np.log(self.predict_proba(X))

    def predict(self, X) -> np.ndarray:
        out = self._output(X)
        if self._multilabel():  # the indicator matrix: sigmoid(z) > 0.5 exactly when z > 0
            return (out > 0).astype(np.int64)
        if self._binary():
            return self.classes_[(out[:, 0] > 0).astype(np.int64)]
        return self.classes_[out.argmax(axis=1)]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


def _with_defaults(init: Any, **kwdefaults: Any) -> Any:
    """``init`` with other defaults for some of its keyword-only parameters: what the signature
    shows, hence what scikit-learn's ``get_params`` and ``clone`` read."""
    f = types.FunctionType(init.__code__, init.__globals__, init.__name__, init.__defaults__, init.__closure__)
    f.__kwdefaults__ = {**init.__kwdefaults__, **kwdefaults}
    f.__doc__, f.__module__, f.__qualname__ = init.__doc__, init.__module__, init.__qualname__
    return f


class MLPRegressor(RegressorMixin, _MLP):
    """A drop-in for ``sklearn.neural_network.MLPRegressor`` (see the module's docstring); identity
    outputs, half the mean squared error (scikit-learn's ``squared_error``), or with
    ``loss="poisson"`` exp outputs and half the Poisson deviance (y >= 0), as scikit-learn's; y of
    shape (n,) or (n, k)."""
    _task = "regression"
    __init__ = _with_defaults(_MLP.__init__, loss="squared_error")  # scikit-learn's default

    def fit(self, X, y, sample_weight=None) -> "MLPRegressor":
        X, y = _validate_data(self, X, y, dtype=(np.float64, np.float32), y_numeric=True, multi_output=True)
        y = self._targets(y)
        sw = _check_sample_weight(sample_weight, X) if sample_weight is not None else None
        self._check_params()
        self._loss_name()
        self._y_ndim = y.ndim  # checked: set only now
        return self._fit(X, y, 1 if y.ndim == 1 else y.shape[1], sw)

    def partial_fit(self, X, y, sample_weight=None) -> "MLPRegressor":
        """One epoch over (X, y), from the current weights."""
        first = not hasattr(self, "model_")
        X, y = _validate_data(self, X, y, dtype=(np.float64, np.float32), y_numeric=True, multi_output=True,
                              reset=first)
        y = self._targets(y)
        sw = _check_sample_weight(sample_weight, X) if sample_weight is not None else None
        self._check_params()
        self._loss_name()
        self._y_ndim = y.ndim  # checked: set only now
        return self._fit(X, y, 1 if y.ndim == 1 else y.shape[1], sw, incremental=True)

    def _targets(self, y) -> np.ndarray:
        y = np.asarray(y, dtype=np.float64)
        if self.loss == "poisson" and np.any(y < 0):
            raise ValueError("y holds negative values, which loss='poisson' does not take")
        return y

    def _predicted(self, z: np.ndarray) -> np.ndarray:
        return np.exp(z) if self.model_.layers[-1].activation == "exp" else z  # the link it was fitted with

    def _val_score(self, X, y) -> float:
        pred = self._predicted(self.model_.forward(np.asarray(X, self.model_.dtype))).reshape(np.shape(y))
        total = float(((y - y.mean(axis=0)) ** 2).sum())
        return 1.0 - float(((y - pred) ** 2).sum()) / total if total > 0 else 0.0

    def predict(self, X) -> np.ndarray:
        out = self._predicted(self._output(X))
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
