# Signatures of the torch optimizer classes for type checkers and IDEs (tests/test_typing.py checks them
# against the classes).

from typing import Any, Callable, Dict, Iterable, Optional, Tuple, Union

import torch

TORCH_OPTIONS: Dict[str, Any]


class FastoptOptimizer(torch.optim.Optimizer):
    rule: type
    skipped_steps: int
    def __init__(self, params: Any, **hyper: Any) -> None: ...
    def step(self, closure: Optional[Callable[[], float]] = ...) -> Optional[float]: ...  # type: ignore[override]


class SGD(FastoptOptimizer):
    def __init__(self, params: Any, lr: Union[float, torch.Tensor] = 0.001, *, momentum: float = 0.0, dampening: float = 0.0, weight_decay: float = 0.0, nesterov: bool = False, convention: str = 'torch', clipnorm: Optional[float] = None, clipvalue: Optional[float] = None, global_clipnorm: Optional[float] = None, l1: float = 0.0, l2: float = 0.0, maximize: bool = False, check_finite: bool = False, state_dtype: str = 'float32', master_weights: bool = False, stochastic_rounding: bool = False, seed: int = 0, kahan: bool = False, foreach: Optional[bool] = None, fused: Optional[bool] = None, capturable: bool = False, differentiable: bool = False) -> None: ...

class Adam(FastoptOptimizer):
    def __init__(self, params: Any, lr: Union[float, torch.Tensor] = 0.001, *, betas: Tuple[float, float] = (0.9, 0.999), eps: float = 1e-08, weight_decay: float = 0.0, amsgrad: bool = False, decoupled_weight_decay: bool = False, eps_root: float = 0.0, bias_correction: bool = True, convention: str = 'torch', clipnorm: Optional[float] = None, clipvalue: Optional[float] = None, global_clipnorm: Optional[float] = None, l1: float = 0.0, l2: float = 0.0, maximize: bool = False, check_finite: bool = False, state_dtype: str = 'float32', master_weights: bool = False, stochastic_rounding: bool = False, seed: int = 0, kahan: bool = False, foreach: Optional[bool] = None, fused: Optional[bool] = None, capturable: bool = False, differentiable: bool = False) -> None: ...

class AdamW(FastoptOptimizer):
    def __init__(self, params: Any, lr: Union[float, torch.Tensor] = 0.001, *, betas: Tuple[float, float] = (0.9, 0.999), eps: float = 1e-08, weight_decay: float = 0.01, amsgrad: bool = False, decoupled_weight_decay: bool = True, eps_root: float = 0.0, bias_correction: bool = True, convention: str = 'torch', clipnorm: Optional[float] = None, clipvalue: Optional[float] = None, global_clipnorm: Optional[float] = None, l1: float = 0.0, l2: float = 0.0, maximize: bool = False, check_finite: bool = False, state_dtype: str = 'float32', master_weights: bool = False, stochastic_rounding: bool = False, seed: int = 0, kahan: bool = False, foreach: Optional[bool] = None, fused: Optional[bool] = None, capturable: bool = False, differentiable: bool = False) -> None: ...

class Adagrad(FastoptOptimizer):
    def __init__(self, params: Any, lr: Union[float, torch.Tensor] = 0.01, *, lr_decay: float = 0.0, weight_decay: float = 0.0, initial_accumulator_value: float = 0.0, eps: float = 1e-10, convention: str = 'torch', clipnorm: Optional[float] = None, clipvalue: Optional[float] = None, global_clipnorm: Optional[float] = None, l1: float = 0.0, l2: float = 0.0, maximize: bool = False, check_finite: bool = False, state_dtype: str = 'float32', master_weights: bool = False, stochastic_rounding: bool = False, seed: int = 0, kahan: bool = False, foreach: Optional[bool] = None, fused: Optional[bool] = None, capturable: bool = False, differentiable: bool = False) -> None: ...

class RMSprop(FastoptOptimizer):
    def __init__(self, params: Any, lr: Union[float, torch.Tensor] = 0.01, *, alpha: float = 0.99, eps: float = 1e-08, weight_decay: float = 0.0, momentum: float = 0.0, centered: bool = False, convention: str = 'torch', clipnorm: Optional[float] = None, clipvalue: Optional[float] = None, global_clipnorm: Optional[float] = None, l1: float = 0.0, l2: float = 0.0, maximize: bool = False, check_finite: bool = False, state_dtype: str = 'float32', master_weights: bool = False, stochastic_rounding: bool = False, seed: int = 0, kahan: bool = False, foreach: Optional[bool] = None, fused: Optional[bool] = None, capturable: bool = False, differentiable: bool = False) -> None: ...

