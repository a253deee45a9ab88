"""The derivative checker passes correct derivatives and catches planted mistakes."""

from __future__ import annotations

import numpy as np
import pytest
from functions import (
    SCALAR_CASES,
    SEVERAL_OUTPUTS,
    SMOOTH,
    VECTOR_CASES,
    complex_step_derivative,
    render,
)
from helpers import installed

from diffops.checker import DerivativeCheckError, DerivativeReport, check_derivatives

rng = np.random.default_rng(11)


def scalar_derivatives(case):
    """Correct hand-written derivatives of a scalar case (mtp by complex step of H)."""

    def mtp_at(x):
        return lambda M: complex_step_derivative(
            lambda y: np.sum(M * case.hessian(y)), x
        )

    def lower(x):
        return case.hessian(x), case.grad(x), case.value(x)

    return {
        "grad_and_value": lambda x: (case.grad(x), case.value(x)),
        "hessian_grad_and_value": lower,
        "mtp_hessian_grad_and_value": lambda x: (mtp_at(x), *lower(x)),
    }


def vector_derivatives(case, jacobian=None):
    """Correct hand-written derivatives of a vector case (mhp by complex step of J)."""
    jacobian = jacobian or case.jacobian

    def mhp_at(x):
        return lambda M: complex_step_derivative(lambda y: np.sum(M * jacobian(y)), x)

    return {
        "jacobian_and_value": lambda x: (jacobian(x), case.value(x)),
        "mhp_jacobian_and_value": lambda x: (mhp_at(x), jacobian(x), case.value(x)),
        "vjp_and_value": lambda x: ((lambda u: u @ jacobian(x)), case.value(x)),
    }


def points_near(point, count=3):
    return point + 0.1 * rng.standard_normal((count, point.size))


@pytest.mark.parametrize("case", SCALAR_CASES, ids=str)
def test_correct_scalar_derivatives_pass(case):
    report = check_derivatives(
        case.value, scalar_derivatives(case), points_near(case.point)
    )
    report.raise_if_failed()
    assert report.ok
    assert len(report.comparisons) == 3 * (2 + 3 + 4)


@pytest.mark.parametrize("case", VECTOR_CASES, ids=str)
def test_correct_vector_derivatives_pass(case):
    report = check_derivatives(
        case.value, vector_derivatives(case), points_near(case.point)
    )
    report.raise_if_failed()


@pytest.mark.parametrize("reference", [installed("autograd"), installed("jax")])
def test_a_backend_can_be_the_reference(reference):
    func = render(SMOOTH, reference)
    report = check_derivatives(func, scalar_derivatives(SMOOTH), SMOOTH.point,
                               reference=reference)  # fmt: skip
    report.raise_if_failed()
    assert report.reference == reference


def test_only_the_highest_derivative_may_be_returned():
    derivatives = {
        "grad_and_value": SMOOTH.grad,
        "hessian_grad_and_value": SMOOTH.hessian,
    }
    report = check_derivatives(SMOOTH.value, derivatives, SMOOTH.point)
    assert report.ok
    assert {c.output for c in report.comparisons} == {"g", "H"}


# Planted mistakes.


def failing(report: DerivativeReport):
    assert not report.ok
    with pytest.raises(DerivativeCheckError):
        report.raise_if_failed()
    return report.failures()


def test_catches_a_sign_flipped_in_one_jacobian_entry():
    def flipped(x):
        jacobian = SEVERAL_OUTPUTS.jacobian(x)
        jacobian[2, 1] = -jacobian[2, 1]
        return jacobian, SEVERAL_OUTPUTS.value(x)

    (failure,) = failing(
        check_derivatives(SEVERAL_OUTPUTS.value, {"jacobian_and_value": flipped},
                          SEVERAL_OUTPUTS.point)
    )  # fmt: skip
    assert (failure.output, failure.where) == ("J", (2, 1))


def square_value(x):
    return SEVERAL_OUTPUTS.value(x)[:3]


def square_jacobian(x):
    return SEVERAL_OUTPUTS.jacobian(x)[:3]


@pytest.mark.parametrize(
    ("value", "jacobian"),
    [
        (SEVERAL_OUTPUTS.value, SEVERAL_OUTPUTS.jacobian),
        (square_value, square_jacobian),
    ],
    ids=["4x3", "square"],
)
def test_catches_a_transposed_jacobian(value, jacobian):
    derivatives = {"jacobian_and_value": lambda x: (jacobian(x).T, value(x))}
    failures = failing(check_derivatives(value, derivatives, SEVERAL_OUTPUTS.point))
    assert [f.output for f in failures] == ["J"]


def test_catches_a_hessian_off_by_one_percent_in_one_entry():
    def off(x):
        hessian = SMOOTH.hessian(x)
        hessian[1, 2] *= 1.01
        return hessian

    (failure,) = failing(
        check_derivatives(SMOOTH.value, {"hessian_grad_and_value": off}, SMOOTH.point)
    )
    assert failure.where == (1, 2)


def test_catches_an_mhp_contracting_the_wrong_indices():
    correct = vector_derivatives(SEVERAL_OUTPUTS, square_jacobian)[
        "mhp_jacobian_and_value"
    ]

    def wrong(x):
        mhp, jacobian, value = correct(x)
        return (lambda M: mhp(M.T)), jacobian, value[:3]

    failures = failing(
        check_derivatives(square_value, {"mhp_jacobian_and_value": wrong},
                          SEVERAL_OUTPUTS.point)
    )  # fmt: skip
    assert [f.output for f in failures] == ["mhp(M)"]


