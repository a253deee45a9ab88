"""What a derivative function returns stays bound to the point it was computed at.

A sampler updates its position in place (``x += step * p``), keeps the outputs of one
call while it makes the next, changes them in place (``g *= step``), and applies a
product later, maybe from another thread. None of it may change what was already
returned: no output shares memory with ``x``, with the product's argument, or with
what a product keeps, and a product keeps giving its own point's answer. Expected
values come from the hand-derived formulas, at a copy of the point.
"""

from __future__ import annotations

import pickle
import threading

import numpy as np
import pytest
from functions import (
    CUBES,
    CUBIC,
    EXPONENTIALS,
    IDENTITY,
    QUARTIC,
    SEVERAL_OUTPUTS,
    SMOOTH,
    TAIL,
    complex_step_derivative,
    render,
)
from helpers import (
    CASE_FOR,
    PRODUCT_OPERATORS,
    argument_for,
    case_derivative,
    derivative,
    expected_outputs,
)

import diffops
from diffops import DIFF_OPS
from diffops.operators import OPERATORS, VECTOR_OPERATORS

TOLERANCE = {"rtol": 1e-10, "atol": 1e-12}


def root(array: np.ndarray) -> np.ndarray:
    """The NumPy array whose memory ``array`` is a view of, or ``array``."""
    while isinstance(array.base, np.ndarray):
        array = array.base
    return array


def in_another_thread(function, *arguments):
    result = []
    thread = threading.Thread(target=lambda: result.append(function(*arguments)))
    thread.start()
    thread.join(timeout=120)
    return result[0]


# Entry-by-entry functions, whose graphs keep x's entries, and whole-array ones, whose
# graphs keep x itself.
CASES_FOR = {"scalar": (SMOOTH, QUARTIC), "vector": (SEVERAL_OUTPUTS, CUBES)}


@pytest.mark.parametrize("whole", [False, True], ids=["entries", "whole"])
@pytest.mark.parametrize("operator", DIFF_OPS)
def test_nothing_returned_moves_when_x_is_updated_in_place(backend, operator, whole):
    case = CASES_FOR[OPERATORS[operator].applies_to][whole]
    function = case_derivative(backend, operator, case)
    x = case.point.copy()
    argument = argument_for(operator, x, case)
    expected = expected_outputs(case, operator, case.point, argument)
    outputs = list(function(x))
    arrays = [output for output in outputs if isinstance(output, np.ndarray)]
    for i, array in enumerate(arrays):
        assert array.flags.writeable
        assert not np.shares_memory(root(array), x)
        for other in arrays[i + 1 :]:  # not even through .base
            assert not np.shares_memory(root(array), root(other))
    x += 0.5  # as a leapfrog step does
    function(x)  # and the function moves on to the new point
    if OPERATORS[operator].product is not None:
        product = outputs[0]
        outputs[0] = product(argument)
        np.testing.assert_allclose(
            in_another_thread(product, argument), expected[0], **TOLERANCE
        )
    for got, want in zip(outputs, expected, strict=True):
        np.testing.assert_allclose(got, want, **TOLERANCE)


@pytest.mark.parametrize("case", [IDENTITY, TAIL], ids=str)
@pytest.mark.parametrize("operator", VECTOR_OPERATORS)
def test_a_value_that_is_x_or_a_slice_of_it_is_a_copy(backend, operator, case):
    function = derivative(backend, operator, render(case, backend))
    x = case.point.copy()
    outputs = function(x)
    value = outputs[-1]
    assert not np.shares_memory(value, x)
    x[:] = np.nan
    np.testing.assert_array_equal(value, case.value(case.point))


@pytest.mark.parametrize("operator", PRODUCT_OPERATORS)
def test_a_product_shares_no_memory_with_its_argument(backend, operator):
    # vjp of the identity is u itself, where a framework is given the chance.
    case = IDENTITY if OPERATORS[operator].applies_to == "vector" else CUBIC
    function = derivative(backend, operator, render(case, backend))
    product = function(case.point)[0]
    argument = np.random.default_rng(3).standard_normal(product.shape)
    result = product(argument)
    expected = result.copy()
    assert not np.shares_memory(result, argument)
    argument[...] = np.nan
    np.testing.assert_array_equal(result, expected)


