"""JAX backend: operators traced by JAX, compiled by the ``jax`` function wrapper.

Each operator returns a :class:`~diffops.functions.FrameworkDerivative`, a function of
a JAX array that JAX can trace. The registered function wrappers make from it the
:class:`~diffops.DerivativeFunction` users call: :func:`jit_and_return_numpy_arrays`
(backend ``jax``) compiles it with :func:`jax.jit`, and its products too;
:func:`return_numpy_arrays` (backend ``jax_nojit``) runs it op by op.

A product (``mtp``, ``mhp``, ``vjp``) is bound to its point and never evaluates the
function there again. Compiled, where its matrix (``∂H/∂x``, ``∂J/∂x`` or ``J``) is
small and cheap, the call computes that matrix, its table, with the outputs, and a
product is a matrix-vector product in NumPy: see :data:`TABULATE_UP_TO`. Otherwise its
state is the pullback of :func:`jax.vjp` at ``x``, whose leaves are the residuals of
the evaluation, so that ``mtp(M)`` is one backward pass; compiled, where they are few
the call returns them packed in one array besides the outputs (``_Kept``, see
:data:`PACK_RESIDUALS_UP_TO`). A product can also be computed from the point ``x``
alone (``_FromPoint``): the evaluation computes only ``H`` (or ``J``, or ``c(x)``),
and ``mtp(M)`` is the gradient of ``x ↦ ⟨M, H(x)⟩``, computed afresh by a second
compiled function, which evaluates the function again at each product. That is
done only up to ``n =`` :data:`RECOMPUTE_UP_TO`, 0 unless raised, where JAX checks for
NaN (the residuals may hold them where the outputs do not), and for the error of a
product JAX cannot take in reverse.

Compiled, a derivative function whose outputs hold at most :data:`PACK_UP_TO`
numbers returns them raveled into one array (``_Compiled``): NumPy takes one array
from JAX a call rather than one per output, which at ``n = 3`` is most of the cost
beyond XLA's own, and each output is copied from its part of it.

After the first call at a length of ``x``, a compiled derivative function's call with
a plain ``x`` runs in one Python frame (``_CompiledDerivativeFunction``), as the
``torch`` backend's does, which saved 0.2-0.9 µs of an ``mhp_jacobian_and_value``
call of 12-19 µs.

JAX computes in float32 unless 64-bit mode is on. The wrappers never switch it on;
they warn once, saying how to, when a float64 input would be computed in float32.
"""

from __future__ import annotations

import functools
import math
import os
import re
import sys
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from diffops.functions import (
    Batching,
    BoundProduct,
    DerivativeFunction,
    FrameworkDerivative,
    NumpyReturningFunction,
    Runtime,
    as_output,
)
from diffops.operators import OPERATORS, operator_sections
from diffops.validation import (
    NATIVE_FLOATS,
    as_plain_array,
    check_callable,
    check_scalar_output,
    check_vector_output,
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
    "PACK_RESIDUALS_UP_TO",
    "PACK_UP_TO",
    "RECOMPUTE_UP_TO",
    "TABULATE_FLOPS",
    "TABULATE_UP_TO",
    "grad_and_value",
    "hessian_grad_and_value",
    "jacobian_and_value",
    "jit_and_return_numpy_arrays",
    "mhp_jacobian_and_value",
    "mtp_hessian_grad_and_value",
    "return_numpy_arrays",
    "vjp_and_value",
]

RECOMPUTE_UP_TO = 0
"""Largest ``n`` at which compiled products are computed from ``x`` (see above): none.

A product is bound to its point and does not evaluate the function there again: the
call keeps the residuals. Computing a product from the point instead evaluates the
function (and its derivatives below the product) again in each product, which for a
cheap function is faster: raise this to trade that for speed, before a derivative
function's first call at a length (its plan is made then). Measured in two runs of
``python benchmarks/recompute.py`` on a 2-core x86 machine (the ways in turns), a call
and one product from the point took, against the kept residuals: for ``mtp`` of a
chain of bananas, 0.52-0.90 times as long at ``n = 20`` to ``300``; for ``mhp`` of two
constraints, 0.83-1.22 times at ``n = 100`` to ``1000``; for their ``vjp`` at ``n =
3000``, 0.86-0.98 times; for layers of ``tanh(W x)`` at ``n = 300``, 0.75-0.98 times.
A product alone from the point took 0.84-1.15 times as long as from the residuals for
those cheap functions, and 1.14-1.60 times for the layers (one more forward pass), so
where a call's product is applied several times the residuals gain.
"""

PACK_RESIDUALS_UP_TO = 16384
"""Most numbers in a compiled product's residuals returned packed in one array.

Where a product is neither tabulated nor computed from its point, its state is the
residuals of the evaluation, the leaves of :func:`jax.vjp`'s pullback (for ``mtp``,
11 arrays of up to ``n²`` numbers). Up to this many numbers, the call returns them
packed in one array (and the outputs in another), and the product is one compiled
call on it; beyond, as JAX returns them, a pytree of arrays each compiled call takes
apart. Measured in two
runs of ``python benchmarks/recompute.py`` on a 2-core x86 machine, a call and one
product packed took 0.37-0.60 times as long as unpacked for ``mtp`` at ``n = 20`` and
``30`` and 0.82-0.88 times at ``60`` (14 thousand numbers), 0.56-0.88 times for
``mhp`` of two constraints (``n = 100`` to ``1000``, 1.2 to 4 thousand), and 0.80 for
their ``vjp`` at ``n = 3000``. With this limit raised (in that script's ``WAYS``), it
took 1.15 times as long for ``mtp`` at ``n = 100`` (40 thousand) and 1.3-1.7 times at
``200`` and ``300``: XLA's concatenation of the residuals then costs more than it saves.
"""

PACK_UP_TO = 1024
"""Most numbers in a compiled evaluation's outputs returned packed in one array.

Taking an array from JAX into NumPy costs 1.5-2 µs whatever its size, so packing
saves that for every output but one, and costs XLA a concatenation. Measured on a
2-core x86 machine (``timeit``, minimum of 9, JAX dispatching on the calling thread),
packing makes a call 1-3 µs (8-15%) faster for ``grad_and_value`` up to ``n = 2000``
(2001 numbers), ``hessian_grad_and_value`` up to ``n = 60`` (3721) and
``jacobian_and_value`` and ``mhp_jacobian_and_value`` (``m = 2``) up to ``n = 300``
(602); it is even at ``n = 500`` (1002) for a Jacobian and 3-4% slower at ``n =
1000``, and 1.7 times slower for a Hessian at ``n = 100`` (10101). A single output
(``vjp_and_value``'s ``c(x)``) is never packed: taking it apart again cost 0.3-0.6
µs of a 9-15 µs call (``n = 3`` to ``1000``, timed in turns).
"""

