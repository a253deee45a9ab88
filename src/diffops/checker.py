"""Check hand-written derivative functions against a reference.

:func:`~diffops.check_derivatives` evaluates each of the user's derivative functions
at some points and compares every output it returns (the products applied to a seeded
random ``M`` or ``u``) with a reference computed independently:

* ``reference="finite_differences"`` needs no framework: ``func`` may be plain NumPy.
  Derivatives are :func:`diffops.finite_differences.jacobian`: central differences
  with a step scaled to each coordinate, improved twice by Richardson extrapolation
  (error ``O(h⁶)``). The value is compared with ``func(x)``; ``g``, ``J`` and
  ``vjp(u)`` with differences of ``func``; ``H``, ``mtp(M)`` and ``mhp(M)`` with
  differences of the output below them as *your* function returns it (your ``g``,
  ``Σ M ∘ H``, ``Σ M ∘ J``), which is itself checked against ``func``, so that each
  reference is one difference of something exact. As yours is checked at the point
  alone, such an output is also checked along a random direction against nested
  differences of ``func`` alone (``_Along``). Where your function returns only
  its highest output, they difference the references below instead, nested.
* ``reference=NAME`` uses the operators of that backend (``func`` is then written for
  it).

A product that passed is applied again after a call at another point, and fails where
it then gives another result: it is not bound to its point (``_rebound``).

The precision of the check follows that of the outputs: a function that computes in
float32 (JAX with its 64-bit mode off, say) is differenced with larger steps and
checked with looser default tolerances, and the report says so. An entry passes when
``|actual - expected| ≤ atol · scale + rtol · |expected| + rounding``, where
``scale`` is ``max(1, largest |expected| entry of that output)`` and ``rounding``
the most that rounding can move the reference: about ``30 ε / h`` (``ε`` of the
precision, ``h`` the step, for each nesting) times the size of what was differenced.
Where an output passes only with that allowance, and it is over half a percent of
``scale`` (float32 differences of a large ``f``), the comparison is inconclusive, and
does not pass. So is one whose differences bound their own error
(:func:`diffops.finite_differences.jacobian_and_bound`) by over half a percent of
``scale``, or that passes only with that bound allowed for too, or that fails only
where that bound is over a tenth of ``scale``: a function varying faster than the
steps can follow, as ``tan`` does near its pole.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import re
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

import numpy as np

from diffops import finite_differences
from diffops.functions import NumpyReturningFunction
from diffops.operators import DIFF_OPS, OPERATORS, Operator
from diffops.registry import REGISTERED_BACKENDS, autodiff_fallback
from diffops.validation import as_points, check_output_kind, real_numbers, shape_of

__all__ = [
    "Comparison",
    "DerivativeCheckError",
    "DerivativeReport",
    "check_derivatives",
]


class _Precision(NamedTuple):
    """How outputs computed in one floating-point type are checked."""

    rtol: float
    atol: float
    # The relative step for differencing what is exact, or differenced once or twice.
    steps: tuple[float, float, float]
    epsilon: float

    def rounding(self, accuracy: _Accuracy) -> float:
        """The most rounding can move a reference of this ``accuracy``.

        Differencing values rounded to ``ε`` relative with step ``h`` errs by up to
        about ``ε / h`` of their size, times the weights of the extrapolation (the
        30 allows for them); each nested difference divides by its step again.
        """
        steps = float(np.prod(self.steps[: accuracy.depth]))
        return 30 * self.epsilon * accuracy.source / steps if accuracy.depth else 0.0


# In float32 a function's values carry rounding of 6e-8: the steps balance it against
# the truncation error of the extrapolated differences, and the tolerances are those
# at which correct derivatives of smooth functions pass and an entry 1 % off fails.
_PRECISIONS = {
    "float64": _Precision(
        1e-5, 1e-6, (1e-3, 1e-2, 3e-2), float(np.finfo(np.float64).eps)
    ),
    "float32": _Precision(
        5e-4, 1e-4, (5e-2, 1.5e-1, 3e-1), float(np.finfo(np.float32).eps)
    ),
}


_FLOAT64 = _PRECISIONS["float64"]


class DerivativeCheckError(AssertionError):
    """Raised by :meth:`DerivativeReport.raise_if_failed`; the message is the table."""


@dataclasses.dataclass(frozen=True)
class Comparison:
    """One output of one operator at one point, compared with the reference.

    Attributes:
        operator: Name of the operator, one of :data:`diffops.DIFF_OPS`.
        point: Index of the point among those checked.
        output: Which output: ``"g"``, ``"H"``, ``"mtp(M)"``, ``"v"`` (the value),
            ...
        max_abs_error: Largest absolute difference from the reference.
        max_rel_error: Largest difference relative to the reference entry, or to
            ``atol`` times the output's largest entry where that is larger.
        where: Index of the entry with the largest excess over the tolerance.
        ok: Whether the output passed: every entry within the tolerance, and the
            comparison conclusive.
        note: Why the comparison failed where not by its numbers (a wrong shape,
            a wrong number of outputs, a reference that is not finite), or why it is
            inconclusive; empty otherwise.
        inconclusive: Whether the reference cannot tell this output: it is within
            the tolerance only with the allowance for the reference's rounding, and
            that allowance (large for float32 differences of a large ``f``) is over
            half a percent of the output's scale; or the differences bound their
            own error by more than that, or it is within the tolerance only with
            that bound allowed for too. Such an output has not passed (``ok`` is
            false).
    """

    operator: str
    point: int
    output: str
    max_abs_error: float
    max_rel_error: float
    where: tuple[int, ...]
    ok: bool
    note: str = ""
    inconclusive: bool = False


@dataclasses.dataclass(frozen=True)
class DerivativeReport:
    """The result of :func:`check_derivatives`, a comparison per output.

    One :class:`~diffops.checker.Comparison` per output; ``str(report)`` is a table of
    them.

    Attributes:
        comparisons: One per operator, point and output, in that order.
        reference: ``"finite_differences"`` or the name of the backend compared with.
        rtol: The relative tolerance used.
        atol: The absolute tolerance used.
        precision: The floating-point type the outputs were computed in,
            ``"float64"`` or ``"float32"`` (the lower where they differ, and
            ``"float32"`` for float32 points, whatever the outputs' dtype), which set
            the steps of the differences and the default tolerances.
    """

    comparisons: tuple[Comparison, ...]
    reference: str
    rtol: float
    atol: float
    precision: str = "float64"

    @property
    def ok(self) -> bool:
        """Whether every output of every operator matched at every point.

        An inconclusive comparison has not matched.
        """
        return all(comparison.ok for comparison in self.comparisons)

    def __bool__(self) -> bool:
        """:attr:`ok`: so that ``assert check_derivatives(...)`` asserts the check.

        A dataclass is otherwise always true, and that assert always passed.
        """
        return self.ok

    def failures(self) -> tuple[Comparison, ...]:
        """The comparisons that did not pass, inconclusive ones included."""
        return tuple(c for c in self.comparisons if not c.ok)

    def __str__(self) -> str:
        header = (
            f"{'operator':<28}{'point':>6}  {'output':<11}{'max abs err':>13}"
            f"{'max rel err':>13}  {'where':<10}result"
        )
        lines = [
            f"diffops derivative check against {self.reference}, outputs in "
            f"{self.precision} (rtol={self.rtol:g}, atol={self.atol:g})",
            header,
            "-" * len(header),
        ]
        for c in self.comparisons:
            where = "-" if not c.where else str(c.where)
            verdict = "inconclusive" if c.inconclusive else "ok" if c.ok else "FAIL"
            if c.ok and c.note.startswith(_SKIPPED):
                verdict = "skipped"
            result = verdict + (f" ({c.note})" if c.note else "")
            lines.append(
                f"{c.operator:<28}{c.point:>6}  {c.output:<11}{c.max_abs_error:>13.3e}"
                f"{c.max_rel_error:>13.3e}  {where:<10}{result}"
            )
        failures = self.failures()
        unknown = sum(c.inconclusive for c in failures)
        verdicts = []
        if len(failures) > unknown:
            verdicts.append(f"{len(failures) - unknown} output(s) do not match")
        if unknown:
            where = "in float64, or " if self.precision == "float32" else ""
            verdicts.append(
                f"{unknown} cannot be checked at this precision (inconclusive): check "
                f"them {where}against a backend (reference=...)"
            )
        lines.append("; ".join(verdicts) or "all outputs match")
        return "\n".join(lines)

    def raise_if_failed(self) -> None:
        """Raise :class:`DerivativeCheckError`, with the table, if any output failed."""
        if not self.ok:
            raise DerivativeCheckError("\n" + str(self))


# The references: functions of x returning what a derivative function of the
# operator returns, the product as a callable.


def _as_tuple(outputs: Any) -> tuple[Any, ...]:
    return outputs if isinstance(outputs, tuple) else (outputs,)


def _yours(
    derivative: Callable[..., Any],
    operator: Operator,
    x: np.ndarray,
    m: int,
    func: Callable[[np.ndarray], Any],
) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    """The outputs of your function that the references of others difference.

    ``g`` below ``H``, and ``H`` or ``J`` below a product, as functions of ``x``,
    where your function returns them in the shape they should have; NaN where
    ``func`` is not finite (:func:`_output_at`). Your function is called once at
    each point, for all of them (:class:`_Remembered`).
    """
    returned = _as_tuple(derivative(x.copy()))
    shapes = {"g": (x.size,), "H": (x.size, x.size), "J": (m, x.size)}
    differenced = {"g"} if "H" in operator.outputs else set()
    if operator.product is not None:
        differenced.add(operator.outputs[1])
    indices: dict[str, int] = {}
    for index, name in enumerate(operator.outputs[: len(returned)]):
        if name not in differenced or name not in shapes:
            continue
        if shape_of(returned[index]) == shapes[name]:
            if isinstance(_as_real(returned[index]), str):
                continue  # it fails its own comparison, saying why
            indices[name] = index
    outputs = _Remembered(
        functools.partial(_outputs_of, derivative, tuple(indices.values())),
        _KEPT_OUTPUTS,
    )
    return {
        name: functools.partial(_output_at, outputs, position, func)
        for position, name in enumerate(indices)
    }


def _outputs_of(
    derivative: Callable[..., Any], indices: tuple[int, ...], y: np.ndarray
) -> tuple[np.ndarray, ...]:
    """Your outputs at ``indices`` at ``y``, each copied as a new float array.

    On a copy of ``y``, which your function may write into; copied, as your function
    may return a buffer of its own that its next call rewrites.
    """
    returned = _as_tuple(derivative(y.copy()))
    return tuple(np.array(returned[index], float) for index in indices)


def _output_at(
    outputs: Callable[[np.ndarray], tuple[np.ndarray, ...]],
    position: int,
    func: Callable[[np.ndarray], Any],
    y: np.ndarray,
) -> Any:
    """One of your ``outputs`` at ``y``; NaN where ``func`` is not finite there.

    Past the edge of ``func``'s domain your derivatives may still be finite (``-1/(1
    - x)`` for ``log(1 - x)`` beyond ``x = 1``), and a step there would difference
    them as if ``func`` were defined: NaN, as ``func`` is, has smaller steps tried.
    """
    output = outputs(y)[position]
    if not np.all(np.isfinite(output)):
        return output  # taken as NaN anyway, without evaluating func
    try:
        defined = bool(np.all(np.isfinite(np.asarray(func(y.copy()), float))))
    except finite_differences.OUTSIDE:
        defined = False
    return output if defined else np.full(output.shape, np.nan)


class _Differenced(NamedTuple):
    """A reference by differences, and the bound on its error they give."""

    estimate: Any
    bound: Any  # per entry, or one number for all


def _split(reference_output: Any) -> tuple[Any, Any]:
    """A reference output and the bound on its error: none but by differences."""
    if isinstance(reference_output, _Differenced):
        return reference_output.estimate, reference_output.bound
    return reference_output, 0.0


def _estimate(
    reference: Callable[[np.ndarray], _Differenced],
) -> Callable[[np.ndarray], np.ndarray]:
    """``reference``'s estimate alone, as a function of ``x``, to difference again."""
    return lambda y: np.asarray(reference(y).estimate)


