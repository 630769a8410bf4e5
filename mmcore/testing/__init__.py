"""Test helpers for plugin authors (needs pytest: ``pip install mmcore-torch[test]``).

- :class:`ModalityContract`: the contract suite every modality plugin should pass; subclass it
  in a test module with ``plugin``, ``samples`` and ``options``.
- :class:`FusionContract`: the same for a fusion (masking, absent rows, finiteness,
  gradients, determinism); subclass it with ``fusion`` and ``options``.
- :func:`shared_data`: the path of a real-data file (``$MMCORE_SHARED_DATA`` or a
  ``shared/data`` folder above the test), skipping the test when it is absent.
- :func:`train_probe`: trains the modality's encoder + a linear head on labelled values and
  returns a :class:`Probe` (per-epoch ``losses``, ``accuracy``), to show a small model learns.

Importing this package does not import torch.
"""

from __future__ import annotations

from mmcore.testing.contract import ModalityContract
from mmcore.testing.data import shared_data
from mmcore.testing.fusion_contract import FusionContract
from mmcore.testing.probe import Probe, train_probe

__all__ = ["FusionContract", "ModalityContract", "Probe", "shared_data", "train_probe"]
