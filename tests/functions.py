"""The test suite's functions, in one place.

* **Cases** with hand-derived derivatives: each written once as ``make(xp, n)``
  against an array namespace (:mod:`diffops.namespaces`), so that every backend
  differentiates the same function, with its value, gradient and Hessian (scalar) or
  value and Jacobian (vector) derived by hand in NumPy. The formulas avoid ``abs`` and
  comparisons so that they also accept complex input: the tests differentiate them by
  complex step to get the third- and second-order references of the products.
* :func:`render` gives a case in a backend's namespace as a module-level, picklable
  object, so that derivative functions made from it cross process boundaries.
* **Random functions** from a small grammar, drawn by Hypothesis and rendered in
  every namespace, for the property tests.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from hypothesis import strategies as st

from diffops.namespaces import array_namespace

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

# c(x) = x, the identity, and c(x) = x[1:], a slice: frameworks hand back x itself,
# or a view of it, as the value of such functions.
IDENTITY = VectorCase(
    "identity",
    3,
    lambda xp, n: lambda x: x,
    lambda x: x,
    lambda x: np.eye(x.size) + 0 * x[0],
    np.array([0.6, -1.1, 2.4]),
)
TAIL = VectorCase(
    "tail",
    3,
    lambda xp, n: lambda x: x[1:],
    lambda x: x[1:],
    lambda x: np.eye(x.size)[1:] + 0 * x[0],
    np.array([0.6, -1.1, 2.4]),
)

# c(x) = x³/3 entry by entry;  J = diag(x²). Its pullbacks keep x whole, where those
# of the entry-by-entry functions above keep only its entries.
CUBES = VectorCase(
    "cubes",
    3,
    lambda xp, n: lambda x: x**3 / 3,
    lambda x: x**3 / 3,
    lambda x: np.diag(x**2),
    np.array([0.9, -0.5, 1.3]),
)

# c(x) = exp(x) entry by entry;  J = diag(exp(x)). exp's derivative is its own output,
# so a graph of it keeps the value, and a Jacobian's graph keeps it too: an output
# that shared memory with it would change the product when written into.
EXPONENTIALS = VectorCase(
    "exponentials",
    3,
    lambda xp, n: lambda x: xp.exp(x),
    np.exp,
    lambda x: np.diag(np.exp(x)),
    np.array([0.3, -0.7, 1.1]),
)

# c(x) = x[:0], a function with no outputs: J has shape (0, n). Not among the cases
# that every backend differentiates: symnum.numpify cannot make it.
EMPTY = VectorCase(
    "empty",
    3,
    lambda xp, n: lambda x: x[:0],
    lambda x: x[:0],
    lambda x: np.zeros((0, x.size)),
    np.array([1.0, 2.0, 3.0]),
)


# c(x) = [[1 + x0², x0 x1], [x0 x1, 1 + x2² + sin x1]], a matrix of values, as a
# Riemannian metric is: only vjp_and_value takes it, u of its shape (2, 2);
# J[i, j, k] = ∂c[i, j]/∂x[k], of shape (2, 2, 3).
def _metric(xp: Any, n: int) -> Callable[..., Any]:
    def metric(x: Any) -> Any:
        off = x[0] * x[1]
        return xp.stack(
            [
                xp.stack([1 + x[0] ** 2, off]),
                xp.stack([off, 1 + x[2] ** 2 + xp.sin(x[1])]),
            ]
        )

    return metric


def _metric_value(x: np.ndarray) -> np.ndarray:
    off = x[0] * x[1]
    return np.array([[1 + x[0] ** 2, off], [off, 1 + x[2] ** 2 + np.sin(x[1])]])


def _metric_jacobian(x: np.ndarray) -> np.ndarray:
    zero = 0 * x[0]
    off = [x[1], x[0], zero]
    return np.array(
        [[[2 * x[0], zero, zero], off], [off, [zero, np.cos(x[1]), 2 * x[2]]]]
    )


METRIC = VectorCase(
    "metric",
    3,
    _metric,
    _metric_value,
    _metric_jacobian,
    np.array([0.7, -0.4, 1.2]),
)

SCALAR_CASES = (QUADRATIC, CUBIC, QUARTIC, SMOOTH)
VECTOR_CASES = (LINEAR, TORUS, SEVERAL_OUTPUTS, IDENTITY, TAIL, CUBES)
CASES = {
    case.name: case
    for case in (*SCALAR_CASES, *VECTOR_CASES, EMPTY, EXPONENTIALS, METRIC)
}


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


# Rendering a case for a backend.


@functools.cache
def _rendered(case: str, backend: str) -> Callable[..., Any]:
    return CASES[case].make(array_namespace(backend), CASES[case].n)


@dataclass(frozen=True)
class Rendered:
    """Case ``case`` in ``backend``'s namespace; pickles as the two names.

    Made by :func:`rendered`, which renders the case at once: rendered first inside a
    JAX trace, its constants would be tracers that escape it.
    """

    case: str
    backend: str

    def __call__(self, x: Any) -> Any:
        return _rendered(self.case, self.backend)(x)

    def __reduce__(self) -> tuple[Any, ...]:
        return (rendered, (self.case, self.backend))

    @property
    def __name__(self) -> str:
        return self.case


def rendered(case: str, backend: str) -> Rendered:
    """:class:`Rendered` of ``case``, rendered here, outside any trace."""
    _rendered(case, backend)
    return Rendered(case, backend)


def render(case: ScalarCase | VectorCase, backend: str) -> Callable[..., Any]:
    """``case`` written in ``backend``'s namespace, ready for its operators.

    SymNum's operators need the function decorated with ``symnum.numpify``; its
    derivative functions pickle as generated code, so the function itself need not.
    """
    if backend == "symnum":
        xp = array_namespace(backend)
        return xp.prepare(case.make(xp, case.n), case.n)
    return rendered(case.name, backend)


# Random smooth functions from a small grammar (property tests).

RANDOM_N = 3
"""Dimension of x for the random functions."""

UNARY = ("sin", "cos", "tanh", "exp_sin", "log1p_square", "square", "cube")
BINARY = ("add", "mul")

coefficients = st.floats(-2, 2, allow_nan=False, allow_infinity=False).map(
    lambda c: round(c, 3)
)
leaves = st.one_of(
    st.tuples(st.just("x"), st.integers(0, RANDOM_N - 1)),
    st.tuples(st.just("const"), coefficients),
    st.tuples(st.just("linear"), st.tuples(*[coefficients] * RANDOM_N)),
)
expressions = st.recursive(
    leaves,
    lambda children: st.one_of(
        st.tuples(st.sampled_from(UNARY), children),
        st.tuples(st.sampled_from(BINARY), children, children),
    ),
    max_leaves=4,
)


def depends_on_x(expression: tuple[Any, ...]) -> bool:
    kind = expression[0]
    if kind == "x":
        return True
    if kind == "const":
        return False
    if kind == "linear":
        return any(expression[1])
    return any(depends_on_x(child) for child in expression[1:])


def evaluate_expression(expression: tuple[Any, ...], xp: Any, x: Any) -> Any:
    """The value of ``expression`` at ``x``, computed with ``xp``'s functions."""
    kind = expression[0]
    if kind == "x":
        return x[expression[1]]
    if kind == "const":
        return expression[1] + 0 * x[0]
    if kind == "linear":
        return sum(weight * x[i] for i, weight in enumerate(expression[1]))
    if kind == "add":
        return evaluate_expression(expression[1], xp, x) + evaluate_expression(
            expression[2], xp, x
        )
    if kind == "mul":
        return evaluate_expression(expression[1], xp, x) * evaluate_expression(
            expression[2], xp, x
        )
    a = evaluate_expression(expression[1], xp, x)
    if kind == "exp_sin":  # exp of a bounded argument
        return xp.exp(xp.sin(a))
    if kind == "log1p_square":
        return xp.log(1 + a**2)
    if kind == "square":
        return a**2
    if kind == "cube":
        return a**3
    return getattr(xp, kind)(a)


