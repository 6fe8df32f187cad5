"""fastopt: fast in-place optimizer steps on the CPU."""
from ._config import __version__, config, get_num_threads, set_num_threads, show_config
from .precision import Blockwise8, dequantize_8bit, quantize_8bit
from .functional import (
    adadelta_, adagrad_, adam_, adamax_, adamw_, all_finite, array_norms, clip_coef, clip_grad_norm_,
    clip_grad_value_, elastic_net, gd_, global_norm, lamb_, lion_, nadam_, nadam_mu, penalty, radam_,
    regularize_grad_, rmsprop_, scale_, sgd_,
)

__all__ = [
    "__version__", "config", "get_num_threads", "set_num_threads", "show_config",
    "Blockwise8", "quantize_8bit", "dequantize_8bit",
    "adadelta_", "adagrad_", "adam_", "adamax_", "adamw_", "all_finite", "array_norms", "clip_coef",
    "clip_grad_norm_", "clip_grad_value_", "elastic_net", "gd_", "global_norm", "lamb_", "lion_", "nadam_",
    "nadam_mu", "penalty", "radam_", "regularize_grad_", "rmsprop_", "scale_", "sgd_",
]

from . import nn, optim, precision, schedules, search, train  # noqa: E402  (the Python layer)
