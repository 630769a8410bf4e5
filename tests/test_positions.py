"""The sine/cosine position codes of the transformer encoder and the attention fusion: sliced
from one table per size and device in eager mode, computed from the input's length in an
exported graph."""

from __future__ import annotations

import math

import pytest
import torch

from mmcore import layers
from mmcore.fusions.common import sinusoidal_positions as fusion_helper
from mmcore.layers import sinusoidal_positions
from mmcore.sequence.encoder import TransformerBody


def _codes(length: int, size: int) -> torch.Tensor:
    """Vaswani et al.'s formula, element by element."""
    out = torch.zeros(length, size)
    for pos in range(length):
        for i in range(size):
            angle = pos / 10000 ** ((i - i % 2) / size)
            out[pos, i] = math.sin(angle) if i % 2 == 0 else math.cos(angle)
    return out


@pytest.mark.parametrize("size", [6, 7])
def test_the_codes_follow_the_formula(size: int) -> None:
    assert torch.allclose(sinusoidal_positions(9, size), _codes(9, size), atol=1e-5)


@pytest.fixture
def no_tables():
    """The shared tables emptied before and after the test."""
    layers._TABLES.clear()
    yield
    layers._TABLES.clear()


def test_eager_calls_slice_one_table_per_size_and_device(no_tables) -> None:
    first = sinusoidal_positions(13, 8)
    assert sinusoidal_positions(13, 8).data_ptr() == first.data_ptr()
    assert sinusoidal_positions(13, 8, "cpu").data_ptr() == first.data_ptr()
    longer = sinusoidal_positions(40, 8)  # the table grows to the longest length asked for
    assert sinusoidal_positions(13, 8).data_ptr() == longer.data_ptr()
    torch.testing.assert_close(sinusoidal_positions(13, 8), first, rtol=0, atol=0)
    assert sinusoidal_positions(13, 6).data_ptr() != longer.data_ptr()
    assert len(layers._TABLES) == 2
    assert fusion_helper is sinusoidal_positions  # the fusions' helper is the same function


def test_a_table_changed_in_place_is_rebuilt(no_tables) -> None:
    sinusoidal_positions(20, 4).mul_(0)
    torch.testing.assert_close(sinusoidal_positions(20, 4), _codes(20, 4), atol=1e-5, rtol=0)


def test_fake_tensors_are_neither_kept_nor_given(no_tables) -> None:
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        fake = sinusoidal_positions(9, 4)
    assert not layers._TABLES
    real = sinusoidal_positions(9, 4)
    assert type(real) is torch.Tensor and type(fake) is not torch.Tensor
    with FakeTensorMode():
        assert type(sinusoidal_positions(9, 4)) is not torch.Tensor


def test_codes_first_made_under_inference_mode_train_afterwards(no_tables) -> None:
    with torch.inference_mode():
        sinusoidal_positions(11, 4)
    weight = torch.ones(4, requires_grad=True)
    # a product saves the codes for backward, which torch refuses for an inference tensor
    (sinusoidal_positions(11, 4) * weight).sum().backward()
    assert weight.grad is not None
    torch.manual_seed(0)
    body = TransformerBody(3, 8, 1, 2, 0.0)
    with torch.inference_mode():
        body(torch.randn(2, 17, 3), None)
    body(torch.randn(2, 17, 3), None).sum().backward()
    assert body.proj.weight.grad is not None


def test_an_exported_body_takes_other_lengths() -> None:
    torch.manual_seed(0)
    body = TransformerBody(3, 8, 1, 2, 0.0).eval()
    time = torch.export.Dim("time", min=2, max=1024)
    program = torch.export.export(body, (torch.randn(2, 5, 3), None),
                                  dynamic_shapes=({1: time}, None))
    longer = torch.randn(2, 40, 3)
    assert torch.allclose(program.module()(longer, None), body(longer, None), atol=1e-5)
