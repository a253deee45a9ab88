"""Finite-difference derivatives, the framework-free reference.

``jacobian(func, x)`` approximates ``∂func(x)/∂x`` by central differences along each
coordinate, with a step scaled to the coordinate, ``h[i] = step · max(1, |x[i]|)``.
The differences at ``h``, ``h/2`` and ``h/4`` are combined by Richardson
extrapolation, which removes the ``h²`` and ``h⁴`` error terms: the error is
``O(h⁶)`` plus rounding of order ``ε |func| / h``.

Each estimate comes with a bound on its error: the disagreement of the two
fourth-order estimates the extrapolation combines (how far it is from converging),
plus the rounding of ``func``'s values and of ``x[i]`` at the precision ``func``
returns, and any ``noise`` the caller says the values carry (differences of
differences carry the inner ones' error), over the step. The steps tried along
``x[i]``:

1. The scaled step, kept where its bound is small beside its estimate (a millionth
   of it, or in float32 5e-5) and ``|x[i]| ≤ 1``.
2. Otherwise (a function that varies on a scale of 1 far from the origin, as ``sin``
   does at ``x = 3000``, whose scaled step is 3; a step that reaches towards the
   edge of the domain, as ``√x``'s at ``x = 10⁻³``; an estimate of 0) the step
   ``step · min(1, |x[i]|)`` too, taken where its bound is a hundredth of the
   scaled step's or less, or the scaled step's is not finite.
3. Where the two disagree by more than their bounds allow, or agree but the scaled
   step's bound is over a thousandth of its estimate and mostly not rounding, steps
   of a tenth, a hundredth and a thousandth of the second. Steps far too coarse for
   ``func`` give differences that agree on a wrong value within a bound that does
   not hold (a scaled step spanning whole periods of ``sin``, or reaching past a
   peak of width ``10⁻³``): the smaller steps find them out. Where the two
   disagreed and no estimate is confirmed, the bound is infinite; where they
   agreed, the scaled step is kept unless a confirmed estimate has a smaller bound.
4. Where the estimate taken is not finite, as where both steps leave the domain
   (NaN, or raising, beyond an edge nearer than the second: ``log(x - 0.5)`` at ``x
   = 0.5003``), steps of a tenth, a hundredth and a thousandth of the second in
   turn, and from the first whose estimate is finite, a search as in 3.

Of the steps a search tries (and the one it starts from), it takes the estimate of
smallest bound that the next larger or smaller step confirms: the two agree within
their bounds, and the confirming one's bound is at most 20 times the other's.

:func:`jacobian_and_bound` returns the bound of each estimate taken with it. The
bound does not hold where every step tried is far too coarse for the function
(float32 ``sin(500 x)``, whose period is 0.013, at steps of 0.05 to 5·10⁻⁵), nor
where a feature far narrower than the step sits beside a smooth term on which the
scaled step converges (``x + exp(-x²/s²)``, ``s = 10⁻⁵``, at ``x = 3·10⁻⁵``), nor where
``func`` rounds its values much more than its precision and the caller does not say
so (``exp`` of a sum of large terms).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

__all__ = ["DEFAULT_STEP", "OUTSIDE", "jacobian", "jacobian_and_bound"]

DEFAULT_STEP = 1e-3
"""Relative step for differencing a function computed to machine precision."""

_SMALL = 1e-6
"""Largest error bound, relative to the largest entry of the estimate, at which the
scaled step is kept without trying the other: below the tolerances a check asks for
(a relative ``1e-5`` in float64), so that where the scaled step may not meet them
the other is tried. Or :data:`_SMALL_ROUNDINGS` times the values' rounding, where
that is larger."""

_SMALL_ROUNDINGS = 400
"""In float32, ``_SMALL`` in roundings: 5e-5, a tenth of a check's default tolerance
there. A millionth, which float32 differences rarely meet, had the other step tried
almost always, and nested differences cost twice as much."""

_FINER = 10.0
"""How much smaller each step of a search is than the one before."""

_SEARCH = 3
"""How many smaller steps a search tries (six evaluations of ``func`` each)."""

_CONFIRMS = 20.0
"""How much looser a neighbour's bound may be for it to confirm an estimate: a
tenth of the step rounds ten times as much, and the bound of an estimate far too
coarse for ``func`` is not confirmed by one far looser."""

_LOOSE = 1e-3
"""Error bound, relative to the largest entry of the estimate, above which smaller
steps are tried, where the two steps agree and the bound is mostly truncation."""

_FAR_BETTER = 1e-2
"""How much smaller the other step's bound must be for it to be taken. Bounds
overstate the error, the scaled step's often the more (a float32 ``exp``
differenced twice at ``x = 13.6``: the scaled step's error 158 under a bound of
31 600, the other's 958 under 1 180): where the two are within a hundredfold, the
scaled step is kept."""


OUTSIDE = (ArithmeticError, ValueError)
"""What a function may raise a step out of its domain, where NumPy's would return
NaN or inf: ``math.sqrt`` and ``math.log`` of a negative number (``ValueError``),
``1 / 0`` (``ZeroDivisionError``), ``math.exp`` of a large one (``OverflowError``),
NumPy under ``np.errstate(all="raise")`` (``FloatingPointError``). Raised at a step
from the point, it is taken as NaN there, so that smaller steps are tried; at the
point itself, it is raised."""


class _Estimate(NamedTuple):
    """A derivative along one coordinate, by differences at one step."""

    value: np.ndarray
    bound: float
    """On the error of ``value``; ``inf`` where it is not finite."""
    rounded: float
    """The part of ``bound`` that is the rounding and noise of the values."""


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
    return jacobian_and_bound(func, x, step, epsilon)[0]


def jacobian_and_bound(
    func: Callable[[np.ndarray], Any],
    x: Any,
    step: float = DEFAULT_STEP,
    epsilon: float | None = None,
    noise: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`jacobian`'s ``D``, and a bound on each entry's error.

    The bound of column ``i`` is that of the step taken along ``x[i]``: the
    disagreement of the two fourth-order estimates plus the rounding of the values
    and of ``x[i]``, and their ``noise``, over the step; ``inf`` where it is not
    finite. It overstates the error of the extrapolated estimate, often many times
    over. It does not hold where no step of ``x``'s precision can resolve ``func``
    (float32 ``sin`` at ``x = 10⁵``, whose differences then agree on a wrong value).

    Args:
        func: Function of a 1-D array returning a scalar or an array.
        x: Point, shape ``(n,)``, as :func:`jacobian` takes it.
        step: Relative step.
        epsilon: The relative rounding of ``func``'s values, as :func:`jacobian`
            takes it.
        noise: An error of ``func``'s values beyond their rounding, in their
            units: where they are themselves estimates (differences, whose own
            bound it is), so that a step too small to bear it is not taken.

    Returns:
        ``(D, bound)``, both of shape ``np.shape(func(x)) + (n,)``.
    """
    x = np.asarray(x)
    x = x.astype(np.float32 if x.dtype == np.float32 else np.float64, copy=False)
    columns, bounds = [], []
    # A step beyond the domain gives NaN or inf, which the bound reports, not NumPy.
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        for i in range(x.shape[0]):
            at = functools.partial(_extrapolated, func, x, i, epsilon, noise)
            derivative = _derivative(
                at, float(x[i]), step, epsilon or _epsilon(x.dtype)
            )
            columns.append(derivative.value)
            bounds.append(np.full(np.shape(derivative.value), derivative.bound))
    return np.stack(columns, axis=-1), np.stack(bounds, axis=-1)


