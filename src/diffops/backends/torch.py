"""PyTorch backend: operators built on :func:`torch.autograd.grad`.

``func`` is written with ``torch`` operations on a 1-D tensor. Each operator returns a
:class:`~diffops.functions.FrameworkDerivative`, a function of a tensor; the
registered function wrapper, :func:`return_numpy_arrays`, makes from it the
:class:`~diffops.DerivativeFunction` users call, which takes and returns NumPy arrays.
``x`` becomes a tensor of its own dtype (float64 stays float64) on the CPU by
default; to compute on another device, wrap with
``return_numpy_arrays(function, device="cuda")``.

At one point, each operator is what an expert writes by hand with PyTorch's tape:
one forward pass of ``func`` recording the graph, then reverse passes of
:func:`torch.autograd.grad`. A higher order differentiates the recorded gradient
again (``create_graph=True``), and the rows of a Hessian or Jacobian are pulled back
in one batched pass (``is_grads_batched=True``; one by one where PyTorch has no
batching rule for the pass, as under anomaly detection). A product keeps the graph
of the output it differentiates and runs one more reverse pass when applied. A single
reverse pass goes straight to PyTorch's autograd engine, as
:func:`torch.autograd.grad` does once it has checked its arguments, which saves
those checks' 13 µs (``_pulled_back``). The tape is 1.9-9 times faster per call than
:mod:`torch.func`'s transforms, which :func:`diffops.vectorize` uses instead, to
evaluate many points in one call.

Threads run the tape freely: its forward and reverse passes, batched ones included,
keep their state per thread (the grad mode, :mod:`torch.func`'s layers) or per graph;
anomaly mode, which is process-wide, may come on in the middle of a pass, and
``_rows_pulled_back`` allows for it.
:func:`diffops.vectorize`'s evaluations and products, in :mod:`torch.func`'s
transforms, which PyTorch does not say may run in several threads at once, hold one
lock (``_FUNC_LOCK``), as do derivative functions made with ``compile=True``:
:func:`torch.compile`'s code is not safe to run from several threads at once.
A ``func`` that enters forward mode itself (:func:`torch.func.jvp`) is not safe to
differentiate from several threads at once, as it is not safe to call so.
"""

from __future__ import annotations

import functools
import numbers
import threading
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
)
from diffops.operators import OPERATORS, operator_sections
from diffops.validation import (
    NATIVE_FLOATS,
    as_plain_array,
    check_callable,
    check_real_number,
    check_real_output,
    check_scalar_output,
    check_vector_output,
)

FRAMEWORK = "torch"

try:
    import torch
    import torch.func
    from torch.overrides import has_torch_function
except ImportError:
    AVAILABLE = False
else:
    AVAILABLE = True

_ENGINE: Callable[..., tuple[Any, ...]] | None = None
"""PyTorch's call into its autograd engine, ``(outputs, cotangents, retain_graph,
create_graph, inputs, allow_unused, accumulate_grad=False)``, which
:func:`torch.autograd.grad` makes once it has checked its arguments; ``None`` in a
PyTorch without it (before 2.3), where :func:`torch.autograd.grad` is called
instead."""

_NUMPY_DTYPES: dict[np.dtype[Any], Any] = {}
"""NumPy's float dtypes to PyTorch's."""

_FUNC_LOCK = threading.RLock()
"""Held around :mod:`torch.func`'s transforms and compiled code (see above)."""

if AVAILABLE:
    _ENGINE = getattr(torch.autograd.graph, "_engine_run_backward", None)
    _NUMPY_DTYPES = {
        np.dtype(np.float64): torch.float64,
        np.dtype(np.float32): torch.float32,
    }

__all__ = [
    "AVAILABLE",
    "COMPILABLE",
    "FRAMEWORK",
    "Pullback",
    "grad_and_value",
    "hessian_grad_and_value",
    "jacobian_and_value",
    "mhp_jacobian_and_value",
    "mtp_hessian_grad_and_value",
    "return_numpy_arrays",
    "vjp_and_value",
]


