"""Bad input gets a standard exception whose message names the argument,
what was expected and what was given; NaN and inf propagate."""

from __future__ import annotations

import pickle
import re

import numpy as np
import pytest
from functions import METRIC, MISTAKES, QUARTIC, SEVERAL_OUTPUTS, TORUS, render
from helpers import derivative, installed

import diffops
from diffops import DIFF_OPS, autodiff_fallback
from diffops.namespaces import array_namespace
from diffops.operators import OPERATORS, SCALAR_OPERATORS


@pytest.mark.parametrize("operator", SCALAR_OPERATORS)
def test_vector_function_given_to_scalar_operator(backend, operator):
    func = render(SEVERAL_OUTPUTS, backend)
    with pytest.raises(TypeError, match=rf"{operator} needs func to return a scalar.*"
                       r"shape \(4,\).*use vjp_and_value, jacobian_and_value"
                       ):  # fmt: skip
        derivative(backend, operator, func)(SEVERAL_OUTPUTS.point)


@pytest.mark.parametrize(
    ("case", "told"),
    [
        (QUARTIC, r"a scalar.*use grad_and_value"),
        (METRIC, r"shape \(2, 2\).*vjp_and_value takes values of any shape"),
    ],
    ids=str,
)
@pytest.mark.parametrize("operator", ["jacobian_and_value", "mhp_jacobian_and_value"])
def test_function_not_of_vectors_given_to_jacobian_operator(
    backend, operator, case, told
):
    """A scalar or a matrix: vjp_and_value takes either, the Jacobians neither."""
    func = render(case, backend)
    with pytest.raises(
        TypeError, match=rf"{operator} needs func to return a 1-D array.*{told}"
    ):
        derivative(backend, operator, func)(case.point)


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


@symnum_only
@pytest.mark.parametrize("returned", ["list", "constants"])
@pytest.mark.parametrize("operator", ["grad_and_value", "jacobian_and_value"])
def test_symnum_refuses_what_is_not_an_expression_of_x(backend, operator, returned):
    import symnum
    import symnum.numpy as snp

    def c(x):
        return [x[0] ** 2, x[1]] if returned == "list" else snp.array([1.0, 2.0])

    kind = "list" if returned == "list" else "ndarray"
    with pytest.raises(TypeError, match=rf"{operator} needs func to return an "
                       rf"expression of x .*; it returned {kind}\."):  # fmt: skip
        derivative(backend, operator, symnum.numpify(2)(c))


# Framework errors in diffops' words.

# The mistakes each backend cannot differentiate, and what the message advises.
EXPLAINED = [
    ("jax", "control flow", r"Python control flow .* jnp.where or jax.lax.cond, or "
     r"use the backend 'jax_nojit'"),
    ("jax", "numpy", r"calls a NumPy function .* jax.numpy"),
    ("jax_nojit", "numpy", r"calls a NumPy function .* jax.numpy"),
    ("jax", "in place", r"assigns into an array in place .* x.at\[i\].set\(v\)"),
    ("jax_nojit", "in place", r"assigns into an array in place .* x.at\[i\].set\(v\)"),
    ("torch", "numpy", r"calls a NumPy function on x .* torch operations"),
    ("autograd", "in place", r"assigns into an array in place .* anp.stack"),
]  # fmt: skip


@pytest.mark.parametrize(("backend", "mistake", "advice"), EXPLAINED)
@pytest.mark.parametrize("operator", ["grad_and_value", "hessian_grad_and_value"])
def test_a_function_the_framework_cannot_differentiate_is_explained(
    backend, mistake, advice, operator
):
    if not diffops.get_backend(backend).available:
        pytest.skip(f"{backend} is not installed")
    func = MISTAKES[mistake](array_namespace(backend))
    function = derivative(backend, operator, func)
    with pytest.raises(TypeError) as raised:
        function(np.array([1.0, 2.0]))
    message = str(raised.value)
    name = func.__code__
    assert message.startswith(
        f"{operator} with the {backend} backend cannot differentiate "
        f"{func.__qualname__} ({name.co_filename}, line {name.co_firstlineno}): "
    )
    assert re.search(advice, message), message
    assert raised.value.__cause__ is not None  # the framework's own, chained
    if (backend, mistake) == ("jax", "control flow"):  # JAX names what it traced
        assert f"tracing the function {func.__name__} at" in str(raised.value.__cause__)


