"""Finite-difference derivatives, the framework-free reference.

``jacobian(func, x)`` approximates ``∂func(x)/∂x`` by central differences along each
coordinate, with a step scaled to the coordinate, ``h[i] = step · max(1, |x[i]|)``.
The differences at ``h``, ``h/2`` and ``h/4`` are combined by Richardson
extrapolation, which removes the ``h²`` and ``h⁴`` error terms: the error is
``O(h⁶)`` plus rounding of order ``ε |func| / h``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["DEFAULT_STEP", "jacobian"]

DEFAULT_STEP = 1e-3
"""Relative step for differencing a function computed to machine precision."""


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
        h = step * max(1.0, abs(x[i]))
        estimates = []
        for size in (h, h / 2, h / 4):
            forward, backward = x.copy(), x.copy()
            forward[i] += size
            backward[i] -= size
            difference = np.asarray(func(forward), np.float64) - np.asarray(
                func(backward), np.float64
            )
            estimates.append(difference / (2 * size))
        fourth_order = [(4 * estimates[k + 1] - estimates[k]) / 3 for k in range(2)]
        columns.append((16 * fourth_order[1] - fourth_order[0]) / 15)
    return np.stack(columns, axis=-1)
