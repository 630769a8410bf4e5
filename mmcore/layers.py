"""Small building blocks shared by encoders, fusions and heads."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


def dropout_layer(p: float) -> nn.Module:
    """``nn.Dropout(p)``, or ``nn.Identity()`` when ``p`` is 0 (a dropout module that drops
    nothing still costs a call per use)."""
    return nn.Dropout(p) if p > 0 else nn.Identity()


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


_MASKED_RNNS = contextvars.ContextVar("mmcore_masked_rnns", default=False)


@contextlib.contextmanager
def masked_rnns() -> Iterator[None]:
    """Within this block :func:`run_rnn` runs unidirectional RNNs on the padded batch and masks
    the result instead of packing it: no ``pack_padded_sequence`` and no branch on the data,
    so the graph is the same for every batch (for ``torch.export``, ONNX or ``torch.compile``).
    Features are equal to the packed path's (tested); real steps must come first in each row,
    as collate makes them. Bidirectional RNNs still pack: their backward direction would start
    on the padding."""
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


def run_rnn(rnn: nn.RNNBase, x: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
    """Run a ``batch_first`` RNN over padded ``x [B, T, F]`` respecting ``mask [B, T]``.

    Returns ``(outputs [B, T, H*dirs], last [B, H*dirs])``: padded steps of ``outputs`` are
    zero, ``last`` is the final hidden state of the last layer at each row's true length
    (both directions concatenated). Rows with no valid step give zeros.

    Rows are packed, so padding costs nothing, unless every row is full length (then the RNN
    runs on ``x`` as it is) or inside :func:`masked_rnns` (unidirectional RNNs then run on the
    padded batch and the result is masked: one graph for every batch, for export).

    Under autocast the RNN runs in float32 on CPU (oneDNN has no bf16 LSTM/GRU kernel there);
    on CUDA it runs in the autocast dtype as usual.
    """
    if x.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
        with torch.autocast("cpu", enabled=False):
            return run_rnn(rnn, x.float(), mask)
    if mask is not None and not rnn.bidirectional and _MASKED_RNNS.get():
        return _run_masked(rnn, x, mask)
    if mask is None or bool(mask.all()):  # every row full length: packing changes nothing
        outputs, hidden = rnn(x)
        return outputs, _last_hidden(rnn, hidden)
    lengths = mask.sum(dim=1)
    safe = lengths.clamp_min(1).cpu()
    packed = pack_padded_sequence(x, safe, batch_first=True, enforce_sorted=False)
    out_packed, hidden = rnn(packed)
    outputs, _ = pad_packed_sequence(out_packed, batch_first=True, total_length=x.shape[1])
    valid = (lengths > 0).to(outputs.dtype)
    outputs = outputs * mask.unsqueeze(-1).to(outputs.dtype)
    last = _last_hidden(rnn, hidden) * valid.unsqueeze(-1)
    return outputs, last


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
