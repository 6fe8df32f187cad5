"""A NumPy MLP with its parameters in one flat buffer, and the losses to train it."""
from .losses import (LOSSES, binary_cross_entropy, binary_log_loss, focal, mse, poisson, softmax_cross_entropy,
                     squared_error)
from .mlp import ACTIVATIONS, INITIALIZERS, MLP, Dense, gradient_check

__all__ = ["MLP", "Dense", "gradient_check", "ACTIVATIONS", "INITIALIZERS", "LOSSES", "softmax_cross_entropy",
           "binary_cross_entropy", "binary_log_loss", "mse", "squared_error", "focal", "poisson"]
