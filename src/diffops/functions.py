"""The callables users get back: derivative functions and bound products.

A :class:`DerivativeFunction` is a differential operator applied to a function: a
callable of ``x`` that checks ``x`` and hands it to the backend's transform. A
:class:`BoundProduct` is one of the linear maps ``mtp``, ``mhp`` and ``vjp`` that a
derivative function returns: it holds what the backend kept from the evaluation at
``x`` (residuals of a reverse pass, a generated closure) and applies it to a new
matrix or vector without evaluating the function at ``x`` again. Both are defined at
module level so that they pickle.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from diffops.validation import as_product_argument, check_callable

__all__ = ["BoundProduct", "DerivativeFunction"]


class DerivativeFunction:
    """A differential operator applied to ``func``: ``x ↦ transform(func, prepare(x))``.

    Args:
        name: Name of the operator, one of :data:`diffops.DIFF_OPS`.
        transform: ``transform(func, x)`` computes the operator's outputs at ``x``.
        func: The function being differentiated.
        prepare: Checks and converts ``x`` before ``transform`` sees it.
    """

    def __init__(
        self,
        name: str,
        transform: Callable[[Callable[..., Any], Any], Any],
        func: Callable[..., Any],
        prepare: Callable[[Any], Any],
    ) -> None:
        check_callable(func, name)
        self.name = name
        self.transform = transform
        self.func = func
        self.prepare = prepare

    def __call__(self, x: Any) -> Any:
        return self.transform(self.func, self.prepare(x))

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
    """

    __slots__ = ("_apply", "_argument", "_name", "_shape", "_state")

    def __init__(
        self,
        apply: Callable[[Any, np.ndarray], np.ndarray],
        state: Any,
        shape: tuple[int, ...],
        name: str,
    ) -> None:
        self._apply = apply
        self._state = state
        self._shape = shape
        self._name = name
        self._argument = "u" if len(shape) == 1 else "M"

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the argument this product takes."""
        return self._shape

    def __call__(self, argument: Any) -> np.ndarray:
        """Apply the product to ``M`` (or ``u``); the result has shape ``(n,)``."""
        argument = as_product_argument(
            argument, self._shape, self._argument, self._name
        )
        return self._apply(self._state, argument)

    def __repr__(self) -> str:
        return f"<{self._name}: {self._argument} of shape {self._shape} -> (n,)>"
