"""The image encoder: a three-level CNN per image, an LSTM over frames for sequences."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mmcore.batch import Features, ModalityBatch
from mmcore.encoder import Encoder
from mmcore.layers import rnn_output, run_rnn
from mmcore_plugin_image.options import ImageOptions


class ImageEncoder(Encoder):
    """Single images ``[B, C, H, W]`` or frames ``[B, T, C, H, W]`` + mask -> features.

    Each convolution sees a coarser scale than the one before (pooling and strides shrink the
    map). An image's features are its last map averaged to ``grid`` x ``grid`` cells, flattened
    and projected to ``feature_size`` (Linear + ReLU). Only present images (and real frames) go
    through the CNN, so BatchNorm statistics never see padding or missing samples.

    Output: single images give ``[B, feature_size]`` (``pooled``) or ``[B, h*w,
    feature_size]`` (``sequence``: every position of the last map, row-major, projected by a
    shared Linear); frames give ``[B, lstm_hidden*dirs]`` (``pool``: mean over real frames or
    the last real frame's state) or ``[B, T, lstm_hidden*dirs]`` with the input's mask.
    Absent samples are zero.
    """

    def __init__(self, options: ImageOptions) -> None:
        dirs = 2 if options.bidirectional else 1
        size = options.lstm_hidden * dirs if options.frames else options.feature_size
        super().__init__(size, sequence=options.output == "sequence")
        self.frames = options.frames
        self.pool = options.pool
        layers: list[nn.Module] = []
        channels = options.channels
        for i, (out, k, s) in enumerate(
            zip(options.conv_channels, options.kernel_sizes, options.strides, strict=True)
        ):
            layers.append(nn.Conv2d(channels, out, k, stride=s, padding=k // 2,
                                    bias=not options.batch_norm))
            if options.batch_norm:
                layers.append(nn.BatchNorm2d(out))
            layers.append(nn.ReLU())
            if options.max_pool and i < 2:
                # ceil_mode keeps a map of at least one cell whatever the image size
                layers.append(nn.MaxPool2d(2, ceil_mode=True))
            channels = out
        # channels-last: the CPU's convolution and max-pooling kernels run on this layout
        # without reordering (the demo's CNN: a 1.5x faster training step at batch 32, 1.25x
        # in inference, benchmarks/image_layout.py); encode_images hands images over in it
        self.cnn = nn.Sequential(*layers).to(memory_format=torch.channels_last)
        self.per_position = not self.frames and self.sequence
        if self.per_position:
            self.project = nn.Linear(channels, options.feature_size)
        else:
            self.summarise = nn.Sequential(
                nn.AdaptiveAvgPool2d(options.grid),
                nn.Flatten(),
                nn.Linear(channels * options.grid**2, options.feature_size),
                nn.ReLU(),
            )
        self.dropout = nn.Dropout(options.dropout)
        self.lstm = (
            nn.LSTM(options.feature_size, options.lstm_hidden, num_layers=options.lstm_layers,
                    batch_first=True, bidirectional=options.bidirectional)
            if options.frames else None
        )

    def encode_images(self, images: Tensor) -> Tensor:
        """``[N, C, H, W]`` -> ``[N, feature_size]``, or ``[N, h*w, feature_size]`` (the last
        map's positions) for a single-image sequence encoder."""
        maps = self.cnn(images.contiguous(memory_format=torch.channels_last))
        if self.per_position:
            return self.project(maps.flatten(2).transpose(1, 2))
        return self.summarise(maps)

    def forward(self, batch: ModalityBatch) -> Features:
        values = batch.values
        if not self.frames:
            if values.dim() != 4:
                raise ValueError(f"expected images [B, C, H, W], got {tuple(values.shape)}")
            if self.training:
                # absent rows are zeros; keeping them out of the CNN keeps BatchNorm honest
                encoded = self.encode_images(values[batch.present])
                out = encoded.new_zeros(values.shape[0], *encoded.shape[1:])
                out[batch.present] = encoded
            else:
                # in eval every row is encoded on its own (BatchNorm uses its running
                # statistics), so encoding all and zeroing the absent ones gives the same
                # features without data-dependent shapes: the graph torch.export needs
                out = self.encode_images(values)
                keep = batch.present.view(-1, *([1] * (out.dim() - 1)))
                out = torch.where(keep, out, torch.zeros_like(out))
            out = self.dropout(out)
            if out.dim() == 3:
                mask = batch.present.unsqueeze(1).expand(out.shape[:2]).clone()
                return self.features(out, mask, batch)
            return self.features(out, None, batch)
        if values.dim() != 5 or batch.mask is None:
            raise ValueError(
                f"expected frames [B, T, C, H, W] with a mask, got {tuple(values.shape)}"
            )
        real = batch.mask & batch.present.unsqueeze(1)
        if self.training:
            encoded = self.encode_images(values[real])
            frames = encoded.new_zeros(*values.shape[:2], encoded.shape[-1])
            frames[real] = encoded
        else:  # every frame on its own, padding zeroed after (see the single-image case)
            encoded = self.encode_images(values.flatten(0, 1))
            frames = encoded.view(*values.shape[:2], encoded.shape[-1])
            frames = torch.where(real.unsqueeze(-1), frames, torch.zeros_like(frames))
        outputs, last = run_rnn(self.lstm, self.dropout(frames), real)
        return self.features(*rnn_output(outputs, last, real, self.pool, self.sequence), batch)
