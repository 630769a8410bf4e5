"""Encoders on full-length batches take a path with no mask arithmetic, and RNNs are never
packed: both give what the masked (or packed) path gives, and padded rows still get the output
they get alone."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import mmcore.layers
import mmcore.sequence.encoder as sequence_encoder
from mmcore.batch import ModalityBatch
from mmcore.layers import run_rnn
from mmcore.sequence.encoder import SequenceEncoder, TemporalConvNet

#: encoder settings that cover every front end and body, pooled and sequence outputs
SETTINGS: dict[str, dict] = {
    "tcn halvings + bilstm": {"halvings": 2, "blocks": 3},
    "tcn + gru last": {"body": "gru", "bidirectional": False, "pool": "last"},
    "tcn halvings + transformer": {"halvings": 1, "body": "transformer", "heads": 2},
    "tcn alone, sequence out": {"halvings": 2, "body": "none", "output": "sequence",
                                "output_size": 5},
    "conv + lstm, sequence out": {"frontend": "conv", "conv_channels": (8, 8),
                                  "bidirectional": False, "output": "sequence"},
    "one channel tcn + transformer": {"input": 1, "halvings": 2, "body": "transformer",
                                      "heads": 2},
}


def _encoder(setting: str) -> tuple[SequenceEncoder, int]:
    options = dict(SETTINGS[setting])
    size = options.pop("input", 3)
    torch.manual_seed(0)
    options = {"channels": 8, "hidden_size": 8, "dropout": 0.0, **options}
    encoder = SequenceEncoder(size, **options)
    with torch.no_grad():  # LayerNorm biases start at zero, which would hide a missing mask
        for name, param in encoder.named_parameters():
            if name.endswith("bias"):
                param.normal_(0.0, 0.5)
    return encoder, size


def _batch(rows: list[Tensor], full: bool | None = None) -> ModalityBatch:
    """Rows ``[T_i, C]`` padded into one batch; ``full=False`` forces the masked path."""
    t = max(len(r) for r in rows)
    values = torch.zeros(len(rows), t, rows[0].shape[1])
    mask = torch.zeros(len(rows), t, dtype=torch.bool)
    for i, r in enumerate(rows):
        values[i, : len(r)], mask[i, : len(r)] = r, True
    return ModalityBatch(values, torch.ones(len(rows), dtype=torch.bool), mask, full=full)


@pytest.mark.parametrize("setting", SETTINGS)
def test_the_fast_path_equals_the_masked_path_on_full_batches(setting: str) -> None:
    """Outputs, input gradients and parameter gradients, in training mode."""
    encoder, size = _encoder(setting)
    rows = [torch.randn(21, size) for _ in range(4)]
    results = []
    for full in (None, False):  # None: the batch reads as full; False: masked all the same
        batch = _batch(rows, full)
        batch.values.requires_grad_(True)
        encoder.zero_grad()
        features = encoder(batch)
        (features.values * torch.linspace(-1, 1, features.values.numel()).view_as(
            features.values)).sum().backward()
        grads = [p.grad.clone() for p in encoder.parameters() if p.grad is not None]
        results.append((features.values.detach(), batch.values.grad, grads))
    assert _batch(rows).is_full()
    (fast, fast_in, fast_params), (masked, masked_in, masked_params) = results
    torch.testing.assert_close(fast, masked, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fast_in, masked_in, rtol=1e-5, atol=1e-5)
    assert len(fast_params) == len(masked_params) > 0
    for a, b in zip(fast_params, masked_params, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("setting", SETTINGS)
def test_padded_rows_get_the_output_they_get_alone(setting: str) -> None:
    encoder, size = _encoder(setting)
    encoder.eval()
    rows = [torch.randn(n, size) for n in (37, 90, 5, 64)]
    with torch.no_grad():
        together = encoder(_batch(rows))
        for i, row in enumerate(rows):
            alone = encoder(_batch([row]))  # a full batch of one: the fast path
            if together.is_sequence:
                steps = int(alone.values.shape[1])
                assert int(together.mask[i].sum()) == steps
                torch.testing.assert_close(together.values[i, :steps], alone.values[0],
                                           rtol=1e-4, atol=1e-5)
                assert together.values[i, steps:].abs().sum() == 0  # padding stays zero
            else:
                torch.testing.assert_close(together.values[i], alone.values[0],
                                           rtol=1e-4, atol=1e-5)


class _CountMul(torch.overrides.TorchFunctionMode):
    """Counts tensor multiplications (the mask arithmetic) made inside the block."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def __torch_function__(self, func: object, types: object, args: tuple = (),
                           kwargs: dict | None = None) -> object:
        if getattr(func, "__name__", "") in ("mul", "__mul__", "__rmul__", "mul_"):
            self.calls += 1
        return func(*args, **(kwargs or {}))


