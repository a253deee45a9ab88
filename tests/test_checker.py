"""The derivative checker passes correct derivatives and catches planted mistakes,
whether the functions compute in float64 or in float32."""

from __future__ import annotations

import functools
import math
import os
import re
import subprocess
import sys
import warnings

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
from helpers import installed, run_python

import diffops
from diffops import DIFF_OPS, finite_differences
from diffops.checker import DerivativeCheckError, DerivativeReport, check_derivatives
from diffops.operators import OPERATORS

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


def computed_in(dtype, function):
    """``function`` computing in ``dtype``, as JAX does in float32 with 64-bit off."""

    def cast(value):
        if callable(value):
            return lambda argument: cast(value(argument))
        return np.asarray(value).astype(dtype)

    def in_dtype(x):
        outputs = function(np.asarray(x, dtype))
        return (
            tuple(map(cast, outputs)) if isinstance(outputs, tuple) else cast(outputs)
        )

    return in_dtype


@pytest.fixture(params=["float64", "float32"])
def precision(request):
    return request.param


def check(precision, func, derivatives, points, **options):
    """check_derivatives of ``func`` and ``derivatives`` computing in ``precision``."""
    func = computed_in(precision, func)
    derivatives = {name: computed_in(precision, d) for name, d in derivatives.items()}
    if precision == "float64":
        report = check_derivatives(func, derivatives, points, **options)
    else:
        with pytest.warns(UserWarning, match="checked at float32 precision"):
            report = check_derivatives(func, derivatives, points, **options)
    assert report.precision == precision
    return report


@pytest.mark.parametrize("case", SCALAR_CASES, ids=str)
def test_correct_scalar_derivatives_pass(case, precision):
    report = check(
        precision, case.value, scalar_derivatives(case), points_near(case.point)
    )
    report.raise_if_failed()
    assert report.ok
    # Per point: g, v; H, g, v and vᵀHv; mtp(M), H, g, v, vᵀHv and, but in float32,
    # vᵀmtp(vvᵀ) (where your lower outputs are differenced, a check along v too).
    assert len(report.comparisons) == 3 * (2 + 4 + (6 if precision == "float64" else 5))


@pytest.mark.parametrize("case", VECTOR_CASES, ids=str)
def test_correct_vector_derivatives_pass(case, precision):
    report = check(
        precision, case.value, vector_derivatives(case), points_near(case.point)
    )
    report.raise_if_failed()


@pytest.mark.parametrize(
    "reference", [installed(name) for name in ("autograd", "jax", "symnum", "torch")]
)
def test_a_backend_can_be_the_reference(reference):
    func = render(SMOOTH, reference)
    report = check_derivatives(func, scalar_derivatives(SMOOTH), SMOOTH.point,
                               reference=reference)  # fmt: skip
    report.raise_if_failed()
    assert report.reference == reference


def test_only_the_highest_derivative_may_be_returned(precision):
    derivatives = {
        "grad_and_value": SMOOTH.grad,
        "hessian_grad_and_value": SMOOTH.hessian,
    }
    report = check(precision, SMOOTH.value, derivatives, SMOOTH.point)
    assert report.ok
    assert {c.output for c in report.comparisons} == {"g", "H"}


def test_float32_points_are_checked_in_float32():
    """As a derivative function reads x: func and yours are only called in float32.

    So code that takes float32 alone (float32 weights, say) can be checked there.
    """
    for case, derivatives in [
        (SMOOTH, scalar_derivatives(SMOOTH)),
        (SEVERAL_OUTPUTS, vector_derivatives(SEVERAL_OUTPUTS)),
    ]:
        seen = {}

        def float32_only(name, function, seen=seen):
            def called(x):
                seen.setdefault(name, set()).add(x.dtype)
                assert x.dtype == np.float32, f"{name} called with {x.dtype}"
                return function(x)

            return called

        mine = {
            name: float32_only(name, computed_in("float32", derivative))
            for name, derivative in derivatives.items()
        }
        func = float32_only("func", computed_in("float32", case.value))
        points = points_near(case.point).astype(np.float32)
        report = check_derivatives(func, mine, points)  # no warning: asked for
        assert report.precision == "float32"
        report.raise_if_failed()
        float32 = {np.dtype(np.float32)}
        assert seen == dict.fromkeys(["func", *derivatives], float32)

    def off(x):
        hessian = SMOOTH.hessian(x)
        hessian[1, 2] *= 1.01
        return hessian

    off32 = {"hessian_grad_and_value": computed_in("float32", off)}
    point = SMOOTH.point.astype(np.float32)
    (failure,) = failing(check_derivatives(SMOOTH.value, off32, point))
    assert (failure.output, failure.where) == ("H", (1, 2))


def test_float32_points_are_checked_at_float32_precision_whatever_comes_out():
    """float32 x with float64 data: float64 outputs, float32 accuracy."""
    w = np.array([1.5, -2.0, 0.7])

    def f(x):
        return np.sum(w * np.sin(x) * x**2)  # sin(x), x**2 in float32

    def grad_and_value(x):
        return w * (np.cos(x) * x**2 + 2 * x * np.sin(x)), f(x)

    points = (3 * rng.standard_normal((3, 3))).astype(np.float32)
    report = check_derivatives(f, {"grad_and_value": grad_and_value}, points)
    assert report.precision == "float32"
    report.raise_if_failed()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_the_points_are_left_as_they_were_by_a_func_writing_into_x(dtype):
    def func(x):
        value = np.sum(x**2) / 2
        x[...] = np.nan  # the caller's points must not see this
        return value

    points = points_near(SMOOTH.point).astype(dtype)
    before = points.copy()
    derivatives = {"grad_and_value": lambda x: (x.copy(), np.sum(x**2) / 2)}
    check_derivatives(func, derivatives, points).raise_if_failed()
    np.testing.assert_array_equal(points, before)


# Planted mistakes.


def failing(report: DerivativeReport):
    assert not report.ok
    with pytest.raises(DerivativeCheckError):
        report.raise_if_failed()
    return report.failures()


def test_catches_a_sign_flipped_in_one_jacobian_entry(precision):
    def flipped(x):
        jacobian = SEVERAL_OUTPUTS.jacobian(x)
        jacobian[2, 1] = -jacobian[2, 1]
        return jacobian, SEVERAL_OUTPUTS.value(x)

    (failure,) = failing(
        check(precision, SEVERAL_OUTPUTS.value, {"jacobian_and_value": flipped},
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
def test_catches_a_transposed_jacobian(value, jacobian, precision):
    derivatives = {"jacobian_and_value": lambda x: (jacobian(x).T, value(x))}
    failures = failing(check(precision, value, derivatives, SEVERAL_OUTPUTS.point))
    assert [f.output for f in failures] == ["J"]


@pytest.mark.parametrize("whole", [False, True], ids=["H alone", "(H, g, v)"])
def test_catches_a_hessian_off_by_one_percent_in_one_entry(precision, whole):
    def off(x):
        hessian = SMOOTH.hessian(x)
        hessian[1, 2] *= 1.01
        return (hessian, SMOOTH.grad(x), SMOOTH.value(x)) if whole else hessian

    (failure,) = failing(
        check(precision, SMOOTH.value, {"hessian_grad_and_value": off}, SMOOTH.point)
    )
    assert (failure.output, failure.where) == ("H", (1, 2))


@pytest.mark.parametrize(
    ("operator", "returned"),
    [("hessian_grad_and_value", n) for n in (0, 2, 4)]
    + [("mtp_hessian_grad_and_value", n) for n in (0, 3, 5)],
)
def test_catches_a_tuple_of_another_length_than_the_operators(operator, returned):
    """Neither the whole tuple nor the highest derivative alone: not checked as ok."""
    whole = scalar_derivatives(SMOOTH)[operator]

    def derivative(x):
        outputs = whole(x)
        return (outputs + outputs)[:returned]

    derivatives = {operator: derivative}
    (failure,) = failing(check_derivatives(SMOOTH.value, derivatives, SMOOTH.point))
    assert failure.output == "tuple"
    labels = OPERATORS[operator].labels
    expected = f"expected {len(labels)} or {labels[0]} alone"
    assert failure.note == f"returned {returned} items, {expected}"


def test_a_report_is_true_exactly_when_it_is_ok():
    # A dataclass is always true: `assert check_derivatives(...)` always passed.
    right = check_derivatives(
        SMOOTH.value, {"grad_and_value": SMOOTH.grad}, SMOOTH.point
    )
    wrong = check_derivatives(
        SMOOTH.value,
        {"grad_and_value": lambda x: (1.01 * SMOOTH.grad(x)[0], SMOOTH.value(x))},
        SMOOTH.point,
    )
    assert right.ok
    assert bool(right) is True
    assert not wrong.ok
    assert bool(wrong) is False


def test_catches_a_list_in_place_of_the_tuple():
    derivatives = {"grad_and_value": lambda x: [SMOOTH.grad(x), SMOOTH.value(x)]}
    (failure,) = failing(check_derivatives(SMOOTH.value, derivatives, SMOOTH.point))
    assert failure.note == "expected real numbers, got list"


def test_catches_complex_outputs_whose_real_part_is_right():
    # NumPy would drop the imaginary part (with a ComplexWarning) and compare the
    # real part, which is right: a 100 % error would pass.
    def complex_grad(x):
        return SMOOTH.grad(x) * (1 + 1j), SMOOTH.value(x) + 5j

    report = check_derivatives(
        SMOOTH.value, {"grad_and_value": complex_grad}, SMOOTH.point
    )
    assert not report.ok
    assert [c.note for c in report.comparisons] == [
        "expected real numbers, got ndarray of dtype complex128",
        "expected real numbers, got complex128",
    ]


def test_catches_an_mhp_contracting_the_wrong_indices(precision):
    correct = vector_derivatives(SEVERAL_OUTPUTS, square_jacobian)[
        "mhp_jacobian_and_value"
    ]

    def wrong(x):
        mhp, jacobian, value = correct(x)
        return (lambda M: mhp(M.T)), jacobian, value[:3]

    failures = failing(
        check(precision, square_value, {"mhp_jacobian_and_value": wrong},
                          SEVERAL_OUTPUTS.point)
    )  # fmt: skip
    assert [f.output for f in failures] == ["mhp(M)"]


def test_catches_an_mtp_missing_a_symmetric_term(precision):
    correct = scalar_derivatives(SMOOTH)["mtp_hessian_grad_and_value"]

    def upper_only(x):  # Σ over j ≤ k only: the j > k terms are missing
        mtp, *rest = correct(x)
        return (lambda M: mtp(np.triu(M)), *rest)

    failures = failing(
        check(precision, SMOOTH.value, {"mtp_hessian_grad_and_value": upper_only},
                          SMOOTH.point)
    )  # fmt: skip
    assert [f.output for f in failures] == ["mtp(M)"]


def test_catches_the_value_and_gradient_swapped(precision):
    derivatives = {"grad_and_value": lambda x: (SMOOTH.value(x), SMOOTH.grad(x))}
    failures = failing(check(precision, SMOOTH.value, derivatives, SMOOTH.point))
    assert {f.output for f in failures} == {"g", "v"}
    assert "shape" in failures[0].note


def test_report_reads_as_a_table(precision):
    derivatives = {"hessian_grad_and_value": lambda x: 1.01 * SMOOTH.hessian(x)}
    report = check(precision, SMOOTH.value, derivatives, [SMOOTH.point, SMOOTH.point])
    text = str(report)
    tolerances = {
        "float64": "rtol=1e-05, atol=1e-06",
        "float32": "rtol=0.0005, atol=0.0001",
    }
    assert f"outputs in {precision} ({tolerances[precision]})" in text.splitlines()[0]
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
        ({"points": np.ones((1, 1, 4))}, ValueError, r"points must be an array of"),
        ({"points": np.ones((0, 4))}, ValueError, r"got an array of shape \(0, 4\)"),
        ({"points": np.ones((2, 0))}, ValueError, r"got an array of shape \(2, 0\)"),
        ({"func": "f"}, TypeError, "func must be callable"),
        (
            {"points": np.array([True, False, True, True])},
            TypeError,
            r"points must be an array of real numbers .*dtype bool",
        ),
        (
            {"points": np.ones(4, complex)},
            TypeError,
            r"points must be an array of real numbers .*dtype complex128",
        ),
        ({"points": ["a", "b"]}, TypeError, r"points must be an array of real"),
        # Accepted, every comparison failed (NaN compares false) or, for a
        # string, NumPy's "can't multiply sequence".
        ({"rtol": -1.0}, ValueError, r"rtol must be a non-negative number; got -1"),
        ({"atol": float("nan")}, ValueError, r"atol must be a non-negative .*nan"),
        ({"atol": "1"}, TypeError, r"atol must be a non-negative number; got str"),
        ({"rtol": True}, TypeError, r"rtol must be a non-negative number; got bool"),
        ({"seed": -1}, ValueError, r"seed must be a non-negative integer; got -1"),
        ({"seed": 1.5}, ValueError, r"seed must be a non-negative integer; got 1.5"),
        (
            {"reference": "finite-differences"},
            ValueError,
            r"reference must be 'finite_differences' or a backend's name, one of "
            r"\('finite_differences', 'jax', .*got 'finite-differences'",
        ),
        ({"reference": None}, TypeError, r"reference must be .*; got None"),
        (
            {"points": [0.0, np.nan, 1, 2]},
            ValueError,
            r"points must be finite; point 0",
        ),
        (
            {"points": [[0.0, 1, 2, 3], [np.inf, 1, 2, 3]]},
            ValueError,
            r"points must be finite; point 1 is \[inf, 1.0, 2.0, 3.0\]",
        ),
    ],
)
def test_bad_arguments(kwargs, error, message):
    arguments = {"func": SMOOTH.value, "derivatives": {"grad_and_value": SMOOTH.grad},
                 "points": SMOOTH.point, **kwargs}  # fmt: skip
    with pytest.raises(error, match=message):
        check_derivatives(**arguments)