class _Accuracy(NamedTuple):
    """How far a reference may be from the truth by rounding alone.

    ``depth`` nested differences of something whose entries are up to ``source`` in
    size (for a product, per unit of ``Σ |A|``, the size of its argument).
    """

    depth: int
    source: float


_EXACT = _Accuracy(0, 0.0)


def _largest(array: Any) -> float:
    return float(np.max(np.abs(np.asarray(array, float)), initial=0.0))


class _Along(NamedTuple):
    """An output whose reference is differenced from yours below it, checked again.

    Your ``g`` (``H``, ``J``) is compared with ``func`` at the point alone, so a
    reference differenced from it is only as right as yours is near the point: a
    wrong ``g`` that is right there (0 at a mode, as the true one is) passes, and so
    does an ``H`` made to match it. So that output is also compared, contracted with
    a seeded random direction ``v`` (and ``u``), with the derivative of ``t ↦
    func(x + t v)`` of its order at 0, differenced from ``func`` alone: ``vᵀHv``
    with the second, ``vᵀ mtp(v vᵀ)`` with the third, ``vᵀ mhp(u vᵀ)`` with ``u ·``
    the second of ``c``.
    """

    label: str
    position: int
    """Of the output among those your function returns."""
    reference: Callable[[np.ndarray, Any], _Differenced]
    """``(v, u) ↦`` the reference, ``u`` ``None`` but for ``mhp``."""
    accuracy: _Accuracy
    product: bool = False
    """Whether the output is a product, applied to ``v vᵀ`` (``u vᵀ``), or a matrix."""
    rows: int | None = None
    """The length of ``u``, for ``mhp``."""


