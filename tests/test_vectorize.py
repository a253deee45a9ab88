"""vectorize: a derivative function at many points at once, equal row by row to the
derivative function at each point, on every backend, hand-written or registered, in
chunks, on Dask, across processes and threads."""

from __future__ import annotations

import pickle
import re
import types
import warnings

import numpy as np
import pytest
from functions import CUBES, METRIC, MISTAKES, QUARTIC, SMOOTH, VectorCase, render
from helpers import (
    INSTALLED_BACKENDS,
    argument_for,
    case_derivative,
    derivative,
    in_threads,
)

import diffops
from diffops import DIFF_OPS, vectorize
from diffops.namespaces import array_namespace
from diffops.operators import OPERATORS
from diffops.vectorized import BatchedProduct

# Functions of the whole array, which take any x: points drawn at random are fine.
CASE_FOR = {"scalar": QUARTIC, "vector": CUBES}
RTOL = 1e-12


def points_for(case, k=7, seed=0):
    return case.point + 0.3 * np.random.default_rng(seed).standard_normal((k, case.n))


def rows(function, X, arguments=None):
    """What ``function`` returns at each row of ``X``, products applied."""
    outputs = []
    for index, x in enumerate(X):
        returned = list(function(x))
        if callable(returned[0]):
            returned[0] = returned[0](arguments[index])
        outputs.append(returned)
    return [np.array(column) for column in zip(*outputs, strict=True)]


def assert_rows(got, want):
    for a, b in zip(got, want, strict=True):
        assert np.shape(a) == np.shape(b)
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=RTOL * np.max(np.abs(b)))


@pytest.mark.parametrize("operator", DIFF_OPS)
def test_every_row_is_what_the_derivative_function_gives_there(backend, operator):
    case = CASE_FOR[OPERATORS[operator].applies_to]
    function = case_derivative(backend, operator, case)
    X = points_for(case)
    outputs = vectorize(function)(X)
    product = OPERATORS[operator].product
    if product is None:
        assert_rows(outputs, rows(function, X))
        return
    batched, *arrays = outputs
    assert isinstance(batched, BatchedProduct)
    assert batched.name == product
    shape = argument_for(operator, case.point, case).shape
    Ms = np.random.default_rng(1).standard_normal((X.shape[0], *shape))
    per_point = batched(Ms)
    assert per_point.shape == X.shape
    assert_rows([per_point, *arrays], rows(function, X, Ms))
    shared = batched(Ms[0])  # one M for every point
    assert_rows([shared], [rows(function, X, [Ms[0]] * X.shape[0])[0]])


@pytest.mark.parametrize("case", [METRIC, SMOOTH], ids=str)
def test_vjp_of_values_of_any_shape_in_a_batch(backend, case):
    """A matrix- or scalar-valued c: values (k, *shape), u per point or shared."""
    function = derivative(backend, "vjp_and_value", render(case, backend))
    X = points_for(case, k=4)
    jacobian = case.jacobian if isinstance(case, VectorCase) else case.grad
    shape = np.shape(case.value(case.point))
    batched, values = vectorize(function)(X)
    assert values.shape == (4, *shape)
    np.testing.assert_allclose(values, [case.value(x) for x in X], rtol=1e-12)
    assert batched.shape == shape
    us = np.random.default_rng(2).standard_normal((4, *shape))
    axes = len(shape)
    np.testing.assert_allclose(
        batched(us),
        [np.tensordot(u, jacobian(x), axes=axes) for x, u in zip(X, us, strict=True)],
        rtol=1e-12,
    )
    np.testing.assert_allclose(
        batched(us[0]),
        [np.tensordot(us[0], jacobian(x), axes=axes) for x in X],
        rtol=1e-12,
    )
    with pytest.raises(ValueError, match=r"^u must have shape"):
        batched(np.ones(7))


