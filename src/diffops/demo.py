"""The main job: every operator on every installed backend, checked and timed.

For a banana-shaped log density in five dimensions (scalar operators) and the torus
constraint (vector operators), build the six derivative functions on each installed
backend, evaluate them at a fixed point and compare each output with

* the same output from the first backend (the backends must agree), and
* a finite-difference derivative of the output of next-lower order that the same
  function returns (``g`` against the differences of ``f``, ``H`` against those of
  ``g``, ``mtp(M)`` against those of ``Σ M ∘ H``, and so on),

then time a call of each. Prints one table; the result says whether all agreed.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

import numpy as np

from diffops import finite_differences
from diffops.namespaces import ArrayNamespace, array_namespace
from diffops.operators import OPERATORS
from diffops.registry import _BUILTIN_BACKENDS, autodiff_fallback, available_backends

__all__ = [
    "DemoRow",
    "banana_neg_log_density",
    "demo_backends",
    "run_demo",
    "torus_constraint",
]

DIMENSION = 5
TORUS_RADII = (2.0, 0.5)


def banana_neg_log_density(
    xp: ArrayNamespace, n: int = DIMENSION
) -> Callable[..., Any]:
    """``f(x) = x₀²/8 + Σ_{i≥1} (x_i - x_{i-1}²/2)²/2``: a chain of bananas."""

    def neg_log_density(x: Any) -> Any:
        curvature = xp.stack([x[i] - x[i - 1] ** 2 / 2 for i in range(1, n)])
        return x[0] ** 2 / 8 + xp.sum(curvature**2) / 2

    return xp.prepare(neg_log_density, n)


def torus_constraint(xp: ArrayNamespace) -> Callable[..., Any]:
    """``c(x, y, z) = [((x² + y²)^½ - R)² + z² - r²]``, zero on a torus in 3-D."""
    major, minor = TORUS_RADII

    def constraint(q: Any) -> Any:
        radial = xp.sqrt(q[0] ** 2 + q[1] ** 2) - major
        return xp.stack([radial**2 + q[2] ** 2 - minor**2])

    return xp.prepare(constraint, 3)


@dataclass(frozen=True)
class DemoRow:
    """One line of the demo table."""

    backend: str
    operator: str
    error_vs_reference: float
    error_vs_finite_differences: float
    microseconds_per_call: float
    microseconds_per_product: float | None


def _relative_error(value: Any, reference: Any) -> float:
    value, reference = np.asarray(value), np.asarray(reference)
    return float(
        np.max(np.abs(value - reference)) / max(1.0, np.max(np.abs(reference)))
    )


def _microseconds(call: Callable[[], Any], budget: float = 0.02) -> float:
    """Median per-call time over five batches sized to take about ``budget`` s."""
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < budget / 5 or count < 3:
        call()
        count += 1
    timings = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(count):
            call()
        timings.append((time.perf_counter() - start) / count)
    return float(np.median(timings)) * 1e6


def _outputs(derivative: Callable[..., Any], x: np.ndarray, argument: Any) -> list[Any]:
    """Outputs at ``x``, the product (if any) applied to ``argument``."""
    outputs = list(derivative(x))
    if callable(outputs[0]):
        outputs[0] = outputs[0](argument)
    return outputs


def _finite_difference_reference(
    derivative: Callable[..., Any], x: np.ndarray, argument: Any
) -> np.ndarray:
    """What the highest output should be, from differences of the next one.

    A product is the derivative of its argument's contraction with the next output:
    ``mtp(M)`` of ``Σ M ∘ H``, ``mhp(M)`` of ``Σ M ∘ J``, ``vjp(u)`` of ``u · c``.
    """
    if argument is None:
        return finite_differences.jacobian(lambda y: derivative(y)[1], x)
    return finite_differences.jacobian(lambda y: np.sum(argument * derivative(y)[1]), x)


def demo_backends(backends: Sequence[str] | None = None) -> tuple[str, ...]:
    """``backends`` once each, by name in lower case, as look-ups ignore case.

    By default, every built-in backend installed here.

    Raises:
        ValueError: If a backend asked for is not a built-in one installed here (the
            demo's functions are written for those), naming it and those there are.
    """
    installed = tuple(b for b in available_backends() if b in _BUILTIN_BACKENDS)
    if backends is None:
        return installed
    refused = [b for b in backends if b.lower() not in installed]
    if refused:
        msg = (
            f"the demo runs the built-in backends installed here, "
            f"{', '.join(installed)}; got {', '.join(map(repr, refused))}."
        )
        raise ValueError(msg)
    return tuple(dict.fromkeys(b.lower() for b in backends))


def run_demo(
    backends: Sequence[str] | None = None,
    *,
    print_to: TextIO | None = None,
) -> list[DemoRow]:
    """Run the demo on ``backends`` (default: every built-in one installed here).

    Prints one table, and returns its rows.

    Raises:
        ValueError: As :func:`demo_backends`.
    """
    backends = demo_backends(backends)
    rng = np.random.default_rng(0)
    points = {
        "scalar": rng.uniform(-1, 1, DIMENSION),
        "vector": np.array([2.3, 0.4, 0.3]),
    }
    # The product arguments, drawn once so that every backend gets the same.
    arguments = {
        name: rng.standard_normal(
            operator.concrete_argument_shape(points[operator.applies_to].size, 1)
        )
        for name, operator in OPERATORS.items()
        if operator.product is not None
    }
    reference: dict[str, list[Any]] = {}
    rows = []
    for backend in backends:
        xp = array_namespace(backend)
        functions = {
            "scalar": banana_neg_log_density(xp),
            "vector": torus_constraint(xp),
        }
        for operator, record in OPERATORS.items():
            kind = record.applies_to
            x, argument = points[kind], arguments.get(operator)
            derivative = autodiff_fallback(
                None, functions[kind], operator, operator, backend
            )
            outputs = _outputs(derivative, x, argument)
            reference.setdefault(operator, outputs)
            error_vs_reference = max(
                _relative_error(value, expected)
                for value, expected in zip(outputs, reference[operator], strict=True)
            )
            error_vs_fd = _relative_error(
                outputs[0], _finite_difference_reference(derivative, x, argument)
            )
            per_product = None
            if argument is not None:
                per_product = _microseconds(
                    functools.partial(derivative(x)[0], argument)
                )
            rows.append(
                DemoRow(
                    backend,
                    operator,
                    error_vs_reference,
                    error_vs_fd,
                    _microseconds(functools.partial(derivative, x)),
                    per_product,
                )
            )
    if print_to is not None:
        print_to.write(format_table(rows, backends[0] if backends else "-"))
    return rows


def format_table(rows: Sequence[DemoRow], reference_backend: str) -> str:
    """The demo table as text."""
    header = (
        f"{'backend':<10} {'operator':<27} {'vs ' + reference_backend:>10} "
        f"{'vs FD':>10} {'µs/call':>10} {'µs/product':>11}"
    )
    lines = [header, "-" * len(header)]
    for row in rows:
        product = (
            ""
            if row.microseconds_per_product is None
            else (f"{row.microseconds_per_product:11.1f}")
        )
        lines.append(
            f"{row.backend:<10} {row.operator:<27} {row.error_vs_reference:10.1e} "
            f"{row.error_vs_finite_differences:10.1e} "
            f"{row.microseconds_per_call:10.1f} {product}"
        )
    return "\n".join(lines) + "\n"
