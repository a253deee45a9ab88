"""Property tests: on random smooth functions, all installed backends agree with each
other to 1e-9 and with finite differences to 1e-5, for all six operators.

Profiles (tests/conftest.py): ``ci`` runs 25 examples per operator, derandomised;
``slow`` (``make test-slow``) runs 300.

SymNum takes part in every operator but the MTP: SymPy's symbolic third derivatives of
random compositions of exp, sin and powers can take minutes to generate (SymNum is
meant for small, simple functions). Its MTP is tested on the fixed test functions.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import BUILTIN_BACKENDS
from expressions import N, depends_on_x, expressions, scalar_function, vector_function
from hypothesis import assume, given
from hypothesis import strategies as st

import diffops
from diffops import DIFF_OPS, autodiff_fallback
from diffops.checker import check_derivatives
from diffops.namespaces import array_namespace
from diffops.validation import SCALAR_OPERATORS

BACKENDS = [b for b in BUILTIN_BACKENDS if diffops.get_backend(b).available]
points = st.lists(st.floats(-1.5, 1.5), min_size=N, max_size=N).map(np.array)


def outputs_of(function, x, argument):
    outputs = list(function(x))
    if argument is not None:
        outputs[0] = outputs[0](argument)
    return [np.asarray(output, dtype=float) for output in outputs]


@pytest.mark.parametrize("operator", DIFF_OPS)
@given(data=st.data())
def test_backends_agree_with_each_other_and_with_finite_differences(operator, data):
    scalar = operator in SCALAR_OPERATORS
    if scalar:
        drawn = data.draw(expressions, label="f")
        assume(depends_on_x(drawn))
        build = scalar_function
    else:
        drawn = data.draw(st.tuples(expressions, expressions), label="c")
        assume(all(depends_on_x(e) for e in drawn))
        build = vector_function
    x = data.draw(points, label="x")
    m = 1 if scalar else 2
    argument = {
        "mtp_hessian_grad_and_value": np.linspace(-1, 1, N * N).reshape(N, N) ** 3,
        "mhp_jacobian_and_value": np.linspace(-1, 1, m * N).reshape(m, N) ** 3,
        "vjp_and_value": np.array([0.7, -1.3]),
    }.get(operator)
    backends = [
        b for b in BACKENDS if not (b == "symnum" and operator.startswith("mtp"))
    ]
    derivatives = {
        backend: autodiff_fallback(
            None, build(drawn, array_namespace(backend)), operator, operator, backend
        )
        for backend in backends
    }
    results = {b: outputs_of(d, x, argument) for b, d in derivatives.items()}
    reference_backend = backends[0]
    for backend, outputs in results.items():
        for got, want in zip(outputs, results[reference_backend], strict=True):
            scale = max(1.0, float(np.max(np.abs(want), initial=0.0)))
            np.testing.assert_allclose(
                got, want, rtol=1e-9, atol=1e-9 * scale,
                err_msg=f"{backend} disagrees with {reference_backend}",
            )  # fmt: skip
    numpy_function = build(drawn, array_namespace("numpy"))
    report = check_derivatives(
        numpy_function, {operator: derivatives[reference_backend]}, x,
        rtol=1e-5, atol=1e-5,
    )  # fmt: skip
    report.raise_if_failed()
