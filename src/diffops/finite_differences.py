"""Finite-difference derivatives, the framework-free reference.

``jacobian(func, x)`` approximates ``∂func(x)/∂x`` by central differences along each
coordinate, with a step scaled to the coordinate, ``h[i] = step · max(1, |x[i]|)``.
The differences at ``h``, ``h/2`` and ``h/4`` are combined by Richardson
extrapolation, which removes the ``h²`` and ``h⁴`` error terms: the error is
``O(h⁶)`` plus rounding of order ``ε |func| / h``.

The two fourth-order estimates the extrapolation combines tell how far it is from
converging. Where they disagree (a function that varies on a scale of 1 far from the
origin, as ``sin`` does at ``x = 3000``, whose scaled step is 3) or are not finite (a
step that reaches beyond the function's domain, as ``√x`` at ``x = 10⁻⁴``), the step
``step`` (for ``|x[i]| > 1``) or ``step · |x[i]|`` (for ``|x[i]| < 1``) is tried too,
and the estimate whose two agree better is kept.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["DEFAULT_STEP", "jacobian"]

DEFAULT_STEP = 1e-3
"""Relative step for differencing a function computed to machine precision."""

_CONVERGED = 1e-6
"""Largest disagreement of the two fourth-order estimates, relative to the largest
entry, at which the scaled step is kept without trying the other."""


def jacobian(
    func: Callable[[np.ndarray], Any], x: Any, step: float = DEFAULT_STEP
) -> np.ndarray:
    """Approximate ``D[..., i] = ∂func(x)[...]/∂x[i]``.

    Args:
        func: Function of a 1-D array returning a scalar or an array.
        x: Point, shape ``(n,)``.
        step: Relative step. Differencing a function that is itself a difference
            (a gradient by differences, say) needs a larger one, such as ``1e-2``.

    Returns:
        Array of shape ``np.shape(func(x)) + (n,)``.
    """
    x = np.asarray(x, dtype=np.float64)
    columns = []
    for i in range(x.shape[0]):
        size = abs(x[i])
        estimate, spread = _extrapolated(func, x, i, step * max(1.0, size))
        largest = float(np.max(np.abs(estimate), initial=0.0))
        if not spread <= _CONVERGED * largest and size != 1.0 and size > 0.0:
            other = _extrapolated(func, x, i, step * min(1.0, size))
            if other[1] < spread or not np.isfinite(spread):
                estimate = other[0]
        columns.append(estimate)
    return np.stack(columns, axis=-1)


def _extrapolated(
    func: Callable[[np.ndarray], Any], x: np.ndarray, i: int, h: float
) -> tuple[np.ndarray, float]:
    """The derivative along ``x[i]`` with step ``h``, and how far it is from converged.

    Central differences at ``h``, ``h/2`` and ``h/4`` extrapolated twice; the spread
    is the largest difference of the two fourth-order estimates (infinite where it is
    not finite).
    """
    estimates = []
    for size in (h, h / 2, h / 4):
        forward, backward = x.copy(), x.copy()
        forward[i] += size
        backward[i] -= size
        # A step beyond the domain gives NaN, which the spread reports, not NumPy.
        with np.errstate(invalid="ignore", divide="ignore"):
            difference = np.asarray(func(forward), np.float64) - np.asarray(
                func(backward), np.float64
            )
        estimates.append(difference / (2 * size))
    fourth_order = [(4 * estimates[k + 1] - estimates[k]) / 3 for k in range(2)]
    with np.errstate(invalid="ignore"):
        spread = float(np.max(np.abs(fourth_order[1] - fourth_order[0]), initial=0.0))
    return (16 * fourth_order[1] - fourth_order[0]) / 15, (
        spread if np.isfinite(spread) else np.inf
    )
