"""Finite-difference derivatives, the framework-free reference.

``jacobian(func, x)`` approximates ``∂func(x)/∂x`` with the fourth-order central
stencil ``(-f(x+2h) + 8f(x+h) - 8f(x-h) + f(x-2h)) / 12h`` along each coordinate,
with a step ``h[i] = ε^(1/5) max(1, |x[i]|)`` that balances truncation error
(``O(h⁴)``) against rounding error (``O(ε/h)``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["jacobian"]

_STENCIL = ((2.0, -1.0), (1.0, 8.0), (-1.0, -8.0), (-2.0, 1.0))


def jacobian(
    func: Callable[[np.ndarray], Any], x: np.ndarray, step: float | None = None
) -> np.ndarray:
    """Approximate ``D[..., i] = ∂func(x)[...]/∂x[i]``.

    Args:
        func: Function of a 1-D array returning a scalar or an array.
        x: Point, shape ``(n,)``.
        step: Relative step; defaults to ``ε^(1/5)`` for ``x``'s dtype.

    Returns:
        Array of shape ``np.shape(func(x)) + (n,)``.
    """
    x = np.asarray(x, dtype=np.float64)
    relative = np.finfo(x.dtype).eps ** 0.2 if step is None else step
    columns = []
    for i in range(x.shape[0]):
        h = relative * max(1.0, abs(x[i]))
        values = []
        for offset, weight in _STENCIL:
            shifted = x.copy()
            shifted[i] += offset * h
            values.append(weight * np.asarray(func(shifted), dtype=np.float64))
        columns.append(sum(values) / (12.0 * h))
    return np.stack(columns, axis=-1)
