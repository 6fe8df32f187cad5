"""The best plain NumPy can do for each rule: every operation in place (``out=``) into two scratch
arrays per parameter, so a step allocates nothing.  A benchmark peer: it computes what
:mod:`fastopt.reference` computes (tests check it), with the hyperparameters the benchmarks use
(each rule's defaults; AdamW's decoupled weight decay, SGD's momentum, no other option).

Each function updates one parameter ``p`` from its gradient ``g`` and states; ``t`` and ``u`` are
scratch arrays shaped like ``p``.
"""
from __future__ import annotations

import math

import numpy as np


def gd(p, g, t, u, *, lr):
    np.multiply(g, -lr, out=t)
    np.add(p, t, out=p)


def sgd(p, g, buf, t, u, *, step, lr, momentum):
    # after the first step: buf = momentum * buf + g; p -= lr * buf
    np.multiply(buf, momentum, out=buf)
    np.add(buf, g, out=buf)
    np.multiply(buf, -lr, out=t)
    np.add(p, t, out=p)


def _moments(g, m, v, t, beta1, beta2):
    # m += (1 - beta1) (g - m);  v = beta2 v + (1 - beta2) g^2
    np.subtract(g, m, out=t)
    np.multiply(t, 1.0 - beta1, out=t)
    np.add(m, t, out=m)
    np.multiply(v, beta2, out=v)
    np.multiply(g, g, out=t)
    np.multiply(t, 1.0 - beta2, out=t)
    np.add(v, t, out=v)


def adam(p, g, m, v, t, u, *, step, lr, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0):
    """Adam; with weight_decay, AdamW's decoupled decay."""
    if weight_decay:
        np.multiply(p, 1.0 - lr * weight_decay, out=p)
    _moments(g, m, v, t, beta1, beta2)
    np.sqrt(v, out=t)
    np.divide(t, math.sqrt(1.0 - beta2 ** step), out=t)
    np.add(t, eps, out=t)
    np.divide(m, t, out=u)
    np.multiply(u, -lr / (1.0 - beta1 ** step), out=u)
    np.add(p, u, out=p)


def adagrad(p, g, s, t, u, *, step, lr, lr_decay=0.0, eps=1e-10):
    np.multiply(g, g, out=t)
    np.add(s, t, out=s)
    np.sqrt(s, out=t)
    np.add(t, eps, out=t)
    np.divide(g, t, out=u)
    np.multiply(u, -lr / (1.0 + (step - 1) * lr_decay), out=u)
    np.add(p, u, out=p)


def rmsprop(p, g, sq, t, u, *, lr, alpha=0.99, eps=1e-8):
    np.multiply(sq, alpha, out=sq)
    np.multiply(g, g, out=t)
    np.multiply(t, 1.0 - alpha, out=t)
    np.add(sq, t, out=sq)
    np.sqrt(sq, out=t)
    np.add(t, eps, out=t)
    np.divide(g, t, out=u)
    np.multiply(u, -lr, out=u)
    np.add(p, u, out=p)


def adadelta(p, g, sq, acc, t, u, *, lr, rho=0.9, eps=1e-6):
    np.multiply(sq, rho, out=sq)
    np.multiply(g, g, out=t)
    np.multiply(t, 1.0 - rho, out=t)
    np.add(sq, t, out=sq)
    np.add(sq, eps, out=t)
    np.sqrt(t, out=t)                # std
    np.add(acc, eps, out=u)
    np.sqrt(u, out=u)
    np.divide(u, t, out=u)
    np.multiply(u, g, out=u)         # delta
    np.multiply(acc, rho, out=acc)
    np.multiply(u, u, out=t)
    np.multiply(t, 1.0 - rho, out=t)
    np.add(acc, t, out=acc)
    np.multiply(u, -lr, out=u)
    np.add(p, u, out=p)


def adamax(p, g, m, e, t, u, *, step, lr, beta1=0.9, beta2=0.999, eps=1e-8):
    np.subtract(g, m, out=t)
    np.multiply(t, 1.0 - beta1, out=t)
    np.add(m, t, out=m)
    np.multiply(e, beta2, out=e)
    np.abs(g, out=t)
    np.add(t, eps, out=t)
    np.maximum(e, t, out=e)
    np.divide(m, e, out=u)
    np.multiply(u, -lr / (1.0 - beta1 ** step), out=u)
    np.add(p, u, out=p)


