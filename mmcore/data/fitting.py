"""Fitting on the training split when some of its values are bad.

A modality's ``fit`` should skip values it cannot read (:meth:`mmcore.modality.Modality.fit`),
but a plugin that raises ``ValueError`` for one bad value must not end the run either: the
values it cannot take are found and left out (:func:`fit_leaving_out`), and their rows become
bad rows like any other.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence


def fit_leaving_out(fit: Callable[[Sequence[int]], None], n: int) -> dict[int, str]:
    """Call ``fit(positions)`` on all ``n`` values; when it raises ``ValueError``, find the
    values it cannot take alone, fit on the others, and return ``position -> reason`` for
    the ones left out (empty when the first fit succeeded).

    The search halves the failing set: a few bad values cost a few passes over the data,
    not one fit per value. Raises the first ``ValueError`` when no single value is to
    blame, and the last fit's when the values left are not enough to fit on.
    """
    try:
        fit(range(n))
        return {}
    except ValueError as exc:
        first = exc
    rejected: dict[int, str] = {}

    def search(positions: Sequence[int], failed: BaseException | None = None) -> None:
        if not positions:
            return
        if failed is None:
            try:
                fit(positions)
                return
            except ValueError as exc:
                failed = exc
        if len(positions) == 1:
            rejected[positions[0]] = str(failed) or type(failed).__name__
            return
        middle = len(positions) // 2
        search(positions[:middle])
        search(positions[middle:])

    search(list(range(n)), first)
    if not rejected:
        raise first
    fit([i for i in range(n) if i not in rejected])
    return dict(sorted(rejected.items()))