def _pulled_back(
    output: Any, x: Any, cotangent: Any, *, graph: bool = False, rows: bool = False
) -> Any:
    """``cotangent @ ∂output/∂x``, zero where ``output`` does not depend on ``x``.

    The graph is kept, for a product to pull back through it again. One cotangent
    goes to PyTorch's autograd engine as :func:`torch.autograd.grad` hands it on
    (``_ENGINE``), without that function's handling of its arguments in Python (13
    µs a call on a 2-core x86 machine, a third of a gradient at small ``n``); a
    stack of them (``rows``), a tensor subclass or a ``__torch_function__`` mode
    goes through :func:`torch.autograd.grad`.

    Args:
        output: A tensor computed from the leaf ``x`` with its graph recorded.
        x: The leaf tensor the graph starts from.
        cotangent: A tensor of ``output``'s shape, dtype and device or, where
            ``rows``, a stack of them; ``None`` for a scalar ``output``, as if ``1``.
        graph: Whether to record the result's graph, to differentiate it again.
        rows: Whether ``cotangent`` is a stack, each row pulled back, in one pass.

    Returns:
        A tensor of ``x``'s shape, or a stack of them, one per row of ``cotangent``.
    """
    if output.requires_grad and output.numel():
        if rows or _ENGINE is None or has_torch_function((output, x)):
            (product,) = torch.autograd.grad(
                output,
                x,
                cotangent,
                retain_graph=True,
                create_graph=graph,
                allow_unused=True,
                is_grads_batched=rows,
            )
        else:
            if cotangent is None:
                cotangent = torch.ones_like(output)
            (product,) = _ENGINE(
                (output,), (cotangent,), True, graph, (x,), True, accumulate_grad=False
            )
        if product is not None:
            return product
    # output does not depend on x (it may on a parameter): zeros, of the stack's
    # shape where rows, which materialize_grads=True would not give.
    shape = (len(cotangent), *x.shape) if rows else x.shape
    return torch.zeros(shape, dtype=x.dtype, device=x.device)


_UNBATCHABLE = ("Batching rule not implemented", "vmap", "doesn't have storage")
"""What PyTorch's errors say where a batched reverse pass cannot run: no batching
rule for an operation, ``vmap`` refusing one (an in-place write into an unbatched
tensor), or a batched tensor's data read as a number (``.tolist()``)."""


def _rows_pulled_back(output: Any, x: Any, *, graph: bool = False) -> Any:
    """``∂output/∂x`` for a 1-D ``output``: its rows pulled back together.

    Under :func:`torch.autograd.detect_anomaly`, whose checks of each node's outputs
    the batched pass cannot run (PyTorch has no batching rule for them), the rows are
    pulled back one by one, at the cost of a pass each. Anomaly mode is process-wide,
    so another thread may turn it on during the batched pass: where that pass finds
    no batching rule, the rows are pulled back one by one too, as they are where a
    backward of the user's cannot be batched (its ``.item()`` or ``.tolist()``, or an
    in-place ``index_add_`` into a tensor of its own, which ``vmap`` refuses).
    """
    basis = torch.eye(output.shape[0], dtype=output.dtype, device=output.device)
    if not (len(basis) and torch.is_anomaly_enabled()):
        try:
            return _pulled_back(output, x, basis, graph=graph, rows=True)
        except RuntimeError as error:  # the graph is kept: it is pulled back again
            text = str(error)
            batching = any(sign in text for sign in _UNBATCHABLE)
            if not (len(basis) and batching):
                raise
    return torch.stack([_pulled_back(output, x, row, graph=graph) for row in basis])


class Pullback:
    """The linear map ``u ↦ u @ ∂y/∂x``, by a reverse pass of the graph kept.

    Args:
        output: The output ``y`` (a value, Hessian or Jacobian) with its graph
            recorded from ``x``; a cotangent takes its dtype and device.
        x: The leaf tensor the graph starts from.
    """

    __slots__ = ("output", "x")

    def __init__(self, output: Any, x: Any) -> None:
        self.output = output
        self.x = x

    def __call__(self, cotangent: Any) -> Any:
        """Apply the map to ``cotangent``, an array or tensor of ``y``'s shape."""
        output = self.output
        # PyTorch takes no big-endian or negatively strided array, and warns of a
        # read-only one; and the caller's array is the caller's, which a backward
        # pass of the user's (an autograd.Function) may write into: copied.
        cotangent = as_plain_array(cotangent, copy=output.is_cpu)
        if (
            type(cotangent) is np.ndarray
            and output.is_cpu
            and _NUMPY_DTYPES.get(cotangent.dtype) is output.dtype
        ):
            tensor = torch.from_numpy(cotangent)  # as below, in a fifth of the time
        else:
            tensor = torch.as_tensor(
                cotangent, dtype=output.dtype, device=output.device
            )
        if tensor.shape != output.shape:  # which the engine is not asked to check
            msg = (
                f"the cotangent must have the shape of y, {tuple(output.shape)}; "
                f"got {tuple(tensor.shape)}."
            )
            raise ValueError(msg)
        return _pulled_back(output, self.x, tensor)