PRODUCT_CASES = [
    (operator, case)
    for operator in PRODUCT_OPERATORS
    for case in (CASE_FOR[OPERATORS[operator].applies_to], EXPONENTIALS)
    if isinstance(case, type(CASE_FOR[OPERATORS[operator].applies_to]))
]


@pytest.mark.parametrize(("operator", "case"), PRODUCT_CASES, ids=str)
def test_outputs_changed_in_place_leave_the_product_alone(backend, operator, case):
    # For EXPONENTIALS the product's graph keeps the value (exp's derivative is its
    # output): an output sharing memory with it would move the product.
    product, *arrays = case_derivative(backend, operator, case)(case.point)
    argument = argument_for(operator, case.point, case)
    expected = product(argument)
    np.testing.assert_allclose(
        expected, expected_outputs(case, operator, case.point, argument)[0], **TOLERANCE
    )
    for array in arrays:
        if isinstance(array, np.ndarray):  # a NumPy scalar cannot change at all
            array[...] = np.nan  # outputs are the caller's to overwrite
    np.testing.assert_array_equal(product(argument), expected)


@pytest.mark.parametrize("operator", PRODUCT_OPERATORS)
def test_a_product_keeps_its_point_while_the_function_moves_on(backend, operator):
    case = CASE_FOR[OPERATORS[operator].applies_to]
    function = case_derivative(backend, operator)
    argument = argument_for(operator, case.point)
    product = function(case.point)[0]
    elsewhere = function(case.point + 0.25)[0]
    expected = expected_outputs(case, operator, case.point, argument)[0]
    np.testing.assert_allclose(product(argument), expected, **TOLERANCE)
    assert not np.allclose(elsewhere(argument), expected)


@pytest.mark.parametrize("backend", ["jax_nojit", "autograd", "torch"])
def test_products_do_not_evaluate_the_function_again(backend):
    """Where Python runs per call, applying mtp, mhp or vjp does not run f."""
    calls = []
    for operator in PRODUCT_OPERATORS:
        case = CASE_FOR[OPERATORS[operator].applies_to]
        inner = render(case, backend)

        def counted(x, inner=inner):
            calls.append(1)
            return inner(x)

        product = derivative(backend, operator, counted)(case.point)[0]
        count = len(calls)
        assert count > 0
        for _ in range(3):
            product(np.ones(product.shape))
        assert len(calls) == count, operator


def test_an_in_place_leapfrog_follows_the_hand_derived_trajectory(backend):
    """Leapfrog as samplers write it: x, p and g updated in place, products kept."""
    case = SMOOTH
    mtp_hessian_grad_and_value = case_derivative(backend, "mtp_hessian_grad_and_value")
    grad_and_value = case_derivative(backend, "grad_and_value")
    M = np.random.default_rng(2).standard_normal((case.n, case.n))
    step, steps = 0.05, 12

    def leapfrog(gradient):
        x = case.point.copy()
        p = np.linspace(-1.0, 1.0, case.n)
        g = gradient(x)
        path = []
        for _ in range(steps):
            g *= step / 2  # the gradient's array, reused
            p -= g
            x += step * p
            g = gradient(x)
            p -= step / 2 * g
            path.append(x.copy())
        return np.array(path)

    path = leapfrog(lambda x: grad_and_value(x)[0])
    np.testing.assert_allclose(path, leapfrog(case.grad), **TOLERANCE)

    # The products made along an in-place trajectory stay at their own points.
    x = case.point.copy()
    products, points = [], []
    for _ in range(4):
        products.append(mtp_hessian_grad_and_value(x)[0])
        points.append(x.copy())
        x += 0.1
    for product, point in zip(products, points, strict=True):
        expected = complex_step_derivative(lambda y: np.sum(M * case.hessian(y)), point)
        np.testing.assert_allclose(product(M), expected, **TOLERANCE)


