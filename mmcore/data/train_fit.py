"""Fitting on the train split: the modalities (through the fit cache,
:mod:`mmcore.data.fit_cache`) and what each head fits on its targets (e.g. its classes).

The fit sees raw train rows, before preprocessing; :class:`TrainFit` keeps what preprocessing
needs afterwards: the rows whose values a modality's fit rejected (bad rows of the train
split, :attr:`TrainFit.rejects`) and the heads' raw train targets, so the heads can be fitted
again on the rows that survive preprocessing (:meth:`TrainFit.refit_heads`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mmcore.data import fit_cache
from mmcore.data.bad_rows import BadRow, bad_row_message
from mmcore.data.fitting import fit_leaving_out
from mmcore.data.preprocess import is_missing_target, value_is_missing
from mmcore.data.split_sources import SplitSource
from mmcore.data.targets import Targets
from mmcore.errors import DataError
from mmcore.modality import Modality, rooted
from mmcore.spec.model import Spec


def fits(modality: Modality) -> bool:
    """Whether the modality has something to fit on the training split."""
    cls = type(modality)
    return cls.fit is not Modality.fit or cls.fit_rows is not Modality.fit_rows


class TrainFit:
    """Fits the spec's modalities and heads on one train split.

    Args:
        spec: the validated spec (``heads``, ``data.bad_rows``, ``data.streaming``).
        modalities: name -> modality, fitted in place by :meth:`fit`.
        columns: modality name -> the column(s) it reads.
        head_targets: the heads' target sides, and which of them fit something.

    Attributes:
        rejects: train split row -> ``(column, reason)`` for the rows whose values a
            modality's fit could not take, set by :meth:`fit`.
        cached: modality name -> its fit in the fit cache (loaded from there or stored there
            by :meth:`fit`).
    """

    def __init__(
        self,
        spec: Spec,
        modalities: Mapping[str, Modality],
        columns: Mapping[str, list[str]],
        head_targets: Targets,
    ) -> None:
        self.spec = spec
        self.modalities = modalities
        self.columns = columns
        self.head_targets = head_targets
        self.rejects: dict[int, tuple[str, str]] = {}
        self.cached: dict[str, fit_cache.CachedFit] = {}
        self._train: SplitSource | None = None
        self._raw_targets: dict[str, list[Any]] = {}

    def fit(
        self,
        splits: Mapping[str, SplitSource],
        versions: Mapping[str, str | None],
        cache_root: Path | None,
    ) -> dict[str, dict[str, Any]]:
        """Fit every modality that fits something on the ``"train"`` split of ``splits``
        (loading its fit from the cache under ``cache_root`` when it is there, storing it when
        not; ``None``: no cache) and the heads; return head name -> its options with what it
        fitted.

        ``versions``: modality name -> its plugin's version (part of the cache key)."""
        if "train" not in splits:
            raise DataError(
                f"cannot fit: the data has no train split (splits: {', '.join(splits) or 'none'})"
            )
        train = splits["train"]
        self.cached = {}
        cached = {} if cache_root is None else self._cached_fits(train, versions, cache_root)
        skip = {n for n, v in cached.items() if v is True}
        rows = self._read(train, self._fit_columns(skip))
        with rooted(self.modalities, train.root):
            for name, modality in self.modalities.items():
                if fits(modality) and name not in skip:
                    self._fit_modality(name, modality, train, rows)
                    self._store(cache_root, cached.get(name), name, modality)
        self._train = train
        self._raw_targets = {n: rows[self.spec.heads[n].target] for n in self.head_targets.fitted()}
        return self._head_options(train, rows)

    def fit_heads(self, train: SplitSource) -> dict[str, dict[str, Any]]:
        """The heads' options fitted on the train targets alone (no modality is fitted): a
        :class:`DataError` when the options do not fit the data (``mmcore validate``)."""
        targets = [self.spec.heads[n].target for n in self.head_targets.fitted()]
        return self._head_options(train, self._read(train, list(dict.fromkeys(targets))))

    def refit_heads(
        self, kept: Sequence[int], head_options: Mapping[str, dict[str, Any]]
    ) -> dict[str, dict[str, Any]]:
        """The fitted heads' options fitted again on the train rows ``kept`` (those that
        survived preprocessing): class frequencies (``class_weights="balanced"``) and a
        regression head's mean and std count kept rows only. ``classes`` stay as in
        ``head_options``: the split's stored targets are encoded with them."""
        assert self._train is not None, "refit_heads() before fit()"
        out = {}
        for name, column in self._raw_targets.items():
            options = dict(self.spec.heads[name].options)
            if "classes" in head_options[name]:
                options["classes"] = head_options[name]["classes"]
            values = [column[row] for row in kept]
            options.update(self._fit_targets(name, values, options, self._train))
            out[name] = options
        return out

    def _read(self, train: SplitSource, columns: list[str]) -> dict[str, list[Any]]:
        """Column -> the train split's values (the first rows only, when streamed)."""
        if self.spec.data.streaming:
            from mmcore.data.streaming import first_rows

            return first_rows(train.dataset, columns)
        if not columns:
            return {}
        # One Arrow read of every fitted column: datasets gathers a split's indices mapping
        # row by row, so reading column by column repeated that gather per column.
        table = train.dataset.select_columns(columns).with_format("arrow")[:]
        return {c: table.column(c).to_pylist() for c in columns}

    def _fit_columns(self, skip: set[str]) -> list[str]:
        """The columns the fit reads; ``skip``: modalities whose fit came from the cache."""
        columns = [
            c for name, m in self.modalities.items() if fits(m) and name not in skip
            for c in [*self.columns[name], *m.context_columns()]
        ]
        columns += [self.spec.heads[n].target for n in self.head_targets.fitted()]
        return list(dict.fromkeys(columns))

    def _cached_fits(
        self, train: SplitSource, versions: Mapping[str, str | None], cache_root: Path
    ) -> dict[str, str | bool]:
        """Fitted state from the cache: modality name -> ``True`` when loaded, or the key to
        store its fit under when it still has to be fitted."""
        out: dict[str, str | bool] = {}
        fingerprint = getattr(train.dataset, "_fingerprint", None)
        if fingerprint is None:
            return out
        with rooted(self.modalities, train.root):
            for name, modality in self.modalities.items():
                if not (fits(modality) and fit_cache.can_cache(modality)):
                    continue
                key = fit_cache.fit_key(fingerprint, modality, self.columns[name], versions[name])
                loaded = fit_cache.load_fitted(cache_root, key, modality)
                out[name] = True if loaded else key
                if loaded:
                    self.cached[name] = loaded
        return out

    def _store(self, cache_root: Path | None, key: str | bool | None, name: str,
               modality: Modality) -> None:
        """Store a modality's fit in the cache under ``key`` (when the cache gave one)."""
        if isinstance(key, str) and cache_root is not None:
            stored = fit_cache.store_fitted(cache_root, key, modality)
            if stored:
                self.cached[name] = stored

    def _fit_modality(
        self, name: str, modality: Modality, train: SplitSource, rows: Mapping[str, list[Any]]
    ) -> None:
        """``modality.fit_rows`` on the train rows whose value is present; values it cannot
        take are left out of the fit (:func:`~mmcore.data.fitting.fit_leaving_out`) and their
        rows recorded in :attr:`rejects` (preprocessing normally rejects them too, with its
        own reason)."""
        columns = self.columns[name]
        values = (
            rows[columns[0]]
            if len(columns) == 1
            else [list(v) for v in zip(*(rows[c] for c in columns), strict=True)]
        )
        keep = [i for i, v in enumerate(values) if not value_is_missing(modality, v, columns)]
        context = modality.context_columns()

        def fit(positions: Sequence[int]) -> None:
            modality.fit_rows([values[keep[j]] for j in positions],
                              [{c: rows[c][keep[j]] for c in context} for j in positions])

        label = ",".join(columns)
        try:
            rejected = fit_leaving_out(fit, len(keep))
        except ValueError as exc:
            raise DataError(
                f"{train.file} (split 'train'), column {label!r}: cannot fit modality {name!r} "
                f"on the training values: {exc}"
            ) from None
        for j, reason in rejected.items():
            self.rejects.setdefault(keep[j], (
                label, f"modality {name!r} cannot be fitted on this value: {reason}"))

    def _head_options(
        self, train: SplitSource, rows: Mapping[str, list[Any]]
    ) -> dict[str, dict[str, Any]]:
        """Each head's options with what it fits on the train targets in ``rows``; a
        :class:`DataError` when the options do not fit the data (a ``class_weights`` list of
        the wrong length, a class it names that the data lacks). :meth:`fit` and
        :meth:`fit_heads` (``mmcore validate``) both run it, so they refuse the same specs."""
        fitted = self.head_targets.fitted()
        out = {}
        for name, head in self.spec.heads.items():
            options = dict(head.options)
            if name in fitted:
                options.update(self._fit_targets(name, rows[head.target], options, train))
            out[name] = options
        return out

    def _fit_targets(
        self, name: str, column_values: list[Any], options: dict[str, Any], train: SplitSource
    ) -> dict[str, Any]:
        """Head ``name``'s ``fit_targets`` on the present values. When it fails, the rows
        whose value it cannot take alone are bad rows: the first is raised, or with
        ``data.bad_rows="skip"`` they are left out of the fit (and skipped when their targets
        are encoded)."""
        cls = self.head_targets.sides[name]
        present = [(i, v) for i, v in enumerate(column_values) if not is_missing_target(v)]
        try:
            return cls.fit_targets([v for _, v in present], options)
        except ValueError as exc:
            error = exc
        except DataError as exc:  # the options do not fit the data (e.g. class_weights)
            raise DataError(f"heads.{name}.options: {exc}") from None
        usable = [v for row, v in present if self._fits_alone(name, row, v, options, train)]
        try:
            return cls.fit_targets(usable, options)
        except ValueError as exc:
            error = exc
        raise DataError(
            f"{train.file} (split 'train'), column {self.spec.heads[name].target!r}: cannot fit "
            f"the targets of head {name!r}: {error}"
        )

    def _fits_alone(
        self, name: str, row: int, value: Any, options: dict[str, Any], train: SplitSource
    ) -> bool:
        """Whether head ``name`` can fit on ``value`` alone; with ``data.bad_rows="raise"`` a
        value it cannot take raises the bad row."""
        try:
            self.head_targets.sides[name].fit_targets([value], options)
        except ValueError as exc:
            if self.spec.data.bad_rows == "raise":
                source = None if train.source_rows is None else int(train.source_rows[row])
                bad = BadRow("train", row, self.spec.heads[name].target,
                             f"target of head {name!r}: {exc}", train.file, source)
                raise DataError(bad_row_message(bad)) from None
            return False
        return True