def _along(
    func: Callable[[np.ndarray], Any],
    x: np.ndarray,
    first: np.ndarray,
    order: int,
    precision: _Precision,
    direction: np.ndarray,
) -> _Differenced:
    """The ``order``-th derivative of ``t ↦ func(x + t·direction)`` at 0, differenced.

    The direction is not scaled up to large coordinates: a step scaled to a large
    one spans features of ``func`` there (``sin(3x)`` at ``x = 100``) that the
    differences along one direction, unlike those along each coordinate, cannot
    then tell from their bound (:func:`_compare_along` scales it down, near a
    domain's edge).

    ``x + t·direction`` is rounded to ``x``'s precision, which moves the values by up
    to ``ε |first| |x|`` (``first``: ``∂func/∂x`` at ``x``): noise the differences bear.
    """
    differenced = functools.partial(
        finite_differences.jacobian_and_bound, epsilon=precision.epsilon
    )

    def values(t: np.ndarray) -> _Differenced:
        # Copied: func may return a buffer of its own that its next call rewrites.
        return _Differenced(np.array(func(x + (t[0] - 0.5) * direction), float), 0.0)

    def differentiated(
        below: Callable[[np.ndarray], _Differenced], step: float, noise: float
    ) -> Callable[[np.ndarray], _Differenced]:
        return lambda t: _Differenced(
            *differenced(_estimate(below), t, step, noise=noise)
        )

    # At t = 1/2 rather than 0: the differences then try smaller steps where the
    # first cannot tell (a step of 0's scale is taken alone).
    origin = np.full(1, 0.5, direction.dtype)
    noise = precision.epsilon * _largest(np.abs(first) @ np.abs(x))
    level: Callable[[np.ndarray], _Differenced] = values
    for depth in range(order):
        level = differentiated(level, precision.steps[depth], noise)
        if depth + 1 < order:  # the bound of this level is noise to the next
            noise = _largest(level(origin).bound)
    estimate, bound = level(origin)
    shape = np.shape(estimate)[:-order]  # of func's value: the t axes dropped
    return _Differenced(np.reshape(estimate, shape), np.reshape(bound, shape))


def _finite_difference_outputs(
    func: Callable[[np.ndarray], Any],
    operator: Operator,
    precision: _Precision,
    derivative: Callable[..., Any],
    x: np.ndarray,
) -> tuple[list[Any], list[_Accuracy], list[_Along]]:
    steps = precision.steps
    # Differences at the precision the outputs were computed in, whatever the
    # dtype they are compared in.
    differenced = functools.partial(
        finite_differences.jacobian_and_bound, epsilon=precision.epsilon
    )

    def value(y: np.ndarray) -> _Differenced:
        # On a copy of x, which func may write into; its value copied, as it may
        # be a buffer of func's own that the next call rewrites.
        return _Differenced(np.array(func(y.copy()), float), 0.0)

    def first(y: np.ndarray) -> _Differenced:  # g or J, from f
        return _Differenced(*differenced(_estimate(value), y, steps[0]))

    f = value(x).estimate
    yours = _yours(derivative, operator, x, int(np.size(f)), func)

    @functools.cache
    def noise() -> float:  # the differenced g's error, which differences of it bear
        return _largest(first(x).bound)

    def hessian(y: np.ndarray) -> _Differenced:  # from your g, or from differences
        if "g" in yours:
            return _Differenced(*differenced(yours["g"], y, steps[0]))
        return _Differenced(*differenced(_estimate(first), y, steps[1], noise=noise()))

    arrays = {"v": value, "g": first, "J": first, "H": hessian}
    accuracy = {"v": _EXACT, "g": _Accuracy(1, _largest(f))}
    accuracy["J"] = accuracy["g"]
    if "H" in operator.outputs:  # your g evaluated only where H is differenced
        accuracy["H"] = (
            _Accuracy(1, _largest(yours["g"](x)))
            if "g" in yours
            else _Accuracy(2, _largest(f))
        )
    names = [name for name in operator.outputs if name in arrays]
    outputs: list[Any] = [arrays[name](x) for name in names]
    accuracies = [accuracy[name] for name in names]
    # Outputs differenced from yours below them, checked along a direction too.
    along: list[_Along] = []

    def checked(order: int, direction: np.ndarray) -> _Differenced:
        slope = outputs[names.index("J" if "J" in names else "g")].estimate
        return _along(func, x, slope, order, precision, direction)

    if "H" in names and "g" in yours:
        along.append(
            _Along(
                "vᵀHv",
                operator.outputs.index("H"),
                lambda v, u: checked(2, direction=v),
                _Accuracy(2, _largest(f)),
            )
        )
    if operator.product is None:
        return outputs, accuracies, along
    # Every product is the derivative of ⟨A, the output after it⟩: mtp(M) of
    # Σ M ∘ H, mhp(M) of Σ M ∘ J, vjp(u) of u · c; yours where you return it.
    below = operator.outputs[1]
    if below in yours:
        below_at, depth, bound = yours[below], 1, 0.0
        source = _largest(below_at(x))
    else:
        below_at, depth = _estimate(arrays[below]), accuracy[below].depth + 1
        source = _largest(f)
        bound = _largest(outputs[names.index(below)].bound)

    def product(argument: np.ndarray) -> _Differenced:
        contracted = lambda y: np.sum(argument * below_at(y))  # noqa: E731
        # Differences of your output are rounded as it is; of an output by
        # differences, also off by up to its bound, entry by entry.
        noise = bound * float(np.sum(np.abs(argument)))
        return _Differenced(*differenced(contracted, x, steps[depth - 1], noise=noise))

    # Not in float32, whose third differences cannot tell: there an mtp rests on
    # your H near the point.
    if below in yours and operator.product == "mtp" and precision is _FLOAT64:
        along.append(
            _Along(
                "vᵀmtp(vvᵀ)",
                0,
                lambda v, u: checked(3, direction=v),
                _Accuracy(3, _largest(f)),
                product=True,
            )
        )
    elif below in yours and operator.product == "mhp":  # from your J

        def second(v: np.ndarray, u: np.ndarray) -> _Differenced:
            estimate, bound = checked(2, direction=v)
            return _Differenced(u @ estimate, np.abs(u) @ bound)

        accurate = _Accuracy(2, _largest(f))
        along.append(_Along("vᵀmhp(uvᵀ)", 0, second, accurate, True, np.size(f)))
    return [product, *outputs], [_Accuracy(depth, source), *accuracies], along