def test_tolerances_given_are_used_whatever_the_precision(precision):
    derivatives = {"grad_and_value": lambda x: (1.01 * SMOOTH.grad(x), SMOOTH.value(x))}
    strict = check(precision, SMOOTH.value, derivatives, SMOOTH.point)
    loose = check(precision, SMOOTH.value, derivatives, SMOOTH.point, rtol=5e-2)
    assert not strict.ok
    assert loose.ok
    assert (loose.rtol, loose.atol) == (5e-2, strict.atol)


def test_the_checker_never_turns_on_jax_64_bit_mode_but_warns():
    pytest.importorskip("jax")
    result = run_python(
        """
        import warnings, numpy as np, jax, jax.numpy as jnp, diffops
        f = lambda x: jnp.sum(jnp.sin(x) * x**2)
        grad = diffops.autodiff_fallback(None, f, "grad_and_value", "g", "jax")
        wrong = lambda x: (grad(x)[0] * np.array([1, 1, -1]), grad(x)[1])
        points = np.random.default_rng(0).standard_normal((2, 3))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            right = diffops.check_derivatives(f, {"grad_and_value": grad}, points)
            wrong = diffops.check_derivatives(f, {"grad_and_value": wrong}, points)
        print(right.ok, wrong.ok, right.precision, jax.config.read("jax_enable_x64"))
        print(*[str(w.message) for w in caught], sep=" | ")
        """,
        {k: v for k, v in os.environ.items() if k != "JAX_ENABLE_X64"},
    )
    assert result.returncode == 0, result.stderr
    first, messages = result.stdout.splitlines()
    assert first == "True False float32 False"
    assert "checked at float32 precision" in messages
    assert "JAX_ENABLE_X64=1" in messages


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
        ("hessian_grad_and_value", "v"), ("hessian_grad_and_value", "vᵀHv"),
        ("mtp_hessian_grad_and_value", "mtp(M)"),
        ("mtp_hessian_grad_and_value", "H"), ("mtp_hessian_grad_and_value", "g"),
        ("mtp_hessian_grad_and_value", "v"),
        ("mtp_hessian_grad_and_value", "vᵀHv"),
        ("mtp_hessian_grad_and_value", "vᵀmtp(vvᵀ)"),
        ("jacobian_and_value", "J"), ("jacobian_and_value", "v"),
        ("mhp_jacobian_and_value", "mhp(M)"), ("mhp_jacobian_and_value", "J"),
        ("mhp_jacobian_and_value", "v"), ("mhp_jacobian_and_value", "vᵀmhp(uvᵀ)"),
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

def raising_grad(x):
    return 1 / 0

def exiting_grad(x):
    import sys
    sys.exit(0)

def jax_f(x):
    import jax.numpy as jnp
    return jnp.sum(jnp.sin(x) * x**2)

def jax_grad(x):
    import jax
    return jax.grad(jax_f)(x), jax_f(x)

def jax_wrong_grad(x):
    import jax.numpy as jnp
    g, v = jax_grad(x)
    return g * jnp.array([1.0, 1.0, -1.0]), v
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


def test_command_line_runs_a_file_named_several_times_once(tmp_path, capsys):
    # Module-level data drawn at random: run again for each FILE.py:NAME, f and
    # its gradient saw different W, and the correct gradient failed.
    model = tmp_path / "drawn.py"
    model.write_text(
        "import numpy as np\n"
        "W = np.random.default_rng().standard_normal(3)\n"
        "print('ran', flush=True)\n"
        "def f(x): return np.sum(W * np.sin(x))\n"
        "def grad(x): return W * np.cos(x), f(x)\n"
        "def hessian(x): return -np.diag(W * np.sin(x)), *grad(x)\n"
    )
    status = run_check(f"{model}:f", "--derivative", f"grad_and_value={model}:grad",
                       "--derivative", f"hessian_grad_and_value={model}:hessian",
                       "--dim", "3")  # fmt: skip
    out = capsys.readouterr().out
    assert status == 0, out
    assert out.count("ran") == 1


def test_command_line_fails_wrong_derivatives(model_file, capsys):
    status = run_check(f"{model_file}:f", "--derivative",
                       f"grad_and_value={model_file}:wrong_grad", "--dim", "3",
                       "--points", "2", "--seed", "4")  # fmt: skip
    assert status == 1
    assert "FAIL" in capsys.readouterr().out


def test_command_line_takes_tolerances(model_file, capsys):
    arguments = [f"{model_file}:f", "--derivative",
                 f"grad_and_value={model_file}:wrong_grad", "--dim", "3"]  # fmt: skip
    assert run_check(*arguments) == 1
    assert run_check(*arguments, "--rtol", "0.05", "--atol", "1e-3") == 0
    assert "(rtol=0.05, atol=0.001)" in capsys.readouterr().out


def test_command_line_help_lists_the_operators(capsys):
    assert run_check("--help") == 0
    help_text = " ".join(capsys.readouterr().out.split())
    assert ", ".join(DIFF_OPS) in help_text
    assert "--rtol" in help_text
    assert "--atol" in help_text


def test_command_line_says_in_one_paragraph_what_raised(model_file, capsys):
    arguments = [f"{model_file}:f", "--derivative",
                 f"grad_and_value={model_file}:raising_grad", "--dim", "3"]  # fmt: skip
    assert run_check(*arguments) == 2
    err = capsys.readouterr().err
    assert "ZeroDivisionError: division by zero (raised by your grad_and_value)" in err
    assert "Traceback" not in err
    assert run_check(*arguments, "--debug") == 2  # the status says what happened
    assert "Traceback" in capsys.readouterr().err


def test_command_line_fails_a_check_that_calls_sys_exit(model_file, tmp_path, capsys):
    """sys.exit(0) in your code is no pass: it ends the check, which says so."""
    arguments = [f"{model_file}:f", "--derivative",
                 f"grad_and_value={model_file}:exiting_grad", "--dim", "3"]  # fmt: skip
    assert run_check(*arguments) == 2
    err = capsys.readouterr().err
    assert "sys.exit(0) was called (raised by your grad_and_value)" in err
    exiting = tmp_path / "exiting.py"
    exiting.write_text("import sys\nsys.exit(0)\n")
    arguments = [f"{exiting}:f", "--derivative", f"grad_and_value={exiting}:g",
                 "--dim", "3"]  # fmt: skip
    assert run_check(*arguments) == 2
    err = capsys.readouterr().err
    assert "could not run the file: sys.exit(0) was called" in err


def test_command_line_names_the_file_that_raised_as_it_was_run(tmp_path, capsys):
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('at import')\n")
    status = run_check(f"{broken}:f", "--derivative", f"grad_and_value={broken}:g",
                       "--dim", "2")  # fmt: skip
    assert status == 2
    assert f"RuntimeError: at import (raised while running {broken})" in (
        capsys.readouterr().err
    )


def test_command_line_imports_the_modules_beside_the_file(tmp_path, capsys):
    (tmp_path / "constants.py").write_text("SCALE = 3.0\n")
    (tmp_path / "model.py").write_text(
        "import numpy as np\nfrom constants import SCALE\n"
        "def f(x):\n    return SCALE * np.sum(x**2)\n"
        "def g(x):\n    return 2 * SCALE * x, f(x)\n"
    )
    model = tmp_path / "model.py"
    assert run_check(f"{model}:f", "--derivative", f"grad_and_value={model}:g",
                     "--dim", "2") == 0  # fmt: skip


def test_command_line_refuses_an_operator_given_twice(model_file, capsys):
    status = run_check(
        f"{model_file}:f",
        *("--derivative", f"grad_and_value={model_file}:grad"),
        *("--derivative", f"grad_and_value={model_file}:wrong_grad"),
        *("--dim", "3"),
    )
    assert status == 2
    assert "--derivative grad_and_value is given twice" in capsys.readouterr().err


def test_command_line_refuses_a_negative_seed(model_file, capsys):
    status = run_check(f"{model_file}:f", "--derivative",
                       f"grad_and_value={model_file}:grad", "--dim", "3",
                       "--seed", "-1")  # fmt: skip
    assert status == 2
    err = capsys.readouterr().err
    assert "--seed: must be an integer of 0 or more; got '-1'" in err


def test_derivatives_written_with_torch_are_checked_against_torch():
    torch = pytest.importorskip("torch")

    def f(x):
        return torch.sum(torch.sin(x) * x**2)

    def grad_and_value(x):
        x = torch.as_tensor(x)
        return torch.cos(x) * x**2 + 2 * x * torch.sin(x), f(x)

    points = np.random.default_rng(0).standard_normal((2, 3))
    report = check_derivatives(
        f, {"grad_and_value": grad_and_value}, points, reference="torch"
    )
    assert report.ok
    assert report.precision == "float64"