def _value(
    func: Callable[..., Any],
    operator: str,
    check: Callable[..., None] | None,
    x: Any,
) -> Any:
    """``func(x)``: a dense tensor of the shape ``check`` checks (any, for ``None``).

    In x's dtype, so that every output is, and a product's argument takes it. A
    number is refused, not taken as a constant as the other backends take one: a
    tensor's ``.item()`` or ``float(...)`` makes one too, cutting the graph, which
    would give zero derivatives without a word.
    """
    value = func(x)
    if not isinstance(value, torch.Tensor):
        check_real_number(value, operator)
        msg = (
            f"{operator} needs func to return a torch tensor; it returned "
            f"{type(value).__name__}."
        )
        if isinstance(value, numbers.Number):
            msg += (
                " A tensor's .item() or float(...) is a number PyTorch cannot "
                "differentiate: return the tensor (for a constant c, torch.tensor(c))."
            )
        raise TypeError(msg)
    if value.layout is not torch.strided:  # PyTorch's own errors name neither
        msg = (
            f"{operator} needs func to return a dense torch tensor; it returned one "
            f"of layout {value.layout}: return its .to_dense()."
        )
        raise TypeError(msg)
    if value.dtype != x.dtype:
        check_real_output(value.dtype, operator)  # before the shape, as elsewhere
        value = value.to(x.dtype)
    if check is not None and value.dim() != _DIMENSIONS[check]:
        check(tuple(value.shape), operator)  # only to raise: 0.3 µs a call
    return value


_DIMENSIONS = {check_scalar_output: 0, check_vector_output: 1}
"""The dimensions of the output each check of :func:`_value` takes."""


def _recorded(
    func: Callable[..., Any],
    operator: str,
    x: Any,
    check: Callable[..., None] | None,
) -> tuple[Any, Any]:
    """``(leaf, func(leaf))``: the graph of ``func`` recorded from a leaf at ``x``."""
    # A leaf of the caller's own (as _Evaluate makes) is used as it is: the graph
    # starts there and no .grad accumulates, as torch.autograd.grad does not.
    if x.is_leaf and x.requires_grad:
        leaf = x
    elif x.is_inference():  # made under torch.inference_mode: it cannot record
        leaf = x.clone().requires_grad_(True)
    else:
        leaf = x.detach().requires_grad_(True)
    return leaf, _value(func, operator, check, leaf)


_UNWRAPPED: dict[Callable[..., Any], Callable[..., tuple[Any, ...]]] = {}
"""Each transform :func:`_recording` made, to the one it wraps, which
:class:`_Evaluate` calls itself where the graph is recorded anyway."""


def _recording(
    transform: Callable[..., tuple[Any, ...]],
) -> Callable[..., tuple[Any, ...]]:
    """``transform``, recording the graph even where the caller turned it off.

    With :class:`torch.no_grad` or :class:`torch.inference_mode`.
    """

    @functools.wraps(transform)
    def recording(*args: Any, **kwargs: Any) -> tuple[Any, ...]:
        if torch.is_grad_enabled() and not torch.is_inference_mode_enabled():
            return transform(*args, **kwargs)  # as is usual: no context to enter
        with torch.inference_mode(False), torch.enable_grad():
            return transform(*args, **kwargs)

    _UNWRAPPED[recording] = transform
    return recording


# The operators' computations at one point, on tensors.


@_recording
def _vjp_and_value(
    func: Callable[..., Any], x: Any, operator: str = "vjp_and_value"
) -> tuple[Pullback, Any]:
    leaf, value = _recorded(func, operator, x, None)  # c of any shape, which u takes
    return Pullback(value, leaf), value.detach()


@_recording
def _grad_and_value(
    func: Callable[..., Any], x: Any, operator: str = "grad_and_value"
) -> tuple[Any, Any]:
    leaf, value = _recorded(func, operator, x, check_scalar_output)
    return _pulled_back(value, leaf, None), value.detach()


