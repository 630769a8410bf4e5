"""mmcore plugin for the ``audio`` modality: clips as log-mel spectrograms.

Importing this package is cheap (no torch, no soundfile): the implementation is registered
by import path and loaded only when a spec uses it.
"""

from __future__ import annotations

from mmcore.plugins.hookspecs import hookimpl

MMCORE_API_VERSION = 1


@hookimpl
def register_modalities(register):
    register(
        "audio",
        "mmcore_plugin_audio.modality:AudioModality",
        options="mmcore_plugin_audio.options:AudioOptions",
        description="audio clips (wav/flac paths, bytes, arrays) -> log-mel -> CNN (+ LSTM)",
    )
