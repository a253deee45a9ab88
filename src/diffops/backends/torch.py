"""PyTorch backend: operators built on :mod:`torch.func`.

``func`` is written with ``torch`` operations on a 1-D tensor. Each operator returns a
:class:`~diffops.functions.FrameworkDerivative`, a function of a tensor; the
registered function wrapper, :func:`return_numpy_arrays`, makes from it the
:class:`~diffops.DerivativeFunction` users call, which takes and returns NumPy arrays.
``x`` becomes a tensor of its own dtype (float64 stays float64) on the CPU by
default; to compute on another device, wrap with
``return_numpy_arrays(function, device="cuda")``.

Every operator is composed from :func:`torch.func.vjp` (reverse mode) and, for the
Hessian, :func:`torch.func.jacfwd` (forward over reverse). The products' state is
the pullback of the evaluation at ``x``.

PyTorch's forward-mode levels are process-wide, so threads differentiating at once
corrupt each other's; every evaluation and product holds one lock.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from diffops.functions import (
    Batching,
    DerivativeFunction,
    FrameworkDerivative,
    NumpyReturningFunction,
    Runtime,
    as_output,
)
from diffops.operators import OPERATORS, operator_sections
from diffops.validation import (
    as_plain_array,
    check_callable,
    check_scalar_output,
    check_vector_output,
    output_shape,
)

FRAMEWORK = "torch"

try:
    import torch
    import torch.func
except ImportError:
    AVAILABLE = False
else:
    AVAILABLE = True

__all__ = [
    "AVAILABLE",
    "FRAMEWORK",
    "Pullback",
    "grad_and_value",
    "hessian_grad_and_value",
    "jacobian_and_value",
    "mhp_jacobian_and_value",
    "mtp_hessian_grad_and_value",
    "return_numpy_arrays",
    "vjp_and_value",
]


class Pullback:
    """The linear map ``u ↦ u @ ∂y/∂x`` from :func:`torch.func.vjp`.

    Args:
        vjp: The function :func:`torch.func.vjp` returns, of a single primal.
        like: The output ``y``, whose dtype and device a cotangent takes.
    """

    __slots__ = ("device", "dtype", "vjp")

    def __init__(self, vjp: Callable[[Any], tuple[Any, ...]], like: Any) -> None:
        self.vjp = vjp
        self.dtype = like.dtype
        self.device = like.device

    def __call__(self, cotangent: Any) -> Any:
        """Apply the map to ``cotangent``, an array or tensor of ``y``'s shape."""
        tensor = torch.as_tensor(cotangent, dtype=self.dtype, device=self.device)
        (product,) = self.vjp(tensor)
        return product


def _vjp(func: Callable[..., Any], x: Any, *, has_aux: bool = False) -> Any:
    """:func:`torch.func.vjp`, typed loosely: 2 or 3 values by ``has_aux``."""
    return torch.func.vjp(func, x, has_aux=has_aux)


def _returning_tensor(func: Callable[..., Any], operator: str, x: Any) -> Any:
    """``func(x)``, which :func:`torch.func.vjp` needs to be a tensor, in x's dtype.

    In x's dtype, so that every output is, and a product's argument takes it.
    """
    value = func(x)
    if not isinstance(value, torch.Tensor):
        msg = (
            f"{operator} needs func to return a torch tensor; it returned "
            f"{type(value).__name__}."
        )
        raise TypeError(msg)
    return value if value.dtype == x.dtype else value.to(x.dtype)


def _grad_with_aux(
    func: Callable[..., Any], operator: str, x: Any
) -> tuple[Any, tuple[Any, Any]]:
    grad, value = _grad_and_value(func, x, operator)
    return grad, (grad, value)


def _hessian_and_aux(
    func: Callable[..., Any], x: Any, operator: str = "hessian_grad_and_value"
) -> tuple[Any, tuple[Any, Any]]:
    hessian, (grad, value) = torch.func.jacfwd(
        functools.partial(_grad_with_aux, func, operator), has_aux=True
    )(x)
    return hessian, (grad, value)


# The operators' computations, on tensors.


def _vjp_and_value(
    func: Callable[..., Any], x: Any, operator: str = "vjp_and_value"
) -> tuple[Pullback, Any]:
    value, pullback = _vjp(functools.partial(_returning_tensor, func, operator), x)
    check_vector_output(output_shape(value, operator), operator)
    return Pullback(pullback, value), value


def _grad_and_value(
    func: Callable[..., Any], x: Any, operator: str = "grad_and_value"
) -> tuple[Any, Any]:
    value, pullback = _vjp(functools.partial(_returning_tensor, func, operator), x)
    check_scalar_output(output_shape(value, operator), operator)
    (grad,) = pullback(torch.ones_like(value))
    return grad, value


