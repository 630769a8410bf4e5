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
#: what a new plugin's values are: the shared template is "sequence"; others overlay it
KINDS = ("sequence", "vector")
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


def template_files(kind: str = "sequence") -> dict[str, Path]:
    """Template path (relative) -> file: the shared template, with the ``kind``'s own files
    (``template_<kind>/``) in place of the sequence ones."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}: expected one of {', '.join(KINDS)}")
    files = {str(p.relative_to(TEMPLATE)): p for p in TEMPLATE.rglob(f"*{SUFFIX}")}
    if kind != "sequence":
        overlay = TEMPLATE.parent / f"template_{kind}"
        files.update({str(p.relative_to(overlay)): p for p in overlay.rglob(f"*{SUFFIX}")})
    return dict(sorted(files.items()))


def create_plugin(name: str, output: Path, kind: str = "sequence") -> Path:
    """Write the package ``mmcore-plugin-<name>/`` under ``output``; returns its folder.

    ``kind``: ``"sequence"`` (values ``[T, F]``, padded and masked, a GRU) or ``"vector"``
    (fixed-size values ``[F]``, stacked, an MLP). Raises ``ValueError`` for an invalid name
    or kind, or when the folder exists and is not empty.
    """
    problem = check_name(name)
    if problem:
        raise ValueError(problem)
    values = placeholders(name)
    target = Path(output) / values["__PLUGIN_DIST__"]
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ValueError(f"{target} already exists and is not empty; choose another --output")
    files = template_files(kind)
    for name_in_template, source in files.items():
        relative = render(name_in_template, values)[: -len(SUFFIX)]
        text = render(source.read_text(encoding="utf-8"), values)
        if "__PLUGIN_" in text or "__MMCORE_" in text:  # a template typo must not ship
            raise RuntimeError(f"unreplaced placeholder left in template {source}")
        path = target / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return target