def _branching_backward(backend):
    """c(x) = x² + sin x, x² a custom op whose backward pass branches on a value.

    Its forward pass vectorises; its backward pass runs op by op (PyTorch's tape,
    jax_nojit) but not under vmap. With jax, a while_loop, which JAX can vectorise
    but not reverse: its products at a point come from a table computed forward.
    """
    if backend == "torch":
        import torch

        class Square(torch.autograd.Function):
            generate_vmap_rule = True

            @staticmethod
            def forward(x):
                return x**2

            @staticmethod
            def setup_context(ctx, inputs, output):
                ctx.save_for_backward(inputs[0])

            @staticmethod
            def backward(ctx, g):
                (x,) = ctx.saved_tensors
                if g.abs().max().item() > 1e6:  # clipping, say
                    g = g / 2
                return 2 * x * g

        return lambda x: Square.apply(x) + torch.sin(x)
    import jax
    import jax.numpy as jnp

    if backend == "jax":

        def looped(x):
            def body(state):  # y unchanged, through work JAX cannot reverse
                return state[0] + 1, state[1] + 0.0 * jnp.sin(state[1])

            return jax.lax.while_loop(lambda s: s[0] < 3, body, (0, x**2))[1]

        return lambda x: looped(x) + jnp.sin(x)

    @jax.custom_vjp
    def square(x):
        return x**2

    def backward(x, g):
        if float(jnp.max(jnp.abs(g))) > 1e6:  # clipping, say
            g = g / 2
        return (2 * x * g,)

    square.defvjp(lambda x: (x**2, x), backward)
    return lambda x: square(x) + jnp.sin(x)


@pytest.mark.parametrize("backend", ["jax", "jax_nojit", "torch"])
def test_a_batch_of_products_that_cannot_be_vectorised_falls_back(backend):
    """Its products one by one, saying so once, as the vectorised call does."""
    pytest.importorskip(backend.removesuffix("_nojit"))
    function = derivative(backend, "vjp_and_value", _branching_backward(backend))
    X = np.array([[0.5, -1.0, 2.0], [1.5, 0.2, -0.3]])
    us = np.array([[1.0, 2.0, 3.0], [2.0, 4.0, 6.0]])
    wanted = us * (2 * X + np.cos(X))  # vjp(u) = u ∘ c'(x), c' = 2x + cos x
    batch = vectorize(function)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the forward pass vectorises: no warning
        P, values = batch(X)
    np.testing.assert_allclose(values, X**2 + np.sin(X), rtol=RTOL)
    with pytest.warns(UserWarning, match="could not vectorise"):
        np.testing.assert_allclose(P(us), wanted, rtol=RTOL)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once
        np.testing.assert_allclose(P(us[0]), us[0] * (2 * X + np.cos(X)), rtol=RTOL)
        P_again, _ = batch(X)  # later batches, one by one from the start
        np.testing.assert_allclose(P_again(us), wanted, rtol=RTOL)


@pytest.mark.parametrize(
    "operator", ["hessian_grad_and_value", "mhp_jacobian_and_value"]
)
def test_outputs_have_a_leading_axis_of_length_k(backend, operator):
    case = CASE_FOR[OPERATORS[operator].applies_to]
    X = points_for(case, k=5)
    outputs = vectorize(case_derivative(backend, operator, case))(X)
    n, m = case.n, np.size(case.value(case.point))
    shapes = {
        "hessian_grad_and_value": [(5, n, n), (5, n), (5,)],
        "mhp_jacobian_and_value": [(5, m, n), (5, m)],
    }[operator]
    arrays = outputs[1:] if callable(outputs[0]) else outputs
    assert [a.shape for a in arrays] == shapes
    for array in arrays:
        assert isinstance(array, np.ndarray)
        assert array.dtype == np.float64