@pytest.mark.parametrize("backend", ["jax", "jax_nojit", "torch"])
def test_wrap_function_hands_the_function_the_frameworks_own_arrays(backend):
    module = {"jax": "jax", "jax_nojit": "jax", "torch": "torch"}[backend]
    framework = pytest.importorskip(module)
    array_type = framework.Array if module == "jax" else framework.Tensor
    seen = []

    def reverse(x):
        seen.append(isinstance(x, array_type))  # under jax.jit, a tracer
        return x.flip(0) if module == "torch" else x[::-1]

    x = np.array([1.0, 2.0, 3.0])
    y = diffops.wrap_function(reverse, backend)(x)
    assert seen == [True]
    assert not np.shares_memory(y, x)
    x[0] = 100.0
    np.testing.assert_array_equal(y, [3.0, 2.0, 1.0])


@pytest.mark.parametrize("operator", ["grad_and_value", "mtp_hessian_grad_and_value"])
def test_the_value_of_a_scalar_function_is_a_numpy_scalar(backend, operator):
    value = case_derivative(backend, operator)(SMOOTH.point)[-1]
    assert type(value) is np.float64
    assert value == SMOOTH.value(SMOOTH.point)


def test_a_products_repr_gives_its_concrete_shapes(backend):
    mhp = case_derivative(backend, "mhp_jacobian_and_value")(SEVERAL_OUTPUTS.point)[0]
    expected = "<mhp bound to x of shape (3,): M of shape (4, 3) -> shape (3,)>"
    assert repr(mhp) == expected


def rescaled(x):
    """x³ of 2 x, x doubled in place where autograd does not see it."""
    import torch

    with torch.no_grad():
        x.mul_(2.0)
    return x**3


def rescaled_sum(x):
    return rescaled(x).sum()


@pytest.mark.parametrize("batched", [False, True], ids=["a point", "vectorize"])
@pytest.mark.parametrize("operator", DIFF_OPS)
def test_a_torch_function_writing_into_its_argument_leaves_the_callers_x(
    operator, batched
):
    """Where autograd does not see it (torch.no_grad), so it raises no error."""
    pytest.importorskip("torch")
    scalar = OPERATORS[operator].applies_to == "scalar"
    d = derivative("torch", operator, rescaled_sum if scalar else rescaled)
    x = np.array([[1.0, 2.0, 3.0], [0.5, -1.0, 2.0]])
    outputs = diffops.vectorize(d)(x) if batched else d(x[0])
    np.testing.assert_array_equal(x, [[1.0, 2.0, 3.0], [0.5, -1.0, 2.0]])
    if OPERATORS[operator].product is None:
        return
    # Nor the point a product is bound to: applied again, or unpickled (where it is
    # made again from that point), it gives the same answer.
    product = outputs[0]
    argument = np.ones(product.shape)
    first = product(argument)
    np.testing.assert_array_equal(product(argument), first)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(product))(argument), first)


def test_a_wrapped_torch_function_writing_into_its_argument_leaves_the_callers_x():
    pytest.importorskip("torch")
    x = np.array([1.0, 2.0, 3.0])
    np.testing.assert_array_equal(diffops.wrap_function(rescaled, "torch")(x), 8 * x**3)
    np.testing.assert_array_equal(x, [1.0, 2.0, 3.0])


def cube_scaling_its_cotangent(x):
    """x³, by an autograd.Function whose backward scales its cotangent in place."""
    import torch

    class Cube(torch.autograd.Function):
        generate_vmap_rule = True

        @staticmethod
        def forward(x):
            return x**3

        @staticmethod
        def setup_context(ctx, inputs, output):
            ctx.save_for_backward(inputs[0])

        @staticmethod
        def backward(ctx, cotangent):
            (x,) = ctx.saved_tensors
            return cotangent.mul_(3 * x**2)

    return Cube.apply(x)


@pytest.mark.parametrize("batched", [False, True], ids=["a point", "vectorize"])
def test_a_torch_backward_writing_into_its_cotangent_leaves_the_callers_u(batched):
    pytest.importorskip("torch")
    d = derivative("torch", "vjp_and_value", cube_scaling_its_cotangent)
    x = np.array([[1.0, 2.0, 3.0], [0.5, -1.0, 2.0]])
    u = np.ones_like(x) if batched else np.ones(3)
    vjp = diffops.vectorize(d)(x)[0] if batched else d(x[0])[0]
    expected = 3 * (x if batched else x[0]) ** 2
    np.testing.assert_array_equal(vjp(u), expected)
    np.testing.assert_array_equal(u, np.ones_like(u))
    np.testing.assert_array_equal(vjp(u), expected)  # and so again
