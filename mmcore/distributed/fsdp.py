"""Fully sharded data parallel: :class:`FSDP` (torch's ``fully_shard``, FSDP2)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from mmcore.distributed.process_group import ProcessGroupStrategy
from mmcore.errors import SpecError
from mmcore.run import checkpoint as ck
from mmcore.spec.model import Spec
from mmcore.strategy import load_optimizer_state


class FSDP(ProcessGroupStrategy):
    """Fully sharded data parallel (torch's ``fully_shard``, FSDP2): each encoder, each head
    and the rest of the model is one unit whose parameters, gradients and optimizer state are
    split across the ranks and gathered for its forward and backward. Memory per rank falls
    with the number of ranks; the arithmetic is DDP's. Checkpoints gather the full state to
    rank 0, in the single-process layout."""

    name = "fsdp"

    def setup(self, spec: Spec, device: torch.device) -> None:
        if spec.data.streaming:  # every rank must run the same number of sharded forwards
            raise SpecError(spec.source, [("train.strategy", (
                "'fsdp' needs every rank to run the same number of batches, which streamed "
                "shards do not guarantee; use 'ddp' with data.streaming=true"))])
        super().setup(spec, device)

    def shard(self, model: nn.Module) -> None:
        from torch.distributed.fsdp import fully_shard

        with torch.no_grad():  # fully_shard takes no other layout (a CNN's channels-last)
            for param in model.parameters():
                if not param.is_contiguous():
                    param.data = param.data.contiguous()
        for part in getattr(model, "members", [model]):  # an ensemble: every member's
            for group in ("encoders", "heads"):
                for module in getattr(part, group, {}).values():
                    if any(True for _ in module.parameters()):
                        fully_shard(module)
        fully_shard(model)

    def sync_gradients(self, net: nn.Module, sync: bool) -> contextlib.AbstractContextManager:
        return _gradient_sync(net, sync)

    def model_state(self, model: nn.Module) -> dict[str, Tensor]:
        # every rank joins each tensor's all-gather, in the same order; rank 0 alone keeps
        # them, so one full copy is held at a time on the others
        full = {}
        for key, value in model.state_dict().items():
            whole = _full(value)
            if self.is_main:
                full[key] = whole
        return full

    def load_model_state(self, model: nn.Module, tensors: Mapping[str, Tensor],
                         path: str | Path) -> None:
        ck.check_weights(model, tensors, path)  # a DTensor's shape is the full shape
        own = model.state_dict()
        with torch.no_grad():
            model.load_state_dict({k: _like(v, own[k]) for k, v in tensors.items()})

    def optimizer_state(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
        state = optimizer.state_dict()  # torch's layout, each value this rank's shard
        full: dict[Any, dict[str, Any]] = {}
        for index, values in state["state"].items():
            gathered = {k: _full(v) for k, v in values.items()}
            if self.is_main:
                full[index] = gathered
        return {"state": full, "param_groups": state["param_groups"]} if self.is_main else {}

    def load_optimizer_state(self, model: nn.Module, optimizer: torch.optim.Optimizer,
                             state: dict) -> None:
        params = [p for group in optimizer.param_groups for p in group["params"]]
        try:
            sharded = {i: {k: _like(v, params[int(i)]) for k, v in values.items()}
                       for i, values in state["state"].items()}
        except IndexError:
            raise ValueError("the checkpoint holds state for more parameters than this "
                             "optimizer has") from None
        load_optimizer_state(optimizer, {**state, "state": sharded})


def _full(value: Any) -> Any:
    """A DTensor's whole tensor (an all-gather every rank joins), on the CPU."""
    from torch.distributed.tensor import DTensor

    if isinstance(value, DTensor):
        value = value.full_tensor()
    # a copy: on the CPU an unsharded buffer, or one process's whole shard, would otherwise
    # be the live tensor itself
    return value.detach().to("cpu", copy=True) if isinstance(value, Tensor) else value


def _like(value: Any, like: Any) -> Any:
    """``value`` (a full tensor every rank read from the checkpoint) sharded as ``like``:
    each rank cuts its own shard, with no communication."""
    from torch.distributed.tensor import DTensor, distribute_tensor

    if isinstance(like, DTensor) and isinstance(value, Tensor) and value.shape == like.shape:
        return distribute_tensor(value.to(like.device), like.device_mesh, like.placements,
                                 src_data_rank=None)
    return value


@contextlib.contextmanager
def _gradient_sync(net: nn.Module, sync: bool) -> Iterator[None]:
    if sync:
        yield
        return
    net.set_requires_gradient_sync(False)  # type: ignore[operator]
    try:
        yield
    finally:
        net.set_requires_gradient_sync(True)  # type: ignore[operator]


__all__ = ["FSDP"]
