"""SymNum backend: derivatives generated symbolically as plain NumPy code.

``func`` is written with ``symnum.numpy`` and decorated with ``symnum.numpify(n)``
(or ``numpify((n,))``), which declares the shape of its argument. Each operator
differentiates the symbolic expression once, when it is applied, and generates a
NumPy function; calling that function involves no framework at all. The operators
check that ``x`` has the declared length, since the generated code would otherwise
read only its first entries.

SymNum defines the generated function in a temporary module, which only a forked
process can find again; a derivative function here pickles as the generated source
instead, and is compiled from it where it is unpickled (no symbolic work is redone).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import json
import math
from collections.abc import Callable
from typing import Any

import numpy as np

import diffops
from diffops import cache
from diffops.functions import DerivativeFunction, Runtime, as_output
from diffops.operators import operator_sections
from diffops.validation import check_callable, check_output_kind, check_real_output

FRAMEWORK = "symnum"

try:
    import symnum
    import sympy
    from symnum.array import SymbolicArray, named_array
except ImportError:
    AVAILABLE = False
else:
    AVAILABLE = True

__all__ = [
    "AVAILABLE",
    "FRAMEWORK",
    "SYMNUM_OPERATORS",
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


def _expression(func: Callable[..., Any], length: int) -> Any:
    """What ``func`` computes, as SymPy traces it: its value at a symbolic ``x``."""
    return func._sympy_func(named_array("x", (length,)))  # type: ignore[attr-defined]


def _cache_key(operator: str, length: int, expression: Any) -> str | None:
    """What the generated code computes: the key of the on-disk cache.

    The traced expression, not the function's name or source, so that a changed
    constant or closure is never served the old code; and the versions of what
    generated it. An array's entries are each written out by :func:`sympy.srepr`,
    whose numbers are exact: the array's own printed form rounds them to 15 digits.
    ``None``, and nothing cached, where SymNum's version cannot be told (it is not
    installed as a distribution, but found on the path).
    """
    try:
        symnum_version = importlib.metadata.version("symnum")  # no __version__
    except importlib.metadata.PackageNotFoundError:
        return None
    versions = {
        "diffops": diffops.__version__,  # this code's, installed or not
        "symnum": symnum_version,
        "sympy": sympy.__version__,
    }
    if isinstance(expression, SymbolicArray):
        written = {
            "shape": [int(size) for size in expression.shape],
            "entries": [sympy.srepr(entry) for entry in expression.flat],
        }
    else:
        written = {"entry": sympy.srepr(expression)}
    key = {"operator": operator, "n": length, "expression": written}
    return json.dumps({**key, "versions": versions}, sort_keys=True)


def _source(generated: Callable[..., Any]) -> str:
    """The code SymNum generated, kept after the first paragraph of its docstring."""
    source = (generated.__doc__ or "").partition("\n\n")[2]
    if f"def {generated.__name__}(" not in source:
        msg = "could not find the source SymNum generated; is symnum's version new?"
        raise RuntimeError(msg)
    return source


def _compile(source: str, name: str) -> Callable[..., Any]:
    """Define the generated function ``name`` from its source, as SymNum does."""
    namespace: dict[str, Any] = {"numpy": np, "math": math}
    exec(compile(source, f"<diffops symnum {name}>", "exec"), namespace)
    function: Callable[..., Any] = namespace[name]
    return function


# How the outputs reach the user.
#
# SymNum's generated code builds a new NumPy array for every output, but writes a
# derivative that is constant with SymPy's literals: integers, or float64 whatever
# the dtype of x. Which outputs those are is fixed by the code, so it is found once,
# when the code is compiled, and only they are converted on each call.


def _constant_outputs(
    generated: Callable[..., Any], length: int, operator: str
) -> dict[np.dtype[Any], tuple[int, ...]]:
    """For each dtype of ``x``, the indices of the outputs that come back in another.

    Or as a Python number (a constant written as a float), not a NumPy one. A complex
    output (SymPy's ``I`` in the expression, which code written from it keeps
    whatever ``x`` is) is refused here, as every backend refuses one: converted to
    ``x``'s dtype, its imaginary part would be dropped.
    """
    constant = {}
    with np.errstate(all="ignore"):
        for dtype in map(np.dtype, (np.float64, np.float32)):
            outputs = generated(np.ones(length, dtype))
            for output in outputs:
                if not callable(output):
                    check_real_output(np.asarray(output).dtype, operator)
            indices = tuple(
                index
                for index, output in enumerate(outputs)
                if not callable(output)
                and (
                    not isinstance(output, np.ndarray | np.generic)
                    or output.dtype != dtype
                )
            )
            if indices:
                constant[dtype] = indices
    return constant


def _evaluate(
    generated: Callable[..., Any],
    constant: dict[np.dtype[Any], tuple[int, ...]],
    x: np.ndarray,
) -> tuple[Any, ...]:
    outputs = generated(x)
    indices = constant.get(x.dtype)
    if indices is None:
        return outputs  # type: ignore[no-any-return]
    converted = list(outputs)
    for index in indices:
        converted[index] = as_output(np.asarray(converted[index], dtype=x.dtype))
    return tuple(converted)


def _scalar_vjp(
    gradient: Callable[[np.ndarray], tuple[Any, Any]], x: np.ndarray
) -> tuple[Callable[[np.ndarray], np.ndarray], Any]:
    """``(vjp, c(x))`` for a scalar ``c``, from its gradient: ``vjp(u) = u g``."""
    grad, value = gradient(x)
    return functools.partial(np.multiply, grad), value


def _apply_product(closure: Callable[[np.ndarray], Any], argument: np.ndarray) -> Any:
    product = closure(argument)
    if product.dtype != argument.dtype:  # a constant product, such as zero
        product = product.astype(argument.dtype)
    return product


RUNTIME = Runtime(None, _apply_product, backend="symnum")
"""How this backend's derivative functions run; generated code needs no lock."""

