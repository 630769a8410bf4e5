"""mmcore plugin for the ``text`` modality.

Only the registration lives here, so discovering plugins imports neither torch nor tokenizers.
"""

from __future__ import annotations

from mmcore.plugins.hookspecs import hookimpl

MMCORE_API_VERSION = 1


@hookimpl
def register_modalities(register) -> None:
    register(
        "text",
        "mmcore_plugin_text.modality:TextModality",
        options="mmcore_plugin_text.options:TextOptions",
        description="strings: a tokenizer fitted on the training split (or given) + LSTM encoder",
    )
