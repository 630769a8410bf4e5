"""Training: the :class:`Trainer`, its strategies (one process, DDP, FSDP), callbacks,
evaluation and reports. The run folder it writes is :mod:`mmcore.run`."""

from mmcore.train.trainer import Trainer

__all__ = ["Trainer"]