SYMNUM_OPERATORS = {
    "vjp_and_value": "vector_jacobian_product",
    "grad_and_value": "grad",
    "hessian_grad_and_value": "hessian",
    "mtp_hessian_grad_and_value": "matrix_tressian_product",
    "jacobian_and_value": "jacobian",
    "mhp_jacobian_and_value": "matrix_hessian_product",
}
"""The SymNum function that generates each operator's code."""


def _from_source(
    operator: str,
    source: str,
    function_name: str,
    length: int,
    from_gradient: bool = False,
) -> DerivativeFunction:
    """The derivative function SymNum generated as ``source``: how it unpickles.

    ``from_gradient``: the code is SymNum's gradient of a scalar ``c``, of which
    ``vjp_and_value`` is made (:func:`_scalar_vjp`).
    """
    generated = _compile(source, function_name)
    constant = _constant_outputs(generated, length, operator)
    evaluate = (
        functools.partial(_evaluate, generated, constant) if constant else generated
    )
    if from_gradient:
        evaluate = functools.partial(_scalar_vjp, evaluate)
    return DerivativeFunction(
        operator,
        evaluate,
        RUNTIME,
        (_from_source, (operator, source, function_name, length, from_gradient)),
        size=length,
        size_origin="the shape declared to symnum.numpify",
    )


_BOOLEANS: tuple[type, ...] = ()
"""SymPy's truth values: comparisons, ``true`` and ``false``, and their logic."""

if AVAILABLE:
    _BOOLEANS = (
        sympy.core.relational.Relational,
        sympy.logic.boolalg.BooleanAtom,
        sympy.logic.boolalg.BooleanFunction,
    )