def test_command_line_explains_a_function_the_reference_cannot_trace(
    model_file, capsys
):
    pytest.importorskip("jax")
    status = run_check(f"{model_file}:f", "--derivative",
                       f"grad_and_value={model_file}:grad", "--dim", "3",
                       "--reference", "jax")  # fmt: skip
    assert status == 2
    err = capsys.readouterr().err
    assert "calls a NumPy function" in err
    assert "jax.numpy" in err


@pytest.mark.parametrize("x64", [None, "0"], ids=["unset", "JAX_ENABLE_X64=0"])
def test_command_line_checks_jax_functions_in_float64_unless_told(model_file, x64):
    pytest.importorskip("jax")
    env = {k: v for k, v in os.environ.items() if k != "JAX_ENABLE_X64"}
    if x64 is not None:
        env["JAX_ENABLE_X64"] = x64
    outputs = {}
    for name in ("jax_grad", "jax_wrong_grad"):
        result = subprocess.run(
            [sys.executable, "-m", "diffops", "check", f"{model_file}:jax_f",
             "--derivative", f"grad_and_value={model_file}:{name}", "--dim", "3"],
            capture_output=True, text=True, env=env, check=False, timeout=300,
        )  # fmt: skip
        outputs[name] = result
    right, wrong = outputs["jax_grad"], outputs["jax_wrong_grad"]
    assert (right.returncode, wrong.returncode) == (0, 1), right.stderr + wrong.stderr
    precision = "float64" if x64 is None else "float32"
    assert f"outputs in {precision}" in right.stdout
    assert ("JAX's 64-bit mode is on for this check" in right.stdout) == (x64 is None)
    assert ("JAX's 64-bit mode is off (JAX_ENABLE_X64=0)" in right.stdout) == (
        x64 is not None
    )
    assert "Warning" not in right.stderr


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


def test_a_large_value_does_not_loosen_the_check_of_the_derivatives(precision):
    # A log-likelihood summed over much data: f is large, its derivatives are not.
    def f(x):
        return 1e5 + 4 * x[0] ** 2 + 0.2 * x[1] ** 2

    def grad(x):  # g[1] 10 % off
        return np.array([8 * x[0], 0.44 * x[1]]), f(x)

    def hessian(x):  # H[1, 1] 10 % off
        return (
            np.array([[8.0, 0.0], [0.0, 0.44]]),
            np.array([8 * x[0], 0.4 * x[1]]),
            f(x),
        )

    points = np.random.default_rng(0).standard_normal((3, 2))
    derivatives = {"grad_and_value": grad, "hessian_grad_and_value": hessian}
    report = check(precision, f, derivatives, points)
    failed = {(c.operator, c.output) for c in report.failures()}
    if precision == "float64":
        assert failed == {("grad_and_value", "g"), ("hessian_grad_and_value", "H")}
    else:  # float32 values of 1e5 round by 6e-3: their differences cannot tell
        gradients = [c for c in report.comparisons if c.output == "g"]
        assert all(c.inconclusive and not c.ok for c in gradients)  # not passed
        assert failed == {
            ("hessian_grad_and_value", "H"),
            ("grad_and_value", "g"),
            ("hessian_grad_and_value", "g"),
        }
        hessians = [c for c in report.comparisons if c.output == "H"]
        assert not any(c.inconclusive for c in hessians)  # told apart: FAIL
        text = str(report)
        assert "inconclusive (rounding may move the reference by" in text
        assert text.endswith(
            "3 output(s) do not match; 6 cannot be checked at this precision "
            "(inconclusive): check them in float64, or against a backend "
            "(reference=...)"
        )
        with pytest.raises(DerivativeCheckError):
            report.raise_if_failed()


def test_an_entry_one_percent_off_fails_however_small_beside_the_largest(precision):
    def f(x):
        return 4 * x[0] ** 2 + 0.1 * x[1] ** 2

    def hessian(x):  # H[1, 1] = 0.202 where it is 0.2
        return (
            np.array([[8.0, 0.0], [0.0, 0.202]]),
            np.array([8 * x[0], 0.2 * x[1]]),
            f(x),
        )

    points = np.random.default_rng(1).standard_normal((3, 2))
    report = check(precision, f, {"hessian_grad_and_value": hessian}, points)
    assert [(c.point, c.output, c.where) for c in report.failures()] == [
        (point, "H", (1, 1)) for point in range(3)
    ]


def test_a_small_function_is_checked_to_its_own_size_with_a_smaller_atol():
    # f of order 1e-7: by default its derivatives are checked to atol absolutely
    # (docs/checking.md); atol=1e-14 holds them to their own size.
    s = 1e-7

    def f(x):
        return s * np.sum(np.sin(x))

    points = np.random.default_rng(0).standard_normal((2, 3))
    wrong = {
        "sign flipped": lambda x: (-s * np.cos(x), f(x)),
        "doubled": lambda x: (2 * s * np.cos(x), f(x)),
        "value doubled": lambda x: (s * np.cos(x), 2 * f(x)),
    }
    for name, derivative in wrong.items():
        close = check_derivatives(f, {"grad_and_value": derivative}, points, atol=1e-14)
        assert not close.ok, name
    right = check_derivatives(
        f, {"grad_and_value": lambda x: (s * np.cos(x), f(x))}, points, atol=1e-14
    )
    assert right.ok, right


def test_a_check_that_rounding_could_pass_is_inconclusive_and_fails():
    # f = 1e12 + Σ sin x in float64: differences of f round by 1e-4 relative, more
    # than the gradient's size; a gradient of the wrong sign must not pass.
    def f(x):
        return 1e12 + np.sum(np.sin(x))

    points = np.random.default_rng(0).standard_normal((2, 3))
    report = check_derivatives(
        f, {"grad_and_value": lambda x: (-np.cos(x), f(x))}, points
    )
    gradients = [c for c in report.comparisons if c.output == "g"]
    assert all(c.inconclusive and not c.ok for c in gradients)
    assert not report.ok
    with pytest.raises(
        DerivativeCheckError,
        match=r"cannot be checked at this precision \(inconclusive\): check them "
        r"against a backend \(reference=\.\.\.\)$",
    ):
        report.raise_if_failed()
    off = check_derivatives(
        f, {"grad_and_value": lambda x: (1.05 * np.cos(x), f(x))}, points
    )
    assert not off.ok  # 5 % off: inconclusive at worst, never passed
    # Against a backend, the same gradient is told wrong: a FAIL, not inconclusive.
    jnp = pytest.importorskip("jax.numpy")
    exact = check_derivatives(
        lambda x: 1e12 + jnp.sum(jnp.sin(x)),
        {"grad_and_value": lambda x: (-np.cos(x), f(x))},
        points,
        reference="jax_nojit",
    )
    assert [c.inconclusive for c in exact.failures()] == [False, False]


@pytest.mark.parametrize(
    ("func", "grad", "point"),
    [
        (np.sin, np.cos, [3000.0, 1.0]),  # varies on a scale of 1 far from 0
        (np.sin, np.cos, [1000.0, 2000.0]),
        # The step scaled to |x| spans periods: its differences agreed on a wrong
        # value, failing the correct gradient (and passing a zero one at 1e8).
        (np.sin, np.cos, [1e5, 1.0]),
        (np.sin, np.cos, [1e7, 1e8]),
        (
            np.sqrt,
            lambda x: 0.5 / np.sqrt(x),
            [1e-4, 0.5, 2.0],
        ),  # near its domain's edge
    ],
    ids=[
        "sin at 3000",
        "sin at 1000 and 2000",
        "sin at 1e5",
        "sin at 1e7 and 1e8",
        "sqrt at 1e-4",
    ],
)
def test_correct_derivatives_pass_far_from_the_origin_and_near_a_domain_edge(
    func, grad, point
):
    def f(x):
        return np.sum(func(x))

    report = check_derivatives(f, {"grad_and_value": lambda x: (grad(x), f(x))}, point)
    assert report.ok, report
    wrong = check_derivatives(
        f, {"grad_and_value": lambda x: (1.01 * grad(x), f(x))}, point
    )
    assert not wrong.ok


def test_correct_derivatives_pass_where_a_small_step_would_round_to_nothing():
    # Near 0 a step scaled to |x| leaves f(x ± h) equal in rounding: the
    # differences keep the step whose rounding they can bear.
    def cosines(x):
        return np.sum(np.cos(x))

    point = [1e-8, -2e-8]
    report = check_derivatives(
        cosines, {"hessian_grad_and_value": lambda x: -np.diag(np.cos(x))}, point
    )
    assert report.ok, report

    def exp32(x):  # computed in float32
        return np.sum(np.exp(np.asarray(x, np.float32)))

    with pytest.warns(UserWarning, match="float32"):
        report = check_derivatives(
            exp32,
            {"grad_and_value": lambda x: (np.exp(np.asarray(x, np.float32)), exp32(x))},
            point,
        )
    assert report.ok, report

    def linear32(x):  # float32, one coordinate tiny and one large
        x = np.asarray(x, np.float32)
        return np.stack([2 * x[0] + 3 * x[1], x[0] - x[1]])

    jacobian = np.array([[2.0, 3.0], [1.0, -1.0]], np.float32)
    with pytest.warns(UserWarning, match="float32"):
        report = check_derivatives(
            linear32,
            {"jacobian_and_value": lambda x: (jacobian, linear32(x))},
            [1e-4, 1e4],
        )
    # Values of 3e4 in float32 cannot tell J to 1 %: inconclusive, never a FAIL,
    # and the differences as close as that rounding allows (the step scaled to
    # 1e-4 gave an error of 2).
    assert all(c.ok or c.inconclusive for c in report.comparisons), report
    assert report.comparisons[0].max_abs_error < 0.1


@pytest.mark.parametrize(
    ("func", "grad", "x0"),
    [
        (np.log, lambda x: 1 / x, 1e-3),  # the scaled step reaches 0: not finite
        (np.log, lambda x: 1 / x, 2e-3),  # finite, but off by 5e-5 relative
        (np.sqrt, lambda x: 0.5 / np.sqrt(x), 1.7e-3),
        (lambda x: 1 / x, lambda x: -1 / x**2, 5e-4),
    ],
    ids=["log at 1e-3", "log at 2e-3", "sqrt at 1.7e-3", "1/x at 5e-4"],
)
def test_correct_derivatives_pass_a_step_away_from_a_domain_edge(func, grad, x0):
    # The scaled step (1e-3) reaches to or near the edge; the step scaled down by
    # |x| is tried where the scaled one's bound is not small, or not finite.
    def f(x):
        return np.sum(func(x))

    point = [x0, 1.0]
    with np.errstate(divide="ignore", invalid="ignore"):
        report = check_derivatives(
            f, {"grad_and_value": lambda x: (grad(x), f(x))}, point
        )
        wrong = check_derivatives(
            f, {"grad_and_value": lambda x: (1.001 * grad(x), f(x))}, point
        )
    assert report.ok, report
    assert not wrong.ok
    assert not any(c.inconclusive for c in wrong.comparisons), wrong


