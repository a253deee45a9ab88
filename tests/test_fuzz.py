"""Fuzz: malformed arguments get a ValueError or TypeError, never anything else.

Hypothesis draws inputs of wrong shapes and dtypes, NaN, huge and tiny magnitudes,
ragged lists and non-arrays for ``x``, ``M`` and ``u``; wrong callables stand in for
``func``. Each call either returns or raises one of the two documented exceptions.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from functions import CUBES, QUARTIC
from helpers import case_derivative
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from diffops import autodiff_fallback
from diffops.namespaces import array_namespace
from diffops.operators import OPERATORS

DOCUMENTED = (ValueError, TypeError)

any_floats = st.floats(allow_nan=True, allow_infinity=True)
magnitudes = st.sampled_from([0.0, 1e-300, -1e-300, 1e300, -1e300, np.nan, np.inf])
malformed = st.one_of(
    st.none(),
    st.text(max_size=3),
    st.integers(-(10**20), 10**20),
    any_floats,
    st.complex_numbers(),
    hnp.arrays(
        dtype=st.sampled_from(
            [np.float64, np.float32, np.int64, np.uint8, np.complex128, np.bool_]
        ),
        shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4),
    ),
    hnp.arrays(np.float64, st.integers(0, 5), elements=magnitudes),
    st.lists(any_floats, max_size=5),
    st.lists(st.lists(any_floats, max_size=3), max_size=3),  # ragged or 2-D
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
)


def call_quietly(function, argument):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # overflow and invalid-value warnings
        try:
            return function(argument)
        except DOCUMENTED:
            return None


@pytest.mark.parametrize(
    "operator", ["grad_and_value", "mtp_hessian_grad_and_value", "vjp_and_value"]
)
def test_malformed_x_and_products_arguments(backend, operator):
    # Whole-array functions, which take an x of any length as they are written.
    case = CUBES if OPERATORS[operator].applies_to == "vector" else QUARTIC
    function = case_derivative(backend, operator, case)
    product = function(case.point)[0]

    @given(malformed)
    def check(value):
        call_quietly(function, value)
        if callable(product):
            call_quietly(product, value)

    check()


WRONG_CALLABLES = {
    "returns a string": lambda x: "f(x)",
    "returns None": lambda x: None,
    "takes no argument": lambda: 1.0,
    "takes two arguments": lambda x, y: x,
    "returns a 2-D array": None,  # rendered per backend below
}


@pytest.mark.parametrize("kind", sorted(WRONG_CALLABLES))
@pytest.mark.parametrize("operator", ["grad_and_value", "jacobian_and_value"])
def test_wrong_callables(backend, operator, kind):
    if backend == "symnum":
        pytest.skip("symnum needs a numpify-decorated function (tested in test_errors)")
    func = WRONG_CALLABLES[kind]
    if func is None:
        xp = array_namespace(backend)
        func = lambda x: xp.stack([x, x])  # noqa: E731
    with pytest.raises(DOCUMENTED):
        autodiff_fallback(None, func, operator, operator, backend)(np.ones(3))
