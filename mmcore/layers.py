"""Small building blocks shared by encoders, fusions and heads."""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor, nn


def dropout_layer(p: float) -> nn.Dropout | None:
    """``nn.Dropout(p)``, or ``None`` when ``p`` is 0: callers skip it (a module that drops
    nothing, ``nn.Identity`` too, still costs a call per use)."""
    return nn.Dropout(p) if p > 0 else None


def mlp(
    input_size: int,
    hidden: Sequence[int],
    output_size: int | None = None,
    *,
    dropout: float = 0.0,
    activation: type[nn.Module] = nn.ReLU,
) -> nn.Sequential:
    """Linear -> activation -> dropout for each hidden size, then an optional output Linear."""
    layers: list[nn.Module] = []
    size = input_size
    for h in hidden:
        layers += [nn.Linear(size, h), activation()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        size = h
    if output_size is not None:
        layers.append(nn.Linear(size, output_size))
    return nn.Sequential(*layers)


def capturing() -> bool:
    """Whether a graph is being exported, compiled or traced (``torch.compiler.is_exporting``
    is newer than torch 2.4, which mmcore supports)."""
    exporting = getattr(torch.compiler, "is_exporting", None)
    return (torch.compiler.is_compiling() or torch.jit.is_tracing()
            or (exporting is not None and exporting()))


def sinusoidal_positions(
    length: int, size: int, device: torch.device | str | int | None = None
) -> Tensor:
    """``[length, size]`` fixed sine/cosine position codes (Vaswani et al., 2017), float32.

    In eager mode the codes are rows of one table per ``(size, device)``, grown to the longest
    ``length`` asked for, so a call costs one slice: add them (``x + codes``) rather than
    change them in place (a table changed in place is rebuilt at the next call). A graph
    being exported, compiled, traced or captured, or a call under a tensor mode (fake
    tensors), computes them from ``length`` instead, so an exported time axis stays dynamic."""
    if capturing() or type(length) is not int or _under_tensor_mode():
        return _positions(length, size, device)
    where = torch.device(device) if device is not None else torch.device("cpu")
    if where.type == "cuda":
        if where.index is None:
            where = torch.device("cuda", torch.cuda.current_device())
        if torch.cuda.is_current_stream_capturing():
            return _positions(length, size, where)
    table, version = _TABLES.get((size, where), (None, -1))
    if table is None or table.shape[0] < length or table._version != version:
        with torch.inference_mode(False), torch.no_grad():  # usable in and out of inference
            table = _positions(max(length, table.shape[0] if table is not None else 0), size,
                               where)
        _TABLES[(size, where)] = (table, table._version)
    return table[:length]


#: (size, device) -> (the codes of the longest length asked for, the table's version then)
_TABLES: dict[tuple[int, torch.device], tuple[Tensor, int]] = {}


def _under_tensor_mode() -> bool:
    """Whether a tensor mode (``FakeTensorMode``, ``make_fx``) handles torch calls here: its
    tensors must not be kept for later eager calls, nor eager tensors given to it."""
    depth = getattr(torch._C, "_len_torch_dispatch_stack", None)  # private, since torch 2.0
    return depth is not None and depth() > 0


def _positions(length: int, size: int, device: torch.device | str | int | None) -> Tensor:
    position = torch.arange(length, device=device, dtype=torch.float32).unsqueeze(1)
    rate = torch.exp(
        torch.arange(0, size, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / size)
    )
    out = torch.zeros(length, size, device=device)
    out[:, 0::2] = torch.sin(position * rate)
    out[:, 1::2] = torch.cos(position * rate[: size // 2])
    return out


_MASKED_RNNS = contextvars.ContextVar("mmcore_masked_rnns", default=False)


@contextlib.contextmanager
def masked_rnns() -> Iterator[None]:
    """Within this block :func:`run_rnn` takes the padded path for every batch with a mask, even
    one whose rows are all full length: no branch on the data, so the graph is the same for
    every batch (for ``torch.export``, ONNX or ``torch.compile``)."""
    token = _MASKED_RNNS.set(True)
    try:
        yield
    finally:
        _MASKED_RNNS.reset(token)


def _run_masked(rnn: nn.RNNBase, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """A unidirectional RNN over padded ``x``: padding comes after each row's real steps, so
    their outputs are those of the packed run; ``last`` is the output at ``length - 1``."""
    outputs, _ = rnn(x)
    outputs = outputs * mask.unsqueeze(-1).to(outputs.dtype)
    lengths = mask.sum(dim=1)
    at = (lengths - 1).clamp_min(0).view(-1, 1, 1).expand(-1, 1, outputs.shape[-1])
    last = outputs.gather(1, at).squeeze(1) * (lengths > 0).unsqueeze(-1).to(outputs.dtype)
    return outputs, last


def _reverse_index(mask: Tensor) -> Tensor:
    """``[B, T]`` indices that reverse each row's real steps in place (padding stays put);
    applying them twice gives the identity."""
    lengths = mask.sum(dim=1, keepdim=True)
    steps = torch.arange(mask.shape[1], device=mask.device).unsqueeze(0)
    return torch.where(steps < lengths, lengths - 1 - steps, steps)


def _one_layer(rnn: nn.RNNBase, layer: int, suffix: str, x: Tensor) -> Tensor:
    """The outputs of one direction (``suffix`` ``""`` or ``"_reverse"``) of one layer of
    ``rnn``, run forward in time over ``x``: a one-layer RNN of the same kind called with that
    layer's weights (``torch.func.functional_call``, so the weights stay ``rnn``'s own)."""
    kwargs: dict = {"bias": rnn.bias, "batch_first": True}
    if isinstance(rnn, nn.LSTM):
        kwargs["proj_size"] = rnn.proj_size
    if isinstance(rnn, nn.RNN):
        kwargs["nonlinearity"] = rnn.nonlinearity
    kind: type[nn.Module] = type(rnn)  # an LSTM, GRU or RNN: (input_size, hidden_size, ...)
    with torch.device("meta"):
        single = kind(x.shape[-1], rnn.hidden_size, **kwargs)
    params = {name: getattr(rnn, f"{name[:-1]}{layer}{suffix}")
              for name, _ in single.named_parameters()}
    outputs, _ = torch.func.functional_call(single, params, (x,))
    return outputs


def _run_masked_bidirectional(rnn: nn.RNNBase, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    reverse = _reverse_index(mask).unsqueeze(-1)
    h = x
    for layer in range(rnn.num_layers):
        if layer:
            h = nn.functional.dropout(h, rnn.dropout, rnn.training)
        forward = _one_layer(rnn, layer, "", h)
        flipped = h.gather(1, reverse.expand(-1, -1, h.shape[-1]))
        backward = _one_layer(rnn, layer, "_reverse", flipped)
        backward = backward.gather(1, reverse.expand(-1, -1, backward.shape[-1]))
        h = torch.cat([forward, backward], dim=-1)
    outputs = h * mask.unsqueeze(-1).to(h.dtype)
    lengths = mask.sum(dim=1)
    size = outputs.shape[-1] // 2
    at = (lengths - 1).clamp_min(0).view(-1, 1, 1).expand(-1, 1, size)
    last = torch.cat([outputs[..., :size].gather(1, at).squeeze(1), outputs[:, 0, size:]], dim=-1)
    return outputs, last


def run_rnn(rnn: nn.RNNBase, x: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
    """Run a ``batch_first`` RNN over padded ``x [B, T, F]`` respecting ``mask [B, T]``.

    Returns ``(outputs [B, T, H*dirs], last [B, H*dirs])``: padded steps of ``outputs`` are
    zero, ``last`` is the final hidden state of the last layer at each row's true length
    (both directions concatenated). Rows with no valid step give zeros.

    Nothing is packed: ``pack_padded_sequence`` cannot change a result here, and the padded
    runs measured 3.8-6.8x (unidirectional) and 1.6-3.9x (bidirectional) faster forward and
    backward on CPU (one thread, an LSTM of 64, batch 32 of 25-100 steps, up to 80% padding;
    packed sequences cannot use oneDNN's kernels). Real steps must come first in each row, as
    collate makes them.
    A unidirectional RNN runs over the padded batch as it is: its outputs at a row's real steps
    do not depend on the padding after them, so they are the packed run's, and ``last`` is
    the output at the row's last real step (the packed ``h_n``). A bidirectional RNN runs
    layer by layer, its backward direction on each row reversed within its length (so it
    starts at the row's last real step, as packing makes it). When every row is full length
    the RNN runs once on ``x`` as it is (one check per batch), except inside
    :func:`masked_rnns`.

    Under autocast the RNN runs in float32 on CPU (oneDNN has no bf16 LSTM/GRU kernel there);
    on CUDA it runs in the autocast dtype as usual.
    """
    if x.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
        with torch.autocast("cpu", enabled=False):
            return run_rnn(rnn, x.float(), mask)
    if mask is None or (not _MASKED_RNNS.get() and bool(mask.all())):  # nothing to mask
        outputs, hidden = rnn(x)
        return outputs, _last_hidden(rnn, hidden)
    if rnn.bidirectional:
        return _run_masked_bidirectional(rnn, x, mask)
    return _run_masked(rnn, x, mask)


def rnn_output(
    outputs: Tensor, last: Tensor, mask: Tensor | None, pool: str, sequence: bool
) -> tuple[Tensor, Tensor | None]:
    """What an RNN encoder passes to :meth:`~mmcore.encoder.Encoder.features`, from
    :func:`run_rnn`'s ``(outputs, last)``.

    A sequence encoder (``sequence=True``) or ``pool="mean"`` keeps ``(outputs [B, T, H], mask)``
    (``Encoder.features`` mean-pools it over the mask when pooled); ``pool="last"`` gives
    ``(last [B, H], None)``, the final state at each row's true length.
    """
    if sequence or pool == "mean":
        return outputs, mask
    if pool == "last":
        return last, None
    raise ValueError(f"unknown pool {pool!r}: expected 'mean' or 'last'")


def _last_hidden(rnn: nn.RNNBase, hidden: Tensor | tuple[Tensor, Tensor]) -> Tensor:
    h = hidden[0] if isinstance(hidden, tuple) else hidden
    if not rnn.bidirectional:
        return h[-1]
    return torch.cat([h[-2], h[-1]], dim=-1)
