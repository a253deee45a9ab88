"""``diffops bench``: per-call latency of every operator, side by side.

For each backend, operator and size ``n``, diffops' derivative function is timed in
one process with the fastest code an expert would write by hand for the same outputs
in that framework, and with the peer, with interleaved repeats so that the machine's
drift affects all alike:

* ``diffops``: :func:`diffops.autodiff_fallback`;
* ``framework``: the fastest of the hand-written forms of :func:`hand_written` for
  that framework (for ``torch``, ``torch.autograd.grad`` on the tape,
  ``torch.autograd.functional`` with ``vectorize=True`` and :mod:`torch.func`; for
  ``jax``, the jitted composite and, for a product, the two-call bound: the
  outputs, then the product computed from ``(x, M)``), outputs converted to NumPy;
  :attr:`Measurement.reference` names the one that was fastest;
* ``peer``: ``mici.autodiff.autodiff_fallback``, when ``mici`` is installed.

What is timed (the ``target``) is the call, the product alone (``mtp``, ``mhp``,
``vjp``, applied to one argument) and a call followed by one product, as a sampler
uses them. The bench also records the cost of building each derivative function and
of its first call (compilation or symbolic generation), for SymNum both cold and
warm from its disk cache, and with ``memory=True`` the growth of resident memory over
many calls of each ``jax`` derivative function.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import importlib.util
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from diffops.functions import DerivativeFunction
from diffops.namespaces import ArrayNamespace, array_namespace
from diffops.operators import DIFF_OPS, OPERATORS
from diffops.registry import autodiff_fallback, available_backends

__all__ = [
    "DEFAULT_SIZES",
    "BatchMeasurement",
    "Measurement",
    "format_batch_table",
    "format_table",
    "measure_memory",
    "peak_memory",
    "plot",
    "plot_formats",
    "read_json",
    "run_batch_bench",
    "run_bench",
    "sample_scalar_function",
    "sample_vector_function",
]

DEFAULT_SIZES = (3, 30, 300, 1000)
TORCH_COMPILE = "torch+compile"
"""The bench's name for the ``torch`` backend with ``compile=True``, measured for its
first-order operators against the tape by hand on :func:`torch.compile`'s code."""
MEASURED_BACKENDS = ("jax", "jax_nojit", "autograd", "symnum", "torch", TORCH_COMPILE)
"""The backends the bench can measure: those it has hand-written forms for."""
SIZE_LIMITS = {
    "symnum": 30,
    "autograd": 300,
    "jax_nojit": 300,
    "torch": 300,
    TORCH_COMPILE: 300,
}
"""Largest ``n`` the bench measures per backend (default: any): SymNum generates
code for minutes beyond 30, and Hessians op by op take seconds beyond 300."""
OWNED_FORMS = ("jax", "torch")
"""The backends whose figures are also set against the hand-written forms with
diffops' guarantees written in (``hand_written(..., owned=True)``, the ``ours/owned``
column): what those guarantees cost, whoever writes the code, shows apart from what
diffops' own layer does."""


def sample_scalar_function(xp: ArrayNamespace, n: int) -> Callable[..., Any]:
    """``f(x) = x₀²/8 + Σ_{i≥1} (x_i - x_{i-1}²/2)²/2``: a chain of bananas."""

    def neg_log_density(x: Any) -> Any:
        return x[0] ** 2 / 8 + xp.sum((x[1:] - x[:-1] ** 2 / 2) ** 2) / 2

    return xp.prepare(neg_log_density, n)


def sample_vector_function(xp: ArrayNamespace, n: int) -> Callable[..., Any]:
    """``c(x) = [Σ x_i² - 1, Σ_{i≥1} x_i x_{i-1}]``: two constraints, ``m = 2``."""

    def constraint(x: Any) -> Any:
        return xp.stack([xp.sum(x**2) - 1.0, xp.sum(x[1:] * x[:-1])])

    return xp.prepare(constraint, n)


_SAMPLE_FUNCTIONS = {"scalar": sample_scalar_function, "vector": sample_vector_function}


@dataclass
class Measurement:
    """Timings of one backend, operator, size and target; microseconds per call.

    ``target`` is ``"call"`` (the derivative function), ``"product"`` (its ``mtp``,
    ``mhp`` or ``vjp`` applied once) or ``"call+product"`` (both, as a sampler does).
    ``median_us`` and ``min_us`` hold ``diffops``, ``framework`` (the fastest
    hand-written form, named by ``reference``), ``peer``, each hand-written form as
    ``"hand: <name>"`` and, for the backends in :data:`OWNED_FORMS`, each written
    with diffops' guarantees (``hand_written(..., owned=True)``) as ``"owned:
    <name>"``, the fastest of them as ``owned``. ``warm_build_s`` is SymNum's build
    from its disk cache.
    """

    backend: str
    operator: str
    n: int
    target: str
    median_us: dict[str, float] = field(default_factory=dict)
    min_us: dict[str, float] = field(default_factory=dict)
    build_s: dict[str, float] = field(default_factory=dict)
    first_call_s: dict[str, float] = field(default_factory=dict)
    max_deviation: float = 0.0
    reference: str = ""
    warm_build_s: float | None = None

    def ratio(self, numerator: str, denominator: str) -> float | None:
        """Ratio of median times, or ``None`` when either was not measured."""
        if numerator in self.median_us and denominator in self.median_us:
            return self.median_us[numerator] / self.median_us[denominator]
        return None


# The same computations written by hand in each framework.


HAND_TABULATED_UP_TO = 32768
"""Most numbers in a product's table for the bench to time it tabulated by hand."""