@pytest.mark.parametrize("chunk_size", [1, 3, 7, 100])
@pytest.mark.parametrize("operator", ["grad_and_value", "mtp_hessian_grad_and_value"])
def test_chunks_of_rows_give_the_same_results(backend, operator, chunk_size):
    case = CASE_FOR[OPERATORS[operator].applies_to]
    function = case_derivative(backend, operator, case)
    X = points_for(case, k=10)
    whole, chunked = (
        vectorize(function)(X),
        vectorize(function, chunk_size=chunk_size)(X),
    )
    M = np.eye(case.n)
    if callable(whole[0]):
        whole, chunked = [whole[0](M), *whole[1:]], [chunked[0](M), *chunked[1:]]
    # Bit for bit where the framework computes a row the same way in any batch; XLA
    # may order a vectorised sum differently for another number of rows.
    for a, b in zip(chunked, whole, strict=True):
        if backend.startswith("jax"):
            np.testing.assert_allclose(a, b, rtol=RTOL)
        else:
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_chunk_size_bounds_the_rows_of_each_vectorised_call(backend):
    pytest.importorskip("jax" if backend == "jax" else "torch")
    function = case_derivative(backend, "hessian_grad_and_value", QUARTIC)
    vectorized = vectorize(function, chunk_size=4)
    X = points_for(QUARTIC, k=10)
    batching = vectorized._batch()
    sizes = []

    def evaluate(points):
        sizes.append(points.shape[0])
        return batching.evaluate(points)

    vectorized._batching = batching._replace(evaluate=evaluate)
    vectorized(X)
    assert sizes == [4, 4, 2]


def test_a_hand_written_derivative_function_is_evaluated_row_by_row():
    def grad_and_value(x):
        return np.cos(x), np.sum(np.sin(x))

    def vjp_and_value(x):
        return (lambda u: u * np.cos(x)), np.sin(x)

    X = points_for(QUARTIC)
    assert_rows(vectorize(grad_and_value)(X), rows(grad_and_value, X))
    vjp, value = vectorize(vjp_and_value)(X)
    us = np.random.default_rng(2).standard_normal(X.shape)
    assert_rows([vjp(us), value], [us * np.cos(X), np.sin(X)])


def test_a_hand_written_product_stays_at_its_row_when_x_changes_in_place():
    def vjp_and_value(x):  # the product keeps the x it was given
        return (lambda u: u * np.cos(x)), np.sin(x)

    X = points_for(QUARTIC)
    points = X.copy()
    vjp, _ = vectorize(vjp_and_value)(X)
    X += 1.0  # the caller moves every point on, in place
    us = np.random.default_rng(3).standard_normal(X.shape)
    np.testing.assert_allclose(vjp(us), us * np.cos(points), rtol=1e-14)


def test_a_hand_written_function_may_reuse_its_output_buffers():
    buffer = np.empty(QUARTIC.n)

    def grad_and_value(x):  # returns the same array at every call
        np.cos(x, out=buffer)
        return buffer, np.sum(np.sin(x))

    X = points_for(QUARTIC)
    grads, values = vectorize(grad_and_value)(X)
    np.testing.assert_allclose(grads, np.cos(X), rtol=1e-14)
    np.testing.assert_allclose(values, np.sum(np.sin(X), axis=1), rtol=1e-14)
    assert not np.shares_memory(grads, buffer)


def test_a_hand_written_product_may_reuse_its_output_buffer():
    buffer = np.empty(QUARTIC.n)

    def vjp_and_value(x):
        def vjp(u):  # returns the same array at every call
            return np.multiply(u, np.cos(x), out=buffer)

        return vjp, np.sin(x)

    X = points_for(QUARTIC)
    vjp, _ = vectorize(vjp_and_value)(X)
    us = np.random.default_rng(4).standard_normal(X.shape)
    np.testing.assert_allclose(vjp(us), us * np.cos(X), rtol=1e-14)
    np.testing.assert_allclose(vjp(us[0]), us[0] * np.cos(X), rtol=1e-14)


@pytest.mark.parametrize(
    ("returned", "error", "message"),
    [
        (lambda x: (None, 1.0), TypeError, r"arrays of numbers; output 0 at row 0"),
        (lambda x: ("abc", 1.0), TypeError, r"output 0 at row 0 of X is str"),
        (
            lambda x: [np.cos(x), np.sum(np.sin(x))],
            TypeError,
            r"output 0 at row 0 of X is list\. Return the outputs as a tuple, not a "
            r"list\.$",
        ),
        (
            lambda x: (np.ones(int(x[0] > 0) + 1), 1.0),
            ValueError,
            r"shapes \[\(1,\), \(\)\] at row 1 of X but \[\(2,\), \(\)\] at row 0",
        ),
    ],
)
def test_a_hand_written_function_returning_what_cannot_stack_is_refused(
    returned, error, message
):
    X = np.array([[1.0, 2.0], [-1.0, 2.0]])
    with pytest.raises(error, match=message):
        vectorize(returned)(X)


