"""The callables users get back: derivative functions and bound products.

A :class:`DerivativeFunction` is a differential operator applied to a function: a
callable of ``x`` that checks ``x`` and hands it to the backend's transform. A
:class:`BoundProduct` is one of the linear maps ``mtp``, ``mhp`` and ``vjp`` that a
derivative function returns: it holds what the backend kept from the evaluation at
``x`` (residuals of a reverse pass, a generated closure) and applies it to a new
matrix or vector without evaluating the function at ``x`` again.

Both are defined at module level so that they pickle. A derivative function pickles
as its recipe (the operator, the function, the backend's helpers), never as compiled
code. A bound product pickles as the derivative function that made it and the point
``x``; unpickled, it evaluates the derivative function at ``x`` once, on first use.
"""

from __future__ import annotations

import inspect
import textwrap
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from diffops.validation import argument_name, as_product_argument, check_callable

__all__ = [
    "PRODUCT_NAMES",
    "BoundProduct",
    "DerivativeFunction",
    "bind_product",
    "operator_sections",
]

PRODUCT_NAMES = {
    "vjp_and_value": "vjp",
    "mtp_hessian_grad_and_value": "mtp",
    "mhp_jacobian_and_value": "mhp",
}
"""The product each product operator returns first."""

_SCALAR_FUNC = "func: Scalar function ``f`` of ``x``, an array of shape ``(n,)``."
_VECTOR_FUNC = (
    "func: Vector function ``c`` of ``x``, an array of shape ``(n,)``, with values "
    "of shape ``(m,)``."
)
_RAISES = """Raises:
    TypeError: If ``func`` is not callable. The derivative function raises
        ``TypeError`` or ``ValueError``, naming the argument, for an ``x`` that is not
        a 1-D real array, a function of the wrong kind, or a product argument of the
        wrong shape."""

# The Args, Returns and Raises sections every backend's operator of that name shares;
# each backend's own docstring says how it computes the operator.
_OPERATOR_SECTIONS = {
    "vjp_and_value": (
        _VECTOR_FUNC,
        "The derivative function ``x ↦ (vjp, v)`` with ``v = c(x)`` and ``vjp`` a "
        ":class:`~diffops.BoundProduct` bound to ``x``: ``vjp(u) = u @ J`` for "
        "``u`` of shape ``(m,)``, of shape ``(n,)``.",
    ),
    "grad_and_value": (
        _SCALAR_FUNC,
        "The derivative function ``x ↦ (g, v)`` with ``g[i] = ∂f/∂x[i]`` of shape "
        "``(n,)`` and ``v = f(x)``.",
    ),
    "hessian_grad_and_value": (
        _SCALAR_FUNC,
        "The derivative function ``x ↦ (H, g, v)`` with ``H[i, j] = ∂²f/∂x[i]∂x[j]`` "
        "of shape ``(n, n)``, ``g[i] = ∂f/∂x[i]`` and ``v = f(x)``.",
    ),
    "mtp_hessian_grad_and_value": (
        _SCALAR_FUNC,
        "The derivative function ``x ↦ (mtp, H, g, v)`` with ``mtp`` a "
        ":class:`~diffops.BoundProduct` bound to ``x``: "
        "``mtp(M)[i] = Σ_jk M[j, k] ∂³f/∂x[i]∂x[j]∂x[k]`` for ``M`` of shape "
        "``(n, n)``, of shape ``(n,)``; ``H``, ``g`` and ``v = f(x)`` as returned by "
        "``hessian_grad_and_value``.",
    ),
    "jacobian_and_value": (
        _VECTOR_FUNC,
        "The derivative function ``x ↦ (J, v)`` with ``J[i, k] = ∂c[i]/∂x[k]`` of "
        "shape ``(m, n)`` and ``v = c(x)``.",
    ),
    "mhp_jacobian_and_value": (
        _VECTOR_FUNC,
        "The derivative function ``x ↦ (mhp, J, v)`` with ``mhp`` a "
        ":class:`~diffops.BoundProduct` bound to ``x``: "
        "``mhp(M)[k] = Σ_ij M[i, j] ∂²c[i]/∂x[j]∂x[k]`` for ``M`` of shape "
        "``(m, n)``, of shape ``(n,)``; ``J`` and ``v = c(x)`` as returned by "
        "``jacobian_and_value``.",
    ),
}


def _section(heading: str, text: str, hanging: str = "") -> str:
    """A Google-style section; ``hanging`` indents the lines after the first."""
    body = textwrap.fill(
        text,
        width=88,
        initial_indent="    ",
        subsequent_indent="    " + hanging,
        break_long_words=False,
        break_on_hyphens=False,
    )
    return f"{heading}:\n{body}"


Operator = TypeVar("Operator", bound=Callable[..., Any])