def _jax_forms(
    operator: str,
    func: Callable[..., Any],
    compile: bool,
    owned: bool,
    n: int | None = None,
) -> Any:
    """The jitted composite and, for a product operator, the two-call bound.

    And, where ``n`` is given and the product's table holds at most
    :data:`HAND_TABULATED_UP_TO` numbers, the tabulated form: one compiled call
    computing the table ``∂D/∂x`` of the output ``D`` after the product with the
    outputs, and the product its matrix-vector product in NumPy.
    """
    import jax
    import jax.numpy as jnp

    def compiled(function: Callable[..., Any]) -> Callable[..., Any]:
        return jax.jit(function) if compile else function

    def grad_and_value(x: Any) -> Any:
        value, grad = jax.value_and_grad(func)(x)
        return grad, value

    def with_grad_and_value(x: Any) -> tuple[Any, Any]:
        return jax.grad(func)(x), func(x)

    definitions = {
        "grad_and_value": grad_and_value,
        "hessian_grad_and_value": lambda x: (
            jax.hessian(func)(x),
            *with_grad_and_value(x),
        ),
        "mtp_hessian_grad_and_value": lambda x: (
            *reversed(jax.vjp(jax.hessian(func), x)),
            *with_grad_and_value(x),
        ),
        "jacobian_and_value": lambda x: (jax.jacrev(func)(x), func(x)),
        "mhp_jacobian_and_value": lambda x: (
            *reversed(jax.vjp(jax.jacrev(func), x)),
            func(x),
        ),
        "vjp_and_value": lambda x: tuple(reversed(jax.vjp(func, x))),
        "value": lambda x: (func(x),),
    }
    function = compiled(definitions[operator])
    apply = compiled(lambda pullback, argument: pullback(argument)[0])

    convert = np.array if owned else np.asarray

    def call(x: Any) -> Any:
        outputs = function(x)
        if callable(outputs[0]):
            product = functools.partial(_apply_numpy, convert, apply, outputs[0])
            return (product, *map(convert, outputs[1:]))
        return tuple(map(convert, outputs))

    forms = {"jit composite" if compile else "composite": call}
    # The operator whose outputs the product operator's are, after the product, and
    # the derivative the product differentiates.
    lower: dict[str, tuple[str, Callable[[Callable[..., Any]], Callable[..., Any]]]]
    lower = {
        "mtp_hessian_grad_and_value": ("hessian_grad_and_value", jax.hessian),
        "mhp_jacobian_and_value": ("jacobian_and_value", jax.jacrev),
        "vjp_and_value": ("value", lambda func: func),
    }
    if compile and operator in lower:
        # Two compiled calls: the outputs, then the product from (x, M) as the
        # gradient of x ↦ ⟨M, D(x)⟩, keeping no residuals.
        name, derivative = lower[operator]
        below = derivative(func)
        outputs = compiled(definitions[name])
        product = compiled(
            lambda x, argument: jax.grad(lambda y: jnp.sum(argument * below(y)))(x)
        )

        def two_calls(x: Any) -> Any:
            if owned:
                x = x.copy()  # the point the product is bound to
            arrays = tuple(map(convert, outputs(x)))
            return (functools.partial(_apply_numpy, convert, product, x), *arrays)

        forms["jit, product from (x, M)"] = two_calls
        if n:
            forms.update(_jax_tabulated(below, definitions[name], n, convert))
    return forms


def _jax_tabulated(
    below: Callable[..., Any],
    outputs: Callable[..., Any],
    n: int,
    convert: Callable[..., Any],
) -> dict[str, Callable[..., Any]]:
    """The tabulated form by hand, where its table is small: or none."""
    import jax
    import jax.numpy as jnp

    def flat(x: Any) -> Any:
        return jnp.ravel(below(x))

    point = jax.ShapeDtypeStruct((n,), jnp.result_type(float))  # type: ignore[no-untyped-call]
    size = jax.eval_shape(flat, point).shape[0]
    if size * n > HAND_TABULATED_UP_TO:
        return {}
    table = (jax.jacfwd if size >= n else jax.jacrev)(flat)
    tabulated = jax.jit(lambda x: (table(x), *outputs(x)))

    def tabulated_call(x: Any) -> Any:
        matrix, *arrays = tabulated(x)
        product = functools.partial(_table_product, np.asarray(matrix))
        return (product, *map(convert, arrays))

    return {"jit, tabulated": tabulated_call}


def _table_product(table: np.ndarray, argument: np.ndarray) -> np.ndarray:
    product: np.ndarray = argument.reshape(-1) @ table
    return product


def _apply_numpy(
    convert: Callable[..., Any], apply: Callable[..., Any], state: Any, argument: Any
) -> Any:
    return convert(apply(state, argument))


def _autograd_forms(operator: str, func: Callable[..., Any]) -> Any:
    import autograd

    def grad_and_value(x: Any) -> Any:
        value, grad = autograd.value_and_grad(func)(x)
        return grad, value

    def with_pullback(derivative: Callable[..., Any], x: Any) -> Any:
        pullback, value = autograd.make_vjp(derivative)(x)
        return pullback, value

    definitions = {
        "grad_and_value": grad_and_value,
        "hessian_grad_and_value": lambda x: (
            autograd.hessian(func)(x),
            *grad_and_value(x),
        ),
        "mtp_hessian_grad_and_value": lambda x: (
            *with_pullback(autograd.hessian(func), x),
            *grad_and_value(x),
        ),
        "jacobian_and_value": lambda x: (autograd.jacobian(func)(x), func(x)),
        "mhp_jacobian_and_value": lambda x: (
            *with_pullback(autograd.jacobian(func), x),
            func(x),
        ),
        "vjp_and_value": lambda x: with_pullback(func, x),
    }
    return {"autograd": definitions[operator]}