def test_a_hand_written_product_of_the_wrong_length_is_refused():
    def vjp_and_value(x):
        return (lambda u: np.ones(7)), np.sin(x)

    vjp, _ = vectorize(vjp_and_value)(points_for(QUARTIC))
    expected = r"product of row 0 returned .* \(7,\); .* \(4,\)"
    with pytest.raises(ValueError, match=expected):
        vjp(np.ones(QUARTIC.n))


@pytest.mark.parametrize(
    ("result", "what"),
    [
        (np.ones(4) * 1j, "ndarray of dtype complex128"),
        (None, "NoneType of dtype object"),
    ],
)
def test_a_hand_written_product_returning_no_real_numbers_is_refused(result, what):
    def vjp_and_value(x):
        return (lambda u: result), np.sin(x)

    vjp, _ = vectorize(vjp_and_value)(points_for(QUARTIC))
    expected = (
        f"the product of row 0 returned {what}; a product returns an array of real "
        "numbers of shape (4,)."
    )
    with pytest.raises(TypeError, match=re.escape(expected)):
        vjp(np.ones(QUARTIC.n))


def test_a_registered_backends_derivative_functions_are_vectorised_by_a_loop():
    def grad_and_value(func):
        return lambda x: (2 * x, func(x))

    module = types.SimpleNamespace(**dict.fromkeys(DIFF_OPS, grad_and_value))
    diffops.register_backend(
        "vectorize_test", diffops.AutodiffBackend(module, True), replace=True
    )
    function = derivative("vectorize_test", "grad_and_value", lambda x: np.sum(x**2))
    X = points_for(QUARTIC)
    assert_rows(vectorize(function)(X), [2 * X, np.sum(X**2, axis=1)])


@pytest.mark.parametrize("backend", ["jax_nojit", "torch"])
def test_a_function_the_framework_cannot_vectorise_is_evaluated_row_by_row(backend):
    if not diffops.get_backend(backend).available:
        pytest.skip(f"{backend} is not installed")
    func = MISTAKES["control flow"](array_namespace(backend))
    function = derivative(backend, "hessian_grad_and_value", func)
    vectorized = vectorize(function)
    X = np.array([[1.0, 2.0], [-1.0, 2.0], [0.5, -3.0]])
    with pytest.warns(UserWarning, match=rf"the {backend} backend could not vectorise"):
        outputs = vectorized(X)
    assert_rows(outputs, rows(function, X))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once only
        assert_rows(vectorized(X), rows(function, X))


def _scaled_by_a_constant(x):
    """``f = s Σ sin x``, ``s = Σ x²`` under torch.no_grad: a constant to autograd."""
    import torch

    with torch.no_grad():
        s = torch.sum(x**2)
    return s * torch.sum(torch.sin(x))


def _stretched_by_a_constant(x):
    """``c = s(x) sin x``, ``s`` as above."""
    import torch

    with torch.no_grad():
        s = torch.sum(x**2)
    return s * torch.sin(x)


