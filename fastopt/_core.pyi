# Type stubs of the compiled extension (made with pybind11-stubgen; tests/test_typing.py checks they match it).
"""
fastopt kernels: in-place optimizer updates, clipping and regularization (see fastopt.functional)
"""
from __future__ import annotations
import collections.abc
import numpy
import numpy.typing
import typing
__all__: list[str] = ['CHUNK', 'QBLOCK', 'act_backward_', 'adadelta_', 'adagrad_', 'adam_', 'adamax_', 'all_finite', 'array_norms', 'bias_act_', 'compiled_isas', 'dequantize_8bit_', 'gd_', 'get_num_threads', 'global_norm', 'isa', 'lamb_', 'lion_', 'nadam_', 'penalty', 'pool_info', 'quantize_8bit_', 'radam_', 'rmsprop_', 'set_num_threads', 'sgd_', 'softmax_xent_', 'stream_', 'supported_isas', 'take_rows_', 'transform_']
class _Prepared:
    """
    An update call kept by _prepare, run again on a torch group's new gradients, step and lr.
    """
    def expect_torch(self, expected: tuple, ptrs: tuple, sizes: tuple, dtype: typing.Any, strided: typing.Any) -> None:
        """
        What run() checks of the group: its parameters, their addresses, gradient sizes (-1: none), dtype.
        """
    def run(self, params: typing.Any, step: typing.SupportsInt | typing.SupportsIndex, lr: typing.SupportsFloat | typing.SupportsIndex, mu_product: typing.SupportsFloat | typing.SupportsIndex | None = None) -> typing.Any:
        """
        The step on the group's gradients: True, False (check_finite met a NaN or Inf) or None (the group changed: nothing done).  mu_product: NAdam's, required by its update and refused by others.
        """
def _omp_team_available() -> bool:
    """
    Whether an OpenMP runtime (libgomp's GOMP_parallel) is loaded in this process, outside a forked child.
    """
def _alias_walk() -> bool:
    """
    Whether elementwise steps walk a range down where its arrays would stall on 4K aliasing walking up (by default on Intel CPUs only; FASTOPT_ALIAS_WALK=1 or 0 overrides).
    """
def _down_walks() -> int:
    """
    Ranges an elementwise step walked from the end, its arrays placed so that walking up would stall on 4K aliasing, since the module loaded (a test hook).
    """
def _prepare(arg0: collections.abc.Callable, *args, **kwargs) -> tuple[typing.Any, typing.Any]:
    """
    fn(*args, **kwargs), keeping the update call it makes: (its result, a _Prepared).
    """
def _q8_direct_calls() -> int:
    """
    Kernel calls that took the 8-bit direct path since the module loaded (a test hook).
    """
def _set_alias_walk(on: bool) -> bool:
    """
    Turn the walk down against 4K aliasing on or off; returns the previous setting (a test hook).
    """
def _set_direct_lean(on: bool) -> bool:
    """
    8-bit state and stochastic rounding: the direct paths (True, the default) or the buffered one (the same bits); returns the previous setting.
    """
def _set_isa(name: str) -> None:
    ...
def _set_thread_omp_team(on: bool) -> bool:
    """
    This thread's calls on the process's OpenMP team (True; where there is one) or on fastopt's own (False, the default); returns the previous setting.
    """
def _set_thread_parallel_min(n: typing.SupportsInt | typing.SupportsIndex) -> int:
    """
    This thread's fewest elements for a call to use helper threads (0: the default); returns the previous value.
    """
def _thread_setting() -> int:
    """
    set_num_threads' value, 0 when unset (the default applies).
    """
def _torch_grads(params: typing.Any, expected: typing.Any, ptrs: typing.Any, sizes: typing.Any, dtype: typing.Any, strided: typing.Any, np_dtype: typing.Any) -> typing.Any:
    """
    fastopt.torch's prepared step: the group's gradients as 1-D NumPy views, or None where the group is not as its plan found it.
    """
def act_backward_(d: typing.Any, a: typing.Any, act: str) -> None:
    """
    d <- d * act'(z) in place, from the activation's output a = act(z).
    """
def adadelta_(params: typing.Any, grads: typing.Any, square_avgs: typing.Any, acc_deltas: typing.Any, lr: typing.SupportsFloat | typing.SupportsIndex, rho: typing.SupportsFloat | typing.SupportsIndex, eps: typing.SupportsFloat | typing.SupportsIndex, weight_decay: typing.SupportsFloat | typing.SupportsIndex, maximize: bool = False, grad_scale: typing.SupportsFloat | typing.SupportsIndex = 1.0, clip_value: typing.SupportsFloat | typing.SupportsIndex | None = None, l1: typing.SupportsFloat | typing.SupportsIndex = 0.0, l2: typing.SupportsFloat | typing.SupportsIndex = 0.0, check_finite: bool = False, convention: str = 'torch', low_params: typing.Any = None, stochastic_rounding: bool = False, seed: typing.Any = 0, compensation: typing.Any = None) -> bool:
    ...
