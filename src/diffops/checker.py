"""Check hand-written derivative functions against a reference.

:func:`check_derivatives` evaluates each of the user's derivative functions at some
points and compares every output it returns (the products applied to a seeded random
``M`` or ``u``) with a reference computed independently:

* ``reference="finite_differences"`` needs no framework: ``func`` may be plain NumPy.
  Derivatives are :func:`diffops.finite_differences.jacobian`: central differences
  with a step scaled to each coordinate, improved twice by Richardson extrapolation
  (error ``O(h⁶)``). Higher orders difference the lower-order references:
  ``H`` differentiates the differenced gradient, and every product the contraction
  of its argument with the output after it (``mtp(M)`` the contraction ``Σ M ∘ H``,
  ``mhp(M)`` ``Σ M ∘ J``, ``vjp(u)`` ``u · c``); the steps grow with the nesting so
  that rounding error stays small.
* ``reference=NAME`` uses the operators of that backend (``func`` is then written for
  it).

An entry passes when ``|actual - expected| ≤ atol · scale + rtol · |expected|``, where
``scale`` is ``max(1, largest |expected| entry)`` over all the outputs of the operator
at that point: the error of a differenced reference is proportional to the size of
the quantities it is differenced from (``mtp(M)`` of a quadratic is zero, but its
reference comes from an ``H`` that is not).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from diffops import finite_differences
from diffops.operators import DIFF_OPS, OPERATORS, Operator
from diffops.registry import autodiff_fallback

__all__ = [
    "Comparison",
    "DerivativeCheckError",
    "DerivativeReport",
    "check_derivatives",
]

# Base relative step for each nesting depth of differences (1 = first derivative).
_STEPS = {1: 1e-3, 2: 1e-2, 3: 3e-2}


class DerivativeCheckError(AssertionError):
    """Raised by :meth:`DerivativeReport.raise_if_failed`; the message is the table."""


@dataclasses.dataclass(frozen=True)
class Comparison:
    """One output of one operator at one point, compared with the reference.

    Attributes:
        operator: Name of the operator, one of :data:`diffops.DIFF_OPS`.
        point: Index of the point among those checked.
        output: Which output: ``"g"``, ``"H"``, ``"mtp(M)"``, ``"v"`` (the value),
            ...
        max_abs_error: Largest absolute difference from the reference.
        max_rel_error: Largest difference relative to the reference entry, or to
            ``atol`` times the scale where that is larger.
        where: Index of the entry with the largest excess over the tolerance.
        ok: Whether every entry is within the tolerance.
        note: Why the comparison failed, where not by its numbers (a wrong shape,
            a wrong number of outputs); empty otherwise.
    """

    operator: str
    point: int
    output: str
    max_abs_error: float
    max_rel_error: float
    where: tuple[int, ...]
    ok: bool
    note: str = ""


@dataclasses.dataclass(frozen=True)
class DerivativeReport:
    """The result of :func:`check_derivatives`, a comparison per output.

    One :class:`~diffops.checker.Comparison` per output; ``str(report)`` is a table of
    them.

    Attributes:
        comparisons: One per operator, point and output, in that order.
        reference: ``"finite_differences"`` or the name of the backend compared with.
        rtol: The relative tolerance used.
        atol: The absolute tolerance used.
    """

    comparisons: tuple[Comparison, ...]
    reference: str
    rtol: float
    atol: float

    @property
    def ok(self) -> bool:
        """Whether every output of every operator matched at every point."""
        return all(comparison.ok for comparison in self.comparisons)

    def failures(self) -> tuple[Comparison, ...]:
        """The comparisons that did not pass."""
        return tuple(c for c in self.comparisons if not c.ok)

    def __str__(self) -> str:
        header = (
            f"{'operator':<28}{'point':>6}  {'output':<8}{'max abs err':>13}"
            f"{'max rel err':>13}  {'where':<10}result"
        )
        lines = [
            f"diffops derivative check against {self.reference} "
            f"(rtol={self.rtol:g}, atol={self.atol:g})",
            header,
            "-" * len(header),
        ]
        for c in self.comparisons:
            where = "-" if not c.where else str(c.where)
            result = "ok" if c.ok else "FAIL" + (f" ({c.note})" if c.note else "")
            lines.append(
                f"{c.operator:<28}{c.point:>6}  {c.output:<8}{c.max_abs_error:>13.3e}"
                f"{c.max_rel_error:>13.3e}  {where:<10}{result}"
            )
        failed = len(self.failures())
        lines.append(
            "all outputs match" if not failed else f"{failed} output(s) do not match"
        )
        return "\n".join(lines)

    def raise_if_failed(self) -> None:
        """Raise :class:`DerivativeCheckError`, with the table, if any output failed."""
        if not self.ok:
            raise DerivativeCheckError("\n" + str(self))


# The references: functions of x returning what a derivative function of the
# operator returns, the product as a callable.


def _difference(
    function: Callable[[np.ndarray], Any], x: np.ndarray, depth: int
) -> np.ndarray:
    """Differences of ``function``, itself ``depth - 1`` times differenced."""
    return finite_differences.jacobian(function, x, _STEPS[depth])


def _finite_difference_outputs(
    func: Callable[[np.ndarray], Any], operator: Operator, x: np.ndarray
) -> list[Any]:
    def value(y: np.ndarray) -> np.ndarray:
        return np.asarray(func(y), float)

    def first(y: np.ndarray) -> np.ndarray:  # g or J
        return _difference(value, y, 1)

    def second(y: np.ndarray) -> np.ndarray:  # H
        return _difference(first, y, 2)

    arrays = {"v": value, "g": first, "J": first, "H": second}
    depths = {"v": 0, "g": 1, "J": 1, "H": 2}
    outputs: list[Any] = [
        arrays[name](x) for name in operator.outputs if name in arrays
    ]
    if operator.product is None:
        return outputs
    # Every product is the derivative of ⟨A, the output after it⟩: mtp(M) of
    # Σ M ∘ H, mhp(M) of Σ M ∘ J, vjp(u) of u · c.
    below = operator.outputs[1]

    def product(argument: np.ndarray) -> np.ndarray:
        contracted = lambda y: np.sum(argument * arrays[below](y))  # noqa: E731
        return _difference(contracted, x, depths[below] + 1)

    return [product, *outputs]


def _reference(
    func: Callable[..., Any], operator: Operator, reference: str
) -> Callable[[np.ndarray], Any]:
    """What ``operator`` of ``func`` returns at ``x``: built once, called per point."""
    if reference == "finite_differences":
        return functools.partial(_finite_difference_outputs, func, operator)
    return autodiff_fallback(None, func, operator.name, operator.name, reference)


def _applied(outputs: Any, argument: Any) -> list[Any]:
    """The outputs, the product (if any) applied to ``argument``."""
    applied = list(outputs) if isinstance(outputs, tuple) else [outputs]
    if argument is not None and callable(applied[0]):
        applied[0] = applied[0](argument)
    return applied


# Comparing.


def _compare(
    operator: str,
    point: int,
    name: str,
    actual: Any,
    expected: np.ndarray,
    rtol: float,
    atol: float,
    scale: float,
) -> Comparison:
    try:
        actual = np.asarray(actual, dtype=float)
    except (TypeError, ValueError):
        note = f"got {type(actual).__name__}, not an array"
        return Comparison(operator, point, name, np.inf, np.inf, (), False, note)
    if actual.shape != expected.shape:
        note = f"shape {actual.shape}, expected {expected.shape}"
        return Comparison(operator, point, name, np.inf, np.inf, (), False, note)
    error = np.abs(actual - expected)
    allowed = atol * scale + rtol * np.abs(expected)
    relative = error / np.maximum(np.abs(expected), atol * scale)
    with np.errstate(invalid="ignore"):
        excess = np.where(np.isnan(error), np.inf, error - allowed)
    worst = (
        np.unravel_index(int(np.argmax(excess)), excess.shape) if excess.size else ()
    )
    return Comparison(
        operator,
        point,
        name,
        float(np.max(error, initial=0.0)),
        float(np.max(relative, initial=0.0)),
        tuple(int(i) for i in worst),
        bool(np.all(excess <= 0)),
    )


def check_derivatives(
    func: Callable[..., Any],
    derivatives: Mapping[str, Callable[..., Any]],
    points: Any,
    *,
    reference: str = "finite_differences",
    rtol: float = 1e-5,
    atol: float = 1e-6,
    seed: int = 0,
) -> DerivativeReport:
    """Compare hand-written derivative functions of ``func`` with a reference.

    Args:
        func: The function, scalar-valued ``f`` or vector-valued ``c`` of ``x`` of
            shape ``(n,)``.
        derivatives: Maps names from :data:`~diffops.DIFF_OPS` to your functions,
            each following that operator's convention: ``grad_and_value(x) → (g, v)``,
            ``hessian_grad_and_value(x) → (H, g, v)``,
            ``mtp_hessian_grad_and_value(x) → (mtp, H, g, v)``,
            ``jacobian_and_value(x) → (J, v)``,
            ``mhp_jacobian_and_value(x) → (mhp, J, v)``,
            ``vjp_and_value(x) → (vjp, v)``. A function may return only the first
            (highest-order) item instead of the tuple; then only that is checked.
        points: One point of shape ``(n,)`` or several, shape ``(k, n)``.
        reference: ``"finite_differences"`` or the name of a backend.
        rtol: Relative tolerance per entry.
        atol: Absolute tolerance per entry, relative to the largest entry of the
            operator's reference outputs (at least 1).
        seed: Seed of the random ``M`` and ``u`` given to the products.

    Returns:
        A :class:`DerivativeReport`; ``report.raise_if_failed()`` raises when any
        output differs.

    Raises:
        ValueError: If an operator name is unknown or ``points`` is not 1-D or 2-D.
        TypeError: If ``func`` or a derivative is not callable.
    """
    if not callable(func):
        msg = f"func must be callable; got {type(func).__name__}."
        raise TypeError(msg)
    if not isinstance(derivatives, Mapping) or not derivatives:
        msg = "derivatives must be a non-empty mapping from operator name to function."
        raise TypeError(msg)
    for operator, function in derivatives.items():
        if operator not in DIFF_OPS:
            msg = (
                f"derivatives has an unknown operator {operator!r}: valid names are "
                f"{DIFF_OPS}."
            )
            raise ValueError(msg)
        if not callable(function):
            kind = type(function).__name__
            msg = f"derivatives[{operator!r}] must be callable; got {kind}."
            raise TypeError(msg)
    points = np.asarray(points, dtype=float)
    if points.ndim == 1:
        points = points[np.newaxis]
    if points.ndim != 2:
        msg = f"points must have shape (n,) or (k, n); got shape {points.shape}."
        raise ValueError(msg)
    rng = np.random.default_rng(seed)
    comparisons = []
    for name, function in derivatives.items():
        record = OPERATORS[name]
        labels = record.labels
        reference_at = _reference(func, record, reference)
        for index, x in enumerate(points):
            reference_outputs = tuple(reference_at(x))
            argument = None
            if record.product is not None:
                # The argument has the shape of the output after the product.
                argument = rng.standard_normal(np.shape(reference_outputs[1]))
            expected = [
                np.asarray(e, float) for e in _applied(reference_outputs, argument)
            ]
            outputs = _applied(function(x.copy()), argument)
            if len(outputs) > len(labels):
                note = f"returned {len(outputs)} items, expected {len(labels)}"
                comparisons.append(
                    Comparison(name, index, "tuple", np.inf, np.inf, (), False, note)
                )
                continue
            scale = max(1.0, *(float(np.max(np.abs(e), initial=0.0)) for e in expected))
            for label, actual, wanted in zip(labels, outputs, expected, strict=False):
                comparisons.append(
                    _compare(name, index, label, actual, wanted, rtol, atol, scale)
                )
    return DerivativeReport(tuple(comparisons), reference, rtol, atol)