def _derivative(
    at: Callable[[float], _Estimate], coordinate: float, step: float, rounding: float
) -> _Estimate:
    """The derivative along a coordinate and its bound, from the step that does better.

    Where every step tried leaves ``func``'s domain (NaN, or raising, beyond an edge
    nearer than the smaller: ``log(x - 0.5)`` at ``x = 0.5003``), smaller steps are
    tried, from the first that stays within it (:func:`_settled`).

    Args:
        at: The estimate at a step.
        coordinate: The coordinate's value.
        step: Relative step.
        rounding: The values' relative rounding or, unknown, that of ``x``.
    """
    estimate = _tried(at, coordinate, step, rounding)
    if np.all(np.isfinite(estimate.value)):
        return estimate
    h = step * min(1.0, abs(np.float64(coordinate))) or step
    for _ in range(_SEARCH):
        h /= _FINER
        finer = at(h)
        if np.all(np.isfinite(finer.value)):
            return _settled(at, h, finer, np.inf)
    return estimate


def _tried(
    at: Callable[[float], _Estimate], coordinate: float, step: float, rounding: float
) -> _Estimate:
    """:func:`_derivative` from the step scaled to the coordinate, or the other."""
    size = abs(np.float64(coordinate))  # NumPy's: a step of 0 divides to inf
    scaled = at(step * max(1.0, size))
    largest = _largest(scaled.value)
    # Not where the estimate is 0: f flat, or 0 at every step taken (exp(-x²/s²)
    # with s far below the step, whose values underflow).
    small = max(_SMALL, _SMALL_ROUNDINGS * rounding) * largest
    converged = 0.0 < largest < np.inf and scaled.bound <= small
    if (converged and size <= 1.0) or size == 1.0 or not size > 0.0:  # NaN too
        return scaled
    smaller = step * min(1.0, size)
    other = at(smaller)
    if other.bound < _FAR_BETTER * scaled.bound:
        # Taken even where it rounds more than a check can bear: steps between
        # the two would smooth over features that it resolves and agree with each
        # other on the smoothed value (log x at 1e-5 beside a ripple of period
        # 1.5e-8, where a gradient 1 % off passed when they were tried).
        return other
    if np.isfinite(other.bound) and _apart(other, scaled) > scaled.bound + other.bound:
        # The two disagree by more than their bounds allow: one bound does not
        # hold. Differences at steps far too coarse for f agree on a wrong value (a
        # scaled step spanning whole periods of sin, or reaching past a peak of
        # width 1e-3); those at a step too fine are rounded more than f's
        # precision says. Smaller steps tell which.
        return _settled(at, smaller, other, np.inf)
    if scaled.bound > _LOOSE * largest and scaled.bound >= 2 * scaled.rounded:
        # Loose, mostly by truncation, and the two agree: where f varies on a
        # scale below both steps (sin(200 x), whose estimates at 0.065 and 0.05
        # agree within bounds larger than themselves), smaller steps may do better.
        found = _settled(at, smaller, other, scaled.bound)
        if found.bound < scaled.bound:
            return found
    return scaled