def _hessian_recorded(
    func: Callable[..., Any], operator: str, x: Any, graph: bool
) -> tuple[Any, Any, Any, Any]:
    """``(leaf, H, g, f(x))``, reverse over reverse; H's graph recorded if ``graph``."""
    leaf, value = _recorded(func, operator, x, check_scalar_output)
    grad = _pulled_back(value, leaf, None, graph=True)
    hessian = _rows_pulled_back(grad, leaf, graph=graph)
    return leaf, hessian, grad.detach(), value.detach()


@_recording
def _hessian_grad_and_value(
    func: Callable[..., Any], x: Any, operator: str = "hessian_grad_and_value"
) -> tuple[Any, Any, Any]:
    _, hessian, grad, value = _hessian_recorded(func, operator, x, graph=False)
    return hessian, grad, value


@_recording
def _mtp_hessian_grad_and_value(
    func: Callable[..., Any], x: Any, operator: str = "mtp_hessian_grad_and_value"
) -> tuple[Pullback, Any, Any, Any]:
    leaf, hessian, grad, value = _hessian_recorded(func, operator, x, graph=True)
    return Pullback(hessian, leaf), hessian.detach(), grad, value


@_recording
def _jacobian_and_value(
    func: Callable[..., Any], x: Any, operator: str = "jacobian_and_value"
) -> tuple[Any, Any]:
    leaf, value = _recorded(func, operator, x, check_vector_output)
    return _rows_pulled_back(value, leaf), value.detach()


@_recording
def _mhp_jacobian_and_value(
    func: Callable[..., Any], x: Any, operator: str = "mhp_jacobian_and_value"
) -> tuple[Pullback, Any, Any]:
    leaf, value = _recorded(func, operator, x, check_vector_output)
    jacobian = _rows_pulled_back(value, leaf, graph=True)
    return Pullback(jacobian, leaf), jacobian.detach(), value.detach()


# The same computations for many points at once, in torch.func's transforms, which
# torch.func.vmap can batch: what diffops.vectorize calls.


def _vjp(func: Callable[..., Any], x: Any, *, has_aux: bool = False) -> Any:
    """:func:`torch.func.vjp`, typed loosely: 2 or 3 values by ``has_aux``."""
    return torch.func.vjp(func, x, has_aux=has_aux)


def _func_vector_value(func: Callable[..., Any], x: Any) -> tuple[Any]:
    return (_value(func, "vjp_and_value", None, x),)


def _func_grad_and_value(
    func: Callable[..., Any], x: Any, operator: str = "grad_and_value"
) -> tuple[Any, Any]:
    value, pullback = _vjp(
        functools.partial(_value, func, operator, check_scalar_output), x
    )
    (grad,) = pullback(torch.ones_like(value))
    return grad, value


def _func_grad_with_aux(func: Callable[..., Any], x: Any) -> tuple[Any, Any]:
    grad, value = _func_grad_and_value(func, x, "hessian_grad_and_value")
    return grad, (grad, value)


def _func_hessian_grad_and_value(
    func: Callable[..., Any], x: Any
) -> tuple[Any, Any, Any]:
    """Reverse over reverse: :func:`torch.func.jacrev` of the gradient.

    As the tape computes it. Forward mode would not see :class:`torch.no_grad` in
    ``func``, which reverse mode heeds: a term computed under it would be
    differentiated in the batch and not at one point.
    """
    hessian, (grad, value) = torch.func.jacrev(
        functools.partial(_func_grad_with_aux, func), has_aux=True
    )(x)
    return hessian, grad, value


def _func_jacobian_and_value(func: Callable[..., Any], x: Any) -> tuple[Any, Any]:
    value, pullback = _vjp(
        functools.partial(_value, func, "jacobian_and_value", check_vector_output), x
    )
    basis = torch.eye(value.shape[0], dtype=value.dtype, device=value.device)
    # The pullback at e_i is row i of J; vmap pushes all m rows at once.
    (jacobian,) = torch.func.vmap(pullback)(basis)
    return jacobian, value


def _first_and_rest(
    transform: Callable[..., tuple[Any, ...]], func: Callable[..., Any], x: Any
) -> tuple[Any, tuple[Any, ...]]:
    first, *rest = transform(func, x)
    return first, tuple(rest)