def _torch_numpy(value: Any) -> Any:
    return value if callable(value) else value.detach().numpy()


def _torch_owned(value: Any) -> Any:
    """An output as a new array; a product made to return one, from a copy of M or u.

    As diffops' torch backend does: a backward pass may write into its cotangent.
    """
    if callable(value):
        return functools.partial(_copied, value)
    return np.array(value.detach().numpy())


def _copied(product: Callable[..., Any], argument: Any) -> np.ndarray:
    return np.array(product(argument.copy()))


def _torch_tape(operator: str, func: Callable[..., Any], x: Any) -> tuple[Any, ...]:
    """By hand on PyTorch's tape: torch.autograd.grad, rows pulled back batched."""
    import torch

    x = torch.from_numpy(x).requires_grad_(True)
    value = func(x)
    keep = operator in ("mtp_hessian_grad_and_value", "mhp_jacobian_and_value")
    if operator == "vjp_and_value":
        return functools.partial(_torch_pull, value, x), value
    if operator in ("jacobian_and_value", "mhp_jacobian_and_value"):
        basis = torch.eye(value.shape[0], dtype=value.dtype)
        (jacobian,) = torch.autograd.grad(
            value, x, basis, is_grads_batched=True, create_graph=keep
        )
        if keep:
            return functools.partial(_torch_pull, jacobian, x), jacobian, value
        return jacobian, value
    higher = operator != "grad_and_value"
    (grad,) = torch.autograd.grad(value, x, create_graph=higher)
    if not higher:
        return grad, value
    basis = torch.eye(x.shape[0], dtype=x.dtype)
    (hessian,) = torch.autograd.grad(
        grad, x, basis, is_grads_batched=True, create_graph=keep
    )
    if keep:
        return functools.partial(_torch_pull, hessian, x), hessian, grad, value
    return hessian, grad, value


def _torch_functional(
    operator: str, func: Callable[..., Any], x: Any
) -> tuple[Any, ...]:
    """``torch.autograd.functional`` with ``vectorize=True``, and a gradient."""
    import torch
    from torch.autograd import functional

    keep = operator in ("mtp_hessian_grad_and_value", "mhp_jacobian_and_value")
    x = torch.from_numpy(x).requires_grad_(keep)
    if operator in ("jacobian_and_value", "mhp_jacobian_and_value"):
        jacobian = functional.jacobian(  # type: ignore[no-untyped-call]
            func, x, create_graph=keep, vectorize=True
        )
        value = func(x)
        if keep:
            return functools.partial(_torch_pull, jacobian, x), jacobian, value
        return jacobian, value
    hessian = functional.hessian(  # type: ignore[no-untyped-call]
        func, x, create_graph=keep, vectorize=True
    )
    leaf = x.detach().requires_grad_(True)
    value = func(leaf)
    (grad,) = torch.autograd.grad(value, leaf)
    if keep:
        return functools.partial(_torch_pull, hessian, x), hessian, grad, value
    return hessian, grad, value


def _torch_func(operator: str, func: Callable[..., Any], x: Any) -> tuple[Any, ...]:
    """:mod:`torch.func`'s transforms."""
    import torch
    import torch.func as tf

    x = torch.from_numpy(x)
    if operator == "grad_and_value":
        return tuple(tf.grad_and_value(func)(x))
    if operator == "hessian_grad_and_value":
        return (tf.hessian(func)(x), *tf.grad_and_value(func)(x))
    if operator == "jacobian_and_value":
        return (tf.jacrev(func)(x), func(x))
    derivative = {
        "vjp_and_value": func,
        "mtp_hessian_grad_and_value": tf.hessian(func),
        "mhp_jacobian_and_value": tf.jacrev(func),
    }[operator]
    below, pullback = tf.vjp(derivative, x)[:2]
    product = functools.partial(_torch_func_pull, pullback)
    if operator == "mtp_hessian_grad_and_value":
        return (product, below, *tf.grad_and_value(func)(x))
    return (
        (product, below) if operator == "vjp_and_value" else (product, below, func(x))
    )


def _torch_pull(output: Any, x: Any, argument: Any) -> Any:
    import torch

    (product,) = torch.autograd.grad(
        output, x, torch.from_numpy(argument), retain_graph=True
    )
    return product.numpy()


def _torch_func_pull(pullback: Callable[..., Any], argument: Any) -> Any:
    import torch

    return pullback(torch.from_numpy(argument))[0].detach().numpy()


def _torch_form(
    form: Callable[..., tuple[Any, ...]],
    operator: str,
    func: Callable[..., Any],
    owned: bool = False,
) -> Callable[[Any], tuple[Any, ...]]:
    convert = _torch_owned if owned else _torch_numpy

    def call(x: Any) -> tuple[Any, ...]:
        # The leaf is x's own buffer, which the function may write into and which
        # the tape keeps for a product: owned, a copy, as diffops' torch backend has.
        if owned:
            x = x.copy()
        return tuple(map(convert, form(operator, func, x)))

    return call


def _torch_forms(operator: str, func: Callable[..., Any], owned: bool) -> Any:
    forms = {"autograd.grad": _torch_form(_torch_tape, operator, func, owned)}
    if operator not in ("grad_and_value", "vjp_and_value"):
        forms["functional"] = _torch_form(_torch_functional, operator, func, owned)
    forms["torch.func"] = _torch_form(_torch_func, operator, func, owned)
    return forms


