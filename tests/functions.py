"""Test functions, each written once against an array namespace, with hand-derived
value, gradient and Hessian (scalar) or value and Jacobian (vector) in NumPy.

The hand-derived formulas avoid ``abs`` and comparisons so that they also accept
complex input: the tests differentiate them by complex step to get third-order and
second-order references for the product operators.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

_rng = np.random.default_rng(20261126)
_A = _rng.standard_normal((4, 4))
QUADRATIC_MATRIX = _A @ _A.T + 4 * np.eye(4)
QUADRATIC_VECTOR = _rng.standard_normal(4)
LINEAR_MATRIX = _rng.standard_normal((2, 5))
LINEAR_OFFSET = _rng.standard_normal(2)
TORUS_MAJOR, TORUS_MINOR = 2.0, 0.5


@dataclass(frozen=True)
class ScalarCase:
    name: str
    n: int
    make: Callable[[Any, int], Callable[..., Any]]
    value: Callable[[np.ndarray], Any]
    grad: Callable[[np.ndarray], np.ndarray]
    hessian: Callable[[np.ndarray], np.ndarray]
    point: np.ndarray

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class VectorCase:
    name: str
    n: int
    make: Callable[[Any, int], Callable[..., Any]]
    value: Callable[[np.ndarray], np.ndarray]
    jacobian: Callable[[np.ndarray], np.ndarray]
    point: np.ndarray

    def __str__(self) -> str:
        return self.name


# f(x) = ½ xᵀAx + bᵀx;  g = Ax + b;  H = A.
def _quadratic(xp: Any, n: int) -> Callable[..., Any]:
    A, b = xp.asarray(QUADRATIC_MATRIX), xp.asarray(QUADRATIC_VECTOR)
    return lambda x: 0.5 * x @ (A @ x) + xp.sum(b * x)


QUADRATIC = ScalarCase(
    "quadratic",
    4,
    _quadratic,
    lambda x: 0.5 * x @ QUADRATIC_MATRIX @ x + QUADRATIC_VECTOR @ x,
    lambda x: QUADRATIC_MATRIX @ x + QUADRATIC_VECTOR,
    lambda x: QUADRATIC_MATRIX + 0 * x[0],
    np.array([0.5, -1.2, 0.3, 2.0]),
)


# f(x) = Σ x_i³ + s³/6, s = Σ x_i;  g = 3x² + s²/2;  H = diag(6x) + s 11ᵀ.
def _cubic(xp: Any, n: int) -> Callable[..., Any]:
    return lambda x: xp.sum(x**3) + xp.sum(x) ** 3 / 6


CUBIC = ScalarCase(
    "cubic",
    4,
    _cubic,
    lambda x: np.sum(x**3) + np.sum(x) ** 3 / 6,
    lambda x: 3 * x**2 + np.sum(x) ** 2 / 2,
    lambda x: np.diag(6 * x) + np.sum(x) * np.ones((x.size, x.size)),
    np.array([0.7, -0.4, 1.3, -1.1]),
)


# f(x) = Σ x_i⁴/4 + r²/8, r = xᵀx;  g = x³ + r x/2;  H = diag(3x²) + (r/2) I + x xᵀ.
def _quartic(xp: Any, n: int) -> Callable[..., Any]:
    return lambda x: xp.sum(x**4) / 4 + xp.sum(x**2) ** 2 / 8


QUARTIC = ScalarCase(
    "quartic",
    4,
    _quartic,
    lambda x: np.sum(x**4) / 4 + (x @ x) ** 2 / 8,
    lambda x: x**3 + (x @ x) * x / 2,
    lambda x: np.diag(3 * x**2) + (x @ x) / 2 * np.eye(x.size) + np.outer(x, x),
    np.array([-0.9, 0.2, 1.4, 0.6]),
)


# f(x) = log(1 + x₀² + x₁²) + sin(x₁) tanh(x₂) + exp((x₀ + x₃)/10) + x₂ sin(x₃).
# Written entry by entry: SymNum's symbolic third derivatives of whole-array
# expressions of this kind take minutes to generate.
def _smooth(xp: Any, n: int) -> Callable[..., Any]:
    def f(x: Any) -> Any:
        return (
            xp.log(1 + x[0] ** 2 + x[1] ** 2)
            + xp.sin(x[1]) * xp.tanh(x[2])
            + xp.exp((x[0] + x[3]) / 10)
            + x[2] * xp.sin(x[3])
        )

    return f


def _smooth_value(x: np.ndarray) -> Any:
    return (
        np.log(1 + x[0] ** 2 + x[1] ** 2)
        + np.sin(x[1]) * np.tanh(x[2])
        + np.exp((x[0] + x[3]) / 10)
        + x[2] * np.sin(x[3])
    )


def _smooth_grad(x: np.ndarray) -> np.ndarray:
    q, e, t = 1 + x[0] ** 2 + x[1] ** 2, np.exp((x[0] + x[3]) / 10), np.tanh(x[2])
    return np.array(
        [
            2 * x[0] / q + e / 10,
            2 * x[1] / q + np.cos(x[1]) * t,
            np.sin(x[1]) * (1 - t**2) + np.sin(x[3]),
            e / 10 + x[2] * np.cos(x[3]),
        ]
    )


def _smooth_hessian(x: np.ndarray) -> np.ndarray:
    q, e, t = 1 + x[0] ** 2 + x[1] ** 2, np.exp((x[0] + x[3]) / 10), np.tanh(x[2])
    sech2 = 1 - t**2
    zero = 0 * x[0]
    h01 = -4 * x[0] * x[1] / q**2
    h12 = np.cos(x[1]) * sech2
    h23 = np.cos(x[3])
    return np.array(
        [
            [2 / q - 4 * x[0] ** 2 / q**2 + e / 100, h01, zero, e / 100],
            [h01, 2 / q - 4 * x[1] ** 2 / q**2 - np.sin(x[1]) * t, h12, zero],
            [zero, h12, -2 * np.sin(x[1]) * t * sech2, h23],
            [e / 100, zero, h23, e / 100 - x[2] * np.sin(x[3])],
        ]
    )


SMOOTH = ScalarCase(
    "smooth",
    4,
    _smooth,
    _smooth_value,
    _smooth_grad,
    _smooth_hessian,
    np.array([0.3, -0.8, 1.1, 0.45]),
)


# c(x) = Ax + b;  J = A.
def _linear(xp: Any, n: int) -> Callable[..., Any]:
    A, b = xp.asarray(LINEAR_MATRIX), xp.asarray(LINEAR_OFFSET)
    return lambda x: A @ x + b


LINEAR = VectorCase(
    "linear",
    5,
    _linear,
    lambda x: LINEAR_MATRIX @ x + LINEAR_OFFSET,
    lambda x: LINEAR_MATRIX + 0 * x[0],
    np.array([0.1, -0.2, 0.3, 1.5, -0.7]),
)


# c(x, y, z) = [(ρ - R)² + z² - r²], ρ = (x² + y²)^½;
# J = [2(ρ - R) x/ρ, 2(ρ - R) y/ρ, 2z].
def _torus(xp: Any, n: int) -> Callable[..., Any]:
    def c(q: Any) -> Any:
        rho = xp.sqrt(q[0] ** 2 + q[1] ** 2)
        return xp.stack([(rho - TORUS_MAJOR) ** 2 + q[2] ** 2 - TORUS_MINOR**2])

    return c


def _torus_value(q: np.ndarray) -> np.ndarray:
    rho = np.sqrt(q[0] ** 2 + q[1] ** 2)
    return np.array([(rho - TORUS_MAJOR) ** 2 + q[2] ** 2 - TORUS_MINOR**2])


def _torus_jacobian(q: np.ndarray) -> np.ndarray:
    rho = np.sqrt(q[0] ** 2 + q[1] ** 2)
    scale = 2 * (rho - TORUS_MAJOR) / rho
    return np.array([[scale * q[0], scale * q[1], 2 * q[2]]])


TORUS = VectorCase(
    "torus", 3, _torus, _torus_value, _torus_jacobian, np.array([1.9, 0.6, -0.35])
)


# c(x) = [x₀x₁, sin x₂ + x₀², exp(x₁ - x₂), log(1 + x₀²)].
def _several(xp: Any, n: int) -> Callable[..., Any]:
    return lambda x: xp.stack(
        [
            x[0] * x[1],
            xp.sin(x[2]) + x[0] ** 2,
            xp.exp(x[1] - x[2]),
            xp.log(1 + x[0] ** 2),
        ]
    )


def _several_value(x: np.ndarray) -> np.ndarray:
    return np.array(
        [
            x[0] * x[1],
            np.sin(x[2]) + x[0] ** 2,
            np.exp(x[1] - x[2]),
            np.log(1 + x[0] ** 2),
        ]
    )


def _several_jacobian(x: np.ndarray) -> np.ndarray:
    e = np.exp(x[1] - x[2])
    zero = 0 * x[0]
    return np.array(
        [
            [x[1], x[0], zero],
            [2 * x[0], zero, np.cos(x[2])],
            [zero, e, -e],
            [2 * x[0] / (1 + x[0] ** 2), zero, zero],
        ]
    )


SEVERAL_OUTPUTS = VectorCase(
    "several_outputs",
    3,
    _several,
    _several_value,
    _several_jacobian,
    np.array([0.8, -0.3, 0.5]),
)

SCALAR_CASES = (QUADRATIC, CUBIC, QUARTIC, SMOOTH)
VECTOR_CASES = (LINEAR, TORUS, SEVERAL_OUTPUTS)


def complex_step_derivative(
    func: Callable[[np.ndarray], Any], x: np.ndarray, step: float = 1e-30
) -> np.ndarray:
    """``D[..., k] = ∂func(x)[...]/∂x[k]`` by complex step: exact to rounding."""
    columns = []
    for k in range(x.size):
        shifted = x.astype(complex)
        shifted[k] += 1j * step
        columns.append(np.imag(func(shifted)) / step)
    return np.stack(columns, axis=-1)
