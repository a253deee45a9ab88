"""PyTorch backend: operators built on :mod:`torch.func`.

``func`` is written with ``torch`` operations on a 1-D tensor. Each operator returns a
function of ``x`` that computes on tensors; the registered function wrapper,
:func:`return_numpy_arrays`, makes it take and return NumPy arrays. ``x`` becomes a
tensor of its own dtype (float64 stays float64) on the CPU by default; to compute on
another device, wrap with ``return_numpy_arrays(function, device="cuda")``.

Every operator is composed from :func:`torch.func.vjp` (reverse mode) and, for the
Hessian, :func:`torch.func.jacfwd` (forward over reverse). The product callables
keep the pullback of the evaluation at ``x``.

PyTorch's forward-mode levels are process-wide, so threads differentiating at once
corrupt each other's; the work of every operator holds one lock.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from diffops.functions import (
    PRODUCT_NAMES,
    DerivativeFunction,
    bind_product,
    operator_sections,
)
from diffops.validation import (
    as_input_vector,
    check_scalar_output,
    check_vector_output,
    check_vector_shape,
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
    "NumpyReturningFunction",
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
    """The linear map ``u ↦ u @ ∂y/∂x`` from :func:`torch.func.vjp`, detupled.

    Args:
        vjp: The function :func:`torch.func.vjp` returns, of a single primal.
    """

    __slots__ = ("vjp",)

    def __init__(self, vjp: Callable[[Any], tuple[Any, ...]]) -> None:
        self.vjp = vjp

    def __call__(self, cotangent: Any) -> Any:
        """Apply the map to ``cotangent``, a tensor of the output's shape."""
        (product,) = self.vjp(cotangent)
        return product


_TRANSFORM_LOCK = threading.RLock()


def _locked(transform: Callable[..., Any], func: Callable[..., Any], x: Any) -> Any:
    with _TRANSFORM_LOCK:
        return transform(func, x)


def _vjp(func: Callable[..., Any], x: Any, *, has_aux: bool = False) -> Any:
    """:func:`torch.func.vjp`, typed loosely: 2 or 3 values by ``has_aux``."""
    return torch.func.vjp(func, x, has_aux=has_aux)


def _returning_tensor(func: Callable[..., Any], operator: str, x: Any) -> Any:
    """``func(x)``, which :func:`torch.func.vjp` needs to be a tensor."""
    value = func(x)
    if not isinstance(value, torch.Tensor):
        msg = (
            f"{operator} needs func to return a torch tensor; it returned "
            f"{type(value).__name__}."
        )
        raise TypeError(msg)
    return value


def _as_tensor_vector(x: Any) -> Any:
    """``x`` as a 1-D floating-point tensor; NumPy arrays are shared, not copied."""
    if isinstance(x, torch.Tensor):
        check_vector_shape(tuple(x.shape))
        if not x.is_floating_point():
            x = x.to(torch.float64)
        return x
    return torch.from_numpy(as_input_vector(x))


def _grad_and_value(
    func: Callable[..., Any], x: Any, operator: str = "grad_and_value"
) -> tuple[Any, Any]:
    value, pullback = _vjp(functools.partial(_returning_tensor, func, operator), x)
    check_scalar_output(output_shape(value, operator), operator)
    (grad,) = pullback(torch.ones_like(value))
    return grad, value


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


def _hessian_grad_and_value(func: Callable[..., Any], x: Any) -> tuple[Any, Any, Any]:
    hessian, (grad, value) = _hessian_and_aux(func, x)
    return hessian, grad, value


def _mtp_hessian_grad_and_value(
    func: Callable[..., Any], x: Any
) -> tuple[Pullback, Any, Any, Any]:
    hessian, pullback, (grad, value) = _vjp(
        functools.partial(
            _hessian_and_aux, func, operator="mtp_hessian_grad_and_value"
        ),
        x,
        has_aux=True,
    )
    return Pullback(pullback), hessian, grad, value


def _jacobian_and_value(
    func: Callable[..., Any], x: Any, operator: str = "jacobian_and_value"
) -> tuple[Any, Any]:
    value, pullback = _vjp(functools.partial(_returning_tensor, func, operator), x)
    check_vector_output(output_shape(value, operator), operator)
    basis = torch.eye(value.shape[0], dtype=value.dtype, device=value.device)
    # The pullback at e_i is row i of J; vmap pushes all m rows at once.
    (jacobian,) = torch.func.vmap(pullback)(basis)
    return jacobian, value


def _jacobian_with_aux(func: Callable[..., Any], x: Any) -> tuple[Any, Any]:
    return _jacobian_and_value(func, x, "mhp_jacobian_and_value")


def _mhp_jacobian_and_value(
    func: Callable[..., Any], x: Any
) -> tuple[Pullback, Any, Any]:
    jacobian, pullback, value = _vjp(
        functools.partial(_jacobian_with_aux, func), x, has_aux=True
    )
    return Pullback(pullback), jacobian, value


def _vjp_and_value(func: Callable[..., Any], x: Any) -> tuple[Pullback, Any]:
    operator = "vjp_and_value"
    value, pullback = _vjp(functools.partial(_returning_tensor, func, operator), x)
    check_vector_output(output_shape(value, operator), operator)
    return Pullback(pullback), value


@operator_sections
def vjp_and_value(func: Callable[..., Any]) -> DerivativeFunction:
    """Make ``x ↦ (vjp, c(x))`` for a vector function ``c``.

    ``vjp(u) = u @ J`` with ``J[i, k] = ∂c[i]/∂x[k]``; ``u`` has shape ``(m,)`` and the
    product shape ``(n,)``.
    """
    return DerivativeFunction(
        "vjp_and_value",
        functools.partial(_locked, _vjp_and_value),
        func,
        _as_tensor_vector,
    )


