"""Small building blocks shared by encoders, fusions and heads."""

from __future__ import annotations

from collections.abc import Sequence

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


def run_rnn(rnn: nn.RNNBase, x: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
    """Run a ``batch_first`` RNN over padded ``x [B, T, F]`` respecting ``mask [B, T]``.

    Returns ``(outputs [B, T, H*dirs], last [B, H*dirs])``: padded steps of ``outputs`` are
    zero, ``last`` is the final hidden state of the last layer at each row's true length
    (both directions concatenated). Rows with no valid step give zeros.

    Under autocast the RNN runs in float32 on CPU (oneDNN has no bf16 LSTM/GRU kernel there);
    on CUDA it runs in the autocast dtype as usual.
    """
    if x.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
        with torch.autocast("cpu", enabled=False):
            return run_rnn(rnn, x.float(), mask)
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