TABULATE_UP_TO = 2048
"""Most numbers in a compiled product's table, which the call then computes.

A product is a linear map of its argument, ``A ↦ Σ_s A_s ∂D_s/∂x`` for ``D`` the
output after it (``H``, ``J`` or ``c(x)``, raveled), and its table is the matrix of
that map, ``T_sk = ∂D_s/∂x_k``: the third derivatives of ``f`` for ``mtp``, the second
of ``c`` for ``mhp``, ``J`` for ``vjp``. Where ``T`` holds at most this many numbers
and computing it costs at most :data:`TABULATE_FLOPS` more than one product, the call
computes ``T`` in the same compiled call as the outputs (packed with them), and a
product is ``A.ravel() @ T`` in NumPy: about a µs, where a second compiled call costs
its dispatch, 10-20 µs. A table is computed forward (``n`` pushforwards of ``D``)
where ``D`` has at least ``n`` numbers, backward otherwise.

Measured by hand on a 2-core x86 machine (the forms taking turns), a call and one
product tabulated took 0.63-0.93 times what the two compiled calls took, for
quadratics, ``tanh`` layers and sums of ``sin``, ``exp`` and ``cos``, with tables of up
to 1800 numbers (``mtp`` up to ``n = 10``, ``mhp`` of two constraints up to ``n =
30``, ``vjp``), and 0.90-1.06 times with 1728 (``mtp`` at ``n = 12``); 1.14-7.8 times
as long with 3375 or more (``mtp`` from ``n = 15``), and as long (1.03) for five
``tanh`` layers at ``n = 10``, whose table cost 342,000 more operations. A product
applied more than once at a point gains each time; on a GPU, where a compiled
product is a round trip of tenths of a millisecond, far more.
"""

TABULATE_FLOPS = 100_000
"""Most floating-point operations that tabulating a product may add to a call beyond
the product's own, as XLA counts them in the lowered computations (in the compiled
ones where the lowered have no count, as on CUDA; see :data:`TABULATE_UP_TO`).

A bound on work that costs less than a compiled call's dispatch, so that a function
dear to evaluate keeps its product recomputed from the point: its table would cost
``n`` evaluations of ``D``'s derivative in each call, where a product costs one.
"""

# The pullbacks of jax.vjp are jax.tree_util.Partial objects: pytrees whose leaves are
# the residuals of the forward pass, so they can leave one compiled function and enter
# another. They return a tuple with one cotangent per primal.
Pullback = Any


# The operators' computations, on JAX arrays.


def _computed_in(x: Any) -> Any:
    """The dtype JAX computes ``x`` in: float32 for float64 with 64-bit mode off.

    Asked for by name, float64 would make JAX warn where it is off (run op by op,
    ``x`` is the NumPy array), on top of diffops' one warning.
    """
    return jax.dtypes.canonicalize_dtype(x.dtype)


def _value_in_dtype_of_x(func: Callable[..., Any], operator: str, x: Any) -> Any:
    value = func(x)
    output_shape(value, operator)  # an array or a number, or a TypeError saying so
    # A Python or NumPy number or array (a constant) becomes a JAX array too.
    dtype = _computed_in(x)
    if not isinstance(value, jax.Array) or value.dtype != dtype:
        value = jnp.asarray(value, dtype=dtype)
    return value


def _typed(func: Callable[..., Any], operator: str) -> Callable[..., Any]:
    """``func`` with its value in x's dtype, so that every output is.

    A product's argument then takes that dtype too. Inside a compiled function the
    conversion costs nothing where the dtypes agree already.
    """
    return functools.partial(_value_in_dtype_of_x, func, operator)


def _vjp_and_value(
    func: Callable[..., Any], x: Any, operator: str = "vjp_and_value"
) -> tuple[Pullback, Any]:
    value, pullback = jax.vjp(_typed(func, operator), x)
    output_shape(value, operator)  # of any shape, which u takes
    return pullback, value


def _vector_value(
    func: Callable[..., Any], x: Any, operator: str = "vjp_and_value"
) -> tuple[Any]:
    """``(c(x),)``: the output of ``vjp_and_value`` after the product, of any shape."""
    value = _typed(func, operator)(x)
    output_shape(value, operator)
    return (value,)


def _grad_and_value(
    func: Callable[..., Any],
    x: Any,
    operator: str = "grad_and_value",
    *,
    batch_of_one: bool = False,
) -> tuple[Any, Any]:
    value, pullback = jax.vjp(_typed(func, operator), x)
    check_scalar_output(output_shape(value, operator), operator)
    if batch_of_one:
        # The same gradient, the one cotangent pulled back as a batch of one: a
        # form that XLA compiles 4 times faster once differentiated twice more (an
        # mtp at n = 1000), but slower as a Hessian alone, and op by op.
        (grads,) = jax.vmap(pullback)(jnp.ones((1, *value.shape), value.dtype))
        return grads[0], value
    (grad,) = pullback(jnp.ones_like(value))
    return grad, value


def _hessian_and_aux(
    func: Callable[..., Any],
    x: Any,
    operator: str = "hessian_grad_and_value",
    *,
    batch_of_one: bool = False,
) -> tuple[Any, tuple[Any, Any]]:
    grad_and_value = functools.partial(
        _grad_and_value, func, operator=operator, batch_of_one=batch_of_one
    )

    def pushforward(tangent: Any) -> tuple[Any, Any, Any]:
        return jax.jvp(grad_and_value, (x,), (tangent,), has_aux=True)

    # Row i is H @ e_i, column i of H (H is symmetric): the n pushforwards of the
    # gradient in one vectorised pass, which op by op (jax_nojit) dispatches half
    # the operations that linearising first does, and compiled is as fast.
    grad, hessian, value = jax.vmap(pushforward, out_axes=(None, 0, None))(
        jnp.eye(x.shape[0], dtype=_computed_in(x))
    )
    return hessian, (grad, value)


def _hessian_grad_and_value(
    func: Callable[..., Any],
    x: Any,
    operator: str = "hessian_grad_and_value",
    *,
    batch_of_one: bool = False,
) -> tuple[Any, Any, Any]:
    hessian, (grad, value) = _hessian_and_aux(
        func, x, operator, batch_of_one=batch_of_one
    )
    return hessian, grad, value


def _mtp_hessian_grad_and_value(
    func: Callable[..., Any],
    x: Any,
    operator: str = "mtp_hessian_grad_and_value",
    *,
    batch_of_one: bool = True,
) -> tuple[Pullback, Any, Any, Any]:
    """``(mtp, H, g, f(x))``, ``mtp`` the pullback of the Hessian map.

    The gradient inside is pulled back as a batch of one (``batch_of_one``) where
    the computation is compiled, and plainly op by op (:data:`_OP_BY_OP`).
    """
    hessian, pullback, (grad, value) = jax.vjp(
        functools.partial(
            _hessian_and_aux, func, operator=operator, batch_of_one=batch_of_one
        ),
        x,
        has_aux=True,
    )
    return pullback, hessian, grad, value


_VALUE_DEPENDENT: tuple[type[Exception], ...] = ()
"""JAX's errors for a function that needs a traced value as a Python one (control
flow on values, a boolean mask), which an abstract trace of it raises."""

