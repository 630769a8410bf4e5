"""``SequencePipeline``: a modality's declared ``transforms``, fitted on the training split.

A sequence plugin builds one from its options, calls :meth:`SequencePipeline.fit` with its
training arrays, applies it in ``preprocess`` and saves :meth:`SequencePipeline.state` in
its run-folder state, so ``mmcore predict`` applies the very same fitted steps.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from pydantic import TypeAdapter

from mmcore.sequence import transforms as tf
from mmcore.sequence.options import (
    Clip,
    Diff,
    Envelope,
    Resample,
    Select,
    Standardize,
    Transform,
    envelope_window,
    output_rates,
)

_STEPS = TypeAdapter(list[Transform])


def parse_transforms(value: Any) -> list[Transform]:
    """Validate a ``transforms`` list (dicts or step models)."""
    return _STEPS.validate_python(value)


class SequencePipeline:
    """Applies ``transforms`` in order to ``[T, C]`` arrays.

    Args:
        transforms: the declared steps.
        rate: the rate of the data as recorded, in Hz (needed by steps given in Hz or ms).
        channel_names: names of the input channels, for ``select`` by name.

    Raises ``ValueError`` at construction for steps that cannot work (:meth:`check`).
    """

    def __init__(
        self,
        transforms: Sequence[Transform | dict[str, Any]],
        rate: float | None = None,
        channel_names: Sequence[str] | None = None,
    ) -> None:
        self.transforms: list[Transform] = parse_transforms(list(transforms))
        self.channel_names = list(channel_names) if channel_names is not None else None
        self.rates, self._select = self.check(self.transforms, rate, self.channel_names)
        self.stats: list[tf.ChannelStats | None] = [None] * len(self.transforms)
        #: per step, the statistics of groups the training split lacks, from :meth:`adapt`
        #: (``standardize(new_groups="own")``); never saved with the run
        self.adapted: list[dict[str, tf.ChannelStats]] = [{} for _ in self.transforms]
        self.median_length: int | None = None

    @staticmethod
    def check(
        transforms: Sequence[Transform],
        rate: float | None = None,
        channel_names: Sequence[str] | None = None,
    ) -> tuple[list[float | None], list[list[int] | None]]:
        """Whether the declared steps can work, without building a pipeline: ``ValueError``
        naming the step for a rate needed but unknown there, a negative channel index or an
        unknown channel name (``rate`` and ``channel_names`` as for the constructor).

        Returns what a pipeline keeps of the check: the rate of each step's input, then of
        the output (:func:`output_rates`), and each ``select`` step's channel indices
        (``None`` for the other steps)."""
        steps = list(transforms)
        names = list(channel_names) if channel_names is not None else None
        return output_rates(steps, rate), [_select_indices(steps, i, names)
                                           for i in range(len(steps))]

    @property
    def needs_fit(self) -> bool:
        """Whether a step has statistics to fit on training data."""
        return any(_fitted(s) for s in self.transforms)

    @property
    def fitted(self) -> bool:
        return all(st is not None for s, st in zip(self.transforms, self.stats, strict=True)
                   if _fitted(s))

    def output_channels(self, channels: int) -> int:
        """Channels per step of the output, for ``channels`` input channels."""
        for step, select in zip(self.transforms, self._select, strict=True):
            if select is not None:
                channels = len(select)
            elif isinstance(step, Diff):
                channels *= (1 + step.order) if step.append else step.order
        return channels

    # -- fitting ------------------------------------------------------------------------
    @property
    def context_columns(self) -> list[str]:
        """Data columns the steps read (``standardize(by=...)``), in order, once each."""
        by = [s.by for s in self.transforms if isinstance(s, Standardize) and s.by]
        return list(dict.fromkeys(by))

    def fit(
        self,
        arrays: Callable[[], Iterable[np.ndarray]],
        contexts: Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        """Fit every ``standardize`` step on the training arrays.

        ``arrays`` returns a fresh iterable of raw training arrays ``[T, C]`` each time it is
        called: each fitted step needs one pass over the outputs of the steps before it.
        ``contexts`` holds each array's row values of :attr:`context_columns` (same order),
        for per-group statistics. Also records the median output length
        (:attr:`median_length`), which encoders use to pick how much to shorten a sequence.
        """
        self.stats = [None] * len(self.transforms)
        self.adapted = [{} for _ in self.transforms]
        shapes: list[tuple[int, int]] = []  # each input's (steps, channels), read in pass 1
        for i, step in enumerate(self.transforms):
            if not _fitted(step):
                continue
            acc = tf.StatsAccumulator(step.method)  # type: ignore[union-attr]
            groups: dict[str, tf.StatsAccumulator] = {}
            by = step.by  # type: ignore[union-attr]
            first_pass = not shapes
            for j, arr in enumerate(arrays()):
                if first_pass:
                    shapes.append((arr.shape[0], arr.shape[1]))
                x = self._run(arr, stop=i, context=_context(contexts, j))
                acc.add(x)
                if by is not None:
                    key = group_key(_context(contexts, j).get(by))
                    if key is not None:
                        groups.setdefault(key, tf.StatsAccumulator(acc.method)).add(x)
            stats = acc.result()
            if by is not None:
                stats.groups = {k: g.result() for k, g in sorted(groups.items())}
            self.stats[i] = stats
        if not self.needs_fit:
            shapes = [(arr.shape[0], arr.shape[1]) for arr in arrays()]
        self.median_length = self._median_output_length(shapes)

    @property
    def adapts(self) -> bool:
        """Whether a step standardises new groups with their own rows' statistics."""
        return any(_adapting(s) for s in self.transforms)

    def adapt(
        self,
        arrays: Callable[[], Iterable[tuple[np.ndarray, Mapping[str, Any]]]],
        groups: set[str] | None = None,
    ) -> None:
        """Statistics of each group the training split lacks, from its own rows, for every
        ``standardize(by=..., new_groups="own")`` step (transductive adaptation).

        ``arrays`` returns a fresh iterable of ``(raw [T, C] array, the row's context
        columns)`` for the rows about to be transformed; the statistics replace those of the
        previous call. ``groups`` restricts them to these group keys (default: every key the
        training statistics lack). Call after :meth:`fit` / ``load_state``."""
        if not self.fitted:
            raise RuntimeError("adapt() needs the fitted statistics: fit() or load_state first")
        self.adapted = [{} for _ in self.transforms]
        for i, step in enumerate(self.transforms):
            if not _adapting(step):
                continue
            known = self.stats[i].groups or {}  # type: ignore[union-attr]
            accumulators: dict[str, tf.StatsAccumulator] = {}
            for arr, context in arrays():
                key = group_key(context.get(step.by))  # type: ignore[union-attr]
                if key is None or key in known or (groups is not None and key not in groups):
                    continue
                x = self._run(arr, stop=i, context=context)
                accumulators.setdefault(key, tf.StatsAccumulator(step.method)).add(x)  # type: ignore[union-attr]
            self.adapted[i] = {k: a.result() for k, a in sorted(accumulators.items())}

    def _median_output_length(self, shapes: Sequence[tuple[int, int]]) -> int | None:
        """The median transformed length, from the inputs' shapes alone: the steps' output
        length depends only on the input's, so each distinct shape is run once on zeros
        instead of reading the training data again."""
        if not shapes:
            return None
        out = {shape: self._run(np.zeros(shape)).shape[0] for shape in set(shapes)}
        return int(np.median([out[shape] for shape in shapes]))

    # -- applying -----------------------------------------------------------------------
    def __call__(self, arr: np.ndarray, context: Mapping[str, Any] | None = None) -> np.ndarray:
        """One ``[T, C]`` array (and its row's context columns) -> the transformed float32
        array ``[T', C']``."""
        if not self.fitted:
            raise RuntimeError(
                "the sequence transforms have a standardize step that is not fitted: call "
                "fit() on the training arrays (or load_state) first"
            )
        return np.ascontiguousarray(self._run(arr, context=context or {}), dtype=np.float32)

    def _run(
        self, arr: np.ndarray, stop: int | None = None, context: Mapping[str, Any] | None = None
    ) -> np.ndarray:
        x = np.asarray(arr, dtype=np.float64)
        end = len(self.transforms) if stop is None else stop
        for i in range(end):
            x = self._apply(i, x, context or {})
        return x

    def _apply(self, i: int, x: np.ndarray, context: Mapping[str, Any]) -> np.ndarray:
        step = self.transforms[i]
        if isinstance(step, Select):
            index = self._select[i]
            assert index is not None
            bad = [j for j in index if j >= x.shape[1]]
            if bad:
                raise ValueError(
                    f"transforms[{i}] (select) asks for channel {bad[0]}, but the sequence has "
                    f"{x.shape[1]} channels there"
                )
            return x[:, index]
        if isinstance(step, Resample):
            return self._resample(i, step, x)
        if isinstance(step, Envelope):
            window, hop = envelope_window(step, self.rates[i])
            return tf.envelope(x, step.kind, window, hop, step.demean)
        if isinstance(step, Standardize):
            if step.scope == "sequence":
                return tf.sequence_standardize(x, step.method)
            stats = self.stats[i]
            assert stats is not None
            if step.by is not None:
                key = group_key(context.get(step.by))
                stats = self.adapted[i].get(key, stats) if key is not None else stats
                stats = stats.for_group(key)
            return stats.apply(x)
        if isinstance(step, Diff):
            return tf.differences(x, step.order, step.append)
        if isinstance(step, Clip):
            return np.clip(x, -step.limit, step.limit)
        raise AssertionError(f"unknown transform {step!r}")  # pragma: no cover

    def _resample(self, i: int, step: Resample, x: np.ndarray) -> np.ndarray:
        t = x.shape[0]
        if step.steps is not None:
            target = step.steps
            factor = t / target
        else:
            rate_in = self.rates[i]
            factor = step.factor if step.factor is not None else (rate_in or 0) / step.rate
            target = tf.steps_for_factor(t, factor)
        if step.method == "decimate":
            return tf.resample_poly(x, 1.0 / factor)
        if step.method == "linear":
            return tf.resample_linear(x, target)
        return tf.resample_mean(x, target)

    # -- state --------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """The declared steps and fitted statistics as JSON-ready data."""
        return {
            "transforms": [s.model_dump() for s in self.transforms],
            "stats": [None if st is None else _stats_state(st) for st in self.stats],
            "median_length": self.median_length,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state`'s output; the declared steps must match this pipeline's."""
        declared = [s.model_dump() for s in self.transforms]
        try:  # saved before a step gained an option: its default fills in
            saved = [s.model_dump() for s in parse_transforms(state.get("transforms"))]
        except ValueError:
            saved = state.get("transforms")
        if saved != declared:
            raise ValueError(
                "the saved transforms differ from the declared ones: saved "
                f"{state.get('transforms')!r}, declared {declared!r}"
            )
        raw = state.get("stats")
        if not isinstance(raw, list) or len(raw) != len(self.transforms):
            raise ValueError(f"stats must be a list of {len(self.transforms)} entries")
        stats: list[tf.ChannelStats | None] = []
        for i, (step, entry) in enumerate(zip(self.transforms, raw, strict=True)):
            if not _fitted(step):
                stats.append(None)
                continue
            parsed = _parse_stats(entry, f"stats[{i}]")
            groups = entry.get("groups")
            if groups is not None:
                if not isinstance(groups, dict):
                    raise ValueError(f"stats[{i}].groups must be an object of group -> stats")
                parsed.groups = {str(k): _parse_stats(v, f"stats[{i}].groups[{k!r}]")
                                 for k, v in groups.items()}
            stats.append(parsed)
        length = state.get("median_length")
        if length is not None and not (isinstance(length, int) and length > 0):
            raise ValueError(f"median_length must be a positive int, got {length!r}")
        self.stats, self.median_length = stats, length
        self.adapted = [{} for _ in self.transforms]


def _select_indices(steps: Sequence[Transform], i: int,
                    channel_names: list[str] | None) -> list[int] | None:
    """The channel indices of ``steps[i]`` when it is a ``select`` step, names resolved."""
    step = steps[i]
    if not isinstance(step, Select):
        return None
    out = []
    for channel in step.channels:
        if isinstance(channel, int):
            if channel < 0:
                raise ValueError(f"transforms[{i}] (select): channel {channel} is negative")
            out.append(channel)
            continue
        renamed = any(isinstance(s, Select | Diff) for s in steps[:i])
        names = None if renamed else channel_names
        if names is None:
            raise ValueError(
                f"transforms[{i}] (select): channel {channel!r} is a name, but names are "
                "only known for the data as read: set the modality's channel_names option "
                "and select by name before any step that changes the channels"
            )
        if channel not in names:
            raise ValueError(
                f"transforms[{i}] (select): no channel named {channel!r}; channel_names "
                f"are {', '.join(names)}"
            )
        out.append(names.index(channel))
    return out


def group_key(value: Any) -> str | None:
    """The key a group value is stored under (text, as in JSON); ``None`` for no value."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # 3 and 3.0 (a csv column read as float) are one group
    return str(value)


def _context(contexts: Sequence[Mapping[str, Any]] | None, j: int) -> Mapping[str, Any]:
    return contexts[j] if contexts is not None else {}


def _stats_state(st: tf.ChannelStats) -> dict[str, Any]:
    out: dict[str, Any] = {"centre": st.centre.tolist(), "scale": st.scale.tolist()}
    if st.groups is not None:
        out["groups"] = {k: _stats_state(g) for k, g in st.groups.items()}
    return out


def _parse_stats(entry: Any, where: str) -> tf.ChannelStats:
    if not isinstance(entry, dict):
        raise ValueError(f"{where}: expected centre and scale of the fitted step")
    centre = np.asarray(entry.get("centre"), dtype=np.float64)
    scale = np.asarray(entry.get("scale"), dtype=np.float64)
    if centre.ndim != 1 or centre.shape != scale.shape or not (scale > 0).all():
        raise ValueError(f"{where}: centre and scale must be equal-length, scale > 0")
    return tf.ChannelStats(centre, scale)


def _adapting(step: Transform) -> bool:
    return isinstance(step, Standardize) and step.new_groups == "own"


def _fitted(step: Transform) -> bool:
    return isinstance(step, Standardize) and step.scope == "dataset"
