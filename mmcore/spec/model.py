"""The spec: pydantic models of data, modalities, fusion, heads and training settings.

This module imports no torch: validating a spec is quick.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from mmcore.spec.strict import StrictModel
from mmcore.spec.suggest import close_names, suggestion
from mmcore.spec.tables import NOT_SAVED, dataset_table, is_datasets_object
from mmcore.spec.train import TrainSpec

#: re-exported: NOT_SAVED and close_names for mmcore.spec.load and
#: mmcore.inference.predict, StrictModel and TrainSpec where the spec's models were always
#: imported from
__all__ = ["NOT_SAVED", "StrictModel", "TrainSpec", "close_names"]



def _loc(loc: Iterable[Any]) -> str:
    return ".".join(str(part) for part in loc)


def validation_problems(
    exc: ValidationError, prefix: str = "", model: Any = None
) -> list[tuple[str, str]]:
    """``(field path, message)`` for each error of ``exc``, worded for spec authors (paths
    under ``prefix``). With ``model``, the pydantic model ``exc`` came from, an unknown key
    names the closest known ones ("did you mean")."""
    out = []
    for err in exc.errors():
        path = ".".join(p for p in (prefix, _loc(err["loc"])) if p)
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            message = "unknown option (not accepted here)" + suggestion(model, tuple(err["loc"]))
        elif "input" in err and err["type"] not in {"missing"}:
            shown = repr(err["input"])
            if len(shown) > 120:  # a large object (a table, an array) is not printed whole
                shown = shown[:100] + "..."
            message += f" (got {shown})"
        out.append((path, message))
    return out


class SplitSpec(StrictModel):
    """How to make splits when the data has none."""

    validation: float = Field(0.1, ge=0, lt=1, description="fraction held out for validation")
    test: float = Field(0.1, ge=0, lt=1, description="fraction held out for test")
    seed: int = 0
    stratify: bool = Field(True, description="stratify by the first classification target")
    group_column: str | None = Field(
        None,
        description="a column of group ids (e.g. signer, session): every group goes whole to "
        "one split",
    )


class DataSpec(StrictModel):
    """Where the data is and how to read it. Relative paths resolve against the spec file."""

    model_config = ConfigDict(
        extra="forbid", validate_assignment=True, arbitrary_types_allowed=True
    )

    path: str | None = Field(None, description="a data file or folder holding every split")
    train: str | None = Field(None, description="a file or folder holding the training split")
    validation: str | None = None
    test: str | None = None
    format: Literal["auto", "csv", "json", "parquet", "disk", "imagefolder", "audiofolder"] = "auto"
    root: str | None = Field(
        None,
        description="folder that relative file paths in the data resolve against "
        "(default: the data file's folder)",
    )
    split_column: str | None = Field(
        None, description="a column whose values (train/validation/test) assign rows to splits"
    )
    split: SplitSpec = Field(default_factory=SplitSpec)
    bad_rows: Literal["raise", "skip"] = "raise"
    allow_missing: bool = Field(
        False, description="allow rows that lack some (not all) modalities; they are masked"
    )
    num_proc: int | None = Field(None, ge=1, description="processes for preprocessing")
    streaming: bool = False
    in_memory: bool | Literal["auto"] = Field(
        "auto",
        description="hold each preprocessed split in memory, decoded once, instead of reading "
        "every batch from the cache file ('auto': when the split's cached arrays take at most "
        "1 GiB)",
    )
    cache_dir: str | None = None
    license: str | None = Field(
        None, description="the data's licence, shown in the run's model card (e.g. 'CC BY 4.0')"
    )
    dataset: Any = Field(
        None, exclude=True, description="a datasets.Dataset, DatasetDict or pandas DataFrame (or "
        "a dict of them by split) given from Python"
    )

    @field_validator("dataset", mode="before")
    @classmethod
    def _dataset_table(cls, value: Any) -> Any:
        """A ``datasets`` table, or a pandas DataFrame made into one; a dict of them by split."""
        if value is None:
            return value
        if isinstance(value, Mapping) and not is_datasets_object(value):
            if not value:
                raise ValueError("an empty dict; give a table per split (train/validation/test)")
            return {key: dataset_table(item, f"[{key!r}]") for key, item in value.items()}
        return dataset_table(value, "")

    @model_validator(mode="after")
    def _one_source(self) -> DataSpec:
        if self.dataset is None and self.path is None and self.train is None:
            raise ValueError("give data.path, data.train (and validation/test) or data.dataset")
        if self.path is not None and self.train is not None:
            raise ValueError("give either data.path or data.train/validation/test, not both")
        return self


class ModalitySpec(StrictModel):
    """One modality: the plugin that reads it, its column(s) and the plugin's options."""

    name: str | None = Field(None, description="set from the key when modalities is a dict")
    plugin: str | None = Field(None, description="registered modality name (default: the name)")
    column: str | list[str] = Field(description="column, or columns read together as one value")
    options: dict[str, Any] = Field(default_factory=dict)
    lr_scale: float = Field(
        1.0, gt=0, description="this modality's encoder learns at train.lr x lr_scale (e.g. 0.1 "
        "for a pretrained backbone)"
    )
    weight_decay: float | None = Field(
        None, ge=0, description="weight decay of this encoder's matrices (default: "
        "train.weight_decay)"
    )
    freeze: bool = Field(
        False, description="keep this encoder's weights fixed (it runs in eval mode, without "
        "gradients) until unfreeze_at"
    )
    unfreeze_at: int | None = Field(
        None, ge=1, description="with freeze: the first epoch in which the encoder trains"
    )

    @model_validator(mode="after")
    def _unfreeze_needs_freeze(self) -> ModalitySpec:
        if self.unfreeze_at is not None and not self.freeze:
            raise ValueError("unfreeze_at needs freeze=true (the encoder trains from the start "
                             "otherwise)")
        return self

    def frozen_at(self, epoch: int) -> bool:
        """Whether the encoder is frozen during ``epoch`` (counted from 1)."""
        return self.freeze and (self.unfreeze_at is None or epoch < self.unfreeze_at)

    @property
    def plugin_name(self) -> str:
        return self.plugin or self.name or ""

    @property
    def columns(self) -> list[str]:
        return [self.column] if isinstance(self.column, str) else list(self.column)