if AVAILABLE:
    _VALUE_DEPENDENT = (
        jax.errors.ConcretizationTypeError,
        jax.errors.TracerIntegerConversionError,
        jax.errors.NonConcreteBooleanIndexError,
    )


def _jacobian_and_value(
    func: Callable[..., Any],
    x: Any,
    operator: str = "jacobian_and_value",
    *,
    shape_first: bool = True,
) -> tuple[Any, Any]:
    """``(J, c(x))``: ``m`` pullbacks where ``m <= n``, ``n`` pushforwards otherwise.

    Compiled, ``m`` is known before either pass from an abstract trace
    (``shape_first``), which costs nothing at run time. Op by op
    (:data:`_OP_BY_OP`) that trace costs a tenth to a third of the call: ``func`` is
    linearised first, and where ``m <= n`` the linear map is transposed, the
    pullbacks then needing no second evaluation.
    """
    func = _typed(func, operator)
    (n,) = x.shape
    if shape_first:
        try:
            value_shape = output_shape(jax.eval_shape(func, x), operator)
        except _VALUE_DEPENDENT:
            # func uses a value of x in Python (an if): run op by op (jax_nojit), x
            # is concrete and func runs on it; compiled, this raises the same,
            # explained.
            value_shape = output_shape(func(x), operator)
        check_vector_output(value_shape, operator)
        (m,) = value_shape
        if m <= n:
            value, pullback = jax.vjp(func, x)
            (jacobian,) = jax.vmap(pullback)(jnp.eye(m, dtype=value.dtype))
            return jacobian, value
    value, pushforward = jax.linearize(func, x)
    if not shape_first:
        check_vector_output(output_shape(value, operator), operator)
        (m,) = value.shape
        if m <= n:
            pullback = jax.linear_transpose(pushforward, x)
            (jacobian,) = jax.vmap(pullback)(jnp.eye(m, dtype=value.dtype))
            return jacobian, value
    basis = jnp.eye(n, dtype=_computed_in(x))
    return jax.vmap(pushforward, out_axes=1)(basis), value


def _mhp_jacobian_and_value(
    func: Callable[..., Any],
    x: Any,
    operator: str = "mhp_jacobian_and_value",
    *,
    shape_first: bool = True,
) -> tuple[Pullback, Any, Any]:
    jacobian, pullback, value = jax.vjp(
        functools.partial(
            _jacobian_and_value, func, operator=operator, shape_first=shape_first
        ),
        x,
        has_aux=True,
    )
    return pullback, jacobian, value


_OP_BY_OP: dict[Callable[..., Any], Callable[..., Any]] = {
    _mtp_hessian_grad_and_value: functools.partial(
        _mtp_hessian_grad_and_value, batch_of_one=False
    ),
    _jacobian_and_value: functools.partial(_jacobian_and_value, shape_first=False),
    _mhp_jacobian_and_value: functools.partial(
        _mhp_jacobian_and_value, shape_first=False
    ),
}
"""Transforms run in another form by ``jax_nojit``, which dispatches each operation.

Measured op by op at ``n = 3`` and ``30`` against the compiled forms run op by op
(a 2-core x86 machine, ``timeit``), each puts the call level with mici's or ahead:

- an ``mtp`` with the gradient's cotangent pulled back plainly, not as a batch of
  one: its call is 1.15-1.18 times faster, its product 1.19-1.24 times and 4 points
  through :func:`diffops.vectorize` 1.23-1.31 times. Compiled, the batch of one is
  kept: XLA compiles it 4 times faster at ``n = 1000``.
- a Jacobian with ``func`` linearised first and run once, its number of rows read
  from the value (see :func:`_jacobian_and_value`): 1.13 times faster for two rows,
  1.19-1.21 times for ``m = 10 n`` rows; an ``mhp`` call 1.02-1.09 times. mici, which
  always pulls rows back, then takes 0.90-1.01 times as long for two rows and
  1.3-2.2 times for ``m = 10 n``.
"""


# Products computed from the point: up to RECOMPUTE_UP_TO, if raised.


def _contracted_gradient(
    transform: Callable[..., tuple[Any, ...]],
    func: Callable[..., Any],
    operator: str,
    x: Any,
    argument: Any,
) -> Any:
    """``∂/∂x ⟨argument, D(x)⟩`` for ``D``, the first output of ``transform``.

    The product as the gradient of the contraction, from the point alone.
    """

    def contraction(x: Any) -> Any:
        return jnp.sum(argument * transform(func, x, operator)[0])

    return jax.grad(contraction)(x)


def _tabulated(
    transform: Callable[..., tuple[Any, ...]],
    func: Callable[..., Any],
    operator: str,
    x: Any,
    *,
    forward: bool,
) -> tuple[Any, ...]:
    """``(T, *outputs)``: the product's table ``T_sk = ∂D_s/∂x_k``, then the outputs.

    ``transform`` computes the outputs after the product, ``D`` first (raveled in
    ``T``'s rows); they are the primal outputs of ``T``'s computation, ``forward``
    (``n`` pushforwards, for a ``D`` of at least ``n`` numbers) or backward.
    """

    def below(x: Any) -> tuple[Any, tuple[Any, ...]]:
        outputs = transform(func, x, operator)
        return jnp.ravel(outputs[0]), outputs

    derivative = jax.jacfwd if forward else jax.jacrev
    table, outputs = derivative(below, has_aux=True)(x)
    return (table, *outputs)


def _flops(lowered: Any) -> float | None:
    """XLA's count of a lowered computation's floating-point operations, if it has one.

    A computation that does none (a constant) has no count in XLA's analysis. Where
    the lowered computation has no analysis (a platform reached through a plugin,
    such as CUDA), it is compiled, as its first call would, for the compiled one's.
    ``cost_analysis`` was a list of one dict per computation before JAX 0.4.36.
    """
    try:
        analysis = lowered.cost_analysis()
    except NotImplementedError:
        analysis = None
    if analysis is None:
        analysis = lowered.compile().cost_analysis()
    if isinstance(analysis, list | tuple):
        analysis = analysis[0] if analysis else None
    if not isinstance(analysis, dict):
        return None
    return float(analysis.get("flops", 0.0))


_LOOP = re.compile(r"\b(?:stablehlo|mhlo)\.while\b")
"""A loop in a lowered computation's text."""


def _checking() -> bool:
    """Whether JAX checks computations for NaN or infinity (``jax.debug_nans``)."""
    return bool(jax.config.jax_debug_nans or jax.config.jax_debug_infs)  # type: ignore[attr-defined]