def _torch_compilable() -> tuple[str, ...]:
    from diffops.backends.torch import COMPILABLE

    return COMPILABLE


def _torch_compiled_derivative(operator: str, func: Callable[..., Any]) -> Any:
    from diffops.backends import torch as torch_backend

    traced = getattr(torch_backend, operator)(func)
    return torch_backend.return_numpy_arrays(traced, compile=True)


def _torch_compiled_forms(operator: str, func: Callable[..., Any]) -> Any:
    import torch

    compiled = torch.compile(func)
    return {"autograd.grad, compiled": _torch_form(_torch_tape, operator, compiled)}


def hand_written(
    backend: str,
    operator: str,
    func: Callable[..., Any],
    owned: bool = False,
    n: int | None = None,
) -> dict[str, Callable[..., Any]]:
    """The forms an expert would write by hand for ``operator``, by name.

    Each is a function of a NumPy ``x`` returning NumPy outputs (a product as a
    function of a NumPy argument), written in ``backend``'s framework.

    Args:
        backend: A built-in backend's name.
        operator: One of :data:`~diffops.DIFF_OPS`.
        func: The function, written for the backend's framework.
        owned: Whether the forms keep diffops' promise on what comes back, written
            in: each output and product a new array, and a product bound to a copy
            of ``x`` where it reads ``x`` later (``jax``, ``jax_nojit`` and
            ``torch``). By default they return what the framework hands back:
            JAX's read-only views of its buffers, views of torch's tensors.
        n: The length of ``x``, where known: for ``jax``, a product whose table
            is small is also written tabulated.

    Returns:
        Name to function; the bench keeps the fastest for each target.
    """
    if owned and backend not in ("jax", "jax_nojit", "torch"):
        msg = f"owned forms are written for jax, jax_nojit and torch, not {backend!r}"
        raise ValueError(msg)
    if backend in ("jax", "jax_nojit"):
        return _jax_forms(operator, func, backend == "jax", owned, n)  # type: ignore[no-any-return]
    if backend == "autograd":
        return _autograd_forms(operator, func)  # type: ignore[no-any-return]
    if backend == "torch":
        return _torch_forms(operator, func, owned)  # type: ignore[no-any-return]
    if backend == "symnum":
        import symnum

        from diffops.backends.symnum import SYMNUM_OPERATORS

        generated: Callable[..., Any] = getattr(symnum, SYMNUM_OPERATORS[operator])(
            func, return_aux=True
        )
        return {"symnum": generated}
    msg = f"no hand-written form is written for backend {backend!r}"
    raise ValueError(msg)


def _peer(backend: str, operator: str, func: Callable[..., Any]) -> Callable[..., Any]:
    from mici.autodiff import autodiff_fallback as peer_fallback

    derivative: Callable[..., Any] = peer_fallback(
        None, func, operator, operator, backend
    )
    return derivative


_PEER_BACKENDS = ("jax", "jax_nojit", "autograd", "symnum")


def _peer_available() -> bool:
    return importlib.util.find_spec("mici") is not None


# Timing.


def _batch_size(call: Callable[[], Any], seconds: float) -> int:
    """Number of calls that take about ``seconds``, at least one."""
    start = time.perf_counter()
    call()
    elapsed = time.perf_counter() - start
    return max(1, int(seconds / max(elapsed, 1e-7)))


def _seconds(call: Callable[[], Any], times: int = 1) -> float:
    """Seconds ``times`` calls take, the garbage collector paused, as timeit does.

    A collection that falls in one variant's turn would charge it for the objects
    the others left.
    """
    collecting = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter()
        for _ in range(times):
            call()
        return time.perf_counter() - start
    finally:
        if collecting:
            gc.enable()


