"""``DistributedDataParallel``: :class:`DDP`, a whole model on every rank, gradients averaged.

Environment variable:

``MMCORE_DDP_FIND_UNUSED``
    ``1``: ``DistributedDataParallel(find_unused_parameters=True)``, for models whose forward
    leaves some trainable parameters unused.
"""

from __future__ import annotations

import contextlib
import os

from torch import nn

from mmcore.distributed.launch import DistEnv
from mmcore.distributed.process_group import ProcessGroupStrategy

FIND_UNUSED_ENV = "MMCORE_DDP_FIND_UNUSED"


class DDP(ProcessGroupStrategy):
    """``DistributedDataParallel``: a whole model on every rank, gradients averaged. The
    unwrapped model is what checkpoints store."""

    name = "ddp"

    def __init__(self, env: DistEnv) -> None:
        super().__init__(env)
        self._wrapped: nn.parallel.DistributedDataParallel | None = None

    def wrap(self, model: nn.Module) -> nn.Module:
        """``model`` in a new ``DistributedDataParallel`` (which copies rank 0's weights to
        all): DDP hooks only the parameters that need a gradient when it is built."""
        find_unused = os.environ.get(FIND_UNUSED_ENV, "").lower() in {"1", "true", "yes"}
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        self._wrapped = None  # let the old wrapper's buckets go before the new ones
        self._wrapped = nn.parallel.DistributedDataParallel(
            model, device_ids=device_ids, find_unused_parameters=find_unused
        )
        return self._wrapped

    def sync_gradients(self, net: nn.Module, sync: bool) -> contextlib.AbstractContextManager:
        if sync or not isinstance(net, nn.parallel.DistributedDataParallel):
            return contextlib.nullcontext()
        return net.no_sync()


__all__ = ["DDP"]