def _reference(
    func: Callable[..., Any],
    operator: Operator,
    reference: str,
    precision: _Precision,
    derivative: Callable[..., Any],
) -> Callable[[np.ndarray], tuple[Any, list[_Accuracy], list[_Along]]]:
    """What ``operator`` of ``func`` returns at ``x``, and how accurately.

    With what of yours to check along a direction too (:class:`_Along`). Built once
    per operator, called once per point.
    """
    if reference == "finite_differences":
        return functools.partial(
            _finite_difference_outputs, func, operator, precision, derivative
        )
    backend = autodiff_fallback(
        None, _unnoted(func), operator.name, operator.name, reference
    )
    noted = _noting(backend, f"the {reference} reference for {operator.name}")
    return functools.partial(_exactly, noted, len(operator.outputs))


def _exactly(
    derivative: Callable[..., Any], count: int, x: np.ndarray
) -> tuple[Any, list[_Accuracy], list[_Along]]:
    return derivative(x), [_EXACT] * count, []


def _float_bits(dtype: Any) -> int | None:
    """The bits of a floating-point dtype of any framework, or ``None``."""
    try:
        numpy_dtype = np.dtype(dtype)
    except TypeError:  # a framework's own, such as torch.float32
        name = str(dtype)
    else:
        if numpy_dtype.kind == "f":
            return 8 * int(numpy_dtype.itemsize)
        name = numpy_dtype.name  # ml_dtypes' bfloat16 (JAX's) is of kind "V"
    match = re.fullmatch(r"b?float(\d+)", name.rpartition(".")[2])
    return int(match.group(1)) if match else None


def _precision_of(values: list[Any]) -> str:
    """``"float32"`` where any of ``values`` is an array of float32 (or less)."""
    for value in values:
        bits = _float_bits(getattr(value, "dtype", None))
        if bits is not None and bits < 64:
            return "float32"
    return "float64"


def _noting(function: Callable[..., Any], what: str) -> Callable[..., Any]:
    """``function``, whose exceptions say that ``what`` raised them."""

    @functools.wraps(function)
    def noted(*args: Any) -> Any:
        try:
            return function(*args)
        except (Exception, SystemExit) as error:
            if not any(note.startswith("raised by ") for note in _notes(error)):
                error.add_note(f"raised by {what}")
            raise

    return noted


class _Remembered:
    """``compute``'s arrays at each point, kept, by point, for one check.

    The differences of ``func`` and the checks of where it is defined
    (:func:`_output_at`) step to many of the same points, and several outputs and
    operators checked at a point to all of them: each point is evaluated once, which
    halves the calls of ``func`` for a check of ``g``, ``H`` and ``mtp`` together, and
    of your ``mtp_hessian_grad_and_value``, whose ``g`` and ``H`` are both
    differenced. ``compute`` returns new arrays (a copy of a buffer its function
    may rewrite), kept read-only; an exception is not kept, so a point that raised
    is evaluated again. Up to ``limit`` bytes are kept, each point counted with
    :data:`_ENTRY` bytes besides its arrays; past it the rest are computed each time.
    """

    __slots__ = ("compute", "kept", "limit", "size")

    def __init__(self, compute: Callable[[np.ndarray], Any], limit: int) -> None:
        self.compute = compute
        self.limit = limit
        self.kept: dict[tuple[str, bytes], Any] = {}
        self.size = 0

    def __call__(self, y: np.ndarray) -> Any:
        # Keyed by y as passed, before it may be written into; a long one by a
        # digest, so that thousands of points of n = 1000 take little room.
        data = y.tobytes()
        if len(data) > _DIGESTED:
            data = hashlib.blake2b(data, digest_size=16).digest()
        key = (y.dtype.char, data)
        kept = self.kept.get(key)
        if kept is not None:
            return kept
        value = self.compute(y)
        arrays = value if isinstance(value, tuple) else (value,)
        size = _ENTRY
        for array in arrays:
            size += array.nbytes
        if self.size + size <= self.limit:
            for array in arrays:
                array.flags.writeable = False
            self.kept[key] = value
            self.size += size
        return value


_DIGESTED = 64
"""Longest point, in bytes, kept by its bytes rather than by a digest of them."""

_ENTRY = 512
"""Bytes a kept point takes besides its arrays (its key, the arrays' headers, the
dictionary's slot), at least: measured, about 440 for one number."""

_KEPT_VALUES = 1 << 26
"""Most bytes of ``func``'s values kept in one check (:class:`_Remembered`)."""

_KEPT_OUTPUTS = 1 << 24
"""Most bytes of your outputs kept for one operator at one point."""


class _NotRealError(ValueError):
    """``func`` returned something other than real numbers: what, in words.

    A ``ValueError``, so that a step where it does (``np.emath.sqrt`` beyond its
    domain's edge, complex there) is taken as out of the domain, as NaN is; at a
    point checked, it is raised as a ``TypeError`` (:func:`_check_value`).
    """


def _value_of(func: Callable[..., Any], y: np.ndarray) -> np.ndarray:
    """``func(y)`` as a new array, in its own dtype.

    Raises:
        _NotRealError: Where it is not real numbers, which the differences would take
            by their real part alone (complex numbers), as 0 and 1 (booleans) or as
            NaN (``None``).
    """
    value = func(y)
    try:
        array = np.array(value)
    except Exception:  # a ragged list; a tensor recording a graph: said below
        array = np.array(None)
    if array.dtype.kind in "iuf" or _float_bits(array.dtype):  # bfloat16's is "V"
        return array
    if array.dtype.kind == "b":
        msg = f"booleans ({array.dtype}), whose derivatives are zero."
        raise _NotRealError(msg)
    real, kind = real_numbers(value)  # numbers NumPy holds as objects: SymPy's
    if real is None:
        raise _NotRealError(f"{'None' if value is None else kind}.")
    return real


def _check_value(
    func: Callable[[np.ndarray], np.ndarray],
    points: np.ndarray,
    operators: Iterable[str],
) -> None:
    """Raise ``TypeError`` unless ``func``'s values at ``points`` suit ``operators``.

    Real numbers, of the shape each operator's function has: a scalar for ``f``, a
    vector for ``c`` (any shape for ``vjp_and_value``), as the operators require.
    Else the checks would go wrong within (a vector ``f``), blame derivatives that
    are right (an ``f`` of shape ``(1,)``), or compare the real part alone (a
    complex ``f``), or take an ``f`` of bfloat16 as float32.
    """
    for index, x in enumerate(points):
        try:
            value = func(x.copy())
        except _NotRealError as error:
            msg = f"func must return real numbers; at point {index} it returned {error}"
            raise TypeError(msg) from None
        if value.dtype.kind == "V":  # ml_dtypes' floats, JAX's bfloat16
            msg = (
                f"func returned {value.dtype} at point {index}, too coarse for "
                "differences to check its derivatives: check a float32 or float64 "
                "version of it, or pass reference= a backend that differentiates it."
            )
            raise TypeError(msg)
        for name in operators:
            check_output_kind(value.shape, name)


