"""SymNum backend: derivatives generated symbolically as plain NumPy code.

``func`` is written with ``symnum.numpy`` and decorated with ``symnum.numpify(n)``
(or ``numpify((n,))``), which declares the shape of its argument. Each operator
differentiates the symbolic expression once, when it is applied, and generates a
NumPy function; calling that function involves no framework at all. The operators
check that ``x`` has the declared length, since the generated code would otherwise
read only its first entries.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np

from diffops.functions import BoundProduct, DerivativeFunction
from diffops.validation import (
    as_input_vector,
    check_scalar_output,
    check_vector_output,
)

FRAMEWORK = "symnum"

try:
    import symnum
    from symnum.array import named_array
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


def _declared_length(func: Callable[..., Any], operator: str) -> int:
    """Length ``n`` that ``symnum.numpify`` declared for the argument of ``func``."""
    shapes = getattr(func, "_arg_shapes", None)
    if shapes is None or not hasattr(func, "_sympy_func"):
        msg = (
            f"{operator} with the symnum backend needs func to be decorated with "
            "symnum.numpify, giving the shape of its argument, for example "
            f"@symnum.numpify(3); {getattr(func, '__name__', func)!r} is not."
        )
        raise TypeError(msg)
    if len(shapes) != 1:
        msg = (
            f"{operator} needs func to take one argument x; symnum.numpify declared "
            f"{len(shapes)} argument shapes {tuple(shapes)}."
        )
        raise TypeError(msg)
    shape = (shapes[0],) if isinstance(shapes[0], int) else tuple(shapes[0])
    if len(shape) != 1:
        msg = (
            f"{operator} needs x to be 1-D: symnum.numpify must declare a shape (n,) "
            f"or n; it declared {shape}."
        )
        raise ValueError(msg)
    return int(shape[0])


def _output_shape(func: Callable[..., Any], length: int) -> tuple[int, ...]:
    value = func._sympy_func(named_array("x", (length,)))  # type: ignore[attr-defined]
    return tuple(getattr(value, "shape", ()))


def _as_declared_vector(length: int, x: Any) -> np.ndarray:
    vector = as_input_vector(x)
    if vector.shape[0] != length:  # the generated code would read x[:length] only
        msg = (
            f"x must have shape ({length},), the shape declared to symnum.numpify; "
            f"got shape {vector.shape}."
        )
        raise ValueError(msg)
    return vector


def _apply_closure(closure: Callable[[Any], Any], argument: np.ndarray) -> np.ndarray:
    return np.asarray(closure(argument))


def _evaluate(product: str | None, generated: Callable[..., Any], x: Any) -> Any:
    outputs = generated(x)
    if product is None:
        return outputs
    closure, *rest = outputs
    return (BoundProduct(_apply_closure, closure, np.shape(rest[0]), product), *rest)


def _generate(
    operator: str,
    symnum_operator: str,
    product: str | None,
    func: Callable[..., Any],
) -> DerivativeFunction:
    length = _declared_length(func, operator)
    output_shape = _output_shape(func, length)
    if operator in (
        "grad_and_value",
        "hessian_grad_and_value",
        "mtp_hessian_grad_and_value",
    ):
        check_scalar_output(output_shape, operator)
    else:
        check_vector_output(output_shape, operator)
    generated = getattr(symnum, symnum_operator)(func, return_aux=True)
    return DerivativeFunction(
        operator,
        functools.partial(_evaluate, product),
        generated,
        functools.partial(_as_declared_vector, length),
    )


def vjp_and_value(func: Callable[..., Any]) -> DerivativeFunction:
    """Make ``x ↦ (vjp, c(x))`` for a vector function ``c``.

    ``vjp(u) = u @ J`` with ``J[i, k] = ∂c[i]/∂x[k]``; ``u`` has shape ``(m,)`` and the
    product shape ``(n,)``.
    """
    return _generate("vjp_and_value", "vector_jacobian_product", "vjp", func)


def grad_and_value(func: Callable[..., Any]) -> DerivativeFunction:
    """Make ``x ↦ (g, f(x))`` for a scalar function ``f``, ``g[i] = ∂f/∂x[i]``."""
    return _generate("grad_and_value", "grad", None, func)


def hessian_grad_and_value(func: Callable[..., Any]) -> DerivativeFunction:
    """Make ``x ↦ (H, g, f(x))`` for a scalar ``f``, ``H[i, j] = ∂²f/∂x[i]∂x[j]``."""
    return _generate("hessian_grad_and_value", "hessian", None, func)


def mtp_hessian_grad_and_value(func: Callable[..., Any]) -> DerivativeFunction:
    """Make ``x ↦ (mtp, H, g, f(x))`` for a scalar function ``f``.

    ``mtp(M)[i] = Σ_jk M[j, k] ∂³f/∂x[i]∂x[j]∂x[k]`` for ``M`` of shape ``(n, n)``.
    """
    return _generate(
        "mtp_hessian_grad_and_value", "matrix_tressian_product", "mtp", func
    )


def jacobian_and_value(func: Callable[..., Any]) -> DerivativeFunction:
    """Make ``x ↦ (J, c(x))`` for a vector function ``c``, ``J[i, k] = ∂c[i]/∂x[k]``."""
    return _generate("jacobian_and_value", "jacobian", None, func)


def mhp_jacobian_and_value(func: Callable[..., Any]) -> DerivativeFunction:
    """Make ``x ↦ (mhp, J, c(x))`` for a vector function ``c``.

    ``mhp(M)[k] = Σ_ij M[i, j] ∂²c[i]/∂x[j]∂x[k]`` for ``M`` of shape ``(m, n)``.
    """
    return _generate("mhp_jacobian_and_value", "matrix_hessian_product", "mhp", func)
