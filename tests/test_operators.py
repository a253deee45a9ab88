"""Each operator on each backend against hand-derived derivatives.

Scalar operators run on the scalar cases, vector operators on the vector cases; the
products are compared with complex-step derivatives of the hand-derived Hessian or
Jacobian, contracted with ``M`` (or ``u @ J`` for the vector-Jacobian product).
"""

from __future__ import annotations

import pickle
import re

import numpy as np
import pytest
from functions import (
    METRIC,
    SCALAR_CASES,
    SMOOTH,
    VECTOR_CASES,
    VectorCase,
    complex_step_derivative,
    render,
)
from helpers import derivative

import diffops

TOLERANCE = {"rtol": 1e-9, "atol": 1e-10}
rng = np.random.default_rng(7)


def assert_close(actual, expected) -> None:
    np.testing.assert_allclose(np.asarray(actual, dtype=float), expected, **TOLERANCE)


def assert_numpy_scalar(value) -> None:
    assert isinstance(value, np.floating), type(value)  # every backend, one type


def assert_numpy_array(value, shape) -> None:
    assert isinstance(value, np.ndarray), type(value)
    assert value.shape == shape


scalar_cases = pytest.mark.parametrize("case", SCALAR_CASES, ids=str)
vector_cases = pytest.mark.parametrize("case", VECTOR_CASES, ids=str)


@scalar_cases
def test_grad_and_value(backend, case):
    grad_and_value = derivative(backend, "grad_and_value", render(case, backend))
    grad, value = grad_and_value(case.point)
    assert_numpy_array(grad, (case.n,))
    assert_numpy_scalar(value)
    assert_close(grad, case.grad(case.point))
    assert_close(value, case.value(case.point))


@scalar_cases
def test_hessian_grad_and_value(backend, case):
    func = render(case, backend)
    hessian, grad, value = derivative(backend, "hessian_grad_and_value", func)(
        case.point
    )
    assert_numpy_array(hessian, (case.n, case.n))
    assert_close(hessian, case.hessian(case.point))
    assert_close(grad, case.grad(case.point))
    assert_close(value, case.value(case.point))


@scalar_cases
def test_mtp_hessian_grad_and_value(backend, case):
    func = render(case, backend)
    mtp, hessian, grad, value = derivative(backend, "mtp_hessian_grad_and_value", func)(
        case.point
    )
    assert_close(hessian, case.hessian(case.point))
    assert_close(grad, case.grad(case.point))
    assert_close(value, case.value(case.point))
    # mtp(M)[i] = Σ_jk M[j, k] ∂H[j, k]/∂x[i], with M not symmetric.
    for M in (rng.standard_normal((case.n, case.n)), np.eye(case.n)):
        expected = complex_step_derivative(
            lambda y, M=M: np.sum(M * case.hessian(y)), case.point
        )
        product = mtp(M)
        assert_numpy_array(product, (case.n,))
        assert_close(product, expected)


@vector_cases
def test_jacobian_and_value(backend, case):
    func = render(case, backend)
    jacobian, value = derivative(backend, "jacobian_and_value", func)(case.point)
    expected_value = case.value(case.point)
    assert_numpy_array(jacobian, (expected_value.size, case.n))
    assert_numpy_array(value, expected_value.shape)
    assert_close(jacobian, case.jacobian(case.point))
    assert_close(value, expected_value)


@vector_cases
def test_mhp_jacobian_and_value(backend, case):
    func = render(case, backend)
    mhp, jacobian, value = derivative(backend, "mhp_jacobian_and_value", func)(
        case.point
    )
    assert_close(jacobian, case.jacobian(case.point))
    assert_close(value, case.value(case.point))
    m = value.shape[0]
    # mhp(M)[k] = Σ_ij M[i, j] ∂J[i, j]/∂x[k].
    for M in (rng.standard_normal((m, case.n)), np.ones((m, case.n))):
        expected = complex_step_derivative(
            lambda y, M=M: np.sum(M * case.jacobian(y)), case.point
        )
        product = mhp(M)
        assert_numpy_array(product, (case.n,))
        assert_close(product, expected)


@vector_cases
def test_vjp_and_value(backend, case):
    func = render(case, backend)
    vjp, value = derivative(backend, "vjp_and_value", func)(case.point)
    assert_close(value, case.value(case.point))
    for u in (rng.standard_normal(value.shape), np.ones(value.shape)):
        product = vjp(u)
        assert_numpy_array(product, (case.n,))
        assert_close(product, u @ case.jacobian(case.point))


