"""Helpers shared by the test modules: backends under test, derivative functions of
the test functions, evaluating them, and running Python in a fresh process."""

from __future__ import annotations

import contextlib
import functools
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from functions import (
    SEVERAL_OUTPUTS,
    SMOOTH,
    ScalarCase,
    VectorCase,
    complex_step_derivative,
    render,
)

import diffops
from diffops.operators import OPERATORS

BUILTIN_BACKENDS = ("jax", "jax_nojit", "autograd", "symnum", "torch")
PRODUCT_OPERATORS = tuple(name for name, op in OPERATORS.items() if op.product)
CASE_FOR = {"scalar": SMOOTH, "vector": SEVERAL_OUTPUTS}
"""The test function each kind of operator is applied to where any would do."""


def installed(backend: str) -> Any:
    """``backend`` as a pytest parameter, skipped where its framework is missing."""
    available = diffops.get_backend(backend).available
    return pytest.param(
        backend,
        marks=pytest.mark.skipif(not available, reason=f"{backend} is not installed"),
    )


BACKEND_PARAMS = [installed(name) for name in BUILTIN_BACKENDS]
INSTALLED_BACKENDS = tuple(
    name for name in BUILTIN_BACKENDS if diffops.get_backend(name).available
)


def derivative(
    backend: str, operator: str, func: Callable[..., Any]
) -> Callable[..., Any]:
    """``operator`` applied to ``func`` through the public entry point."""
    return diffops.autodiff_fallback(None, func, operator, operator, backend)


def case_derivative(
    backend: str, operator: str, case: ScalarCase | VectorCase | None = None
) -> Callable[..., Any]:
    """``operator`` of ``case`` (by default the one for its kind) on ``backend``."""
    case = case or CASE_FOR[OPERATORS[operator].applies_to]
    return _case_derivative(backend, operator, case.name)


@functools.cache
def _case_derivative(backend: str, operator: str, case: str) -> Callable[..., Any]:
    from functions import CASES

    return derivative(backend, operator, render(CASES[case], backend))


def argument_for(
    operator: str,
    point: np.ndarray,
    case: ScalarCase | VectorCase | None = None,
    seed: int = 5,
) -> Any:
    """A fixed ``M`` or ``u`` for the product of ``operator`` of ``case``."""
    record = OPERATORS[operator]
    if record.product is None:
        return None
    case = case or CASE_FOR[record.applies_to]
    m = np.size(case.value(point))
    shape = record.concrete_argument_shape(point.size, m)
    return np.random.default_rng(seed).standard_normal(shape)


def expected_outputs(
    case: ScalarCase | VectorCase, operator: str, x: np.ndarray, argument: Any
) -> list[Any]:
    """The operator's outputs at ``x`` from the hand-derived formulas.

    A product's comes first, applied to ``argument``: the complex-step derivative of
    the contraction of ``argument`` with the output after it.
    """
    if isinstance(case, ScalarCase):
        arrays = {"v": case.value, "g": case.grad, "H": case.hessian}
    else:
        arrays = {"v": case.value, "J": case.jacobian}
    record = OPERATORS[operator]
    outputs = [arrays[name](x) for name in record.outputs if name in arrays]
    if record.product is not None:
        below = arrays[record.outputs[1]]
        product = complex_step_derivative(lambda y: np.sum(argument * below(y)), x)
        outputs.insert(0, product)
    return outputs


def evaluate(derivative: Any, x: np.ndarray, argument: Any) -> list[np.ndarray]:
    """The outputs of ``derivative`` at ``x``, its product applied to ``argument``."""
    outputs = list(derivative(x))
    if argument is not None:
        outputs[0] = outputs[0](argument)
    return [np.asarray(output) for output in outputs]


def apply_product(product: Any, argument: Any) -> np.ndarray:
    """A product callable that crossed a process boundary, applied there."""
    return np.asarray(product(argument))


def evaluate_cloudpickled(
    blob: bytes, x: np.ndarray, argument: Any
) -> list[np.ndarray]:
    """:func:`evaluate` for a derivative function sent as ``cloudpickle`` bytes."""
    import cloudpickle

    return evaluate(cloudpickle.loads(blob), x, argument)


def in_threads(work: Callable[[int], None], count: int) -> list[BaseException]:
    """Run ``work(0)``, ..., ``work(count - 1)`` in threads at once; what they raised.

    Each thread starts when all exist (a barrier), so that they overlap.
    """
    errors: list[BaseException] = []
    barrier = threading.Barrier(count)

    def guarded(index: int) -> None:
        try:
            barrier.wait()
            work(index)
        except BaseException as error:  # reported to the caller
            errors.append(error)

    threads = [threading.Thread(target=guarded, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    return errors


def run_python(
    code: str, env: dict[str, str] | None = None, *options: str
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter; its output and status."""
    return subprocess.run(
        [sys.executable, *options, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=300,
    )


class _Expired(BaseException):
    """What the timer of :func:`time_limit` raises: not an ``Exception``, which the
    code under the limit (SymPy has 61 ``except Exception`` and bare ``except``
    clauses) could catch and carry on from."""


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise ``TimeoutError`` in the block if it runs longer than ``seconds``.

    For pure-Python work that cannot otherwise be bounded, such as SymPy's
    simplification; by a timer signal, so only in the main thread. The timer fires
    again every 0.1 s until the block has ended, so that an expiry the code caught
    (with a bare ``except``) is not the last.
    """

    def expire(signum: int, frame: Any) -> None:
        raise _Expired

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds, 0.1)
    try:
        yield
    except _Expired:
        signal.setitimer(signal.ITIMER_REAL, 0)  # first: no second expiry from here
        msg = f"took longer than {seconds} s"
        raise TimeoutError(msg) from None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
