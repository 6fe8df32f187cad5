# Signatures of the optimizer classes for type checkers and IDEs (tests/test_typing.py checks them
# against the classes).

from typing import Any, Dict, Optional, Tuple

from .optimizer import Optimizer, ParamsT


class SGD(Optimizer):
    def __init__(self, params: ParamsT, lr: float = 0.001, *, momentum: float = 0.0, dampening: float = 0.0, weight_decay: float = 0.0, nesterov: bool = False, convention: str = 'torch', clipnorm: Optional[float] = None, clipvalue: Optional[float] = None, global_clipnorm: Optional[float] = None, l1: float = 0.0, l2: float = 0.0, maximize: bool = False, check_finite: bool = False, state_dtype: str = 'float32', master_weights: bool = False, stochastic_rounding: bool = False, seed: int = 0, kahan: bool = False) -> None: ...

class Adam(Optimizer):
    def __init__(self, params: ParamsT, lr: float = 0.001, *, betas: Tuple[float, float] = (0.9, 0.999), eps: float = 1e-08, weight_decay: float = 0.0, amsgrad: bool = False, decoupled_weight_decay: bool = False, eps_root: float = 0.0, bias_correction: bool = True, convention: str = 'torch', clipnorm: Optional[float] = None, clipvalue: Optional[float] = None, global_clipnorm: Optional[float] = None, l1: float = 0.0, l2: float = 0.0, maximize: bool = False, check_finite: bool = False, state_dtype: str = 'float32', master_weights: bool = False, stochastic_rounding: bool = False, seed: int = 0, kahan: bool = False) -> None: ...

class AdamW(Adam):
    def __init__(self, params: ParamsT, lr: float = 0.001, *, betas: Tuple[float, float] = (0.9, 0.999), eps: float = 1e-08, weight_decay: float = 0.01, amsgrad: bool = False, decoupled_weight_decay: bool = True, eps_root: float = 0.0, bias_correction: bool = True, convention: str = 'torch', clipnorm: Optional[float] = None, clipvalue: Optional[float] = None, global_clipnorm: Optional[float] = None, l1: float = 0.0, l2: float = 0.0, maximize: bool = False, check_finite: bool = False, state_dtype: str = 'float32', master_weights: bool = False, stochastic_rounding: bool = False, seed: int = 0, kahan: bool = False) -> None: ...

class Adagrad(Optimizer):
    def __init__(self, params: ParamsT, lr: float = 0.01, *, lr_decay: float = 0.0, weight_decay: float = 0.0, initial_accumulator_value: float = 0.0, eps: float = 1e-10, convention: str = 'torch', clipnorm: Optional[float] = None, clipvalue: Optional[float] = None, global_clipnorm: Optional[float] = None, l1: float = 0.0, l2: float = 0.0, maximize: bool = False, check_finite: bool = False, state_dtype: str = 'float32', master_weights: bool = False, stochastic_rounding: bool = False, seed: int = 0, kahan: bool = False) -> None: ...

class RMSprop(Optimizer):
    def __init__(self, params: ParamsT, lr: float = 0.01, *, alpha: float = 0.99, eps: float = 1e-08, weight_decay: float = 0.0, momentum: float = 0.0, centered: bool = False, convention: str = 'torch', clipnorm: Optional[float] = None, clipvalue: Optional[float] = None, global_clipnorm: Optional[float] = None, l1: float = 0.0, l2: float = 0.0, maximize: bool = False, check_finite: bool = False, state_dtype: str = 'float32', master_weights: bool = False, stochastic_rounding: bool = False, seed: int = 0, kahan: bool = False) -> None: ...

class Adadelta(Optimizer):
    def __init__(self, params: ParamsT, lr: float = 1.0, *, rho: float = 0.9, eps: float = 1e-06, weight_decay: float = 0.0, convention: str = 'torch', clipnorm: Optional[float] = None, clipvalue: Optional[float] = None, global_clipnorm: Optional[float] = None, l1: float = 0.0, l2: float = 0.0, maximize: bool = False, check_finite: bool = False, state_dtype: str = 'float32', master_weights: bool = False, stochastic_rounding: bool = False, seed: int = 0, kahan: bool = False) -> None: ...

class Adamax(Optimizer):
    def __init__(self, params: ParamsT, lr: float = 0.002, *, betas: Tuple[float, float] = (0.9, 0.999), eps: float = 1e-08, weight_decay: float = 0.0, convention: str = 'torch', clipnorm: Optional[float] = None, clipvalue: Optional[float] = None, global_clipnorm: Optional[float] = None, l1: float = 0.0, l2: float = 0.0, maximize: bool = False, check_finite: bool = False, state_dtype: str = 'float32', master_weights: bool = False, stochastic_rounding: bool = False, seed: int = 0, kahan: bool = False) -> None: ...

class NAdam(Optimizer):
    def __init__(self, params: ParamsT, lr: float = 0.002, *, betas: Tuple[float, float] = (0.9, 0.999), eps: float = 1e-08, weight_decay: float = 0.0, momentum_decay: float = 0.004, decoupled_weight_decay: bool = False, convention: str = 'torch', clipnorm: Optional[float] = None, clipvalue: Optional[float] = None, global_clipnorm: Optional[float] = None, l1: float = 0.0, l2: float = 0.0, maximize: bool = False, check_finite: bool = False, state_dtype: str = 'float32', master_weights: bool = False, stochastic_rounding: bool = False, seed: int = 0, kahan: bool = False) -> None: ...

class RAdam(Optimizer):
    def __init__(self, params: ParamsT, lr: float = 0.001, *, betas: Tuple[float, float] = (0.9, 0.999), eps: float = 1e-08, weight_decay: float = 0.0, decoupled_weight_decay: bool = False, eps_root: float = 0.0, convention: str = 'torch', clipnorm: Optional[float] = None, clipvalue: Optional[float] = None, global_clipnorm: Optional[float] = None, l1: float = 0.0, l2: float = 0.0, maximize: bool = False, check_finite: bool = False, state_dtype: str = 'float32', master_weights: bool = False, stochastic_rounding: bool = False, seed: int = 0, kahan: bool = False) -> None: ...

class Lion(Optimizer):
    def __init__(self, params: ParamsT, lr: float = 0.0001, *, betas: Tuple[float, float] = (0.9, 0.99), weight_decay: float = 0.0, convention: str = 'torch', clipnorm: Optional[float] = None, clipvalue: Optional[float] = None, global_clipnorm: Optional[float] = None, l1: float = 0.0, l2: float = 0.0, maximize: bool = False, check_finite: bool = False, state_dtype: str = 'float32', master_weights: bool = False, stochastic_rounding: bool = False, seed: int = 0, kahan: bool = False) -> None: ...

class LAMB(Optimizer):
    def __init__(self, params: ParamsT, lr: float = 0.001, *, betas: Tuple[float, float] = (0.9, 0.999), eps: float = 1e-06, weight_decay: float = 0.0, convention: str = 'torch', clipnorm: Optional[float] = None, clipvalue: Optional[float] = None, global_clipnorm: Optional[float] = None, l1: float = 0.0, l2: float = 0.0, maximize: bool = False, check_finite: bool = False, state_dtype: str = 'float32', master_weights: bool = False, stochastic_rounding: bool = False, seed: int = 0, kahan: bool = False) -> None: ...


OPTIMIZERS: Dict[str, type]


def get(name: str, params: ParamsT, **hyper: Any) -> Optimizer: ...
