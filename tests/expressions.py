"""Random smooth functions from a small grammar, rendered in any array namespace.

An expression is a nested tuple drawn once by Hypothesis, then rendered in every
backend's namespace (and in plain NumPy for the finite-difference reference), so the
backends differentiate the same function.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis import strategies as st

N = 3
"""Dimension of x for the random functions."""

UNARY = ("sin", "cos", "tanh", "exp_sin", "log1p_square", "square", "cube")
BINARY = ("add", "mul")

coefficients = st.floats(-2, 2, allow_nan=False, allow_infinity=False).map(
    lambda c: round(c, 3)
)
leaves = st.one_of(
    st.tuples(st.just("x"), st.integers(0, N - 1)),
    st.tuples(st.just("const"), coefficients),
    st.tuples(st.just("linear"), st.tuples(*[coefficients] * N)),
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


def evaluate(expression: tuple[Any, ...], xp: Any, x: Any) -> Any:
    """The value of ``expression`` at ``x``, computed with ``xp``'s functions."""
    kind = expression[0]
    if kind == "x":
        return x[expression[1]]
    if kind == "const":
        return expression[1] + 0 * x[0]
    if kind == "linear":
        return sum(weight * x[i] for i, weight in enumerate(expression[1]))
    if kind == "add":
        return evaluate(expression[1], xp, x) + evaluate(expression[2], xp, x)
    if kind == "mul":
        return evaluate(expression[1], xp, x) * evaluate(expression[2], xp, x)
    a = evaluate(expression[1], xp, x)
    if kind == "exp_sin":  # exp of a bounded argument
        return xp.exp(xp.sin(a))
    if kind == "log1p_square":
        return xp.log(1 + a**2)
    if kind == "square":
        return a**2
    if kind == "cube":
        return a**3
    return getattr(xp, kind)(a)


def scalar_function(expression: tuple[Any, ...], xp: Any) -> Callable[..., Any]:
    return xp.prepare(lambda x: evaluate(expression, xp, x), N)


def vector_function(
    expressions_: tuple[tuple[Any, ...], ...], xp: Any
) -> Callable[..., Any]:
    return xp.prepare(lambda x: xp.stack([evaluate(e, xp, x) for e in expressions_]), N)