def _func_product(
    transform: Callable[..., tuple[Any, ...]],
    func: Callable[..., Any],
    x: Any,
    argument: Any,
) -> Any:
    """The product at ``x``: the pullback of ``transform``'s first output."""
    _, pullback, _ = _vjp(
        functools.partial(_first_and_rest, transform, func), x, has_aux=True
    )
    (product,) = pullback(argument)
    return product


_FUNC_TRANSFORMS: dict[str, Callable[..., tuple[Any, ...]]] = {
    "vjp_and_value": _func_vector_value,
    "grad_and_value": _func_grad_and_value,
    "hessian_grad_and_value": _func_hessian_grad_and_value,
    "mtp_hessian_grad_and_value": _func_hessian_grad_and_value,
    "jacobian_and_value": _func_jacobian_and_value,
    "mhp_jacobian_and_value": _func_jacobian_and_value,
}
"""Each operator's outputs after the product's state, by :mod:`torch.func`."""


# How the outputs reach the user.


def _to_numpy(value: Any, dtype: np.dtype[Any]) -> Any:
    """An output as users get it (:func:`~diffops.functions.as_output`, inline).

    Every output is in ``x``'s dtype already (:func:`_value` converts the value, and
    derivatives and products take its dtype), so ``dtype`` is not asked for again:
    0.6 µs of a call, with the inlining.
    """
    array = _owned(value)
    return array[()] if array.ndim == 0 else array


def _owned(value: Any) -> np.ndarray:
    """A tensor as a new NumPy array of its dtype, the caller's own.

    A tensor on the CPU may be ``x`` itself or one a pullback keeps, so it is copied;
    one on another device is copied to the CPU by ``.cpu()``, into a tensor nothing
    else holds, whose memory NumPy then takes as it is, not copied again. Each call
    into PyTorch costs microseconds, so only those that are needed are made.
    """
    if value.requires_grad:
        value = value.detach()
    return np.array(value.numpy()) if value.is_cpu else value.cpu().numpy()


_APPLIED = "raised applying the product, after the call that made it"
"""The note on a framework error a product raised, which :func:`_explain` reads."""


def _apply_product(pullback: Pullback, argument: np.ndarray) -> Any:
    try:
        return pullback(argument)
    except RuntimeError as error:
        error.add_note(_APPLIED)
        raise


def _explain(error: BaseException) -> str | None:
    text = str(error)
    numpy_call = (
        "it calls a NumPy function on x (or converts x to a NumPy array), which "
        "PyTorch cannot differentiate: write it with torch operations "
        "(torch.sin, torch.sum, ...)."
    )
    if isinstance(error, RuntimeError) and (
        "numpy()" in text or "doesn't have storage" in text
    ):
        return numpy_call
    if isinstance(error, TypeError) and "unexpected keyword argument 'axis'" in text:
        return numpy_call  # NumPy's reductions call the tensor's with axis=
    if isinstance(error, RuntimeError) and "modified by an inplace operation" in text:
        # In a product, what changed may be the function's own tensor (the call of
        # vjp_and_value runs no backward pass) or data changed since the call.
        if _APPLIED in getattr(error, "__notes__", ()):
            return (
                "a tensor PyTorch kept to compute the product was changed in place: "
                "either it changes a tensor in place after using it (y.mul_(y), "
                "y += 1, y[i] = v: compute a new one instead, y = y * y), or data it "
                "reads (a model's parameters) was changed in place after the product "
                "was made (make the product again after changing the data)."
            )
        return (
            "it changes a tensor in place after using it (y.mul_(y), y += 1, "
            "y[i] = v), and PyTorch needs that tensor as it was to differentiate: "
            "compute a new one instead (y = y * y, y = y + 1, torch.where)."
        )
    if isinstance(error, RuntimeError) and "in-place operation" in text:
        return (
            "it assigns into x, or into a view of it, in place (x[i] = v), which "
            "PyTorch cannot differentiate: build a new tensor (torch.stack, "
            "torch.cat, torch.where)."
        )
    if isinstance(error, RuntimeError) and (
        "data-dependent control flow" in text or ".item()" in text
    ):
        return (
            "it uses a value computed from x in Python control flow or as a Python "
            "number, which torch.func cannot differentiate: write it with "
            "torch.where."
        )
    return None