def test_the_differences_own_bound_makes_a_comparison_inconclusive_not_a_failure():
    # float32 sin at |x| = 3000: the step (0.05 there) is the smallest float32 can
    # take to 1e-4, and its differences may be off by 3 % of g; tan 1e-4 from its
    # pole in float32, where every step tried spans the pole and the differences
    # agree on -3400 for a derivative of 1e8 (their bound over a tenth of it). A
    # correct derivative is then inconclusive, never a FAIL; one wrong by 1 % of
    # the largest entry never passes.
    def sines(x):
        return np.sum(np.sin(x))

    def sines_grad(x, error=0.0):
        g = np.cos(np.asarray(x, np.float64))
        g[0] += error
        return g.astype(np.float32), sines(x)

    def tangents(x):
        return np.sum(np.tan(x))

    def tangents_grad(x, error=0.0):
        g = 1 / np.cos(np.asarray(x, np.float64)) ** 2
        g[0] += error * np.max(np.abs(g))
        return g.astype(np.float32), tangents(x)

    cases = [
        (sines, sines_grad, [3000.0, -3030.0]),
        (tangents, tangents_grad, [np.pi / 2 - 1e-4, 0.5]),
    ]
    for func, grad, point in cases:
        point = np.asarray(point, np.float32)
        report = check_derivatives(func, {"grad_and_value": grad}, point)
        assert not report.ok
        assert report.comparisons[0].inconclusive, report
        assert "the differences may be off by" in str(report)
        wrong = check_derivatives(
            func, {"grad_and_value": lambda x, grad=grad: grad(x, 0.01)}, point
        )
        assert not wrong.ok


_NARROW = 1e-3
_RIDGE = 1e12
_UNDERFLOWING = 5e-4


@pytest.mark.parametrize(
    ("func", "grad", "point"),
    [
        (
            lambda x: np.sum(1 / (1 + (x / _NARROW) ** 2)),
            lambda x: -2 * x / _NARROW**2 / (1 + (x / _NARROW) ** 2) ** 2,
            np.array([1e-3], np.float32),
        ),
        (
            lambda x: 1 / x[0] + _RIDGE * np.cos(x[1]),
            lambda x: np.array([-1 / x[0] ** 2, -_RIDGE * np.sin(x[1])]),
            np.array([1e-6, 0.7]),
        ),
        (
            lambda x: np.sum(np.exp(-((x / _UNDERFLOWING) ** 2))),
            lambda x: -2 * x / _UNDERFLOWING**2 * np.exp(-((x / _UNDERFLOWING) ** 2)),
            np.array([1.4e-3], np.float32),
        ),
        (
            lambda x: x.dtype.type(np.sum(np.sin(195 * np.asarray(x, np.float64)))),
            lambda x: 195 * np.cos(195 * np.asarray(x, np.float64)),
            np.array([1.3], np.float32),
        ),
        (
            lambda x: np.sum(np.tan(x)),
            lambda x: 1 / np.cos(x) ** 2,
            np.array([np.pi / 2 - 1e-3, 0.5]),
        ),
    ],
    ids=[
        "float32 peak of width 1e-3",
        "1/x at 1e-6 beside 1e12 cos",
        "float32 exp(-x²/s²) underflowing a step away",
        "float32 sin(195 x)",
        "tan 1e-3 from its pole",
    ],
)
def test_smaller_steps_settle_where_the_scaled_step_is_far_too_coarse(
    func, grad, point
):
    # Each failed a correct derivative, or left it inconclusive: differences at
    # the scaled step (0.05 in float32, 1e-3 in float64) and the smaller one agree
    # on a wrong value within bounds that do not hold, or disagree, or are 0 where
    # f underflows. Smaller steps, each confirmed by the next, settle them: the
    # correct derivative passes and one 1 % off fails.
    dtype = point.dtype.type

    def gradient(x, error=0.0):
        g = np.array(grad(np.asarray(x, np.float64)), np.float64)
        g[0] += error * np.max(np.abs(g))
        return g.astype(dtype), func(x)

    report = check_derivatives(func, {"grad_and_value": gradient}, point)
    assert report.ok, report
    for error in (0.01, -0.01):
        wrong = check_derivatives(
            func, {"grad_and_value": lambda x, e=error: gradient(x, e)}, point
        )
        assert not wrong.ok
        assert not wrong.comparisons[0].inconclusive, wrong


def _softplus(x):
    return np.sum(np.logaddexp(np.zeros_like(x), x))


def _softplus_hessian(x):
    s = 1 / (1 + np.exp(-np.asarray(x, np.float64)))
    return np.diag(s * (1 - s)).astype(x.dtype)


def _student(x, nu=3.0):
    return x.dtype.type((nu + x.size) / 2) * np.log1p(x @ x / x.dtype.type(nu))


def _student_hessian(x, nu=3.0):
    y = np.asarray(x, np.float64)
    c = (nu + y.size) / (nu + y @ y)
    return (c * np.eye(y.size) - 2 * c / (nu + y @ y) * np.outer(y, y)).astype(x.dtype)


def _quadratic_and_cosines(x):
    return np.sum(x**2) / 2 + np.sum(np.cos(x))


def _quadratic_and_cosines_hessian(x):
    return np.diag(1 - np.cos(x)).astype(x.dtype)


def _standard_normal(seed, size, scale=1.0):
    return scale * np.random.default_rng(seed).standard_normal(size)


@pytest.mark.parametrize(
    ("func", "hessian", "point"),
    [
        (_softplus, _softplus_hessian, _standard_normal(0, 10).astype(np.float32)),
        (_student, _student_hessian, _standard_normal(4, 10, 0.3).astype(np.float32)),
        (
            _quadratic_and_cosines,
            _quadratic_and_cosines_hessian,
            np.array([2.568567607415556e-4, 0.7, -1.3]),
        ),
        (
            _quadratic_and_cosines,
            _quadratic_and_cosines_hessian,
            _standard_normal(11, 4, 0.3).astype(np.float32),
        ),
    ],
    ids=["float32 softplus", "float32 Student-t", "small coordinate", "float32 cos"],
)
def test_a_hessian_returned_alone_is_checked_by_differences_that_bear_their_noise(
    func, hessian, point
):
    # Nested differences (g by differences, H by differences of it) carry the
    # inner differences' error: a smaller outer step divides it by less, so the
    # outer differences count it (noise), and a smaller step is not taken for a
    # bound that does not hold. Each case failed, or was inconclusive, where the
    # search for smaller steps took no account of it.
    report = check_derivatives(func, {"hessian_grad_and_value": hessian}, point)
    assert report.ok, report

    def wrong(x):  # 1 % of the output's scale, the largest entry and at least 1
        H = hessian(x).astype(np.float64)
        H[0, 0] += 0.01 * max(1.0, np.max(np.abs(H)))
        return H.astype(x.dtype)

    assert not check_derivatives(func, {"hessian_grad_and_value": wrong}, point).ok


def test_an_mtp_returned_alone_is_checked_by_differences_that_bear_their_noise():
    # Three levels nested: mtp(M) by differences of Σ M ∘ H, H and g by
    # differences too; 80,000 evaluations of f and a FAIL when the outer
    # differences did not count the inner ones' error.
    point = _standard_normal(11, 4, 0.3)

    def mtp(x, factor=1.0):
        return lambda M: factor * np.diag(M) * np.sin(x)

    report = check_derivatives(
        _quadratic_and_cosines, {"mtp_hessian_grad_and_value": mtp}, point
    )
    assert report.ok, report
    wrong = check_derivatives(
        _quadratic_and_cosines,
        {"mtp_hessian_grad_and_value": lambda x: mtp(x, 1.02)},
        point,
    )
    assert not wrong.ok


def test_no_larger_step_smooths_over_a_ripple_near_a_domain_edge():
    # log x at 1e-5 (the scaled step 1e-3 reaches past 0) beside a ripple of
    # period 1.5e-8 that the step scaled down by x (1e-8) resolves. Steps ten to a
    # thousand times larger, once tried there, averaged the ripple out, agreed with
    # each other, and a gradient 1 % of its size low passed.
    period, amplitude = 2.4380273084089486e-09, 7.847599703514607e-06

    def f(x):
        return np.log(x[0]) + amplitude * np.sin(x[0] / period)

    def gradient(x, error=0.0):
        g = 1 / x[0] + amplitude / period * np.cos(x[0] / period)
        return np.array([g * (1 + error)]), f(x)

    x = np.array([1e-5])
    with np.errstate(invalid="ignore"):
        for error in (-0.0101, 0.0101):
            wrong = check_derivatives(
                f, {"grad_and_value": lambda y, e=error: gradient(y, e)}, x
            )
            assert not wrong.ok, wrong


def test_the_bound_of_finite_differences_holds():
    # Against hand-derived derivatives: each entry's error is within its bound, in
    # float64 and float32, near a domain edge, far out, and where no step follows
    # (not where x is so large that no step of x's precision resolves sin, 1e5 in
    # float32 with the default step, which docs/checking.md states).
    cases = [
        (np.log, lambda x: 1 / x, [2e-3, 1.0, 30.0], (np.float64, np.float32)),
        (np.sin, np.cos, [100.0, 3000.0, 1e5], (np.float64,)),
        (np.sin, np.cos, [10.0, 100.0, 300.0], (np.float32,)),
        (np.exp, np.exp, [-3.0, 0.5, 13.6], (np.float64, np.float32)),
        (
            np.tan,
            lambda x: 1 / np.cos(x) ** 2,
            [np.pi / 2 - 1e-3, 0.2, 1.0],
            (np.float64, np.float32),
        ),
    ]
    for func, grad, point, dtypes in cases:
        for dtype in dtypes:
            x = np.asarray(point, dtype)
            estimate, bound = finite_differences.jacobian_and_bound(
                lambda y, func=func: np.sum(func(y)), x
            )
            wanted = grad(x.astype(np.float64))
            assert estimate.shape == bound.shape == x.shape
            assert np.all(np.abs(estimate - wanted) <= bound), (func, dtype)


def test_a_smaller_step_is_taken_only_where_it_is_far_better():
    # float32 exp, its Hessian alone (nested differences), at x = 13.6: the
    # scaled step's bound overstates its error, and the smaller step, rounded
    # more, failed the correct Hessian; 1 % off still fails.
    def f(x):
        return np.sum(np.exp(np.asarray(x, np.float32)))

    def hessian(x, factor=1.0):
        return (factor * np.diag(np.exp(np.asarray(x, np.float64)))).astype(np.float32)

    for point in ([13.6131075], [0.0, 13.6131075]):
        with pytest.warns(UserWarning, match="float32"):
            right = check_derivatives(f, {"hessian_grad_and_value": hessian}, point)
        with pytest.warns(UserWarning, match="float32"):
            wrong = check_derivatives(
                f, {"hessian_grad_and_value": lambda x: hessian(x, 1.01)}, point
            )
        assert right.ok, right
        assert not wrong.ok


def test_a_reference_that_is_not_finite_is_said_to_be_so():
    def f(x):
        return np.sum(np.sqrt(x))

    with np.errstate(invalid="ignore"):
        report = check_derivatives(
            f, {"grad_and_value": lambda x: (0.5 / np.sqrt(x), f(x))}, [-1.0, 0.5]
        )
    assert not report.ok
    assert "the reference is not finite" in str(report)


def negated(function):
    """``-function``, a decorator keeping its name as ``functools.wraps`` does."""

    @functools.wraps(function)
    def negative(x):
        return -function(x)

    return negative