def nadam(p, g, m, v, t, u, *, step, mu_product, lr, beta1=0.9, beta2=0.999, eps=1e-8, momentum_decay=4e-3):
    mu = beta1 * (1.0 - 0.5 * 0.96 ** (step * momentum_decay))
    mu_next = beta1 * (1.0 - 0.5 * 0.96 ** ((step + 1) * momentum_decay))
    _moments(g, m, v, t, beta1, beta2)
    np.divide(v, 1.0 - beta2 ** step, out=t)
    np.sqrt(t, out=t)
    np.add(t, eps, out=t)            # denom
    np.divide(g, t, out=u)
    np.multiply(u, -lr * (1.0 - mu) / (1.0 - mu_product), out=u)
    np.add(p, u, out=p)
    np.divide(m, t, out=u)
    np.multiply(u, -lr * mu_next / (1.0 - mu_product * mu_next), out=u)
    np.add(p, u, out=p)


def radam(p, g, m, v, t, u, *, step, lr, beta1=0.9, beta2=0.999, eps=1e-8):
    _moments(g, m, v, t, beta1, beta2)
    bc2 = 1.0 - beta2 ** step
    rho_inf = 2.0 / (1.0 - beta2) - 1.0
    rho_t = rho_inf - 2.0 * step * beta2 ** step / bc2
    np.multiply(m, lr / (1.0 - beta1 ** step), out=u)
    if rho_t > 5.0:
        rect = math.sqrt((rho_t - 4.0) * (rho_t - 2.0) * rho_inf / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t))
        np.sqrt(v, out=t)
        np.add(t, eps, out=t)
        np.divide(u, t, out=u)
        np.multiply(u, math.sqrt(bc2) * rect, out=u)
    np.subtract(p, u, out=p)


def lion(p, g, m, t, u, *, lr, beta1=0.9, beta2=0.99, weight_decay=0.0):
    if weight_decay:
        np.multiply(p, 1.0 - lr * weight_decay, out=p)
    np.multiply(m, beta1, out=t)
    np.multiply(g, 1.0 - beta1, out=u)
    np.add(t, u, out=t)
    np.sign(t, out=u)  # not in place: NumPy's sign is about 9x slower with out= its own input
    np.multiply(u, -lr, out=u)
    np.add(p, u, out=p)
    np.multiply(m, beta2, out=m)
    np.multiply(g, 1.0 - beta2, out=t)
    np.add(m, t, out=m)


def lamb(p, g, m, v, t, u, *, step, lr, beta1=0.9, beta2=0.999, eps=1e-6, weight_decay=0.0):
    _moments(g, m, v, t, beta1, beta2)
    np.divide(v, 1.0 - beta2 ** step, out=t)
    np.sqrt(t, out=t)
    np.add(t, eps, out=t)
    np.divide(m, t, out=u)
    np.divide(u, 1.0 - beta1 ** step, out=u)   # the update r
    if weight_decay:
        np.multiply(p, weight_decay, out=t)
        np.add(u, t, out=u)
    # BLAS dot products: no copy (in float32 they accumulate in float32, unlike the reference)
    p_norm = math.sqrt(float(np.dot(p.ravel(), p.ravel())))
    r_norm = math.sqrt(float(np.dot(u.ravel(), u.ravel())))
    trust = p_norm / r_norm if p_norm > 0 and r_norm > 0 else 1.0
    np.multiply(u, -lr * trust, out=u)
    np.add(p, u, out=p)


#: rule -> (function, number of states)
RULES = {"gd": (gd, 0), "sgd": (sgd, 1), "adam": (adam, 2), "adagrad": (adagrad, 1), "rmsprop": (rmsprop, 1),
         "adadelta": (adadelta, 2), "adamax": (adamax, 2), "nadam": (nadam, 2), "radam": (radam, 2),
         "lion": (lion, 1), "lamb": (lamb, 2)}