def _derivative(
    operator: Callable[..., DerivativeFunction], func: Callable[..., Any]
) -> DerivativeFunction:
    name = operator.__name__
    check_callable(func, name)
    length = _declared_length(func, name)
    expression = _expression(func, length)
    entries = (  # snp.array of comparisons is a NumPy array of objects
        expression.flat
        if isinstance(expression, SymbolicArray | np.ndarray)
        else (expression,)
    )
    if any(isinstance(entry, _BOOLEANS) for entry in entries):
        check_real_output(np.dtype(bool), name)  # a comparison: refused, as elsewhere
    if not isinstance(expression, SymbolicArray | sympy.Expr):
        # As a list or a NumPy array of constants: SymPy cannot generate code from
        # it, and would say so from deep inside. (SymNum refuses None, a number, a
        # dict or a string itself, where the function is decorated.)
        msg = (
            f"{name} needs func to return an expression of x or a symnum array of "
            f"them (snp.array); it returned {type(expression).__name__}. Write a "
            "constant as an expression of x (0 * x[0] + c)."
        )
        raise TypeError(msg)
    shape = tuple(getattr(expression, "shape", ()))
    check_output_kind(shape, name)
    # SymNum's VJP takes no scalar c: its vjp(u) = u g, from SymNum's gradient.
    from_gradient = name == "vjp_and_value" and shape == ()
    key = _cache_key(name, length, expression)
    cached = None if key is None else cache.load(key)
    if cached is not None:
        with contextlib.suppress(Exception):  # a damaged entry: made again below
            return _from_source(
                name, cached["source"], cached["function"], length, from_gradient
            )
    generator = SYMNUM_OPERATORS["grad_and_value" if from_gradient else name]
    generated = getattr(symnum, generator)(func, return_aux=True)
    source = _source(generated)
    derivative = _from_source(name, source, generated.__name__, length, from_gradient)
    if key is not None:
        cache.store(key, {"source": source, "function": generated.__name__})
    return derivative


# The operators, in the order of DIFF_OPS.


@operator_sections
def vjp_and_value(func: Callable[..., Any]) -> DerivativeFunction:
    """Make ``x ↦ (vjp, c(x))`` for a function ``c`` of any shape.

    ``vjp(u) = u @ J`` with ``J[i, k] = ∂c[i]/∂x[k]``; ``u`` has the shape of ``c``'s
    values, ``(m,)`` for a vector, and the product shape ``(n,)``. For a scalar ``c``,
    which SymNum's own VJP does not take, the code is SymNum's gradient ``g``, and
    ``vjp(u) = u g``.
    """
    return _derivative(vjp_and_value, func)


@operator_sections
def grad_and_value(func: Callable[..., Any]) -> DerivativeFunction:
    """Make ``x ↦ (g, f(x))`` for a scalar function ``f``, ``g[i] = ∂f/∂x[i]``."""
    return _derivative(grad_and_value, func)


@operator_sections
def hessian_grad_and_value(func: Callable[..., Any]) -> DerivativeFunction:
    """Make ``x ↦ (H, g, f(x))`` for a scalar ``f``, ``H[i, j] = ∂²f/∂x[i]∂x[j]``."""
    return _derivative(hessian_grad_and_value, func)


@operator_sections
def mtp_hessian_grad_and_value(func: Callable[..., Any]) -> DerivativeFunction:
    """Make ``x ↦ (mtp, H, g, f(x))`` for a scalar function ``f``.

    ``mtp(M)[i] = Σ_jk M[j, k] ∂³f/∂x[i]∂x[j]∂x[k]`` for ``M`` of shape ``(n, n)``.
    """
    return _derivative(mtp_hessian_grad_and_value, func)


@operator_sections
def jacobian_and_value(func: Callable[..., Any]) -> DerivativeFunction:
    """Make ``x ↦ (J, c(x))`` for a vector function ``c``, ``J[i, k] = ∂c[i]/∂x[k]``."""
    return _derivative(jacobian_and_value, func)


@operator_sections
def mhp_jacobian_and_value(func: Callable[..., Any]) -> DerivativeFunction:
    """Make ``x ↦ (mhp, J, c(x))`` for a vector function ``c``.

    ``mhp(M)[k] = Σ_ij M[i, j] ∂²c[i]/∂x[j]∂x[k]`` for ``M`` of shape ``(m, n)``.
    """
    return _derivative(mhp_jacobian_and_value, func)