def _kept(
    whole: Callable[..., tuple[Any, ...]],
    appliers: dict[tuple[int, int, Any], Callable[..., Any]],
    x: Any,
) -> Any:
    """The product operator at ``x``: its outputs packed, and its residuals.

    Each raveled into one array. The residuals are the leaves of the pullback
    :func:`jax.vjp` returns, in its order. Two arrays, as NumPy's view of a JAX array
    (the outputs') makes a later computation that takes that array cost 30-50 µs
    more (a 2-core x86 machine). Traced, it records in ``appliers`` the compiled
    product that takes the residuals apart again as this trace laid them out
    (:func:`_apply_kept`), for the length of ``x`` and theirs and their dtype (a
    linear function has none at every length, and a function reading ``x[0]`` alone
    as many): a trace made again (``jax.clear_caches()``) records it again.
    """
    pullback, *outputs = whole(x)
    leaves, treedef = jax.tree_util.tree_flatten(pullback)
    none = jnp.zeros(0, outputs[0].dtype)  # a linear function keeps no residuals
    residuals = jnp.concatenate([none, *(leaf.ravel() for leaf in leaves)])
    shapes = tuple(leaf.shape for leaf in leaves)
    applier = functools.partial(_apply_kept, treedef, shapes)
    key = (x.shape[0], residuals.shape[0], np.dtype(residuals.dtype))
    appliers[key] = jax.jit(applier)
    return jnp.concatenate([output.ravel() for output in outputs]), residuals


def _apply_kept(
    treedef: Any, shapes: tuple[tuple[int, ...], ...], residuals: Any, argument: Any
) -> Any:
    """The product from the ``residuals`` packed as :func:`_kept` packs them."""
    leaves, start = [], 0
    for shape in shapes:
        size = math.prod(shape)
        leaves.append(residuals[start : start + size].reshape(shape))
        start += size
    return _apply_product(jax.tree_util.tree_unflatten(treedef, leaves), argument)


class _Kept:
    """A product's state that keeps its residuals: a JAX array and the product.

    ``residuals`` are those of the evaluation that made the outputs, packed by
    :func:`_kept`; ``apply`` is the compiled ``(residuals, argument) ↦`` product.
    Applying it evaluates nothing of the function again.
    """

    __slots__ = ("apply", "residuals")

    def __init__(self, apply: Callable[..., Any], residuals: Any) -> None:
        self.apply = apply
        self.residuals = residuals


class _FromPoint:
    """A product's state that recomputes it: ``product(x, argument)``, compiled.

    ``x`` is the NumPy point the :class:`~diffops.BoundProduct` owns.
    """

    __slots__ = ("product", "x")

    def __init__(self, product: Callable[..., Any], x: np.ndarray) -> None:
        self.product = product
        self.x = x


# Products in the precision of their point, whatever JAX's 64-bit mode now.
#
# A product computes in the dtype of the output after it, which its argument is
# converted to: float64 where x was float64 and JAX's 64-bit mode on where the
# product was made, float32 where it was off. Applied where the mode is the other
# one (in or out of a jax.enable_x64 block), JAX would take the argument and a
# float64 x in that mode's dtype: a kept pullback refuses a float64 argument made
# float32 (a ValueError), and a product from the point computes in that mode.
# Looking at the mode costs 1-5 µs a product after a compiled call (a 2-core x86
# machine), so it is looked at only where a product went wrong: a kept pullback
# that refused a float64 argument is applied again in 64-bit mode, and a product
# from the point whose result's dtype is not the argument's is computed again in
# the argument's mode (the first result discarded). A batch of products whose
# points are float64, dearer, looks at the mode first.


def _wants_x64(argument: np.ndarray) -> bool:
    """The 64-bit mode a product taking ``argument`` computes in, for a float64 x."""
    return argument.dtype == np.float64


def _x64_now() -> bool:
    return bool(jax.config.jax_enable_x64)  # type: ignore[attr-defined]


def _in_mode(x64: bool, apply: Callable[..., Any], *args: Any) -> Any:
    """``apply(*args)`` in JAX's 64-bit mode ``x64``, in this thread."""
    enable_x64 = getattr(jax, "enable_x64", None)
    if enable_x64 is None:  # an older JAX's, as its experimental feature
        from jax import experimental

        enable_x64 = experimental.enable_x64  # type: ignore[attr-defined]
    with enable_x64(x64):
        return apply(*args)


# The compiled evaluation: small outputs packed, with a product's residuals.

Places = tuple[tuple[int | slice, tuple[int, ...] | None], ...]
"""Where each output lies in a packed array: its index there (a position for a 0-d
output, a slice for others) and, for more than one dimension, its shape."""

Layout = tuple[
    Callable[..., Any], int, Places, tuple[int, tuple[int, int]] | None, bool
]
"""A packed evaluation: the compiled function that returns the packed array, its
length, the outputs' :data:`Places` in it, for a tabulated product the table's (its
first ``k`` numbers, and its shape), and whether the function returns the product's
residuals too, packed in a second array (:class:`_Kept`)."""

Plan = Layout | str
"""How a compiled evaluation runs at one length and dtype of ``x``: packed in a
:data:`Layout`, or :data:`_SEPARATE` or :data:`_RESIDUALS`."""

_SEPARATE = "separate"
"""Each output returned as its own JAX array."""

_RESIDUALS = "residuals"
"""The product operator evaluated whole, its product's state the pullback."""


def _concatenated(function: Callable[..., tuple[Any, ...]], x: Any) -> Any:
    """``function``'s outputs at ``x``, raveled into one array."""
    return jnp.concatenate([jnp.ravel(output) for output in function(x)])