@pytest.mark.parametrize("operator", tuple(OPERATORS))
def test_a_torch_function_changing_a_tensor_it_used_in_place_is_explained(operator):
    """Its own mistake: at the call, not blamed on data changed after a product.

    vjp_and_value's call runs no backward pass, so its product raises, and then
    either may be the cause.
    """
    torch = pytest.importorskip("torch")

    def c(x):
        y = torch.sin(x)
        y.mul_(y)  # sin's backward needs y as it was
        return y if OPERATORS[operator].applies_to == "vector" else torch.sum(y)

    function = derivative("torch", operator, c)

    def called() -> None:
        outputs = function(np.array([0.3, -0.7, 1.1]))
        if operator == "vjp_and_value":
            outputs[0](np.ones(3))

    with pytest.raises(TypeError) as raised:
        called()
    message = str(raised.value)
    assert re.search(r"changes a tensor in place after using it .*y = y \* y", message)
    blamed = "after the product was made" in message
    assert blamed == (operator == "vjp_and_value"), message
    assert "modified by an inplace operation" in str(raised.value.__cause__)


def test_jaxs_own_error_is_still_caught_as_with_jax_used_directly():
    # As the seed API's users wrote: catch JAX's tracing error, fall back to
    # jax_nojit. The explanation is an instance of JAX's class, and pickles so.
    jax = pytest.importorskip("jax")
    func = MISTAKES["control flow"](array_namespace("jax"))
    x = np.array([1.0, 2.0])
    try:
        derivative("jax", "grad_and_value", func)(x)
    except jax.errors.ConcretizationTypeError as error:  # TracerBoolConversionError
        caught = error
    else:
        pytest.fail("no error")
    assert isinstance(caught, jax.errors.TracerBoolConversionError)
    assert isinstance(caught, TypeError)
    assert str(caught).startswith("grad_and_value with the jax backend cannot")
    assert isinstance(caught.__cause__, jax.errors.TracerBoolConversionError)
    again = pickle.loads(pickle.dumps(caught))  # as a process pool sends it back
    assert isinstance(again, jax.errors.TracerBoolConversionError)
    assert str(again) == str(caught)
    grad, _ = derivative("jax_nojit", "grad_and_value", func)(x)
    np.testing.assert_allclose(grad, [2.0, 4.0], rtol=1e-12)


def test_a_boolean_mask_is_explained_as_jaxs_index_error_and_a_type_error():
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    def masked(x):
        return jnp.sum(x[x > 1.5] ** 2)

    with pytest.raises(jax.errors.NonConcreteBooleanIndexError) as raised:
        derivative("jax", "grad_and_value", masked)(np.array([1.0, 2.0]))
    for caught in (raised.value, pickle.loads(pickle.dumps(raised.value))):
        assert isinstance(caught, IndexError)
        assert isinstance(caught, TypeError)  # as every explained error is
        assert "boolean mask" in str(caught)


@pytest.mark.parametrize(
    ("backend", "mistake"),
    [("jax_nojit", "control flow"), ("torch", "control flow"), ("autograd", "numpy")],
)
def test_what_a_framework_can_differentiate_is_not_refused(backend, mistake):
    if not diffops.get_backend(backend).available:
        pytest.skip(f"{backend} is not installed")
    func = MISTAKES[mistake](array_namespace(backend))
    grad, _ = derivative(backend, "grad_and_value", func)(np.array([1.0, 2.0]))
    expected = [2.0, 4.0] if mistake == "control flow" else np.cos([1.0, 2.0])
    np.testing.assert_allclose(grad, expected, rtol=1e-12)