def _settled(
    at: Callable[[float], _Estimate],
    h: float,
    estimate: _Estimate,
    beaten: float,
) -> _Estimate:
    """The estimate of smallest bound that a neighbouring step confirms.

    Of the estimates at ``h`` (``estimate``), ``h / 10``, ``h / 100``, …, each may be
    confirmed by the next larger or the next smaller step's: where the two differ by
    no more than their bounds allow, and the confirming one's bound is at most
    :data:`_CONFIRMS` times the other's. At most :data:`_SEARCH` smaller steps are
    taken, none after a bound of ``beaten`` or more, nor after one that confirms the
    one before while bounding itself no better (rounding grows from there on).
    Where none is confirmed, ``estimate`` with an infinite bound.
    """
    steps = [estimate]
    for _ in range(_SEARCH):
        h /= _FINER
        finer = at(h)
        steps.append(finer)
        last = steps[-2]
        if not finer.bound < beaten or (
            finer.bound >= last.bound and _confirms(finer, last)
        ):
            break
    best = estimate._replace(bound=np.inf)
    for k, step in enumerate(steps):
        neighbours = steps[max(k - 1, 0) : k] + steps[k + 1 : k + 2]
        if step.bound < best.bound and any(_confirms(n, step) for n in neighbours):
            best = step
    return best


def _confirms(neighbour: _Estimate, estimate: _Estimate) -> bool:
    """Whether ``neighbour`` confirms ``estimate``."""
    within = _apart(neighbour, estimate) <= neighbour.bound + estimate.bound
    return within and neighbour.bound <= _CONFIRMS * estimate.bound


def _largest(value: np.ndarray) -> float:
    return float(np.max(np.abs(value), initial=0.0))


def _apart(estimate: _Estimate, other: _Estimate) -> float:
    """The largest difference of two estimates; ``nan`` where one is not finite."""
    return _largest(other.value - estimate.value)


def _extrapolated(
    func: Callable[[np.ndarray], Any],
    x: np.ndarray,
    i: int,
    epsilon: float | None,
    noise: float,
    h: float,
) -> _Estimate:
    """The derivative along ``x[i]`` with step ``h``, and a bound on its error.

    Central differences at ``h``, ``h/2`` and ``h/4`` extrapolated twice. The bound
    is the largest difference of the two fourth-order estimates plus the rounding of
    the values and of ``x[i]`` over ``h/4``, and the values' ``noise`` over ``h``.
    """
    differences = []
    rounding, values = epsilon or 0.0, 0.0
    for size in (h, h / 2, h / 4):
        forward, backward = x.copy(), x.copy()
        forward[i] += size
        backward[i] -= size
        try:
            # Copied: func may return a buffer of its own that its next call rewrites.
            ahead, behind = np.array(func(forward)), np.array(func(backward))
        except OUTSIDE:
            # A step out of func's domain, where it raises (math.sqrt, 1 / 0) as
            # NumPy returns NaN: taken as NaN, so that smaller steps are tried. At x
            # itself, it raises.
            shape = np.shape(func(x.copy()))
            return _Estimate(np.full(shape, np.nan), np.inf, np.inf)
        if size == h:  # the values' size and precision, from the first pair
            if epsilon is None:
                rounding = _epsilon(ahead.dtype)
            values = _largest(ahead)
        difference = ahead.astype(np.float64, copy=False) - behind
        # Over the step as taken, x[i] ± size rounded to x's precision.
        differences.append(difference / (np.float64(forward[i]) - backward[i]))
    fourth_order = [(4 * differences[k + 1] - differences[k]) / 3 for k in range(2)]
    estimate = (16 * fourth_order[1] - fourth_order[0]) / 15
    spread = _largest(fourth_order[1] - fourth_order[0])
    slope = _largest(estimate)
    rounding_error = rounding * (values + abs(np.float64(x[i])) * slope) / (h / 4)
    rounded = rounding_error + noise / h
    bound = spread + rounded
    if not np.isfinite(bound):
        return _Estimate(estimate, np.inf, np.inf)
    return _Estimate(estimate, bound, rounded)


@functools.cache
def _epsilon(dtype: np.dtype[Any]) -> float:
    """The relative rounding of values of ``dtype``: float64's for non-floats."""
    return float(np.finfo(dtype if dtype.kind == "f" else np.float64).eps)