@pytest.mark.parametrize(
    "reference", [installed(name) for name in ("autograd", "jax", "torch")]
)
def test_a_backend_reference_differentiates_func_decorated_as_it_is(reference):
    # f(x) = |x|²/2 as the negation of a log density: its gradient is x. A reference
    # of the undecorated function (the log density) would fail the right gradient
    # and pass its negation.
    f = negated(lambda x: -(x @ x) / 2)
    points = np.array([[0.5, -1.0, 2.0]])
    right = check_derivatives(
        f, {"grad_and_value": lambda x: (x, x @ x / 2)}, points, reference=reference
    )
    wrong = check_derivatives(
        f, {"grad_and_value": lambda x: (-x, -(x @ x) / 2)}, points, reference=reference
    )
    assert right.ok, right
    assert not wrong.ok
    assert {c.output for c in wrong.failures()} == {"g", "v"}
    # The function as a library holds it, wrapped by the backend to return NumPy
    # arrays: the backend differentiates the function inside.
    if reference != "autograd":  # which has no function wrapper
        held = diffops.wrap_function(f, reference)
        checked = check_derivatives(
            held, {"grad_and_value": lambda x: (x, x @ x / 2)}, points,
            reference=reference,
        )  # fmt: skip
        assert checked.ok, checked


@pytest.mark.parametrize("operator", ["hessian_grad_and_value", "jacobian_and_value"])
def test_outputs_returned_in_a_buffer_rewritten_at_each_call_are_differenced(
    operator,
):
    # A common way to save allocations: each call writes into the same array and
    # returns it. The differences must copy each value before the next call.
    buffer = np.empty(3)

    def f(x):
        return np.sum(np.sin(x))

    def grad_in_buffer(x):
        np.cos(x, out=buffer)
        return buffer

    def c(x):  # (sin x₀, x₀ x₁, exp x₂), in the buffer
        buffer[:] = np.sin(x[0]), x[0] * x[1], np.exp(x[2])
        return buffer

    def jacobian(x):
        return np.array([[np.cos(x[0]), 0, 0], [x[1], x[0], 0], [0, 0, np.exp(x[2])]])

    point = np.array([0.3, -0.7, 1.1])
    if operator == "hessian_grad_and_value":
        func, right = f, lambda x: (np.diag(-np.sin(x)), grad_in_buffer(x), f(x))
        wrong = lambda x: (np.zeros((3, 3)), grad_in_buffer(x), f(x))  # noqa: E731
    else:
        func, right = c, lambda x: (jacobian(x), c(x).copy())
        wrong = lambda x: np.zeros((3, 3))  # noqa: E731
    assert check_derivatives(func, {operator: right}, point).ok
    assert not check_derivatives(func, {operator: wrong}, point).ok


def test_a_function_raising_a_step_out_of_its_domain_is_differenced_inside_it():
    # math.sqrt raises where np.sqrt gives NaN: 1e-4 from the edge, the scaled step
    # (1e-3) steps out of the domain, and the smaller step must be tried as for NaN.
    def f(x):
        return sum(math.sqrt(entry) for entry in x)

    def grad_and_value(x):
        return 0.5 / np.sqrt(x), f(x)

    report = check_derivatives(f, {"grad_and_value": grad_and_value}, [1e-4, 0.5])
    assert report.ok, report
    wrong = check_derivatives(
        f, {"grad_and_value": lambda x: (0.505 / np.sqrt(x), f(x))}, [1e-4, 0.5]
    )
    assert not wrong.ok
    # On the edge, every step out of the domain raises: no reference there.
    with np.errstate(divide="ignore"):  # the gradient there is infinite
        edge = check_derivatives(f, {"grad_and_value": grad_and_value}, [0.0, 0.5])
    assert not edge.ok
    assert "or raises, within a step of this point" in str(edge)


def test_a_function_raising_at_the_point_itself_raises():
    def f(x):
        return sum(math.log(entry) for entry in x)

    with pytest.raises(ValueError, match="math domain error") as raised:
        check_derivatives(f, {"grad_and_value": lambda x: 1 / x}, [-1.0, 2.0])
    assert "raised by func" in raised.value.__notes__


def test_outputs_differenced_from_yours_are_checked_along_a_direction_too():
    # f = |x|²/2 at its mode x = 0, where g = 0. Derivatives of |x|² (twice f's)
    # have g = 2x, also 0 there, so g passes; an H of 2I then matches the
    # differences of that g, and a third derivative of 2 T the differences of
    # an H right at 0 only. Along a direction, differences of f alone tell.
    def f(x):
        return x @ x / 2

    point = np.zeros(3)
    wrong_h = {"hessian_grad_and_value": lambda x: (2 * np.eye(3), 2 * x, f(x))}
    report = check_derivatives(f, wrong_h, point)
    assert [(c.output, c.ok) for c in report.comparisons] == [
        ("H", True), ("g", True), ("v", True), ("vᵀHv", False)
    ]  # fmt: skip

    def cubic(x):  # Σ x³/6: H = diag(x), mtp(M) = diag(M)
        return np.sum(x**3) / 6

    def wrong_mtp(x):  # 2 diag(M) and the H it differences from, right at 0 only
        return (lambda M: 2 * np.diag(M)), np.diag(2 * x), x**2 / 2, cubic(x)

    report = check_derivatives(cubic, {"mtp_hessian_grad_and_value": wrong_mtp}, point)
    assert [c.output for c in report.failures()] == ["vᵀmtp(vvᵀ)"]

    def constraint(x):  # c(x) = (|x|²/2,): J = xᵀ, mhp(M) = M[0]
        return np.array([x @ x / 2])

    def wrong_mhp(x):
        return (lambda M: 2 * M[0]), 2 * x[None, :], constraint(x)

    report = check_derivatives(constraint, {"mhp_jacobian_and_value": wrong_mhp}, point)
    assert [c.output for c in report.failures()] == ["vᵀmhp(uvᵀ)"]
    right = {
        "mtp_hessian_grad_and_value": lambda x: (
            (lambda M: np.diag(M)),
            np.diag(x),
            x**2 / 2,
            cubic(x),
        ),
        "mhp_jacobian_and_value": lambda x: (
            (lambda M: M[0]),
            x[None, :],
            constraint(x),
        ),
    }
    assert check_derivatives(cubic, {k: right[k] for k in list(right)[:1]}, point)
    assert check_derivatives(constraint, dict(list(right.items())[1:]), point)


@pytest.mark.parametrize("several", [False, True], ids=["one point", "two points"])
def test_a_product_not_bound_to_its_point_fails(several):
    # A product reading a buffer that the next call rewrites is right when applied
    # at once, and wrong after a call at another point, as a sampler makes.
    buffer = np.empty(2)

    def f(x):
        return np.sum(np.exp(x))

    def mtp_hessian_grad_and_value(x):
        buffer[:] = np.exp(x)
        return (lambda M: np.diag(M) * buffer), np.diag(np.exp(x)), np.exp(x), f(x)

    points = [[0.1, 0.2], [1.0, -1.0]] if several else [0.1, 0.2]
    report = check_derivatives(
        f, {"mtp_hessian_grad_and_value": mtp_hessian_grad_and_value}, points
    )
    products = [c for c in report.comparisons if c.output == "mtp(M)"]
    assert len(products) == (2 if several else 1)
    assert not any(c.ok for c in products)
    assert all("not bound to its point" in c.note for c in products)
    assert all(c.ok for c in report.comparisons if c.output != "mtp(M)")


def test_a_product_that_changes_itself_when_applied_fails():
    def c(x):
        return np.array([x @ x])

    def vjp_and_value(x):
        jacobian = 2 * x[None, :]

        def vjp(u):
            jacobian[:] *= 2  # each application doubles what the next one reads
            return u @ jacobian / 2

        return vjp, c(x)

    report = check_derivatives(c, {"vjp_and_value": vjp_and_value}, [0.5, -1.0])
    (failure,) = report.failures()
    assert failure.output == "vjp(u)"
    assert "not bound to its point" in failure.note

    def raising_again(x):
        applied = []

        def vjp(u):
            if applied:
                raise RuntimeError("applied twice")
            applied.append(u)
            return u @ (2 * x[None, :])

        return vjp, c(x)

    report = check_derivatives(c, {"vjp_and_value": raising_again}, [0.5, -1.0])
    (failure,) = report.failures()
    assert "it raised RuntimeError('applied twice')" in failure.note


def test_outputs_that_are_not_real_numbers_fail_saying_what_they_are():
    torch = pytest.importorskip("torch")

    def f(x):
        return x @ x / 2

    def recording(x):  # a tensor recording its graph, which NumPy cannot read
        return torch.tensor(x, requires_grad=True) * 1.0

    cases = {
        "grad_and_value": lambda x: (recording(x), f(x)),
        "hessian_grad_and_value": lambda x: (np.eye(2), recording(x), f(x)),
    }
    report = check_derivatives(f, cases, [0.5, -1.0])
    assert [(c.operator, c.output) for c in report.failures()] == [
        ("grad_and_value", "g"), ("hessian_grad_and_value", "g")
    ]  # fmt: skip
    assert all("got Tensor (Can't call numpy()" in c.note for c in report.failures())
    # The H beside such a g is differenced from differences of f, and passes.
    assert report.comparisons[2].output == "H"
    assert report.comparisons[2].ok
    # A number written as a string is not one.
    text = check_derivatives(f, {"grad_and_value": lambda x: (x, "1.0")}, [1.0, 1.0])
    assert text.failures()[0].note == "expected real numbers, got str of dtype <U3"


def test_a_check_along_a_direction_that_cannot_tell_adds_nothing():
    # √x a step from its domain's edge, a large exp, sin(3x) far out: the nested
    # differences of f along v cannot tell (or only loosely), and correct
    # derivatives whose own rows pass still pass.
    def root(x):
        return np.sum(np.sqrt(x))

    def root_derivatives(x):
        return np.diag(-0.25 * x**-1.5), 0.5 / np.sqrt(x), root(x)

    report = check_derivatives(
        root, {"hessian_grad_and_value": root_derivatives}, [1e-3, 1.0]
    )
    assert report.ok, report
    assert report.comparisons[-1].output == "vᵀHv"
    elementwise = {  # φ and its first three derivatives: f = Σ φ(x_i)
        "exp": (np.exp, np.exp, np.exp, np.exp),
        "sin(3x)": (
            lambda x: np.sin(3 * x),
            lambda x: 3 * np.cos(3 * x),
            lambda x: -9 * np.sin(3 * x),
            lambda x: -27 * np.cos(3 * x),
        ),
    }
    points = np.random.default_rng(2).standard_normal((2, 4)) * [[20], [100]]
    for phi, d1, d2, d3 in elementwise.values():

        def f(x, phi=phi):
            return np.sum(phi(x))

        def mtp_hessian_grad_and_value(x, f=f, d1=d1, d2=d2, d3=d3):
            third = d3(x)
            return (lambda M: third * np.diag(M)), np.diag(d2(x)), d1(x), f(x)

        with np.errstate(over="ignore"):
            report = check_derivatives(
                f, {"mtp_hessian_grad_and_value": mtp_hessian_grad_and_value}, points
            )
        along = [c for c in report.comparisons if c.output.startswith("vᵀ")]
        assert len(along) == 4
        assert report.ok, report


@pytest.mark.parametrize("mode", [1e-3, 1e-4])
def test_a_chain_wrong_at_a_mode_near_a_domains_edge_fails(mode):
    # f = Σ (x/a - log x) has its mode at x = a, near its domain's edge x > 0. A g
    # twice too large is 0 there too, and an H twice too large matches its
    # differences; a direction of entries near 1 steps out of the domain, so the
    # check along it is made again along the direction scaled to x.
    def f(x):
        return np.sum(x / mode - np.log(x))

    def derivatives(scale):
        def hessian_grad_and_value(x):
            grad = scale * (1 / mode - 1 / x)
            return np.diag(scale / x**2), grad, f(x)

        return {"hessian_grad_and_value": hessian_grad_and_value}

    point = np.full(3, mode)
    report = check_derivatives(f, derivatives(2.0), point)
    (failure,) = report.failures()
    assert failure.output == "vᵀHv"
    right = check_derivatives(f, derivatives(1.0), [point, [mode, 2 * mode, 1.0]])
    assert right.ok, right
    assert not any(c.note.startswith("not checked") for c in right.comparisons)


