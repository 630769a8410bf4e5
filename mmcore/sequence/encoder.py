"""``SequenceEncoder``: a temporal-convolution front end, then a recurrent or transformer body.

Built for raw sensor sequences of 16 to a few thousand steps: the front end's strided
residual blocks shorten long inputs (each halves the length) before the body, so an LSTM
never runs over thousands of steps. Every layer respects the step mask: padded steps are
zeroed after each convolution, and a sample's features do not depend on how much padding its
batch has. The plugins' ``encoder: "reference"`` designs are presets of it (an LSTM after no
front end or after plain convolutions; ``SequenceModality.sequence_encoder``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
from torch import Tensor, nn

from mmcore.batch import Features, ModalityBatch
from mmcore.encoder import Encoder
from mmcore.layers import dropout_layer, rnn_output, run_rnn, sinusoidal_positions

#: ``downsample="auto"`` halves a sequence until its median training length is at most this
AUTO_TARGET_LENGTH = 64
#: most halvings ``"auto"`` picks (a 2**6 = 64x shorter sequence)
AUTO_MAX_HALVINGS = 6
#: the names ``encoder: "reference"`` saves its weights under: those of the plugins'
#: ``GestureEncoder`` and ``PositionEncoder`` it replaced, so their run folders load
REFERENCE_NAMES = {"rnn": "lstm", "front.convs": "convs"}


def auto_halvings(median_length: int | None) -> int:
    """Stride-2 blocks that bring ``median_length`` to at most :data:`AUTO_TARGET_LENGTH`."""
    if not median_length or median_length <= AUTO_TARGET_LENGTH:
        return 0
    return min(AUTO_MAX_HALVINGS, math.ceil(math.log2(median_length / AUTO_TARGET_LENGTH)))


def sequence_input(batch: ModalityBatch, input_size: int, what: str) -> tuple[Tensor, Tensor]:
    """A sequence batch as ``[B, T, input_size]`` values (frames ``[B, T, K, D]`` flattened)
    and its ``[B, T]`` step mask (all steps real when the batch has none); ``ValueError``
    naming ``what`` for another shape."""
    x = batch.values.flatten(2)
    if x.dim() != 3 or x.shape[-1] != input_size:
        raise ValueError(
            f"{what} expects [B, T, {input_size}] (frames of {input_size} values), got "
            f"{tuple(batch.values.shape)}"
        )
    mask = batch.mask
    if mask is None:
        mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
    return x, mask


def downsample_mask(mask: Tensor, stride: int) -> Tensor:
    """The mask after a stride-``stride`` convolution with ``same``-style padding: a row of
    ``n`` real steps keeps ``ceil(n / stride)``."""
    lengths = mask.sum(dim=1)
    out_len = (mask.shape[1] + stride - 1) // stride
    new_lengths = (lengths + stride - 1) // stride
    return torch.arange(out_len, device=mask.device)[None, :] < new_lengths[:, None]


def compute_dtype(x: Tensor) -> torch.dtype:
    """The dtype the convolutions will compute ``x`` in: autocast's where it is on, so a
    float mask made once per level matches every block's activations."""
    if torch.is_autocast_enabled(x.device.type):
        return torch.get_autocast_dtype(x.device.type)
    return x.dtype


