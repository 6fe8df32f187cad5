"""Mini-batch training of an MLP with a fastopt optimizer: schedules, early stopping, history."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from .. import _core, optim
from ..functional import all_finite
from ..nn.losses import LOSSES, REGRESSION_LOSSES
from ..nn.mlp import MLP
from ..schedules import ReduceOnPlateau, Schedule
from .. import threads as _threads


@dataclass
class EarlyStopping:
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs (Keras)."""
    monitor: str = "val_loss"
    patience: int = 5
    min_delta: float = 0.0
    restore_best_weights: bool = True
    mode: str = "auto"  # "min", "max", or from the name ("acc"/"accuracy" -> max)

    def __post_init__(self):
        if self.mode == "auto":
            self.mode = "max" if "acc" in self.monitor else "min"
        if self.mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min', 'max' or 'auto', got {self.mode!r}")
        if self.patience < 0:
            raise ValueError(f"patience must be >= 0, got {self.patience!r}")


@dataclass
class History:
    history: Dict[str, List[float]] = field(default_factory=dict)
    stopped_epoch: Optional[int] = None
    best_epoch: Optional[int] = None
    stop_reason: str = "completed"

    def add(self, **values: float) -> None:
        for k, v in values.items():
            self.history.setdefault(k, []).append(float(v))


def accuracy(model: MLP, X: np.ndarray, y: np.ndarray) -> float:
    out = model.predict_output(X)
    if out.shape[1] == 1:
        return float(((out[:, 0] > 0.5) == (np.asarray(y).reshape(-1) > 0.5)).mean())
    y = np.asarray(y)
    labels = y.argmax(axis=1) if y.ndim == 2 else y
    return float((out.argmax(axis=1) == labels).mean())


def _finite(a: np.ndarray) -> bool:
    """No NaN or infinity in a (the fused, threaded check for float arrays; no temporary)."""
    if a.dtype in (np.float32, np.float64) and a.flags.c_contiguous and a.flags.aligned:
        return all_finite(a.reshape(-1))
    return a.dtype.kind not in "fc" or bool(np.all(np.isfinite(a)))


def _check_data(X, y, name="X"):
    X = np.asarray(X)
    y = np.asarray(y)
    if X.ndim != 2:
        raise ValueError(f"{name} must be 2-D (samples, features), got shape {X.shape}")
    if len(X) != len(y):
        raise ValueError(f"{name} has {len(X)} samples but y has {len(y)}")
    if len(X) == 0:
        raise ValueError(f"{name} is empty")
    if not _finite(X):
        raise ValueError(f"{name} contains NaN or infinity")
    if np.issubdtype(y.dtype, np.floating) and not _finite(y):
        raise ValueError("y contains NaN or infinity")
    return X, y


def build_optimizer(name: str, model: MLP, lr: float, regularize_bias: bool = False,
                    layer_lr: Optional[Dict[int, float]] = None, frozen: Sequence[int] = (),
                    **hyper: Any) -> Tuple[optim.Optimizer, List[Any]]:
    """The optimizer ``name`` over the model's parameters, and the gradients its ``step`` takes.

    With an ``l1`` or ``l2`` penalty and ``regularize_bias=False`` the weights and the biases are
    separate parameter groups (the penalty on the weights only).  ``layer_lr`` ({layer index: lr})
    and ``frozen`` (layer indices left as they are) make a group per layer.  Otherwise one group
    over the flat buffer: one fused kernel call per step."""
    l1, l2 = hyper.pop("l1", 0.0), hyper.pop("l2", 0.0)
    layer_lr, frozen = dict(layer_lr or {}), {int(i) for i in frozen}
    n = len(model.layers)
    for i in list(layer_lr) + list(frozen):
        if not (isinstance(i, (int, np.integer)) and 0 <= i < n):
            raise ValueError(f"layer index {i!r} is not a layer of this model (0 to {n - 1})")
    for i, v in layer_lr.items():
        if not (isinstance(v, (int, float)) and v > 0 and math.isfinite(v)):
            raise ValueError(f"layer_lr[{i}] must be > 0, got {v!r}")
    if len(frozen) == n:
        raise ValueError("every layer is frozen: nothing to train")
    split = bool(l1 or l2) and not regularize_bias
    if not layer_lr and not frozen:
        if split:
            groups = [{"params": list(model.W), "l1": l1, "l2": l2}, {"params": list(model.b), "l1": 0.0, "l2": 0.0}]
            return optim.get(name, groups, lr=lr, **hyper), [list(model.dW), list(model.db)]
        return optim.get(name, [model.params], lr=lr, l1=l1, l2=l2, **hyper), [model.grads]
    groups, grads = [], []
    for i in range(n):
        if i in frozen:
            continue
        rate = float(layer_lr.get(i, lr))
        if split:
            groups += [{"params": [model.W[i]], "lr": rate, "l1": l1, "l2": l2},
                       {"params": [model.b[i]], "lr": rate, "l1": 0.0, "l2": 0.0}]
            grads += [[model.dW[i]], [model.db[i]]]
        else:
            groups.append({"params": [model.W[i], model.b[i]], "lr": rate, "l1": l1, "l2": l2})
            grads.append([model.dW[i], model.db[i]])
    return optim.get(name, groups, lr=lr, **hyper), grads