@pytest.mark.parametrize("operator", DIFF_OPS)
def test_torch_no_grad_in_func_is_heeded_in_a_batch_as_at_a_point(operator):
    """Every derivative treats a term under torch.no_grad as a constant, batched too.

    With ``s`` constant: ``g = s cos x``, ``H = -s diag(sin x)``, ``mtp(M)[i] = -s
    cos(x_i) M[i, i]``; ``J = s diag(cos x)``, ``mhp(M)[k] = -s sin(x_k) M[k, k]``.
    """
    pytest.importorskip("torch")
    scalar = OPERATORS[operator].applies_to == "scalar"
    func = _scaled_by_a_constant if scalar else _stretched_by_a_constant
    X = np.array([[0.5, -1.0, 2.0], [1.0, 0.3, -0.7]])
    arguments = [np.arange(9.0).reshape(3, 3) - 4, np.array([[1.0, -2.0, 0.5]] * 3)]
    name = OPERATORS[operator].product
    if name == "vjp":
        arguments = [np.array([1.0, -2.0, 0.5]), np.array([0.3, 0.0, -1.0])]
    function = derivative("torch", operator, func)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # vectorised, not row by row
        got = list(vectorize(function)(X))
        if name is not None:
            got[0] = got[0](np.stack(arguments))
    s = np.sum(X**2, axis=1)[:, None]
    A = np.stack(arguments)
    formulas = {  # each a function: the products' arguments differ in shape
        "mtp": lambda: -s * np.cos(X) * np.diagonal(A, 0, 1, 2),
        "mhp": lambda: -s * np.sin(X) * np.diagonal(A, 0, 1, 2),
        "vjp": lambda: s * np.cos(X) * A,
        "H": lambda: -s[:, :, None] * np.eye(3) * np.sin(X)[:, None, :],
        "J": lambda: s[:, :, None] * np.eye(3) * np.cos(X)[:, None, :],
        "g": lambda: s * np.cos(X),
        "v": lambda: s[:, 0] * np.sin(X).sum(axis=1) if scalar else s * np.sin(X),
    }
    names = {
        "grad_and_value": "g v", "hessian_grad_and_value": "H g v",
        "mtp_hessian_grad_and_value": "mtp H g v", "jacobian_and_value": "J v",
        "mhp_jacobian_and_value": "mhp J v", "vjp_and_value": "vjp v",
    }[operator].split()  # fmt: skip
    assert_rows(got, [formulas[output]() for output in names])
    assert_rows(got, rows(function, X, arguments))


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_a_callers_mistake_does_not_turn_vectorisation_off(backend):
    # The function cannot take X of 4 columns, row by row either: its error is
    # raised, with no warning, and later calls are still vectorised.
    if not diffops.get_backend(backend).available:
        pytest.skip(f"{backend} is not installed")
    xp = array_namespace(backend)
    function = derivative(
        backend, "grad_and_value", lambda x: xp.sum(x.reshape(3) ** 2)
    )
    vectorized = vectorize(function)
    X = points_for(QUARTIC, k=5)[:, :3]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "could not vectorise"
        with pytest.raises(Exception, match=r"reshape|shape"):
            vectorized(np.ones((5, 4)))
        assert_rows(vectorized(X), [2 * X, np.sum(X**2, axis=1)])
    assert vectorized._vectorises


@pytest.mark.parametrize("dtype", [np.int64, np.float32])
def test_a_hand_written_product_takes_its_argument_in_the_points_dtype(dtype):
    # The output after the product is of integers (or float32): the argument is
    # converted to the points' float64, as a loop of calls would pass it.
    def vjp_and_value(x):
        J = np.array([[x[1], x[0]], [1.0, 1.0]])
        return (lambda u: u @ J), np.array([1, 2], dtype)

    X = np.array([[1.0, 2.0], [3.0, 4.0]]) / 3
    u = np.array([0.1, 0.7])
    want = np.array([u @ [[b, a], [1.0, 1.0]] for a, b in X])
    vjp, _ = vectorize(vjp_and_value)(X)
    got = vjp(u)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=1e-15)
    np.testing.assert_allclose(vjp(np.stack([u, u])), want, rtol=1e-15)


def test_a_hand_written_products_result_keeps_the_dtype_it_computes_in():
    # float32 points, a product computing in float64: its rows as it returns them.
    def vjp_and_value(x):
        J = np.array([[np.float64(x[1]) / 3, 1.0], [1.0, 1.0]])
        return (lambda u: u @ J), np.sin(x)

    X = (np.array([[1.0, 2.0], [3.0, 4.0]]) / 7).astype(np.float32)
    u = np.array([0.1, 0.7], np.float32)
    got = vectorize(vjp_and_value)(X)[0](u)
    want = np.stack([vjp_and_value(x)[0](u) for x in X])
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, want)


def test_a_derivative_that_is_not_callable_is_named_as_its_argument():
    with pytest.raises(TypeError, match=r"^vectorize needs derivative to be callable"):
        vectorize(None)  # type: ignore[arg-type]


def test_x_with_masked_entries_is_refused_as_for_one_point(backend):
    function = case_derivative(backend, "grad_and_value", QUARTIC)
    X = np.ma.masked_array(points_for(QUARTIC, k=2), mask=False)
    X[1, 2] = np.ma.masked
    with pytest.raises(TypeError, match=r"X must be .*masked array with masked"):
        vectorize(function)(X)
    X.mask = False  # nothing masked: its values are the points
    assert_rows(vectorize(function)(X), rows(function, X.data))


