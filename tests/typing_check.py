"""Uses the public API as a typed program would; `mypy --strict` must pass on it (test_typing.py)."""
from typing import List

import numpy as np
import numpy.typing as npt

import fastopt
from fastopt import optim, schedules
from fastopt.nn import MLP, Dense
from fastopt.train import EarlyStopping, History, Trainer

params: List[npt.NDArray[np.float32]] = [np.zeros(10, np.float32)]
grads: List[npt.NDArray[np.float32]] = [np.ones(10, np.float32)]
m: List[npt.NDArray[np.float32]] = [np.zeros(10, np.float32)]
v: List[npt.NDArray[np.float32]] = [np.zeros(10, np.float32)]
applied: bool = fastopt.adam_(params, grads, m, v, step=1, lr=1e-3)
norm: float = fastopt.global_norm(grads)
total: float = fastopt.clip_grad_norm_(grads, 1.0)
fastopt.set_num_threads(2)
threads: int = fastopt.get_num_threads()
opt: optim.Optimizer = optim.Adam(params, lr=1e-3)
stepped: bool = opt.step(grads)
rate: float = schedules.CosineAnnealing(1e-3, 100)(10)
model = MLP(4, [Dense(8), Dense(3, "softmax")])
trainer = Trainer(model, "adam", lr=1e-2, early_stopping=EarlyStopping(patience=2))
history: History = trainer.fit(np.zeros((12, 4)), np.arange(12) % 3, epochs=1, verbose=False)