def _evaluate_batch(
    batched: Callable[[Any], tuple[Any, ...]], device: Any, product: bool, X: Any
) -> tuple[Any, ...]:
    # From a copy, as func may write into its argument where autograd does not see
    # it (_Evaluate). torch.func.vmap returns tensors only, so a batch of products
    # keeps its points and computes the product from them when applied.
    with _FUNC_LOCK:
        outputs = batched(_tensor(X.copy() if _on_cpu(device) else X, device))
    return (X.copy(), *outputs) if product else tuple(outputs)


def _apply_batch(
    product: Callable[..., Any],
    device: Any,
    points: np.ndarray,
    argument: np.ndarray,
    is_shared: bool,
) -> Any:
    in_dims = (0, None) if is_shared else (0, 0)
    batched = torch.func.vmap(product, in_dims=in_dims)
    # From copies, as in _evaluate_batch and Pullback: the batch keeps its points,
    # and the argument is the caller's.
    if _on_cpu(device):
        points, argument = points.copy(), argument.copy()
    with _FUNC_LOCK:
        return batched(_tensor(points, device), _tensor(argument, device))


def _batching(derivative: DerivativeFunction) -> Batching:
    """:func:`torch.func.vmap` of the operator's :mod:`torch.func` form."""
    traced = derivative.traced
    assert isinstance(traced, FrameworkDerivative)
    assert isinstance(derivative.evaluate, _Evaluate)
    device = derivative.evaluate.device
    transform = _FUNC_TRANSFORMS[derivative.operator]
    batched = torch.func.vmap(functools.partial(transform, traced.func))
    if OPERATORS[derivative.operator].product is None:
        return Batching(functools.partial(_evaluate_batch, batched, device, False))
    product = functools.partial(_func_product, transform, traced.func)
    return Batching(
        functools.partial(_evaluate_batch, batched, device, True),
        functools.partial(_apply_batch, product, device),
    )


RUNTIME = Runtime(
    _to_numpy, _apply_product, backend="torch", explain=_explain, batch=_batching
)
"""How this backend's derivative functions run, on the tape and without a lock."""

_COMPILED_RUNTIME = RUNTIME._replace(lock=_FUNC_LOCK)
"""How those made with ``compile=True`` run, one thread at a time."""


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
    """Make ``x ↦ (vjp, c(x))`` for a function ``c`` of any shape, on tensors.

    ``vjp`` is a :class:`Pullback` of the graph recorded at ``x``.
    """
    return _derivative(vjp_and_value, _vjp_and_value, func)


@operator_sections
def grad_and_value(func: Callable[..., Any]) -> FrameworkDerivative:
    """Make ``x ↦ (g, f(x))`` for a scalar function ``f``, on tensors."""
    return _derivative(grad_and_value, _grad_and_value, func)


@operator_sections
def hessian_grad_and_value(func: Callable[..., Any]) -> FrameworkDerivative:
    """Make ``x ↦ (H, g, f(x))`` for a scalar function ``f``, on tensors.

    Reverse over reverse: the gradient is recorded, then its ``n`` rows pulled back
    in one batched pass.
    """
    return _derivative(hessian_grad_and_value, _hessian_grad_and_value, func)


@operator_sections
def mtp_hessian_grad_and_value(func: Callable[..., Any]) -> FrameworkDerivative:
    """Make ``x ↦ (mtp, H, g, f(x))`` for a scalar function ``f``, on tensors.

    ``mtp`` is a :class:`Pullback` of the Hessian's recorded graph, applied to the
    cotangent ``M``.
    """
    return _derivative(mtp_hessian_grad_and_value, _mtp_hessian_grad_and_value, func)


@operator_sections
def jacobian_and_value(func: Callable[..., Any]) -> FrameworkDerivative:
    """Make ``x ↦ (J, c(x))`` for a vector function ``c``, on tensors.

    One forward pass, then the ``m`` rows pulled back in one batched pass.
    """
    return _derivative(jacobian_and_value, _jacobian_and_value, func)


@operator_sections
def mhp_jacobian_and_value(func: Callable[..., Any]) -> FrameworkDerivative:
    """Make ``x ↦ (mhp, J, c(x))`` for a vector function ``c``, on tensors.

    ``mhp`` is a :class:`Pullback` of the Jacobian's recorded graph, applied to the
    cotangent ``M``.
    """
    return _derivative(mhp_jacobian_and_value, _mhp_jacobian_and_value, func)


# The function wrapper.


def _on_cpu(device: Any) -> bool:
    """Whether a tensor made on ``device`` from a NumPy array shares its memory.

    On another device, moving it there copies it.
    """
    return device is None or torch.device(device).type == "cpu"


