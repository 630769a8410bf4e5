"""The sine/cosine position codes of the transformer encoder and the attention fusion: computed
once per length in eager mode, from the input's length in an exported graph."""

from __future__ import annotations

import math

import pytest
import torch

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


def test_eager_calls_share_one_tensor_per_length_and_size() -> None:
    first = sinusoidal_positions(13, 8)
    assert sinusoidal_positions(13, 8) is first
    assert sinusoidal_positions(13, 8, "cpu") is first
    assert sinusoidal_positions(14, 8) is not first
    assert fusion_helper is sinusoidal_positions  # the fusions' helper is the same function


def test_codes_first_made_under_inference_mode_train_afterwards() -> None:
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