def _hessian_grad_and_value(
    func: Callable[..., Any], x: Any, operator: str = "hessian_grad_and_value"
) -> tuple[Any, Any, Any]:
    hessian, (grad, value) = _hessian_and_aux(func, x, operator)
    return hessian, grad, value


def _mtp_hessian_grad_and_value(
    func: Callable[..., Any], x: Any, operator: str = "mtp_hessian_grad_and_value"
) -> tuple[Pullback, Any, Any, Any]:
    hessian, pullback, (grad, value) = _vjp(
        functools.partial(_hessian_and_aux, func, operator=operator), x, has_aux=True
    )
    return Pullback(pullback, hessian), hessian, grad, value


def _jacobian_and_value(
    func: Callable[..., Any], x: Any, operator: str = "jacobian_and_value"
) -> tuple[Any, Any]:
    value, pullback = _vjp(functools.partial(_returning_tensor, func, operator), x)
    check_vector_output(output_shape(value, operator), operator)
    basis = torch.eye(value.shape[0], dtype=value.dtype, device=value.device)
    # The pullback at e_i is row i of J; vmap pushes all m rows at once.
    (jacobian,) = torch.func.vmap(pullback)(basis)
    return jacobian, value


def _mhp_jacobian_and_value(
    func: Callable[..., Any], x: Any, operator: str = "mhp_jacobian_and_value"
) -> tuple[Pullback, Any, Any]:
    jacobian, pullback, value = _vjp(
        functools.partial(_jacobian_and_value, func, operator=operator),
        x,
        has_aux=True,
    )
    return Pullback(pullback, jacobian), jacobian, value


# How the outputs reach the user.


def _to_numpy(value: Any, dtype: np.dtype[Any]) -> Any:
    # A copy, as the tensor may be x itself or one that a pullback keeps.
    return as_output(np.array(value.detach().cpu().numpy(), dtype=dtype))


def _apply_product(pullback: Pullback, argument: np.ndarray) -> Any:
    return pullback(argument)


def _explain(error: BaseException) -> str | None:
    text = str(error)
    numpy_call = (
        "it calls a NumPy function on x (or converts x to a NumPy array), which "
        "PyTorch cannot differentiate: write it with torch operations "
        "(torch.sin, torch.sum, ...)."
    )
    if isinstance(error, RuntimeError) and (
        "numpy()" in text or "doesn't have storage" in text
    ):
        return numpy_call
    if isinstance(error, TypeError) and "unexpected keyword argument 'axis'" in text:
        return numpy_call  # NumPy's reductions call the tensor's with axis=
    if isinstance(error, RuntimeError) and "in-place operation" in text:
        return (
            "it assigns into x, or into a view of it, in place (x[i] = v), which "
            "PyTorch cannot differentiate: build a new tensor (torch.stack, "
            "torch.cat, torch.where)."
        )
    if isinstance(error, RuntimeError) and (
        "data-dependent control flow" in text or ".item()" in text
    ):
        return (
            "it uses a value computed from x in Python control flow or as a Python "
            "number, which torch.func cannot differentiate: write it with "
            "torch.where."
        )
    return None


def _arrays(traced: FrameworkDerivative, x: Any) -> tuple[Any, ...]:
    return tuple(traced(x)[1:])  # the outputs after the product's state


def _product(traced: FrameworkDerivative, x: Any, argument: Any) -> Any:
    return traced(x)[0](argument)


def _evaluate_batch(
    batched: Callable[[Any], tuple[Any, ...]], device: Any, product: bool, X: Any
) -> tuple[Any, ...]:
    outputs = batched(_tensor(X, device))
    # torch.func.vmap returns tensors only, so a batch of products keeps its points
    # and computes the product from them when applied.
    return (X.copy(), *outputs) if product else tuple(outputs)


def _apply_batch(
    traced: FrameworkDerivative,
    device: Any,
    points: np.ndarray,
    argument: np.ndarray,
    is_shared: bool,
) -> Any:
    in_dims = (0, None) if is_shared else (0, 0)
    batched = torch.func.vmap(functools.partial(_product, traced), in_dims=in_dims)
    return batched(_tensor(points, device), _tensor(argument, device))


def _batching(derivative: DerivativeFunction) -> Batching:
    """:func:`torch.func.vmap` of the derivative function and of its products."""
    traced = derivative.traced
    assert isinstance(traced, FrameworkDerivative)
    assert isinstance(derivative.evaluate, _Evaluate)
    device = derivative.evaluate.device
    if OPERATORS[derivative.operator].product is None:
        batched = torch.func.vmap(traced)
        return Batching(functools.partial(_evaluate_batch, batched, device, False))
    batched = torch.func.vmap(functools.partial(_arrays, traced))
    return Batching(
        functools.partial(_evaluate_batch, batched, device, True),
        functools.partial(_apply_batch, traced, device),
    )


