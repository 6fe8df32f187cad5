"""The optimizer classes: torch.optim's names, defaults and formulas (see fastopt.functional)."""
from __future__ import annotations

from typing import Any, Dict


from .. import functional as F
from .optimizer import Optimizer


def _betas(group):
    return tuple(group["betas"])


class SGD(Optimizer):
    """SGD with momentum / Nesterov, as ``torch.optim.SGD`` (formula: :func:`fastopt.sgd_`)."""
    defaults = {"lr": 1e-3, "momentum": 0.0, "dampening": 0.0, "weight_decay": 0.0, "nesterov": False}
    state_names = ("momentum_buffer",)

    @classmethod
    def _needed_states(cls, group):
        return cls.state_names if group["momentum"] != 0 else ()

    @classmethod
    def _update(cls, group, state, grads, opts):
        return F.sgd_(group["params"], grads, cls.views(state, "momentum_buffer"), step=state["step"],
                      lr=group["lr"], momentum=group["momentum"], dampening=group["dampening"],
                      weight_decay=group["weight_decay"], nesterov=group["nesterov"], **opts)


class Adam(Optimizer):
    """Adam, as ``torch.optim.Adam`` (formula: :func:`fastopt.adam_`)."""
    defaults = {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0, "amsgrad": False}
    state_names = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")
    decoupled = False

    @classmethod
    def _update(cls, group, state, grads, opts):
        return F.adam_(group["params"], grads, cls.views(state, "exp_avg"), cls.views(state, "exp_avg_sq"),
                       cls.views(state, "max_exp_avg_sq"), step=state["step"], lr=group["lr"],
                       betas=_betas(group), eps=group["eps"], weight_decay=group["weight_decay"],
                       amsgrad=group["amsgrad"], decoupled_weight_decay=cls.decoupled, **opts)

    @classmethod
    def _needed_states(cls, group):
        return cls.state_names if group["amsgrad"] else cls.state_names[:2]


class AdamW(Adam):
    """AdamW, as ``torch.optim.AdamW`` (decoupled weight decay, default 1e-2)."""
    defaults = {**Adam.defaults, "weight_decay": 1e-2}
    decoupled = True


class Adagrad(Optimizer):
    """Adagrad, as ``torch.optim.Adagrad`` (formula: :func:`fastopt.adagrad_`)."""
    defaults = {"lr": 1e-2, "lr_decay": 0.0, "weight_decay": 0.0, "initial_accumulator_value": 0.0, "eps": 1e-10}
    state_names = ("sum",)

    @classmethod
    def _initial_value(cls, name, group):
        return group["initial_accumulator_value"]

    @classmethod
    def _update(cls, group, state, grads, opts):
        return F.adagrad_(group["params"], grads, cls.views(state, "sum"), step=state["step"], lr=group["lr"],
                          lr_decay=group["lr_decay"], weight_decay=group["weight_decay"], eps=group["eps"], **opts)


class RMSprop(Optimizer):
    """RMSprop, as ``torch.optim.RMSprop`` (formula: :func:`fastopt.rmsprop_`)."""
    defaults = {"lr": 1e-2, "alpha": 0.99, "eps": 1e-8, "weight_decay": 0.0, "momentum": 0.0, "centered": False}
    state_names = ("square_avg", "grad_avg", "momentum_buffer")

    @classmethod
    def _needed_states(cls, group):
        return ("square_avg",) + (("grad_avg",) if group["centered"] else ()) + \
            (("momentum_buffer",) if group["momentum"] > 0 else ())

    @classmethod
    def _update(cls, group, state, grads, opts):
        return F.rmsprop_(group["params"], grads, cls.views(state, "square_avg"), cls.views(state, "grad_avg"),
                          cls.views(state, "momentum_buffer"), lr=group["lr"], alpha=group["alpha"],
                          eps=group["eps"], weight_decay=group["weight_decay"], momentum=group["momentum"],
                          centered=group["centered"], **opts)


class Adadelta(Optimizer):
    """Adadelta, as ``torch.optim.Adadelta`` (formula: :func:`fastopt.adadelta_`)."""
    defaults = {"lr": 1.0, "rho": 0.9, "eps": 1e-6, "weight_decay": 0.0}
    state_names = ("square_avg", "acc_delta")

    @classmethod
    def _update(cls, group, state, grads, opts):
        return F.adadelta_(group["params"], grads, cls.views(state, "square_avg"), cls.views(state, "acc_delta"),
                           lr=group["lr"], rho=group["rho"], eps=group["eps"], weight_decay=group["weight_decay"],
                           **opts)