def _unnoted(noted: Callable[..., Any]) -> Callable[..., Any]:
    """The function :func:`_noting` wrapped, for a backend to differentiate.

    That wrapper, and a backend's function wrapper (``wrap_function(f, "jax")``, as
    a library holds ``f``), which returns NumPy arrays a framework cannot
    differentiate, only: :func:`inspect.unwrap` would strip the user's own
    decorators too (a ``functools.wraps`` negation, a ``jax.custom_jvp``), and the
    reference would be the derivative of another function.
    """
    func = noted.__wrapped__  # type: ignore[attr-defined]
    while isinstance(func, NumpyReturningFunction):
        func = func.__wrapped__
    return func  # type: ignore[no-any-return]


def _notes(error: BaseException) -> list[str]:
    return list(getattr(error, "__notes__", ()))


def _precision_seen(
    func: Callable[..., Any],
    derivatives: Mapping[str, Callable[..., Any]],
    x: np.ndarray,
    reference: str,
) -> str:
    """The precision of the outputs at ``x``: yours, ``func``'s or the reference's."""
    values: list[Any] = []
    for name, derivative in derivatives.items():
        values += _as_tuple(derivative(x.copy()))
        if reference != "finite_differences":
            backend = autodiff_fallback(None, _unnoted(func), name, name, reference)
            noted = _noting(backend, f"the {reference} reference for {name}")
            values += _as_tuple(noted(x.copy()))
    if reference == "finite_differences":
        values.append(func(x.copy()))
    return _precision_of(values)


def _applied(outputs: Any, argument: Any) -> list[Any]:
    """The outputs, the product (if any) applied to ``argument``."""
    applied = list(outputs) if isinstance(outputs, tuple) else [outputs]
    if argument is not None and applied and callable(applied[0]):
        result = applied[0](argument)
        # Copied: a product may write each result into the same array of its own.
        applied[0] = result.copy() if isinstance(result, np.ndarray) else result
    return applied


# Comparing.


def _compare(
    operator: str,
    point: int,
    name: str,
    actual: Any,
    expected: np.ndarray,
    rtol: float,
    atol: float,
    floor: float,
    bound: Any = 0.0,
    scale: float = 0.0,
    least: float = 1.0,
) -> Comparison:
    """``actual`` against ``expected``, within the tolerances and allowances.

    ``scale``: what ``atol`` is relative to, where more than the largest entry of
    ``expected`` (and ``least``).
    """
    actual = _as_real(actual)
    if isinstance(actual, str):
        return Comparison(operator, point, name, np.inf, np.inf, (), False, actual)
    if actual.shape != expected.shape:
        note = f"shape {actual.shape}, expected {expected.shape}"
        return Comparison(operator, point, name, np.inf, np.inf, (), False, note)
    # At least `least`, 1 but for a contraction along a direction: an output that
    # vanishes at this point (H where f is linear in a direction) is not held to its
    # own size, which the differences cannot tell. NaN where both are infinite.
    with np.errstate(invalid="ignore"):
        error = np.abs(actual - expected)
        scale = max(least, _largest(expected), scale)
        tolerance = atol * scale + rtol * np.abs(expected)
        relative = error / np.maximum(np.abs(expected), atol * scale)
        excess = np.where(np.isnan(error), np.inf, error - tolerance - floor)
        strictly = bool(np.all(error <= tolerance))  # without the rounding allowance
    relative = np.where(error == 0, 0.0, relative)
    worst = (
        np.unravel_index(int(np.argmax(excess)), excess.shape) if excess.size else ()
    )
    passed = bool(np.all(excess <= 0))
    # Passed only thanks to an allowance for rounding that could hide an error of
    # 1 % of the output: the reference cannot tell.
    inconclusive = passed and not strictly and floor > 0.005 * scale
    # Failed, but within what the differences bound their own error by; or passed,
    # but by differences that may be off by more than 1 % of the output (a wrong
    # derivative lands on them as readily): they cannot tell either.
    bounds = np.broadcast_to(bound, excess.shape)
    largest_bound = float(np.max(bounds, initial=0.0))
    if passed:
        truncated = largest_bound > 0.005 * scale
    else:
        # Differences bounded by a tenth of the output or more are not in the
        # regime where their bound holds (tan 1e-4 from its pole, in float32: every
        # step tried spans the pole, and the estimates agree on -3400 where the
        # derivative is 1e8): where they are all that a failure rests on, it is not
        # one.
        truncated = not np.any((excess > bounds) & (bounds <= 0.1 * scale))
    note = ""
    if not np.all(np.isfinite(expected)):
        note = (
            "the reference is not finite: func is not finite, or raises, within a "
            "step of this point"
        )
    elif inconclusive:
        note = f"rounding may move the reference by {floor:.1e}"
    elif truncated:
        inconclusive = True
        note = f"the differences may be off by {largest_bound:.1e} here"
    return Comparison(
        operator,
        point,
        name,
        float(np.max(error, initial=0.0)),
        float(np.max(relative, initial=0.0)),
        tuple(int(i) for i in worst),
        passed and not inconclusive,
        note,
        inconclusive,
    )


def _as_real(value: Any) -> np.ndarray | str:
    """``value`` as an array of floats, or a report's note on why it is not one.

    Not complex numbers, whose imaginary part NumPy would drop, nor a string of a
    number, nor ``None``, which NumPy would read as NaN.
    """
    array, what = real_numbers(value)
    return (
        f"expected real numbers, got {what}" if array is None else array.astype(float)
    )


def _reference_name(reference: object) -> str:
    """``reference`` in lower case, where it is a reference's name; else raise."""
    names = ("finite_differences", *REGISTERED_BACKENDS)
    if isinstance(reference, str) and reference.lower() in names:
        return reference.lower()
    msg = (
        f"reference must be 'finite_differences' or a backend's name, one of "
        f"{names}; got {reference!r}."
    )
    raise (ValueError if isinstance(reference, str) else TypeError)(msg)