def _tensor(array: np.ndarray, device: Any) -> Any:
    tensor = torch.from_numpy(array)
    return tensor if device is None else tensor.to(device)


class _Evaluate:
    """``x ↦ function(x as a tensor on device)``: what a derivative function calls.

    On the CPU, where the graph is recorded, :class:`_TapeDerivativeFunction` does
    the same in its own call for a plain ``x``; this is the general path, for other
    devices, ``compile=True``, any other ``x`` and :class:`torch.no_grad`.

    Where the graph is recorded, as is usual, one of this module's operators calls
    its transform itself (``transform``), without the check :func:`_recording`
    makes again or the call through ``function``: 0.6 µs of a call.

    On the CPU the tensor shares ``x``'s memory, and ``func`` may write into its
    argument where autograd does not see it (under :class:`torch.no_grad`, through
    ``.data``), so it is made from a copy of ``x`` that nothing else holds: not the
    caller's ``x``, nor the copy a product is bound to (``copied``: a gradient's call
    took 1.00-1.01 times as long, a ``vjp_and_value`` call 1.004-1.007, at ``n = 3``
    and ``300``).
    """

    __slots__ = ("copied", "device", "func", "function", "transform")

    def __init__(self, function: FrameworkDerivative, device: Any) -> None:
        self.function = function
        self.device = device
        self.transform = _UNWRAPPED.get(function.transform)
        self.func = function.func
        self.copied = _on_cpu(device)

    def __call__(self, x: np.ndarray) -> Any:
        if self.copied:
            x = x.copy()
        transform = self.transform
        if (
            transform is not None
            and torch.is_grad_enabled()
            and not torch.is_inference_mode_enabled()
        ):
            return transform(self.func, _tensor(x, self.device).requires_grad_(True))
        if torch.is_inference_mode_enabled():  # a tensor made here cannot record
            with torch.inference_mode(False):
                return self.function(_tensor(x, self.device))
        # The leaf the graph starts from: x's buffer, a copy nothing else holds.
        return self.function(_tensor(x, self.device).requires_grad_(True))


class _TapeDerivativeFunction(DerivativeFunction):
    """A derivative function on the tape, on the CPU: its usual call in one frame.

    Where ``x`` is a plain float vector and the graph is recorded, as is usual, the
    call does inline what :class:`~diffops.DerivativeFunction`'s call, ``_Evaluate``
    and the conversion of each output do in calls of their own, and calls the
    operator's transform itself. Beyond the work written by hand, those calls were
    most of what a call cost: this saves 0.8-1.3 µs of a ``vjp_and_value`` call of
    25-28 µs at ``n = 3`` and ``300`` (a 2-core x86 machine, the two paths timed in
    turns). Anything else (another ``x``, :class:`torch.no_grad`) takes the general
    path, through ``_Evaluate``.
    """

    __slots__ = ("_transform",)

    def __init__(
        self, operator: str, evaluate: _Evaluate, *args: Any, **kwargs: Any
    ) -> None:
        super().__init__(operator, evaluate, *args, **kwargs)
        assert evaluate.transform is not None  # one of this module's operators
        self._transform: Callable[..., tuple[Any, ...]] = evaluate.transform

    def __call__(self, x: Any) -> tuple[Any, ...]:
        """Evaluate at ``x``: the outputs, highest derivative first, value last."""
        if not (
            # validation.is_plain, inline, as in the general path, but for the
            # layout: x is copied, in C order, before torch sees it.
            type(x) is np.ndarray
            and x.dtype in NATIVE_FLOATS
            and x.ndim == 1
            and x.size
            and torch.is_grad_enabled()
            and not torch.is_inference_mode_enabled()
        ):
            return super().__call__(x)
        product = self._product
        if product:
            x = x.copy()  # the point the product is bound to
        # The leaf: a copy nothing else holds, which func may write into (_Evaluate).
        leaf = torch.from_numpy(x.copy()).requires_grad_(True)
        try:
            outputs = self._transform(self.func, leaf)
        except Exception as error:
            self._raise_explained(error)
        arrays = []
        for output in outputs[product:]:  # after the product's state; no frame
            # _owned, inline, on the CPU. A gradient may still require grad where
            # a backward of the user's computed it in grad mode.
            if output.requires_grad:
                output = output.detach()
            array = np.array(output.numpy())
            arrays.append(array[()] if array.ndim == 0 else array)
        if product:
            return (BoundProduct(self, x, outputs[0], arrays[0]), *arrays)
        return tuple(arrays)


