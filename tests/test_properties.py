"""Property tests: on random smooth functions, all installed backends agree with each
other to 1e-9 and with finite differences to 1e-5, for all six operators.

Profiles (tests/conftest.py): ``ci`` runs 25 examples per operator, derandomised;
``slow`` (``make test-slow``) runs 300.

SymNum takes part in every operator but the MTP: SymPy's symbolic third derivatives of
random compositions of exp, sin and powers can take minutes to generate (SymNum is
meant for small, simple functions). Its MTP is tested on the fixed test functions. For
the same reason, a drawn function that SymNum takes over five seconds to differentiate
(SymPy simplifies every derivative it checks for being constant, which a few nested
trigonometric functions make very slow) is checked on the other backends only.
"""

from __future__ import annotations

import contextlib
import time

import numpy as np
import pytest
from functions import (
    RANDOM_N,
    depends_on_x,
    expressions,
    random_scalar_function,
    random_vector_function,
)
from helpers import INSTALLED_BACKENDS, time_limit
from hypothesis import assume, given, note
from hypothesis import strategies as st

from diffops import DIFF_OPS, autodiff_fallback, check_derivatives
from diffops.namespaces import array_namespace
from diffops.operators import OPERATORS

points = st.lists(st.floats(-1.5, 1.5), min_size=RANDOM_N, max_size=RANDOM_N).map(
    np.array
)


def outputs_of(function, x, argument):
    outputs = list(function(x))
    if argument is not None:
        outputs[0] = outputs[0](argument)
    return [np.asarray(output, dtype=float) for output in outputs]


@pytest.mark.parametrize("operator", DIFF_OPS)
@given(data=st.data())
def test_backends_agree_with_each_other_and_with_finite_differences(operator, data):
    record = OPERATORS[operator]
    if record.applies_to == "scalar":
        drawn = data.draw(expressions, label="f")
        assume(depends_on_x(drawn))
        build = random_scalar_function
    else:
        drawn = data.draw(st.tuples(expressions, expressions), label="c")
        assume(all(depends_on_x(e) for e in drawn))
        build = random_vector_function
    x = data.draw(points, label="x")
    argument = None
    if record.product is not None:
        shape = record.concrete_argument_shape(RANDOM_N, 2)
        argument = np.linspace(-1, 1, int(np.prod(shape))).reshape(shape) ** 3
    backends = [
        b
        for b in INSTALLED_BACKENDS
        if not (b == "symnum" and operator == "mtp_hessian_grad_and_value")
    ]
    derivatives = {}
    for backend in backends:
        func = build(drawn, array_namespace(backend))
        # SymNum differentiates when the derivative function is made.
        bounded = time_limit(5) if backend == "symnum" else contextlib.nullcontext()
        try:
            with bounded:
                derivatives[backend] = autodiff_fallback(
                    None, func, operator, operator, backend
                )
        except TimeoutError:
            note(f"{backend} left out: it took over 5 s to differentiate f")
    results = {b: outputs_of(d, x, argument) for b, d in derivatives.items()}
    reference_backend = next(iter(derivatives))
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


def test_the_time_limit_stops_code_that_catches_what_it_raises():
    """SymPy catches ``Exception`` in places: the limit on SymNum must still hold."""

    def carries_on_from_any_exception(for_seconds: float) -> None:
        end = time.monotonic() + for_seconds
        while time.monotonic() < end:
            with contextlib.suppress(Exception):
                sum(range(1000))

    with pytest.raises(TimeoutError, match=r"longer than 0\.2 s"), time_limit(0.2):
        carries_on_from_any_exception(5.0)
