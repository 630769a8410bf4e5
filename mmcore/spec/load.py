"""Loading Python spec files, checking them against the registry, and the JSON round trip."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from mmcore.errors import PluginError, SpecError
from mmcore.plugins.default import get_registry
from mmcore.plugins.registry import Registry
from mmcore.spec.model import Spec, close_names, pydantic_errors
from mmcore.spec.model import validation_problems as _problems
from mmcore.spec.modules import (
    SPEC_COPY,
    SPEC_MODULE_PREFIX,
    load_module,
    resolve_fusion_class,
)
from mmcore.spec.options import option_problems, registered_model, signature_model


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"train.epochs=3"`` -> ``(["train", "epochs"], 3)``; values are JSON, else strings."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise SpecError(
            "<command line>", [(text, "expected an override of the form field.path=value")]
        )
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key.split("."), value


#: the spec sections keyed by names the spec declares: an override changes an entry, never adds one
NAMED_SECTIONS = {"modalities": "modality", "heads": "head"}


def _by_name(entries: Any) -> Any:
    """A list of modality entries (each with ``name``) as a dict by name, so that an override
    reaches an entry by its name; anything else is kept."""
    if isinstance(entries, list | tuple) and all(
        isinstance(e, Mapping) and e.get("name") for e in entries
    ):
        return {e["name"]: dict(e) for e in entries}
    return entries


def _check_named(data: dict[str, Any], keys: list[str], text: str) -> None:
    """An override of ``modalities.<name>...``/``heads.<name>...`` names a declared entry."""
    if len(keys) < 2 or keys[0] not in NAMED_SECTIONS:
        return
    section = data.get(keys[0])
    known = list(section) if isinstance(section, Mapping) else []
    if keys[1] in known:
        return
    what = NAMED_SECTIONS[keys[0]]
    declared = ", ".join(repr(k) for k in known) or "none"
    raise SpecError("<command line>", [(
        text,
        f"the spec declares no {what} {keys[1]!r} ({keys[0]}: {declared}); an override changes "
        f"a declared {what}, it cannot add one (declare it in the spec)"
        + close_names(keys[1], known),
    )])


def apply_overrides(data: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """``data`` with each ``field.path=value`` override set; an override of
    ``modalities.<name>``/``heads.<name>`` must name a declared one (:class:`SpecError`)."""
    for text in overrides:
        keys, value = parse_override(text)
        if keys[0] in NAMED_SECTIONS and keys[0] in data:
            data[keys[0]] = _by_name(data[keys[0]])
        _check_named(data, keys, text)
        node = data
        for key in keys[:-1]:
            child = node.get(key)
            child = dict(child) if isinstance(child, Mapping) else {}
            node[key] = child  # a copy: the caller's nested dicts stay untouched
            node = child
        node[keys[-1]] = value
    return data


def _as_dict(spec: Spec) -> dict[str, Any]:
    data = spec.model_dump(exclude_unset=True)
    data.setdefault("data", {})["dataset"] = spec.data.dataset
    if isinstance(spec.fusion.name, type):
        data.setdefault("fusion", {})["name"] = spec.fusion.name
    return data


def validate_spec(
    value: Spec | Mapping[str, Any],
    *,
    source: str = "<spec>",
    base_dir: str | Path | None = None,
    overrides: Iterable[str] = (),
    registry: Registry | None = None,
    trust_code: bool = False,
) -> Spec:
    """Validate a spec object or dict, apply overrides, and check every name and option.

    A ``source`` ending in ``.json`` is data: a fusion or callback it names by import path is
    imported only from an allowed module, and a Python file only with ``trust_code`` (see
    :mod:`mmcore.spec.trust`). Any other value (a dict or :class:`Spec` built in Python, a
    Python spec file) is the caller's code, and its paths are imported as they are.
    Raises :class:`SpecError` listing each problem with its field path.
    """
    overrides = list(overrides)
    if isinstance(value, Spec):
        if source == "<spec>":  # it keeps where it came from: one from a spec.json stays data
            source = value.source
            base_dir = value.base_dir if base_dir is None else base_dir
        trust_code = trust_code or value._trusted
    if isinstance(value, Spec) and not overrides:
        data: Any = _as_dict(value)
    elif isinstance(value, Spec):
        data = apply_overrides(_as_dict(value), overrides)
    elif isinstance(value, Mapping):
        data = apply_overrides(dict(value), overrides)
    else:
        raise SpecError(
            source, [("spec", f"expected mmcore.Spec or a dict, got {type(value).__name__}")]
        )
    try:
        with pydantic_errors():
            spec = Spec.model_validate(data)
    except ValidationError as exc:
        problems = _problems(exc, model=Spec)
        # the fields pydantic refused, left out, so that the plugin names and options of
        # the rest are checked too: every problem is reported at once
        rest = _without_bad_fields(data, exc)
        if rest is not None:
            rest._source = source  # a spec.json's fusion and callbacks stay data: see trust
            rest._base_dir = str(base_dir) if base_dir is not None else None
            seen = {path for path, _ in problems}
            problems += [p for p in check_plugins(rest, registry or get_registry(), trust_code)
                         if not any(p[0].startswith(s) or s.startswith(p[0]) for s in seen)]
        raise SpecError(source, problems) from None
    spec._source = source
    spec._base_dir = str(base_dir) if base_dir is not None else None
    problems = check_plugins(spec, registry or get_registry(), trust_code)
    if problems:
        raise SpecError(source, problems)
    spec._trusted = trust_code
    return spec


def from_json(spec: Spec) -> bool:
    """Whether ``spec`` came from a ``spec.json`` (:func:`load_spec`, :func:`spec_from_json`):
    data, whose fusion and callback paths are checked (see ``trust_code``)."""
    return str(spec.source).endswith(".json")


def unchecked_data(spec: Spec) -> bool:
    """Whether ``spec`` came from a ``spec.json`` and was not checked as one with
    ``trust_code``: its fusion and callback paths must be checked before use."""
    return from_json(spec) and not spec._trusted


def _without_bad_fields(data: Any, exc: ValidationError, rounds: int = 5) -> Spec | None:
    """The spec validated with every field pydantic refused removed (repeatedly, as a removed
    field may uncover another), or ``None`` when what is left still does not validate."""
    import copy

    try:
        data = copy.deepcopy(data)
    except Exception:  # noqa: BLE001 - e.g. a datasets object that does not copy: give up
        return None
    for _ in range(rounds):
        for err in exc.errors():
            _drop(data, list(err["loc"]))
        try:
            with pydantic_errors():
                return Spec.model_validate(data)
        except ValidationError as again:
            exc = again
    return None


def _drop(data: Any, loc: list[Any]) -> None:
    """Remove the value at ``loc`` (pydantic's error location) from nested dicts/lists."""
    node = data
    for part in loc[:-1]:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            return
    last = loc[-1] if loc else None
    if isinstance(node, dict) and last in node:
        del node[last]


def load_spec(
    path: str | Path, overrides: Iterable[str] = (), registry: Registry | None = None,
    trust_code: bool = False,
) -> Spec:
    """Load a Python spec file (a module-level ``spec``) or a ``spec.json`` and validate it.
    A ``spec.json`` is data: ``trust_code=True`` lets it name fusion and callback classes in
    any module, and a fusion in a Python file (see :func:`validate_spec`)."""
    path = Path(path)
    source = str(path)
    if not path.is_file():
        raise SpecError(source, [("", "file not found" if not path.exists() else "not a file")])
    if path.suffix == ".json":
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise SpecError(
                source, [("", f"invalid JSON at line {exc.lineno}: {exc.msg}")]
            ) from None
        return validate_spec(
            data, source=source, base_dir=path.parent, overrides=overrides, registry=registry,
            trust_code=trust_code,
        )
    try:
        module = load_module(path)
    except SyntaxError as exc:
        raise SpecError(source, [("", f"syntax error at line {exc.lineno}: {exc.msg}")]) from None
    except SpecError as exc:
        raw = getattr(exc, "raw", None)
        if raw is None:
            raise
        # mmcore.Spec(...) refused its arguments: report them against the file, with the
        # plugin and option problems of the fields that are valid
        return validate_spec(
            raw, source=source, base_dir=path.parent, overrides=overrides, registry=registry
        )
    except Exception as exc:
        raise SpecError(
            source, [("", f"running the spec file raised {type(exc).__name__}: {exc}")]
        ) from exc
    if not hasattr(module, "spec"):
        raise SpecError(source, [("spec", "the file defines no module-level variable 'spec'")])
    return validate_spec(
        module.spec, source=source, base_dir=path.parent, overrides=overrides, registry=registry
    )


def check_plugins(spec: Spec, registry: Registry,
                  trust_code: bool = False) -> list[tuple[str, str]]:
    """Every plugin, fusion, head and callback name registered; every option accepted by
    the one options model of its component (see :mod:`mmcore.spec.options`). Imports no
    implementation, so no torch, except a fusion or callback class the spec names by path
    (from a ``spec.json`` only as :mod:`mmcore.spec.trust` allows, unless ``trust_code``)."""
    problems: list[tuple[str, str]] = []
    for name, mod in spec.modalities.items():
        path = f"modalities.{name}"
        try:
            model = registered_model(registry.get("modality", mod.plugin_name))
        except PluginError as exc:
            problems.append((f"{path}.plugin", str(exc)))
            continue
        problems += option_problems(model, mod.options, f"{path}.options")
    fusion = spec.fusion
    from_data = from_json(spec)
    try:
        resolved = data_fusion_class(spec, registry, trust_code) if from_data else None
        model = fusion_options_model(fusion.name, registry, spec.base_dir, resolved)
    except SpecError as exc:
        problems += exc.problems
    except PluginError as exc:
        problems.append(("fusion.name", str(exc)))
    except Exception as exc:  # noqa: BLE001 - importing the user's module may raise anything
        problems.append(("fusion.name", f"cannot import {fusion.name!r}: {exc}"))
    else:
        problems += option_problems(model, fusion.options, "fusion.options")
    for name, head in spec.heads.items():
        try:
            model = registered_model(registry.get("head", head.kind))
        except PluginError as exc:
            problems.append((f"heads.{name}.kind", str(exc)))
            continue
        problems += option_problems(model, head.options, f"heads.{name}.options")
    for i, cb in enumerate(spec.train.callbacks):
        field = f"train.callbacks.{i}"
        try:
            if ":" in cb:  # a class by import path (this imports the trainer, and torch)
                from mmcore.spec.callback_paths import check_callback_path

                check_callback_path(
                    cb, Path(spec.base_dir) if spec.base_dir else None, data=from_data,
                    trust_code=trust_code, source=spec.source, field=field, registry=registry)
            else:
                registry.get("callback", cb)
        except PluginError as exc:
            problems.append((field, str(exc)))
        except SpecError as exc:
            problems += exc.problems
    return problems


def data_fusion_class(spec: Spec, registry: Registry, trust_code: bool) -> type | None:
    """The fusion class a ``spec.json`` names by import path, resolved as a run folder's is
    (:func:`mmcore.spec.trust.resolve_run_fusion_class`: a file path only with
    ``trust_code``, a module only from the allow-list unless ``trust_code``); ``None`` for a
    registered name. JSON data from no folder (``spec_from_json`` without ``base_dir``) has
    no folder to keep modules apart from, so only the allow-list and the opt-in apply."""
    name = spec.fusion.name
    if not (isinstance(name, str) and ":" in name):
        return None
    from mmcore.spec.trust import SPEC_JSON_TRUST_HINT, resolve_run_fusion_class

    return resolve_run_fusion_class(name, spec.base_dir, trust_code=trust_code,
                                    source=str(spec.source), registry=registry,
                                    hint=SPEC_JSON_TRUST_HINT)


def fusion_options_model(
    name: str | type,
    registry: Registry,
    base_dir: str | Path | None,
    fusion_class: type | None = None,
) -> type[BaseModel]:
    """The options model of the spec's fusion: the registered model of a fusion named by
    its registered name, else the model of its class's ``__init__`` (``fusion_class``, the
    class already resolved, as :func:`mmcore.load` resolves it safely for a run folder;
    else resolved from ``name``). Raises :class:`PluginError` for a name nobody registers
    or a class that is not a :class:`~mmcore.fusion.Fusion`."""
    if fusion_class is None and isinstance(name, str) and ":" not in name:
        return registered_model(registry.get("fusion", name))
    cls = fusion_class if fusion_class is not None else resolve_fusion_class(name, base_dir)
    from mmcore.fusion import Fusion

    if not (isinstance(cls, type) and issubclass(cls, Fusion)):
        raise PluginError(f"{cls!r} is not a subclass of mmcore.Fusion")
    return signature_model(cls, skip=1)


def spec_to_json(spec: Spec) -> dict[str, Any]:
    """A JSON-ready dict; a fusion class becomes its import path (or ``spec.py:Class``)."""
    data = spec.model_dump(mode="json", exclude={"data": {"dataset"}, "fusion": {"name"}})
    name = spec.fusion.name
    if isinstance(name, type):
        if name.__module__.startswith(SPEC_MODULE_PREFIX):
            name = f"{SPEC_COPY}:{name.__qualname__}"
        else:
            name = f"{name.__module__}:{name.__qualname__}"
    data["fusion"]["name"] = name
    return data


def spec_from_json(data: Mapping[str, Any], base_dir: str | Path | None = None) -> Spec:
    """The inverse of :func:`spec_to_json` (structure only; plugins are checked on use, and
    the result stays data: ``Trainer`` and :func:`validate_spec` check the fusion and callback
    classes it names as a ``spec.json``'s, see :func:`load_spec`)."""
    try:
        with pydantic_errors():
            spec = Spec.model_validate(dict(data))
    except ValidationError as exc:
        raise SpecError("spec.json", _problems(exc, model=Spec)) from None
    spec._base_dir = str(base_dir) if base_dir is not None else None
    spec._source = str(Path(base_dir) / "spec.json") if base_dir is not None else "spec.json"
    return spec