@pytest.mark.parametrize("branch", ["if", "mask"])
@pytest.mark.parametrize("operator", ["jacobian_and_value", "mhp_jacobian_and_value"])
def test_jax_nojit_jacobians_take_python_control_flow_on_values(operator, branch):
    """As its gradients do: the Jacobian's mode is chosen without an abstract trace."""
    pytest.importorskip("jax")
    import jax.numpy as jnp

    def c(x):  # c = (x₀ x₁, x₁²) where x₀ > 0: J = [[x₁, x₀], [0, 2 x₁]]
        if branch == "if":
            return jnp.stack([x[0] * x[1], x[1] ** 2]) if x[0] > 0 else -x
        return jnp.stack([x[0] * x[1], jnp.sum(x[x > 1.5] ** 2)])

    x = np.array([1.0, 2.0])
    outputs = derivative("jax_nojit", operator, c)(x)
    np.testing.assert_allclose(outputs[-2], [[2.0, 1.0], [0.0, 4.0]], rtol=1e-12)
    np.testing.assert_allclose(outputs[-1], [2.0, 4.0], rtol=1e-12)
    message = r"cannot differentiate .*\.c \(.* use the backend 'jax_nojit'"
    with pytest.raises(TypeError, match=message):
        derivative("jax", operator, c)(x)


def numpy_reduction(x):
    return np.sum(x**2) / 2  # NumPy's sum calls the tensor's with axis=


def numpy_round_trip(x):
    import torch

    return torch.sum(torch.from_numpy(np.exp(x.numpy())))


def fill_an_array(x):
    y = np.zeros(2)
    y[0] = x[0] ** 2  # a traced value into a plain array
    y[1] = x[1]
    return y


@pytest.mark.parametrize(
    ("backend", "func", "operator", "advice"),
    [
        ("torch", numpy_reduction, "grad_and_value", "calls a NumPy function"),
        ("torch", numpy_round_trip, "grad_and_value", "calls a NumPy function"),
        ("autograd", fill_an_array, "jacobian_and_value", "anp.stack or anp.array"),
    ],
)
def test_more_that_frameworks_cannot_differentiate_is_explained(
    backend, func, operator, advice
):
    if not diffops.get_backend(backend).available:
        pytest.skip(f"{backend} is not installed")
    expected = (
        rf"{operator} with the {backend} backend cannot differentiate "
        rf"{func.__name__} \(.*{advice}"
    )
    with pytest.raises(TypeError, match=expected):
        derivative(backend, operator, func)(np.array([1.0, 2.0]))


def test_a_numpy_array_of_traced_values_is_refused_naming_the_operator():
    pytest.importorskip("autograd")
    expected = (
        r"jacobian_and_value needs func to return an array of numbers; it returned a "
        r"NumPy array of objects"
    )
    function = derivative(
        "autograd", "jacobian_and_value", lambda x: np.array([x[0] ** 2, x[1]])
    )
    with pytest.raises(TypeError, match=expected):
        function(np.array([1.0, 2.0]))


class Model:
    """A callable instance, as some users write their densities."""

    def __call__(self, x):
        x[0] = 1.0
        return x.sum()


def test_a_callable_instance_is_named_by_its_class_and_place():
    pytest.importorskip("jax")
    with pytest.raises(TypeError, match=r"cannot differentiate Model.__call__ \(.*"
                       r"test_errors.py, line \d+\)"):  # fmt: skip
        derivative("jax", "grad_and_value", Model())(np.array([1.0, 2.0]))


@pytest.mark.parametrize("ending", ["item", "float", "constant"])
def test_torch_refuses_a_number_which_a_cut_graph_gives_too(ending):
    """Not zero derivatives without a word, as a constant would be."""
    torch = pytest.importorskip("torch")

    def f(x):
        total = torch.sum(x**2)
        return {"item": total.item(), "float": float(total), "constant": 3.0}[ending]

    message = r"returned float\. A tensor's \.item\(\) or float\(\.\.\.\) is a number"
    with pytest.raises(TypeError, match=message):
        derivative("torch", "grad_and_value", f)(np.array([1.0, 2.0]))


