"""torch's fused Adam and AdamW, stepped with less Python around the kernel.

``torch.optim.AdamW(fused=True)`` spends most of a small model's step outside its kernel: for
each parameter group it walks the parameters (``_init_group``), sorts them by device and dtype
and increments every parameter's step counter in its own call. mmcore keeps biases and norm
scales out of weight decay, so every model has at least two groups and pays that twice. For
the 22 tensors of ``benchmarks/independent_loop.py``'s tiny model, one step measured 255 us
with torch's two groups, 210 us with one group and 159 us here (``benchmarks/optimizer_step.py``:
medians of 15 alternating rounds, one CPU thread).

:class:`AdamW` and :class:`Adam` are torch's classes with another ``step``: the same kernels
(``torch._fused_adamw_`` / ``torch._fused_adam_``) on the same state (``step``, ``exp_avg``,
``exp_avg_sq``, created as torch creates them), so the results are bit for bit torch's and a
checkpoint's optimizer state is interchangeable with torch's. Whatever this step does not
cover goes to torch's own: a closure, a gradient scaler's ``grad_scale``/``found_inf`` (fp16),
``amsgrad``, ``maximize``, ``capturable``, ``differentiable``, a non-fused group, a tensor
learning rate, sparse gradients, parameters that are not plain ``nn.Parameter`` (FSDP's
DTensors) or a group whose parameters differ in device or dtype.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

try:  # private helpers of torch's own Adam; an older torch without them gets its own step
    from torch.optim.optimizer import _device_dtype_check_for_fused, _get_scalar_dtype
except ImportError:  # pragma: no cover - torch 2.13 has them
    _device_dtype_check_for_fused = None  # type: ignore[assignment]

#: group settings under which torch's step, not this one, runs
TORCH_ONLY = ("amsgrad", "maximize", "capturable", "differentiable")

_Run = tuple[dict[str, Any], list[Tensor], list[Tensor], list[Tensor], list[Tensor], list[Tensor]]


class _FusedStep:
    """The ``step`` of :class:`AdamW` and :class:`Adam` (a mixin before torch's class)."""

    param_groups: list[dict[str, Any]]
    state: dict[Tensor, dict[str, Any]]

    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        runs = None if self._torch_only(closure) else self._runs()
        if runs is None:
            return self._torch_step(closure)
        with torch.no_grad():
            steps = [count for run in runs for count in run[5]]
            if steps:
                torch._foreach_add_(steps, 1)
            for group, params, grads, avgs, squares, counts in runs:
                beta1, beta2 = group["betas"]
                # torch 2.4's AdamW was its own class, its groups without this key
                decoupled = group.get("decoupled_weight_decay",
                                      isinstance(self, torch.optim.AdamW))
                kernel = torch._fused_adamw_ if decoupled else torch._fused_adam_
                kernel(params, grads, avgs, squares, [], counts, lr=group["lr"], beta1=beta1,
                       beta2=beta2, weight_decay=group["weight_decay"], eps=group["eps"],
                       amsgrad=False, maximize=False, grad_scale=None, found_inf=None)
        return None

    def _torch_step(self, closure: Callable[[], float] | None) -> float | None:
        """torch's own step, without the wrapper that runs the optimizer's hooks (torch puts it
        around each class's ``step``: this one's already ran them, so they would run twice)."""
        func = super().step.__func__  # type: ignore[misc]
        while getattr(func, "hooked", False):
            func = func.__wrapped__
        return func(self, closure)

    def _torch_only(self, closure: Callable[[], float] | None) -> bool:
        if closure is not None or _device_dtype_check_for_fused is None \
                or getattr(self, "grad_scale", None) is not None \
                or getattr(self, "found_inf", None) is not None:
            return True
        return any(not group["fused"] or isinstance(group["lr"], Tensor)
                   or any(group[key] for key in TORCH_ONLY) for group in self.param_groups)

    def _runs(self) -> list[_Run] | None:
        """Each group's parameters that have a gradient, with their gradients and state (made
        on first use as torch makes it); ``None`` where torch's step must run instead."""
        runs: list[_Run] = []
        for group in self.param_groups:
            params: list[Tensor] = []
            grads: list[Tensor] = []
            avgs: list[Tensor] = []
            squares: list[Tensor] = []
            counts: list[Tensor] = []
            kind = None
            for p in group["params"]:
                grad = p.grad
                if grad is None:
                    continue
                if type(p) is not nn.Parameter or grad.is_sparse:
                    return None
                if kind is None:
                    kind = (p.device, p.dtype)
                elif (p.device, p.dtype) != kind:
                    return None
                state = self.state[p]
                if not state:
                    _device_dtype_check_for_fused(p)
                    state["step"] = torch.zeros((), dtype=_get_scalar_dtype(is_fused=True),
                                                device=p.device)
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p,
                                                           memory_format=torch.preserve_format)
                params.append(p)
                grads.append(grad)
                avgs.append(state["exp_avg"])
                squares.append(state["exp_avg_sq"])
                counts.append(state["step"])
            if params:
                runs.append((group, params, grads, avgs, squares, counts))
        return runs


class AdamW(_FusedStep, torch.optim.AdamW):
    """``torch.optim.AdamW`` whose fused step runs with less Python (see the module)."""


class Adam(_FusedStep, torch.optim.Adam):
    """``torch.optim.Adam`` whose fused step runs with less Python (see the module)."""