class FusionSpec(StrictModel):
    """A registered fusion by name, a ``Fusion`` subclass, or a ``"module:Class"`` path."""

    model_config = ConfigDict(
        extra="forbid", validate_assignment=True, arbitrary_types_allowed=True
    )

    name: Any = "concat"
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name_or_class(cls, value: Any) -> Any:
        if isinstance(value, str) or isinstance(value, type):
            return value
        raise ValueError("expected a registered fusion name, a Fusion subclass or 'module:Class'")


class HeadSpec(StrictModel):
    """One prediction target."""

    kind: str = Field("classification", description="registered head kind")
    target: str = Field(description="the column to predict")
    weight: float = Field(1.0, ge=0, description="weight of this head's loss in the total")
    options: dict[str, Any] = Field(default_factory=dict)


_PYDANTIC_ERRORS = contextvars.ContextVar("mmcore_spec_pydantic_errors", default=False)


@contextlib.contextmanager
def pydantic_errors() -> Iterator[None]:
    """Within this block ``Spec`` validation raises pydantic's ``ValidationError`` (pydantic
    calls ``Spec.__init__`` from ``model_validate`` too): for mmcore's own validation."""
    token = _PYDANTIC_ERRORS.set(True)
    try:
        yield
    finally:
        _PYDANTIC_ERRORS.reset(token)


class Spec(StrictModel):
    """A whole experiment: data, modalities, fusion, heads and training.

    ``mmcore.Spec(...)`` with invalid fields raises :class:`~mmcore.errors.SpecError` listing
    every field that is wrong (its ``raw`` attribute keeps the arguments, from which
    :func:`mmcore.load_spec` also reports unknown plugins and options), not pydantic's
    ``ValidationError``.
    """

    def __init__(self, **data: Any) -> None:
        if _PYDANTIC_ERRORS.get():  # mmcore's own validation, which reports them itself
            super().__init__(**data)
            return
        try:
            super().__init__(**data)
        except ValidationError as exc:
            from mmcore.errors import SpecError

            error = SpecError("mmcore.Spec(...)", validation_problems(exc, model=type(self)))
            error.raw = data
            raise error from None

    name: str = "mmcore-run"
    data: DataSpec
    modalities: dict[str, ModalitySpec]
    fusion: FusionSpec = Field(default_factory=FusionSpec)
    heads: dict[str, HeadSpec]
    train: TrainSpec = Field(default_factory=TrainSpec)
    output: str | None = Field(None, description="run folder (default: runs/<name>)")
    plugins: dict[str, str] = Field(
        default_factory=dict, description="plugin -> version; filled in when a run is saved"
    )

    _base_dir: str | None = PrivateAttr(default=None)
    _source: str = PrivateAttr(default="<spec>")
    #: validated with ``trust_code`` (a spec.json's classes may come from any module, its fusion
    #: from a Python file)
    _trusted: bool = PrivateAttr(default=False)

    @field_validator("modalities", mode="before")
    @classmethod
    def _modalities_by_name(cls, value: Any) -> Any:
        """Accept a dict keyed by name or a list of entries with ``name``; reject duplicates."""
        if isinstance(value, list | tuple):
            out: dict[str, Any] = {}
            for i, item in enumerate(value):
                entry = item.model_dump() if isinstance(item, BaseModel) else dict(item)
                name = entry.get("name")
                if not name:
                    raise ValueError(f"entry {i} has no 'name'")
                if name in out:
                    raise ValueError(f"duplicate modality name {name!r}")
                out[name] = entry
            return out
        if isinstance(value, dict):
            out = {}
            for key, item in value.items():
                entry = item.model_dump() if isinstance(item, BaseModel) else item
                if isinstance(entry, dict):
                    entry = {**entry, "name": key}
                out[key] = entry
            return out
        return value

    @field_validator("modalities")
    @classmethod
    def _some_modality(cls, value: dict[str, ModalitySpec]) -> dict[str, ModalitySpec]:
        if not value:
            raise ValueError("declare at least one modality")
        return value

    @field_validator("heads")
    @classmethod
    def _some_head(cls, value: dict[str, HeadSpec]) -> dict[str, HeadSpec]:
        if not value:
            raise ValueError("declare at least one head")
        return value

    @property
    def base_dir(self) -> str | None:
        """Folder of the spec file; relative data paths resolve against it."""
        return self._base_dir

    @property
    def source(self) -> str:
        """Where the spec came from (a file path), for error messages."""
        return self._source