def _check_tolerance(name: str, tolerance: Any) -> None:
    """``None`` (the precision's default) or a non-negative number, else raise."""
    if tolerance is None:
        return
    if isinstance(tolerance, bool) or not isinstance(
        tolerance, (int, float, np.integer, np.floating)
    ):
        msg = f"{name} must be a non-negative number; got {type(tolerance).__name__}."
        raise TypeError(msg)
    if not tolerance >= 0:  # NaN too
        msg = f"{name} must be a non-negative number; got {tolerance!r}."
        raise ValueError(msg)


def check_derivatives(
    func: Callable[..., Any],
    derivatives: Mapping[str, Callable[..., Any]],
    points: Any,
    *,
    reference: str = "finite_differences",
    rtol: float | None = None,
    atol: float | None = None,
    seed: int = 0,
) -> DerivativeReport:
    """Compare hand-written derivative functions of ``func`` with a reference.

    Args:
        func: The function, scalar-valued ``f`` or vector-valued ``c`` of ``x`` of
            shape ``(n,)``.
        derivatives: Maps names from :data:`~diffops.DIFF_OPS` to your functions,
            each following that operator's convention: ``grad_and_value(x) → (g, v)``,
            ``hessian_grad_and_value(x) → (H, g, v)``,
            ``mtp_hessian_grad_and_value(x) → (mtp, H, g, v)``,
            ``jacobian_and_value(x) → (J, v)``,
            ``mhp_jacobian_and_value(x) → (mhp, J, v)``,
            ``vjp_and_value(x) → (vjp, v)``. A function may return only the first
            (highest-order) item instead of the tuple; then only that is checked.
        points: One point of shape ``(n,)`` or several, shape ``(k, n)``, read as a
            derivative function reads ``x``: float32 points are checked in float32.
        reference: ``"finite_differences"`` or the name of a backend.
        rtol: Relative tolerance per entry; by default ``1e-5`` where the outputs
            are float64 and ``5e-4`` where any is float32.
        atol: Absolute tolerance per entry, relative to the largest entry of that
            output's reference (at least 1, so that an output far below 1 is
            checked to ``atol`` absolutely: pass a smaller one to hold it to its
            own size); by default ``1e-6`` where the outputs are float64 and
            ``1e-4`` where any is float32. The reference's rounding is allowed for
            besides.
        seed: Seed of the random ``M`` and ``u`` given to the products.

    Returns:
        A :class:`DerivativeReport`; ``report.raise_if_failed()`` raises when any
        output differs.

    Raises:
        ValueError: If an operator name or ``reference`` is unknown, ``points`` is
            not 1-D or 2-D, empty or not finite, ``rtol`` or ``atol`` is negative or
            NaN, or ``seed`` is not a non-negative integer.
        TypeError: If ``func`` or a derivative is not callable, ``reference`` is not
            a string, ``points`` are not real numbers (booleans, complex numbers),
            or ``rtol`` or ``atol`` is not a number.
    """
    if not callable(func):
        msg = f"func must be callable; got {type(func).__name__}."
        raise TypeError(msg)
    if not isinstance(derivatives, Mapping) or not derivatives:
        msg = "derivatives must be a non-empty mapping from operator name to function."
        raise TypeError(msg)
    for operator, function in derivatives.items():
        if operator not in DIFF_OPS:
            msg = (
                f"derivatives has an unknown operator {operator!r}: valid names are "
                f"{DIFF_OPS}."
            )
            raise ValueError(msg)
        if not callable(function):
            kind = type(function).__name__
            msg = f"derivatives[{operator!r}] must be callable; got {kind}."
            raise TypeError(msg)
    reference = _reference_name(reference)
    for name, tolerance in (("rtol", rtol), ("atol", atol)):
        _check_tolerance(name, tolerance)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        msg = f"seed must be a non-negative integer; got {seed!r}."
        raise ValueError(msg)
    # In their own precision, as a derivative function reads x: float32 points
    # check the float32 computation.
    points = as_points(points, "points", one_point=True, copy=True)  # ours to pass
    if not np.all(np.isfinite(points)):
        row = int(np.flatnonzero(~np.isfinite(points).all(axis=1))[0])
        msg = (
            f"points must be finite; point {row} is {points[row].tolist()}, where "
            "nothing can be differenced."
        )
        raise ValueError(msg)
    func = _noting(func, "func")
    if reference == "finite_differences":  # a backend's operators check func's kind
        func = _Remembered(functools.partial(_value_of, func), _KEPT_VALUES)
        _check_value(func, points, derivatives)
    derivatives = {
        name: _noting(derivative, f"your {name}")
        for name, derivative in derivatives.items()
    }
    # From float32 points the outputs are no more accurate than float32, whatever
    # their dtype; from float64 points, as precise as they come.
    seen = (
        "float32"
        if points.dtype == np.float32
        else _precision_seen(func, derivatives, points[0], reference)
    )
    precision = _PRECISIONS[seen]
    rtol = precision.rtol if rtol is None else rtol
    atol = precision.atol if atol is None else atol
    if seen == "float32" and points.dtype == np.float64:
        warnings.warn(
            f"check_derivatives: the outputs are float32 for float64 points, so "
            f"they are checked at float32 precision (rtol={rtol:g}, atol={atol:g}). "
            "To check a JAX function in float64, turn on JAX's 64-bit mode first "
            "(the environment variable JAX_ENABLE_X64=1, or "
            "jax.config.update('jax_enable_x64', True)), or use `diffops check`, "
            "which does.",
            UserWarning,
            stacklevel=2,
        )
    rng = np.random.default_rng(seed)
    comparisons = []
    for name, function in derivatives.items():
        record = OPERATORS[name]
        labels = record.labels
        reference_at = _reference(func, record, reference, precision, function)
        for index, x in enumerate(points):
            reference_outputs, accuracies, along = reference_at(x)
            reference_outputs = tuple(reference_outputs)
            argument = None
            if record.product is not None:
                # The argument has the shape of the output after the product.
                shape = np.shape(_split(reference_outputs[1])[0])
                argument = rng.standard_normal(shape).astype(points.dtype)
            expected, bounds = [], []
            for reference_output in _applied(reference_outputs, argument):
                estimate, bound = _split(reference_output)
                expected.append(np.asarray(estimate, float))
                bounds.append(bound)
            floors = [precision.rounding(accuracy) for accuracy in accuracies]
            if argument is not None:  # a product's reference is Σ A ∘ ... differenced
                floors[0] *= float(np.sum(np.abs(argument)))
            returned = _as_tuple(function(x.copy()))
            outputs = _applied(returned, argument)
            if len(outputs) not in (1, len(labels)):  # all, or the first alone
                note = (
                    f"returned {len(outputs)} items, expected {len(labels)} or "
                    f"{labels[0]} alone"
                )
                comparisons.append(
                    Comparison(name, index, "tuple", np.inf, np.inf, (), False, note)
                )
                continue
            compared = [
                _compare(name, index, label, actual, wanted, rtol, atol, floor, bound)
                for label, actual, wanted, floor, bound in zip(
                    labels, outputs, expected, floors, bounds, strict=False
                )
            ]
            for check in along:  # before another call rewrites what was returned
                if check.position < len(returned) and compared[check.position].ok:
                    compared.append(
                        _compare_along(
                            name, index, check, returned[check.position], x, rng,
                            precision, rtol, atol,
                        )
                    )  # fmt: skip
            if argument is not None and compared[0].ok:
                other = points[(index + 1) % len(points)]
                compared[0] = _rebound(
                    compared[0], function, returned[0], outputs[0], argument, x, other,
                    precision,
                )  # fmt: skip
            comparisons += compared
    return DerivativeReport(tuple(comparisons), reference, rtol, atol, seen)


