"""Training: the :class:`Trainer`, checkpoints and run folders, callbacks, reports."""

from mmcore.train.trainer import Trainer

__all__ = ["Trainer"]
