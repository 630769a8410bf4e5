"""An mmcore plugin that registers ``hadamard`` by name.

Declare it in your package's ``pyproject.toml`` and ``pip install`` the package::

    [project.entry-points.mmcore]
    my_research = "my_research.plugin"

Implementations are given by import path, so they are imported only when a spec uses them.
"""

from __future__ import annotations

import mmcore


@mmcore.hookimpl
def register_fusions(register):
    register(
        "hadamard",
        "my_research.fusions:HadamardFusion",
        "my_research.options:HadamardOptions",
        "element-wise product of the present modalities' projections",
    )