def _rebound(
    comparison: Comparison,
    function: Callable[..., Any],
    product: Callable[[Any], Any],
    result: Any,
    argument: np.ndarray,
    x: np.ndarray,
    other: np.ndarray,
    precision: _Precision,
) -> Comparison:
    """A product's passing ``comparison``, failed where it is not bound to its point.

    A sampler applies a product after calls at other points, and more than once. So
    it is applied to ``argument`` again after a call of your function at ``other``
    (the next point, or where there is one point, a step from it), and fails where
    it gives a ``result`` other than its first, beyond rounding: it reads something
    that call changed (a buffer your function reuses), or its own first application
    did. Where the call at ``other`` raises, ``other`` may be out of the domain: the
    product is judged by its first application alone.
    """
    if np.array_equal(other, x):
        other = x + precision.steps[0] * np.maximum(1.0, np.abs(x)).astype(x.dtype)
    try:
        function(other.copy())
    except Exception:
        return comparison
    try:
        again = np.asarray(product(argument.copy()), float)
    except Exception as error:
        note = f"applied again after a call at another point, it raised {error!r}"
        return dataclasses.replace(comparison, ok=False, note=note)
    first = np.asarray(result, float)
    if again.shape == first.shape:
        difference = np.abs(again - first)
        if np.all(difference <= 1000 * precision.epsilon * max(1.0, _largest(first))):
            return comparison
        where = tuple(
            int(i) for i in np.unravel_index(np.argmax(difference), first.shape)
        )
        largest = float(np.max(difference))
    else:
        where, largest = (), np.inf
    note = (
        "not bound to its point: applied again after a call at another point, it "
        "gave another result"
    )
    relative = largest / max(1.0, _largest(first))
    return dataclasses.replace(
        comparison, max_abs_error=largest, max_rel_error=relative, where=where,
        ok=False, note=note,
    )  # fmt: skip


def _compare_along(
    operator: str,
    point: int,
    check: _Along,
    output: Any,
    x: np.ndarray,
    rng: np.random.Generator,
    precision: _Precision,
    rtol: float,
    atol: float,
) -> Comparison:
    """Your output contracted along a seeded random direction, against ``func``'s.

    Where the differences of ``func`` along it cannot tell (as near an edge of its
    domain, where they step out of it), it is checked again along the direction
    scaled down: to the coordinates under 1 in size (``v_i |x_i|``), for an edge
    near 0 (``log x`` at a mode ``x = 10⁻³``); then by a number, ``10⁻²``, ``10⁻⁴``,
    the least such coordinate's size and a hundredth of it (an edge elsewhere,
    ``log(x - 1)`` at ``x = 1.003``). Each is held to the sum of the sizes of its
    terms (which may cancel), whatever their scale. Along a shorter direction,
    values that do not change at all (rounded beyond the precision the outputs are
    in: a float32 ``f`` returned as float64) cannot tell, and a coordinate its
    shortest step would leave as it is is left out of it (set to 0).

    A failure along the direction scaled per coordinate stands: it weighs the
    coordinates otherwise. One along ``v`` scaled by a number (1 included) may be
    cleared by a shorter such direction that passes, since a number scales your
    contraction and the true one alike: the longer differences spanned more than
    the derivatives' own change (a pole: ``1/x`` at ``x = -10⁻³``, finite beyond
    it). A symmetry failure stands.

    Where ``vᵀHv`` passes along one, in float64, it is checked again along a
    direction of ``v``'s signs that weighs each coordinate alike (:func:`_balanced`)
    and along it scaled down by the same numbers, each as along ``v``, but that a
    failure there stands only where a direction a hundredth as long fails too.
    """
    direction = rng.standard_normal(x.size).astype(x.dtype)
    weights = None
    if check.rows is not None:
        weights = rng.standard_normal(check.rows).astype(x.dtype)
    args = (operator, point, check, output, rng, precision, rtol, atol, weights)
    size = np.abs(x)
    near = (size > 0) & (size < 1)
    factors = {1e-2, 1e-4}
    # Each direction, and whether it is v scaled by a number.
    directions = [(direction, True)]
    if np.any(near):
        directions.append((np.where(near, direction * size, direction), False))
        least = float(np.min(size[near]))
        factors |= {least, least * 1e-2}
    scales = sorted(factors)[::-1]
    directions += [(direction * factor, True) for factor in scales]
    row = _first_telling(directions, False, x, precision, args)
    assert row is not None  # the first direction is always tried
    passed = row.ok and not row.note.startswith(_SKIPPED)
    # Not in float32, whose steps span what the direction weighs up (sin(700 x)).
    if not passed or check.product or precision is not _FLOAT64:
        return row
    even = _balanced(np.sign(direction), output)
    if even is None:
        return row
    evens = [(even * factor, True) for factor in (1.0, *scales)]
    tried = _first_telling(evens, True, x, precision, args, confirmed=True)
    return row if tried is None or tried.ok else tried


