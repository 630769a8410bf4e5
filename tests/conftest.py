from __future__ import annotations

import pytest

from mmcore.plugins.discovery import new_plugin_manager
from mmcore.plugins.registry import Registry
from tests.toy import ToyPlugin


@pytest.fixture
def toy_registry() -> Registry:
    """A registry with the core's built-ins and the toy modality plugin only."""
    pm = new_plugin_manager()
    pm.register(ToyPlugin(), name="toy")
    return Registry(pm, distributions={"toy": ("toy-dist", "1.0")})
