"""\"Did you mean\": the known names closest to an unknown key of a spec (difflib), found by
walking the spec's pydantic models along the key's path. Imports no torch."""

from __future__ import annotations

import collections.abc
import difflib
import typing
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel


def _field_names(model: Any) -> list[str] | None:
    """The names a spec may give for ``model``'s fields (aliases where declared), or ``None``
    when ``model`` is not a pydantic model."""
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return None
    return [field.alias or name for name, field in model.model_fields.items()]


def _step(annotation: Any, part: Any) -> Any:
    """The type found at ``part`` of a value typed ``annotation`` (``None``: unknown)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        for name, field in annotation.model_fields.items():
            if part in (name, field.alias):
                return field.annotation
        return None
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (dict, Mapping, collections.abc.Mapping) and len(args) == 2:
        return args[1]
    if origin in (list, tuple, collections.abc.Sequence) and args:
        return args[0]
    if args:  # a union (X | None): the first member that can hold ``part``
        for member in args:
            found = _step(member, part)
            if found is not None:
                return found
    return None


def close_names(name: Any, known: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` (or ``'x' or 'y'``) for the names in ``known`` closest to
    ``name`` (difflib), or ``""`` when none is close."""
    close = difflib.get_close_matches(str(name), list(known), n=2, cutoff=0.6)
    if not close:
        return ""
    return "; did you mean " + " or ".join(repr(c) for c in close) + "?"


def suggestion(model: Any, loc: tuple[Any, ...]) -> str:
    """``close_names`` for the unknown key at the end of ``loc`` under ``model``."""
    if model is None or not loc:
        return ""
    cursor = model
    for part in loc[:-1]:
        cursor = _step(cursor, part)
        if cursor is None:
            return ""
    names = _field_names(cursor)
    if names is None:
        for member in typing.get_args(cursor):  # e.g. SplitSpec | None
            names = _field_names(member)
            if names is not None:
                break
    return close_names(loc[-1], names or [])