RUNTIME = Runtime(
    _to_numpy,
    _apply_product,
    threading.RLock(),
    backend="torch",
    explain=_explain,
    batch=_batching,
)
"""How this backend's derivative functions run, with a lock that serialises tracing."""


def _derivative(
    operator: Callable[..., FrameworkDerivative],
    transform: Callable[..., Any],
    func: Callable[..., Any],
) -> FrameworkDerivative:
    check_callable(func, operator.__name__)
    return FrameworkDerivative(operator.__name__, transform, func)


# The operators, in the order of DIFF_OPS.


@operator_sections
def vjp_and_value(func: Callable[..., Any]) -> FrameworkDerivative:
    """Make ``x ↦ (vjp, c(x))`` for a vector function ``c``, on tensors.

    ``vjp`` is the pullback of :func:`torch.func.vjp`.
    """
    return _derivative(vjp_and_value, _vjp_and_value, func)


@operator_sections
def grad_and_value(func: Callable[..., Any]) -> FrameworkDerivative:
    """Make ``x ↦ (g, f(x))`` for a scalar function ``f``, on tensors."""
    return _derivative(grad_and_value, _grad_and_value, func)


@operator_sections
def hessian_grad_and_value(func: Callable[..., Any]) -> FrameworkDerivative:
    """Make ``x ↦ (H, g, f(x))`` for a scalar function ``f``, on tensors.

    Forward over reverse: :func:`torch.func.jacfwd` of the gradient.
    """
    return _derivative(hessian_grad_and_value, _hessian_grad_and_value, func)


@operator_sections
def mtp_hessian_grad_and_value(func: Callable[..., Any]) -> FrameworkDerivative:
    """Make ``x ↦ (mtp, H, g, f(x))`` for a scalar function ``f``, on tensors.

    ``mtp`` is the pullback of the Hessian map, applied to the cotangent ``M``.
    """
    return _derivative(mtp_hessian_grad_and_value, _mtp_hessian_grad_and_value, func)


@operator_sections
def jacobian_and_value(func: Callable[..., Any]) -> FrameworkDerivative:
    """Make ``x ↦ (J, c(x))`` for a vector function ``c``, on tensors.

    One forward pass, then the ``m`` rows pulled back together with
    :func:`torch.func.vmap`.
    """
    return _derivative(jacobian_and_value, _jacobian_and_value, func)


@operator_sections
def mhp_jacobian_and_value(func: Callable[..., Any]) -> FrameworkDerivative:
    """Make ``x ↦ (mhp, J, c(x))`` for a vector function ``c``, on tensors.

    ``mhp`` is the pullback of the Jacobian map, applied to the cotangent ``M``.
    """
    return _derivative(mhp_jacobian_and_value, _mhp_jacobian_and_value, func)


# The function wrapper.


def _tensor(array: np.ndarray, device: Any) -> Any:
    tensor = torch.from_numpy(array)
    return tensor if device is None else tensor.to(device)


class _Evaluate:
    """``x ↦ function(x as a tensor on device)``: what a derivative function calls."""

    __slots__ = ("device", "function")

    def __init__(self, function: Callable[[Any], tuple[Any, ...]], device: Any) -> None:
        self.function = function
        self.device = device

    def __call__(self, x: np.ndarray) -> Any:
        return self.function(_tensor(x, self.device))


def _to_framework(device: Any, value: Any) -> Any:
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(as_plain_array(value))
    if device is not None and isinstance(value, torch.Tensor):
        value = value.to(device)
    return value


def _output_to_numpy(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return np.array(value.detach().cpu().numpy())
    return value


def return_numpy_arrays(
    function: Callable[..., Any], device: Any = None
) -> DerivativeFunction | NumpyReturningFunction:
    """Make a torch function take and return NumPy arrays.

    The function wrapper of the ``torch`` backend.

    Args:
        function: A function of tensors, such as a derivative function made by this
            module's operators.
        device: Where to compute: a :class:`torch.device` or its name, such as
            ``"cuda"``; ``None`` for the CPU.

    Returns:
        For a derivative function, the :class:`~diffops.DerivativeFunction` users
        call; for any other function, a
        :class:`~diffops.functions.NumpyReturningFunction`.
    """
    device = None if device is None else torch.device(device)
    rebuild = (return_numpy_arrays, (function, device))
    if isinstance(function, FrameworkDerivative):
        return DerivativeFunction(
            function.operator,
            _Evaluate(function, device),
            RUNTIME,
            rebuild,
            func=function.func,
            traced=function,
        )
    return NumpyReturningFunction(
        function,
        function,
        functools.partial(_to_framework, device),
        _output_to_numpy,
        rebuild,
    )
