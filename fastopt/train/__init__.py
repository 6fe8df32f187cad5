"""Training: mini-batches, schedules, early stopping, history, checkpoints."""
from .trainer import EarlyStopping, History, Trainer, accuracy

__all__ = ["Trainer", "EarlyStopping", "History", "accuracy"]
