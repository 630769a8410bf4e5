"""Writing a new modality plugin package from the templates in ``template/``.

Template files end in ``.tmpl``; their names and contents hold placeholders (``__PLUGIN_NAME__``
and the others in :func:`placeholders`) replaced by plain string substitution.
"""

from __future__ import annotations

import keyword
import re
from pathlib import Path

from mmcore import __version__

TEMPLATE = Path(__file__).parent / "template"
SUFFIX = ".tmpl"
NAME_PATTERN = re.compile(r"[a-z][a-z0-9_]*")


def check_name(name: str) -> str | None:
    """Why ``name`` cannot be a modality plugin name, or ``None`` if it can."""
    if not NAME_PATTERN.fullmatch(name):
        return (
            f"invalid plugin name {name!r}: use lower-case letters, digits and underscores, "
            "starting with a letter (e.g. 'eeg' or 'depth_map')"
        )
    if keyword.iskeyword(name):
        return f"invalid plugin name {name!r}: it is a Python keyword"
    if name.endswith("_") or "__" in name:
        return f"invalid plugin name {name!r}: no trailing or doubled underscores"
    return None


def placeholders(name: str) -> dict[str, str]:
    """Placeholder -> text for plugin ``name`` (e.g. ``depth_map``)."""
    return {
        "__PLUGIN_NAME__": name,
        "__PLUGIN_CLASS__": "".join(part.capitalize() for part in name.split("_")),
        "__PLUGIN_PACKAGE__": f"mmcore_plugin_{name}",
        "__PLUGIN_DIST__": f"mmcore-plugin-{name}",
        "__MMCORE_VERSION__": ".".join(__version__.split(".")[:2]),
    }


def render(text: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        text = text.replace(key, value)
    return text


def create_plugin(name: str, output: Path) -> Path:
    """Write the package ``mmcore-plugin-<name>/`` under ``output``; returns its folder.

    Raises ``ValueError`` for an invalid name or when the folder exists and is not empty.
    """
    problem = check_name(name)
    if problem:
        raise ValueError(problem)
    values = placeholders(name)
    target = Path(output) / values["__PLUGIN_DIST__"]
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ValueError(f"{target} already exists and is not empty; choose another --output")
    for source in sorted(TEMPLATE.rglob(f"*{SUFFIX}")):
        relative = render(str(source.relative_to(TEMPLATE)), values)[: -len(SUFFIX)]
        text = render(source.read_text(encoding="utf-8"), values)
        if "__PLUGIN_" in text or "__MMCORE_" in text:  # a template typo must not ship
            raise RuntimeError(f"unreplaced placeholder left in template {source}")
        path = target / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return target
