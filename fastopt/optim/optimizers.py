"""The optimizer classes: torch.optim's names, defaults and formulas (see fastopt.functional)."""
from __future__ import annotations

import inspect
from typing import Any, Dict

from .. import functional as F
from .optimizer import COMMON, Optimizer


class SGD(Optimizer):
    """SGD with momentum / Nesterov, as ``torch.optim.SGD`` (formula: :func:`fastopt.sgd_`)."""
    defaults = {"lr": 1e-3, "momentum": 0.0, "dampening": 0.0, "weight_decay": 0.0, "nesterov": False,
                "convention": "torch"}
    convention_defaults = {"keras": {"lr": 0.01}, "optax": {}}
    state_names = ("momentum_buffer",)
    kernel = staticmethod(F.sgd_)

    @classmethod
    def _needed_states(cls, group):
        return cls.state_names if group["momentum"] != 0 else ()


class Adam(Optimizer):
    """Adam, as ``torch.optim.Adam`` (formula: :func:`fastopt.adam_`).  ``convention="keras"`` or
    ``"optax"`` computes as those frameworks do, with their defaults for what you do not pass
    (Keras: eps 1e-7); ``eps_root`` and ``bias_correction`` give the textbook forms.
    ``decoupled_weight_decay=True`` is AdamW's decay, as in torch (the group's value counts, so a
    checkpoint of ``torch.optim.AdamW`` loaded into Adam keeps decaying as AdamW)."""
    defaults = {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0, "amsgrad": False,
                "decoupled_weight_decay": False, "eps_root": 0.0, "bias_correction": True, "convention": "torch"}
    convention_defaults = {"keras": {"eps": 1e-7}, "optax": {}}
    state_names = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")
    nonneg_states = ("exp_avg_sq", "max_exp_avg_sq")
    kernel = staticmethod(F.adam_)

    @classmethod
    def _kernel_kwargs(cls, group, state):  # Keras decays the weights apart in every optimizer
        return {**super()._kernel_kwargs(group, state),
                "decoupled_weight_decay": group["decoupled_weight_decay"] or group["convention"] == "keras"}

    @classmethod
    def _needed_states(cls, group):
        return cls.state_names if group["amsgrad"] else cls.state_names[:2]


class AdamW(Adam):
    """AdamW, as ``torch.optim.AdamW`` (decoupled weight decay, default 1e-2; Keras' 0.004 and
    optax's 1e-4 with their conventions)."""
    defaults = {**Adam.defaults, "weight_decay": 1e-2, "decoupled_weight_decay": True}
    convention_defaults = {"keras": {"eps": 1e-7, "weight_decay": 0.004}, "optax": {"weight_decay": 1e-4}}


class Adagrad(Optimizer):
    """Adagrad, as ``torch.optim.Adagrad`` (formula: :func:`fastopt.adagrad_`)."""
    defaults = {"lr": 1e-2, "lr_decay": 0.0, "weight_decay": 0.0, "initial_accumulator_value": 0.0, "eps": 1e-10,
                "convention": "torch"}
    convention_defaults = {"keras": {"lr": 1e-3, "initial_accumulator_value": 0.1, "eps": 1e-7},
                           "optax": {"initial_accumulator_value": 0.1, "eps": 1e-7}}
    state_names = ("sum",)
    nonneg_states = ("sum",)
    kernel = staticmethod(F.adagrad_)
    set_up_only = ("initial_accumulator_value",)

    @classmethod
    def _initial_value(cls, name, group):
        return group["initial_accumulator_value"]


class RMSprop(Optimizer):
    """RMSprop, as ``torch.optim.RMSprop`` (formula: :func:`fastopt.rmsprop_`)."""
    defaults = {"lr": 1e-2, "alpha": 0.99, "eps": 1e-8, "weight_decay": 0.0, "momentum": 0.0, "centered": False,
                "convention": "torch"}
    convention_defaults = {"keras": {"lr": 1e-3, "alpha": 0.9, "eps": 1e-7}, "optax": {"alpha": 0.9}}
    state_names = ("square_avg", "grad_avg", "momentum_buffer")
    nonneg_states = ("square_avg",)
    kernel = staticmethod(F.rmsprop_)
    takes_step = False

    @classmethod
    def _check_lean(cls, group, dtype):
        super()._check_lean(group, dtype)
        if group["centered"] and group["state_dtype"] == "int8":
            raise ValueError("centered=True takes state_dtype 'float32' or 'bfloat16': the 8-bit mean square can fall "
                             "below the squared 8-bit mean gradient (a NaN step)")

    @classmethod
    def _needed_states(cls, group):
        return ("square_avg",) + (("grad_avg",) if group["centered"] else ()) + \
            (("momentum_buffer",) if group["momentum"] > 0 else ())


class Adadelta(Optimizer):
    """Adadelta, as ``torch.optim.Adadelta`` (formula: :func:`fastopt.adadelta_`); Keras' and optax's
    update is the same (Keras: lr 1e-3, rho 0.95, eps 1e-7, decoupled weight decay)."""
    defaults = {"lr": 1.0, "rho": 0.9, "eps": 1e-6, "weight_decay": 0.0, "convention": "torch"}
    convention_defaults = {"keras": {"lr": 1e-3, "rho": 0.95, "eps": 1e-7}, "optax": {}}
    state_names = ("square_avg", "acc_delta")
    nonneg_states = state_names
    kernel = staticmethod(F.adadelta_)
    takes_step = False