def _interleaved(
    calls: Mapping[str, Callable[[], Any]], repeats: int, seconds: float
) -> tuple[dict[str, float], dict[str, float]]:
    """Median and minimum microseconds per call, variants timed in turn.

    A variant's timed batch follows a tenth of a batch of its own calls, untimed,
    and the order turns by one each repeat: a batch just after another variant's
    (such as a ``torch.func`` form's, which leaves the allocator and the caches its
    own way) ran up to 1.13 times slower, and without these the variant listed first
    always came after the one listed last.
    """
    sizes = {name: _batch_size(call, seconds) for name, call in calls.items()}
    samples: dict[str, list[float]] = {name: [] for name in calls}
    names = list(calls)
    for repeat in range(repeats):
        turn = repeat % len(names)
        for name in names[turn:] + names[:turn]:
            _seconds(calls[name], max(1, sizes[name] // 10))
            seconds_taken = _seconds(calls[name], sizes[name])
            samples[name].append(seconds_taken / sizes[name] * 1e6)
    return (
        {name: float(np.median(values)) for name, values in samples.items()},
        {name: float(np.min(values)) for name, values in samples.items()},
    )


def _deviation(outputs: Iterable[Sequence[Any]], argument: Any) -> float:
    """Largest difference between the variants' outputs (products at ``argument``)."""
    evaluated = [
        [value(argument) if callable(value) else np.asarray(value) for value in output]
        for output in outputs
    ]
    reference = evaluated[0]
    return max(
        (
            float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
            for other in evaluated[1:]
            for a, b in zip(other, reference, strict=True)
        ),
        default=0.0,
    )


class _Progress:
    """A one-line progress bar on a terminal stream."""

    def __init__(self, total: int, stream: TextIO | None) -> None:
        self.total, self.done, self.stream = total, 0, stream

    def step(self, label: str) -> None:
        if self.stream is None:
            return
        width = 30
        filled = width * self.done // max(self.total, 1)
        self.stream.write(
            f"\r[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} "
            f"{label:<45}"
        )
        self.stream.flush()
        self.done += 1

    def close(self) -> None:
        if self.stream is not None:
            self.stream.write("\r" + " " * 90 + "\r")
            self.stream.flush()


def _timed_build(build: Callable[[], Callable[..., Any]], x: np.ndarray) -> Any:
    start = time.perf_counter()
    function = build()
    built = time.perf_counter()
    output = function(x)
    return function, output, built - start, time.perf_counter() - built


def _measured_sizes(backend: str, sizes: Sequence[int]) -> list[int]:
    return [n for n in sizes if n <= SIZE_LIMITS.get(backend, n)]


def _fastest_hand_written(measurement: Measurement) -> None:
    """Set ``framework`` to the fastest ``hand: <name>`` figure, and ``reference``.

    And ``owned`` to the fastest ``owned: <name>`` figure, where there are such.
    """
    for prefix, key in (("hand: ", "framework"), ("owned: ", "owned")):
        forms = {k: v for k, v in measurement.median_us.items() if k.startswith(prefix)}
        if forms:
            name = min(forms, key=forms.__getitem__)
            measurement.median_us[key] = forms[name]
            measurement.min_us[key] = measurement.min_us[name]
            if key == "framework":
                measurement.reference = name.removeprefix(prefix)


def _call_and_product(function: Callable[..., Any], x: Any, argument: Any) -> Any:
    return function(x)[0](argument)


@contextlib.contextmanager
def _private_symnum_cache() -> Iterator[str]:
    """A new, empty SymNum code cache for the run: the first build is cold."""
    saved = os.environ.get("DIFFOPS_CACHE_DIR")
    with tempfile.TemporaryDirectory(prefix="diffops-bench-") as directory:
        os.environ["DIFFOPS_CACHE_DIR"] = directory
        try:
            yield directory
        finally:
            if saved is None:
                os.environ.pop("DIFFOPS_CACHE_DIR", None)
            else:
                os.environ["DIFFOPS_CACHE_DIR"] = saved


def run_bench(
    backends: Sequence[str] | None = None,
    operators: Sequence[str] = DIFF_OPS,
    sizes: Sequence[int] = DEFAULT_SIZES,
    *,
    repeats: int = 7,
    seconds_per_batch: float = 0.01,
    peer: bool = True,
    progress: TextIO | None = None,
) -> list[Measurement]:
    """Measure every backend × operator × size; see the module docstring.

    SymNum builds in a new, empty code cache (a temporary ``DIFFOPS_CACHE_DIR``),
    so that its build is cold, then again from that cache, warm.

    Args:
        backends: Backends to measure; default every available one.
        operators: Operators to measure, from :data:`~diffops.DIFF_OPS`.
        sizes: Values of ``n``, each up to the backend's :data:`SIZE_LIMITS`.
        repeats: Interleaved repeats per variant; median and min are over these.
        seconds_per_batch: Target duration of one timed batch of calls.
        peer: Whether to include ``mici`` when it is installed.
        progress: Stream for a progress bar, or ``None``.

    Returns:
        One :class:`Measurement` per backend, operator, size and target.
    """
    backends = checked_backends(backends, operators)
    with_peer = peer and _peer_available()
    cases = [
        (backend, operator, n)
        for backend in backends
        for n in _measured_sizes(backend, sizes)
        for operator in operators
        if backend != TORCH_COMPILE or operator in _torch_compilable()
    ]
    bar = _Progress(len(cases), progress)
    rng = np.random.default_rng(0)
    measurements: list[Measurement] = []
    with _private_symnum_cache():
        for backend, operator, n in cases:
            bar.step(f"{backend} {operator} n={n}")
            measurements += _measure(backend, operator, n, rng, with_peer, repeats,
                                     seconds_per_batch)  # fmt: skip
    bar.close()
    return measurements


def measurable_backends() -> tuple[str, ...]:
    """The backends of :data:`MEASURED_BACKENDS` whose framework is installed here."""
    available = available_backends()
    framework = {TORCH_COMPILE: "torch"}
    return tuple(b for b in MEASURED_BACKENDS if framework.get(b, b) in available)


def checked_backends(
    backends: Sequence[str] | None, operators: Sequence[str], batch: bool = False
) -> tuple[str, ...]:
    """``backends`` (default: every measurable one), or a ``ValueError`` saying why not.

    Args:
        backends: Backend names asked for, or ``None``.
        operators: Operators asked for.
        batch: Whether for :func:`run_batch_bench`, which has no ``torch+compile``
            (:func:`~diffops.vectorize` uses :mod:`torch.func`).

    Returns:
        The backends to measure.
    """
    unknown = sorted(set(operators) - set(DIFF_OPS))
    if unknown:
        msg = f"operators must be among {DIFF_OPS}; got {unknown}."
        raise ValueError(msg)
    measurable = measurable_backends()
    if batch:
        measurable = tuple(b for b in measurable if b != TORCH_COMPILE)
    if backends is None:
        return measurable
    refused = [b for b in backends if b not in measurable]
    if refused:
        msg = (
            f"the bench measures the backends {', '.join(measurable)} here; got "
            f"{', '.join(map(repr, refused))}."
        )
        raise ValueError(msg)
    if TORCH_COMPILE in backends and not set(operators) & set(_torch_compilable()):
        msg = (
            f"{TORCH_COMPILE} is measured for {' and '.join(_torch_compilable())} "
            "only (torch.compile cannot differentiate twice)."
        )
        raise ValueError(msg)
    return tuple(backends)


def _measure(
    backend: str,
    operator: str,
    n: int,
    rng: np.random.Generator,
    with_peer: bool,
    repeats: int,
    seconds_per_batch: float,
) -> list[Measurement]:
    """The measurements of one backend, operator and size: one per target."""
    compiled = backend == TORCH_COMPILE
    xp = array_namespace("torch" if compiled else backend)
    func = _SAMPLE_FUNCTIONS[OPERATORS[operator].applies_to](xp, n)
    x = rng.uniform(-1, 1, n)
    if compiled:
        import torch

        # Compiled anew at each n, as in a fresh process: the sample functions share
        # one code object, whose compiled frames Dynamo would otherwise reuse (made
        # dynamic in n after the second size), so the first call compiled nothing.
        torch._dynamo.reset()
        build = functools.partial(_torch_compiled_derivative, operator, func)
        forms = _torch_compiled_forms(operator, func)
    else:
        build = functools.partial(
            autodiff_fallback, None, func, operator, operator, backend
        )
        forms = hand_written(backend, operator, func, n=n)
    builders: dict[str, Callable[[], Callable[..., Any]]] = {"diffops": build}
    if with_peer and backend in _PEER_BACKENDS:
        builders["peer"] = functools.partial(_peer, backend, operator, func)
    for name, form in forms.items():
        builders[f"hand: {name}"] = functools.partial(lambda form: form, form)
    if backend in OWNED_FORMS:
        owned = hand_written(backend, operator, func, owned=True, n=n)
        for name, form in owned.items():
            builders[f"owned: {name}"] = functools.partial(lambda form: form, form)
    built = {name: _timed_build(builder, x) for name, builder in builders.items()}
    call = Measurement(backend, operator, n, "call")
    _, _, call.build_s["diffops"], call.first_call_s["diffops"] = built["diffops"]
    if backend == "symnum":  # again, from the code cache the first build filled
        call.warm_build_s = _timed_build(build, x)[2]
    functions = {name: function for name, (function, _, _, _) in built.items()}
    outputs = {name: output for name, (_, output, _, _) in built.items()}
    argument = None
    if callable(outputs["diffops"][0]):
        argument = rng.standard_normal(np.shape(outputs["diffops"][1]))
    call.max_deviation = _deviation(outputs.values(), argument)
    targets: dict[str, dict[str, Callable[[], Any]]] = {
        "call": {name: functools.partial(f, x) for name, f in functions.items()}
    }
    if argument is not None:
        targets["product"] = {
            name: functools.partial(output[0], argument)
            for name, output in outputs.items()
        }
        targets["call+product"] = {
            name: functools.partial(_call_and_product, f, x, argument)
            for name, f in functions.items()
        }
    measurements = []
    for target, calls in targets.items():
        measurement = call if target == "call" else Measurement(
            backend, operator, n, target, max_deviation=call.max_deviation
        )  # fmt: skip
        measurement.median_us, measurement.min_us = _interleaved(
            calls, repeats, seconds_per_batch
        )
        _fastest_hand_written(measurement)
        measurements.append(measurement)
    return measurements


def _resident_megabytes() -> float:
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    import resource

    return pages * resource.getpagesize() / 2**20


def measure_memory(
    calls: int = 100_000, n: int = 3, backend: str = "jax"
) -> dict[str, float]:
    """Growth of resident memory (MB) over ``calls`` calls of each derivative function.

    Each function is warmed up (compiled, caches filled) with 1 000 calls first; the
    products are applied on every call too, so their buffers are counted.
    """
    xp = array_namespace(backend)
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, n)
    growth = {}
    for operator in DIFF_OPS:
        func = _SAMPLE_FUNCTIONS[OPERATORS[operator].applies_to](xp, n)
        derivative = autodiff_fallback(None, func, operator, operator, backend)
        outputs = derivative(x)
        argument = (
            rng.standard_normal(np.shape(outputs[1])) if callable(outputs[0]) else None
        )

        def call(d: Callable[..., Any] = derivative, a: Any = argument) -> None:
            outputs = d(x)
            if a is not None:
                outputs[0](a)

        for _ in range(1000):
            call()
        before = _resident_megabytes()
        for _ in range(calls):
            call()
        growth[operator] = _resident_megabytes() - before
    return growth


# Many points at once: vectorize against a loop of per-point calls.


@dataclass
class BatchMeasurement:
    """Points per second at one backend, operator, size and number of points ``k``.

    ``target`` is ``"call"`` (the derivative function) or ``"product"`` (its
    ``mtp``, ``mhp`` or ``vjp``, one argument per point). ``vectorized`` is
    :func:`~diffops.vectorize` of the derivative function on all ``k`` points in
    one call; ``looped`` a Python loop of per-point calls, ``[d(x) for x in X]``.
    """

    backend: str
    operator: str
    n: int
    k: int
    target: str
    vectorized_per_s: float
    looped_per_s: float

    @property
    def speedup(self) -> float:
        """How many times more points per second vectorised than looped."""
        return self.vectorized_per_s / self.looped_per_s


def _per_second(call: Callable[[], Any], points: int, repeats: int) -> float:
    """Points per second of ``call``, which handles ``points``: the best of repeats."""
    call()  # compiled, caches filled
    best = min(_seconds(call) for _ in range(repeats))
    return points / best


def _each(function: Callable[[np.ndarray], Any], points: np.ndarray) -> list[Any]:
    return [function(x) for x in points]


def _applied_each(products: Sequence[Any], arguments: np.ndarray) -> list[Any]:
    return [product(a) for product, a in zip(products, arguments, strict=True)]


def _loop_points(
    call: Callable[[np.ndarray], Any], X: np.ndarray, budget: float
) -> int:
    """How many of ``X``'s rows a timed loop takes: as fit ``budget`` seconds."""
    seconds = _seconds(lambda: call(X[0])) + 1e-9
    return int(min(X.shape[0], max(10, budget / seconds)))


def run_batch_bench(
    backends: Sequence[str] | None = None,
    operators: Sequence[str] = DIFF_OPS,
    sizes: Sequence[int] = (3, 30),
    k: int = 1000,
    *,
    repeats: int = 5,
    loop_budget: float = 0.2,
    progress: TextIO | None = None,
) -> list[BatchMeasurement]:
    """Throughput of :func:`~diffops.vectorize` against a loop of per-point calls.

    The loop's throughput does not depend on ``k``, so it is timed on as many rows
    of ``X`` as take about ``loop_budget`` seconds (at least 10); the vectorised
    derivative function on all ``k``, except where it loops itself (a backend that
    cannot vectorise), when it is timed on the same rows as the loop.

    Args:
        backends: Backends to measure; default every available one.
        operators: Operators to measure, from :data:`~diffops.DIFF_OPS`.
        sizes: Values of ``n``.
        k: Number of points.
        repeats: Timed repeats; the best is kept.
        loop_budget: Seconds a timed loop may take.
        progress: Stream for a progress bar, or ``None``.

    Returns:
        One :class:`BatchMeasurement` per backend, operator, size and target.
    """
    from diffops.vectorized import vectorize

    backends = checked_backends(backends, operators, batch=True)
    cases = [
        (backend, operator, n)
        for backend in backends
        for n in _measured_sizes(backend, sizes)
        for operator in operators
    ]
    bar = _Progress(len(cases), progress)
    rng = np.random.default_rng(0)
    measurements = []
    for backend, operator, n in cases:
        bar.step(f"{backend} {operator} n={n} k={k}")
        record = OPERATORS[operator]
        func = _SAMPLE_FUNCTIONS[record.applies_to](array_namespace(backend), n)
        derivative = autodiff_fallback(None, func, operator, operator, backend)
        vectorized = vectorize(derivative)
        X = rng.uniform(-1, 1, (k, n))
        looped = _loop_points(derivative, X, loop_budget)
        vectorises = (
            isinstance(derivative, DerivativeFunction)
            and derivative.runtime.batch is not None
        )
        if not vectorises:  # it loops too: the same rows
            X = X[:looped]
        vectorised_per_s = _per_second(
            functools.partial(vectorized, X), X.shape[0], repeats
        )
        looped_per_s = _per_second(
            functools.partial(_each, derivative, X[:looped]), looped, repeats
        )
        measurements.append(
            BatchMeasurement(
                backend, operator, n, k, "call", vectorised_per_s, looped_per_s
            )
        )
        if record.product is None:
            continue
        batch = vectorized(X)[0]
        products = [derivative(x)[0] for x in X[:looped]]
        arguments = rng.standard_normal((X.shape[0], *batch.shape))
        vectorised_per_s = _per_second(
            functools.partial(batch, arguments), X.shape[0], repeats
        )
        looped_per_s = _per_second(
            functools.partial(_applied_each, products, arguments[:looped]),
            looped,
            repeats,
        )
        measurements.append(
            BatchMeasurement(
                backend, operator, n, k, "product", vectorised_per_s, looped_per_s
            )
        )
    bar.close()
    return measurements


def format_batch_table(measurements: Sequence[BatchMeasurement]) -> str:
    """Points per second, vectorised and looped, and how many times more."""
    header = (
        f"{'backend':<10}{'operator':<9}{'n':>5}{'k':>7} {'what':<8}"
        f"{'vectorised /s':>15}{'looped /s':>13}{'ratio':>8}"
    )
    lines = [header, "-" * len(header)]
    for m in measurements:
        lines.append(
            f"{m.backend:<10}{short_name(m.operator):<9}{m.n:>5}{m.k:>7} "
            f"{m.target:<8}{m.vectorized_per_s:>15,.0f}{m.looped_per_s:>13,.0f}"
            f"{m.speedup:>8.1f}"
        )
    return "\n".join(lines) + "\n"


def peak_memory(
    backend: str, operator: str, n: int, k: int, chunk_size: int | None
) -> float:
    """Peak resident memory (MB) of one vectorised call, in a fresh process.

    ``X`` has ``k`` points of size ``n``; the outputs are kept, so what
    ``chunk_size`` bounds is the memory the framework needs besides them.
    """
    import subprocess

    program = f"""
import resource, numpy as np, diffops
from diffops.bench import _SAMPLE_FUNCTIONS
from diffops.namespaces import array_namespace
from diffops.operators import OPERATORS
func = _SAMPLE_FUNCTIONS[OPERATORS[{operator!r}].applies_to](
    array_namespace({backend!r}), {n})
derivative = diffops.autodiff_fallback(None, func, {operator!r}, "d", {backend!r})
vectorized = diffops.vectorize(derivative, chunk_size={chunk_size!r})
vectorized(np.zeros((2, {n})))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
outputs = vectorized(np.random.default_rng(0).uniform(-1, 1, ({k}, {n})))
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)
"""
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True
    )
    return float(result.stdout.split()[-1])