class _Compiled:
    """A compiled derivative function's evaluation, its outputs the caller's own.

    For each length and dtype of ``x`` a plan is made once, from the outputs' shapes
    (:func:`jax.eval_shape`). Where there are several and they hold at most
    :data:`PACK_UP_TO` numbers, all of one dtype, one compiled call returns them
    raveled into one array, taken into NumPy once, and each output is a copy of its
    part of it; otherwise each is taken into NumPy and copied. A 0-d output is a NumPy
    scalar.

    For a product operator, ``function`` computes the outputs after the product only
    (``H, g, f(x)``, ``J, c(x)`` or ``c(x)``). Where the product's table is small and
    cheap (:data:`TABULATE_UP_TO`), ``tabulated`` computes it before them, packed with
    them, and the product's state is the table, NumPy's read-only view of its part of
    the packed array. Otherwise ``residual`` evaluates the operator whole, keeping the
    residuals: up to :data:`PACK_RESIDUALS_UP_TO` numbers, ``kept`` returns them
    packed in a second array and the state is a :class:`_Kept`; beyond, the state is
    the pullback. Up to ``n =`` :data:`RECOMPUTE_UP_TO`, where JAX checks for NaN, and
    where JAX cannot take the function in reverse, the state is the point (a
    :class:`_FromPoint`).

    Args:
        function: The outputs' computation, on JAX arrays.
        separate: ``function``, compiled.
        product: For a product operator: the compiled ``(x, argument) ↦`` product,
            from the point.
        residual: For a product operator: the compiled operator, keeping residuals.
        tabulated: For a product operator: the product's table and the outputs, on
            JAX arrays, computed ``forward`` or not (:func:`_tabulated`).
        whole: For a product operator: the operator, on JAX arrays, which ``kept``
            packs with its residuals (:func:`_kept`).
    """

    __slots__ = (
        "appliers",
        "function",
        "kept",
        "packed",
        "plans",
        "product",
        "residual",
        "separate",
        "tabulated",
    )

    def __init__(
        self,
        function: Callable[..., tuple[Any, ...]],
        separate: Callable[..., Any],
        product: Callable[..., Any] | None = None,
        residual: Callable[..., Any] | None = None,
        tabulated: Callable[..., tuple[Any, ...]] | None = None,
        whole: Callable[..., tuple[Any, ...]] | None = None,
    ) -> None:
        self.function = function
        self.separate = separate
        self.packed = jax.jit(functools.partial(_concatenated, function))
        self.product = product
        self.residual = residual
        # The packed outputs and residuals, and for each such array's length and
        # dtype, the compiled product from it as the trace that made it laid it out.
        self.appliers: dict[tuple[int, int, np.dtype[Any]], Callable[..., Any]] = {}
        self.kept = (
            None
            if whole is None
            else jax.jit(functools.partial(_kept, whole, self.appliers))
        )
        self.tabulated: dict[bool, Callable[..., Any]] = {}  # jitted, by forward
        if tabulated is not None:
            for forward in (False, True):
                computed = functools.partial(tabulated, forward=forward)
                self.tabulated[forward] = jax.jit(
                    functools.partial(_concatenated, computed)
                )
        self.plans: dict[tuple[int, np.dtype[Any]], Plan] = {}

    def _plan(self, x: np.ndarray) -> Plan:
        _check_precision(x)
        point = jax.ShapeDtypeStruct(x.shape, x.dtype)  # type: ignore[no-untyped-call]
        shapes = jax.eval_shape(self.function, point)
        sizes = [int(np.prod(shape.shape)) for shape in shapes]
        (n,) = x.shape
        small = bool(self.tabulated) and sizes[0] * n <= TABULATE_UP_TO
        # Where JAX checks computations for NaN or infinity, residuals may hold
        # them where the outputs do not (a derivative infinite at x), and the call
        # would raise: the product is computed from the point instead.
        keep = self.residual is not None and n > RECOMPUTE_UP_TO and not _checking()
        if keep and not small:
            return self._residual_plan(point, shapes, sizes)
        reversible, product_flops = True, None
        trace = getattr(self.product, "trace", None)  # JAX 0.4.31 on
        if trace is not None:
            # Traced and lowered now, so that it reads the data func reads
            # (globals, closures; a NumPy array's contents are read when lowered)
            # as the evaluation does, not as they are at its first use; its calls
            # find this lowering in JAX's cache. Keeping the lowering here instead,
            # and calling its compiled form, would survive jax.clear_caches but
            # costs 0.8 µs a product (a Compiled object's call against jit's).
            below = shapes[0]  # H or J, whose shape and dtype the argument has
            argument = jax.ShapeDtypeStruct(below.shape, below.dtype)  # type: ignore[no-untyped-call]
            try:
                product_flops = _flops(trace(point, argument).lower())
            except Exception:
                # One order more than the outputs, which JAX may not take in reverse
                # (a while_loop): then the outputs are returned, and the product
                # raises it where it is used, unless its table, computed forward,
                # is small.
                reversible = False
        if len({shape.dtype for shape in shapes}) > 1:
            return _SEPARATE
        tabulated = self._tabulated(point, sizes[0], product_flops, reversible)
        if tabulated is not None:
            table = (sizes[0] * n, (sizes[0], n))
            return self._layout(tabulated, shapes, sizes, table)
        if keep and reversible:
            return self._residual_plan(point, shapes, sizes)
        if len(shapes) == 1 or sum(sizes) > PACK_UP_TO:
            return _SEPARATE  # one output (vjp_and_value's c(x)): nothing to save
        return self._layout(self.packed, shapes, sizes, None)

    def _residual_plan(self, point: Any, shapes: Any, sizes: list[int]) -> Plan:
        """The plan keeping the product's residuals: packed, where they are few.

        Where the outputs and the residuals are of one dtype and the residuals hold
        at most :data:`PACK_RESIDUALS_UP_TO` numbers, one compiled call returns the
        outputs packed in one array and the residuals in another, the product's
        state; otherwise the residuals are returned as JAX returns them
        (:data:`_RESIDUALS`). Where JAX
        cannot take ``func`` in reverse (a ``while_loop``), the outputs are returned
        alone, and the product raises that error where it is applied.
        """
        try:
            whole = jax.eval_shape(self.residual, point)  # type: ignore[arg-type]
        except Exception:
            if len(shapes) == 1 or sum(sizes) > PACK_UP_TO:
                return _SEPARATE
            return self._layout(self.packed, shapes, sizes, None)
        leaves = jax.tree_util.tree_leaves(whole[0])
        dtypes = {leaf.dtype for leaf in leaves} | {shape.dtype for shape in shapes}
        total = sum(int(np.prod(leaf.shape)) for leaf in leaves)
        if self.kept is None or len(dtypes) > 1 or total > PACK_RESIDUALS_UP_TO:
            return _RESIDUALS
        return self._layout(self.kept, shapes, sizes, None, kept=True)

    def _tabulated(
        self,
        point: Any,
        below: int,
        product_flops: float | None,
        reversible: bool,
    ) -> Callable[..., Any] | None:
        """The compiled evaluation with the product's table, where it is computed.

        That is, where the table is small and costs little more than the product
        (:data:`TABULATE_UP_TO`, :data:`TABULATE_FLOPS`), as XLA counts them; not
        where JAX cannot compute it (it raises), where XLA counts nothing, or where
        the computation loops (XLA counts a loop's body once, whatever its trip
        count). Where the product cannot be computed from the point (JAX cannot
        take ``func`` in reverse to its order, not ``reversible``), a small table
        is computed whatever it costs: the product then works. ``below`` is the
        number of the table's rows, those of the output after the product.

        Not where JAX checks computations for NaN or infinity (``jax_debug_nans``,
        ``jax_debug_infs``): the table holds derivatives the outputs do not need,
        which may have them where the outputs do not, and the call would raise.
        """
        (n,) = point.shape
        if not self.tabulated or below * n > TABULATE_UP_TO:
            return None
        if _checking():
            return None
        tabulated = self.tabulated[below >= n]
        try:
            lowered = tabulated.trace(point).lower()  # type: ignore[attr-defined]
        except Exception:  # JAX cannot differentiate func to the table's order
            return None
        if not reversible:
            return tabulated
        if product_flops is None or _LOOP.search(lowered.as_text()):
            return None
        flops = _flops(lowered)
        if flops is None:
            return None
        allowed = product_flops + TABULATE_FLOPS
        if flops > allowed:  # the outputs alone may cost most of it
            plain = _flops(self.packed.trace(point).lower())
            if plain is None or flops - plain > allowed:
                return None
        return tabulated

    @staticmethod
    def _layout(
        function: Callable[..., Any],
        shapes: tuple[Any, ...],
        sizes: list[int],
        table: tuple[int, tuple[int, int]] | None,
        kept: bool = False,
    ) -> Layout:
        """The packed plan: the outputs' places after the table, if there is one."""
        places: list[tuple[int | slice, tuple[int, ...] | None]] = []
        start = 0 if table is None else table[0]
        for shape, size in zip(shapes, sizes, strict=True):
            if shape.ndim == 0:
                places.append((start, None))
            else:
                reshaped = shape.shape if shape.ndim > 1 else None
                places.append((slice(start, start + size), reshaped))
            start += size
        return function, start, tuple(places), table, kept

    def __call__(self, x: np.ndarray) -> tuple[Any, ...]:
        # The per-call path: every step inline, one compiled call.
        key = (x.shape[0], x.dtype)
        try:
            plan = self.plans[key]
        except KeyError:
            plan = self.plans[key] = self._plan(x)
        table, kept = None, False
        if type(plan) is tuple:
            function, length, places, table, kept = plan
            packed = function(x)
            if kept:
                packed, residuals = packed
            packed = np.asarray(packed)  # JAX's, read-only
            if packed.shape[0] != length:
                # Traced again since the plan was made (jax.clear_caches()), from
                # data that changed the outputs' shapes: planned again, from them.
                self.plans[key] = self._plan(x)
                return self(x)
            outputs = _unpacked(packed, places)
        elif plan is _SEPARATE:
            outputs = _numpy_outputs(self.separate(x))
        else:  # _RESIDUALS
            state, *arrays = self.residual(x)  # type: ignore[misc]
            return (state, *_numpy_outputs(arrays))
        if self.product is None:
            return outputs
        if table is not None:
            return (packed[: table[0]].reshape(table[1]), *outputs)
        if kept:
            apply = self.appliers[key[0], residuals.shape[0], packed.dtype]
            return (_Kept(apply, residuals), *outputs)
        return (_FromPoint(self.product, x), *outputs)


