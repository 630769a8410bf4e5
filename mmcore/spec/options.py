"""How options reach an implementation: one way for modalities, fusions and heads.

**One options model per component, declared in one place.** A registered modality, fusion or
head has the pydantic model its registration names, by import path so that validating a spec
imports no torch::

    register("text", "mmcore_plugin_text.modality:TextModality",
             options="mmcore_plugin_text.options:TextOptions")

Registered without one, it takes no options. A fusion class named in a spec (the class itself,
``"module:Class"`` or ``"file.py:Class"``) is its own declaration: its model is read from its
``__init__`` keyword parameters (:func:`signature_model`).

**Validated by mmcore, before the implementation sees them.** :func:`option_problems` is what
spec validation (``mmcore validate``) reports, each with its field path; :func:`validated` is
the same check where a model is built, and raises :class:`~mmcore.errors.SpecError` (a spec may
have been changed, or read back from ``spec.json``, since it was validated). An implementation
never validates its options again.

**Handed over validated.** A modality gets the options object, ``cls(name, options, root=,
columns=)`` (:func:`mmcore.modality.new_modality`), kept as ``self.options``. A fusion or a
head, an ``nn.Module`` written like research code, gets the object's fields as keyword
arguments (:func:`keyword_arguments`):
``cls(input_sizes, **kwargs)`` and ``cls(input_size, target, **kwargs)``.

Nothing here imports torch.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, create_model

from mmcore.errors import PluginError, SpecError
from mmcore.plugins.registry import Registration
from mmcore.spec.model import validation_problems

Problems = list[tuple[str, str]]


class NoOptions(BaseModel):
    """The options of a fusion or head registered without an options model: none at all."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def registered_model(registration: Registration) -> type[BaseModel]:
    """The options model ``registration`` names (imported now when named by path).

    Registered without one, the implementation takes no options: the model is
    :class:`~mmcore.modality.ModalityOptions` for a modality, :class:`NoOptions` otherwise,
    and every option a spec gives is unknown. Raises :class:`PluginError` when the named
    object is not a pydantic model (or, for a modality, not a ``ModalityOptions``).
    """
    from mmcore.modality import ModalityOptions  # numpy: only once a modality is looked up

    base = ModalityOptions if registration.kind == "modality" else BaseModel
    try:
        model = registration.load_options()
    except (Exception, SystemExit) as exc:  # name the broken plugin; never exit for it
        raise PluginError(
            f"{_who(registration)} failed to import its options model "
            f"{registration.options!r}: {type(exc).__name__}: {exc}"
        ) from exc
    if model is None:
        return ModalityOptions if registration.kind == "modality" else NoOptions
    if not (isinstance(model, type) and issubclass(model, base)):
        raise PluginError(
            f"{_who(registration)} names {registration.options!r} as its options model, which "
            f"is not a subclass of {base.__module__}.{base.__qualname__}"
        )
    return model


def implementation_model(registration: Registration, impl: type) -> type[BaseModel]:
    """:func:`registered_model`, once the implementation ``impl`` is imported.

    A class attribute ``options_class`` naming the same model is accepted (plugins written
    before the registration was the one declaration); naming another one, or naming one only
    there, is a :class:`PluginError` that says how to declare it once.
    """
    model = registered_model(registration)
    declared = getattr(impl, "options_class", None)
    if declared is None or declared is model:
        return model
    fix = (
        f"name the options model once, in the registration (register({registration.name!r}, "
        f"..., options='package.options:Model')), and delete {impl.__name__}.options_class"
    )
    if registration.options is None:
        raise PluginError(
            f"{_who(registration)} names its options model {_name(declared)} only as "
            f"{impl.__name__}.options_class, which mmcore does not read: {fix}"
        )
    raise PluginError(
        f"{_who(registration)} registers the options model {_name(model)} but "
        f"{impl.__name__}.options_class is {_name(declared)}: {fix}"
    )


