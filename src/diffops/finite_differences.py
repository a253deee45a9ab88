"""Finite-difference derivatives, the framework-free reference.

``jacobian(func, x)`` approximates ``∂func(x)/∂x`` by central differences along each
coordinate, with a step scaled to the coordinate, ``h[i] = step · max(1, |x[i]|)``.
The differences at ``h``, ``h/2`` and ``h/4`` are combined by Richardson
extrapolation, which removes the ``h²`` and ``h⁴`` error terms: the error is
``O(h⁶)`` plus rounding of order ``ε |func| / h``.

Each estimate comes with a bound on its error: the disagreement of the two
fourth-order estimates the extrapolation combines (how far it is from converging),
plus the rounding of ``func``'s values and of ``x[i]``, over the step, at the
precision ``func`` returns. Where that bound is not small beside the estimate (a
function that varies on a scale of 1 far from the origin, as ``sin`` does at ``x =
3000``, whose scaled step is 3, or a step that reaches beyond the function's domain,
as ``√x``'s at ``x = 10⁻⁴``), the step ``step`` (for ``|x[i]| > 1``) or ``step ·
|x[i]|`` (for ``|x[i]| < 1``) is tried too, and taken where its bound is a hundredth
of the scaled step's or less, or the scaled step's is not finite.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["DEFAULT_STEP", "jacobian"]

DEFAULT_STEP = 1e-3
"""Relative step for differencing a function computed to machine precision."""

_SMALL = 1e-2
"""Largest error bound, relative to the largest entry of the estimate, at which the
scaled step is kept without trying the other."""

_FAR_BETTER = 1e-2
"""How much smaller the other step's bound must be for it to be taken. The bound
overstates the error of the extrapolated estimate (it is that of the fourth-order
estimates), and a smaller step is rounded more: where the two are close, the scaled
step, whose rounding the checker allows for, is kept."""


def jacobian(
    func: Callable[[np.ndarray], Any],
    x: Any,
    step: float = DEFAULT_STEP,
    epsilon: float | None = None,
) -> np.ndarray:
    """Approximate ``D[..., i] = ∂func(x)[...]/∂x[i]``.

    Args:
        func: Function of a 1-D array returning a scalar or an array.
        x: Point, shape ``(n,)``. ``func`` is evaluated near it in its precision
            where that is float32, and in float64 otherwise.
        step: Relative step. Differencing a function that is itself a difference
            (a gradient by differences, say) needs a larger one, such as ``1e-2``.
        epsilon: The relative rounding of ``func``'s values and of its reading of
            ``x``, where ``func`` computes in a lower precision than it returns
            (float32 values returned as float64); ``None`` for that of the dtype it
            returns.

    Returns:
        Array of shape ``np.shape(func(x)) + (n,)``.
    """
    x = np.asarray(x)
    x = x.astype(np.float32 if x.dtype == np.float32 else np.float64, copy=False)
    columns = []
    # A step beyond the domain gives NaN or inf, which the bound reports, not NumPy.
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        for i in range(x.shape[0]):
            columns.append(_derivative(func, x, i, step, epsilon))
    return np.stack(columns, axis=-1)


def _derivative(
    func: Callable[[np.ndarray], Any],
    x: np.ndarray,
    i: int,
    step: float,
    epsilon: float | None,
) -> np.ndarray:
    """The derivative along ``x[i]``, with the scaled step or, far better, the other."""
    size = abs(np.float64(x[i]))  # NumPy's: a step of 0 divides to inf
    estimate, bound = _extrapolated(func, x, i, step * max(1.0, size), epsilon)
    largest = float(np.max(np.abs(estimate), initial=0.0))
    # Beyond 1, the scaled step may span periods of a function varying on a scale
    # of 1 (sin at x = 10⁵), whose differences then agree on a wrong value: the
    # step 'step' is always tried there, and taken where the two disagree by more
    # than their bounds allow.
    if (size > 1.0 or not bound <= _SMALL * largest) and size != 1.0 and size > 0.0:
        other, other_bound = _extrapolated(func, x, i, step * min(1.0, size), epsilon)
        apart = float(np.max(np.abs(other - estimate), initial=0.0))
        disagree = size > 1.0 and bool(np.isfinite(other_bound))
        disagree = disagree and apart > bound + other_bound
        if other_bound < _FAR_BETTER * bound or disagree:
            estimate = other
    return estimate


def _extrapolated(
    func: Callable[[np.ndarray], Any],
    x: np.ndarray,
    i: int,
    h: float,
    epsilon: float | None,
) -> tuple[np.ndarray, float]:
    """The derivative along ``x[i]`` with step ``h``, and a bound on its error.

    Central differences at ``h``, ``h/2`` and ``h/4`` extrapolated twice. The bound
    is the largest difference of the two fourth-order estimates plus the rounding of
    the values and of ``x[i]`` over ``h/4``; infinite where it is not finite.
    """
    estimates = []
    rounding, values = epsilon or 0.0, 0.0
    for size in (h, h / 2, h / 4):
        forward, backward = x.copy(), x.copy()
        forward[i] += size
        backward[i] -= size
        ahead, behind = np.asarray(func(forward)), np.asarray(func(backward))
        if size == h:  # the values' size and precision, from the first pair
            if epsilon is None:
                rounding = _epsilon(ahead.dtype)
            values = float(np.max(np.abs(ahead), initial=0.0))
        difference = ahead.astype(np.float64, copy=False) - behind
        # Over the step as taken, x[i] ± size rounded to x's precision.
        estimates.append(difference / (np.float64(forward[i]) - backward[i]))
    fourth_order = [(4 * estimates[k + 1] - estimates[k]) / 3 for k in range(2)]
    estimate = (16 * fourth_order[1] - fourth_order[0]) / 15
    spread = float(np.max(np.abs(fourth_order[1] - fourth_order[0]), initial=0.0))
    slope = float(np.max(np.abs(estimate), initial=0.0))
    bound = spread + rounding * (values + abs(np.float64(x[i])) * slope) / (h / 4)
    return estimate, bound if np.isfinite(bound) else np.inf


@functools.cache
def _epsilon(dtype: np.dtype[Any]) -> float:
    """The relative rounding of values of ``dtype``: float64's for non-floats."""
    return float(np.finfo(dtype if dtype.kind == "f" else np.float64).eps)
