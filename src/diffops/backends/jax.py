"""JAX backend: operators traced by JAX, compiled by the ``jax`` function wrapper.

Each operator returns a function of ``x`` written in JAX primitives. The registered
function wrappers turn it into what users call: :func:`jit_and_return_numpy_arrays`
(backend ``jax``) compiles it with :func:`jax.jit`, and :func:`return_numpy_arrays`
(backend ``jax_nojit``) runs it op by op. Both return NumPy arrays, and both turn the
pullbacks returned by the product operators into :class:`~diffops.BoundProduct`
callables; with ``jax`` those are compiled too, so that ``mtp(M)`` is one call of
compiled code that reuses the residuals kept from the evaluation at ``x``.

JAX computes in float32 unless 64-bit mode is on. The wrappers never switch it on;
they warn once, saying how to, when a float64 input would be computed in float32.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from diffops.functions import (
    PRODUCT_NAMES,
    BoundProduct,
    DerivativeFunction,
    operator_sections,
)
from diffops.validation import (
    as_input_vector,
    check_scalar_output,
    check_vector_output,
    check_vector_shape,
    output_shape,
)

FRAMEWORK = "jax"

try:
    import jax
    import jax.numpy as jnp
except ImportError:
    AVAILABLE = False
else:
    AVAILABLE = True

__all__ = [
    "AVAILABLE",
    "FRAMEWORK",
    "NumpyReturningDerivative",
    "NumpyReturningFunction",
    "grad_and_value",
    "hessian_grad_and_value",
    "jacobian_and_value",
    "jit_and_return_numpy_arrays",
    "mhp_jacobian_and_value",
    "mtp_hessian_grad_and_value",
    "return_numpy_arrays",
    "vjp_and_value",
]


# The pullbacks of jax.vjp are jax.tree_util.Partial objects: pytrees whose leaves are
# the residuals of the forward pass, so they can leave one compiled function and enter
# another. They return a tuple with one cotangent per primal; _apply_pullback detupled.
Pullback = Any


def _as_traced_vector(x: Any) -> Any:
    x = jnp.asarray(x)
    check_vector_shape(x.shape)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        if not jnp.issubdtype(x.dtype, jnp.integer):
            msg = f"x must be a 1-D array of real numbers; got dtype {x.dtype}."
            raise TypeError(msg)
        x = x.astype(jnp.result_type(float))
    return x


def _grad_and_value(
    func: Callable[..., Any], x: Any, operator: str = "grad_and_value"
) -> tuple[Any, Any]:
    value, pullback = jax.vjp(func, x)
    check_scalar_output(output_shape(value, operator), operator)
    (grad,) = pullback(jnp.ones_like(value))
    return grad, value


def _hessian_and_aux(
    func: Callable[..., Any], x: Any, operator: str = "hessian_grad_and_value"
) -> tuple[Any, tuple[Any, Any]]:
    grad, pushforward, value = jax.linearize(
        functools.partial(_grad_and_value, func, operator=operator), x, has_aux=True
    )
    # Row i of the result is H @ e_i, column i of H; H is symmetric.
    hessian = jax.vmap(pushforward)(jnp.eye(x.shape[0], dtype=grad.dtype))
    return hessian, (grad, value)


def _hessian_grad_and_value(func: Callable[..., Any], x: Any) -> tuple[Any, Any, Any]:
    hessian, (grad, value) = _hessian_and_aux(func, x)
    return hessian, grad, value


def _mtp_hessian_grad_and_value(
    func: Callable[..., Any], x: Any
) -> tuple[Pullback, Any, Any, Any]:
    hessian, pullback, (grad, value) = jax.vjp(
        functools.partial(
            _hessian_and_aux, func, operator="mtp_hessian_grad_and_value"
        ),
        x,
        has_aux=True,
    )
    return pullback, hessian, grad, value


def _jacobian_and_value(
    func: Callable[..., Any], x: Any, operator: str = "jacobian_and_value"
) -> tuple[Any, Any]:
    value_shape = output_shape(jax.eval_shape(func, x), operator)
    check_vector_output(value_shape, operator)
    (m,), (n,) = value_shape, x.shape
    if m <= n:
        value, pullback = jax.vjp(func, x)
        (jacobian,) = jax.vmap(pullback)(jnp.eye(m, dtype=value.dtype))
    else:
        value, pushforward = jax.linearize(func, x)
        jacobian = jax.vmap(pushforward, out_axes=1)(jnp.eye(n, dtype=x.dtype))
    return jacobian, value


def _mhp_jacobian_and_value(
    func: Callable[..., Any], x: Any
) -> tuple[Pullback, Any, Any]:
    jacobian, pullback, value = jax.vjp(
        functools.partial(_jacobian_and_value, func, operator="mhp_jacobian_and_value"),
        x,
        has_aux=True,
    )
    return pullback, jacobian, value


def _vjp_and_value(func: Callable[..., Any], x: Any) -> tuple[Pullback, Any]:
    value, pullback = jax.vjp(func, x)
    check_vector_output(output_shape(value, "vjp_and_value"), "vjp_and_value")
    return pullback, value


@operator_sections
def vjp_and_value(func: Callable[..., Any]) -> DerivativeFunction:
    """Make ``x ↦ (vjp, c(x))`` for a vector function ``c``.

    ``vjp(u) = u @ J`` with ``J[i, k] = ∂c[i]/∂x[k]``; ``u`` has shape ``(m,)`` and the
    product shape ``(n,)``.
    """
    return DerivativeFunction("vjp_and_value", _vjp_and_value, func, _as_traced_vector)


@operator_sections
def grad_and_value(func: Callable[..., Any]) -> DerivativeFunction:
    """Make ``x ↦ (g, f(x))`` for a scalar function ``f``, ``g[i] = ∂f/∂x[i]``."""
    return DerivativeFunction(
        "grad_and_value", _grad_and_value, func, _as_traced_vector
    )


@operator_sections
def hessian_grad_and_value(func: Callable[..., Any]) -> DerivativeFunction:
    """Make ``x ↦ (H, g, f(x))`` for a scalar ``f``, ``H[i, j] = ∂²f/∂x[i]∂x[j]``.

    ``H`` is computed forward-over-reverse: one linearisation of the gradient and a
    vectorised push of the ``n`` basis vectors through it.
    """
    return DerivativeFunction(
        "hessian_grad_and_value", _hessian_grad_and_value, func, _as_traced_vector
    )


@operator_sections
def mtp_hessian_grad_and_value(func: Callable[..., Any]) -> DerivativeFunction:
    """Make ``x ↦ (mtp, H, g, f(x))`` for a scalar function ``f``.

    ``mtp(M)[i] = Σ_jk M[j, k] ∂³f/∂x[i]∂x[j]∂x[k]`` for ``M`` of shape ``(n, n)``:
    the pullback of the Hessian map with cotangent ``M``.
    """
    return DerivativeFunction(
        "mtp_hessian_grad_and_value",
        _mtp_hessian_grad_and_value,
        func,
        _as_traced_vector,
    )


@operator_sections
def jacobian_and_value(func: Callable[..., Any]) -> DerivativeFunction:
    """Make ``x ↦ (J, c(x))`` for a vector function ``c``, ``J[i, k] = ∂c[i]/∂x[k]``.

    Reverse mode (``m`` pullbacks) when ``m <= n``, forward mode (``n`` pushforwards)
    otherwise, each vectorised.
    """
    return DerivativeFunction(
        "jacobian_and_value", _jacobian_and_value, func, _as_traced_vector
    )


@operator_sections
def mhp_jacobian_and_value(func: Callable[..., Any]) -> DerivativeFunction:
    """Make ``x ↦ (mhp, J, c(x))`` for a vector function ``c``.

    ``mhp(M)[k] = Σ_ij M[i, j] ∂²c[i]/∂x[j]∂x[k]`` for ``M`` of shape ``(m, n)``: the
    pullback of the Jacobian map with cotangent ``M``.
    """
    return DerivativeFunction(
        "mhp_jacobian_and_value", _mhp_jacobian_and_value, func, _as_traced_vector
    )


def _apply_pullback(pullback: Pullback, argument: Any) -> Any:
    (product,) = pullback(argument)
    return product


_apply_pullback_compiled = jax.jit(_apply_pullback) if AVAILABLE else _apply_pullback


def _apply_compiled(pullback: Pullback, argument: np.ndarray) -> np.ndarray:
    return np.asarray(_apply_pullback_compiled(pullback, argument))


def _apply_eager(pullback: Pullback, argument: np.ndarray) -> np.ndarray:
    return np.asarray(_apply_pullback(pullback, argument))


_downcast_warned = False


def _warn_if_downcast() -> None:
    """Warn, once per process, that float64 input is computed in float32."""
    global _downcast_warned
    if _downcast_warned or jax.config.read("jax_enable_x64"):  # type: ignore[no-untyped-call]
        return
    _downcast_warned = True
    warnings.warn(
        "diffops: a float64 input is being computed in float32 by JAX, because "
        "JAX's 64-bit mode is off, so results are float32. To compute in float64, "
        "set the environment variable JAX_ENABLE_X64=1 before importing JAX, or "
        "call jax.config.update('jax_enable_x64', True) at start-up.",
        UserWarning,
        stacklevel=3,
    )


class NumpyReturningFunction:
    """A JAX function, compiled or not, that returns NumPy arrays.

    Outputs that are JAX arrays come back as NumPy arrays (read-only views of the
    JAX buffers); a pullback comes back as a function applying it. Pickles
    as ``function`` and ``compile``: compilation happens again, on first call, where
    it is unpickled.

    Args:
        function: A function written with JAX primitives.
        compile: Whether to compile it with :func:`jax.jit`.
    """

    def __init__(self, function: Callable[..., Any], *, compile: bool) -> None:
        if not callable(function):
            msg = f"function must be callable; got {type(function).__name__}."
            raise TypeError(msg)
        self.function = function
        self.compile = compile
        self._call = jax.jit(function) if compile else function
        self._apply = _apply_compiled if compile else _apply_eager
        functools.update_wrapper(self, function, updated=())

    def __reduce__(self) -> tuple[Any, ...]:
        return (_numpy_returning, (self.function, self.compile))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the function, compiled or not; return its arrays as NumPy."""
        output = self._call(*args, **kwargs)
        if type(output) is tuple:
            return tuple(self._as_numpy(value) for value in output)
        return self._as_numpy(output)

    def _as_numpy(self, value: Any) -> Any:
        if isinstance(value, jax.Array):
            return np.asarray(value)
        if isinstance(value, jax.tree_util.Partial):
            return functools.partial(self._apply, value)
        return value

    def __repr__(self) -> str:
        kind = "jit-compiled" if self.compile else "uncompiled"
        return f"<{kind} JAX function {self.function!r} returning NumPy arrays>"