@pytest.mark.parametrize("scale", [2.0, -1.0], ids=["twice", "negated"])
def test_a_check_along_a_shorter_direction_holds_the_output_to_its_own_size(scale):
    # x log x at its mode 1e-3, √x at 1e-8 and log(x - 1) at 1.003: the direction
    # is scaled down to stay in the domain, and its contraction is then far below
    # 1, to which the first form held it: every wrong chain passed.
    cases = {
        "entropy": (
            lambda x: np.sum(x * np.log(x) - (np.log(1e-3) + 1) * x),
            lambda x: (np.log(x) - np.log(1e-3), 1 / x, -1 / x**2),
            np.full(3, 1e-3),
        ),
        "root": (
            lambda x: np.sum(x / 1e-4 - 2 * np.sqrt(x)),
            lambda x: (1e4 - x**-0.5, 0.5 * x**-1.5, -0.75 * x**-2.5),
            np.full(3, 1e-8),
        ),
        "shifted edge": (
            lambda x: np.sum(x / 3e-3 - np.log(x - 1)),
            lambda x: (1 / 3e-3 - 1 / (x - 1), (x - 1) ** -2.0, -2 * (x - 1) ** -3.0),
            np.full(3, 1.003),
        ),
    }
    for name, (f, derivatives, point) in cases.items():

        def mtp_hessian_grad_and_value(x, f=f, derivatives=derivatives, s=1.0):
            grad, second, third = derivatives(x)
            product = lambda M: s * third * np.diagonal(M)  # noqa: E731
            return product, s * np.diag(second), s * grad, f(x)

        wrong = functools.partial(mtp_hessian_grad_and_value, s=scale)
        report = check_derivatives(f, {"mtp_hessian_grad_and_value": wrong}, point)
        assert "vᵀHv" in [c.output for c in report.failures()], name
        report = check_derivatives(
            f, {"mtp_hessian_grad_and_value": mtp_hessian_grad_and_value}, point
        )
        assert report.ok, (name, report)


@pytest.mark.parametrize(
    "point", [[-1e-3, -1e-4, -2e-3], [1e-6, 1e-5, 3e-6]], ids=["negative", "tiny"]
)
def test_derivatives_of_a_function_finite_past_a_pole_pass_along_a_direction(point):
    # 1/x is finite beyond its pole, so differences along a direction of entries
    # near 1 span it and agree on a wrong value: a direction scaled down clears it.
    def f(x):
        return np.sum(1 / x)

    def mtp_hessian_grad_and_value(x, s=1.0):
        third = -6 / x**4
        return (
            (lambda M: s * third * np.diagonal(M)),
            np.diag(s * 2 / x**3),
            -s / x**2,
            f(x),
        )

    operator = "mtp_hessian_grad_and_value"
    wrong = functools.partial(mtp_hessian_grad_and_value, s=2.0)
    with np.errstate(divide="ignore"):  # a step may land on the pole
        right = check_derivatives(f, {operator: mtp_hessian_grad_and_value}, point)
        assert right.ok, right
        assert not check_derivatives(f, {operator: wrong}, point).ok


def test_a_failure_along_the_direction_scaled_to_x_is_not_cleared():
    # A wrong H11 beside log's edge: the row cannot tell along v, fails along v
    # scaled to x, and along v scaled by 10⁻², where H00 = 10⁶ swamps 1 % of the
    # terms, passed, which cleared that failure.
    def f(x):
        return x[0] / 1e-3 - np.log(x[0]) + (x[1] - 1) ** 2 / 2

    def hessian_grad_and_value(x, wrong=10.0):
        grad = np.array([1 / 1e-3 - 1 / x[0], wrong * (x[1] - 1)])
        return np.diag([1 / x[0] ** 2, wrong]), grad, f(x)

    report = check_derivatives(
        f, {"hessian_grad_and_value": hessian_grad_and_value}, [1e-3, 1.0]
    )
    assert [c.output for c in report.failures()] == ["vᵀHv"]
    right = functools.partial(hessian_grad_and_value, wrong=1.0)
    assert check_derivatives(f, {"hessian_grad_and_value": right}, [1e-3, 1.0]).ok


def test_a_direction_that_underflows_or_values_that_do_not_change_tell_nothing():
    # At x = (0, 1e-200) the shortest direction underflows to 0, so the
    # contraction and its reference are 0 whatever H is: a wrong H passed.
    def f(x):
        return (x[0] ** 2 + x[1] ** 2) / 2

    def wrong(x):
        return np.diag([10.0, 1.0]), np.array([10 * x[0], x[1]]), f(x)

    report = check_derivatives(f, {"hessian_grad_and_value": wrong}, [0.0, 1e-200])
    assert [c.output for c in report.failures()] == ["vᵀHv"]

    # A float32 f at float64 points: along a short direction its values do not
    # change at all, and their differences, exactly 0, failed a correct H.
    def rounded(x):
        return float(np.float32(1e-3) * np.sum(x.astype(np.float32) ** 2))

    def right(x):
        return 2e-3 * np.eye(x.size), 2e-3 * x, rounded(x)

    point = np.random.default_rng(1).standard_normal(4)
    report = check_derivatives(rounded, {"hessian_grad_and_value": right}, point)
    assert report.ok, report


def test_a_direction_too_short_to_move_a_coordinate_clears_no_failure():
    # At (10, 1e-12), v scaled by 1e-14 leaves x0 = 10 as it is: differences of f
    # along it see x1 alone, your contraction both, and a wrong H00 that is 0 passed
    # there, clearing its failure along v (helper-61). Likewise for an mhp.
    point = np.array([10.0, 1e-12])

    def f(x):
        return (x[0] - 10) ** 2 / 2 + x[1] ** 2 / 2

    def forgotten(x):  # the x0 term left out: right at the mode x0 = 10 alone
        return np.diag([0.0, 1.0]), np.array([0.0, x[1]]), f(x)

    report = check_derivatives(f, {"hessian_grad_and_value": forgotten}, point)
    assert [c.output for c in report.failures()] == ["vᵀHv"]

    def constraint(x):
        return np.array([f(x), x[1] ** 2 / 2])

    def mhp_jacobian_and_value(x):
        jacobian = np.array([[0.0, x[1]], [0.0, x[1]]])
        return (lambda M: np.array([0.0, M[0, 1] + M[1, 1]])), jacobian, constraint(x)

    report = check_derivatives(
        constraint, {"mhp_jacobian_and_value": mhp_jacobian_and_value}, point
    )
    assert [c.output for c in report.failures()] == ["vᵀmhp(uvᵀ)"]


def test_a_coordinate_a_short_direction_would_not_move_is_left_out_of_it():
    # x0 = 1e10 beside log's edge at x1 = 1e-3: no shorter direction moves x0, and
    # dropping each of them left a wrong mhp unchecked (helper-62). With x0 left out
    # of them, the direction scaled to x checks the rest.
    point = np.array([1e10, 1e-3, 0.4])
    k = 1 / point

    def c(x):  # row 0 of J is 0 at the point
        return np.array([np.sum(np.log(x) - k * x), x[0] * x[1]])

    def mhp_jacobian_and_value(x, s=1.0):
        jacobian = np.vstack([s * (1 / x - k), [x[1], x[0], 0.0]])

        def mhp(M):
            return s * M[0] * (-1 / x**2) + np.array([M[1, 1], M[1, 0], 0.0])

        return mhp, jacobian, c(x)

    operator = "mhp_jacobian_and_value"
    wrong = functools.partial(mhp_jacobian_and_value, s=2.0)
    with np.errstate(invalid="ignore"):  # steps past log's edge
        report = check_derivatives(c, {operator: wrong}, point)
        assert [row.output for row in report.failures()] == ["vᵀmhp(uvᵀ)"]
        right = check_derivatives(c, {operator: mhp_jacobian_and_value}, point)
    assert right.ok, right


def test_derivatives_finite_past_the_edge_of_the_domain_are_not_differenced_there():
    # g = -1/(1 - x) of log(1 - x) is finite beyond x = 1, where f is not: H,
    # differenced from it a step across the edge, failed a correct H confidently.
    # Both steps tried cross the edge; smaller ones, within it, check H.
    def f(x):
        return np.log(1 - x[0]) - np.log(x[1])

    def hessian_grad_and_value(x, factor=1.0):
        grad = np.array([-1 / (1 - x[0]), -1 / x[1]])
        hessian = np.diag([-factor / (1 - x[0]) ** 2, 1 / x[1] ** 2])
        return hessian, grad, f(x)

    for factor, right in ((1.0, True), (1.02, False)):
        derivative = functools.partial(hessian_grad_and_value, factor=factor)
        with np.errstate(divide="ignore", invalid="ignore"):  # past the edge
            report = check_derivatives(
                f, {"hessian_grad_and_value": derivative}, [0.9999, 1e-5]
            )
        (hessian,) = [c for c in report.comparisons if c.output == "H"]
        assert hessian.ok is right, hessian
        assert not hessian.note, hessian


def test_a_hessian_or_mhp_wrong_by_an_antisymmetric_part_fails():
    # f = xᵀWx/2 with W not symmetric: g = Wx and H = W, a classic slip (the
    # truth: (W + Wᵀ)/2), are right at 0 but for H's antisymmetric part, which
    # no direction shows; nor would a J of Wx and an mhp of M[0] @ W.
    W = np.array([[1.0, 4.0], [0.0, 1.0]])

    def f(x):
        return x @ W @ x / 2

    report = check_derivatives(
        f, {"hessian_grad_and_value": lambda x: (W, W @ x, f(x))}, np.zeros(2)
    )
    (failure,) = report.failures()
    assert failure.output == "vᵀHv"
    assert "H is not symmetric" in failure.note

    def c(x):
        return np.array([f(x)])

    def mhp_jacobian_and_value(x):
        return (lambda M: M[0] @ W), (W @ x)[None, :], c(x)

    report = check_derivatives(
        c, {"mhp_jacobian_and_value": mhp_jacobian_and_value}, np.zeros(2)
    )
    (failure,) = report.failures()
    assert failure.output == "vᵀmhp(uvᵀ)"
    assert "not symmetric, as the derivatives it contracts are" in failure.note
    S = (W + W.T) / 2
    right = check_derivatives(
        c,
        {
            "mhp_jacobian_and_value": lambda x: (
                (lambda M: M[0] @ S),
                (S @ x)[None, :],
                c(x),
            )
        },
        np.zeros(2),
    )
    assert right.ok, right


def test_outputs_in_buffers_are_checked_along_a_direction_as_returned():
    # H and g in buffers the next call rewrites, with a product bound to its point:
    # the check along v reads H before the check of the product calls again.
    hessian, grad = np.empty((3, 3)), np.empty(3)

    def f(x):
        return np.sum(x**4) / 12

    def mtp_hessian_grad_and_value(x):
        hessian[...] = np.diag(x**2)
        grad[...] = x**3 / 3
        point = x.copy()
        return (lambda M: 2 * point * np.diag(M)), hessian, grad, f(x)

    report = check_derivatives(
        f, {"mtp_hessian_grad_and_value": mtp_hessian_grad_and_value}, [0.5, -1, 2]
    )
    assert report.ok, report


