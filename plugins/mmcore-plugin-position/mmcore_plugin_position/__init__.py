"""mmcore plugin ``position``: coordinate sequences such as hand landmarks over time.

This module only registers names; the implementation is imported when a spec uses it.
"""

from __future__ import annotations

from mmcore.plugins.hookspecs import hookimpl

MMCORE_API_VERSION = 1


@hookimpl
def register_modalities(register):
    register(
        "position",
        "mmcore_plugin_position.modality:PositionModality",
        options="mmcore_plugin_position.options:PositionOptions",
        description="keypoint coordinates over time [T, K, D] or flat frames [T, F]; "
        "minirocket / tcn / transformer / conv1d + LSTM reference encoder",
    )
