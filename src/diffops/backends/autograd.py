"""Autograd backend: reverse-mode operators for ``autograd.numpy`` functions.

Every operator is built from one primitive, :func:`autograd.core.make_vjp`, which
returns the pullback ``u ↦ u @ ∂y/∂x`` and the value. Second and third orders apply
it to functions that themselves call it, so that the outer pullback differentiates
through the inner one. Only the output being differentiated is traced: the lower
orders are carried out as plain values, so a pullback never pushes zero cotangents
back through the graph of ``f`` (which doubles the cost of each Hessian row, and of
each ``mtp`` and ``mhp``, when done naively). The products' state is that pullback.
Autograd has no function wrapper: its functions take and return NumPy arrays already.

Autograd numbers nested traces with one process-wide counter, which threads running
at once would corrupt, so every evaluation and product holds one lock.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from diffops.functions import DerivativeFunction, Runtime, as_output
from diffops.operators import operator_sections
from diffops.validation import (
    check_callable,
    check_scalar_output,
    check_vector_output,
    output_shape,
)

FRAMEWORK = "autograd"

try:
    import autograd.numpy as anp
    from autograd.core import make_vjp
    from autograd.extend import vspace
    from autograd.tracer import getval
except ImportError:
    AVAILABLE = False
else:
    AVAILABLE = True

__all__ = [
    "AVAILABLE",
    "FRAMEWORK",
    "grad_and_value",
    "hessian_grad_and_value",
    "jacobian_and_value",
    "mhp_jacobian_and_value",
    "mtp_hessian_grad_and_value",
    "vjp_and_value",
]

Pullback = Callable[[Any], Any]


def _basis(size: int, like: Any) -> np.ndarray:
    return np.eye(size, dtype=vspace(like).dtype)


def _first_traced(
    transform: Callable[..., tuple[Any, ...]],
    func: Callable[..., Any],
    operator: str,
    rest: list[Any],
    x: Any,
) -> Any:
    """The first output of ``transform``; the others are put in ``rest`` as values."""
    first, *others = transform(func, x, operator)
    rest[:] = [getval(value) for value in others]
    return first


def _pullback_of_first(
    transform: Callable[..., tuple[Any, ...]],
    func: Callable[..., Any],
    x: Any,
    operator: str,
) -> tuple[Any, ...]:
    """Pullback of ``transform``'s first output, then all of its outputs.

    Returns ``(pullback, first, *others)``, the order a product operator returns.
    """
    rest: list[Any] = []
    traced = functools.partial(_first_traced, transform, func, operator, rest)
    pullback, first = make_vjp(traced, x)
    return (pullback, first, *rest)


# The operators' computations.


def _vjp_and_value(
    func: Callable[..., Any], x: Any, operator: str = "vjp_and_value"
) -> tuple[Pullback, Any]:
    pullback, value = make_vjp(func, x)
    output_shape(value, operator)  # of any shape, which u takes
    return pullback, value


def _grad_and_value(
    func: Callable[..., Any], x: Any, operator: str = "grad_and_value"
) -> tuple[Any, Any]:
    pullback, value = make_vjp(func, x)
    check_scalar_output(output_shape(value, operator), operator)
    if isinstance(value, int | np.integer):  # a constant, whose type autograd lacks
        value = vspace(x).dtype.type(value)
    return pullback(vspace(value).ones()), value


def _hessian_grad_and_value(
    func: Callable[..., Any], x: Any, operator: str = "hessian_grad_and_value"
) -> tuple[Any, Any, Any]:
    pullback, grad, value = _pullback_of_first(_grad_and_value, func, x, operator)
    # The pullback of the gradient map at e_i is row i of H.
    hessian = anp.stack([pullback(row) for row in _basis(x.shape[0], grad)])
    return hessian, grad, value


def _mtp_hessian_grad_and_value(
    func: Callable[..., Any], x: Any, operator: str = "mtp_hessian_grad_and_value"
) -> tuple[Any, ...]:
    return _pullback_of_first(_hessian_grad_and_value, func, x, operator)


def _jacobian_and_value(
    func: Callable[..., Any], x: Any, operator: str = "jacobian_and_value"
) -> tuple[Any, Any]:
    pullback, value = make_vjp(func, x)
    check_vector_output(output_shape(value, operator), operator)
    if value.shape[0] == 0:  # a function with no outputs: J has no rows
        return np.zeros((0, x.shape[0]), vspace(x).dtype), value
    # The pullback at e_i is row i of J.
    jacobian = anp.stack([pullback(row) for row in _basis(value.shape[0], value)])
    return jacobian, value


def _mhp_jacobian_and_value(
    func: Callable[..., Any], x: Any, operator: str = "mhp_jacobian_and_value"
) -> tuple[Any, ...]:
    return _pullback_of_first(_jacobian_and_value, func, x, operator)


# How the outputs reach the user.


def _to_numpy(value: Any, dtype: np.dtype[Any]) -> Any:
    # A copy, as the value may be x itself or an array the pullback keeps; in x's
    # dtype, whatever the function's constants were.
    return as_output(np.array(value, dtype=dtype))


def _apply_product(pullback: Pullback, argument: np.ndarray) -> Any:
    return pullback(argument)


def _explain(error: BaseException) -> str | None:
    if isinstance(error, ValueError) and "setting an array element with a" in str(
        error
    ):
        return (
            "it puts values computed from x into a NumPy array (y[i] = v into an "
            "array of its own, or np.array([...])), which Autograd cannot "
            "differentiate: build the array with anp.stack or anp.array."
        )
    if isinstance(error, TypeError) and "ArrayBox" in str(error):
        if "assignment" in str(error):
            return (
                "it assigns into an array in place (x[i] = v), which Autograd cannot "
                "differentiate: build the array with anp.stack or anp.concatenate."
            )
        return (
            f"it does something with x that Autograd cannot differentiate ({error}): "
            "write it with autograd.numpy (import autograd.numpy as anp)."
        )
    return None


RUNTIME = Runtime(
    _to_numpy, _apply_product, threading.RLock(), backend="autograd", explain=_explain
)
"""How this backend's derivative functions run, with a lock that serialises tracing."""