class Adamax(Optimizer):
    """Adamax, as ``torch.optim.Adamax`` (formula: :func:`fastopt.adamax_`)."""
    defaults = {"lr": 2e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0, "convention": "torch"}
    convention_defaults = {"keras": {"lr": 1e-3, "eps": 1e-7}, "optax": {}}
    state_names = ("exp_avg", "exp_inf")
    nonneg_states = ("exp_inf",)
    kernel = staticmethod(F.adamax_)


class NAdam(Optimizer):
    """NAdam, as ``torch.optim.NAdam`` (formula: :func:`fastopt.nadam_`); ``mu_product`` is state.
    ``convention="keras"`` is the same update with Keras' defaults (its momentum decay 0.96^t:
    ``momentum_decay=1``); ``"optax"`` is ``optax.nadam``, Adam's Nesterov form
    (:func:`fastopt.adam_` with ``nesterov=True``; ``momentum_decay`` unused)."""
    defaults = {"lr": 2e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0, "momentum_decay": 4e-3,
                "decoupled_weight_decay": False, "convention": "torch"}
    convention_defaults = {"keras": {"lr": 1e-3, "eps": 1e-7, "decoupled_weight_decay": True, "momentum_decay": 1.0}}
    state_names = ("exp_avg", "exp_avg_sq")
    nonneg_states = ("exp_avg_sq",)
    scalar_states = {"mu_product": 1.0}
    kernel = staticmethod(F.nadam_)

    @classmethod
    def _update(cls, group, state, grads, opts):
        if group["convention"] == "optax":  # optax.nadam: Adam's Nesterov form
            kw = cls._kernel_kwargs(group, state)
            adam = {k: kw[k] for k in ("lr", "betas", "eps", "weight_decay", "decoupled_weight_decay", "step")}
            return cls._run(group, state, grads, {**adam, "convention": "optax", "nesterov": True}, opts, F.adam_)
        return super()._update(group, state, grads, opts)

    @classmethod
    def _step_scalars(cls, group, step, scalars):
        return {"mu_product": scalars["mu_product"] * F.nadam_mu(step, group["betas"][0], group["momentum_decay"])}

    @classmethod
    def _one_call(cls, group):
        return group["convention"] != "optax"


class RAdam(Optimizer):
    """RAdam, as ``torch.optim.RAdam`` (formula: :func:`fastopt.radam_`); ``convention="optax"`` is
    ``optax.radam`` (epsilon on the corrected root, ``eps_root``)."""
    defaults = {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0,
                "decoupled_weight_decay": False, "eps_root": 0.0, "convention": "torch"}
    convention_defaults = {"optax": {}}
    conventions = ("torch", "optax")
    state_names = ("exp_avg", "exp_avg_sq")
    nonneg_states = ("exp_avg_sq",)
    kernel = staticmethod(F.radam_)


class Lion(Optimizer):
    """Lion (Chen et al., 2023; formula: :func:`fastopt.lion_`).  Keras and optax compute the same
    update; their defaults: Keras lr 1e-3, optax weight_decay 1e-3."""
    defaults = {"lr": 1e-4, "betas": (0.9, 0.99), "weight_decay": 0.0, "convention": "torch"}
    convention_defaults = {"keras": {"lr": 1e-3}, "optax": {"weight_decay": 1e-3}}
    state_names = ("exp_avg",)
    kernel = staticmethod(F.lion_)
    takes_step = False


class LAMB(Optimizer):
    """LAMB (You et al., 2020), as ``optax.lamb`` (formula: :func:`fastopt.lamb_`);
    ``convention="keras"`` is ``keras.optimizers.Lamb`` (eps 1e-7, weight decay apart)."""
    defaults = {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-6, "weight_decay": 0.0, "convention": "torch"}
    convention_defaults = {"keras": {"eps": 1e-7}, "optax": {}}
    state_names = ("exp_avg", "exp_avg_sq")
    kernel = staticmethod(F.lamb_)
    lean = False  # two passes with per-array norms: float32 or float64 only


OPTIMIZERS: Dict[str, type] = {cls.__name__.lower(): cls for cls in
                               (SGD, Adam, AdamW, Adagrad, RMSprop, Adadelta, Adamax, NAdam, RAdam, Lion, LAMB)}


def _signature(cls: type) -> inspect.Signature:
    """``(params, lr=..., *, <the rule's hyperparameters>, <the common options>)``, for help() and IDEs."""
    kind = inspect.Parameter.KEYWORD_ONLY
    return inspect.Signature(
        [inspect.Parameter("params", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
        + [inspect.Parameter(k, inspect.Parameter.POSITIONAL_OR_KEYWORD if k == "lr" else kind, default=v)
           for k, v in {**cls.defaults, **COMMON}.items()])


for _cls in OPTIMIZERS.values():
    _cls.__signature__ = _signature(_cls)
del _cls


def get(name: str, params, **hyper: Any) -> Optimizer:
    """An optimizer by name (case-insensitive): sgd, adam, adamw, adagrad, rmsprop, adadelta, adamax,
    nadam, radam, lion, lamb."""
    try:
        cls = OPTIMIZERS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown optimizer {name!r}; choose from {', '.join(OPTIMIZERS)}") from None
    return cls(params, **hyper)