@pytest.mark.parametrize("case", [METRIC, SMOOTH], ids=str)
def test_vjp_and_value_takes_values_of_any_shape(backend, case):
    """A matrix or a scalar, as mici's Riemannian metrics are; u has its shape.

    ``vjp(u)[k] = Σ u[i, j] ∂c[i, j]/∂x[k]``, or ``u ∂f/∂x[k]`` for a scalar.
    """
    derivative_function = derivative(backend, "vjp_and_value", render(case, backend))
    vjp, value = derivative_function(case.point)
    expected = case.value(case.point)
    jacobian = (case.jacobian if isinstance(case, VectorCase) else case.grad)(
        case.point
    )
    shape = np.shape(expected)
    if shape:
        assert_numpy_array(value, shape)
    else:
        assert_numpy_scalar(value)
    assert_close(value, expected)
    assert vjp.shape == shape
    arguments = [rng.standard_normal(shape), np.ones(shape), np.ones(shape).tolist()]
    for u in arguments:
        wanted = np.tensordot(np.asarray(u), jacobian, axes=len(shape))
        assert_numpy_array(vjp(u), (case.n,))
        assert_close(vjp(u), wanted)
    u = arguments[0]
    wanted = np.tensordot(u, jacobian, axes=len(shape))
    assert_close(pickle.loads(pickle.dumps(vjp))(u), wanted)
    assert_close(
        pickle.loads(pickle.dumps(derivative_function))(case.point)[0](u), wanted
    )
    with pytest.raises(
        ValueError, match=re.escape(f"u must be an array of shape {shape}")
    ):
        vjp(np.ones(7))


def test_lists_and_integer_arrays_are_treated_as_float(backend):
    case = SCALAR_CASES[2]
    grad_and_value = derivative(backend, "grad_and_value", render(case, backend))
    point = np.array([1, -2, 0, 3])
    expected = case.grad(point.astype(float))
    assert_close(grad_and_value(point)[0], expected)
    assert_close(grad_and_value(point.tolist())[0], expected)


def test_products_accept_lists(backend):
    case = VECTOR_CASES[0]
    vjp, _ = derivative(backend, "vjp_and_value", render(case, backend))(case.point)
    assert_close(vjp([1, 2]), np.array([1.0, 2.0]) @ case.jacobian(case.point))


@pytest.mark.parametrize("constant", [2.5, 3])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_a_symnum_constant_is_a_numpy_scalar_in_x_dtype(constant, dtype):
    """Written as an expression of x, as SymNum cannot trace a plain number."""
    symnum = pytest.importorskip("symnum")
    f = symnum.numpify(3)(lambda x: 0 * x[0] + constant)
    for operator in ("grad_and_value", "hessian_grad_and_value"):
        *derivatives, value = derivative("symnum", operator, f)(np.ones(3, dtype))
        assert type(value) is dtype
        assert value == constant
        assert all(d.dtype == dtype and not d.any() for d in derivatives)


@pytest.mark.parametrize(
    ("backend", "constant"),
    [
        (backend, constant)
        for backend in ("jax", "jax_nojit", "autograd")
        for constant in (3, np.int32(3), 3.0, np.float32(3.0))
    ],  # torch refuses a number: a tensor's .item() is one too (tests/test_errors.py)
    ids=str,
)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_a_function_returning_a_plain_number_is_a_constant_in_x_dtype(
    backend, constant, dtype
):
    """Its derivatives are zeros, and every output is in x's dtype, products too."""
    if not diffops.get_backend(backend).available:
        pytest.skip(f"{backend} is not installed")
    x = np.array([0.5, -1.0, 2.0], dtype=dtype)
    scalar = derivative(backend, "mtp_hessian_grad_and_value", lambda x: constant)
    mtp, hessian, grad, value = scalar(x)
    assert type(value) is dtype
    assert value == 3
    assert grad.dtype == hessian.dtype == dtype
    np.testing.assert_array_equal(hessian, np.zeros((3, 3)))
    np.testing.assert_array_equal(grad, np.zeros(3))
    np.testing.assert_array_equal(mtp(np.ones((3, 3))), np.zeros(3))
    grad, value = derivative(backend, "grad_and_value", lambda x: constant)(x)
    assert type(value) is dtype
    np.testing.assert_array_equal(grad, np.zeros(3))