def _unpacked(packed: np.ndarray, places: Places) -> tuple[Any, ...]:
    """The outputs laid out in ``packed`` as a plan's ``places`` say.

    Each is a copy of its part of ``packed``; a 0-d one a NumPy scalar, a copy
    already.
    """
    arrays = []
    for index, shape in places:  # a loop: 0.2-0.4 µs less than a comprehension
        part = packed[index]
        if type(index) is slice:
            part = (part if shape is None else part.reshape(shape)).copy()
        arrays.append(part)
    return tuple(arrays)


class _CompiledDerivativeFunction(DerivativeFunction):
    """A compiled derivative function: its usual call in one frame.

    Where ``x`` is a plain float vector of a length and dtype already planned, packed
    or separate, the call does inline what :class:`~diffops.DerivativeFunction`'s
    call and :class:`_Compiled`'s do in calls of their own. Timed in turns with the
    hand-written forms, a call of ``mhp_jacobian_and_value`` came to 1.00-1.03 times
    the owned form at ``n = 3`` to ``300`` and 1.12 at ``1000``, against 1.01-1.08
    and 1.14 through the general path (a 2-core x86 machine). Anything else (another
    ``x``, its first call at a length, the residuals' plan) takes the general path,
    through :class:`_Compiled`.
    """

    __slots__ = ("_compiled",)

    def __init__(
        self, operator: str, evaluate: _Compiled, *args: Any, **kwargs: Any
    ) -> None:
        super().__init__(operator, evaluate, *args, **kwargs)
        self._compiled = evaluate

    def __call__(self, x: Any) -> tuple[Any, ...]:
        """Evaluate at ``x``: the outputs, highest derivative first, value last."""
        compiled = self._compiled
        if not (
            type(x) is np.ndarray  # validation.is_plain, inline, as the general path
            and x.dtype in NATIVE_FLOATS
            and x.flags.carray
            and x.ndim == 1
            and x.size
        ):
            return super().__call__(x)
        plan = compiled.plans.get((x.shape[0], x.dtype))
        if plan is None or plan is _RESIDUALS:
            return super().__call__(x)
        if self._product:
            x = x.copy()  # the point the product is bound to
        table, kept = None, False
        try:
            if type(plan) is tuple:
                function, length, places, table, kept = plan
                packed = function(x)
                if kept:
                    packed, residuals = packed
                packed = np.asarray(packed)  # JAX's, read-only
                if packed.shape[0] != length:  # traced again: see _Compiled
                    return super().__call__(x)
                outputs = _unpacked(packed, places)
            else:  # _SEPARATE
                outputs = _numpy_outputs(compiled.separate(x))
        except Exception as error:
            self._raise_explained(error)
        if compiled.product is None:
            return outputs
        state: np.ndarray | _Kept | _FromPoint
        if table is not None:
            state = packed[: table[0]].reshape(table[1])
        elif kept:
            apply = compiled.appliers[x.shape[0], residuals.shape[0], packed.dtype]
            state = _Kept(apply, residuals)
        else:
            state = _FromPoint(compiled.product, x)
        return (BoundProduct(self, x, state, outputs[0]), *outputs)


_OUTPUTS_AFTER_PRODUCT: dict[
    Callable[..., Any],
    tuple[Callable[..., tuple[Any, ...]], Callable[..., tuple[Any, ...]]],
] = {
    _mtp_hessian_grad_and_value: (
        _hessian_grad_and_value,
        functools.partial(_hessian_grad_and_value, batch_of_one=True),
    ),
    _mhp_jacobian_and_value: (_jacobian_and_value, _jacobian_and_value),
    _vjp_and_value: (_vector_value, _vector_value),
}
"""For each product operator's transform, those of its outputs after the product:
to evaluate, and to differentiate for the product."""


def _compiled(function: FrameworkDerivative, call: Callable[..., Any]) -> _Compiled:
    """The compiled evaluation of ``function`` (``call``, compiled whole).

    Its product, if it has one, tabulated where that is small and cheap, and
    otherwise from the residuals kept.
    """
    if function.transform not in _OUTPUTS_AFTER_PRODUCT:
        return _Compiled(function, call)
    outputs, differentiated = _OUTPUTS_AFTER_PRODUCT[function.transform]
    operator, func = function.operator, function.func
    computed = functools.partial(outputs, func, operator=operator)
    return _Compiled(
        computed,
        jax.jit(computed),
        jax.jit(
            functools.partial(_contracted_gradient, differentiated, func, operator)
        ),
        call,
        functools.partial(_tabulated, differentiated, func, operator),
        function,
    )


# How the outputs reach the user.


def _owned(value: Any) -> np.ndarray:
    """A JAX array as a new NumPy array, the caller's own.

    NumPy's view of JAX's host buffer (from a GPU, of a transfer into a new one) is
    read-only, and a product's residuals may be that same buffer, so the view is
    copied (``np.array(value)`` costs the same). Where the output is large, the copy's
    memory may be freshly mapped at each call: see "Large outputs and the C
    allocator" in docs/backends.md.
    """
    return np.asarray(value).copy()


def _to_numpy(value: Any, dtype: np.dtype[Any]) -> Any:
    return as_output(_owned(value))  # in the dtype JAX computes x in (_typed)


