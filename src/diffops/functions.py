"""The callables users get back: derivative functions and bound products.

Every derivative function diffops makes, whatever the backend, is a
:class:`DerivativeFunction`: it checks ``x``, hands it to the backend's evaluation,
returns the outputs as NumPy arrays and binds the product of a product operator to
``x`` as a :class:`BoundProduct`. A backend says how its framework does the parts
that differ in a :class:`Runtime`: how an output becomes a NumPy array, how a
product is applied, and which lock (if any) its framework's tracing needs.

What comes back is the caller's own and bound to the point it was computed at: the
outputs are arrays that share memory with nothing (not ``x``, not each other, not
what a product keeps), so updating ``x`` or an output in place afterwards changes
nothing already returned. Where a product needs the point kept, ``x`` is copied once
per call, and that copy is both what the backend computes from and what the product
rebuilds itself from when unpickled.

Both classes are defined at module level so that they pickle: a derivative function
as its recipe (the backend's call that made it), never as compiled code; a product
as the derivative function that made it and its point. A copy of either
(``copy.copy``, ``copy.deepcopy``) is the object itself, as a function's is.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import threading
from collections.abc import Callable
from typing import Any, NamedTuple, NoReturn, Self

import numpy as np

from diffops.operators import OPERATORS, Operator
from diffops.validation import NATIVE_FLOATS, as_input_vector, as_product_argument

__all__ = [
    "Batching",
    "BoundProduct",
    "CopiedAsItself",
    "DerivativeFunction",
    "FrameworkDerivative",
    "NumpyReturningFunction",
    "Runtime",
    "as_output",
    "describe_function",
]


class Batching(NamedTuple):
    """How a backend evaluates one derivative function at many points in one call.

    Attributes:
        evaluate: ``evaluate(X)``, for ``X`` of shape ``(c, n)``: the outputs at every
            row, each with a leading axis of length ``c``, in the framework's arrays;
            for a product operator, the state of all ``c`` products first.
        apply: ``apply(state, argument, shared)``: the ``c`` products applied, to
            ``argument[i]`` at row ``i`` or, where ``shared``, to ``argument`` at
            every row; shape ``(c, n)``. ``None`` for operators without a product.
    """

    evaluate: Callable[[np.ndarray], tuple[Any, ...]]
    apply: Callable[[Any, np.ndarray, bool], Any] | None = None


class Runtime(NamedTuple):
    """What :class:`DerivativeFunction` needs to know of a backend's framework.

    Attributes:
        to_numpy: ``to_numpy(output, dtype)``: one output of the framework's as a new
            NumPy array, sharing memory with nothing the framework keeps, of the dtype
            the computation was done in: ``dtype``, that of ``x`` (or of the product's
            point), or the framework's own where it computes in another (JAX with
            64-bit mode off); a scalar as a NumPy scalar (:func:`as_output`). ``None``
            where the evaluation and the products return such outputs already.
        apply: ``apply(state, argument)``: the product from the state the backend's
            evaluation returned first, applied to ``M`` or ``u`` (a NumPy array).
        lock: Held around every evaluation and product where the framework's tracing
            is process-wide state that threads would corrupt; ``None`` for none.
        backend: The backend's name, for error messages.
        explain: ``explain(error)``: for an exception the framework raised while
            tracing or differentiating the user's function, one sentence saying in
            the user's terms what went wrong and what to do; ``None`` for an
            exception it does not recognise, which then reaches the user as it is.
        batch: ``batch(derivative)``: how to evaluate ``derivative`` at many points
            in one call (:func:`diffops.vectorize`); ``None`` where the framework
            cannot, and points are evaluated one by one.
    """

    to_numpy: Callable[[Any, np.dtype[Any]], Any] | None
    apply: Callable[[Any, np.ndarray], Any]
    lock: threading.RLock | None = None
    backend: str = ""
    explain: Callable[[BaseException], str | None] | None = None
    batch: Callable[[DerivativeFunction], Batching] | None = None


def describe_function(func: Any) -> str:
    """``func``'s name and where it is defined, as ``name (file.py, line 12)``.

    Args:
        func: The user's function, or ``None``.

    Returns:
        Its name and place, as far as they can be found.
    """
    func = inspect.unwrap(func) if callable(func) else func
    while isinstance(func, functools.partial):
        func = func.func
    name = getattr(func, "__qualname__", None) or getattr(func, "__name__", None)
    code = getattr(func, "__code__", None)
    if code is None and callable(func):  # an instance of a class with __call__
        code = getattr(type(func).__call__, "__code__", None)
        name = f"{type(func).__qualname__}.__call__"
    if code is None:
        return repr(name or func)
    return f"{name} ({code.co_filename}, line {code.co_firstlineno})"


def as_output(array: np.ndarray) -> Any:
    """An output as users get it: a 0-d array as a NumPy scalar, others as they are.

    The value of a scalar function then comes back as ``np.float64`` (or
    ``np.float32``) from every backend: immutable, so bound to its point like the
    arrays, which are new and the caller's own.

    Args:
        array: A new NumPy array of the output.

    Returns:
        ``array``, or its one entry as a NumPy scalar.
    """
    return array[()] if array.ndim == 0 else array


class CopiedAsItself:
    """A callable whose copies (``copy.copy``, ``copy.deepcopy``) are itself.

    As a Python function's are: nothing in it changes once it is made. A copy made
    from its recipe, as pickling makes one, would compile again and copy the user's
    function and the data it holds, which a sampler that deep-copies its system for
    every chain (as mici's do) would pay each time.
    """

    __slots__ = ()

    def __copy__(self) -> Self:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Self:
        return self


class FrameworkDerivative(CopiedAsItself):
    """A differential operator applied to ``func``, on the framework's own arrays.

    ``x ↦ transform(func, x)``, for the backends whose function wrapper then compiles
    it or converts its arrays (``jax``, ``torch``): the framework can trace it, so it
    may be composed into the user's own compiled or vectorised code.

    Args:
        operator: Name of the operator, one of :data:`diffops.DIFF_OPS`.
        transform: ``transform(func, x)`` computes the operator's outputs at ``x``; for
            a product operator, the first is the state the product is computed from.
        func: The function being differentiated.
    """

    __slots__ = ("__weakref__", "func", "operator", "transform")

    def __init__(
        self,
        operator: str,
        transform: Callable[[Callable[..., Any], Any], tuple[Any, ...]],
        func: Callable[..., Any],
    ) -> None:
        self.operator = operator
        self.transform = transform
        self.func = func

    @property
    def __name__(self) -> str:
        """``operator(name of func)``, as frameworks name what they trace."""
        return f"{self.operator}({getattr(self.func, '__name__', 'func')})"

    @property
    def __wrapped__(self) -> Callable[..., Any]:
        """``func``: where frameworks look for the source of what they trace."""
        return self.func

    def __call__(self, x: Any) -> tuple[Any, ...]:
        """The operator's outputs at ``x``, in the framework's arrays."""
        return self.transform(self.func, x)

    def __reduce__(self) -> tuple[Any, ...]:
        return (FrameworkDerivative, (self.operator, self.transform, self.func))

    def __repr__(self) -> str:
        return f"{self.operator}({getattr(self.func, '__name__', self.func)!r})"


class DerivativeFunction(CopiedAsItself):
    """``x ↦`` the outputs of a differential operator at ``x``, as NumPy arrays.

    The outputs come highest derivative first and value last; for a product operator
    the first is a :class:`BoundProduct` bound to ``x``. They are the caller's own:
    new, writable arrays that share memory with nothing (not ``x``, not each other,
    not what a product keeps), of the floating-point type ``x`` is computed in; the
    value of a scalar function is a NumPy scalar. For the ``jax`` backends that costs
    a copy of each output out of JAX's buffer (read-only otherwise): about 0.3 µs for
    a small array, 0.2 ms for a 1000 × 1000 Hessian whose memory is mapped already
    (see "Large outputs and the C allocator" in docs/backends.md).

    Args:
        operator: Name of the operator, one of :data:`diffops.DIFF_OPS`.
        evaluate: ``evaluate(x)``, for ``x`` a 1-D float NumPy array: the
            operator's outputs in the framework's arrays (for a product operator, the
            product's state first). Called with a copy of ``x`` where a product is
            bound to it.
        runtime: How the framework's outputs become NumPy arrays, how the product is
            applied, and the lock its tracing needs.
        rebuild: ``(callable, arguments)`` that makes this derivative function again
            where it is unpickled: the backend's own call that made it.
        size: The length ``n`` that ``x`` must have, where the backend fixed it when
            it made the function; ``None`` for any.
        size_origin: What fixed ``size``, for the error message.
        func: The user's function, named in error messages.
        traced: The :class:`~diffops.functions.FrameworkDerivative` that ``evaluate``
            calls, where the backend has one, for the backend's ``batch`` to
            vectorise.
    """

    __slots__ = (
        "_lock",
        "_product",
        "_rebuild",
        "_shape",
        "_size_origin",
        "_to_numpy",
        "evaluate",
        "func",
        "operator",
        "runtime",
        "size",
        "traced",
    )

    def __init__(
        self,
        operator: str,
        evaluate: Callable[[np.ndarray], tuple[Any, ...]],
        runtime: Runtime,
        rebuild: tuple[Callable[..., Any], tuple[Any, ...]],
        *,
        size: int | None = None,
        size_origin: str = "",
        func: Callable[..., Any] | None = None,
        traced: FrameworkDerivative | None = None,
    ) -> None:
        if operator not in OPERATORS:
            msg = f"operator must be one of {tuple(OPERATORS)}; got {operator!r}."
            raise ValueError(msg)
        self.operator = operator
        self.func = func
        self.traced = traced
        self.evaluate = evaluate
        self.runtime = runtime
        self.size = size
        self._size_origin = size_origin
        self._rebuild = rebuild
        self._product = OPERATORS[operator].product is not None
        # Read on every call, so kept here rather than looked up in runtime.
        self._shape = None if size is None else (size,)
        self._lock = runtime.lock
        self._to_numpy = runtime.to_numpy

    @property
    def record(self) -> Operator:
        """The operator's :class:`~diffops.operators.Operator` record."""
        return OPERATORS[self.operator]

    def __call__(self, x: Any) -> tuple[Any, ...]:
        """Evaluate at ``x``: the outputs, highest derivative first, value last."""
        # The common case, a plain float vector (validation.is_plain), inline: this
        # is the per-call path. Anything else is converted, once, by as_input_vector.
        if (
            type(x) is np.ndarray
            and x.dtype in NATIVE_FLOATS
            and x.flags.carray
            and (x.shape == self._shape if self._shape else x.ndim == 1 and x.size)
        ):
            if self._product:
                x = x.copy()
        else:
            x = as_input_vector(x, self._product, self.size, self._size_origin)
        try:
            if self._lock is None:
                outputs = self.evaluate(x)
            else:
                with self._lock:
                    outputs = self.evaluate(x)
        except Exception as error:
            self._raise_explained(error)
        to_numpy = self._to_numpy
        dtype = x.dtype
        # Comprehensions: 0.2 µs less than map with itertools.repeat, here.
        if not self._product:
            if to_numpy is None:
                return outputs
            return tuple([to_numpy(output, dtype) for output in outputs])
        if to_numpy is None:
            return (BoundProduct(self, x, outputs[0], outputs[1]), *outputs[1:])
        arrays = [to_numpy(output, dtype) for output in outputs[1:]]
        return (BoundProduct(self, x, outputs[0], arrays[0]), *arrays)

    def _raise_explained(self, error: Exception) -> NoReturn:
        """Raise ``error``, said in the user's terms where it can be (chained)."""
        explained = self._explained(error)
        if explained is None:
            raise error
        raise explained from error

    def _explained(self, error: Exception) -> TypeError | None:
        """The framework's ``error``, said in the user's terms, where it can be."""
        explain = self.runtime.explain
        sentence = None if explain is None else explain(error)
        if sentence is None:
            return None
        msg = (
            f"{self.operator} with the {self.runtime.backend} backend cannot "
            f"differentiate {describe_function(self.func)}: {sentence}"
        )
        return _explained_as(error, msg)

    def __reduce__(self) -> tuple[Any, ...]:
        return self._rebuild

    def __repr__(self) -> str:
        # What the backend's recipe makes it from, as the built-in backends' name it.
        made_from = self._rebuild[1][0] if self._rebuild[1] else self.func
        return f"<diffops {self.operator} of {made_from!r}>"


class BoundProduct(CopiedAsItself):
    """The linear map of a product operator, bound to the point it was made at.

    ``mtp``, ``mhp`` or ``vjp``: applied to ``M`` (or ``u``), it computes the product
    from what the evaluation at ``x`` kept, without evaluating the function again.

    Args:
        derivative: The derivative function that made it: it names the product,
            applies it, and makes it again where it is unpickled.
        point: The point ``x``, a copy owned by the product.
        state: What the backend's evaluation at ``point`` returned for the product.
        like: The output after the product (``H`` for ``mtp``, ``J`` for ``mhp``, the
            value for ``vjp``), whose shape the argument must have, and whose dtype
            (that of the computation) it is converted to.
    """

    __slots__ = ("_derivative", "_dtype", "_point", "_shape", "_state")

    def __init__(
        self,
        derivative: DerivativeFunction,
        point: np.ndarray,
        state: Any,
        like: np.ndarray,
    ) -> None:
        self._derivative = derivative
        self._point = point
        self._state = state
        self._shape: tuple[int, ...] = like.shape
        self._dtype = like.dtype

    @property
    def name(self) -> str:
        """``"mtp"``, ``"mhp"`` or ``"vjp"``."""
        return str(self._derivative.record.product)

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the argument this product takes."""
        return self._shape

    def __call__(self, argument: Any) -> np.ndarray:
        """Apply the product to ``M`` (or ``u``); the result has shape ``(n,)``."""
        # A plain array of the shape and dtype wanted is used as it is
        # (validation.as_product_argument's first case, inline: the per-call path).
        if not (
            type(argument) is np.ndarray
            and argument.shape == self._shape
            and argument.dtype == self._dtype
            and argument.flags.carray
        ):
            record = self._derivative.record
            argument = as_product_argument(
                argument,
                self._shape,
                self._dtype,
                str(record.argument),
                str(record.product),
            )
        runtime = self._derivative.runtime
        try:
            if runtime.lock is None:
                product = runtime.apply(self._state, argument)
            else:
                with runtime.lock:
                    product = runtime.apply(self._state, argument)
        except Exception as error:
            self._derivative._raise_explained(error)
        if runtime.to_numpy is not None:
            product = runtime.to_numpy(product, self._dtype)
        result: np.ndarray = product
        return result

    def __reduce__(self) -> tuple[Any, ...]:
        return (_product_at, (self._derivative, self._point))

    def __repr__(self) -> str:
        record = self._derivative.record
        return (
            f"<{record.product} bound to x of shape {self._point.shape}: "
            f"{record.argument} of shape {self._shape} -> shape {self._point.shape}>"
        )


_EXPLAINED_CLASSES: dict[type[Exception], type[TypeError]] = {}
"""Per class of framework error, the class its explanation is raised as."""


def _explained_as(error: Exception, msg: str) -> TypeError:
    """``msg`` as a ``TypeError``, of ``error``'s own class too where it can be.

    That is, where ``error`` is of a subclass of ``TypeError`` (as JAX's tracing
    errors are), or is one of JAX's errors (the one for a boolean mask is an
    ``IndexError``): the explanation is then an instance of its class too, so that
    code catching it, as it would with the framework used directly (``except
    jax.errors.ConcretizationTypeError``), still does. It is of a subclass made here,
    which pickles (as a process pool sends it) without the framework's ``__init__``,
    whose arguments are its own. Other errors (torch's ``RuntimeError``, Autograd's
    ``ValueError``) become plain ``TypeError``s, whose message says what was wrong.
    """
    cls = type(error)
    if cls is TypeError or not (
        issubclass(cls, TypeError) or cls.__module__.split(".")[0] == "jax"
    ):
        return TypeError(msg)
    with contextlib.suppress(Exception):  # a class that will not be subclassed so
        explained = _explained_instance(cls, msg)
        if str(explained) == msg:
            return explained
    return TypeError(msg)


def _explained_instance(cls: type[Exception], msg: str) -> TypeError:
    """An instance of the subclass of ``cls`` explanations are raised as."""
    explained_cls = _EXPLAINED_CLASSES.get(cls)
    if explained_cls is None:
        namespace = {"__module__": cls.__module__, "__doc__": cls.__doc__,
                     "__reduce__": _reduce_explained}  # fmt: skip
        bases = (cls,) if issubclass(cls, TypeError) else (cls, TypeError)
        made: type[TypeError] = type(cls.__name__, bases, namespace)
        explained_cls = _EXPLAINED_CLASSES[cls] = made
    explained = explained_cls.__new__(explained_cls)
    explained.args = (msg,)
    return explained


def _reduce_explained(explained: TypeError) -> tuple[Any, ...]:
    return (_explained_instance, (type(explained).__bases__[0], explained.args[0]))


def _product_at(derivative: DerivativeFunction, x: np.ndarray) -> BoundProduct:
    """The product ``derivative`` returns at ``x``: how a product unpickles."""
    product: BoundProduct = derivative(x)[0]
    return product


class NumpyReturningFunction(CopiedAsItself):
    """A function of a framework's arrays, made to take and return NumPy arrays.

    What the ``jax``, ``jax_nojit`` and ``torch`` function wrappers return for a
    function that is not one of their derivative functions, as in
    ``wrap_function(f, "jax")``. Arguments, positional and keyword, are converted for
    the framework; the output, or each item of a tuple output, comes back through
    ``to_numpy``, and a function among them (a pullback, say) is made to return NumPy
    arrays in turn.

    Args:
        function: The user's function.
        call: What is called in its place: ``function`` itself, or compiled.
        to_framework: Converts one positional argument for the framework.
        to_numpy: Converts one output: the framework's arrays to NumPy arrays,
            anything else unchanged.
        rebuild: ``(callable, arguments)`` that makes it again where it is unpickled.
    """

    __slots__ = ("__wrapped__", "_call", "_rebuild", "_to_framework", "_to_numpy")

    def __init__(
        self,
        function: Callable[..., Any],
        call: Callable[..., Any],
        to_framework: Callable[[Any], Any],
        to_numpy: Callable[[Any], Any],
        rebuild: tuple[Callable[..., Any], tuple[Any, ...]],
    ) -> None:
        if not callable(function):
            msg = f"function must be callable; got {type(function).__name__}."
            raise TypeError(msg)
        self.__wrapped__ = function
        self._call = call
        self._to_framework = to_framework
        self._to_numpy = to_numpy
        self._rebuild = rebuild

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the function on the arguments converted; return NumPy arrays."""
        convert = self._to_framework
        output = self._call(
            *map(convert, args), **{key: convert(v) for key, v in kwargs.items()}
        )
        if type(output) is tuple:
            return tuple(map(self._returned, output))
        return self._returned(output)

    def _returned(self, value: Any) -> Any:
        """An output as NumPy; a function returned (a pullback) returning NumPy too."""
        if callable(value) and not hasattr(value, "shape"):
            return _numpy_returning(value, self._to_framework, self._to_numpy)
        return self._to_numpy(value)

    def __reduce__(self) -> tuple[Any, ...]:
        return self._rebuild

    def __repr__(self) -> str:
        return f"<{self.__wrapped__!r} returning NumPy arrays>"


def _numpy_returning(
    function: Callable[..., Any],
    to_framework: Callable[[Any], Any],
    to_numpy: Callable[[Any], Any],
) -> NumpyReturningFunction:
    """A function a wrapped function returned, made to return NumPy arrays too."""
    rebuild = (_numpy_returning, (function, to_framework, to_numpy))
    return NumpyReturningFunction(function, function, to_framework, to_numpy, rebuild)