def test_catches_an_mtp_missing_a_symmetric_term():
    correct = scalar_derivatives(SMOOTH)["mtp_hessian_grad_and_value"]

    def upper_only(x):  # Σ over j ≤ k only: the j > k terms are missing
        mtp, *rest = correct(x)
        return (lambda M: mtp(np.triu(M)), *rest)

    failures = failing(
        check_derivatives(SMOOTH.value, {"mtp_hessian_grad_and_value": upper_only},
                          SMOOTH.point)
    )  # fmt: skip
    assert [f.output for f in failures] == ["mtp(M)"]


def test_catches_the_value_and_gradient_swapped():
    derivatives = {"grad_and_value": lambda x: (SMOOTH.value(x), SMOOTH.grad(x))}
    failures = failing(check_derivatives(SMOOTH.value, derivatives, SMOOTH.point))
    assert {f.output for f in failures} == {"g", "v"}
    assert "shape" in failures[0].note


def test_report_reads_as_a_table():
    derivatives = {"hessian_grad_and_value": lambda x: 1.01 * SMOOTH.hessian(x)}
    report = check_derivatives(SMOOTH.value, derivatives, [SMOOTH.point, SMOOTH.point])
    text = str(report)
    assert "max abs err" in text
    assert text.count("FAIL") == 2
    with pytest.raises(AssertionError, match="hessian_grad_and_value"):
        report.raise_if_failed()


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (
            {"derivatives": {"laplacian": abs}},
            ValueError,
            "unknown operator 'laplacian'",
        ),
        ({"derivatives": {"grad_and_value": 3}}, TypeError, "must be callable"),
        ({"points": np.ones((1, 1, 4))}, ValueError, r"points must have shape"),
        ({"func": "f"}, TypeError, "func must be callable"),
    ],
)
def test_bad_arguments(kwargs, error, message):
    arguments = {"func": SMOOTH.value, "derivatives": {"grad_and_value": SMOOTH.grad},
                 "points": SMOOTH.point, **kwargs}  # fmt: skip
    with pytest.raises(error, match=message):
        check_derivatives(**arguments)


def test_report_labels_every_output_of_every_operator():
    scalar = check_derivatives(SMOOTH.value, scalar_derivatives(SMOOTH), SMOOTH.point)
    vector = check_derivatives(
        SEVERAL_OUTPUTS.value,
        vector_derivatives(SEVERAL_OUTPUTS),
        SEVERAL_OUTPUTS.point,
    )
    labels = [(c.operator, c.output) for c in scalar.comparisons + vector.comparisons]
    assert labels == [
        ("grad_and_value", "g"), ("grad_and_value", "v"),
        ("hessian_grad_and_value", "H"), ("hessian_grad_and_value", "g"),
        ("hessian_grad_and_value", "v"),
        ("mtp_hessian_grad_and_value", "mtp(M)"),
        ("mtp_hessian_grad_and_value", "H"), ("mtp_hessian_grad_and_value", "g"),
        ("mtp_hessian_grad_and_value", "v"),
        ("jacobian_and_value", "J"), ("jacobian_and_value", "v"),
        ("mhp_jacobian_and_value", "mhp(M)"), ("mhp_jacobian_and_value", "J"),
        ("mhp_jacobian_and_value", "v"),
        ("vjp_and_value", "vjp(u)"), ("vjp_and_value", "v"),
    ]  # fmt: skip


# The command line.

MODEL = """
import numpy as np

def f(x):
    return np.sum(np.sin(x) * x**2)

def grad(x):
    return np.cos(x) * x**2 + 2 * x * np.sin(x), f(x)

def wrong_grad(x):
    g, v = grad(x)
    return g * np.array([1.0, 1.0, 1.01]), v
"""


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "model.py"
    path.write_text(MODEL)
    return path


def run_check(*arguments):
    from diffops.cli import main

    try:
        return main(["check", *arguments])
    except SystemExit as exit_:
        return exit_.code


def test_command_line_passes_correct_derivatives(model_file, capsys):
    status = run_check(f"{model_file}:f", "--derivative",
                       f"grad_and_value={model_file}:grad", "--dim", "3")  # fmt: skip
    assert status == 0
    assert "all outputs match" in capsys.readouterr().out


def test_command_line_fails_wrong_derivatives(model_file, capsys):
    status = run_check(f"{model_file}:f", "--derivative",
                       f"grad_and_value={model_file}:wrong_grad", "--dim", "3",
                       "--points", "2", "--seed", "4")  # fmt: skip
    assert status == 1
    assert "FAIL" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["{m}:f", "--derivative", "grad_and_value={m}:grad"], "--dim"),
        (["{m}:f", "--derivative", "gradient={m}:grad", "--dim", "3"], "OP one of"),
        (["{m}:nope", "--derivative", "grad_and_value={m}:grad", "--dim", "3"],
         "has no function 'nope'"),
        (["missing.py:f", "--derivative", "grad_and_value={m}:grad", "--dim", "3"],
         "no file 'missing.py'"),
        (["{m}", "--derivative", "grad_and_value={m}:grad", "--dim", "3"],
         "must be FILE.py:NAME"),
        (["{m}:f", "--derivative", "grad_and_value={m}:grad", "--dim", "3",
          "--reference", "theano"], "not recognised"),
    ],
)  # fmt: skip
def test_command_line_bad_arguments_exit_2(model_file, capsys, arguments, message):
    status = run_check(*(a.format(m=model_file) for a in arguments))
    assert status == 2
    assert message in capsys.readouterr().err