@pytest.mark.parametrize("bound", [True, False])
def test_a_product_writing_each_result_into_one_array_is_checked_as_it_was(bound):
    # Fast code writes each result into an array of its own: the first result, kept
    # to compare with the second, must be a copy, or an unbound product passes.
    third, out = np.empty(3), np.empty(3)

    def f(x):
        return np.sum(np.sin(x))

    def mtp_hessian_grad_and_value(x):
        third[:] = -np.cos(x)  # rewritten at each call
        mine = third.copy() if bound else third

        def mtp(M):
            return np.multiply(mine, np.diagonal(M), out=out)

        return mtp, np.diag(-np.sin(x)), np.cos(x), f(x)

    points = [[0.3, -0.4, 1.1], [2.0, 0.5, -1.5]]
    report = check_derivatives(
        f, {"mtp_hessian_grad_and_value": mtp_hessian_grad_and_value}, points
    )
    assert report.ok == bound, report
    if not bound:
        assert {c.output for c in report.failures()} == {"mtp(M)"}
        assert all("not bound to its point" in c.note for c in report.failures())


def test_real_numbers_held_as_objects_are_checked_as_numbers():
    # SymPy's Float, Fraction and Decimal come back in an array of dtype object.
    from fractions import Fraction

    def f(x):
        return x @ x / 2

    def grad_and_value(x):
        exact = [Fraction(entry) for entry in x]  # x exactly, as fractions
        return np.array(exact, dtype=object), f(x)

    assert check_derivatives(f, {"grad_and_value": grad_and_value}, [0.5, -1.0]).ok
    wrong = np.array([Fraction(1, 3), None], dtype=object)
    report = check_derivatives(f, {"grad_and_value": lambda x: wrong}, [0.5, -1.0])
    assert (
        report.failures()[0].note
        == "expected real numbers, got ndarray of dtype object"
    )


@pytest.mark.parametrize("soft", [3.0, 0.0], ids=["thrice", "forgotten"])
@pytest.mark.parametrize(
    "operator", ["hessian_grad_and_value", "mtp_hessian_grad_and_value"]
)
def test_a_wrong_curvature_beside_a_far_larger_one_fails_along_any_direction(
    operator, soft
):
    # f = 500 x0² + (x1 - 1)²/2 at its mode, with H11 = 3 (or 0) where it is 1 and g
    # to match: g is 0 there either way, and along a random v the error 2 v1² hid
    # within 1 % of the terms 1000 v0², for most seeds. Along v's signs over
    # √|H_ii| each coordinate weighs alike.
    def f(x):
        return 500 * x[0] ** 2 + (x[1] - 1) ** 2 / 2

    def derivatives(curvature):
        def hessian_grad_and_value(x):
            grad = np.array([1e3 * x[0], curvature * (x[1] - 1)])
            return np.diag([1e3, curvature]), grad, f(x)

        if operator == "hessian_grad_and_value":
            return {operator: hessian_grad_and_value}

        def mtp_hessian_grad_and_value(x):
            return (lambda m: np.zeros(2), *hessian_grad_and_value(x))  # f: quadratic

        return {operator: mtp_hessian_grad_and_value}

    point = np.array([0.0, 1.0])
    for seed in range(8):
        report = check_derivatives(f, derivatives(soft), point, seed=seed)
        assert [c.output for c in report.failures()] == ["vᵀHv"], (seed, report)
        right = check_derivatives(f, derivatives(1.0), point, seed=seed)
        assert right.ok, (seed, right)


def test_a_failure_along_the_even_direction_after_a_skip_stands_only_confirmed():
    # From a random search (helper-64), reduced: a function of no curvature at the
    # point in two coordinates (x⁴, and cos(wx) - cos(2wx)/4, at 0) beside
    # curvatures up to 5e5, with an offset of 6e6 added and taken away. Along the
    # direction that weighs the coordinates alike, the differences could not tell
    # at the longer scales and were off beyond their bound at the next, where a
    # correct H failed; shorter, they could not tell either.
    k = np.array([7251.24836323976, 82344.7076240164, 47553283.70128862])
    k = np.append(k, [-7.398531944410812e-09, -0.1692332923917144, -3368.1729178158876])
    a, w = 1.1724081191469815, 82.94968622948551
    offset = 5728342.831375798

    def parts(x):
        u, c, s = x[0] - a, np.cos(w * x[4]), np.sin(w * x[4])
        c2, s2 = np.cos(2 * w * x[4]), np.sin(2 * w * x[4])
        cosines, sines = np.cos(x[[1, 3]]), np.sin(x[[1, 3]])
        values = [np.log(u), cosines[0], x[2] ** 4, cosines[1], c - c2 / 4, x[5] ** 2]
        slopes = [1 / u, -sines[0], 4 * x[2] ** 3, -sines[1], w * (s2 / 2 - s)]
        curvatures = [-1 / u**2, -cosines[0], 12 * x[2] ** 2, -cosines[1]]
        curvatures += [w**2 * (c2 - c), 2.0]
        return np.array(values), np.array([*slopes, 2 * x[5]]), np.array(curvatures)

    def f(x):
        return (offset + k @ parts(x)[0]) - offset

    def hessian_grad_and_value(x):
        _, slopes, curvatures = parts(x)
        return np.diag(k * curvatures), k * slopes, f(x)

    x = np.array([1.2938992359280412, -1.181828854170248, 0.0, -0.018604731248487032])
    x = np.append(x, [0.0, -0.006891737476389478])
    for seed in (1, 4, 6):
        report = check_derivatives(
            f, {"hessian_grad_and_value": hessian_grad_and_value}, x, seed=seed
        )
        assert report.ok, (seed, report)


def test_a_wrong_curvature_beside_a_domains_edge_and_a_far_larger_one_fails():
    # f = 1e9 (x0 - 2)² + x1/a - log x1 at its mode (2, a), a = 1e-3, H11 three times
    # too large and g to match (helper-64): the direction that weighs the
    # coordinates alike steps out of the domain, and is tried again shorter.
    a = 1e-3

    def f(x):
        return 1e9 * (x[0] - 2) ** 2 + x[1] / a - np.log(x[1])

    def derivatives(scale):
        def hessian_grad_and_value(x):
            grad = np.array([2e9 * (x[0] - 2), scale * (1 / a - 1 / x[1])])
            return np.diag([2e9, scale / x[1] ** 2]), grad, f(x)

        return {"hessian_grad_and_value": hessian_grad_and_value}

    point = np.array([2.0, a])
    for seed in range(4):
        report = check_derivatives(f, derivatives(3.0), point, seed=seed)
        assert [c.output for c in report.failures()] == ["vᵀHv"], (seed, report)
        assert check_derivatives(f, derivatives(1.0), point, seed=seed).ok


@pytest.mark.parametrize(
    ("term", "point"),
    [
        ("cube of |x|", 0.0),  # C², its third derivative jumps at the point
        ("huber", 0.9995),  # C¹, its kink at 1, 5e-4 away
        ("pseudo-huber", 3e-5),  # smooth, its curvature changing over 1e-5
    ],
)
def test_a_curvature_that_changes_a_step_away_beside_a_far_larger_one_passes(
    term, point
):
    # Correct derivatives (helper-64, helper-65): the direction that weighs the
    # coordinates alike weighs the second far above the first, whose differences
    # then span the change; they failed a correct H at every seed. A shorter
    # direction passes, or, where f's rounding swamps it, does not confirm it.
    def second(t):
        if term == "pseudo-huber":  # helper-65
            root = np.sqrt(1 + (t / 1e-5) ** 2)
            return 1e-10 * (root - 1), t / root, 1 / root**3
        if term == "huber":
            inside = abs(t) <= 1
            return (t * t / 2, t, 1.0) if inside else (abs(t) - 0.5, np.sign(t), 0.0)
        return abs(t) ** 3, 3 * t * abs(t), 6 * abs(t)

    def f(x):
        return 5e3 * x[0] ** 2 + second(x[1])[0]

    def hessian_grad_and_value(x):
        _, slope, curvature = second(x[1])
        return np.diag([1e4, curvature]), np.array([1e4 * x[0], slope]), f(x)

    derivatives = {"hessian_grad_and_value": hessian_grad_and_value}
    for seed in range(6):
        report = check_derivatives(f, derivatives, [0.3, point], seed=seed)
        assert report.ok, (seed, report)


def test_a_float32_function_that_varies_faster_than_its_steps_is_not_weighed_up():
    # Correct derivatives (helper-64) of 5e7 x0² + sin(700 x1)/10 in float32: the
    # direction that weighs the coordinates alike weighs x1 up, where float32's
    # steps span whole periods and the differences miss the sine within their
    # bound. In float32 that direction is not tried.
    def f(x):
        return np.float32(5e7 * x[0] ** 2 + 0.1 * np.sin(700 * x[1]))

    def hessian_grad_and_value(x):
        x = np.asarray(x, float)
        hessian = np.diag([1e8, -0.1 * 700**2 * np.sin(700 * x[1])])
        grad = np.array([1e8 * x[0], 70 * np.cos(700 * x[1])])
        return hessian.astype(np.float32), grad.astype(np.float32), f(x)

    derivatives = {"hessian_grad_and_value": hessian_grad_and_value}
    point = np.array([1e-3, 0.007], np.float32)
    for seed in range(6):
        report = check_derivatives(f, derivatives, point, seed=seed)
        assert not report.failures() or all(c.inconclusive for c in report.failures())


def test_a_pole_a_step_away_beside_a_far_larger_curvature_passes():
    # Correct derivatives (helper-65, from a random family): c/(x0 - a) 1.4e-4 from
    # its pole beside 1.08e9 cos x1. Along the direction that weighs the coordinates
    # alike, the differences span the pole; the shorter ones cannot tell, as f's
    # rounding swamps them, so its failure is not confirmed.
    c, a, k = 3.743171042002958e-07, -0.0873802104928667, 1.0809113629729924e9

    def f(x):
        return c / (x[0] - a) - k * np.cos(x[1])

    def hessian_grad_and_value(x):
        u = x[0] - a
        hessian = np.diag([2 * c / u**3, k * np.cos(x[1])])
        return hessian, np.array([-c / u**2, k * np.sin(x[1])]), f(x)

    derivatives = {"hessian_grad_and_value": hessian_grad_and_value}
    point = [-0.08752280040957344, -0.004197575769956249]
    for seed in range(4):
        assert check_derivatives(f, derivatives, point, seed=seed).ok, seed


@pytest.mark.parametrize("x0", [0.63, 1.63])
def test_a_failure_along_the_even_direction_is_confirmed_only_far_shorter(x0):
    # Correct derivatives (helper-66): 5e3 (x0 - m)² beside a pseudo-Huber of width
    # 1e-4 in x1. The even direction's differences span its change and fail; at
    # x0 = 0.63 the next direction, 0.63 times as long, failed too, and confirmed
    # it. A direction a hundredth as long passes.
    mode = x0 - 0.13

    def f(x):
        return 5e3 * (x[0] - mode) ** 2 + 1e-8 * (
            np.sqrt(1 + (x[1] - 2) ** 2 / 1e-8) - 1
        )

    def hessian_grad_and_value(x):
        root = np.sqrt(1 + (x[1] - 2) ** 2 / 1e-8)
        grad = np.array([1e4 * (x[0] - mode), (x[1] - 2) / root])
        return np.diag([1e4, 1 / root**3]), grad, f(x)

    derivatives = {"hessian_grad_and_value": hessian_grad_and_value}
    for seed in range(4):
        report = check_derivatives(f, derivatives, [x0, 2 + 5e-5], seed=seed)
        assert report.ok, (seed, report)


