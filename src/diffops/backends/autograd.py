"""Autograd backend: reverse-mode operators for ``autograd.numpy`` functions.

Every operator is built from one primitive, :func:`autograd.core.make_vjp`, which
returns the pullback ``u ↦ u @ ∂y/∂x`` and the value. Second and third orders apply
it to functions that themselves call it, so that the outer pullback differentiates
through the inner one. Only the output being differentiated is traced: the lower
orders are carried out as plain values, so a pullback never pushes zero cotangents
back through the graph of ``f`` (which doubles the cost of each Hessian row, and of
each ``mtp`` and ``mhp``, when done naively). Autograd has no function wrapper: its
functions take and return NumPy arrays already.

Autograd numbers nested traces with one process-wide counter, which threads running
at once would corrupt, so the traced work of every operator holds one lock.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from diffops.functions import DerivativeFunction, operator_sections
from diffops.validation import (
    as_input_vector,
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


def _basis(size: int, like: Any) -> np.ndarray:
    return np.eye(size, dtype=vspace(like).dtype)


def _grad_and_value(
    func: Callable[..., Any], x: Any, operator: str = "grad_and_value"
) -> tuple[Any, Any]:
    pullback, value = make_vjp(func, x)
    check_scalar_output(output_shape(value, operator), operator)
    return pullback(vspace(value).ones()), value


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
    operator: str,
    func: Callable[..., Any],
    x: Any,
) -> tuple[Any, ...]:
    """Pullback of ``transform``'s first output, then all of its outputs.

    Returns ``(pullback, first, *others)``, the order a product operator returns.
    """
    rest: list[Any] = []
    traced = functools.partial(_first_traced, transform, func, operator, rest)
    pullback, first = make_vjp(traced, x)
    return (pullback, first, *rest)


def _hessian_grad_and_value(
    func: Callable[..., Any], x: Any, operator: str = "hessian_grad_and_value"
) -> tuple[Any, Any, Any]:
    pullback, grad, value = _pullback_of_first(_grad_and_value, operator, func, x)
    # The pullback of the gradient map at e_i is row i of H.
    hessian = anp.stack([pullback(row) for row in _basis(x.shape[0], grad)])
    return hessian, grad, value


def _jacobian_and_value(
    func: Callable[..., Any], x: Any, operator: str = "jacobian_and_value"
) -> tuple[Any, Any]:
    pullback, value = make_vjp(func, x)
    check_vector_output(output_shape(value, operator), operator)
    # The pullback at e_i is row i of J.
    jacobian = anp.stack([pullback(row) for row in _basis(value.shape[0], value)])
    return jacobian, value


_TRACE_LOCK = threading.RLock()


def _locked(transform: Callable[..., Any], func: Callable[..., Any], x: Any) -> Any:
    with _TRACE_LOCK:
        return transform(func, x)


def _apply_pullback(pullback: Callable[[Any], Any], argument: np.ndarray) -> Any:
    with _TRACE_LOCK:
        return pullback(argument)


def _vjp_and_value(func: Callable[..., Any], x: np.ndarray) -> tuple[Any, Any]:
    pullback, value = make_vjp(func, x)
    check_vector_output(output_shape(value, "vjp_and_value"), "vjp_and_value")
    return pullback, value


def _operator(
    name: str,
    transform: Callable[..., Any],
    func: Callable[..., Any],
    product: bool = False,
) -> DerivativeFunction:
    return DerivativeFunction(
        name,
        functools.partial(_locked, transform),
        func,
        as_input_vector,
        _apply_pullback if product else None,
    )


@operator_sections
def vjp_and_value(func: Callable[..., Any]) -> DerivativeFunction:
    """Make ``x ↦ (vjp, c(x))`` for a vector function ``c``.

    ``vjp(u) = u @ J`` with ``J[i, k] = ∂c[i]/∂x[k]``; ``u`` has shape ``(m,)`` and the
    product shape ``(n,)``.
    """
    return _operator("vjp_and_value", _vjp_and_value, func, product=True)


@operator_sections
def grad_and_value(func: Callable[..., Any]) -> DerivativeFunction:
    """Make ``x ↦ (g, f(x))`` for a scalar function ``f``, ``g[i] = ∂f/∂x[i]``."""
    return _operator("grad_and_value", _grad_and_value, func)


@operator_sections
def hessian_grad_and_value(func: Callable[..., Any]) -> DerivativeFunction:
    """Make ``x ↦ (H, g, f(x))`` for a scalar ``f``, ``H[i, j] = ∂²f/∂x[i]∂x[j]``.

    One forward pass through the gradient map, then one pullback per row of ``H``.
    """
    return _operator("hessian_grad_and_value", _hessian_grad_and_value, func)


@operator_sections
def mtp_hessian_grad_and_value(func: Callable[..., Any]) -> DerivativeFunction:
    """Make ``x ↦ (mtp, H, g, f(x))`` for a scalar function ``f``.

    ``mtp(M)[i] = Σ_jk M[j, k] ∂³f/∂x[i]∂x[j]∂x[k]`` for ``M`` of shape ``(n, n)``:
    the pullback of the Hessian map with cotangent ``M``.
    """
    name = "mtp_hessian_grad_and_value"
    transform = functools.partial(_pullback_of_first, _hessian_grad_and_value, name)
    return _operator(name, transform, func, product=True)


@operator_sections
def jacobian_and_value(func: Callable[..., Any]) -> DerivativeFunction:
    """Make ``x ↦ (J, c(x))`` for a vector function ``c``, ``J[i, k] = ∂c[i]/∂x[k]``.

    One forward pass, then one pullback per row of ``J``.
    """
    return _operator("jacobian_and_value", _jacobian_and_value, func)


@operator_sections
def mhp_jacobian_and_value(func: Callable[..., Any]) -> DerivativeFunction:
    """Make ``x ↦ (mhp, J, c(x))`` for a vector function ``c``.

    ``mhp(M)[k] = Σ_ij M[i, j] ∂²c[i]/∂x[j]∂x[k]`` for ``M`` of shape ``(m, n)``: the
    pullback of the Jacobian map with cotangent ``M``.
    """
    name = "mhp_jacobian_and_value"
    transform = functools.partial(_pullback_of_first, _jacobian_and_value, name)
    return _operator(name, transform, func, product=True)
