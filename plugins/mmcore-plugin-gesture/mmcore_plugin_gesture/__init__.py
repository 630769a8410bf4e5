"""mmcore plugin ``gesture``: motion and sensor sequences ``[T, C]``.

This module only registers names; the implementation is imported when a spec uses it.
"""

from __future__ import annotations

from mmcore.plugins.hookspecs import hookimpl

MMCORE_API_VERSION = 1


@hookimpl
def register_modalities(register):
    register(
        "gesture",
        "mmcore_plugin_gesture.modality:GestureModality",
        options="mmcore_plugin_gesture.options:GestureOptions",
        description="motion / sensor sequences [T, C] (joint angles, IMU, fingertip "
        "trajectories); minirocket / tcn / transformer / LSTM reference encoder",
    )
