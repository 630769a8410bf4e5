"""``rnn``: the reference design's integration step, an LSTM/GRU over the modalities."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from mmcore.batch import Features
from mmcore.fusion import Fusion
from mmcore.fusions.common import Projection, presence, resample, true_first, zero_absent
from mmcore.layers import run_rnn

CELLS = {"lstm": nn.LSTM, "gru": nn.GRU}
STEPS = ("auto", "modalities", "time")


class RNNFusion(Fusion):
    """Integrates the modalities with a recurrent network; the output is its final state.

    Two ways to lay out the steps (``steps``):

    ``"modalities"``: one step per modality, in sorted order. Step ``m`` is the modality's
        pooled features projected to ``project`` (a ``Linear`` per modality). Absent modalities
        are skipped, not fed as zeros: each sample's present modalities are packed to the front
        and the RNN runs over exactly those (``run_rnn``: padding changes nothing).
    ``"time"``: every modality must be a sequence. Each sample's real steps of each modality are
        resampled (linear interpolation) to ``length`` steps, so that modalities of different
        rates line up in time; step ``t`` is ``Σ_m W_m x_m(t) + b_m`` over the modalities present
        in the sample (equal to a ``Linear`` of their concatenation, with absent ones left out).
        A sample none of whose modalities has a real step gives zeros.
    ``"auto"`` (default): ``"time"`` when every input is a sequence, else ``"modalities"``.

    Args:
        input_sizes: modality name -> feature size.
        cell: ``"lstm"`` or ``"gru"``.
        hidden: hidden size per direction; the output size is ``hidden`` x directions.
        layers: stacked recurrent layers.
        bidirectional: run both directions and concatenate their final states.
        project: the common size each modality is projected to (the RNN's input size).
        steps: ``"auto"``, ``"modalities"`` or ``"time"``, as above.
        length: the common number of steps in ``"time"`` mode.
        dropout: dropout between recurrent layers (needs ``layers`` > 1).
    """

    def __init__(
        self,
        input_sizes: Mapping[str, int],
        cell: str = "lstm",
        hidden: int = 128,
        layers: int = 1,
        bidirectional: bool = False,
        project: int = 128,
        steps: str = "auto",
        length: int = 32,
        dropout: float = 0.0,
    ) -> None:
        directions = 2 if bidirectional else 1
        super().__init__(input_sizes, output_size=hidden * directions)
        if cell not in CELLS:
            raise ValueError(f"rnn fusion: cell must be one of {sorted(CELLS)}, got {cell!r}")
        if steps not in STEPS:
            raise ValueError(f"rnn fusion: steps must be one of {list(STEPS)}, got {steps!r}")
        if length < 1:
            raise ValueError(f"rnn fusion: length must be at least 1, got {length}")
        self.steps = steps
        self.length = int(length)
        self.project = Projection(self.input_sizes, project)
        self.rnn = CELLS[cell](
            project,
            hidden,
            num_layers=layers,
            bidirectional=bidirectional,
            batch_first=True,
            dropout=dropout if layers > 1 else 0.0,
        )

    def forward(self, features: Mapping[str, Features]) -> Tensor:
        all_sequences = all(features[m].is_sequence for m in self.modalities)
        if self.steps == "time" and not all_sequences:
            pooled = [m for m in self.modalities if not features[m].is_sequence]
            raise ValueError(
                f"rnn fusion with steps='time' needs sequence features from every modality; "
                f"{', '.join(pooled)} gave pooled [B, D] features"
            )
        if self.steps == "time" or (self.steps == "auto" and all_sequences):
            x, mask = self._time_steps(features)
        else:
            x, mask = self._modality_steps(features)
        _, last = run_rnn(self.rnn, x, mask)
        return last

    def _modality_steps(self, features: Mapping[str, Features]) -> tuple[Tensor, Tensor]:
        z = self.project(features)  # [B, M, P]
        present = presence(features, self.modalities)
        order = true_first(present)  # present modalities to the front, in their sorted order
        z = z.gather(1, order.unsqueeze(-1).expand_as(z))
        count = present.sum(dim=1, keepdim=True)
        mask = torch.arange(z.shape[1], device=z.device).unsqueeze(0) < count
        return z, mask

    def _time_steps(self, features: Mapping[str, Features]) -> tuple[Tensor, Tensor]:
        total: Tensor | None = None
        any_valid: Tensor | None = None
        for m in self.modalities:
            values, valid = resample(features[m], self.length)
            step = zero_absent(self.project.linear[m](values), valid)
            total = step if total is None else total + step
            any_valid = valid if any_valid is None else any_valid | valid
        assert total is not None and any_valid is not None
        mask = any_valid.unsqueeze(1).expand(-1, self.length)
        return total, mask
