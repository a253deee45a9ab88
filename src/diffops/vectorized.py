"""Derivative functions evaluated at many points at once: :func:`~diffops.vectorize`.

``vectorize(derivative)(X)``, for ``X`` of shape ``(k, n)``, returns what
``derivative`` returns at each row of ``X``, every array with a leading axis of length
``k``; a product becomes a :class:`BatchedProduct` applying the ``k`` products at
once.
Where the backend can (``jax``, ``jax_nojit``, ``torch``), the rows are evaluated in
one vectorised call (of at most ``chunk_size`` rows); otherwise, and where the
framework cannot vectorise a particular function, one by one, which gives the same
answer. A Dask array ``X`` gives Dask arrays, one task per chunk of rows.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import numpy as np

from diffops.functions import (
    Batching,
    BoundProduct,
    CopiedAsItself,
    DerivativeFunction,
    describe_function,
)
from diffops.operators import OPERATORS
from diffops.validation import (
    as_points,
    as_product_argument,
    check_callable,
    describe_shape,
    real_numbers,
    shape_of,
)

__all__ = ["BatchedProduct", "VectorizedDerivative", "vectorize"]


def vectorize(
    derivative: Callable[..., Any], *, chunk_size: int | None = None
) -> VectorizedDerivative:
    """Evaluate a derivative function at many points at once.

    For ``X`` of shape ``(k, n)``, ``vectorize(derivative)(X)`` returns the tuple
    ``derivative`` returns, each array with a leading axis of length ``k``: row ``i``
    of every output is what ``derivative(X[i])`` returns. Gradients come as
    ``(k, n)``, Hessians as ``(k, n, n)``, Jacobians as ``(k, m, n)``, values as
    ``(k,)`` or ``(k, m)``. A product operator's ``mtp``, ``mhp`` or ``vjp`` comes as
    a :class:`~diffops.vectorized.BatchedProduct` ``P``: ``P(Ms)`` with ``Ms`` of
    shape ``(k, *shape)`` applies row ``i``'s product to ``Ms[i]``, ``P(M)`` applies
    every row's to one ``M``; both return ``(k, n)``.

    The ``jax`` and ``jax_nojit`` backends evaluate the rows in one call of
    :func:`jax.vmap` (compiled with :func:`jax.jit` for ``jax``), products included;
    ``torch`` in one call of :func:`torch.func.vmap`. The other backends, hand-written
    derivative functions and those of registered backends are evaluated row by row,
    in a loop no slower than the caller's own. Where a framework cannot vectorise a
    particular function (Python control flow on values, say), the rows are evaluated
    one by one, with one warning.

    ``X`` may be a Dask array chunked along its first axis only: the outputs are then
    Dask arrays, computed one task per chunk of rows, where Dask runs them. Products
    cannot leave the worker that made them, so a product operator raises
    ``TypeError`` for a Dask ``X``, saying how to apply its product per block.

    Args:
        derivative: A derivative function: one made by
            :func:`~diffops.autodiff_fallback` with any backend, or a hand-written
            function of ``x`` returning the operator's tuple.
        chunk_size: The most rows evaluated in one vectorised call, to bound the
            memory of large outputs (``(k, n, n)`` Hessians); ``None`` for all ``k``.
            The results do not depend on it.

    Returns:
        The vectorised derivative function, a callable of ``X``.

    Raises:
        TypeError: If ``derivative`` is not callable or ``chunk_size`` not an integer.
        ValueError: If ``chunk_size`` is not positive.
    """
    return VectorizedDerivative(derivative, chunk_size=chunk_size)


def _check_chunk_size(chunk_size: Any) -> int | None:
    if chunk_size is None:
        return None
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int | np.integer):
        msg = (
            "chunk_size must be a positive integer or None; got "
            f"{type(chunk_size).__name__} {chunk_size!r}."
        )
        raise TypeError(msg)
    if chunk_size < 1:
        msg = f"chunk_size must be a positive integer or None; got {chunk_size}."
        raise ValueError(msg)
    return int(chunk_size)


def _as_tuple(outputs: Any) -> tuple[Any, ...]:
    return outputs if isinstance(outputs, tuple) else (outputs,)


def _copied_columns(
    derivative: Callable[..., Any], points: np.ndarray
) -> list[tuple[Any, ...]]:
    """Each output of ``derivative`` at every row, each a copy; products as they are.

    Each call gets a copy of its row, which a product it returns may keep. Every
    output that is not a product must be numbers, of the same shape at every row.
    """
    columns: list[tuple[Any, ...]] = []
    first: list[tuple[int, ...] | None] = []
    for row, point in enumerate(points):
        outputs = tuple(
            output if callable(output) else _numbers(output, derivative, index, row)
            for index, output in enumerate(_as_tuple(derivative(point.copy())))
        )
        shapes = [None if callable(o) else o.shape for o in outputs]
        if row == 0:
            first = shapes
        elif shapes != first:
            msg = (
                f"{describe_function(derivative)} returned outputs of shapes "
                f"{shapes} at row {row} of X but {first} at row 0; vectorize stacks "
                "them, so they must agree."
            )
            raise ValueError(msg)
        columns.append(outputs)
    return list(zip(*columns, strict=True))


def _numbers(output: Any, derivative: Any, index: int, row: int) -> np.ndarray:
    """``output`` as a new array of numbers, or a ``TypeError`` saying what it is."""
    array, what = real_numbers(output)
    if array is None:
        msg = (
            f"vectorize needs {describe_function(derivative)} to return arrays of "
            f"numbers; output {index} at row {row} of X is {what}."
        )
        if isinstance(output, list):
            msg += " Return the outputs as a tuple, not a list."
        raise TypeError(msg)
    return array


class VectorizedDerivative:
    """A derivative function evaluated at every row of ``X``.

    See :func:`~diffops.vectorize`.

    Args:
        derivative: The derivative function of one point.
        chunk_size: The most rows in one vectorised call, or ``None``.
    """

    __slots__ = ("_batching", "_lock", "_vectorises", "chunk_size", "derivative")

    def __init__(
        self, derivative: Callable[..., Any], *, chunk_size: int | None = None
    ) -> None:
        check_callable(derivative, "vectorize", "derivative")
        self.derivative = derivative
        self.chunk_size = _check_chunk_size(chunk_size)
        self._batching: Batching | None = None
        self._vectorises = (
            isinstance(derivative, DerivativeFunction)
            and derivative.runtime.batch is not None
        )
        self._lock = threading.Lock()

    def __reduce__(self) -> tuple[Any, ...]:
        return (_vectorized, (self.derivative, self.chunk_size))

    def __repr__(self) -> str:
        return f"<vectorized {self.derivative!r}>"

    def __call__(self, X: Any) -> tuple[Any, ...]:
        """The outputs at every row of ``X``, each with a leading axis of length k."""
        if type(X).__module__.split(".")[0] == "dask":
            return self._dask(X)
        points = as_points(X, "X", size=getattr(self.derivative, "size", None))
        if not self._vectorises:
            return self._looped(points)
        try:
            return self._vectorised(points)
        except Exception as error:  # the framework's, whatever it is
            failure = error
        # Point by point: where that fails too, the function (or X) is at fault, and
        # its error is raised; where it succeeds, the framework could not vectorise
        # the function, and the points are evaluated one by one from now on.
        outputs = self._looped(points)
        self._fall_back(failure)
        return outputs

    def _chunks(self, k: int) -> list[slice]:
        size = self.chunk_size or k
        if size >= k:
            return [slice(None)]
        return [slice(start, min(start + size, k)) for start in range(0, k, size)]

    def _fall_back(self, error: Exception) -> None:
        """Evaluate row by row from now on, saying so once (``error`` says why)."""
        self._vectorises = False
        derivative = self.derivative
        assert isinstance(derivative, DerivativeFunction)
        warnings.warn(
            f"vectorize: the {derivative.runtime.backend} backend could not vectorise "
            f"{derivative.operator} of {describe_function(derivative.func)} "
            f"({type(error).__name__}: {str(error).splitlines()[0]}), so its points "
            "are evaluated one by one.",
            UserWarning,
            stacklevel=3,
        )

    def _holding_lock(self) -> AbstractContextManager[Any]:
        derivative = self.derivative
        assert isinstance(derivative, DerivativeFunction)
        lock = derivative.runtime.lock
        return nullcontext() if lock is None else lock

    def _batch(self) -> Batching:
        """The backend's way of evaluating many points at once, made on first use."""
        if self._batching is None:
            with self._lock:
                if self._batching is None:
                    derivative = self.derivative
                    assert isinstance(derivative, DerivativeFunction)
                    assert derivative.runtime.batch is not None
                    self._batching = derivative.runtime.batch(derivative)
        return self._batching

    def _vectorised(self, points: np.ndarray) -> tuple[Any, ...]:
        derivative = self.derivative
        assert isinstance(derivative, DerivativeFunction)
        runtime, batching = derivative.runtime, self._batch()
        product = OPERATORS[derivative.operator].product
        to_numpy, lock = runtime.to_numpy, self._holding_lock()
        k, states = points.shape[0], []
        arrays: list[np.ndarray] = []
        for rows in self._chunks(k):
            with lock:
                outputs = batching.evaluate(points[rows])
            if product is not None:
                states.append((rows, outputs[0]))
                outputs = outputs[1:]
            if to_numpy is not None:
                outputs = tuple([to_numpy(output, points.dtype) for output in outputs])
            if rows == slice(None):  # all at once
                arrays = list(outputs)
                continue
            # In chunks, into arrays made once, so that a chunk's outputs are all the
            # memory held besides them.
            if not arrays:
                arrays = [np.empty((k, *o.shape[1:]), o.dtype) for o in outputs]
            for array, output in zip(arrays, outputs, strict=True):
                array[rows] = output
        if product is None:
            return tuple(arrays)
        applied = _BatchedApply(batching, to_numpy, lock)
        batched = BatchedProduct(
            self, points.copy(), states, arrays[0], product, applied
        )
        return (batched, *arrays)

    def _looped(self, points: np.ndarray) -> tuple[Any, ...]:
        """The outputs at every row, by a call per row.

        diffops' own derivative functions return new arrays and bind their products
        to a copy of the point, so their outputs are stacked at the end. Any other
        function gets a copy of each row (its product may keep it), and its outputs
        are copied into the result as they come (it may reuse its buffers).
        """
        derivative = self.derivative
        if isinstance(derivative, DerivativeFunction):
            columns = list(zip(*map(derivative, points), strict=True))
        else:
            columns = _copied_columns(derivative, points)
        if not callable(columns[0][0]):
            return tuple(map(np.array, columns))
        products = list(columns[0])
        arrays = list(map(np.array, columns[1:]))
        name = getattr(products[0], "name", "product")
        # diffops' products take their argument in the dtype they compute in, that
        # of the output after them; a hand-written one, whose outputs may be of any
        # type (integers, say), in the point's.
        dtype = None if isinstance(derivative, DerivativeFunction) else points.dtype
        batched = BatchedProduct(
            self, points.copy(), products, arrays[0], name, dtype=dtype
        )
        return (batched, *arrays)

    def _dask(self, X: Any) -> tuple[Any, ...]:
        import dask.array as da
        from dask.delayed import delayed

        if X.ndim != 2 or len(X.chunks[1]) != 1:
            msg = (
                f"X must be a 2-D Dask array of shape (k, n) chunked along its first "
                f"axis only; got shape {X.shape} with chunks {X.chunks}: rechunk it "
                "with X.rechunk({1: -1})."
            )
            raise ValueError(msg)
        probe = self(np.asarray(X[:1].compute()))
        if isinstance(probe[0], BatchedProduct):
            msg = (
                f"vectorize(...)(X) with a Dask array X returns no {probe[0].name}: a "
                "product is bound to points held where a block was evaluated. Apply "
                "it there, per block; for one M at every point: "
                "X.map_blocks(lambda block: vectorized(block)[0](M), dtype=X.dtype)."
            )
            raise TypeError(msg)
        tasks = [delayed(self)(block) for block in X.to_delayed()[:, 0]]
        outputs = []
        for index, like in enumerate(probe):
            blocks = [
                da.from_delayed(task[index], (rows, *like.shape[1:]), like.dtype)
                for task, rows in zip(tasks, X.chunks[0], strict=True)
            ]
            outputs.append(da.concatenate(blocks))
        return tuple(outputs)