def _numpy_outputs(outputs: tuple[Any, ...] | list[Any]) -> tuple[Any, ...]:
    """The caller's own NumPy outputs, from a compiled function's JAX arrays.

    Each is a copy of NumPy's read-only view of JAX's buffer, a 0-d one a NumPy
    scalar (a copy already). A loop, not a call per output: this is the per-call
    path.
    """
    owned = []
    for output in outputs:
        array = np.asarray(output)
        owned.append(array.copy() if array.ndim else array[()])
    return tuple(owned)


def _apply_product(pullback: Pullback, argument: Any) -> Any:
    (product,) = pullback(argument)
    return product


_apply_compiled_pullback = jax.jit(_apply_product) if AVAILABLE else _apply_product


def _apply_eager(pullback: Pullback, argument: Any) -> Any:
    """A product of ``jax_nojit``: its pullback, in its argument's mode (see above)."""
    return _pulled_back_in_mode(_apply_product, pullback, argument)


def _pulled_back_in_mode(
    apply: Callable[[Pullback, Any], Any], pullback: Pullback, argument: np.ndarray
) -> Any:
    """``apply(pullback, argument)``, in 64-bit mode where it refuses a float64 one.

    A pullback kept in 64-bit mode, applied outside it, gets the argument as float32
    and raises a ``ValueError``; it is then applied again in 64-bit mode, once the
    error is handled (so that a ``ValueError`` of the user's, raised again, is not
    chained to the first).
    """
    try:
        return apply(pullback, argument)
    except ValueError:
        if not _wants_x64(argument) or _x64_now():
            raise
    return _in_mode(True, apply, pullback, argument)


def _apply_compiled(state: Any, argument: Any) -> np.ndarray:
    """A compiled product, in NumPy: by its table, from the residuals, or its point.

    ``argument`` is a C-ordered array of the shape of the output after the product
    (:class:`~diffops.BoundProduct` sees to it), so raveling it copies nothing; the
    product with the table is a new array. Computed in the argument's 64-bit mode
    (see above); a table is NumPy's, in its dtype.
    """
    kind = type(state)
    if kind is np.ndarray:
        return argument.reshape(-1) @ state  # type: ignore[no-any-return]
    if kind is _Kept:
        return _owned(_pulled_back_in_mode(state.apply, state.residuals, argument))
    if kind is _FromPoint:
        product = _owned(state.product(state.x, argument))
        if product.dtype is not argument.dtype:
            x64 = _wants_x64(argument)
            if x64 != _x64_now():
                return _in_mode(x64, _apply_compiled, state, argument)  # type: ignore[no-any-return]
        return product
    return _owned(_pulled_back_in_mode(_apply_compiled_pullback, state, argument))


def _explain(compiled: bool, error: BaseException) -> str | None:
    escape = (
        ", or use the backend 'jax_nojit', which runs it without compiling"
        if compiled
        else ""
    )
    if isinstance(error, jax.errors.TracerArrayConversionError):
        return (
            "it calls a NumPy function (or np.asarray) on a value computed from x, "
            "which JAX cannot trace: write it with jax.numpy (import jax.numpy as "
            "jnp)."
        )
    if isinstance(error, jax.errors.TracerBoolConversionError):
        return (
            "it uses a value computed from x in Python control flow (an if or a "
            "while, or a comparison used as a bool), which JAX cannot trace: write "
            f"it with jnp.where or jax.lax.cond{escape}."
        )
    if isinstance(
        error,
        jax.errors.ConcretizationTypeError
        | jax.errors.TracerIntegerConversionError
        | jax.errors.NonConcreteBooleanIndexError,
    ):
        return (
            "it needs a value computed from x as a Python number (float(...), "
            "int(...), an index, a shape or a boolean mask), which JAX cannot trace: "
            f"keep it a JAX array (jnp.where in place of a mask){escape}."
        )
    if isinstance(error, TypeError) and "JAX arrays are immutable" in str(error):
        return (
            "it assigns into an array in place (x[i] = v), which JAX arrays do not "
            "allow: write x = x.at[i].set(v)."
        )
    return None


def _arrays(traced: FrameworkDerivative, x: Any) -> tuple[Any, ...]:
    return tuple(traced(x)[1:])  # the outputs after the product's state


def _product(traced: FrameworkDerivative, x: Any, argument: Any) -> Any:
    return _apply_product(traced(x)[0], argument)


def _evaluate_batch(
    batched: Callable[[Any], tuple[Any, ...]],
    compiled: bool,
    product: bool,
    X: np.ndarray,
) -> tuple[Any, ...]:
    outputs = _evaluate(batched, X)
    if compiled:  # its runtime converts no outputs (to_numpy is None)
        outputs = _numpy_outputs(outputs)
    # A batch of products keeps its points, not every point's residuals (which
    # would grow with k · n²), and computes from them when applied: as fast here.
    return (X.copy(), *outputs) if product else tuple(outputs)


def _apply_batch(
    per_point: Callable[..., Any],
    shared: Callable[..., Any],
    compiled: bool,
    points: np.ndarray,
    argument: np.ndarray,
    is_shared: bool,
) -> Any:
    if points.dtype == np.float64:  # in the argument's mode, as one product is
        x64 = _wants_x64(argument)
        if x64 != _x64_now():
            return _in_mode(
                x64,
                _apply_batch,
                per_point,
                shared,
                compiled,
                points,
                argument,
                is_shared,
            )
    product = (shared if is_shared else per_point)(points, argument)
    return _owned(product) if compiled else product


def _batching(compile: bool, derivative: DerivativeFunction) -> Batching:
    """:func:`jax.vmap` of the derivative function and of its products, compiled."""

    def compiled(function: Callable[..., Any]) -> Callable[..., Any]:
        return jax.jit(function) if compile else function

    traced = derivative.traced
    assert isinstance(traced, FrameworkDerivative)
    if OPERATORS[derivative.operator].product is None:
        evaluate = compiled(jax.vmap(traced))
        return Batching(functools.partial(_evaluate_batch, evaluate, compile, False))
    evaluate = compiled(jax.vmap(functools.partial(_arrays, traced)))
    product = functools.partial(_product, traced)
    return Batching(
        functools.partial(_evaluate_batch, evaluate, compile, True),
        functools.partial(
            _apply_batch,
            compiled(jax.vmap(product, in_axes=(0, 0))),
            compiled(jax.vmap(product, in_axes=(0, None))),
            compile,
        ),
    )


COMPILED = Runtime(
    None,
    _apply_compiled,
    backend="jax",
    explain=functools.partial(_explain, True),
    batch=functools.partial(_batching, True),
)
"""The runtime of backend ``jax``: products are compiled, and many points too; its
compiled functions return NumPy outputs themselves (small ones packed)."""

EAGER = Runtime(
    _to_numpy,
    _apply_eager,
    backend="jax_nojit",
    explain=functools.partial(_explain, False),
    batch=functools.partial(_batching, False),
)
"""The runtime of backend ``jax_nojit``."""


def _derivative(
    operator: Callable[..., FrameworkDerivative],
    transform: Callable[..., Any],
    func: Callable[..., Any],
) -> FrameworkDerivative:
    check_callable(func, operator.__name__)
    return FrameworkDerivative(operator.__name__, transform, func)


