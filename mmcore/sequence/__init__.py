"""Sequence preprocessing and encoders shared by every sequence modality (``[T, C]`` arrays).

- :mod:`mmcore.sequence.options`: the declared ``transforms`` steps (pydantic, no numpy).
- :mod:`mmcore.sequence.transforms`: the array functions (numpy; scipy for polyphase
  resampling).
- :mod:`mmcore.sequence.pipeline`: :class:`SequencePipeline`, fitted on the training split,
  saved with the run.
- :mod:`mmcore.sequence.encoder`: :class:`SequenceEncoder` and its options (torch; import it
  explicitly); :mod:`mmcore.sequence.minirocket`: the MiniRocket encoder.
- :mod:`mmcore.sequence.modality_options`: ``SequenceOptions``, what a spec sets for a sequence
  modality, and the rule of ``encoder: "auto"`` (pydantic only);
  :mod:`mmcore.sequence.modality`: ``SequenceModality``, the base of sequence plugins.

Plugins compose these; no plugin imports another plugin.
"""

from mmcore.sequence.options import (
    Augment,
    Clip,
    Diff,
    Envelope,
    Resample,
    Select,
    Standardize,
    Transform,
)
from mmcore.sequence.pipeline import SequencePipeline, parse_transforms

__all__ = [
    "Augment",
    "Clip",
    "Diff",
    "Envelope",
    "Resample",
    "Select",
    "SequencePipeline",
    "Standardize",
    "Transform",
    "parse_transforms",
]