def _derivative(
    operator: Callable[..., DerivativeFunction],
    transform: Callable[..., Any],
    func: Callable[..., Any],
) -> DerivativeFunction:
    check_callable(func, operator.__name__)
    return DerivativeFunction(
        operator.__name__,
        functools.partial(transform, func),
        RUNTIME,
        (operator, (func,)),
        func=func,
    )


# The operators, in the order of DIFF_OPS.


@operator_sections
def vjp_and_value(func: Callable[..., Any]) -> DerivativeFunction:
    """Make ``x ↦ (vjp, c(x))`` for a function ``c`` of any shape.

    ``vjp`` is the pullback of :func:`autograd.core.make_vjp`.
    """
    return _derivative(vjp_and_value, _vjp_and_value, func)


@operator_sections
def grad_and_value(func: Callable[..., Any]) -> DerivativeFunction:
    """Make ``x ↦ (g, f(x))`` for a scalar function ``f``."""
    return _derivative(grad_and_value, _grad_and_value, func)


@operator_sections
def hessian_grad_and_value(func: Callable[..., Any]) -> DerivativeFunction:
    """Make ``x ↦ (H, g, f(x))`` for a scalar function ``f``.

    One forward pass through the gradient map, then one pullback per row of ``H``.
    """
    return _derivative(hessian_grad_and_value, _hessian_grad_and_value, func)


@operator_sections
def mtp_hessian_grad_and_value(func: Callable[..., Any]) -> DerivativeFunction:
    """Make ``x ↦ (mtp, H, g, f(x))`` for a scalar function ``f``.

    ``mtp`` is the pullback of the Hessian map, applied to the cotangent ``M``.
    """
    return _derivative(mtp_hessian_grad_and_value, _mtp_hessian_grad_and_value, func)


@operator_sections
def jacobian_and_value(func: Callable[..., Any]) -> DerivativeFunction:
    """Make ``x ↦ (J, c(x))`` for a vector function ``c``.

    One forward pass, then one pullback per row of ``J``.
    """
    return _derivative(jacobian_and_value, _jacobian_and_value, func)


@operator_sections
def mhp_jacobian_and_value(func: Callable[..., Any]) -> DerivativeFunction:
    """Make ``x ↦ (mhp, J, c(x))`` for a vector function ``c``.

    ``mhp`` is the pullback of the Jacobian map, applied to the cotangent ``M``.
    """
    return _derivative(mhp_jacobian_and_value, _mhp_jacobian_and_value, func)
