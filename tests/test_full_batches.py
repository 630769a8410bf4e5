"""``ModalityBatch.full``: collate functions state when nothing is absent or padded, and the
encoders' shortcut for such batches gives the same features as their masking path."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from mmcore.batch import Features, ModalityBatch
from mmcore.collate import pad_sequences, stack_fixed, stacked_fixed, stacked_sequences
from mmcore.encoder import Encoder
from mmcore.layers import masked_rnns, run_rnn
from mmcore.sequence.encoder import SequenceEncoder


def _seq(n: int, t: int = 6, d: int = 3, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((t, d)).astype(np.float32) for _ in range(n)]


def test_collate_helpers_state_whether_the_batch_is_full() -> None:
    items = _seq(4)
    assert pad_sequences(items).full is True
    assert pad_sequences([*items[:3], items[3][:4]]).full is False  # one row padded
    assert pad_sequences([*items[:3], None]).full is False  # one row absent
    assert stack_fixed(items).full is True
    assert stack_fixed([*items[:3], None]).full is False
    assert stacked_sequences(np.stack(items)).full is True
    assert stacked_fixed(np.stack(items)).full is True


def test_is_full_reads_the_tensors_when_not_stated() -> None:
    values = torch.zeros(3, 5, 2)
    present = torch.ones(3, dtype=torch.bool)
    every = ModalityBatch(values, present, torch.ones(3, 5, dtype=torch.bool))
    assert every.full is None and every.is_full() is True and every.full is True
    mask = torch.ones(3, 5, dtype=torch.bool)
    mask[1, 4] = False
    padded = ModalityBatch(values, torch.ones(3, dtype=torch.bool), mask)
    assert padded.is_full() is False
    absent = ModalityBatch(values[:, 0], torch.tensor([True, False, True]))
    assert absent.is_full() is False


def _encoders() -> list[tuple[str, Encoder]]:
    torch.manual_seed(0)
    found: list[tuple[str, Encoder]] = [
        ("sequence conv+lstm mean", SequenceEncoder(3, frontend="conv", conv_channels=(8, 8),
                                                    hidden_size=8, bidirectional=False)),
        ("sequence tcn+bilstm last", SequenceEncoder(3, channels=8, hidden_size=8, pool="last")),
        ("sequence conv+lstm, sequence output",
         SequenceEncoder(3, frontend="conv", conv_channels=(8,), hidden_size=8,
                         output="sequence")),
        # encoder "reference": position's (convolutions, one-way LSTM), gesture's (an LSTM
        # and a linear layer, pooled from the last state or the mean)
        ("position reference", SequenceEncoder(3, frontend="conv", conv_channels=(8, 8),
                                               kernel_size=3, hidden_size=8,
                                               bidirectional=False, dropout=0.0)),
        ("gesture reference last", SequenceEncoder(3, frontend="none", hidden_size=8,
                                                   bidirectional=False, dropout=0.0,
                                                   output_size=8, pool="last")),
        ("gesture reference mean, bidirectional",
         SequenceEncoder(3, frontend="none", hidden_size=8, dropout=0.0, output_size=8)),
    ]
    return found


@pytest.mark.parametrize("name,encoder", _encoders(), ids=lambda v: v if isinstance(v, str) else "")
def test_the_full_batch_shortcut_gives_the_masking_paths_features(
    name: str, encoder: Encoder
) -> None:
    encoder.eval()
    batch = stacked_sequences(np.stack(_seq(5)))
    assert batch.full is True

    def run(full: bool) -> Features:
        copy = ModalityBatch(batch.values.clone(), batch.present.clone(), batch.mask.clone(),
                             full=full)  # full=False forces the masking path
        with torch.no_grad():
            return encoder(copy)

    quick, masked = run(True), run(False)
    assert quick.values.shape == masked.values.shape
    torch.testing.assert_close(quick.values, masked.values, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(quick.pooled(), masked.pooled(), rtol=1e-5, atol=1e-6)
    if masked.mask is not None:
        assert torch.equal(quick.mask, masked.mask)


def test_a_batch_built_from_other_masks_does_not_inherit_full() -> None:
    """Modality dropout (``hide``) makes rows absent: the shortcut must not be taken."""
    from mmcore.evaluate.masking import hide

    batch = stacked_sequences(np.stack(_seq(4)))
    hidden = hide(batch, torch.tensor([False, True, False, False]))
    assert hidden.is_full() is False
    encoder = SequenceEncoder(3, frontend="conv", conv_channels=(8,), hidden_size=8)
    with torch.no_grad():
        features = encoder(hidden)
    assert torch.count_nonzero(features.values[1]) == 0  # the absent row gives zeros


@pytest.mark.parametrize("kind,layers", [(torch.nn.LSTM, 1), (torch.nn.GRU, 2), (torch.nn.RNN, 1)])
def test_masked_rnns_give_the_packed_outputs(kind: type, layers: int) -> None:
    torch.manual_seed(0)
    rnn = kind(3, 5, num_layers=layers, batch_first=True)
    x = torch.randn(4, 6, 3)
    mask = torch.arange(6) < torch.tensor([6, 3, 1, 0]).unsqueeze(1)
    x = x * mask.unsqueeze(-1)
    packed = run_rnn(rnn, x, mask)
    with masked_rnns():
        masked = run_rnn(rnn, x, mask)
    for a, b in zip(packed, masked, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert masked[1][3].abs().sum() == 0  # a row without steps gives zeros


@pytest.mark.parametrize("kind,layers,extra", [
    (torch.nn.LSTM, 1, {}), (torch.nn.GRU, 2, {}), (torch.nn.LSTM, 2, {"proj_size": 2}),
    (torch.nn.RNN, 1, {"nonlinearity": "relu"}),
])
def test_masked_bidirectional_rnns_give_the_packed_outputs(kind: type, layers: int,
                                                           extra: dict) -> None:
    """The backward direction starts at each row's last real step, as packing makes it."""
    torch.manual_seed(0)
    rnn = kind(3, 5, num_layers=layers, batch_first=True, bidirectional=True, **extra).eval()
    x = torch.randn(4, 6, 3)
    mask = torch.arange(6) < torch.tensor([6, 3, 1, 0]).unsqueeze(1)
    x = x * mask.unsqueeze(-1)
    packed = run_rnn(rnn, x, mask)
    with masked_rnns():
        masked = run_rnn(rnn, x, mask)
    for a, b in zip(packed, masked, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    unpacked, _ = rnn(x)  # what running over the padding would have given instead
    assert not torch.allclose(unpacked[1, :3], packed[0][1, :3])


def test_masked_rnns_make_an_encoder_exportable() -> None:
    class Model(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = torch.nn.LSTM(3, 5, batch_first=True)

        def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
            return run_rnn(self.rnn, x, mask)

    model = Model().eval()
    x = torch.randn(3, 6, 3)
    mask = torch.arange(6) < torch.tensor([6, 3, 1]).unsqueeze(1)
    with masked_rnns(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch notes the LSTM's flat weights
        exported = torch.export.export(model, (x, mask))
    other = torch.arange(6) < torch.tensor([2, 5, 4]).unsqueeze(1)  # other lengths, same graph
    for a, b in zip(exported.module()(x, other), run_rnn(model.rnn, x, other), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