def signature_model(cls: type, skip: int = 1) -> type[BaseModel]:
    """The options model of a class named in a spec: ``cls.__init__``'s parameters after
    ``skip`` positional ones (a fusion's ``input_sizes``).

    Each parameter is a field of the same name, with its default (none: the option is
    required) and its annotation (``Any`` where it has none or pydantic cannot check it).
    Other names are refused, unless ``__init__`` takes ``**kwargs``.
    """
    init = cls.__init__  # type: ignore[misc]  # the class's own, read from the class
    parameters = list(inspect.signature(init).parameters.values())[1 + skip :]
    fields: dict[str, Any] = {}
    extra: Literal["allow", "forbid"] = "forbid"
    for i, p in enumerate(parameters):
        if p.kind is inspect.Parameter.VAR_KEYWORD:
            extra = "allow"
            continue
        if p.kind is inspect.Parameter.VAR_POSITIONAL:
            continue
        default = ... if p.default is inspect.Parameter.empty else p.default
        # fields under neutral names, the parameter as alias: a parameter may be called
        # anything, `_private` or `json` included, which pydantic's own names would refuse
        annotation = _checkable(_resolve(p.annotation, init))
        fields[f"option_{i}"] = (annotation, Field(default, alias=p.name))
    config = ConfigDict(extra=extra, frozen=True, arbitrary_types_allowed=True)
    return create_model(f"{cls.__name__}Options", __config__=config, **fields)


def option_problems(model: type[BaseModel], options: Mapping[str, Any], path: str) -> Problems:
    """``(field path, message)`` for every option ``model`` refuses (field paths under
    ``path``, e.g. ``fusion.options``); none when they are valid."""
    try:
        model.model_validate(dict(options))
    except ValidationError as exc:
        takes_none = model is NoOptions or _takes_none(model)
        found = []
        problems = validation_problems(exc, path, model)
        for (field, why), error in zip(problems, exc.errors(), strict=True):
            if error["type"] == "missing":
                why = "required option is missing"
            elif takes_none:
                why += "; it takes no options (its registration names no options model)"
            found.append((field, why))
        return found
    return []


def validated(
    model: type[BaseModel], options: Mapping[str, Any], *, source: str, path: str
) -> BaseModel:
    """``options`` as a ``model`` instance; :class:`SpecError` (from ``source``, fields under
    ``path``) listing every option refused."""
    try:
        return model.model_validate(dict(options))
    except ValidationError:
        raise SpecError(source, option_problems(model, options, path)) from None


def keyword_arguments(options: BaseModel) -> dict[str, Any]:
    """The validated ``options`` as the keyword arguments of a fusion or head: every field
    (defaults included, so the model's defaults are the ones that apply) under its name as
    the spec gives it (its alias), values as validated (nested models stay objects)."""
    fields = type(options).model_fields
    out = {(info.alias or name): getattr(options, name) for name, info in fields.items()}
    out.update(options.model_extra or {})
    return out


def _resolve(annotation: Any, function: Any) -> Any:
    """A parameter's annotation as a type: a string one (``from __future__ import
    annotations``) is evaluated in the function's module, ``Any`` where that fails."""
    if annotation is inspect.Parameter.empty:
        return Any
    if not isinstance(annotation, str):
        return annotation

    def stub() -> None: ...

    stub.__annotations__ = {"value": annotation}
    try:  # one parameter at a time: one unresolvable annotation leaves the others checked
        return typing.get_type_hints(stub, getattr(function, "__globals__", None))["value"]
    except Exception:  # noqa: BLE001 - whatever evaluating the annotation raised
        return Any


def _checkable(annotation: Any) -> Any:
    """``annotation`` where pydantic can validate against it, else ``Any``."""
    # a pydantic model refuses a config of its own; any other class needs arbitrary types
    for config in (None, ConfigDict(arbitrary_types_allowed=True)):
        try:
            TypeAdapter(annotation, config=config)
        except Exception:  # noqa: BLE001, S112 - pydantic raises several kinds here
            continue
        return annotation
    return Any


def _takes_none(model: type[BaseModel]) -> bool:
    from mmcore.modality import ModalityOptions

    return model is ModalityOptions


def _who(registration: Registration) -> str:
    return (f"{registration.kind} {registration.name!r} of plugin {registration.plugin!r} "
            f"({registration.distribution or 'unknown distribution'})")


def _name(model: Any) -> str:
    return f"{model.__module__}.{model.__qualname__}" if isinstance(model, type) else repr(model)
