"""Training: the :class:`Trainer`, its strategies (DDP, FSDP; the one-process base is
:mod:`mmcore.strategy`'s) and callbacks. Evaluation and the reports, which a loaded run uses
too, are :mod:`mmcore.evaluate`'s; the run folder it writes is :mod:`mmcore.run`."""

from mmcore.train.trainer import Trainer

__all__ = ["Trainer"]