def adagrad_(params: typing.Any, grads: typing.Any, state_sums: typing.Any, step: typing.SupportsInt | typing.SupportsIndex, lr: typing.SupportsFloat | typing.SupportsIndex, lr_decay: typing.SupportsFloat | typing.SupportsIndex, weight_decay: typing.SupportsFloat | typing.SupportsIndex, eps: typing.SupportsFloat | typing.SupportsIndex, maximize: bool = False, grad_scale: typing.SupportsFloat | typing.SupportsIndex = 1.0, clip_value: typing.SupportsFloat | typing.SupportsIndex | None = None, l1: typing.SupportsFloat | typing.SupportsIndex = 0.0, l2: typing.SupportsFloat | typing.SupportsIndex = 0.0, check_finite: bool = False, convention: str = 'torch', low_params: typing.Any = None, stochastic_rounding: bool = False, seed: typing.Any = 0, compensation: typing.Any = None) -> bool:
    ...
def adam_(params: typing.Any, grads: typing.Any, exp_avgs: typing.Any, exp_avg_sqs: typing.Any, max_exp_avg_sqs: typing.Any, step: typing.SupportsInt | typing.SupportsIndex, lr: typing.SupportsFloat | typing.SupportsIndex, beta1: typing.SupportsFloat | typing.SupportsIndex, beta2: typing.SupportsFloat | typing.SupportsIndex, eps: typing.SupportsFloat | typing.SupportsIndex, weight_decay: typing.SupportsFloat | typing.SupportsIndex, amsgrad: bool, decoupled_weight_decay: bool, maximize: bool = False, grad_scale: typing.SupportsFloat | typing.SupportsIndex = 1.0, clip_value: typing.SupportsFloat | typing.SupportsIndex | None = None, l1: typing.SupportsFloat | typing.SupportsIndex = 0.0, l2: typing.SupportsFloat | typing.SupportsIndex = 0.0, check_finite: bool = False, eps_root: typing.SupportsFloat | typing.SupportsIndex = 0.0, bias_correction: bool = True, convention: str = 'torch', nesterov: bool = False, low_params: typing.Any = None, stochastic_rounding: bool = False, seed: typing.Any = 0, compensation: typing.Any = None) -> bool:
    ...
def adamax_(params: typing.Any, grads: typing.Any, exp_avgs: typing.Any, exp_infs: typing.Any, step: typing.SupportsInt | typing.SupportsIndex, lr: typing.SupportsFloat | typing.SupportsIndex, beta1: typing.SupportsFloat | typing.SupportsIndex, beta2: typing.SupportsFloat | typing.SupportsIndex, eps: typing.SupportsFloat | typing.SupportsIndex, weight_decay: typing.SupportsFloat | typing.SupportsIndex, maximize: bool = False, grad_scale: typing.SupportsFloat | typing.SupportsIndex = 1.0, clip_value: typing.SupportsFloat | typing.SupportsIndex | None = None, l1: typing.SupportsFloat | typing.SupportsIndex = 0.0, l2: typing.SupportsFloat | typing.SupportsIndex = 0.0, check_finite: bool = False, convention: str = 'torch', low_params: typing.Any = None, stochastic_rounding: bool = False, seed: typing.Any = 0, compensation: typing.Any = None) -> bool:
    ...
def all_finite(arrays: typing.Any) -> bool:
    """
    True when no array holds a NaN or an infinity.
    """
def array_norms(arrays: typing.Any, norm_type: typing.SupportsFloat | typing.SupportsIndex = 2.0) -> numpy.typing.NDArray[numpy.float64]:
    """
    The norm of each array, accumulated in float64.
    """
def bias_act_(z: typing.Any, b: typing.Any, act: str) -> None:
    """
    z <- act(z + b) in place, b added to every row.
    """
def compiled_isas() -> list[str]:
    ...
def dequantize_8bit_(codes: typing.Any, absmax: typing.Any, out: typing.Any, nonneg: bool) -> None:
    """
    out <- the float32 values of an 8-bit blockwise code.
    """
def gd_(params: typing.Any, grads: typing.Any, lr: typing.SupportsFloat | typing.SupportsIndex, maximize: bool = False, grad_scale: typing.SupportsFloat | typing.SupportsIndex = 1.0, clip_value: typing.SupportsFloat | typing.SupportsIndex | None = None, l1: typing.SupportsFloat | typing.SupportsIndex = 0.0, l2: typing.SupportsFloat | typing.SupportsIndex = 0.0, check_finite: bool = False, low_params: typing.Any = None, stochastic_rounding: bool = False, seed: typing.Any = 0, compensation: typing.Any = None) -> bool:
    ...
