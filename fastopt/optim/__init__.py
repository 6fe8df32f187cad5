"""Optimizer classes over NumPy arrays, one fused kernel call per parameter group and step."""
from .optimizer import Optimizer
from .optimizers import LAMB, OPTIMIZERS, SGD, Adadelta, Adagrad, Adam, Adamax, AdamW, Lion, NAdam, RAdam, RMSprop, get

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "Adagrad", "RMSprop", "Adadelta", "Adamax", "NAdam", "RAdam", "Lion",
           "LAMB", "OPTIMIZERS", "get"]