def _first_telling(
    directions: list[tuple[np.ndarray, bool]],
    shorter: bool,
    x: np.ndarray,
    precision: _Precision,
    args: tuple[Any, ...],
    confirmed: bool = False,
) -> Comparison | None:
    """The row along the first of ``directions`` that passes or fails for good.

    Each direction comes with whether it is the first direction scaled by a number,
    whose failure a shorter such direction that passes clears. ``shorter``: whether
    even the first is taken as shorter than ``v`` (by :func:`_compared_along`, and in
    leaving out a coordinate it would not move).
    ``confirmed``: whether a failure stands only where a direction a hundredth as
    long or shorter fails too: differences off beyond their bound (a function that
    varies faster than they follow, a pole a step away) are off by less the shorter
    the direction, which 0.63 times as long may not show.
    Else the pending failure (``None`` where it is not confirmed), or the first
    skip; ``None`` where no direction moves ``x``.
    """
    # The shortest step the differences take along a direction, in units of it.
    shortest = precision.steps[0] * 1e-3
    size = np.abs(x)
    row: Comparison | None = None  # the first skip, or the pending failure
    failed_at = np.inf  # the length of the direction the pending failure is along
    for along, uniform in directions:
        # Coordinates the differences would not move (10 beside 1e-12 along 1e-14
        # v): they would see the others alone, and your contraction all. Left out of
        # the direction, it is no longer v scaled by a number.
        short = shorter or row is not None
        still = np.abs(along) * shortest < precision.epsilon * size
        if short and np.any(still):
            if np.all(still):
                continue
            along, uniform = np.where(still, 0.0, along), False
        failing = row is not None and not row.ok
        if failing and not uniform:
            continue
        compared, kind = _compared_along(along.astype(x.dtype), short, *args)
        if kind == "pass":
            return compared
        length = float(np.max(np.abs(along)))
        if kind == "fail" and confirmed:
            if failing and length <= 1e-2 * failed_at:
                return row  # confirmed
            if not failing:
                failed_at = length
            uniform = True  # pending even where a coordinate was left out
        if kind == "final" or (kind == "fail" and not uniform):
            return compared
        if row is None or (kind == "fail" and not failing):
            row = compared
    if confirmed and row is not None and not row.ok:
        return None  # not confirmed
    return row


def _balanced(signs: np.ndarray, hessian: Any) -> np.ndarray | None:
    """A direction of ``signs`` that weighs each coordinate alike: ``±1/√|H_ii|``.

    ``H_ii`` is your ``H``'s diagonal, each root at least a hundredth of the
    largest, relative to the least. So the terms ``w_i H_ii w_i`` are all of one
    size, for curvatures within a factor ``10⁴``: along ``v`` itself, a coordinate
    whose entry is small, or whose curvature is far below another's, hides an error
    in its own within 1 % of the terms. A lower floor weighs a coordinate of no
    curvature so far above the rest that the terms are too small to tell from the
    differences' rounding, even along the direction scaled down, near a change of
    curvature a step away (``relu(x)²`` at ``x = -10⁻⁴``). ``None`` where the
    diagonal is not finite.
    """
    with np.errstate(invalid="ignore", over="ignore"):
        roots = np.sqrt(np.abs(np.diagonal(np.asarray(hessian, float))))
    if not np.all(np.isfinite(roots)):
        return None
    largest = float(np.max(roots, initial=0.0))
    roots = np.maximum(roots, largest * 1e-2) if largest > 0 else np.ones_like(roots)
    balanced: np.ndarray = signs * (float(np.min(roots)) / roots)
    return balanced


def _compared_along(
    direction: np.ndarray,
    shorter: bool,
    operator: str,
    point: int,
    check: _Along,
    output: Any,
    rng: np.random.Generator,
    precision: _Precision,
    rtol: float,
    atol: float,
    weights: np.ndarray | None,
) -> tuple[Comparison, str]:
    """:func:`_compare_along` along ``direction``, and what came of it.

    ``"pass"``, ``"fail"``, ``"final"`` (a failure no other direction clears: not
    symmetric, or not contracted) or ``"skip"``: the differences cannot tell, or the
    contraction and its reference are 0 (the direction underflows), or along a
    ``shorter`` direction than the first their values did not change at all.
    """
    try:
        if check.product:
            rows = direction if weights is None else weights
            applied = np.array(output(np.outer(rows, direction)), float)  # a copy
            actual, terms = direction @ applied, np.abs(direction) @ np.abs(applied)
            # The derivatives a product contracts are symmetric in the last two
            # indices, which along v alone cannot show: so, for another direction
            # w, w·product(rows vᵀ) = v·product(rows wᵀ).
            other = rng.standard_normal(direction.size).astype(direction.dtype)
            crossed = np.asarray(output(np.outer(rows, other)), float)
            symmetric = _compare(
                operator, point, check.label, other @ applied, direction @ crossed,
                rtol, atol, 0.0, scale=float(np.abs(other) @ np.abs(applied)),
            )  # fmt: skip
            if not symmetric.ok:
                note = (
                    f"not symmetric, as the derivatives it contracts are: for a "
                    f"direction w, w·{check.label[2:5]}(·vᵀ) is not "
                    f"v·{check.label[2:5]}(·wᵀ)"
                )
                return dataclasses.replace(symmetric, ok=False, note=note), "final"
        else:
            matrix = np.asarray(output, float)
            # A Hessian is symmetric, and a part of H that is not cannot show
            # along one direction (an H of W for x ↦ xᵀWx/2, W not symmetric).
            symmetric = _compare(
                operator, point, check.label, matrix, matrix.T, rtol, atol, 0.0
            )
            if not symmetric.ok:
                note = "H is not symmetric, as a Hessian is: H - Hᵀ is not 0"
                return dataclasses.replace(symmetric, ok=False, note=note), "final"
            actual = direction @ matrix @ direction
            terms = np.abs(direction) @ np.abs(matrix) @ np.abs(direction)
    except Exception:
        failed = Comparison(
            operator, point, check.label, np.inf, np.inf, (), False,
            "could not be contracted along a direction",
        )  # fmt: skip
        return failed, "final"
    estimate, bound = check.reference(direction, weights)
    floor = precision.rounding(check.accuracy)
    if weights is not None:
        floor *= float(np.sum(np.abs(weights)))
    # Within 1 %: nested differences of f alone are less accurate than those the
    # output's own row rests on (third ones of exp at x = 19 are off by 2e-4
    # beyond their bound); the row is for what the chain of yours hides.
    loose = max(rtol, _ALONG), max(atol, _ALONG)
    compared = _compare(
        operator, point, check.label, actual, np.asarray(estimate, float), *loose,
        floor, bound, scale=float(terms), least=0.0,
    )  # fmt: skip
    finite = bool(np.isfinite(estimate))
    # Exactly 0 from values all alike, or where the contraction is 0 too (the
    # direction underflows): no reference either way.
    vanishes = finite and estimate == 0 and (terms == 0 or shorter)
    if not vanishes and (compared.ok or not (compared.inconclusive or not finite)):
        return compared, "pass" if compared.ok else "fail"
    # The output passed its own comparison; differences of f alone, nested, may not
    # tell where those of yours do (near a domain edge, far from the origin, a large
    # f, float32): the row then adds nothing.
    reason = compared.note or "the differences are 0: the values did not change"
    note = f"{_SKIPPED}: {reason}"
    skipped = dataclasses.replace(compared, ok=True, inconclusive=False, note=note)
    return skipped, "skip"


_ALONG = 1e-2
"""The least relative and absolute tolerance of a check along a direction."""

_SKIPPED = "not checked along v here"
"""The note of a check along a direction whose differences cannot tell."""