def test_a_full_tcn_does_no_mask_arithmetic_and_a_padded_one_makes_each_mask_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made = []
    original = sequence_encoder.downsample_mask
    monkeypatch.setattr(sequence_encoder, "downsample_mask",
                        lambda mask, stride: made.append(stride) or original(mask, stride))
    net = TemporalConvNet(3, 8, 5, halvings=2, blocks=3, dropout=0.0)
    x = torch.randn(2, 40, 3)
    with _CountMul() as counted:
        out, mask = net(x, None)
    assert counted.calls == 0 and mask is None and made == []
    padded = torch.arange(40) < torch.tensor([40, 17]).unsqueeze(1)
    zeroed = x * padded.unsqueeze(-1)
    with _CountMul() as counted:
        out_masked, mask = net(zeroed, padded)
    assert made == [2, 2]  # one mask per downsampling level, however many blocks use it
    assert mask.sum(dim=1).tolist() == [10, 5]
    assert counted.calls == 3 * len(net.blocks)  # norm, conv1 and block outputs
    torch.testing.assert_close(out_masked[0], out[0], rtol=1e-5, atol=1e-5)


# -- RNNs: never packed ------------------------------------------------------------------------
def _packed_reference(rnn: torch.nn.RNNBase, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
    """What ``run_rnn`` gave when it packed: outputs zero at padded steps, the final state at
    each row's length (both directions), zeros for an empty row."""
    packed = pack_padded_sequence(x, lengths.clamp_min(1), batch_first=True,
                                  enforce_sorted=False)
    out, hidden = rnn(packed)
    out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
    h = hidden[0] if isinstance(hidden, tuple) else hidden
    last = torch.cat([h[-2], h[-1]], dim=-1) if rnn.bidirectional else h[-1]
    mask = torch.arange(x.shape[1]) < lengths.unsqueeze(1)
    return out * mask.unsqueeze(-1), last * (lengths > 0).unsqueeze(-1)


@pytest.mark.parametrize("kind,layers,bidirectional", [
    (torch.nn.LSTM, 1, False), (torch.nn.GRU, 2, False), (torch.nn.LSTM, 2, True),
])
def test_run_rnn_never_packs_and_equals_the_packed_run(
    monkeypatch: pytest.MonkeyPatch, kind: type, layers: int, bidirectional: bool,
) -> None:
    torch.manual_seed(0)
    rnn = kind(3, 5, num_layers=layers, batch_first=True, bidirectional=bidirectional)
    lengths = torch.tensor([9, 4, 1, 0, 7])
    mask = torch.arange(9) < lengths.unsqueeze(1)
    x = (torch.randn(5, 9, 3) * mask.unsqueeze(-1)).requires_grad_(True)
    weights = torch.randn(5, 9, rnn.hidden_size * (2 if bidirectional else 1))

    def grads(outputs: Tensor, last: Tensor) -> list[Tensor]:
        loss = (outputs * weights).sum() + last.sum()
        return torch.autograd.grad(loss, [x, *rnn.parameters()])

    expected = _packed_reference(rnn, x, lengths)
    expected_grads = grads(*expected)
    for name in ("pack_padded_sequence", "pad_packed_sequence"):
        monkeypatch.setattr(torch.nn.utils.rnn, name, _no_packing, raising=True)
        assert not hasattr(mmcore.layers, name)
    got = run_rnn(rnn, x, mask)
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    for a, b in zip(grads(*got), expected_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def _no_packing(*args: object, **kwargs: object) -> None:
    raise AssertionError("run_rnn packed a batch")