class Adamax(Optimizer):
    """Adamax, as ``torch.optim.Adamax`` (formula: :func:`fastopt.adamax_`)."""
    defaults = {"lr": 2e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0}
    state_names = ("exp_avg", "exp_inf")

    @classmethod
    def _update(cls, group, state, grads, opts):
        return F.adamax_(group["params"], grads, cls.views(state, "exp_avg"), cls.views(state, "exp_inf"),
                         step=state["step"], lr=group["lr"], betas=_betas(group), eps=group["eps"],
                         weight_decay=group["weight_decay"], **opts)


class NAdam(Optimizer):
    """NAdam, as ``torch.optim.NAdam`` (formula: :func:`fastopt.nadam_`); ``mu_product`` is state."""
    defaults = {"lr": 2e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0, "momentum_decay": 4e-3,
                "decoupled_weight_decay": False}
    state_names = ("exp_avg", "exp_avg_sq")
    scalar_states = {"mu_product": 1.0}

    @classmethod
    def _update(cls, group, state, grads, opts):
        b1 = _betas(group)[0]
        mu_product = state["mu_product"] * F.nadam_mu(state["step"], b1, group["momentum_decay"])
        ok = F.nadam_(group["params"], grads, cls.views(state, "exp_avg"), cls.views(state, "exp_avg_sq"),
                      step=state["step"], mu_product=mu_product, lr=group["lr"], betas=_betas(group),
                      eps=group["eps"], weight_decay=group["weight_decay"], momentum_decay=group["momentum_decay"],
                      decoupled_weight_decay=group["decoupled_weight_decay"], **opts)
        if ok:
            state["mu_product"] = mu_product
        return ok


class RAdam(Optimizer):
    """RAdam, as ``torch.optim.RAdam`` (formula: :func:`fastopt.radam_`)."""
    defaults = {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0,
                "decoupled_weight_decay": False}
    state_names = ("exp_avg", "exp_avg_sq")

    @classmethod
    def _update(cls, group, state, grads, opts):
        return F.radam_(group["params"], grads, cls.views(state, "exp_avg"), cls.views(state, "exp_avg_sq"),
                        step=state["step"], lr=group["lr"], betas=_betas(group), eps=group["eps"],
                        weight_decay=group["weight_decay"], decoupled_weight_decay=group["decoupled_weight_decay"],
                        **opts)


class Lion(Optimizer):
    """Lion (Chen et al., 2023; formula: :func:`fastopt.lion_`)."""
    defaults = {"lr": 1e-4, "betas": (0.9, 0.99), "weight_decay": 0.0}
    state_names = ("exp_avg",)

    @classmethod
    def _update(cls, group, state, grads, opts):
        return F.lion_(group["params"], grads, cls.views(state, "exp_avg"), lr=group["lr"], betas=_betas(group),
                       weight_decay=group["weight_decay"], **opts)


class LAMB(Optimizer):
    """LAMB (You et al., 2020), as ``optax.lamb`` (formula: :func:`fastopt.lamb_`)."""
    defaults = {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-6, "weight_decay": 0.0}
    state_names = ("exp_avg", "exp_avg_sq")

    @classmethod
    def _update(cls, group, state, grads, opts):
        return F.lamb_(group["params"], grads, cls.views(state, "exp_avg"), cls.views(state, "exp_avg_sq"),
                       step=state["step"], lr=group["lr"], betas=_betas(group), eps=group["eps"],
                       weight_decay=group["weight_decay"], **opts)


OPTIMIZERS: Dict[str, type] = {cls.__name__.lower(): cls for cls in
                               (SGD, Adam, AdamW, Adagrad, RMSprop, Adadelta, Adamax, NAdam, RAdam, Lion, LAMB)}


def get(name: str, params, **hyper: Any) -> Optimizer:
    """An optimizer by name (case-insensitive): sgd, adam, adamw, adagrad, rmsprop, adadelta, adamax,
    nadam, radam, lion, lamb."""
    try:
        cls = OPTIMIZERS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown optimizer {name!r}; choose from {', '.join(OPTIMIZERS)}") from None
    return cls(params, **hyper)