def operator_sections(operator: Operator) -> Operator:
    """Append the Args, Returns and Raises sections shared by operators of its name.

    A decorator for the six operators of a backend module, so that every backend
    documents the arguments and outputs of, say, ``grad_and_value`` in the same words.

    Args:
        operator: A function named after one of :data:`diffops.DIFF_OPS`.

    Returns:
        ``operator`` itself, its docstring extended.
    """
    if operator.__doc__ is not None:
        func, returns = _OPERATOR_SECTIONS[operator.__name__]
        sections = (
            _section("Args", func, "    "),
            _section("Returns", returns),
            _RAISES,
        )
        operator.__doc__ = "\n\n".join([inspect.cleandoc(operator.__doc__), *sections])
    return operator


class DerivativeFunction:
    """A differential operator applied to ``func``: ``x ↦ transform(func, prepare(x))``.

    Args:
        name: Name of the operator, one of :data:`diffops.DIFF_OPS`.
        transform: ``transform(func, x)`` computes the operator's outputs at ``x``.
        func: The function being differentiated.
        prepare: Checks and converts ``x`` before ``transform`` sees it.
        apply: For product operators whose ``transform`` returns the backend's
            product state first: ``apply(state, argument)``, which computes the
            product. ``None`` when ``transform``'s outputs are returned as they are.
    """

    def __init__(
        self,
        name: str,
        transform: Callable[[Callable[..., Any], Any], Any],
        func: Callable[..., Any],
        prepare: Callable[[Any], Any],
        apply: Callable[[Any, np.ndarray], np.ndarray] | None = None,
    ) -> None:
        check_callable(func, name)
        self.name = name
        self.transform = transform
        self.func = func
        self.prepare = prepare
        self.apply = apply

    def __call__(self, x: Any) -> Any:
        """Evaluate at ``x``: the outputs, highest derivative first, value last."""
        x = self.prepare(x)
        outputs = self.transform(self.func, x)
        if self.apply is None:
            return outputs
        state, *rest = outputs
        return (bind_product(self.apply, state, rest[0], self, x), *rest)

    def __repr__(self) -> str:
        return f"{self.name}({getattr(self.func, '__name__', self.func)!r})"


class BoundProduct:
    """Linear map ``M ↦ product`` bound to one point.

    Args:
        apply: ``apply(state, argument)`` computes the product as a NumPy array.
        state: What the backend kept from the evaluation at the point.
        shape: Shape the argument must have: ``(n, n)`` for ``mtp``, ``(m, n)`` for
            ``mhp``, ``(m,)`` for ``vjp``.
        name: Name of the product, for error messages and ``repr``.
        recipe: ``(derivative, x)``, the derivative function that made this product
            and the point, from which it is rebuilt when unpickled; without it the
            product does not pickle.
    """

    __slots__ = ("_apply", "_name", "_recipe", "_shape", "_state")

    def __init__(
        self,
        apply: Callable[[Any, np.ndarray], np.ndarray],
        state: Any,
        shape: tuple[int, ...],
        name: str,
        recipe: tuple[Callable[[Any], Any], np.ndarray] | None = None,
    ) -> None:
        self._apply = apply
        self._state = state
        self._shape = shape
        self._name = name
        self._recipe = recipe

    def __reduce__(self) -> tuple[Any, ...]:
        if self._recipe is None:
            msg = f"this {self._name} was made without a recipe and cannot be pickled"
            raise TypeError(msg)
        return (_product_at, self._recipe)

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the argument this product takes."""
        return self._shape

    def __call__(self, argument: Any) -> np.ndarray:
        """Apply the product to ``M`` (or ``u``); the result has shape ``(n,)``."""
        argument = as_product_argument(argument, self._shape, self._name)
        return self._apply(self._state, argument)

    def __repr__(self) -> str:
        argument = argument_name(self._shape)
        return f"<{self._name}: {argument} of shape {self._shape} -> (n,)>"


def _product_at(derivative: Callable[[Any], Any], x: np.ndarray) -> Any:
    """The product that ``derivative`` returns at ``x``: how a product unpickles."""
    return derivative(x)[0]


def bind_product(
    apply: Callable[[Any, np.ndarray], np.ndarray],
    state: Any,
    next_output: Any,
    derivative: Callable[[Any], Any] | DerivativeFunction,
    x: Any,
) -> BoundProduct:
    """The :class:`BoundProduct` of a product operator's evaluation at ``x``.

    Its argument has the shape of ``next_output``, the output after it: ``H`` for
    ``mtp``, ``J`` for ``mhp``, the value for ``vjp``. ``derivative`` is the function
    the user called (it names the product and rebuilds it when unpickled); ``x`` is
    copied, since callers may update their point in place afterwards.
    """
    operator = getattr(derivative, "name", "")
    return BoundProduct(
        apply,
        state,
        tuple(np.shape(next_output)),
        PRODUCT_NAMES.get(operator, "product"),
        (derivative, np.array(x, copy=True)),
    )
