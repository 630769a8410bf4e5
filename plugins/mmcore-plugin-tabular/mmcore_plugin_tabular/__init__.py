"""mmcore plugin for the ``tabular`` modality.

Only the registration lives here, so discovering plugins imports no torch.
"""

from __future__ import annotations

from mmcore.plugins.hookspecs import hookimpl

MMCORE_API_VERSION = 1


@hookimpl
def register_modalities(register) -> None:
    register(
        "tabular",
        "mmcore_plugin_tabular.modality:TabularModality",
        options="mmcore_plugin_tabular.options:TabularOptions",
        description="many numeric and categorical columns as one modality (MLP or "
        "feature-tokenizer transformer)",
    )