def _to_framework(device: Any, value: Any) -> Any:
    if isinstance(value, np.ndarray):  # a copy, which the function may write into
        value = torch.from_numpy(as_plain_array(value, copy=_on_cpu(device)))
    if device is not None and isinstance(value, torch.Tensor):
        value = value.to(device)
    return value


def _output_to_numpy(value: Any) -> Any:
    return _owned(value) if isinstance(value, torch.Tensor) else value


COMPILABLE = ("vjp_and_value", "grad_and_value")
"""The operators ``return_numpy_arrays(..., compile=True)`` takes: those of first
order, as :func:`torch.compile` cannot differentiate its code twice."""


def return_numpy_arrays(
    function: Callable[..., Any], device: Any = None, compile: bool = False
) -> DerivativeFunction | NumpyReturningFunction:
    """Make a torch function take and return NumPy arrays.

    The function wrapper of the ``torch`` backend.

    Args:
        function: A function of tensors, such as a derivative function made by this
            module's operators.
        device: Where to compute: a :class:`torch.device` or its name, such as
            ``"cuda"``; ``None`` for the CPU.
        compile: Whether to compile the user's function with :func:`torch.compile`
            (and so its backward pass), for the operators in :data:`COMPILABLE`.
            On the CPU this makes a gradient 1.0-2.4 times faster at ``n = 3``
            to ``300`` (bench runs on a 2-core x86 machine) for a compilation of
            0.04-12 s on the first call at each length of ``x`` (compiled for that
            length, ``dynamic=False``; past PyTorch's limit of recompilations,
            ``torch._dynamo.config.recompile_limit``, 8 for each function's code,
            a new length runs uncompiled), in every process: worth it for long runs
            only (see the docs' "Choosing a backend").

    Returns:
        For a derivative function, the :class:`~diffops.DerivativeFunction` users
        call; for any other function, a
        :class:`~diffops.functions.NumpyReturningFunction`.

    Raises:
        ValueError: If ``compile`` is asked for an operator not in
            :data:`COMPILABLE`.
    """
    device = None if device is None else torch.device(device)
    rebuild = (return_numpy_arrays, (function, device, compile))
    if isinstance(function, FrameworkDerivative):
        evaluated, runtime = function, RUNTIME
        if compile:
            evaluated, runtime = _compiled(function), _COMPILED_RUNTIME
        evaluate = _Evaluate(evaluated, device)
        one_frame = evaluate.copied and evaluate.transform is not None and not compile
        made = _TapeDerivativeFunction if one_frame else DerivativeFunction
        return made(
            function.operator,
            evaluate,
            runtime,
            rebuild,
            func=function.func,
            traced=function,
        )
    if compile:
        msg = "compile=True is for derivative functions made by this module."
        raise ValueError(msg)
    return NumpyReturningFunction(
        function,
        function,
        functools.partial(_to_framework, device),
        _output_to_numpy,
        rebuild,
    )


_TWICE = (
    "differentiates twice, which torch.compile cannot (PyTorch's aot_autograd has no "
    "double backward)"
)
_NOT_COMPILABLE = {
    "jacobian_and_value": (
        "pulls its rows back in one batched pass (is_grads_batched=True), which "
        "torch.compile's backward pass cannot run"
    ),
}
"""Why ``compile=True`` refuses an operator, where it is not :data:`_TWICE`."""


def _compiled(function: FrameworkDerivative) -> FrameworkDerivative:
    """``function`` computed from :func:`torch.compile` of the user's function."""
    if function.operator not in COMPILABLE:
        reason = _NOT_COMPILABLE.get(function.operator, _TWICE)
        msg = (
            f"compile=True is for {' and '.join(COMPILABLE)}; {function.operator} "
            f"{reason}: leave compile out for it."
        )
        raise ValueError(msg)
    # Compiled anew for each length of x: PyTorch's code for dynamic shapes, which it
    # makes at a second length, may donate its backward pass's buffers, which the
    # graph a product keeps (retain_graph=True) cannot then be pulled back through.
    compiled = torch.compile(function.func, dynamic=False)
    return FrameworkDerivative(function.operator, function.transform, compiled)