class NumpyReturningDerivative(NumpyReturningFunction):
    """A derivative function made by this module's operators, returning NumPy.

    ``x`` is checked and converted to a float NumPy array first. The outputs are a
    tuple of JAX arrays, the first of which is a pullback for the product
    operators; it comes back as a :class:`~diffops.BoundProduct`. This is the
    per-call path, so it does no more than that.

    Args:
        function: A derivative function made by one of this module's operators.
        compile: Whether to compile it with :func:`jax.jit`.
    """

    def __init__(self, function: DerivativeFunction, *, compile: bool) -> None:
        super().__init__(function, compile=compile)
        self.name = function.name
        self._product_name = PRODUCT_NAMES.get(function.name)
        # Checked until the first float64 input: precision is fixed by then.
        self._precision_unchecked = True

    def __call__(self, x: Any) -> Any:
        """Evaluate at ``x``: the outputs, highest derivative first, value last."""
        x = as_input_vector(x)
        if self._precision_unchecked and x.dtype == np.float64:
            self._precision_unchecked = False
            _warn_if_downcast()
        output = self._call(x)
        if self._product_name is None:
            return tuple(map(np.asarray, output))
        # What bind_product does, inline: this is the per-call path.
        product = BoundProduct(
            self._apply,
            output[0],
            output[1].shape,
            self._product_name,
            (self, x.copy()),
        )
        return (product, *map(np.asarray, output[1:]))


def _numpy_returning(
    function: Callable[..., Any], compile: bool
) -> NumpyReturningFunction:
    if isinstance(function, DerivativeFunction):
        return NumpyReturningDerivative(function, compile=compile)
    return NumpyReturningFunction(function, compile=compile)


def jit_and_return_numpy_arrays(function: Callable[..., Any]) -> NumpyReturningFunction:
    """Compile a JAX function with :func:`jax.jit` and make it return NumPy arrays.

    The function wrapper of the ``jax`` backend.

    Args:
        function: A function written with JAX primitives, such as a derivative
            function made by this module's operators.

    Returns:
        The compiled function, returning NumPy arrays; a
        :class:`NumpyReturningDerivative` for a derivative function.
    """
    return _numpy_returning(function, compile=True)


def return_numpy_arrays(function: Callable[..., Any]) -> NumpyReturningFunction:
    """Make a JAX function return NumPy arrays, without compiling it.

    The function wrapper of the ``jax_nojit`` backend.

    Args:
        function: A function written with JAX primitives, such as a derivative
            function made by this module's operators.

    Returns:
        The function, run op by op and returning NumPy arrays; a
        :class:`NumpyReturningDerivative` for a derivative function.
    """
    return _numpy_returning(function, compile=False)