def test_a_function_infinite_at_the_point_fails_without_a_warning_of_numpys():
    # helper-66: f and your v both infinite at a finite point; the comparison's own
    # inf - inf warned "invalid value encountered in subtract".
    def f(x):
        return float(np.inf) if x[0] > 1e10 else float(x @ x)

    def hessian_grad_and_value(x):
        return 2 * np.eye(2), 2 * x, f(x)

    derivatives = {"hessian_grad_and_value": hessian_grad_and_value}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = check_derivatives(f, derivatives, [1e11, 0.3])
    assert [c.output for c in report.failures()] == ["H", "g", "v"]
    assert all("not finite" in c.note for c in report.failures())


@pytest.mark.parametrize("case", [SMOOTH, SEVERAL_OUTPUTS], ids=str)
def test_func_and_yours_are_evaluated_once_at_each_point_a_check_steps_to(case):
    # The differences of func, the checks along a direction and the checks of where
    # func is defined step to many of the same points, and each operator at a point
    # to all of them: for a function costly to evaluate, each is evaluated once.
    # func also writes into its argument, as it may: the point is the one passed.
    seen: dict[bytes, int] = {}

    def func(x):
        seen[x.tobytes()] = seen.get(x.tobytes(), 0) + 1
        value = case.value(x)
        x[:] = np.nan
        return value

    if case is SMOOTH:
        right = scalar_derivatives(case)

        def wrong_hessian(x):
            return 2 * case.hessian(x), case.grad(x), case.value(x)

        wrong = {"hessian_grad_and_value": wrong_hessian}
    else:
        right = vector_derivatives(case)
        wrong = {"jacobian_and_value": lambda x: (-case.jacobian(x), case.value(x))}
    points = np.stack([case.point, case.point + 0.25])
    # Your functions too, once at each point but those checked, where they are
    # called for the outputs compared (and again, to see a product stays bound).
    called: dict[tuple[str, bytes], int] = {}

    def counted(name, derivative):
        def counting(x):
            called[name, x.tobytes()] = called.get((name, x.tobytes()), 0) + 1
            return derivative(x)

        return counting

    right = {name: counted(name, derivative) for name, derivative in right.items()}
    assert check_derivatives(func, right, points).ok
    assert max(seen.values()) == 1
    checked = {point.tobytes() for point in points}
    stepped = [count for (_, y), count in called.items() if y not in checked]
    assert len(stepped) > 2 * case.n
    assert max(stepped) == 1
    assert len(seen) > 2 * case.n  # differences at several steps about each point
    seen.clear()
    assert not check_derivatives(func, wrong, points).ok
    assert max(seen.values()) == 1


def _cosh_hessian(x):
    """H, g and the value of Σ cosh x: right for the sum, which f forgot."""
    return np.diag(np.cosh(x)), np.sinh(x), np.sum(np.cosh(x))


@pytest.mark.parametrize("alone", [False, True], ids=["tuple", "alone"])
@pytest.mark.parametrize(
    ("operator", "func", "said"),
    [
        ("hessian_grad_and_value", np.cosh, "needs func to return a scalar"),
        ("mtp_hessian_grad_and_value", np.cosh, "needs func to return a scalar"),
        ("grad_and_value", lambda x: np.sum(np.cosh(x), keepdims=True), "shape (1,)"),
        ("jacobian_and_value", lambda x: np.sum(np.cosh(x)), "1-D array of shape"),
        ("mhp_jacobian_and_value", lambda x: np.sum(np.cosh(x)), "1-D array of shape"),
    ],
    ids=["vector-H", "vector-mtp", "size-1-g", "scalar-J", "scalar-mhp"],
)
def test_a_func_of_the_wrong_kind_is_refused_saying_what_it_returned(
    operator, func, said, alone
):
    # A log density that forgot its sum raised NumPy's "truth value ... ambiguous"
    # from within the check, or had the user's mtp applied to an M of shape (m, n,
    # n); one of shape (1,) failed a right g and v. The derivatives are of Σ cosh x.
    def mtp(x):
        return lambda M: np.sinh(x) * np.diag(M)

    outputs = {
        "grad_and_value": lambda x: _cosh_hessian(x)[1:],
        "hessian_grad_and_value": _cosh_hessian,
        "mtp_hessian_grad_and_value": lambda x: (mtp(x), *_cosh_hessian(x)),
        "jacobian_and_value": lambda x: (np.sinh(x)[None], np.sum(np.cosh(x))),
        "mhp_jacobian_and_value": lambda x: (
            lambda M: (M @ np.diag(np.cosh(x)))[0],
            np.sinh(x)[None],
            func(x),
        ),
    }
    derivative = outputs[operator]
    if alone:
        derivative = lambda x: outputs[operator](x)[0]  # noqa: E731
    with pytest.raises(TypeError, match=re.escape(said)) as raised:
        check_derivatives(func, {operator: derivative}, np.array([0.1, 0.2, 0.3]))
    assert operator in str(raised.value)
    # vjp_and_value takes values of any shape: the same functions are checked.
    right = {"vjp_and_value": lambda x: (lambda u: u * np.sinh(x), func(x))}
    assert check_derivatives(func, right, np.array([0.1, 0.2, 0.3])).ok


@pytest.mark.parametrize(
    ("returned", "said"),
    [
        (lambda x: np.sum(np.cosh(x)) + 1j * np.sum(x**2), "complex128"),
        (lambda x: None, "None."),
        (lambda x: "1.0", "str"),
        (lambda x: np.sum(np.cosh(x)) > 1, "booleans"),
        (lambda x: [x[0], [x[1], x[2]]], "list"),  # NumPy's ValueError, ragged
    ],
    ids=["complex", "None", "str", "bool", "ragged"],
)
def test_a_func_that_returns_no_real_numbers_is_refused(returned, said):
    # A complex f passed: its imaginary part was dropped, with a ComplexWarning; a
    # boolean one passed zero derivatives, which the operators refuse.
    derivative = {"grad_and_value": lambda x: _cosh_hessian(x)[1:]}
    points = np.array([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]])
    match = rf"func must return real numbers; at point 0 it returned .*{said}"
    with pytest.raises(TypeError, match=match):
        check_derivatives(returned, derivative, points)

    # At the second point alone, named as such.
    def at_second(x):
        return np.sum(np.cosh(x)) if x[0] < 0.25 else returned(x)

    match = match.replace("point 0", "point 1")
    with pytest.raises(TypeError, match=match):
        check_derivatives(at_second, derivative, points)


@pytest.mark.parametrize("beyond", ["complex", "None"])
def test_a_func_of_no_real_numbers_a_step_beyond_its_domain_is_as_undefined(beyond):
    # np.emath.sqrt is complex beyond 0, and some code returns None out of its
    # domain: a step there is out of it, as NaN is, so that smaller steps are
    # tried. Raising there failed a right gradient the user had no say in.
    def func(x):
        if beyond == "None" and x[0] < 0:
            return None
        return np.emath.sqrt(x[0]) + x[1] ** 2

    def grad(x, factor=1.0):
        return np.array([factor * 0.5 / np.sqrt(x[0]), 2 * x[1]]), func(x)

    point = np.array([1e-4, 0.3])  # a step of 1e-3 goes past 0
    assert check_derivatives(func, {"grad_and_value": grad}, point).ok
    wrong = functools.partial(grad, factor=1.02)
    assert not check_derivatives(func, {"grad_and_value": wrong}, point).ok


def test_a_func_of_bfloat16_is_refused_saying_how_to_check_it():
    # A real floating type, of NumPy kind "V" (ml_dtypes', as JAX returns), but
    # rounded to 8 bits: its differences, taken as float32's, failed a right
    # gradient, where the error said it was no real numbers.
    ml_dtypes = pytest.importorskip("ml_dtypes")

    def func(x):
        return np.asarray(np.sum(np.sin(x)), dtype=ml_dtypes.bfloat16)

    def grad(x):
        return np.cos(x), func(x)

    with pytest.raises(TypeError, match=r"bfloat16 at point 0, too coarse.*float32"):
        check_derivatives(func, {"grad_and_value": grad}, [0.5, -0.25])


def test_command_line_refuses_a_func_of_the_wrong_kind(tmp_path, capsys):
    model = tmp_path / "forgot.py"
    model.write_text(
        "import numpy as np\n"
        "def f(x): return np.cosh(x)\n"
        "def hessian(x): return np.diag(np.cosh(x)), np.sinh(x), np.sum(np.cosh(x))\n"
    )
    hessian = f"hessian_grad_and_value={model}:hessian"
    status = run_check(f"{model}:f", "--derivative", hessian, "--dim", "3")
    err = capsys.readouterr().err
    assert status == 2
    assert "TypeError: hessian_grad_and_value needs func to return a scalar" in err
    assert "ambiguous" not in err


def test_values_kept_for_a_check_are_bounded_with_their_keys_counted():
    # 1e6 points of a scalar value counted 8 bytes each, 7.6 MB, where they took
    # 437 MB: each point is counted with its key's room besides its values.
    from diffops import checker

    calls = []

    def compute(y):
        calls.append(1)
        return np.array(np.sum(y))

    remembered = checker._Remembered(compute, limit=100 * 1024)
    x = np.zeros(10)
    for i in range(1000):
        x[0] = i
        remembered(x)
    kept = len(remembered.kept)
    assert 0 < kept <= 100 * 1024 // 512
    calls.clear()
    for i in range(1000):  # those kept are not computed again; the rest are
        x[0] = i
        assert remembered(x) == i
    assert len(calls) == 1000 - kept


@pytest.mark.parametrize("beyond", ["nan", "complex", "None"])
@pytest.mark.parametrize("edge", [0.5, 3.0, -2.0])
def test_a_derivative_beside_an_edge_nearer_than_every_step_is_checked(edge, beyond):
    # log(x₀ - a) at x₀ = a + 3e-4: the scaled step and the one scaled down by |x₀|
    # both crossed the edge, and the NaN there was taken as the reference: a right
    # gradient and Hessian failed, "the reference is not finite". Smaller steps are
    # tried, from the first within the domain.
    def func(x):
        t = x[0] - edge
        if t > 0 or beyond == "complex":
            return np.emath.log(t) + x[1] ** 2
        return np.nan if beyond == "nan" else None

    def hessian(x, factor=1.0):
        t = x[0] - edge
        g = np.array([factor / t, 2 * x[1]])
        return np.diag([-factor / t**2, 2.0]), g, func(x)

    point = np.array([edge + 3e-4, 0.3])
    right = {
        "grad_and_value": lambda x: hessian(x)[1:],
        "hessian_grad_and_value": hessian,
    }
    assert check_derivatives(func, right, point).ok
    wrong = {
        "grad_and_value": lambda x: hessian(x, factor=1.02)[1:],
        "hessian_grad_and_value": functools.partial(hessian, factor=1.02),
    }
    for name, derivative in wrong.items():
        report = check_derivatives(func, {name: derivative}, point)
        assert not report.ok
        assert all(failure.output in ("H", "g") for failure in report.failures())
