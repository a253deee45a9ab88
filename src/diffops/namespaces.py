"""One function definition, rendered in each framework's array namespace.

A function written as ``make(xp, n)`` against :class:`ArrayNamespace` uses only
``xp``'s functions, so the same definition serves every backend: the demo, the
benchmark and the test suite each write their sample functions once. The plain
``numpy`` namespace evaluates a function with no framework at all.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["ArrayNamespace", "array_namespace"]


def _unchanged(func: Callable[..., Any], n: int) -> Callable[..., Any]:
    return func


@dataclass(frozen=True)
class ArrayNamespace:
    """The array functions a sample function needs, taken from one framework.

    ``stack`` builds a 1-D array from scalars; ``asarray`` turns a NumPy constant into
    the framework's array; ``prepare(func, n)`` does what the backend needs done to a
    function of ``x`` of shape ``(n,)`` (SymNum: ``symnum.numpify(n)``).
    """

    name: str
    sum: Callable[..., Any]
    exp: Callable[..., Any]
    log: Callable[..., Any]
    log1p: Callable[..., Any]
    sin: Callable[..., Any]
    cos: Callable[..., Any]
    tanh: Callable[..., Any]
    sqrt: Callable[..., Any]
    stack: Callable[[Sequence[Any]], Any]
    asarray: Callable[[np.ndarray], Any]
    prepare: Callable[[Callable[..., Any], int], Callable[..., Any]] = _unchanged


_MODULES = {
    "numpy": "numpy",
    "jax": "jax.numpy",
    "jax_nojit": "jax.numpy",
    "autograd": "autograd.numpy",
    "symnum": "symnum.numpy",
    "torch": "torch",
}


def _symnum_prepare(func: Callable[..., Any], n: int) -> Callable[..., Any]:
    import symnum

    prepared: Callable[..., Any] = symnum.numpify(n)(func)
    return prepared


def array_namespace(backend: str) -> ArrayNamespace:
    """The :class:`ArrayNamespace` of a built-in backend, or ``"numpy"``.

    Raises:
        ValueError: If ``backend`` has no namespace here.
        ImportError: If its framework is not installed.
    """
    name = backend.lower()
    if name not in _MODULES:
        msg = f"backend must be one of {tuple(_MODULES)}; got {backend!r}."
        raise ValueError(msg)
    xp = importlib.import_module(_MODULES[name])
    if name == "torch":

        def as_tensor(array: np.ndarray) -> Any:
            return xp.as_tensor(array, dtype=xp.float64)

        return ArrayNamespace(
            name, xp.sum, xp.exp, xp.log, xp.log1p, xp.sin, xp.cos, xp.tanh,
            xp.sqrt, xp.stack, as_tensor,
        )  # fmt: skip
    if name == "symnum":
        return ArrayNamespace(
            name, xp.sum, xp.exp, xp.log, xp.log1p, xp.sin, xp.cos, xp.tanh,
            xp.sqrt, xp.array, xp.array, _symnum_prepare,
        )  # fmt: skip
    return ArrayNamespace(
        name, xp.sum, xp.exp, xp.log, xp.log1p, xp.sin, xp.cos, xp.tanh, xp.sqrt,
        xp.stack, xp.asarray,
    )  # fmt: skip