class Trainer:
    """``Trainer(model, "adam", lr=1e-3).fit(X, y, epochs=20, batch_size=32)``.

    optimizer: a name from :data:`fastopt.optim.OPTIMIZERS` (with ``optimizer_kwargs``) or an
    :class:`~fastopt.optim.Optimizer` built over ``[model.params]``.  lr: a float or a
    :class:`~fastopt.schedules.Schedule` evaluated at every step (``ReduceOnPlateau`` once an epoch
    on the validation loss).  threads: ``"auto"`` (BLAS and the kernels get the free cores the
    model's matmuls pay for, decided at the first fit and kept; see :mod:`fastopt.threads`),
    an int for both, or None to leave every thread setting as it is.  ``l1`` / ``l2`` (optimizer
    keywords) penalize the weights only, as Keras' regularizers and scikit-learn's ``alpha`` do;
    ``regularize_bias=True`` penalizes the biases too.  ``loss_kwargs``: the loss's options, e.g.
    ``{"gamma": 3.0}`` for ``loss="focal"``, ``{"label_smoothing": 0.1}`` for softmax cross-entropy.
    ``layer_lr``: {layer index: lr} for layers trained at their own rate (a schedule scales each in
    proportion); ``frozen``: layer indices left unchanged (fine-tuning).
    """

    def __init__(self, model: MLP, optimizer: Union[str, optim.Optimizer] = "adam",
                 lr: Union[float, Schedule] = 1e-3, loss: str = "softmax_cross_entropy",
                 early_stopping: Optional[EarlyStopping] = None, threads: Union[str, int, None] = "auto",
                 regularize_bias: bool = False, loss_kwargs: Optional[Dict[str, float]] = None,
                 layer_lr: Optional[Dict[int, float]] = None, frozen: Sequence[int] = (), **optimizer_kwargs: Any):
        if loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}; choose from {', '.join(LOSSES)}")
        if not (threads is None or threads == "auto" or (isinstance(threads, int) and not isinstance(threads, bool)
                                                          and threads >= 1)):
            raise ValueError(f"threads must be 'auto', None or an int >= 1, got {threads!r}")
        self.model, self.loss, self.early_stopping, self.threads = model, loss, early_stopping, threads
        self.loss_kwargs = dict(loss_kwargs or {})
        if self.loss_kwargs:  # a bad option fails now, not at the first step
            LOSSES[loss][0](np.zeros((1, 2), model.dtype), np.zeros(1, np.int64) if loss != "mse" else np.zeros((1, 2)),
                            **self.loss_kwargs)
        self._thread_plan: Optional[Tuple[int, int]] = None
        self.schedule = lr if isinstance(lr, Schedule) else None
        if not isinstance(lr, Schedule) and not (isinstance(lr, (int, float)) and lr > 0):
            raise ValueError(f"lr must be > 0 or a Schedule, got {lr!r}")
        lr0 = self.schedule(0) if self.schedule else float(lr)
        self.regularize_bias = bool(regularize_bias)
        if isinstance(optimizer, optim.Optimizer):
            self.optimizer = optimizer
            self._grads: List[Any] = [model.grads]
        else:
            self.optimizer, self._grads = build_optimizer(optimizer, model, lr0, regularize_bias, layer_lr, frozen,
                                                          **optimizer_kwargs)
        self.layer_lr = {int(k): float(v) for k, v in (layer_lr or {}).items()}
        self.frozen = sorted(int(i) for i in frozen)
        # each group's rate relative to the base rate, kept under a schedule (as torch's schedulers
        # do); the base of a schedule is its peak rate (its ``lr``)
        nominal = float(getattr(self.schedule, "lr", lr0) or lr0) if self.schedule is not None else lr0
        self._lr_factors = [g["lr"] / nominal if nominal > 0 and g["lr"] != lr0 else 1.0
                            for g in self.optimizer.param_groups]
        self.steps = 0
        self.epoch = 0  # epochs completed
        self.weights_epoch = 0  # the epoch the model's weights are from
        self._rng_state: Optional[Dict[str, Any]] = None  # the shuffle stream after self.epoch
        self._es: Dict[str, Any] = {}  # early stopping's best, wait, best_epoch, best_weights
        self._loaded = False

    def fit(self, X, y, epochs: int = 10, batch_size: int = 32, validation_split: float = 0.0,
            validation_data: Optional[Tuple[np.ndarray, np.ndarray]] = None, shuffle: bool = True,
            seed: Optional[int] = 0, verbose: bool = True, initial_epoch: Optional[int] = None) -> History:
        """Train until epoch ``epochs``; returns the :class:`History` of the epochs run.

        Each epoch's ``loss`` and ``accuracy`` are means over its batches as the weights moved (as
        Keras reports them); ``val_*`` are measured at its end.  ``initial_epoch`` (Keras'): the
        epoch to start at; by default 0, or the saved epoch for a trainer from :meth:`load`.
        Starting at the epoch this trainer has reached continues its run exactly: the shuffle
        stream, the dropout stream, the schedule's step, the optimizer and early stopping pick up
        where they stopped, so ``fit(epochs=2)``, ``save``, ``load``, ``fit(epochs=4)`` ends with
        the bits of ``fit(epochs=4)`` (with the same other arguments).
        """
        if initial_epoch is None:
            initial_epoch = self.epoch if self._loaded else 0
        if isinstance(initial_epoch, bool) or not isinstance(initial_epoch, (int, np.integer)) or initial_epoch < 0:
            raise ValueError(f"initial_epoch must be an int >= 0, got {initial_epoch!r}")
        if self.threads == "auto":
            if self._thread_plan is None:
                sizes = [self.model.n_inputs] + [layer.units for layer in self.model.layers]
                self._thread_plan = _threads.plan(sizes, int(batch_size))
            blas, kernels = self._thread_plan
        else:
            blas = kernels = self.threads
        with _threads.limited(blas, kernels):
            return self._fit(X, y, epochs, batch_size, validation_split, validation_data, shuffle, seed, verbose,
                             int(initial_epoch))

    def _fit(self, X, y, epochs, batch_size, validation_split, validation_data, shuffle, seed, verbose,
             initial_epoch) -> History:
        X, y = _check_data(X, y)
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
        if int(epochs) < 1:
            raise ValueError(f"epochs must be >= 1, got {epochs!r}")
        if not 0.0 <= validation_split < 1.0:
            raise ValueError(f"validation_split must be in [0, 1), got {validation_split!r}")
        rng = np.random.default_rng(seed)
        if validation_data is None and validation_split > 0:
            idx = rng.permutation(len(X))
            n_val = max(1, int(round(validation_split * len(X))))
            validation_data = (X[idx[:n_val]], y[idx[:n_val]])
            X, y = X[idx[n_val:]], y[idx[n_val:]]
        if validation_data is not None:
            validation_data = _check_data(*validation_data, name="validation_data X")
        es = self.early_stopping
        if es is not None and es.monitor.startswith("val_") and validation_data is None:
            raise ValueError(f"early stopping monitors {es.monitor!r} but there is no validation data")
        fn, _ = LOSSES[self.loss]
        # once: rows in the model's dtype, labels as int64, a reused minibatch buffer
        X = np.ascontiguousarray(X, dtype=self.model.dtype)
        if y.ndim == 1 and y.dtype.kind in "iub":
            y = y.astype(np.int64, copy=False)
        k = self.model.layers[-1].units
        if self.loss in ("softmax_cross_entropy", "focal") and y.ndim == 1 and len(y) and (y.min() < 0 or y.max() >= k):
            raise ValueError(f"y holds labels outside [0, {k}): the last layer has {k} units")
        continuing = initial_epoch == self.epoch and self.epoch > 0 and self._rng_state is not None
        if continuing:  # the run this trainer (or its checkpoint) stopped
            rng.bit_generator.state = self._rng_state
            best, wait, best_epoch = self._es["best"], self._es["wait"], self._es["best_epoch"]
            best_weights = self._es["best_weights"]
        else:
            best, wait, best_epoch, best_weights = None, 0, None, None
        history = History(best_epoch=best_epoch)
        last_good = self.model.get_weights()
        bar = _bar(max(0, int(epochs) - initial_epoch), verbose)
        n, bs = len(X), int(batch_size)
        xbuf = np.empty((min(bs, n),) + X.shape[1:], X.dtype)
        # the minibatch's rows: fastopt's threaded row copy (random rows of a large X are bound by
        # memory latency) where X is a matrix, else NumPy's take
        take = _core.take_rows_ if X.ndim == 2 and X.dtype in (np.float32, np.float64) else (lambda X, b, out: np.take(X, b, axis=0, out=out))
        ybuf = np.empty((min(bs, n),) + y.shape[1:], y.dtype)
        for epoch in range(initial_epoch, int(epochs)):
            order = rng.permutation(n) if shuffle else np.arange(n)
            total, count, hits = 0.0, 0, 0
            for start in range(0, n, bs):
                b = order[start:start + bs]
                xb, yb = xbuf[:len(b)], ybuf[:len(b)]
                take(X, b, xb)
                np.take(y, b, axis=0, out=yb)
                if self.schedule is not None:
                    rate = self.schedule(self.steps)
                    for g, f in zip(self.optimizer.param_groups, self._lr_factors):
                        g["lr"] = rate * f
                value, right = self.model.train_batch(xb, yb, self.loss, train=True, loss_kwargs=self.loss_kwargs)
                if not math.isfinite(value):
                    self.model.set_weights(last_good)
                    history.stop_reason = f"loss became {value} at epoch {epoch + 1}: stopped, last good weights kept"
                    history.stopped_epoch = epoch + 1
                    bar.close()
                    if verbose:
                        print(history.stop_reason)
                    return history
                self.optimizer.step(self._grads)
                self.steps += 1
                total += value * len(b)
                count += len(b)
                hits += right or 0
            if np.all(np.isfinite(self.model.params)):
                last_good = self.model.get_weights()
            # as Keras: the epoch's loss and accuracy are means over its batches, as the weights moved
            row = {"loss": total / count, "lr": self.optimizer.param_groups[0]["lr"] / self._lr_factors[0]}
            if self.loss not in REGRESSION_LOSSES:
                row["accuracy"] = hits / count
            if validation_data is not None:
                Xv, yv = validation_data
                row["val_loss"] = fn(self.model.forward(Xv), yv, **self.loss_kwargs)[0]
                if self.loss not in REGRESSION_LOSSES:
                    row["val_accuracy"] = accuracy(self.model, Xv, yv)
            history.add(**row)
            if isinstance(self.schedule, ReduceOnPlateau):
                self.schedule.update(row.get("val_loss", row["loss"]))
            bar.update(row)
            stop = False
            if es is not None:
                if es.monitor not in row:
                    raise ValueError(f"early stopping monitors {es.monitor!r}; the history has {sorted(row)}")
                cur = row[es.monitor]
                better = best is None or (cur < best - es.min_delta if es.mode == "min" else cur > best + es.min_delta)
                if better:
                    best, wait, best_epoch = cur, 0, epoch + 1
                    history.best_epoch = best_epoch
                    best_weights = self.model.get_weights() if es.restore_best_weights else None
                else:
                    wait += 1
                    if wait >= es.patience:
                        history.stopped_epoch = epoch + 1
                        history.stop_reason = f"early stopping: {es.monitor} did not improve for {es.patience} epochs"
                        stop = True
            self.epoch, self._rng_state = epoch + 1, rng.bit_generator.state
            self._es = {"best": best, "wait": wait, "best_epoch": best_epoch, "best_weights": best_weights}
            self.weights_epoch = self.epoch
            if stop:
                break
        bar.close()
        if es is not None and es.restore_best_weights and best_weights is not None:
            self.model.set_weights(best_weights)
            self.weights_epoch = best_epoch
        self._loaded = False
        return history

    def evaluate(self, X, y) -> Dict[str, float]:
        X, y = _check_data(X, y)
        fn, _ = LOSSES[self.loss]
        out = {"loss": fn(self.model.forward(X), y, **self.loss_kwargs)[0]}
        if self.loss not in REGRESSION_LOSSES:
            out["accuracy"] = accuracy(self.model, X, y)
        return out

    def save(self, path: str) -> None:
        """Everything a later :meth:`load` needs to continue the run exactly, in one .npz: the model
        (layout, weights, dropout stream), the optimizer state, the schedule and its step, early
        stopping's state, the shuffle stream and the epoch.  ``weights_epoch`` and
        ``optimizer_epoch`` in the file say which epoch each is from (they differ after early
        stopping restored the best weights).  No pickle: arrays and JSON only."""
        import json
        from .. import schedules
        from ..precision import Blockwise8, is_lean_dtype
        sd = self.optimizer.state_dict()
        arrays, lean = {}, {"bfloat16": [], "int8": {}}  # bfloat16 saved as its bits, 8-bit as two arrays
        for i, st in enumerate(sd["state"]):
            for k, v in st.items():
                if isinstance(v, Blockwise8):
                    arrays[f"q8codes_{i}_{k}"], arrays[f"q8absmax_{i}_{k}"] = v.codes, v.absmax
                    lean["int8"][f"{i}/{k}"] = v.nonneg
                elif isinstance(v, np.ndarray) and is_lean_dtype(v.dtype) and v.dtype != np.float16:
                    arrays[f"opt_{i}_{k}"] = v.view(np.uint16)
                    lean["bfloat16"].append(f"{i}/{k}")
                elif isinstance(v, np.ndarray):
                    arrays[f"opt_{i}_{k}"] = v
        if self._es.get("best_weights") is not None:
            arrays["es_best_weights"] = self._es["best_weights"]
        meta = {"model": self.model.config(), "loss": self.loss, "steps": self.steps,
                "optimizer": type(self.optimizer).__name__.lower(),
                "param_groups": sd["param_groups"], "skipped_steps": sd["skipped_steps"],
                "scalars": [{k: v for k, v in s.items() if not isinstance(v, (np.ndarray, Blockwise8))}
                            for s in sd["state"]], "lean_state": lean,
                "epoch": self.epoch, "weights_epoch": self.weights_epoch, "optimizer_epoch": self.epoch,
                "shuffle_rng": self._rng_state, "dropout_rng": self.model._rng.bit_generator.state,
                "schedule": schedules.to_config(self.schedule) if self.schedule is not None else None,
                "early_stopping": vars(self.early_stopping).copy() if self.early_stopping is not None else None,
                "early_stopping_state": {k: v for k, v in self._es.items() if k != "best_weights"},
                "threads": self.threads, "thread_plan": self._thread_plan,
                "base_lr": self.optimizer.param_groups[0]["lr"] / self._lr_factors[0],
                "regularize_bias": self.regularize_bias, "loss_kwargs": self.loss_kwargs,
                "layer_lr": self.layer_lr, "frozen": self.frozen}
        np.savez(path, params=self.model.params, meta=json.dumps(meta, default=list), **arrays)

    @classmethod
    def load(cls, path: str) -> "Trainer":
        """The trainer :meth:`save` wrote; ``fit`` with the same arguments continues its run bit for bit."""
        import json
        from .. import schedules
        from ..nn.mlp import Dense
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            cfg = meta["model"]
            model = MLP(cfg["n_inputs"], [Dense(**layer) for layer in cfg["layers"]], dtype=cfg["dtype"], seed=None,
                        input_dropout=cfg.get("input_dropout", 0.0))
            model.set_weights(z["params"])
            model._rng.bit_generator.state = meta["dropout_rng"]
            groups = meta["param_groups"]
            hyper = {k: (tuple(v) if isinstance(v, list) else v) for k, v in groups[0].items()}
            lr = meta.get("base_lr", hyper.pop("lr"))
            hyper.pop("lr", None)
            schedule = schedules.from_config(meta["schedule"]) if meta.get("schedule") else None
            es = EarlyStopping(**meta["early_stopping"]) if meta.get("early_stopping") else None
            trainer = cls(model, meta["optimizer"], lr=schedule if schedule is not None else lr, loss=meta["loss"],
                          early_stopping=es, threads=meta.get("threads", "auto"),
                          regularize_bias=meta.get("regularize_bias", False),
                          loss_kwargs=meta.get("loss_kwargs"), frozen=meta.get("frozen", ()),
                          layer_lr={int(k): v for k, v in (meta.get("layer_lr") or {}).items()}, **hyper)
            from ..precision import Blockwise8, bfloat16
            lean = meta.get("lean_state") or {"bfloat16": [], "int8": {}}
            state = []
            for i, scalars in enumerate(meta["scalars"]):
                s = dict(scalars)
                for key in z.files:
                    if key.startswith(f"opt_{i}_"):
                        name = key[len(f"opt_{i}_"):]
                        s[name] = z[key].view(bfloat16()) if f"{i}/{name}" in lean["bfloat16"] else z[key]
                    elif key.startswith(f"q8codes_{i}_"):
                        name = key[len(f"q8codes_{i}_"):]
                        s[name] = Blockwise8(z[key], z[f"q8absmax_{i}_{name}"], bool(lean["int8"][f"{i}/{name}"]))
                state.append(s)
            trainer.optimizer.load_state_dict({"param_groups": groups, "state": state,
                                               "skipped_steps": meta["skipped_steps"]})
            trainer.steps = meta["steps"]
            trainer.epoch = meta.get("epoch", 0)
            trainer.weights_epoch = meta.get("weights_epoch", trainer.epoch)
            trainer._rng_state = meta.get("shuffle_rng")
            trainer._es = dict(meta.get("early_stopping_state") or {})
            trainer._es["best_weights"] = z["es_best_weights"] if "es_best_weights" in z.files else None
            plan = meta.get("thread_plan")
            trainer._thread_plan = tuple(plan) if plan else None
            trainer._loaded = True
        return trainer


def _bar(epochs: int, enabled: bool):
    try:
        from tqdm.auto import tqdm
    except ImportError:
        tqdm = None

    class Bar:
        def __init__(self):
            self.t = tqdm(total=epochs, disable=not enabled, unit="epoch", leave=False) if tqdm else None
            self.k = 0

        def update(self, row):
            self.k += 1
            text = " ".join(f"{k}={v:.4g}" for k, v in row.items())
            if self.t is not None:
                self.t.set_postfix_str(text, refresh=False)
                self.t.update()
            elif enabled:
                print(f"epoch {self.k}/{epochs} {text}")

        def close(self):
            if self.t is not None:
                self.t.close()
    return Bar()
