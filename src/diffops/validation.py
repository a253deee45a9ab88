"""Checks shared by every backend, so that a misuse gets the same message everywhere.

Each check names the argument, says what was expected and what was given.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from diffops.operators import SCALAR_OPERATORS, VECTOR_OPERATORS

__all__ = [
    "as_input_vector",
    "as_product_argument",
    "check_callable",
    "check_scalar_output",
    "check_vector_output",
    "check_vector_shape",
    "describe_shape",
    "output_shape",
]


def describe_shape(shape: tuple[int, ...]) -> str:
    """Say what an array of this shape is, for an error message.

    Args:
        shape: The array's shape.

    Returns:
        ``"a scalar (shape ())"`` or ``"an array of shape (…)"``.
    """
    if shape == ():
        return "a scalar (shape ())"
    return f"an array of shape {shape}"


def check_callable(func: object, operator: str) -> None:
    """Raise ``TypeError`` unless ``func`` can be differentiated by ``operator``.

    Args:
        func: What was given as the function.
        operator: The operator's name, for the message.
    """
    if not callable(func):
        msg = f"{operator} needs func to be callable; got {type(func).__name__}."
        raise TypeError(msg)


def as_input_vector(
    x: Any, copy: bool = False, size: int | None = None, size_origin: str = ""
) -> np.ndarray:
    """Return ``x`` as a 1-D floating-point NumPy array, or raise a clear error.

    Lists and integer arrays become float64 arrays; float arrays are passed through
    unchanged, so a float32 input stays float32.

    Args:
        x: The point.
        copy: Whether the array returned must be a copy that the caller owns, even
            where ``x`` is already a float array.
        size: The length ``x`` must have, or ``None`` for any.
        size_origin: What fixed ``size``, for the error message.

    Returns:
        The array, ``x`` itself where it is a 1-D float array and no copy is asked.
    """
    if (
        type(x) is np.ndarray
        and x.ndim == 1
        and x.dtype.kind == "f"
        and x.shape[0]
        and (size is None or x.shape[0] == size)
    ):
        return x.copy() if copy else x
    try:
        array = np.array(x, copy=True if copy else None)
    except (TypeError, ValueError) as error:
        msg = (
            f"x must be a 1-D array of real numbers; got {type(x).__name__} ({error})."
        )
        raise TypeError(msg) from None
    if array.dtype.kind in "iu":
        array = array.astype(np.float64)
    elif array.dtype.kind != "f":
        msg = (
            "x must be a 1-D array of real numbers; got an array of dtype "
            f"{array.dtype} (from {type(x).__name__})."
        )
        raise TypeError(msg)
    check_vector_shape(array.shape)
    if size is not None and array.shape[0] != size:
        msg = f"x must have shape ({size},), {size_origin}; got shape {array.shape}."
        raise ValueError(msg)
    return array


def check_vector_shape(shape: tuple[int, ...]) -> None:
    """Raise ``ValueError`` unless ``shape`` is ``(n,)`` with ``n ≥ 1``.

    Args:
        shape: The shape of ``x``.
    """
    if len(shape) != 1:
        msg = f"x must be a 1-D array of shape (n,); got {describe_shape(shape)}."
        raise ValueError(msg)
    if shape[0] == 0:
        msg = "x must have at least one entry; got an array of shape (0,)."
        raise ValueError(msg)


def as_product_argument(
    value: Any, shape: tuple[int, ...], argument: str, product: str
) -> np.ndarray:
    """Return a bound product's argument as a float array of ``shape``.

    Args:
        value: What the product was given.
        shape: The shape it must have.
        argument: Its name, ``"M"`` or ``"u"``.
        product: The product's name, ``"mtp"``, ``"mhp"`` or ``"vjp"``.

    Returns:
        The argument as a float array, ``value`` itself where it is one already.
    """
    if type(value) is np.ndarray and value.shape == shape and value.dtype.kind == "f":
        return value
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as error:
        msg = f"{argument} must be an array of shape {shape} for {product}; ({error})."
        raise TypeError(msg) from None
    if array.dtype.kind in "iu":
        array = array.astype(np.float64)
    elif array.dtype.kind != "f":
        msg = (
            f"{argument} must be an array of real numbers of shape {shape} for "
            f"{product}; got dtype {array.dtype}."
        )
        raise TypeError(msg)
    if array.shape != shape:
        msg = (
            f"{argument} must be an array of shape {shape} for {product}; got "
            f"{describe_shape(array.shape)}."
        )
        raise ValueError(msg)
    return array


def output_shape(value: Any, operator: str) -> tuple[int, ...]:
    """Shape of what ``func`` returned, or ``TypeError`` if it is not an array.

    Args:
        value: What ``func`` returned: an array of any framework, or a number.
        operator: The operator's name, for the message.

    Returns:
        The shape; ``()`` for a number.
    """
    shape = getattr(value, "shape", None)
    if shape is not None:
        return tuple(shape)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return ()
    msg = (
        f"{operator} needs func to return an array (or a number); it returned "
        f"{type(value).__name__}."
    )
    raise TypeError(msg)


def check_scalar_output(shape: tuple[int, ...], operator: str) -> None:
    """Raise ``TypeError`` unless a function value of ``shape`` is a scalar.

    Args:
        shape: The shape of what ``func`` returned.
        operator: The operator's name, for the message.
    """
    if shape != ():
        msg = (
            f"{operator} needs func to return a scalar; it returned "
            f"{describe_shape(shape)}. For a vector-valued function use "
            f"{', '.join(VECTOR_OPERATORS)}."
        )
        raise TypeError(msg)


def check_vector_output(shape: tuple[int, ...], operator: str) -> None:
    """Raise ``TypeError`` unless a function value of ``shape`` is a 1-D vector.

    Args:
        shape: The shape of what ``func`` returned.
        operator: The operator's name, for the message.
    """
    if len(shape) != 1:
        hint = (
            f" For a scalar-valued function use {', '.join(SCALAR_OPERATORS)}."
            if shape == ()
            else ""
        )
        msg = (
            f"{operator} needs func to return a 1-D array of shape (m,); it returned "
            f"{describe_shape(shape)}.{hint}"
        )
        raise TypeError(msg)