def random_scalar_function(expression: tuple[Any, ...], xp: Any) -> Callable[..., Any]:
    return xp.prepare(lambda x: evaluate_expression(expression, xp, x), RANDOM_N)


def random_vector_function(
    expressions_: tuple[tuple[Any, ...], ...], xp: Any
) -> Callable[..., Any]:
    return xp.prepare(
        lambda x: xp.stack([evaluate_expression(e, xp, x) for e in expressions_]),
        RANDOM_N,
    )


# Functions that a framework cannot differentiate, as users write them by mistake.


def _control_flow(xp: Any) -> Callable[..., Any]:
    def control_flow(x: Any) -> Any:
        if x[0] > 0:  # a Python if on a value computed from x
            return xp.sum(x**2)
        return xp.sum(x)

    return control_flow


def _numpy_call(xp: Any) -> Callable[..., Any]:
    def numpy_call(x: Any) -> Any:
        return xp.sum(np.sin(x))  # NumPy, not the framework

    return numpy_call


def _in_place(xp: Any) -> Callable[..., Any]:
    def in_place(x: Any) -> Any:
        x[0] = 1.0  # assigning into the traced array
        return xp.sum(x**2)

    return in_place


MISTAKES = {"control flow": _control_flow, "numpy": _numpy_call, "in place": _in_place}
"""Each mistake as ``make(xp)``; which backends cannot take which is in test_errors."""