@operator_sections
def grad_and_value(func: Callable[..., Any]) -> DerivativeFunction:
    """Make ``x ↦ (g, f(x))`` for a scalar function ``f``, ``g[i] = ∂f/∂x[i]``."""
    return DerivativeFunction(
        "grad_and_value",
        functools.partial(_locked, _grad_and_value),
        func,
        _as_tensor_vector,
    )


@operator_sections
def hessian_grad_and_value(func: Callable[..., Any]) -> DerivativeFunction:
    """Make ``x ↦ (H, g, f(x))`` for a scalar ``f``, ``H[i, j] = ∂²f/∂x[i]∂x[j]``.

    Forward over reverse: :func:`torch.func.jacfwd` of the gradient.
    """
    return DerivativeFunction(
        "hessian_grad_and_value",
        functools.partial(_locked, _hessian_grad_and_value),
        func,
        _as_tensor_vector,
    )


@operator_sections
def mtp_hessian_grad_and_value(func: Callable[..., Any]) -> DerivativeFunction:
    """Make ``x ↦ (mtp, H, g, f(x))`` for a scalar function ``f``.

    ``mtp(M)[i] = Σ_jk M[j, k] ∂³f/∂x[i]∂x[j]∂x[k]`` for ``M`` of shape ``(n, n)``:
    the pullback of the Hessian map with cotangent ``M``.
    """
    return DerivativeFunction(
        "mtp_hessian_grad_and_value",
        functools.partial(_locked, _mtp_hessian_grad_and_value),
        func,
        _as_tensor_vector,
    )


@operator_sections
def jacobian_and_value(func: Callable[..., Any]) -> DerivativeFunction:
    """Make ``x ↦ (J, c(x))`` for a vector function ``c``, ``J[i, k] = ∂c[i]/∂x[k]``.

    One forward pass, then the ``m`` rows pulled back together with
    :func:`torch.func.vmap`.
    """
    return DerivativeFunction(
        "jacobian_and_value",
        functools.partial(_locked, _jacobian_and_value),
        func,
        _as_tensor_vector,
    )


@operator_sections
def mhp_jacobian_and_value(func: Callable[..., Any]) -> DerivativeFunction:
    """Make ``x ↦ (mhp, J, c(x))`` for a vector function ``c``.

    ``mhp(M)[k] = Σ_ij M[i, j] ∂²c[i]/∂x[j]∂x[k]`` for ``M`` of shape ``(m, n)``: the
    pullback of the Jacobian map with cotangent ``M``.
    """
    return DerivativeFunction(
        "mhp_jacobian_and_value",
        functools.partial(_locked, _mhp_jacobian_and_value),
        func,
        _as_tensor_vector,
    )


def _to_numpy(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return value


def _apply_pullback(state: tuple[Pullback, Any], argument: np.ndarray) -> np.ndarray:
    pullback, like = state
    cotangent = torch.as_tensor(argument, dtype=like.dtype, device=like.device)
    with _TRANSFORM_LOCK:
        result: np.ndarray = pullback(cotangent).detach().cpu().numpy()
    return result


class NumpyReturningFunction:
    """A torch function that takes NumPy arrays and returns NumPy arrays.

    Array arguments become tensors of the same dtype on ``device`` (the CPU unless
    given); tensor outputs come back as NumPy arrays. A :class:`Pullback` output comes
    back as a :class:`~diffops.BoundProduct`. Pickles as ``function`` and ``device``.

    Args:
        function: A function of tensors, such as a derivative function made by this
            module's operators.
        device: Where to compute: a :class:`torch.device` or its name, such as
            ``"cuda"``; ``None`` for the CPU.
    """

    def __init__(self, function: Callable[..., Any], device: Any = None) -> None:
        if not callable(function):
            msg = f"function must be callable; got {type(function).__name__}."
            raise TypeError(msg)
        self.function = function
        self.device = None if device is None else torch.device(device)
        self.name = function.name if isinstance(function, DerivativeFunction) else ""
        self._takes_vector = isinstance(function, DerivativeFunction)
        functools.update_wrapper(self, function, updated=())

    def __reduce__(self) -> tuple[Any, ...]:
        return (return_numpy_arrays, (self.function, self.device))

    def _as_tensor(self, value: Any) -> Any:
        if isinstance(value, np.ndarray):
            value = torch.from_numpy(value)
        if self.device is not None and isinstance(value, torch.Tensor):
            value = value.to(self.device)
        return value

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the function on tensors made from the arguments; return NumPy."""
        if not self._takes_vector:
            output = self.function(*map(self._as_tensor, args), **kwargs)
            if type(output) is tuple:
                return tuple(map(_to_numpy, output))
            return _to_numpy(output)
        (x,) = args
        x = as_input_vector(x)
        output = self.function(self._as_tensor(x))
        if self.name not in PRODUCT_NAMES:
            return tuple(map(_to_numpy, output))
        pullback, like, *_ = output
        product = bind_product(_apply_pullback, (pullback, like), like, self, x)
        return (product, *map(_to_numpy, output[1:]))

    def __repr__(self) -> str:
        device = "cpu" if self.device is None else str(self.device)
        return f"<torch function {self.function!r} on {device} returning NumPy arrays>"


def return_numpy_arrays(
    function: Callable[..., Any], device: Any = None
) -> NumpyReturningFunction:
    """Make a torch function take and return NumPy arrays.

    The function wrapper of the ``torch`` backend.

    Args:
        function: A function of tensors, such as a derivative function made by this
            module's operators.
        device: Where to compute: a :class:`torch.device` or its name, such as
            ``"cuda"``; ``None`` for the CPU.

    Returns:
        The function, taking and returning NumPy arrays.
    """
    return NumpyReturningFunction(function, device)
