"""The GPU paths the docs promise, where a GPU is present (skipped elsewhere).

``torch`` on a GPU is ``return_numpy_arrays(operator(func), device="cuda")``; ``jax``
computes on a GPU where that is JAX's default device. In both, inputs and outputs
stay NumPy arrays. Each operator is compared with the hand-derived derivatives of
``tests/functions.py`` (products with complex-step derivatives of them), and the
outputs are checked to be the caller's own: writable, unmoved when ``x`` changes in
place, and the product still at its point after pickling.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from functions import render
from helpers import CASE_FOR, argument_for, derivative, expected_outputs, in_threads

import diffops
from diffops.operators import OPERATORS

TOLERANCE = {"rtol": 1e-9, "atol": 1e-10}


def _torch_cuda() -> bool:
    if not diffops.get_backend("torch").available:
        return False
    import torch

    return bool(torch.cuda.is_available())


def _jax_gpu() -> bool:
    if not diffops.get_backend("jax").available:
        return False
    import jax

    return jax.default_backend() == "gpu"


torch_cuda = pytest.mark.skipif(not _torch_cuda(), reason="no CUDA device for torch")
jax_gpu = pytest.mark.skipif(not _jax_gpu(), reason="JAX's default device is no GPU")
operators = pytest.mark.parametrize("operator", tuple(OPERATORS))


def torch_on_cuda(operator: str) -> diffops.DerivativeFunction:
    from diffops.backends import torch as torch_backend

    func = render(CASE_FOR[OPERATORS[operator].applies_to], "torch")
    made = getattr(torch_backend, operator)(func)
    return torch_backend.return_numpy_arrays(made, device="cuda")


def expected(operator: str, x: np.ndarray, argument: np.ndarray | None) -> list:
    """The outputs at ``x`` from the hand-derived formulas; a product applied."""
    return expected_outputs(
        CASE_FOR[OPERATORS[operator].applies_to], operator, x, argument
    )


def check_outputs_are_the_callers_own(function, operator: str) -> None:
    case = CASE_FOR[OPERATORS[operator].applies_to]
    x = case.point.copy()
    M = argument_for(operator, x)
    outputs = list(function(x))
    at_x = [np.array(output) for output in outputs[M is not None :]]
    product = outputs[0] if M is not None else None
    x += 0.25  # in place: nothing returned moves, the product stays at its point
    for output in outputs[M is not None :]:
        assert isinstance(output, np.ndarray | np.floating), type(output)
        if isinstance(output, np.ndarray):
            assert output.flags.writeable
    for output, kept in zip(outputs[M is not None :], at_x, strict=True):
        np.testing.assert_array_equal(output, kept)
    reference = expected(operator, case.point, M)
    for actual, wanted in zip(at_x, reference[M is not None :], strict=True):
        np.testing.assert_allclose(actual, wanted, **TOLERANCE)
    if product is not None:
        np.testing.assert_allclose(product(M), reference[0], **TOLERANCE)
        unpickled = pickle.loads(pickle.dumps(product))
        np.testing.assert_allclose(unpickled(M), reference[0], **TOLERANCE)


def check_vectorized(function, operator: str) -> None:
    case = CASE_FOR[OPERATORS[operator].applies_to]
    X = case.point + np.random.default_rng(4).uniform(-0.2, 0.2, (3, case.n))
    outputs = diffops.vectorize(function)(X)
    M = argument_for(operator, case.point)
    for i, x in enumerate(X):
        reference = expected(operator, x, M)
        if M is not None:
            np.testing.assert_allclose(outputs[0](M)[i], reference[0], **TOLERANCE)
        for batch, wanted in zip(
            outputs[M is not None :], reference[M is not None :], strict=True
        ):
            np.testing.assert_allclose(np.asarray(batch)[i], wanted, **TOLERANCE)


@torch_cuda
@operators
def test_torch_on_cuda_gives_the_hand_derived_outputs_as_numpy(operator):
    function = torch_on_cuda(operator)
    check_outputs_are_the_callers_own(function, operator)
    # A tensor already on the GPU is an x like any other.
    import torch

    case = CASE_FOR[OPERATORS[operator].applies_to]
    on_device = torch.tensor(case.point, device="cuda")
    M = argument_for(operator, case.point)
    outputs = function(on_device)[M is not None :]
    wanted_outputs = expected(operator, case.point, M)[M is not None :]
    for actual, wanted in zip(outputs, wanted_outputs, strict=True):
        np.testing.assert_allclose(actual, wanted, **TOLERANCE)


@torch_cuda
@operators
def test_a_torch_cuda_derivative_function_pickles_and_still_computes_there(operator):
    function = pickle.loads(pickle.dumps(torch_on_cuda(operator)))
    assert function.evaluate.device.type == "cuda"
    check_outputs_are_the_callers_own(function, operator)


@torch_cuda
@operators
def test_torch_on_cuda_vectorizes(operator):
    check_vectorized(torch_on_cuda(operator), operator)


@jax_gpu
@operators
def test_jax_on_its_default_gpu_gives_the_hand_derived_outputs_as_numpy(operator):
    import jax

    assert jax.config.read("jax_enable_x64")  # set by conftest: float64 references
    func = render(CASE_FOR[OPERATORS[operator].applies_to], "jax")
    for backend in ("jax", "jax_nojit"):
        function = derivative(backend, operator, func)
        check_outputs_are_the_callers_own(function, operator)
        check_outputs_are_the_callers_own(
            pickle.loads(pickle.dumps(function)), operator
        )
        check_vectorized(function, operator)


def check_threads(functions: dict[str, diffops.DerivativeFunction]) -> None:
    """Four threads call every operator at once, each at points of its own.

    The ``torch`` tape runs without a lock, so threads overlap on the device too;
    each thread's outputs must still be the hand-derived ones at its own point.
    """
    failures: list[str] = []

    def work(thread: int) -> None:
        for repeat in range(3):
            for operator, function in functions.items():
                case = CASE_FOR[OPERATORS[operator].applies_to]
                x = case.point + 0.05 * (thread + 1) + 0.01 * repeat
                M = argument_for(operator, case.point)
                outputs = list(function(x))
                if M is not None:
                    outputs[0] = outputs[0](M)
                for actual, wanted in zip(
                    outputs, expected(operator, x, M), strict=True
                ):
                    if not np.allclose(actual, wanted, **TOLERANCE):
                        failures.append(f"{operator}, thread {thread}")

    errors = in_threads(work, 4)
    assert not errors, errors
    assert not failures, failures


@torch_cuda
def test_threads_on_cuda_each_get_their_own_outputs():
    check_threads({operator: torch_on_cuda(operator) for operator in OPERATORS})


@jax_gpu
def test_threads_on_jax_gpu_each_get_their_own_outputs():
    check_threads(
        {
            operator: derivative(
                "jax", operator, render(CASE_FOR[OPERATORS[operator].applies_to], "jax")
            )
            for operator in OPERATORS
        }
    )
