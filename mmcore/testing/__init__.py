"""Test helpers for plugin authors (needs pytest: ``pip install mmcore[test]``).

:class:`ModalityContract` is the contract suite every modality plugin should pass; subclass
it in a test module with ``plugin``, ``samples`` and ``options``.
"""

from __future__ import annotations

from mmcore.testing.contract import ModalityContract

__all__ = ["ModalityContract"]