# The operators, in the order of DIFF_OPS.


@operator_sections
def vjp_and_value(func: Callable[..., Any]) -> FrameworkDerivative:
    """Make ``x ↦ (vjp, c(x))`` for a function ``c`` of any shape, on JAX arrays.

    ``vjp`` is the pullback of :func:`jax.vjp`.
    """
    return _derivative(vjp_and_value, _vjp_and_value, func)


@operator_sections
def grad_and_value(func: Callable[..., Any]) -> FrameworkDerivative:
    """Make ``x ↦ (g, f(x))`` for a scalar function ``f``, on JAX arrays."""
    return _derivative(grad_and_value, _grad_and_value, func)


@operator_sections
def hessian_grad_and_value(func: Callable[..., Any]) -> FrameworkDerivative:
    """Make ``x ↦ (H, g, f(x))`` for a scalar function ``f``, on JAX arrays.

    ``H`` is computed forward-over-reverse: the ``n`` basis vectors pushed forward
    through the gradient, vectorised with :func:`jax.vmap`.
    """
    return _derivative(hessian_grad_and_value, _hessian_grad_and_value, func)


@operator_sections
def mtp_hessian_grad_and_value(func: Callable[..., Any]) -> FrameworkDerivative:
    """Make ``x ↦ (mtp, H, g, f(x))`` for a scalar function ``f``, on JAX arrays.

    ``mtp`` is the pullback of the Hessian map, applied to the cotangent ``M``.
    """
    return _derivative(mtp_hessian_grad_and_value, _mtp_hessian_grad_and_value, func)


@operator_sections
def jacobian_and_value(func: Callable[..., Any]) -> FrameworkDerivative:
    """Make ``x ↦ (J, c(x))`` for a vector function ``c``, on JAX arrays.

    Reverse mode (``m`` pullbacks) when ``m <= n``, forward mode (``n`` pushforwards)
    otherwise, each vectorised.
    """
    return _derivative(jacobian_and_value, _jacobian_and_value, func)


@operator_sections
def mhp_jacobian_and_value(func: Callable[..., Any]) -> FrameworkDerivative:
    """Make ``x ↦ (mhp, J, c(x))`` for a vector function ``c``, on JAX arrays.

    ``mhp`` is the pullback of the Jacobian map, applied to the cotangent ``M``.
    """
    return _derivative(mhp_jacobian_and_value, _mhp_jacobian_and_value, func)


# The function wrappers.

_precision_checked = False

_PACKAGE = os.path.dirname(os.path.dirname(__file__)) + os.sep
"""This package's folder, as its code's file names begin (symbolic links kept)."""


def _check_precision(x: np.ndarray) -> None:
    """Warn, once per process, where float64 input is computed in float32.

    The warning names the line that called diffops, however deep this is called.
    """
    global _precision_checked
    if _precision_checked or x.dtype != np.float64:
        return
    if jax.config.read("jax_enable_x64"):  # type: ignore[no-untyped-call]
        # Computed in float64 now; looked at again (the mode may be on only in a
        # jax.enable_x64 block), not marked done.
        return
    _precision_checked = True
    frame, level = sys._getframe(1), 2
    while frame.f_back is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        frame, level = frame.f_back, level + 1
    warnings.warn(
        "diffops: a float64 input is being computed in float32 by JAX, because "
        "JAX's 64-bit mode is off, so results are float32. To compute in float64, "
        "set the environment variable JAX_ENABLE_X64=1 before importing JAX, or "
        "call jax.config.update('jax_enable_x64', True) at start-up.",
        UserWarning,
        stacklevel=level,
    )


def _evaluate(function: Callable[[Any], tuple[Any, ...]], x: np.ndarray) -> Any:
    if not _precision_checked:
        _check_precision(x)
    return function(x)


def _to_framework(value: Any) -> Any:
    """An argument of a wrapped function (``wrap_function(f, "jax_nojit")``) for JAX.

    A float64 array is computed in float32 where the 64-bit mode is off: said once,
    as a derivative function's call says it.
    """
    if isinstance(value, np.ndarray):
        return jnp.asarray(_to_compiled(value))
    return value


def _to_compiled(value: Any) -> Any:
    """An argument of a compiled wrapped function (``wrap_function(f, "jax")``).

    A NumPy array is handed to the compiled function as it is, which takes it into
    JAX in its own call: ``jnp.asarray`` first cost 40 µs of an 80 µs call (n = 30,
    a 2-core x86 machine), the compiled call alone 17 µs.
    """
    if isinstance(value, np.ndarray):  # JAX reads a buffer as native and C-ordered
        if not _precision_checked:
            _check_precision(value)
        return as_plain_array(value)
    return value


def _output_to_numpy(value: Any) -> Any:
    return _owned(value) if isinstance(value, jax.Array) else value


def _wrap(
    function: Callable[..., Any], compile: bool
) -> DerivativeFunction | NumpyReturningFunction:
    wrapper = jit_and_return_numpy_arrays if compile else return_numpy_arrays
    call = jax.jit(function) if compile else function
    if isinstance(function, FrameworkDerivative):
        if compile:
            return _CompiledDerivativeFunction(
                function.operator,
                _compiled(function, call),
                COMPILED,
                (wrapper, (function,)),
                func=function.func,
                traced=function,
            )
        eager = function
        transform = _OP_BY_OP.get(function.transform)
        if transform is not None:
            eager = FrameworkDerivative(function.operator, transform, function.func)
        return DerivativeFunction(
            function.operator,
            functools.partial(_evaluate, eager),
            EAGER,
            (wrapper, (function,)),
            func=function.func,
            traced=eager,
        )
    return NumpyReturningFunction(
        function,
        call,
        _to_compiled if compile else _to_framework,
        _output_to_numpy,
        (wrapper, (function,)),
    )


def jit_and_return_numpy_arrays(
    function: Callable[..., Any],
) -> DerivativeFunction | NumpyReturningFunction:
    """Compile a JAX function with :func:`jax.jit` and make it return NumPy arrays.

    The function wrapper of the ``jax`` backend.

    Args:
        function: A function written with JAX primitives, such as a derivative
            function made by this module's operators.

    Returns:
        For a derivative function, the :class:`~diffops.DerivativeFunction` users
        call, its products compiled too; for any other function, a
        :class:`~diffops.functions.NumpyReturningFunction`. Compiled on first call.
    """
    return _wrap(function, compile=True)


def return_numpy_arrays(
    function: Callable[..., Any],
) -> DerivativeFunction | NumpyReturningFunction:
    """Make a JAX function return NumPy arrays, without compiling it.

    The function wrapper of the ``jax_nojit`` backend.

    Args:
        function: A function written with JAX primitives, such as a derivative
            function made by this module's operators.

    Returns:
        For a derivative function, the :class:`~diffops.DerivativeFunction` users
        call; for any other function, a
        :class:`~diffops.functions.NumpyReturningFunction`. Run op by op.
    """
    return _wrap(function, compile=False)