class Adadelta(FastoptOptimizer):
    def __init__(self, params: Any, lr: Union[float, torch.Tensor] = 1.0, *, rho: float = 0.9, eps: float = 1e-06, weight_decay: float = 0.0, convention: str = 'torch', clipnorm: Optional[float] = None, clipvalue: Optional[float] = None, global_clipnorm: Optional[float] = None, l1: float = 0.0, l2: float = 0.0, maximize: bool = False, check_finite: bool = False, state_dtype: str = 'float32', master_weights: bool = False, stochastic_rounding: bool = False, seed: int = 0, kahan: bool = False, foreach: Optional[bool] = None, fused: Optional[bool] = None, capturable: bool = False, differentiable: bool = False) -> None: ...

class Adamax(FastoptOptimizer):
    def __init__(self, params: Any, lr: Union[float, torch.Tensor] = 0.002, *, betas: Tuple[float, float] = (0.9, 0.999), eps: float = 1e-08, weight_decay: float = 0.0, convention: str = 'torch', clipnorm: Optional[float] = None, clipvalue: Optional[float] = None, global_clipnorm: Optional[float] = None, l1: float = 0.0, l2: float = 0.0, maximize: bool = False, check_finite: bool = False, state_dtype: str = 'float32', master_weights: bool = False, stochastic_rounding: bool = False, seed: int = 0, kahan: bool = False, foreach: Optional[bool] = None, fused: Optional[bool] = None, capturable: bool = False, differentiable: bool = False) -> None: ...

class NAdam(FastoptOptimizer):
    def __init__(self, params: Any, lr: Union[float, torch.Tensor] = 0.002, *, betas: Tuple[float, float] = (0.9, 0.999), eps: float = 1e-08, weight_decay: float = 0.0, momentum_decay: float = 0.004, decoupled_weight_decay: bool = False, convention: str = 'torch', clipnorm: Optional[float] = None, clipvalue: Optional[float] = None, global_clipnorm: Optional[float] = None, l1: float = 0.0, l2: float = 0.0, maximize: bool = False, check_finite: bool = False, state_dtype: str = 'float32', master_weights: bool = False, stochastic_rounding: bool = False, seed: int = 0, kahan: bool = False, foreach: Optional[bool] = None, fused: Optional[bool] = None, capturable: bool = False, differentiable: bool = False) -> None: ...

class RAdam(FastoptOptimizer):
    def __init__(self, params: Any, lr: Union[float, torch.Tensor] = 0.001, *, betas: Tuple[float, float] = (0.9, 0.999), eps: float = 1e-08, weight_decay: float = 0.0, decoupled_weight_decay: bool = False, eps_root: float = 0.0, convention: str = 'torch', clipnorm: Optional[float] = None, clipvalue: Optional[float] = None, global_clipnorm: Optional[float] = None, l1: float = 0.0, l2: float = 0.0, maximize: bool = False, check_finite: bool = False, state_dtype: str = 'float32', master_weights: bool = False, stochastic_rounding: bool = False, seed: int = 0, kahan: bool = False, foreach: Optional[bool] = None, fused: Optional[bool] = None, capturable: bool = False, differentiable: bool = False) -> None: ...

class Lion(FastoptOptimizer):
    def __init__(self, params: Any, lr: Union[float, torch.Tensor] = 0.0001, *, betas: Tuple[float, float] = (0.9, 0.99), weight_decay: float = 0.0, convention: str = 'torch', clipnorm: Optional[float] = None, clipvalue: Optional[float] = None, global_clipnorm: Optional[float] = None, l1: float = 0.0, l2: float = 0.0, maximize: bool = False, check_finite: bool = False, state_dtype: str = 'float32', master_weights: bool = False, stochastic_rounding: bool = False, seed: int = 0, kahan: bool = False, foreach: Optional[bool] = None, fused: Optional[bool] = None, capturable: bool = False, differentiable: bool = False) -> None: ...

class LAMB(FastoptOptimizer):
    def __init__(self, params: Any, lr: Union[float, torch.Tensor] = 0.001, *, betas: Tuple[float, float] = (0.9, 0.999), eps: float = 1e-06, weight_decay: float = 0.0, convention: str = 'torch', clipnorm: Optional[float] = None, clipvalue: Optional[float] = None, global_clipnorm: Optional[float] = None, l1: float = 0.0, l2: float = 0.0, maximize: bool = False, check_finite: bool = False, state_dtype: str = 'float32', master_weights: bool = False, stochastic_rounding: bool = False, seed: int = 0, kahan: bool = False, foreach: Optional[bool] = None, fused: Optional[bool] = None, capturable: bool = False, differentiable: bool = False) -> None: ...


def clip_grad_norm_(parameters: Union[torch.Tensor, Iterable[torch.Tensor]], max_norm: float, norm_type: float = 2.0,
                    error_if_nonfinite: bool = False, foreach: Optional[bool] = None) -> torch.Tensor: ...


def clip_grad_value_(parameters: Union[torch.Tensor, Iterable[torch.Tensor]], clip_value: float,
                     foreach: Optional[bool] = None) -> None: ...
