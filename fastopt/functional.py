"""In-place update rules, clipping and regularization over flat arrays.

Every function takes one array or a list of arrays per role (parameters, gradients and each
optimizer state, all C-contiguous, of one dtype, float32 or float64) and updates them in one
call of the C++ kernels, with one parallel region for the whole list.  Names and formulas follow
``torch.optim``'s functional forms; the trailing underscore marks an in-place update.

Common keywords of every update rule
------------------------------------
maximize : bool
    Ascend instead of descend (the gradient is negated).
grad_scale : float
    Multiply the gradient by this factor first: the clip coefficient of a global norm clip
    (:func:`clip_coef`), so clipping costs no extra pass over the gradients.
clip_value : float or None
    Then clamp the gradient to ``[-clip_value, clip_value]``.
l1, l2 : float
    Then add the gradient of the penalty ``l1 * sum|p| + l2 * sum p**2``, that is
    ``l1 * sign(p) + 2 * l2 * p`` (Keras' ``L1L2`` regularizer).  This is separate from each
    rule's own ``weight_decay``, which follows torch (``g + weight_decay * p``, or decoupled).
check_finite : bool
    First look for NaN or infinity in the gradients; if one is found nothing is written and
    the function returns False (a skipped step, as mixed-precision training wants).

Lean precision (every rule but LAMB; see :mod:`fastopt.precision`)
------------------------------------------------------------------
Parameters and gradients may also be bfloat16 (``ml_dtypes``) or float16, and the states
bfloat16 or 8-bit (:class:`fastopt.precision.Blockwise8`; all states of a call share one kind);
the rule computes in float32 and each array is rounded back to its own dtype.
low_params : arrays or None
    With float32 ``params`` as the master copy: bfloat16 or float16 arrays that receive the
    updated parameters, rounded (the model's own weights).
stochastic_rounding : bool
    Round bfloat16 stores stochastically instead of to nearest even.
seed : int
    The random bits of stochastic rounding come from (seed, array, role, element index): give
    a new seed each step (the optimizer classes mix their seed with the step count).
compensation : arrays or None
    Kahan-compensated bfloat16 parameters: bfloat16 arrays (zeros at first) holding what
    rounding the parameters dropped; the rule sees params + compensation, and both are written
    back, so updates far below bfloat16's resolution accumulate.

The gradients are read, never written.  Every function returns True when the step was applied.
Bad arguments raise ``TypeError`` or ``ValueError`` naming the argument before anything is written.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple, Union

import numpy as np

from . import _core

Arrays = Union[np.ndarray, Sequence[np.ndarray]]

__all__ = [
    "gd_", "sgd_", "adam_", "adamw_", "adagrad_", "rmsprop_", "adadelta_", "adamax_", "nadam_",
    "radam_", "lion_", "lamb_", "nadam_mu", "clip_grad_value_", "clip_grad_norm_", "clip_coef",
    "global_norm", "array_norms", "scale_", "regularize_grad_", "penalty", "elastic_net", "all_finite",
]


def _betas(betas: Tuple[float, float]) -> Tuple[float, float]:
    try:
        b1, b2 = betas
    except (TypeError, ValueError):
        raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}") from None
    return float(b1), float(b2)


def gd_(params: Arrays, grads: Arrays, *, lr: float, maximize: bool = False, grad_scale: float = 1.0,
        clip_value: Optional[float] = None, l1: float = 0.0, l2: float = 0.0, check_finite: bool = False,
        low_params: Optional[Arrays] = None, stochastic_rounding: bool = False, seed: int = 0,
        compensation: Optional[Arrays] = None) -> bool:
    r"""Plain gradient descent: :math:`\theta \leftarrow \theta - \gamma g`."""
    return _core.gd_(params, grads, lr, maximize, grad_scale, clip_value, l1, l2, check_finite, low_params,
                     stochastic_rounding, seed, compensation)


def sgd_(params: Arrays, grads: Arrays, momentum_buffers: Optional[Arrays] = None, *, step: int, lr: float,
         momentum: float = 0.0, dampening: float = 0.0, weight_decay: float = 0.0, nesterov: bool = False,
         maximize: bool = False, grad_scale: float = 1.0, clip_value: Optional[float] = None, l1: float = 0.0,
         l2: float = 0.0, check_finite: bool = False, convention: str = "torch",
         low_params: Optional[Arrays] = None, stochastic_rounding: bool = False, seed: int = 0,
         compensation: Optional[Arrays] = None) -> bool:
    r"""SGD with momentum, as ``torch.optim.SGD``.

    .. math::
        g &\leftarrow g + \lambda\theta \\
        b &\leftarrow g \text{ at step 1, else } \mu b + (1-\tau) g \\
        g &\leftarrow g + \mu b \text{ (nesterov) or } b \\
        \theta &\leftarrow \theta - \gamma g

    ``step`` counts steps taken, this one included; at step 1 the buffers are set to the
    gradient (torch's ``momentum_buffer is None``).  Buffers are needed only when momentum != 0.

    ``convention="keras"``: Keras' form, :math:`v \leftarrow \mu v - \gamma g,\ \theta \leftarrow
    \theta + v` (nesterov: :math:`\theta + \mu v - \gamma g`), the buffer holding the rate (the same
    steps as torch's while the rate is constant), weight decay decoupled
    (:math:`\theta \leftarrow \theta(1 - \gamma\lambda)`), no dampening.  ``"optax"`` is torch's form.
    """
    return _core.sgd_(params, grads, momentum_buffers, step, lr, momentum, dampening, weight_decay, nesterov,
                      maximize, grad_scale, clip_value, l1, l2, check_finite, convention, low_params,
                      stochastic_rounding, seed, compensation)


def adam_(params: Arrays, grads: Arrays, exp_avgs: Arrays, exp_avg_sqs: Arrays,
          max_exp_avg_sqs: Optional[Arrays] = None, *, step: int, lr: float = 1e-3,
          betas: Tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0,
          amsgrad: bool = False, decoupled_weight_decay: bool = False, maximize: bool = False,
          grad_scale: float = 1.0, clip_value: Optional[float] = None, l1: float = 0.0, l2: float = 0.0,
          check_finite: bool = False, eps_root: float = 0.0, bias_correction: bool = True,
          convention: str = "torch", nesterov: bool = False,
          low_params: Optional[Arrays] = None, stochastic_rounding: bool = False, seed: int = 0,
          compensation: Optional[Arrays] = None) -> bool:
    r"""Adam (Kingma & Ba, 2015), as ``torch.optim.Adam``.

    .. math::
        g &\leftarrow g + \lambda\theta \quad(\text{or } \theta \leftarrow \theta(1-\gamma\lambda)
            \text{ when decoupled}) \\
        m &\leftarrow \mathrm{lerp}(m, g, 1-\beta_1), \quad v \leftarrow \beta_2 v + (1-\beta_2) g^2 \\
        \hat v &= \max(\hat v, v) \text{ (amsgrad) or } v \\
        \theta &\leftarrow \theta - \frac{\gamma}{1-\beta_1^t}\,
            \frac{m}{\sqrt{\hat v}/\sqrt{1-\beta_2^t} + \epsilon}

    ``step`` is t, the count of steps taken with this one, so the bias correction is exact.

    ``convention`` places epsilon and the bias corrections as each framework does
    (bc = 1 - beta^t): ``"torch"`` as above; ``"keras"`` folds the corrections into the step size,
    :math:`\theta \leftarrow \theta - \gamma\frac{\sqrt{bc_2}}{bc_1}\frac{m}{\sqrt{v} + \epsilon}`
    (Keras' default epsilon is 1e-7); ``"optax"`` corrects both moments,
    :math:`\theta \leftarrow \theta - \gamma\frac{m/bc_1}{\sqrt{v/bc_2 + \epsilon_{root}} + \epsilon}`.
    ``eps_root`` is added inside the square root (optax's); ``bias_correction=False`` drops the
    corrections: the textbook ``p -= lr m / sqrt(v + eps)`` is ``eps=0, eps_root=eps,
    bias_correction=False``.  ``nesterov=True`` (with ``convention="optax"``) is ``optax.nadam``:
    the numerator :math:`\beta_1 m/(1-\beta_1^{t+1}) + (1-\beta_1) g/(1-\beta_1^t)` in place of
    :math:`m / bc_1`.
    """
    b1, b2 = _betas(betas)
    return _core.adam_(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, step, lr, b1, b2, eps, weight_decay,
                       amsgrad, decoupled_weight_decay, maximize, grad_scale, clip_value, l1, l2, check_finite,
                       eps_root, bias_correction, convention, nesterov, low_params, stochastic_rounding, seed,
                       compensation)


def adamw_(params: Arrays, grads: Arrays, exp_avgs: Arrays, exp_avg_sqs: Arrays,
           max_exp_avg_sqs: Optional[Arrays] = None, *, step: int, lr: float = 1e-3,
           betas: Tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, weight_decay: float = 1e-2,
           amsgrad: bool = False, maximize: bool = False, grad_scale: float = 1.0,
           clip_value: Optional[float] = None, l1: float = 0.0, l2: float = 0.0, check_finite: bool = False,
           eps_root: float = 0.0, bias_correction: bool = True, convention: str = "torch", nesterov: bool = False,
           low_params: Optional[Arrays] = None, stochastic_rounding: bool = False, seed: int = 0,
           compensation: Optional[Arrays] = None) -> bool:
    r"""AdamW (Loshchilov & Hutter, 2019), as ``torch.optim.AdamW``: :func:`adam_` with the
    decoupled decay :math:`\theta \leftarrow \theta (1 - \gamma\lambda)` applied first (Keras'
    AdamW decays the same way; its default weight_decay is 0.004).  ``convention``, ``eps_root``,
    ``bias_correction``: as :func:`adam_`."""
    b1, b2 = _betas(betas)
    return _core.adam_(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, step, lr, b1, b2, eps, weight_decay,
                       amsgrad, True, maximize, grad_scale, clip_value, l1, l2, check_finite, eps_root,
                       bias_correction, convention, nesterov, low_params, stochastic_rounding, seed, compensation)


def adagrad_(params: Arrays, grads: Arrays, state_sums: Arrays, *, step: int, lr: float = 1e-2,
             lr_decay: float = 0.0, weight_decay: float = 0.0, eps: float = 1e-10, maximize: bool = False,
             grad_scale: float = 1.0, clip_value: Optional[float] = None, l1: float = 0.0, l2: float = 0.0,
             check_finite: bool = False, convention: str = "torch",
             low_params: Optional[Arrays] = None, stochastic_rounding: bool = False, seed: int = 0,
             compensation: Optional[Arrays] = None) -> bool:
    r"""Adagrad (Duchi et al., 2011), as ``torch.optim.Adagrad``.

    .. math::
        \tilde\gamma = \frac{\gamma}{1 + (t-1)\eta}, \quad g \leftarrow g + \lambda\theta, \quad
        s \leftarrow s + g^2, \quad \theta \leftarrow \theta - \tilde\gamma \frac{g}{\sqrt{s} + \epsilon}

    ``initial_accumulator_value`` is the value the caller fills ``state_sums`` with.
    ``convention="keras"`` (or ``"optax"``): epsilon inside the root,
    :math:`\theta \leftarrow \theta - \gamma g / \sqrt{s + \epsilon}`, weight decay decoupled, no lr_decay
    (their defaults: initial accumulator 0.1, epsilon 1e-7).
    """
    return _core.adagrad_(params, grads, state_sums, step, lr, lr_decay, weight_decay, eps, maximize, grad_scale,
                          clip_value, l1, l2, check_finite, convention, low_params, stochastic_rounding, seed,
                          compensation)


def rmsprop_(params: Arrays, grads: Arrays, square_avgs: Arrays, grad_avgs: Optional[Arrays] = None,
             momentum_buffers: Optional[Arrays] = None, *, lr: float = 1e-2, alpha: float = 0.99,
             eps: float = 1e-8, weight_decay: float = 0.0, momentum: float = 0.0, centered: bool = False,
             maximize: bool = False, grad_scale: float = 1.0, clip_value: Optional[float] = None, l1: float = 0.0,
             l2: float = 0.0, check_finite: bool = False, convention: str = "torch",
             low_params: Optional[Arrays] = None, stochastic_rounding: bool = False, seed: int = 0,
             compensation: Optional[Arrays] = None) -> bool:
    r"""RMSprop (Hinton, 2012), as ``torch.optim.RMSprop``.

    .. math::
        v &\leftarrow \alpha v + (1-\alpha) g^2, \quad
        \bar g \leftarrow \mathrm{lerp}(\bar g, g, 1-\alpha) \text{ (centered)} \\
        d &= \sqrt{v - \bar g^2} + \epsilon \text{ (centered) or } \sqrt{v} + \epsilon \\
        b &\leftarrow \mu b + g/d, \ \theta \leftarrow \theta - \gamma b \text{ (momentum) or }
        \theta \leftarrow \theta - \gamma g/d

    ``convention="keras"`` (or ``"optax"``, the same form): epsilon inside the root and the rate
    inside the momentum buffer, :math:`i = \gamma g / \sqrt{v - \bar g^2 + \epsilon}` (centered) or
    :math:`\gamma g / \sqrt{v + \epsilon}`; :math:`b \leftarrow \mu b + i,\ \theta \leftarrow \theta - b`;
    weight decay decoupled; ``alpha`` is their rho (defaults 0.9, epsilon 1e-7 / optax 1e-8).
    """
    return _core.rmsprop_(params, grads, square_avgs, grad_avgs, momentum_buffers, lr, alpha, eps, weight_decay,
                          momentum, centered, maximize, grad_scale, clip_value, l1, l2, check_finite, convention,
                          low_params, stochastic_rounding, seed, compensation)


def adadelta_(params: Arrays, grads: Arrays, square_avgs: Arrays, acc_deltas: Arrays, *, lr: float = 1.0,
              rho: float = 0.9, eps: float = 1e-6, weight_decay: float = 0.0, maximize: bool = False,
              grad_scale: float = 1.0, clip_value: Optional[float] = None, l1: float = 0.0, l2: float = 0.0,
              check_finite: bool = False, convention: str = "torch",
              low_params: Optional[Arrays] = None, stochastic_rounding: bool = False, seed: int = 0,
              compensation: Optional[Arrays] = None) -> bool:
    r"""Adadelta (Zeiler, 2012), as ``torch.optim.Adadelta``.

    .. math::
        v \leftarrow \rho v + (1-\rho) g^2, \quad
        \Delta = \frac{\sqrt{u + \epsilon}}{\sqrt{v + \epsilon}}\, g, \quad
        u \leftarrow \rho u + (1-\rho)\Delta^2, \quad \theta \leftarrow \theta - \gamma\Delta

    The same update in Keras and optax; ``convention="keras"`` decays the weights apart
    (:math:`\theta \leftarrow \theta(1 - \gamma\lambda)` first) as Keras' optimizers do.
    """
    return _core.adadelta_(params, grads, square_avgs, acc_deltas, lr, rho, eps, weight_decay, maximize,
                           grad_scale, clip_value, l1, l2, check_finite, convention, low_params,
                           stochastic_rounding, seed, compensation)


def adamax_(params: Arrays, grads: Arrays, exp_avgs: Arrays, exp_infs: Arrays, *, step: int, lr: float = 2e-3,
            betas: Tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0,
            maximize: bool = False, grad_scale: float = 1.0, clip_value: Optional[float] = None, l1: float = 0.0,
            l2: float = 0.0, check_finite: bool = False, convention: str = "torch",
            low_params: Optional[Arrays] = None, stochastic_rounding: bool = False, seed: int = 0,
            compensation: Optional[Arrays] = None) -> bool:
    r"""Adamax (Kingma & Ba, 2015, section 7), as ``torch.optim.Adamax`` (and optax's adamax).

    .. math::
        m \leftarrow \mathrm{lerp}(m, g, 1-\beta_1), \quad u \leftarrow \max(\beta_2 u, |g| + \epsilon), \quad
        \theta \leftarrow \theta - \frac{\gamma}{1-\beta_1^t}\frac{m}{u}

    ``convention="keras"``: :math:`u \leftarrow \max(\beta_2 u, |g|)`,
    :math:`\theta \leftarrow \theta - \gamma m / ((1-\beta_1^t)(u + \epsilon))`, weight decay decoupled
    (Keras' defaults: lr 1e-3, epsilon 1e-7).
    """
    b1, b2 = _betas(betas)
    return _core.adamax_(params, grads, exp_avgs, exp_infs, step, lr, b1, b2, eps, weight_decay, maximize,
                         grad_scale, clip_value, l1, l2, check_finite, convention, low_params,
                         stochastic_rounding, seed, compensation)


def nadam_mu(step: int, beta1: float = 0.9, momentum_decay: float = 4e-3) -> float:
    r""":math:`\mu_t = \beta_1 (1 - \tfrac12 \cdot 0.96^{t\psi})`, NAdam's momentum at step t.

    The optimizer keeps the running product :math:`\prod_{k \le t} \mu_k` for :func:`nadam_`."""
    return beta1 * (1.0 - 0.5 * (0.96 ** (step * momentum_decay)))


def nadam_(params: Arrays, grads: Arrays, exp_avgs: Arrays, exp_avg_sqs: Arrays, *, step: int, mu_product: float,
           lr: float = 2e-3, betas: Tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0,
           momentum_decay: float = 4e-3, decoupled_weight_decay: bool = False, maximize: bool = False,
           grad_scale: float = 1.0, clip_value: Optional[float] = None, l1: float = 0.0, l2: float = 0.0,
           check_finite: bool = False, convention: str = "torch", low_params: Optional[Arrays] = None,
           stochastic_rounding: bool = False, seed: int = 0, compensation: Optional[Arrays] = None) -> bool:
    r"""NAdam (Dozat, 2016), as ``torch.optim.NAdam``.

    ``mu_product`` is :math:`\prod_{k=1}^{t}\mu_k` including this step's :func:`nadam_mu`.

    .. math::
        m &\leftarrow \mathrm{lerp}(m, g, 1-\beta_1), \quad v \leftarrow \beta_2 v + (1-\beta_2) g^2,
        \quad d = \sqrt{v / (1-\beta_2^t)} + \epsilon \\
        \theta &\leftarrow \theta - \gamma\frac{1-\mu_t}{1-\prod_{k\le t}\mu_k}\frac{g}{d}
                 - \gamma\frac{\mu_{t+1}}{1-\prod_{k\le t+1}\mu_k}\frac{m}{d}

    ``convention="keras"``: Keras' Nadam is this update with its momentum schedule
    :math:`\mu_t = \beta_1(1 - \tfrac12 0.96^t)`, i.e. ``momentum_decay=1`` (the class takes Keras'
    defaults: that, lr 1e-3, epsilon 1e-7, decoupled decay).  ``convention="optax"`` is
    ``optax.nadam``, Adam's Nesterov form without a momentum schedule: :func:`adam_` with
    ``nesterov=True`` (``mu_product`` and ``momentum_decay`` are not used).
    """
    if convention == "optax":
        return adam_(params, grads, exp_avgs, exp_avg_sqs, step=step, lr=lr, betas=betas, eps=eps,
                     weight_decay=weight_decay, decoupled_weight_decay=decoupled_weight_decay, maximize=maximize,
                     grad_scale=grad_scale, clip_value=clip_value, l1=l1, l2=l2, check_finite=check_finite,
                     convention="optax", nesterov=True, low_params=low_params,
                     stochastic_rounding=stochastic_rounding, seed=seed, compensation=compensation)
    if convention not in ("torch", "keras"):
        raise ValueError(f"convention must be 'torch', 'keras' or 'optax', got {convention!r}")
    b1, b2 = _betas(betas)
    return _core.nadam_(params, grads, exp_avgs, exp_avg_sqs, step, mu_product, lr, b1, b2, eps, weight_decay,
                        momentum_decay, decoupled_weight_decay, maximize, grad_scale, clip_value, l1, l2,
                        check_finite, low_params, stochastic_rounding, seed, compensation)


def radam_(params: Arrays, grads: Arrays, exp_avgs: Arrays, exp_avg_sqs: Arrays, *, step: int, lr: float = 1e-3,
           betas: Tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0,
           decoupled_weight_decay: bool = False, maximize: bool = False, grad_scale: float = 1.0,
           clip_value: Optional[float] = None, l1: float = 0.0, l2: float = 0.0, check_finite: bool = False,
           eps_root: float = 0.0, convention: str = "torch", low_params: Optional[Arrays] = None,
           stochastic_rounding: bool = False, seed: int = 0, compensation: Optional[Arrays] = None) -> bool:
    r"""RAdam (Liu et al., 2020), as ``torch.optim.RAdam``.

    .. math::
        \rho_\infty = \frac{2}{1-\beta_2} - 1, \quad
        \rho_t = \rho_\infty - \frac{2t\beta_2^t}{1-\beta_2^t}, \quad
        \hat m = \frac{m}{1-\beta_1^t} \\
        \theta \leftarrow \theta - \gamma \hat m\, \frac{\sqrt{1-\beta_2^t}}{\sqrt v + \epsilon}\, r_t
        \text{ if } \rho_t > 5 \text{, else } \theta - \gamma\hat m, \quad
        r_t = \sqrt{\frac{(\rho_t-4)(\rho_t-2)\rho_\infty}{(\rho_\infty-4)(\rho_\infty-2)\rho_t}}

    ``convention="optax"`` (``optax.radam``): epsilon on the corrected root,
    :math:`\theta \leftarrow \theta - \gamma r_t \hat m / (\sqrt{v/(1-\beta_2^t) + \epsilon_{root}} + \epsilon)`,
    rectified from :math:`\rho_t \ge 5`.  Keras has no RAdam.
    """
    b1, b2 = _betas(betas)
    return _core.radam_(params, grads, exp_avgs, exp_avg_sqs, step, lr, b1, b2, eps, weight_decay,
                        decoupled_weight_decay, maximize, grad_scale, clip_value, l1, l2, check_finite, eps_root,
                        convention, low_params, stochastic_rounding, seed, compensation)


def lion_(params: Arrays, grads: Arrays, exp_avgs: Arrays, *, lr: float = 1e-4,
          betas: Tuple[float, float] = (0.9, 0.99), weight_decay: float = 0.0, maximize: bool = False,
          grad_scale: float = 1.0, clip_value: Optional[float] = None, l1: float = 0.0, l2: float = 0.0,
          check_finite: bool = False, convention: str = "torch",
          low_params: Optional[Arrays] = None, stochastic_rounding: bool = False, seed: int = 0,
          compensation: Optional[Arrays] = None) -> bool:
    r"""Lion (Chen et al., 2023, "Symbolic Discovery of Optimization Algorithms").

    .. math::
        \theta \leftarrow \theta(1-\gamma\lambda) - \gamma\,\mathrm{sign}(\beta_1 m + (1-\beta_1) g),
        \quad m \leftarrow \beta_2 m + (1-\beta_2) g

    Defaults of the paper's code.  Keras and optax compute the same update (``convention`` is
    accepted for symmetry; their classes' defaults: Keras lr 1e-3, optax weight_decay 1e-3).
    """
    b1, b2 = _betas(betas)
    return _core.lion_(params, grads, exp_avgs, lr, b1, b2, weight_decay, maximize, grad_scale, clip_value, l1, l2,
                       check_finite, convention, low_params, stochastic_rounding, seed, compensation)


def lamb_(params: Arrays, grads: Arrays, exp_avgs: Arrays, exp_avg_sqs: Arrays, *, step: int, lr: float = 1e-3,
          betas: Tuple[float, float] = (0.9, 0.999), eps: float = 1e-6, weight_decay: float = 0.0,
          maximize: bool = False, grad_scale: float = 1.0, clip_value: Optional[float] = None, l1: float = 0.0,
          l2: float = 0.0, check_finite: bool = False, convention: str = "torch") -> bool:
    r"""LAMB (You et al., 2020), as ``optax.lamb``: Adam's direction with a trust ratio per array.

    .. math::
        r = \frac{m/(1-\beta_1^t)}{\sqrt{v/(1-\beta_2^t)} + \epsilon} + \lambda\theta, \quad
        \theta \leftarrow \theta - \gamma \frac{\lVert\theta\rVert}{\lVert r\rVert} r

    with the ratio taken as 1 where either norm is 0.  Two passes: moments and both norms,
    then the update.  ``"torch"`` and ``"optax"`` are this form; ``convention="keras"``
    (``keras.optimizers.Lamb``) decays the weights apart, :math:`\theta \leftarrow \theta(1 -
    \gamma\lambda)` first, with no :math:`\lambda\theta` in r.
    """
    b1, b2 = _betas(betas)
    return _core.lamb_(params, grads, exp_avgs, exp_avg_sqs, step, lr, b1, b2, eps, weight_decay, maximize,
                       grad_scale, clip_value, l1, l2, check_finite, convention)


# ---- clipping and regularization ----------------------------------------------------------

def global_norm(arrays: Arrays, norm_type: float = 2.0) -> float:
    """The p-norm of all arrays taken as one vector (p = 1, 2, inf or any p > 0), accumulated
    in float64 over fixed blocks, so the value is the same for every thread count."""
    return _core.global_norm(arrays, float(norm_type))


def array_norms(arrays: Arrays, norm_type: float = 2.0) -> np.ndarray:
    """The p-norm of each array, as a float64 vector."""
    return _core.array_norms(arrays, float(norm_type))


def clip_coef(total_norm: float, max_norm: float) -> float:
    """``min(1, max_norm / (total_norm + 1e-6))``, the factor torch's ``clip_grad_norm_`` applies;
    pass it as ``grad_scale`` to fuse the clip into an update."""
    coef = max_norm / (total_norm + 1e-6)
    return coef if not coef >= 1.0 else 1.0


def clip_grad_norm_(grads: Arrays, max_norm: float, norm_type: float = 2.0,
                    error_if_nonfinite: bool = False) -> float:
    """Scale the gradients in place so their global norm is at most ``max_norm``, as
    ``torch.nn.utils.clip_grad_norm_``; returns the total norm before clipping.

    Costs one read pass, and one write pass only when the norm is over ``max_norm``.
    """
    max_norm = float(max_norm)
    if not max_norm >= 0.0:
        raise ValueError(f"max_norm must be >= 0, got {max_norm}")
    total = global_norm(grads, norm_type)
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(f"The total norm of order {norm_type} for gradients is non-finite, so it cannot be "
                           "clipped. To disable this error and scale the gradients by the non-finite norm anyway, "
                           "set `error_if_nonfinite=False`")
    coef = clip_coef(total, max_norm)
    if math.isnan(coef):  # a NaN norm spreads to every gradient, as in torch
        arrays = [grads] if isinstance(grads, np.ndarray) else list(grads)
        for i, g in enumerate(arrays):  # all or nothing: every array checked before the first is written
            if not g.flags.writeable:
                raise ValueError(f"grads[{i}] is read-only")
        for g in arrays:
            g.fill(np.nan)
    elif coef < 1.0:
        _core.transform_(grads, None, coef)
    return total


def clip_grad_value_(grads: Arrays, clip_value: float) -> None:
    """Clamp the gradients in place to ``[-clip_value, clip_value]``, as torch's ``clip_grad_value_``."""
    _core.transform_(grads, None, 1.0, float(clip_value))


def scale_(grads: Arrays, factor: float) -> None:
    """``grads *= factor`` in place (any finite factor), in one parallel pass over every array."""
    factor = float(factor)
    if not math.isfinite(factor):
        raise ValueError(f"factor must be a finite number, got {factor}")
    _core.transform_(grads, None, factor)


def regularize_grad_(grads: Arrays, params: Arrays, l1: float = 0.0, l2: float = 0.0) -> None:
    """Add the gradient of ``l1 * sum|p| + l2 * sum p**2`` to the gradients in place:
    ``g += l1 * sign(p) + 2 * l2 * p``.  l1 alone is lasso, l2 alone ridge, both elastic net."""
    _core.transform_(grads, params, 1.0, None, float(l1), float(l2))


def penalty(params: Arrays, l1: float = 0.0, l2: float = 0.0) -> float:
    """The penalty ``l1 * sum|p| + l2 * sum p**2`` over all arrays, for loss reporting."""
    return _core.penalty(params, float(l1), float(l2))


def elastic_net(alpha: float, l1_ratio: float = 0.5) -> Tuple[float, float]:
    """(l1, l2) for scikit-learn's elastic net penalty
    ``alpha * l1_ratio * |w|_1 + 0.5 * alpha * (1 - l1_ratio) * |w|_2^2``."""
    if not 0.0 <= l1_ratio <= 1.0:
        raise ValueError(f"l1_ratio must be in [0, 1], got {l1_ratio}")
    if not alpha >= 0.0:
        raise ValueError(f"alpha must be >= 0, got {alpha}")
    return alpha * l1_ratio, 0.5 * alpha * (1.0 - l1_ratio)


def all_finite(arrays: Arrays) -> bool:
    """True when no array holds a NaN or an infinity (one read-only pass)."""
    return _core.all_finite(arrays)