class ResidualBlock(nn.Module):
    """LayerNorm -> conv (dilated or strided) -> GELU -> dropout -> conv, plus a residual
    (a strided 1x1 convolution where the shape changes). Channels-last in and out.

    ``norm=False`` leaves the input as it is: a LayerNorm over one channel outputs a
    constant, so the first block of a one-channel input must not normalise. (Over several raw
    channels the per-step normalisation is kept: it measured better on real IMU data,
    BasicMotions 0.95 against 0.77 without.)
    """

    def __init__(
        self, in_ch: int, out_ch: int, kernel_size: int, dilation: int, stride: int,
        dropout: float, norm: bool = True,
    ) -> None:
        super().__init__()
        pad = dilation * (kernel_size - 1) // 2
        self.norm = nn.LayerNorm(in_ch) if norm else nn.Identity()
        self.conv1 = nn.Conv1d(in_ch, out_ch, kernel_size, stride, pad, dilation)
        self.conv2 = nn.Conv1d(out_ch, out_ch, kernel_size, 1, (kernel_size - 1) // 2)
        self.drop = dropout_layer(dropout)
        # The strided skip subsamples, then projects with a 1x1 convolution of stride 1: a
        # kernel-1 stride-2 Conv1d corrupts the heap in its backward pass on CPU (torch 2.13
        # oneDNN, one input channel, thousands of steps), and the two are the same function.
        self.skip = nn.Conv1d(in_ch, out_ch, 1) if stride != 1 or in_ch != out_ch else None
        self.stride = stride

    def forward(self, x: Tensor, keep: Tensor | None, out_keep: Tensor | None) -> Tensor:
        """``x [B, T, in_ch]``, zero at padded steps -> ``[B, T', out_ch]`` (``T' =
        ceil(T / stride)``), zero at padded steps.

        ``keep [B, 1, T]`` and ``out_keep [B, 1, T']`` are the step masks before and after the
        block in ``x``'s dtype; ``None`` for both when every step is real, and then the block
        does no mask arithmetic at all.
        """
        h = self.norm(x)
        if keep is not None:  # LayerNorm turns a zero step into its bias: zero it again
            h = h * keep.transpose(1, 2)
        h = nn.functional.gelu(self.conv1(h.transpose(1, 2)))
        if self.drop is not None:
            h = self.drop(h)
        length = h.shape[-1] if out_keep is None else out_keep.shape[-1]
        h = h[..., :length]
        if out_keep is not None:  # conv1 reaches from real steps into the padding
            h = h * out_keep
        h = self.conv2(h)[..., :length]
        skip = x.transpose(1, 2)[..., :: self.stride]  # x is zero at padded steps already
        if self.skip is not None:
            skip = self.skip(skip)
        y = h + skip[..., :length]
        if out_keep is not None:  # conv2 reaches into the padding too
            y = y * out_keep
        return y.transpose(1, 2)


class TemporalConvNet(nn.Module):
    """``halvings`` strided residual blocks, then ``blocks`` dilated ones (dilation 1, 2, 4...)."""

    def __init__(
        self,
        input_size: int,
        channels: int,
        kernel_size: int,
        halvings: int,
        blocks: int,
        dropout: float,
    ) -> None:
        super().__init__()
        layers, size = [], input_size
        for _ in range(halvings):
            layers.append(ResidualBlock(size, channels, kernel_size, 1, 2, dropout,
                                        norm=size > 1))
            size = channels
        for i in range(blocks):
            layers.append(ResidualBlock(size, channels, kernel_size, 2 ** (i % 3), 1, dropout,
                                        norm=size > 1))
            size = channels
        self.blocks = nn.ModuleList(layers)
        self.strides = tuple(block.stride for block in layers)
        self.output_size = size

    def forward(self, x: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """``x [B, T, C]`` (zero at padded steps) and ``mask [B, T]`` -> the last block's
        output and its mask. ``mask=None`` means every step is real: no mask is made or
        applied anywhere (the output mask is ``None`` too). Otherwise each downsampling level's
        mask is made once and shared by the blocks that use it."""
        if mask is None:
            for block in self.blocks:
                x = block(x, None, None)
            return x, None
        dtype = compute_dtype(x)
        keep = mask.unsqueeze(1).to(dtype)
        for block, stride in zip(self.blocks, self.strides, strict=True):
            out_mask, out_keep = mask, keep
            if stride != 1:
                out_mask = downsample_mask(mask, stride)
                out_keep = out_mask.unsqueeze(1).to(dtype)
            x = block(x, keep, out_keep)
            mask, keep = out_mask, out_keep
        return x, mask


class ReferenceConvs(nn.Module):
    """Plain 1-D convolutions over time (``same`` padding, ReLU), as in the reference design."""

    def __init__(self, input_size: int, channels: Sequence[int], kernel_size: int, dropout: float):
        super().__init__()
        sizes = [input_size, *channels]
        self.convs = nn.ModuleList(
            nn.Conv1d(i, o, kernel_size, padding=kernel_size // 2)
            for i, o in zip(sizes[:-1], sizes[1:], strict=True)
        )
        self.drop = dropout_layer(dropout)
        self.output_size = sizes[-1]

    def forward(self, x: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """``x [B, T, C]`` and ``mask [B, T]`` (``None``: every step real, nothing masked)."""
        h = x.transpose(1, 2)
        keep = None if mask is None else mask.unsqueeze(1).to(compute_dtype(x))
        if keep is not None:
            h = h * keep
        for conv in self.convs:
            h = torch.relu(conv(h))
            if self.drop is not None:
                h = self.drop(h)
            if keep is not None:
                h = h * keep
        return h.transpose(1, 2), mask


class TransformerBody(nn.Module):
    """Linear input projection, sinusoidal positions, a pre-norm transformer encoder with a
    key-padding mask."""

    def __init__(self, input_size: int, size: int, layers: int, heads: int, dropout: float):
        super().__init__()
        if size % heads:
            raise ValueError(f"hidden_size={size} must be divisible by heads={heads}")
        self.proj = nn.Linear(input_size, size)
        layer = nn.TransformerEncoderLayer(
            size, heads, 2 * size, dropout, batch_first=True, norm_first=True,
            activation="gelu",
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(size)
        self.size = size

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        """``x [B, T, C]`` and ``mask [B, T]`` -> ``[B, T, size]``, zero at padded steps;
        ``mask=None`` (every step real) attends everywhere with no padding mask."""
        h = self.proj(x) + sinusoidal_positions(x.shape[1], self.size, x.device).to(x.dtype)
        if mask is None:
            return self.norm(self.encoder(h))
        empty = ~mask.any(dim=1)
        # a row with no real step would attend to nothing (NaN): let it see step 0, then zero it
        attend = mask | (empty[:, None] & (torch.arange(mask.shape[1], device=mask.device) == 0))
        h = self.norm(self.encoder(h, src_key_padding_mask=~attend))
        return h * mask.unsqueeze(-1).to(h.dtype)


class SequenceEncoder(Encoder):
    """Sequences ``[B, T, C]`` (or frames ``[B, T, K, D]``, flattened) with mask ``[B, T]``
    -> features.

    ``frontend``: ``"tcn"`` (``halvings`` strided then ``blocks`` dilated residual blocks of
    ``channels``), ``"conv"`` (plain convolutions of ``conv_channels``) or ``"none"``.
    ``body``: ``"lstm"``/``"gru"`` (``num_layers``, ``bidirectional``), ``"transformer"``
    (``num_layers``, ``heads``) or ``"none"``. A linear layer maps to ``output_size`` when
    given. Output: pooled ``[B, D]`` (``pool="mean"``: masked mean; ``"last"``: the RNN state
    at the last real step) or, with ``output="sequence"``, ``[B, T', D]`` with the (possibly
    shortened) mask. Rows not ``present`` are zeros.

    ``saved_names`` maps a submodule to the name its weights are saved and loaded under
    (``{"rnn": "lstm"}``: ``rnn.weight_ih_l0`` is ``lstm.weight_ih_l0`` in ``state_dict()``),
    so a preset keeps the weight names of the design it replaced (:data:`REFERENCE_NAMES`).
    """

    def __init__(
        self,
        input_size: int,
        *,
        frontend: Literal["tcn", "conv", "none"] = "tcn",
        channels: int = 64,
        kernel_size: int = 5,
        halvings: int = 0,
        blocks: int = 2,
        conv_channels: Sequence[int] = (64, 64),
        body: Literal["lstm", "gru", "transformer", "none"] = "lstm",
        hidden_size: int = 64,
        num_layers: int = 1,
        bidirectional: bool = True,
        heads: int = 4,
        dropout: float = 0.1,
        output_size: int | None = None,
        pool: Literal["mean", "last"] = "mean",
        output: Literal["pooled", "sequence"] = "pooled",
        saved_names: Mapping[str, str] | None = None,
    ) -> None:
        self.input_size = int(input_size)
        if frontend == "tcn":
            front: TemporalConvNet | ReferenceConvs | None = TemporalConvNet(
                self.input_size, channels, kernel_size, halvings, blocks, dropout
            )
        elif frontend == "conv":
            front = ReferenceConvs(self.input_size, conv_channels, kernel_size, dropout)
        else:
            front = None
        size = front.output_size if front is not None else self.input_size
        rnn: nn.RNNBase | None = None
        transformer: TransformerBody | None = None
        if body in ("lstm", "gru"):
            cls = nn.LSTM if body == "lstm" else nn.GRU
            rnn = cls(size, hidden_size, num_layers=num_layers, batch_first=True,
                      bidirectional=bidirectional, dropout=dropout if num_layers > 1 else 0.0)
            size = hidden_size * (2 if bidirectional else 1)
        elif body == "transformer":
            transformer = TransformerBody(size, hidden_size, num_layers, heads, dropout)
            size = hidden_size
        if pool == "last" and rnn is None:
            raise ValueError(f"pool='last' needs a recurrent body (lstm or gru), not {body!r}")
        super().__init__(output_size or size, sequence=(output == "sequence"))
        self.front, self.rnn, self.transformer = front, rnn, transformer
        self.pool = pool
        self.drop = dropout_layer(dropout)
        self.proj = nn.Linear(size, output_size) if output_size else None
        self.saved_names = dict(saved_names or {})
        if self.saved_names:  # both ways: a run's weights are matched by name with
            # state_dict() before they are loaded (mmcore.run.checkpoint.check_weights)
            self.register_state_dict_post_hook(_to_saved_names)
            self.register_load_state_dict_pre_hook(_from_saved_names)

    def forward(self, batch: ModalityBatch) -> Features:
        x, given = sequence_input(batch, self.input_size, "sequence encoder")
        mask: Tensor | None = given
        if batch.is_full():  # one check per batch: nothing is padded, so nothing is masked
            mask = None
        else:  # zero padded steps: every layer below expects them zero
            x = x * given.unsqueeze(-1).to(x.dtype)
        if self.front is not None:
            x, mask = self.front(x, mask)
        h: Tensor
        out_mask: Tensor | None = mask
        if self.rnn is not None:
            outputs, last = run_rnn(self.rnn, x, mask)
            h, out_mask = rnn_output(outputs, last, mask, self.pool, self.sequence)
        elif self.transformer is not None:
            h = self.transformer(x, mask)
        else:
            h = x
        if self.proj is not None:
            h = self.proj(h if self.drop is None else self.drop(h))
            if out_mask is not None and h.dim() == 3:
                h = h * out_mask.unsqueeze(-1).to(h.dtype)  # the bias would fill padded steps
        return self.features(h, out_mask, batch)


def _to_saved_names(module: SequenceEncoder, state: dict[str, Any], prefix: str,
                    local_metadata: Any) -> None:
    _rename(state, prefix, module.saved_names)


def _from_saved_names(module: SequenceEncoder, state: dict[str, Any], prefix: str,
                      *args: Any) -> None:
    _rename(state, prefix, {saved: own for own, saved in module.saved_names.items()})


def _rename(state: dict[str, Any], prefix: str, names: Mapping[str, str]) -> None:
    """Rename, in place and in order, the keys of ``state`` under ``prefix`` that belong to a
    submodule named in ``names`` (name -> new name)."""

    def renamed(key: str) -> str:
        for old, new in names.items():
            if key.startswith(f"{prefix}{old}."):
                return f"{prefix}{new}{key[len(prefix) + len(old):]}"
        return key

    items = [(renamed(key), value) for key, value in state.items()]
    state.clear()
    state.update(items)