def get_num_threads() -> int:
    ...
def global_norm(arrays: typing.Any, norm_type: typing.SupportsFloat | typing.SupportsIndex = 2.0) -> float:
    """
    The norm of all arrays taken together (as one concatenated vector), accumulated in float64.
    """
def isa() -> str:
    """
    The instruction set in use.
    """
def lamb_(params: typing.Any, grads: typing.Any, exp_avgs: typing.Any, exp_avg_sqs: typing.Any, step: typing.SupportsInt | typing.SupportsIndex, lr: typing.SupportsFloat | typing.SupportsIndex, beta1: typing.SupportsFloat | typing.SupportsIndex, beta2: typing.SupportsFloat | typing.SupportsIndex, eps: typing.SupportsFloat | typing.SupportsIndex, weight_decay: typing.SupportsFloat | typing.SupportsIndex, maximize: bool = False, grad_scale: typing.SupportsFloat | typing.SupportsIndex = 1.0, clip_value: typing.SupportsFloat | typing.SupportsIndex | None = None, l1: typing.SupportsFloat | typing.SupportsIndex = 0.0, l2: typing.SupportsFloat | typing.SupportsIndex = 0.0, check_finite: bool = False, convention: str = 'torch') -> bool:
    ...
def lion_(params: typing.Any, grads: typing.Any, exp_avgs: typing.Any, lr: typing.SupportsFloat | typing.SupportsIndex, beta1: typing.SupportsFloat | typing.SupportsIndex, beta2: typing.SupportsFloat | typing.SupportsIndex, weight_decay: typing.SupportsFloat | typing.SupportsIndex, maximize: bool = False, grad_scale: typing.SupportsFloat | typing.SupportsIndex = 1.0, clip_value: typing.SupportsFloat | typing.SupportsIndex | None = None, l1: typing.SupportsFloat | typing.SupportsIndex = 0.0, l2: typing.SupportsFloat | typing.SupportsIndex = 0.0, check_finite: bool = False, convention: str = 'torch', low_params: typing.Any = None, stochastic_rounding: bool = False, seed: typing.Any = 0, compensation: typing.Any = None) -> bool:
    ...
def nadam_(params: typing.Any, grads: typing.Any, exp_avgs: typing.Any, exp_avg_sqs: typing.Any, step: typing.SupportsInt | typing.SupportsIndex, mu_product: typing.SupportsFloat | typing.SupportsIndex, lr: typing.SupportsFloat | typing.SupportsIndex, beta1: typing.SupportsFloat | typing.SupportsIndex, beta2: typing.SupportsFloat | typing.SupportsIndex, eps: typing.SupportsFloat | typing.SupportsIndex, weight_decay: typing.SupportsFloat | typing.SupportsIndex, momentum_decay: typing.SupportsFloat | typing.SupportsIndex, decoupled_weight_decay: bool, maximize: bool = False, grad_scale: typing.SupportsFloat | typing.SupportsIndex = 1.0, clip_value: typing.SupportsFloat | typing.SupportsIndex | None = None, l1: typing.SupportsFloat | typing.SupportsIndex = 0.0, l2: typing.SupportsFloat | typing.SupportsIndex = 0.0, check_finite: bool = False, low_params: typing.Any = None, stochastic_rounding: bool = False, seed: typing.Any = 0, compensation: typing.Any = None) -> bool:
    ...
def penalty(params: typing.Any, l1: typing.SupportsFloat | typing.SupportsIndex = 0.0, l2: typing.SupportsFloat | typing.SupportsIndex = 0.0) -> float:
    """
    l1 * sum(|p|) + l2 * sum(p**2) over all arrays, accumulated in float64.
    """
def pool_info() -> dict:
    """
    The thread team: workers started, microseconds a worker spins before it sleeps, the thread cap.
    """
def quantize_8bit_(x: typing.Any, codes: typing.Any, absmax: typing.Any, nonneg: bool) -> None:
    """
    codes, absmax <- the 8-bit blockwise code of the float32 vector x (see fastopt.quantize_8bit).
    """
