"""Bad input gets a standard exception whose message names the argument,
what was expected and what was given; NaN and inf propagate."""

from __future__ import annotations

import numpy as np
import pytest
from functions import QUARTIC, SEVERAL_OUTPUTS, TORUS, render
from helpers import derivative, installed

from diffops import DIFF_OPS, autodiff_fallback
from diffops.operators import SCALAR_OPERATORS, VECTOR_OPERATORS


@pytest.mark.parametrize("operator", SCALAR_OPERATORS)
def test_vector_function_given_to_scalar_operator(backend, operator):
    func = render(SEVERAL_OUTPUTS, backend)
    with pytest.raises(TypeError, match=rf"{operator} needs func to return a scalar.*"
                       r"shape \(4,\).*use vjp_and_value, jacobian_and_value"
                       ):  # fmt: skip
        derivative(backend, operator, func)(SEVERAL_OUTPUTS.point)


@pytest.mark.parametrize("operator", VECTOR_OPERATORS)
def test_scalar_function_given_to_vector_operator(backend, operator):
    func = render(QUARTIC, backend)
    with pytest.raises(TypeError, match=rf"{operator} needs func to return a 1-D array"
                       r".*a scalar.*use grad_and_value"):  # fmt: skip
        derivative(backend, operator, func)(QUARTIC.point)


@pytest.mark.parametrize(
    ("x", "described"),
    [
        (np.float64(1.0), r"a scalar \(shape \(\)\)"),
        (np.ones((2, 4)), r"an array of shape \(2, 4\)"),
    ],
)
def test_input_that_is_not_1d(backend, x, described):
    grad_and_value = derivative(backend, "grad_and_value", render(QUARTIC, backend))
    with pytest.raises(
        ValueError, match=rf"x must be a 1-D array of shape \(n,\); got {described}"
    ):
        grad_and_value(x)


def test_input_that_is_not_numeric(backend):
    grad_and_value = derivative(backend, "grad_and_value", render(QUARTIC, backend))
    with pytest.raises(TypeError, match="x must be a 1-D array of real numbers"):
        grad_and_value(np.array(["a", "b", "c", "d"]))


@pytest.mark.parametrize(
    ("operator", "case", "bad_shape", "expected"),
    [
        (
            "mtp_hessian_grad_and_value",
            QUARTIC,
            (4,),
            r"M must be an array of shape \(4, 4\)",
        ),
        (
            "mhp_jacobian_and_value",
            TORUS,
            (3, 1),
            r"M must be an array of shape \(1, 3\)",
        ),
        ("vjp_and_value", SEVERAL_OUTPUTS, (3,), r"u must be an array of shape \(4,\)"),
    ],
)
def test_product_argument_of_the_wrong_shape(
    backend, operator, case, bad_shape, expected
):
    product = derivative(backend, operator, render(case, backend))(case.point)[0]
    with pytest.raises(ValueError, match=rf"{expected} for \w+; got an array of shape"):
        product(np.ones(bad_shape))


@pytest.mark.parametrize("operator", DIFF_OPS)
def test_non_callable_func(backend, operator):
    with pytest.raises(TypeError, match="func must be callable; got str"):
        autodiff_fallback(None, "x ** 2", operator, operator, backend)


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_nan_and_inf_propagate(backend, value):
    point = QUARTIC.point.copy()
    point[1] = value
    hessian, grad, f = derivative(
        backend, "hessian_grad_and_value", render(QUARTIC, backend)
    )(point)
    assert not np.isfinite(f)
    assert not np.all(np.isfinite(grad))
    assert not np.all(np.isfinite(hessian))


symnum_only = pytest.mark.parametrize("backend", [installed("symnum")])


@symnum_only
def test_symnum_needs_a_numpified_function(backend):
    import symnum.numpy as snp

    def plain(x):
        return snp.sum(x**2)

    with pytest.raises(TypeError, match=r"decorated with symnum.numpify.*'plain'"):
        derivative(backend, "grad_and_value", plain)


@symnum_only
def test_symnum_checks_the_declared_length(backend):
    grad_and_value = derivative(backend, "grad_and_value", render(QUARTIC, backend))
    with pytest.raises(
        ValueError, match=r"x must have shape \(4,\), the shape declared"
    ):
        grad_and_value(np.ones(5))