# Reporting.


def _figure(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def short_name(operator: str) -> str:
    """``vjp``, ``grad``, ``hessian``, ``mtp``, ``jacobian`` or ``mhp``."""
    return operator.split("_", 1)[0]


def format_table(measurements: Sequence[Measurement]) -> str:
    """Two tables: the time of each call, then the one-off costs.

    The first gives diffops' median microseconds, the fastest hand-written form's
    and its name, diffops' ratio to it and to the fastest such form with diffops'
    guarantees written in, the peer's microseconds and ratio, and the largest
    difference between their outputs; the second the time to build each derivative
    function and its first call (compilation, symbolic generation), and SymNum's
    build from its cache.
    """
    header = (
        f"{'backend':<14}{'operator':<9}{'n':>5} {'what':<13}{'diffops µs':>11}"
        f"{'by hand µs':>11}{'ours/hand':>10}{'ours/owned':>11}  "
        f"{'fastest by hand':<25}"
        f"{'mici µs':>10}{'mici/ours':>10}{'max |Δ|':>9}"
    )
    lines = ["Time per call", "", header, "-" * len(header)]
    for m in measurements:
        lines.append(
            f"{m.backend:<14}{short_name(m.operator):<9}{m.n:>5} {m.target:<13}"
            f"{_figure(m.median_us.get('diffops')):>11}"
            f"{_figure(m.median_us.get('framework')):>11}"
            f"{_figure(m.ratio('diffops', 'framework'), 2):>10}"
            f"{_figure(m.ratio('diffops', 'owned'), 2):>11}  "
            f"{m.reference:<25}"
            f"{_figure(m.median_us.get('peer')):>10}"
            f"{_figure(m.ratio('peer', 'diffops'), 1):>10}"
            f"{m.max_deviation:>9.0e}"
        )
    header = (
        f"{'backend':<14}{'operator':<9}{'n':>5} {'build s':>9}{'1st call s':>12}"
        f"{'warm build s':>14}"
    )
    lines += ["", "One-off costs of diffops' derivative functions", "", header]
    lines.append("-" * len(header))
    for m in measurements:
        if m.target == "call":
            lines.append(
                f"{m.backend:<14}{short_name(m.operator):<9}{m.n:>5} "
                f"{_figure(m.build_s.get('diffops'), 3):>9}"
                f"{_figure(m.first_call_s.get('diffops'), 3):>12}"
                f"{_figure(m.warm_build_s, 3):>14}"
            )
    return "\n".join(lines) + "\n"


def read_json(path: str | Path) -> list[Measurement]:
    """The measurements :func:`write_json` wrote."""
    return [Measurement(**fields) for fields in json.loads(Path(path).read_text())]


def write_json(measurements: Sequence[Measurement], path: str | Path) -> None:
    """Write the raw figures as a JSON list of measurements."""
    Path(path).write_text(json.dumps([asdict(m) for m in measurements], indent=1))


def plot_formats() -> tuple[str, ...]:
    """The file formats :func:`plot` writes, by suffix (Matplotlib's, lower case).

    But PGF, which Matplotlib writes only where a LaTeX is installed.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    formats = FigureCanvasAgg(Figure()).get_supported_filetypes()
    return tuple(sorted(suffix for suffix in formats if suffix != "pgf"))


def plot(measurements: Sequence[Measurement], path: str | Path) -> None:
    """Latency against ``n`` on log-log axes, one panel per backend, and a legend.

    Colours are operators (and their products); solid lines are diffops, dashed the
    fastest hand-written form, dotted the peer (mici). Calls followed by a product
    are left out: they add nothing to the calls and products drawn.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    measurements = [m for m in measurements if m.target != "call+product"]
    backends = list(dict.fromkeys(m.backend for m in measurements))
    labels = list(
        dict.fromkeys(
            short_name(m.operator) + (" product" if m.target == "product" else "")
            for m in measurements
        )
    )
    colours = {label: f"C{index % 10}" for index, label in enumerate(labels)}
    styles = {"diffops": "-", "framework": "--", "peer": ":"}
    columns = 2
    rows = -(-(len(backends) + 1) // columns)  # a panel for the legend
    figure, grid = plt.subplots(
        rows, columns, figsize=(5.2 * columns, 3.4 * rows), squeeze=False
    )
    axes = grid.ravel()
    for axis, backend in zip(axes, backends, strict=False):
        sizes = sorted({m.n for m in measurements if m.backend == backend})
        for label in labels:
            points = [
                m
                for m in measurements
                if m.backend == backend
                and short_name(m.operator)
                + (" product" if m.target == "product" else "")
                == label
            ]
            for variant, style in styles.items():
                xs = [m.n for m in points if variant in m.median_us]
                ys = [m.median_us[variant] for m in points if variant in m.median_us]
                if xs:
                    axis.plot(
                        xs, ys, style, color=colours[label], marker="o", markersize=3
                    )
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xticks(sizes, [str(n) for n in sizes])
        axis.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        axis.set_title(backend)
        axis.set_xlabel("n")
        axis.set_ylabel("µs per call (median)")
        axis.grid(True, which="both", alpha=0.3)
    legend = axes[len(backends)]
    legend.axis("off")
    handles = [Line2D([], [], color=colours[label], label=label) for label in labels]
    handles += [
        Line2D([], [], color="black", linestyle="-", label="diffops"),
        Line2D([], [], color="black", linestyle="--", label="fastest by hand"),
        Line2D([], [], color="black", linestyle=":", label="mici"),
    ]
    legend.legend(handles=handles, loc="center", ncols=2, frameon=False)
    for unused in axes[len(backends) + 1 :]:
        unused.set_visible(False)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def report(measurements: Sequence[Measurement], stream: TextIO = sys.stdout) -> None:
    """Print the table."""
    stream.write(format_table(measurements))
