"""Checks shared by every backend, so that a misuse gets the same message everywhere.

Each check names the argument, says what was expected and what was given.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from diffops.operators import SCALAR_OPERATORS, VECTOR_OPERATORS

__all__ = [
    "NATIVE_FLOATS",
    "as_input_vector",
    "as_plain_array",
    "as_points",
    "as_product_argument",
    "check_callable",
    "check_output_kind",
    "check_real_number",
    "check_real_output",
    "check_scalar_output",
    "check_vector_output",
    "check_vector_shape",
    "computation_dtype",
    "describe_shape",
    "is_plain",
    "output_shape",
    "shape_of",
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


def check_callable(func: object, operator: str, argument: str = "func") -> None:
    """Raise ``TypeError`` unless ``func`` can be differentiated by ``operator``.

    Args:
        func: What was given as the function.
        operator: The operator's name, for the message.
        argument: The name of the argument ``func`` was given as.
    """
    if not callable(func):
        msg = f"{operator} needs {argument} to be callable; got {type(func).__name__}."
        raise TypeError(msg)


NATIVE_FLOATS = frozenset(map(np.dtype, (np.float64, np.float32)))
"""The dtypes computed in as they are, float64 and float32 in native byte order."""


def is_plain(array: Any, dtypes: frozenset[np.dtype[Any]] = NATIVE_FLOATS) -> bool:
    """Whether ``array`` can be handed to any framework as it is.

    That is: a NumPy array (not a subclass) of one of ``dtypes``, in native byte
    order, C-contiguous, aligned and writable. Anything else (big-endian, strided,
    broadcast, a field of a structured array, read-only) is converted once.

    Args:
        array: What the caller gave.
        dtypes: The dtypes that need no conversion.

    Returns:
        Whether it needs no conversion.
    """
    return type(array) is np.ndarray and array.dtype in dtypes and array.flags.carray


def as_plain_array(value: Any, copy: bool = False) -> Any:
    """A NumPy array in native byte order, C-contiguous, aligned and writable.

    For the arguments of functions that a framework's function wrapper converts: any
    dtype, any shape.

    Args:
        value: An argument.
        copy: Whether a NumPy array is always copied: for a framework whose arrays
            share a NumPy array's memory (a torch tensor on the CPU), where the code
            it is handed to may write into it.

    Returns:
        ``value`` itself where it is such an array (and not ``copy``) or not a NumPy
        array at all; a copy of it in that layout otherwise.
    """
    if not isinstance(value, np.ndarray):
        return value
    if value.dtype.isnative and value.flags.carray and type(value) is np.ndarray:
        return value.copy() if copy else value  # copy(): a third of np.array's cost
    return np.array(value, dtype=value.dtype.newbyteorder("="), order="C")


def _tensor_values(tensor: Any, name: str, expected: str) -> np.ndarray:
    """A torch tensor's values, or ``TypeError`` naming it where it has none.

    Whatever its device, even where it requires grad, holds its negation or
    conjugation lazily, or is sparse; a tensor on the ``meta`` device has no values.
    """
    try:
        tensor = tensor.detach()
        if str(tensor.layout) != "torch.strided":
            tensor = tensor.to_dense()
        tensor = tensor.cpu().resolve_conj().resolve_neg()
        if str(tensor.dtype) == "torch.bfloat16":
            tensor = tensor.float()
        values: np.ndarray = tensor.numpy()
    except (RuntimeError, NotImplementedError, TypeError) as error:
        msg = (
            f"{name} must be {expected}; got a tensor whose values cannot be read "
            f"({error})."
        )
        raise TypeError(msg) from None
    return values


def _as_numpy(value: Any, name: str, expected: str) -> np.ndarray:
    """``value`` as a NumPy array of its own dtype, or ``TypeError`` naming it.

    bfloat16, which NumPy has no type for, comes as float32.
    """
    if type(value).__module__.startswith("torch") and hasattr(value, "detach"):
        value = _tensor_values(value, name, expected)
    if isinstance(value, np.ma.MaskedArray):
        if np.ma.is_masked(value):
            msg = (
                f"{name} must be {expected}; got a masked array with masked entries, "
                f"whose values would be used as they are: fill them first "
                f"({name}.filled(...)), or pass {name}.data."
            )
            raise TypeError(msg)
        value = value.data
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as error:
        msg = f"{name} must be {expected}; got {type(value).__name__} ({error})."
        raise TypeError(msg) from None
    if array.dtype.kind == "O" and not isinstance(value, np.ndarray):
        msg = f"{name} must be {expected}; got {type(value).__name__}."
        raise TypeError(msg)
    if array.dtype.name == "bfloat16":  # from JAX or ml_dtypes
        array = array.astype(np.float32)
    return array


def computation_dtype(dtype: np.dtype[Any]) -> np.dtype[Any]:
    """The floating-point type an ``x`` of ``dtype`` is computed in.

    float64 and float32 as they are, in native byte order; float16 (and bfloat16,
    which comes as float32) in float32; integers in float64.

    Args:
        dtype: The dtype of ``x``.

    Returns:
        A dtype of :data:`NATIVE_FLOATS`.

    Raises:
        TypeError: For anything else, such as complex numbers, booleans, strings and
            extended precision (float128), which none of the frameworks computes in.
    """
    if dtype.kind in "iu":
        return np.dtype(np.float64)
    if dtype.kind == "f" and dtype.itemsize <= 8:
        return np.dtype(np.float64 if dtype.itemsize == 8 else np.float32)
    if dtype.kind == "f":
        msg = (
            f"x must be an array of real numbers in float64 or float32; got dtype "
            f"{dtype} (extended precision), which the frameworks do not compute in. "
            "Convert it first: x.astype(np.float64)."
        )
    else:
        msg = f"x must be a 1-D array of real numbers; got an array of dtype {dtype}."
    raise TypeError(msg)


def as_input_vector(
    x: Any, copy: bool = False, size: int | None = None, size_origin: str = ""
) -> np.ndarray:
    """Return ``x`` as a plain 1-D floating-point NumPy array, or raise a clear error.

    Float64 and float32 arrays keep their precision; integers become float64, and
    float16 float32 (:func:`computation_dtype`). Any layout is accepted: big-endian,
    strided, broadcast, read-only arrays, lists, and the framework's own arrays
    (a torch tensor that requires grad too) become a native, C-contiguous array.

    Args:
        x: The point.
        copy: Whether the array returned must be one the caller owns, even where
            ``x`` needs no conversion.
        size: The length ``x`` must have, or ``None`` for any.
        size_origin: What fixed ``size``, for the error message.

    Returns:
        The array, ``x`` itself where it is plain (:func:`is_plain`), 1-D and no copy
        is asked, a new array otherwise.
    """
    array = _as_numpy(x, "x", "a 1-D array of real numbers")
    dtype = computation_dtype(array.dtype)
    check_vector_shape(array.shape)
    if size is not None and array.shape[0] != size:
        msg = f"x must have shape ({size},), {size_origin}; got shape {array.shape}."
        raise ValueError(msg)
    if copy or not is_plain(array, frozenset((dtype,))):
        return np.array(array, dtype=dtype, order="C")
    return array


def as_points(
    value: Any,
    name: str = "X",
    size: int | None = None,
    one_point: bool = False,
    copy: bool = False,
) -> np.ndarray:
    """Return ``value`` as a plain ``(k, n)`` floating-point array, a point per row.

    Read as ``x`` is (:func:`as_input_vector`): float64 and float32 keep their
    precision, integers become float64 and float16 float32, in any layout; anything
    else is refused with an error naming ``name``.

    Args:
        value: The points.
        name: What the caller calls them, for the error messages.
        size: The length ``n`` of each point, or ``None`` for any.
        one_point: Whether one point of shape ``(n,)`` is taken too, as ``k = 1``.
        copy: Whether the array returned must be one the caller owns, even where
            ``value`` needs no conversion.

    Returns:
        The array, ``value`` itself (or a view of it) where it is plain
        (:func:`is_plain`) and no copy is asked, a new array otherwise.
    """
    form = "(n,) or (k, n)" if one_point else "(k, n)"
    kind = "an array" if one_point else "a 2-D array"
    # As x is read: a torch tensor's values, a masked array refused where entries
    # are masked (their values would be used as they are).
    array = _as_numpy(value, name, f"{kind} of real numbers")
    try:
        dtype = computation_dtype(array.dtype)
    except TypeError:
        msg = (
            f"{name} must be {kind} of real numbers of shape {form}; got an array of "
            f"dtype {array.dtype}."
        )
        raise TypeError(msg) from None
    shape = array.shape
    if one_point and array.ndim == 1:
        array = array[np.newaxis]
    if array.ndim != 2 or not array.shape[0] or not array.shape[1]:
        msg = (
            f"{name} must be {kind} of shape {form}, a point per row, with k and n "
            f"at least 1; got {describe_shape(shape)}."
        )
        raise ValueError(msg)
    if size is not None and array.shape[1] != size:
        msg = f"{name} must have shape (k, {size}): a point per row; got {shape}."
        raise ValueError(msg)
    if copy or not is_plain(array, frozenset((dtype,))):
        return np.array(array, dtype=dtype, order="C")
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
    value: Any,
    shape: tuple[int, ...],
    dtype: np.dtype[Any],
    argument: str,
    product: str,
) -> np.ndarray:
    """Return a bound product's argument as a plain float array of ``shape``.

    The argument is converted to ``dtype``, that of the product's point: integers,
    lists and other float types are accepted, one of higher precision converted down
    (the product is as precise as its point). Any layout is accepted, as for ``x``.

    Args:
        value: What the product was given.
        shape: The shape it must have.
        dtype: The dtype it is computed in.
        argument: Its name, ``"M"`` or ``"u"``.
        product: The product's name, ``"mtp"``, ``"mhp"`` or ``"vjp"``.

    Returns:
        The argument, ``value`` itself where it is plain (:func:`is_plain`) and of
        ``dtype`` and ``shape``, a new array otherwise.
    """
    if (
        type(value) is np.ndarray
        and value.shape == shape
        and value.dtype == dtype
        and value.flags.carray
    ):
        return value
    expected = f"an array of real numbers of shape {shape} for {product}"
    array = _as_numpy(value, argument, expected)
    if array.dtype.kind not in "fiu":
        msg = f"{argument} must be {expected}; got dtype {array.dtype}."
        raise TypeError(msg)
    if array.shape != shape:
        msg = (
            f"{argument} must be an array of shape {shape} for {product}; got "
            f"{describe_shape(array.shape)}."
        )
        raise ValueError(msg)
    return np.array(array, dtype=dtype, order="C")


_OBJECT = np.dtype(object)
"""The dtype ``np.array([...])`` gives values a framework is tracing."""


def output_shape(value: Any, operator: str) -> tuple[int, ...]:
    """Shape of what ``func`` returned, or ``TypeError`` if not an array of reals.

    Args:
        value: What ``func`` returned: an array of any framework, or a number.
        operator: The operator's name, for the message.

    Returns:
        The shape; ``()`` for a number.
    """
    shape = getattr(value, "shape", None)
    if shape is not None:
        dtype = getattr(value, "dtype", None)
        check_real_output(dtype, operator)
        if dtype == _OBJECT:
            msg = (
                f"{operator} needs func to return an array of numbers; it returned a "
                "NumPy array of objects, as np.array([...]) makes of values the "
                "framework is tracing: build it with the framework's own functions "
                "(anp.stack or anp.array for Autograd)."
            )
            raise TypeError(msg)
        return tuple(shape)
    check_real_number(value, operator)
    if isinstance(value, int | float):
        return ()
    msg = (
        f"{operator} needs func to return an array (or a number); it returned "
        f"{type(value).__name__}."
    )
    raise TypeError(msg)


def check_real_output(dtype: Any, operator: str) -> None:
    """``TypeError`` if ``dtype`` (NumPy's, JAX's or PyTorch's) is complex or bool.

    Differentiated as real, complex values would lose their imaginary part, which
    the frameworks only warn of; booleans (a comparison) would have zero
    derivatives, without a word.

    Args:
        dtype: The dtype of what ``func`` returned.
        operator: The operator's name, for the message.
    """
    if isinstance(dtype, np.dtype):  # NumPy's and JAX's: the per-call path
        complex_, boolean = dtype.kind == "c", dtype.kind == "b"
    else:  # PyTorch's, or none
        complex_ = getattr(dtype, "is_complex", False)
        boolean = str(dtype) == "torch.bool"
    if complex_:
        msg = (
            f"{operator} needs func to return real numbers; it returned complex "
            f"ones ({dtype}): return the real part, or the modulus, that you mean."
        )
        raise TypeError(msg)
    if boolean:
        msg = (
            f"{operator} needs func to return real numbers; it returned booleans "
            f"({dtype}), as a comparison makes, whose derivatives are zero: return "
            "the quantity compared."
        )
        raise TypeError(msg)


def check_real_number(value: Any, operator: str) -> None:
    """``TypeError`` if ``value`` is a Python ``bool`` or ``complex``.

    Refused as arrays of them are (:func:`check_real_output`): a comparison's truth,
    or a number whose imaginary part differentiating as real would drop.

    Args:
        value: What ``func`` returned, where it is not an array.
        operator: The operator's name, for the message.
    """
    if isinstance(value, bool | complex):
        check_real_output(np.dtype(type(value)), operator)


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
            else " vjp_and_value takes values of any shape; for a Jacobian, return "
            "them raveled."
        )
        msg = (
            f"{operator} needs func to return a 1-D array of shape (m,); it returned "
            f"{describe_shape(shape)}.{hint}"
        )
        raise TypeError(msg)


def check_output_kind(shape: tuple[int, ...], operator: str) -> None:
    """Raise ``TypeError`` unless a function value of ``shape`` suits ``operator``.

    A scalar for the operators of a scalar ``f``, a 1-D vector for those of a vector
    ``c``, any shape for ``vjp_and_value``, whose ``u`` takes it.

    Args:
        shape: The shape of what ``func`` returned.
        operator: The operator's name.
    """
    if operator in SCALAR_OPERATORS:
        check_scalar_output(shape, operator)
    elif operator != "vjp_and_value":
        check_vector_output(shape, operator)


def shape_of(value: Any) -> tuple[int, ...] | None:
    """The shape of an array or nested list of numbers; ``None`` for anything else.

    Args:
        value: What a function returned or was given, such as a product's argument.

    Returns:
        Its shape, or ``None`` where it is no array of numbers (a ragged list, a
        string, ``None``).
    """
    shape = getattr(value, "shape", None)
    if shape is not None:
        return tuple(shape)
    try:
        array = np.asarray(value)
    except (TypeError, ValueError):
        return None
    return array.shape if array.dtype.kind in "biuf" else None


def real_numbers(value: Any) -> tuple[np.ndarray | None, str]:
    """``value`` as a new NumPy array of real numbers; else ``None``, and what it is.

    Args:
        value: What a user's function returned.

    Returns:
        The array (of floats, where NumPy holds the numbers as objects, as
        SymPy's), or ``None`` where it is not real numbers; with its type, and its
        dtype where that is wrong (a string, ``None``, complex numbers) or, where
        NumPy cannot make an array of it, why (a ragged list; a torch tensor that
        records a graph, in PyTorch's words).
    """
    kind = type(value).__name__
    try:
        array = np.array(np.asarray(value))  # NumPy 2's copy= is not every type's
    except Exception as error:
        return None, kind if isinstance(value, list | tuple) else f"{kind} ({error})"
    if array.dtype.kind == "O" and not any(
        entry is None or isinstance(entry, str | bytes) for entry in array.flat
    ):
        try:  # numbers NumPy holds as objects (SymPy's Float, Fraction, Decimal)
            return array.astype(float), kind
        except (TypeError, ValueError):  # complex numbers, dicts, ...
            pass
    if array.dtype.kind not in "biuf":
        dtype = str(array.dtype)
        return None, kind if kind == dtype else f"{kind} of dtype {dtype}"
    return array, kind
