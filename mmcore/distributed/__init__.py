"""Strategies for several processes on ``torch.distributed`` and the launcher that starts them.

One process per device, started by ``torchrun`` (or ``mmcore train --nproc N``; see
:mod:`mmcore.distributed.launch`). The one-process base, :class:`~mmcore.strategy.Strategy`,
lives in :mod:`mmcore.strategy`; this package is the only part of mmcore that imports
``torch.distributed``, and the only one (with :mod:`mmcore.strategy`) that asks which rank it
is or how many there are.

* :mod:`~mmcore.distributed.process_group` — what every strategy of several processes shares:
  the process group, its collectives and its environment variables;
* :mod:`~mmcore.distributed.ddp` — :class:`DDP`, a whole model per process;
* :mod:`~mmcore.distributed.fsdp` — :class:`FSDP`, the model sharded per encoder and head;
* :mod:`~mmcore.distributed.selection` — :func:`select_strategy` (``train.strategy`` and
  torchrun's environment) and :func:`worker_strategy` (a command's process);
* :mod:`~mmcore.distributed.launch` — torchrun's environment and launcher.

What both strategies do (see ``docs/distributed.md``):

* ``train.batch_size`` is the **global** batch: each of the N ranks takes ``batch_size / N``
  rows of it (an error when N does not divide it), so a run on N processes takes the same
  optimizer steps as a single-process run with the same settings.
* Rank 0 alone prepares the run folder, fits the modalities and preprocesses the data into the
  cache; the other ranks wait (:meth:`~ProcessGroupStrategy.on_main`), then load the fitted
  state from the run folder like a resume and read the cache. Rank 0 alone writes checkpoints,
  metrics, plots and shows progress; callbacks run on rank 0 only.
* Evaluation gathers every rank's outputs, drops the rows the sampler repeated to pad the
  shards (by ``Batch.index``) and computes the metrics over the whole split; rank 0's epoch
  record is broadcast so best epoch and early stopping are decided identically everywhere.
* Checkpoints hold the full, unsharded model and optimizer state (gathered to rank 0), in the
  single-process layout: a run resumes under any strategy, on any number of processes.
"""

from mmcore.distributed.ddp import DDP
from mmcore.distributed.fsdp import FSDP
from mmcore.distributed.process_group import ProcessGroupStrategy, local_batch_size, select_device
from mmcore.distributed.selection import select_strategy, worker_strategy

__all__ = ["DDP", "FSDP", "ProcessGroupStrategy", "local_batch_size", "select_device",
           "select_strategy", "worker_strategy"]