@pytest.mark.parametrize("operator", DIFF_OPS)
def test_torch_refuses_a_sparse_output_by_name(operator):
    # PyTorch's own errors (a NumPy conversion's, or a dispatcher listing of some
    # fifty kernels from the backward pass) named neither the operator nor the fix.
    torch = pytest.importorskip("torch")

    def f(x):
        y = torch.sin(x)
        return (y.sum() if operator in SCALAR_OPERATORS else y).to_sparse()

    message = (
        rf"{operator} needs func to return a dense torch tensor; it returned one of "
        r"layout torch\.sparse_coo: return its \.to_dense\(\)"
    )
    made = derivative("torch", operator, f)
    with pytest.raises(TypeError, match=message):
        made(np.array([1.0, 2.0]))
    with pytest.raises(TypeError, match=message):
        diffops.vectorize(made)(np.array([[1.0, 2.0], [3.0, 4.0]]))


def ending_sin(backend: str, operator: str, ending, *, other_kind: bool = False):
    """``x ↦ ending(sin x)``, summed first where ``operator`` (or, with ``other_kind``,
    an operator of the other kind) takes a scalar function; ready for ``backend``."""
    xp = array_namespace(backend)
    scalar = (operator in SCALAR_OPERATORS) != other_kind

    def func(x):
        y = xp.sin(x)
        return ending(xp.sum(y) if scalar else y)

    return xp.prepare(func, 2) if backend == "symnum" else func


@pytest.mark.parametrize("operator", DIFF_OPS)
def test_a_function_returning_booleans_is_refused(backend, operator):
    # A comparison returned by mistake would otherwise give zero derivatives and a
    # value of 0 or 1, without a word.
    xp = array_namespace(backend)
    func = ending_sin(backend, operator, lambda y: y > 0)
    with pytest.raises(TypeError, match=rf"{operator} needs func to return real "
                       r"numbers; it returned booleans"):  # fmt: skip
        derivative(backend, operator, func)(np.array([1.0, 2.0]))
    if backend != "symnum" and operator in SCALAR_OPERATORS:  # Python's own bool
        with pytest.raises(TypeError, match=r"it returned booleans"):
            derivative(backend, operator, lambda x: True)(np.array([1.0, 2.0]))
    if backend == "symnum" and operator not in SCALAR_OPERATORS:
        # snp.array of comparisons: a NumPy array of objects, not a symbolic one
        import symnum.numpy as snp

        listed = xp.prepare(lambda x: snp.array([x[0] > 0, x[1] > 0]), 2)
        with pytest.raises(TypeError, match=r"it returned booleans"):
            derivative(backend, operator, listed)(np.array([1.0, 2.0]))
    # Given to an operator of the other kind too: the booleans are named first.
    wrong = ending_sin(backend, operator, lambda y: y > 0, other_kind=True)
    with pytest.raises(TypeError, match=r"it returned booleans"):
        derivative(backend, operator, wrong)(np.array([1.0, 2.0]))


@pytest.mark.parametrize("operator", DIFF_OPS)
def test_a_function_returning_complex_numbers_is_refused(backend, operator):
    # Differentiated as real, the imaginary part would be dropped, with at most the
    # framework's warning (SymNum's generated code returned it complex, and diffops
    # dropped it converting to x's dtype).
    func = ending_sin(backend, operator, lambda y: y * (1 + 2j))
    with pytest.raises(TypeError, match=rf"{operator} needs func to return real "
                       r"numbers; it returned complex ones"):  # fmt: skip
        derivative(backend, operator, func)(np.array([1.0, 2.0]))
    if backend != "symnum" and operator in SCALAR_OPERATORS:  # Python's own complex
        with pytest.raises(TypeError, match=r"it returned complex ones"):
            derivative(backend, operator, lambda x: 1 + 2j)(np.array([1.0, 2.0]))