# What the user hands in, and what happens after.


@pytest.mark.parametrize(
    ("X", "error", "message"),
    [
        (np.ones(4), ValueError, r"X must be a 2-D array of shape \(k, n\).*\(4,\)"),
        (np.ones((2, 2, 4)), ValueError, r"X must be a 2-D .*\(2, 2, 4\)"),
        (np.ones((0, 4)), ValueError, r"X must be a 2-D .*\(0, 4\)"),
        (np.ones((2, 4), complex), TypeError, r"X must be a 2-D array of real"),
        ([["a", "b"]], TypeError, r"X must be a 2-D array of real"),
        (None, TypeError, r"X must be a 2-D array of real"),
    ],
    ids=["1-D", "3-D", "empty", "complex", "strings", "None"],
)
def test_x_that_is_not_a_matrix_of_points_is_refused(X, error, message):
    function = vectorize(case_derivative("autograd", "grad_and_value", QUARTIC))
    with pytest.raises(error, match=message):
        function(X)


def test_x_of_another_length_than_declared_is_refused():
    pytest.importorskip("symnum")
    function = vectorize(case_derivative("symnum", "grad_and_value", QUARTIC))
    with pytest.raises(ValueError, match=r"X must have shape \(k, 4\).*\(3, 5\)"):
        function(np.ones((3, 5)))


@pytest.mark.parametrize(
    ("chunk_size", "error"),
    [(0, ValueError), (-2, ValueError), (1.5, TypeError), (True, TypeError),
     ("3", TypeError)],
)  # fmt: skip
def test_a_chunk_size_that_is_not_a_positive_integer_is_refused(chunk_size, error):
    function = case_derivative("autograd", "grad_and_value", QUARTIC)
    with pytest.raises(error, match="chunk_size must be a positive integer"):
        vectorize(function, chunk_size=chunk_size)


def test_a_product_argument_of_another_shape_is_refused_naming_both_accepted(backend):
    function = case_derivative(backend, "mtp_hessian_grad_and_value", QUARTIC)
    mtp = vectorize(function)(points_for(QUARTIC, k=3))[0]
    expected = (
        r"M must have shape \(3, 4, 4\), one per point, or \(4, 4\), one for every "
        r"point.*\(2, 4, 4\)"
    )
    with pytest.raises(ValueError, match=expected):
        mtp(np.ones((2, 4, 4)))


@pytest.mark.parametrize("argument", [None, "abc"], ids=["None", "a string"])
def test_a_product_argument_that_is_not_numbers_is_refused_naming_its_type(argument):
    function = case_derivative("autograd", "vjp_and_value", CUBES)
    vjp = vectorize(function)(points_for(CUBES, k=3))[0]
    with pytest.raises(
        TypeError, match=rf"u must have shape .*; got {type(argument).__name__}\."
    ):
        vjp(argument)


def test_nothing_returned_moves_when_x_is_changed_in_place(backend):
    function = case_derivative(backend, "mtp_hessian_grad_and_value", QUARTIC)
    X = points_for(QUARTIC, k=4)
    original = X.copy()
    mtp, *arrays = vectorize(function)(X)
    M = np.eye(4)
    for array in arrays:
        assert not np.shares_memory(array, X)
    X += 1.0
    assert_rows([mtp(M), *arrays], rows(function, original, [M] * 4))


@pytest.mark.parametrize("layout", ["big-endian", "reversed", "fortran", "list"])
def test_x_in_any_layout_gives_what_its_values_give(backend, layout):
    function = vectorize(case_derivative(backend, "hessian_grad_and_value", QUARTIC))
    X = points_for(QUARTIC, k=3)
    given = {
        "big-endian": X.astype(">f8"),
        "reversed": np.flip(np.flip(X).copy()),
        "fortran": np.asfortranarray(X),
        "list": X.tolist(),
    }[layout]
    for got, want in zip(function(given), function(X), strict=True):
        np.testing.assert_array_equal(got, want)


