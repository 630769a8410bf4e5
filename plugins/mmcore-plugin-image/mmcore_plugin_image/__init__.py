"""mmcore plugin for the ``image`` modality: single images or sequences of frames.

Importing this package is cheap (no torch, no Pillow): the implementation is registered by
import path and loaded only when a spec uses it.
"""

from __future__ import annotations

from mmcore.plugins.hookspecs import hookimpl

MMCORE_API_VERSION = 1


@hookimpl
def register_modalities(register):
    register(
        "image",
        "mmcore_plugin_image.modality:ImageModality",
        options="mmcore_plugin_image.options:ImageOptions",
        description="images or frame sequences (paths, bytes, arrays, PIL) -> CNN (+ LSTM)",
    )