def _vectorized(
    derivative: Callable[..., Any], chunk_size: int | None
) -> VectorizedDerivative:
    """How a vectorised derivative function unpickles."""
    return VectorizedDerivative(derivative, chunk_size=chunk_size)


class _BatchedApply:
    """A backend's batch of products, applied under its lock, as NumPy."""

    __slots__ = ("_batching", "_lock", "_to_numpy")

    def __init__(
        self,
        batching: Batching,
        to_numpy: Callable[[Any, np.dtype[Any]], Any] | None,
        lock: AbstractContextManager[Any],
    ) -> None:
        self._batching = batching
        self._to_numpy = to_numpy
        self._lock = lock

    def __call__(self, state: Any, argument: np.ndarray, shared: bool) -> np.ndarray:
        assert self._batching.apply is not None
        with self._lock:
            product = self._batching.apply(state, argument, shared)
        if self._to_numpy is not None:
            product = self._to_numpy(product, argument.dtype)
        result: np.ndarray = product
        return result


_ARGUMENTS = {
    record.product: record.argument
    for record in OPERATORS.values()
    if record.product is not None and record.argument is not None
}
"""Each of diffops' products' argument: ``"M"``, or ``"u"`` (of ``vjp``, any shape)."""


class BatchedProduct(CopiedAsItself):
    """The ``k`` products of a vectorised product operator, applied together.

    ``P(Ms)`` with ``Ms`` of shape ``(k, *shape)`` applies row ``i``'s product to
    ``Ms[i]``; ``P(M)`` with ``M`` of the product's own shape applies every row's to
    ``M``. Both return an array of shape ``(k, n)``.

    Args:
        vectorized: The vectorised derivative function that made it.
        points: The ``k`` points, a copy it owns.
        states: Per chunk of rows, ``(rows, state)`` of the backend's batch of
            products; or, evaluated row by row, the ``k`` products themselves.
        like: The output after the product, shape ``(k, *shape)``.
        name: ``"mtp"``, ``"mhp"`` or ``"vjp"``.
        apply: Applies a chunk's state; ``None`` for products evaluated row by row.
        dtype: The dtype the argument is converted to; ``None`` for ``like``'s,
            the dtype diffops' products compute in.
    """

    __slots__ = (
        "_apply",
        "_dtype",
        "_each",
        "_points",
        "_shape",
        "_states",
        "_vectorized",
        "name",
    )

    def __init__(
        self,
        vectorized: VectorizedDerivative,
        points: np.ndarray,
        states: list[Any],
        like: np.ndarray,
        name: str,
        apply: Callable[[Any, np.ndarray, bool], np.ndarray] | None = None,
        *,
        dtype: np.dtype[Any] | None = None,
    ) -> None:
        self._vectorized = vectorized
        self._points = points
        self._states = states
        self._shape: tuple[int, ...] = like.shape[1:]
        self._dtype = like.dtype if dtype is None else dtype
        self._apply = apply
        self._each: list[BoundProduct] | None = None  # the products, one by one
        self.name = name

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of the argument of each row's product."""
        return self._shape

    def __call__(self, argument: Any) -> np.ndarray:
        """Apply the products; the result has shape ``(k, n)``."""
        k = self._points.shape[0]
        # A hand-written product's argument is named by its shape.
        name = _ARGUMENTS.get(self.name, "u" if len(self._shape) == 1 else "M")
        given = shape_of(argument)
        if given == (k, *self._shape):
            shared, shape = False, given
        elif given == self._shape:
            shared, shape = True, given
        else:
            what = type(argument).__name__ if given is None else describe_shape(given)
            msg = (
                f"{name} must have shape {(k, *self._shape)}, one per point, or "
                f"{self._shape}, one for every point, for this batch of "
                f"{self.name}; got {what}."
            )
            raise (TypeError if given is None else ValueError)(msg)
        argument = as_product_argument(argument, shape, self._dtype, name, self.name)
        apply = self._apply
        each = self._states if apply is None else self._each
        if each is not None:
            return self._applied_each(each, argument, shared)
        assert apply is not None
        try:
            return np.concatenate(
                [
                    apply(state, argument if shared else argument[rows], shared)
                    for rows, state in self._states
                ]
            )
        except Exception as error:  # the framework's, whatever it is
            failure = error
        # Point by point, as the vectorised call falls back: where that fails too,
        # the function is at fault, and its error is raised; where it succeeds, the
        # framework could not vectorise the product (a backward pass of the user's
        # that branches on a value, a loop JAX takes forward only), and this batch's
        # products, and the rows of later batches, are evaluated one by one.
        derivative = self._vectorized.derivative
        assert isinstance(derivative, DerivativeFunction)
        each = [derivative(point)[0] for point in self._points]
        result = self._applied_each(each, argument, shared)
        self._each = each
        self._vectorized._fall_back(failure)
        return result

    def _applied_each(
        self, products: list[Any], argument: np.ndarray, shared: bool
    ) -> np.ndarray:
        """Each row's product, applied in turn; each result copied as it comes.

        A copy, as a hand-written product may return the same buffer every time;
        stacked in the dtype the products return, as a loop of calls gives it.
        """
        n = self._points.shape[1]
        rows = []
        for index, product in enumerate(products):
            row, what = real_numbers(product(argument if shared else argument[index]))
            if row is None:
                msg = (
                    f"the {self.name} of row {index} returned {what}; a product "
                    f"returns an array of real numbers of shape ({n},)."
                )
                raise TypeError(msg)
            if row.shape != (n,):
                msg = (
                    f"the {self.name} of row {index} returned an array of shape "
                    f"{row.shape}; a product returns one of shape ({n},)."
                )
                raise ValueError(msg)
            rows.append(row)
        return np.stack(rows)  # in the dtype the products return

    def __reduce__(self) -> tuple[Any, ...]:
        return (_batched_product_at, (self._vectorized, self._points))

    def __repr__(self) -> str:
        k = self._points.shape[0]
        return f"<{k} {self.name} bound to the rows of X of shape {self._points.shape}>"


def _batched_product_at(
    vectorized: VectorizedDerivative, points: np.ndarray
) -> BatchedProduct:
    """How a batch of products unpickles."""
    product: BatchedProduct = vectorized(points)[0]
    return product