def test_a_vectorised_derivative_function_pickles_and_so_do_its_products(backend):
    function = case_derivative(backend, "mtp_hessian_grad_and_value", QUARTIC)
    vectorized = vectorize(function, chunk_size=2)
    X = points_for(QUARTIC, k=3)
    mtp, *arrays = vectorized(X)
    again = pickle.loads(pickle.dumps(vectorized))
    assert again.chunk_size == 2
    mtp_again, *arrays_again = again(X)
    M = np.eye(4)
    assert_rows([mtp_again(M), *arrays_again], [mtp(M), *arrays])
    assert_rows([pickle.loads(pickle.dumps(mtp))(M)], [mtp(M)])


def test_threads_share_one_vectorised_derivative_function(backend):
    vectorized = vectorize(case_derivative(backend, "hessian_grad_and_value", QUARTIC))
    batches = [points_for(QUARTIC, k=6, seed=seed) for seed in range(4)]
    expected = [vectorized(X) for X in batches]
    results = {}

    def work(index):
        for repeat in range(3):
            results[index, repeat] = vectorized(batches[index])

    errors = in_threads(work, 4)
    assert not errors, errors
    for (index, _), outputs in results.items():
        assert_rows(outputs, expected[index])


# Dask.

SCHEDULERS = ["synchronous", "processes"]


def vectorized_for_dask(backend, operator):
    case = CASE_FOR[OPERATORS[operator].applies_to]
    return vectorize(case_derivative(backend, operator, case), chunk_size=3), case


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_dask_arrays_in_give_lazy_dask_arrays_out(backend, scheduler):
    da = pytest.importorskip("dask.array")
    import dask

    vectorized, case = vectorized_for_dask(backend, "hessian_grad_and_value")
    X = points_for(case, k=11)
    lazy = vectorized(da.from_array(X, chunks=(4, case.n)))
    for output in lazy:
        assert isinstance(output, da.Array)
        assert output.numblocks[0] == 3  # one task per chunk of rows
    with dask.config.set(scheduler=scheduler):
        computed = dask.compute(*lazy)
    assert_rows(computed, vectorized(X))


def test_dask_on_a_local_cluster_for_every_backend():
    distributed = pytest.importorskip("distributed")
    da = pytest.importorskip("dask.array")
    work = [vectorized_for_dask(b, "jacobian_and_value") for b in INSTALLED_BACKENDS]
    X = points_for(CUBES, k=9)
    with (
        distributed.LocalCluster(
            n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
            dashboard_address=None, worker_dashboard_address=None,
        ) as cluster,
        distributed.Client(cluster) as client,
    ):  # fmt: skip
        computed = [
            client.compute(vectorized(da.from_array(X, chunks=(5, 3))), sync=True)
            for vectorized, _ in work
        ]
    for got, (vectorized, _) in zip(computed, work, strict=True):
        assert_rows(got, vectorized(X))


def test_a_product_over_dask_says_how_to_apply_it_per_block():
    da = pytest.importorskip("dask.array")
    vectorized, case = vectorized_for_dask("autograd", "mtp_hessian_grad_and_value")
    X = da.from_array(points_for(case, k=6), chunks=(3, case.n))
    with pytest.raises(TypeError, match=r"returns no mtp.*X.map_blocks"):
        vectorized(X)


def test_dask_x_chunked_across_its_columns_is_refused():
    da = pytest.importorskip("dask.array")
    vectorized, case = vectorized_for_dask("autograd", "grad_and_value")
    X = da.from_array(points_for(case, k=6), chunks=(3, 2))
    with pytest.raises(ValueError, match=r"chunked along its first axis only.*rechunk"):
        vectorized(X)


def test_a_framework_error_in_a_batch_of_products_is_explained_as_in_one():
    """torch's vjp batch differentiates when applied: its error is said as a call's."""
    torch = pytest.importorskip("torch")

    def c(x):
        y = torch.sin(x)
        y.mul_(y)  # sin's backward needs y as it was
        return y

    vjps, _ = vectorize(derivative("torch", "vjp_and_value", c))(np.ones((2, 3)))
    with pytest.raises(TypeError, match=r"changes a tensor in place after using it"):
        vjps(np.ones((2, 3)))
