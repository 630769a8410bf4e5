"""Experiment trackers: the built-in ``mlflow`` and ``wandb`` callbacks, over :class:`Tracker`.

Each imports its library only when the callback is created, so naming neither costs nothing.
A callback of your own may subclass :class:`Tracker` to get the same failure rules: an error
at the start stops the run before training, a later one is a warning and training goes on.
"""

from mmcore.train.trackers.base import Tracker

__all__ = ["Tracker"]