def radam_(params: typing.Any, grads: typing.Any, exp_avgs: typing.Any, exp_avg_sqs: typing.Any, step: typing.SupportsInt | typing.SupportsIndex, lr: typing.SupportsFloat | typing.SupportsIndex, beta1: typing.SupportsFloat | typing.SupportsIndex, beta2: typing.SupportsFloat | typing.SupportsIndex, eps: typing.SupportsFloat | typing.SupportsIndex, weight_decay: typing.SupportsFloat | typing.SupportsIndex, decoupled_weight_decay: bool, maximize: bool = False, grad_scale: typing.SupportsFloat | typing.SupportsIndex = 1.0, clip_value: typing.SupportsFloat | typing.SupportsIndex | None = None, l1: typing.SupportsFloat | typing.SupportsIndex = 0.0, l2: typing.SupportsFloat | typing.SupportsIndex = 0.0, check_finite: bool = False, eps_root: typing.SupportsFloat | typing.SupportsIndex = 0.0, convention: str = 'torch', low_params: typing.Any = None, stochastic_rounding: bool = False, seed: typing.Any = 0, compensation: typing.Any = None) -> bool:
    ...
def rmsprop_(params: typing.Any, grads: typing.Any, square_avgs: typing.Any, grad_avgs: typing.Any, momentum_buffers: typing.Any, lr: typing.SupportsFloat | typing.SupportsIndex, alpha: typing.SupportsFloat | typing.SupportsIndex, eps: typing.SupportsFloat | typing.SupportsIndex, weight_decay: typing.SupportsFloat | typing.SupportsIndex, momentum: typing.SupportsFloat | typing.SupportsIndex, centered: bool, maximize: bool = False, grad_scale: typing.SupportsFloat | typing.SupportsIndex = 1.0, clip_value: typing.SupportsFloat | typing.SupportsIndex | None = None, l1: typing.SupportsFloat | typing.SupportsIndex = 0.0, l2: typing.SupportsFloat | typing.SupportsIndex = 0.0, check_finite: bool = False, convention: str = 'torch', low_params: typing.Any = None, stochastic_rounding: bool = False, seed: typing.Any = 0, compensation: typing.Any = None) -> bool:
    ...
def set_num_threads(n: typing.SupportsInt | typing.SupportsIndex) -> None:
    ...
def sgd_(params: typing.Any, grads: typing.Any, momentum_buffers: typing.Any, step: typing.SupportsInt | typing.SupportsIndex, lr: typing.SupportsFloat | typing.SupportsIndex, momentum: typing.SupportsFloat | typing.SupportsIndex, dampening: typing.SupportsFloat | typing.SupportsIndex, weight_decay: typing.SupportsFloat | typing.SupportsIndex, nesterov: bool, maximize: bool = False, grad_scale: typing.SupportsFloat | typing.SupportsIndex = 1.0, clip_value: typing.SupportsFloat | typing.SupportsIndex | None = None, l1: typing.SupportsFloat | typing.SupportsIndex = 0.0, l2: typing.SupportsFloat | typing.SupportsIndex = 0.0, check_finite: bool = False, convention: str = 'torch', low_params: typing.Any = None, stochastic_rounding: bool = False, seed: typing.Any = 0, compensation: typing.Any = None) -> bool:
    ...
def softmax_xent_(z: typing.Any, y: typing.Any, dz: typing.Any, scale: typing.SupportsFloat | typing.SupportsIndex) -> tuple[float, float]:
    """
    Softmax cross-entropy on logits z and int64 labels y: dz <- (softmax(z) - onehot(y)) * scale; returns (sum of the rows' losses, count of rows whose first argmax is y).
    """
def stream_(params: typing.Any, grads: typing.Any, states: collections.abc.Sequence[typing.Any], c: typing.SupportsFloat | typing.SupportsIndex = 0.0, low_params: typing.Any = None, stochastic_rounding: bool = False, seed: typing.Any = 0, compensation: typing.Any = None) -> bool:
    """
    Bandwidth probe: params += c * grads and s += c * grads for each state list; the loads and stores of a rule with len(states) state arrays and none of its math.
    """
def supported_isas() -> list[str]:
    ...
def take_rows_(x: typing.Any, index: typing.Any, out: typing.Any) -> None:
    """
    out[r] = x[index[r]] for every r (numpy.take(x, index, axis=0, out=out)), on fastopt's threads when large.
    """
def transform_(grads: typing.Any, params: typing.Any = None, scale: typing.SupportsFloat | typing.SupportsIndex = 1.0, clip_value: typing.SupportsFloat | typing.SupportsIndex | None = None, l1: typing.SupportsFloat | typing.SupportsIndex = 0.0, l2: typing.SupportsFloat | typing.SupportsIndex = 0.0, maximize: bool = False) -> None:
    """
    grads <- scale * grads, clamped to [-clip_value, clip_value], negated if maximize, plus l1 * sign(params) + 2 * l2 * params; in place.
    """
CHUNK: int = 16384
QBLOCK: int = 256
__version__: str = '0.1.0'
