"""Any array a user hands in gives the answer its values give; one output dtype rule.

``x``, ``M`` and ``u`` may come big-endian (from a FITS file), strided, reversed, as a
column of a Fortran-ordered array, as a field of a structured array, broadcast,
read-only, as lists or integers, or as a framework's own arrays. Each is converted
once to a plain array of the dtype it is computed in, so the outputs equal, to the
last bit, those for the same values handed in as a plain native array. Every output
is floating point, of the dtype ``x`` is computed in.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest
from functions import CUBES, EMPTY, QUARTIC, SMOOTH, render
from helpers import BACKEND_PARAMS, case_derivative, derivative, run_python
from hypothesis import given
from hypothesis import strategies as st

import diffops
from diffops import DIFF_OPS
from diffops.operators import OPERATORS

# Functions of the whole array, which take an x of any values as they are written.
CASE_FOR = {"scalar": QUARTIC, "vector": CUBES}


def swapped(array: np.ndarray) -> np.ndarray:
    """The same values in the other byte order (big-endian here)."""
    return array.astype(array.dtype.newbyteorder("S"))


def reversed_strides(array: np.ndarray) -> np.ndarray:
    return np.flip(np.flip(array).copy())


def every_other(array: np.ndarray) -> np.ndarray:
    spread = np.zeros((*array.shape[:-1], 2 * array.shape[-1]), array.dtype)
    spread[..., ::2] = array
    return spread[..., ::2]


def fortran_ordered(array: np.ndarray) -> np.ndarray:
    if array.ndim == 1:  # a row of a Fortran-ordered matrix: strided
        return np.asfortranarray(np.stack([array, 2 * array]))[0]
    return np.asfortranarray(array)


def structured_field(array: np.ndarray) -> np.ndarray:
    # Fields a (the values) and b interleaved: a strided, unaligned view.
    records = np.zeros(array.shape, [("b", "i1"), ("a", array.dtype)])
    records["a"] = array
    return records["a"]


def broadcast(array: np.ndarray) -> np.ndarray:
    return np.broadcast_to(array[..., :1], array.shape)  # zero strides


def read_only(array: np.ndarray) -> np.ndarray:
    array = array.copy()
    array.flags.writeable = False
    return array


LAYOUTS = {
    "native": np.array,
    "big-endian": swapped,
    "reversed": reversed_strides,
    "strided": every_other,
    "fortran": fortran_ordered,
    "field": structured_field,
    "broadcast": broadcast,
    "read-only": read_only,
    "list": lambda array: array.tolist(),
}
DTYPES = {
    "float64": np.float64,
    "float32": np.float32,
    "float16": np.float16,
    "int64": np.int64,
    ">f8": np.dtype(">f8"),
}


def handed_in(values: np.ndarray, dtype: str, layout: str):
    """``values`` in ``dtype`` and ``layout``, and the plain native array it equals."""
    typed = values.astype(DTYPES[dtype])
    given = LAYOUTS[layout](typed)
    native = np.asarray(given)  # a list is float64, whatever its values were
    small_float = native.dtype.kind == "f" and native.dtype.itemsize <= 4
    return given, np.array(native, dtype=np.float32 if small_float else np.float64)


def outputs_of(function, x, argument):
    outputs = list(function(x))
    if argument is not None:
        outputs[0] = outputs[0](argument)
    return outputs


def assert_identical(got, want):
    for a, b in zip(got, want, strict=True):
        a, b = np.asarray(a), np.asarray(b)
        assert a.dtype == b.dtype, (a.dtype, b.dtype)
        np.testing.assert_array_equal(a, b)


layouts = st.sampled_from(sorted(LAYOUTS))
dtypes = st.sampled_from(sorted(DTYPES))


@pytest.mark.parametrize("operator", DIFF_OPS)
@pytest.mark.parametrize("backend", BACKEND_PARAMS)  # a parameter, not a fixture
@given(data=st.data())
def test_every_layout_and_dtype_gives_what_its_values_give(backend, operator, data):
    record = OPERATORS[operator]
    case = CASE_FOR[record.applies_to]
    function = case_derivative(backend, operator, case)
    values = data.draw(
        st.lists(st.integers(-20, 20), min_size=case.n, max_size=case.n), label="x"
    )
    x, x_native = handed_in(
        np.array(values) / 8, data.draw(dtypes, label="dtype of x"),
        data.draw(layouts, label="layout of x"),
    )  # fmt: skip
    got = outputs_of(function, x, None)
    want = outputs_of(function, x_native, None)
    if record.product is None:
        assert_identical(got, want)
        return
    assert_identical(got[1:], want[1:])
    shape = want[0].shape
    size = int(np.prod(shape))
    entries = data.draw(st.lists(st.integers(-20, 20), min_size=size, max_size=size))
    argument, argument_native = handed_in(
        np.reshape(entries, shape) / 4, data.draw(dtypes, label="dtype of M or u"),
        data.draw(layouts, label="layout of M or u"),
    )  # fmt: skip
    # Converted to the dtype of the product's point, whatever its own.
    argument_native = argument_native.astype(want[1].dtype)
    assert_identical([got[0](argument)], [want[0](argument_native)])


# The cases that were once wrong, one by one.


def grad_of_sum_of_cubes(backend):
    xp = diffops.namespaces.array_namespace(backend)
    func = xp.prepare(lambda x: xp.sum(x**3) / 6, 3)
    return derivative(backend, "grad_and_value", func)


def test_a_big_endian_x_after_a_native_one_gives_the_gradient(backend):
    grad_and_value = grad_of_sum_of_cubes(backend)
    x = np.array([1.0, 2.0, 3.0])
    grad_and_value(x)  # compiled for native arrays first
    np.testing.assert_array_equal(grad_and_value(x.astype(">f8"))[0], [0.5, 2, 4.5])


@pytest.mark.parametrize("backend", ["jax", "jax_nojit", "torch"])
def test_wrap_function_reads_big_endian_and_strided_arrays(backend):
    xp = diffops.namespaces.array_namespace(backend)
    wrapped = diffops.wrap_function(lambda x: xp.sum(x**2), backend)
    x = np.array([1.0, 2.0, 3.0])
    for layout in (x, x.astype(">f8"), x[::-1].copy()[::-1], every_other(x)):
        assert float(wrapped(layout)) == 14.0


def test_constant_derivatives_are_floats_and_take_a_fractional_update(backend):
    # f = Σ x² + x₀x₁: H is constant, [[2, 1, 0], [1, 2, 0], [0, 0, 2]].
    xp = diffops.namespaces.array_namespace(backend)
    func = xp.prepare(lambda x: xp.sum(x**2) + x[0] * x[1], 3)
    mtp, hessian, grad, _ = derivative(backend, "mtp_hessian_grad_and_value", func)(
        np.array([1.0, 2.0, 3.0])
    )
    for array in (hessian, grad, mtp(np.eye(3))):
        assert array.dtype == np.float64
    hessian[0, 0] += 0.5
    hessian += 0.5 * np.eye(3)
    np.testing.assert_array_equal(hessian, [[3, 1, 0], [1, 2.5, 0], [0, 0, 2.5]])
    np.testing.assert_array_equal(mtp(np.eye(3)), [0, 0, 0])


@pytest.mark.parametrize("x_dtype", [np.float64, np.float32])
@pytest.mark.parametrize("operator", DIFF_OPS)
def test_every_output_has_the_dtype_x_is_computed_in(backend, operator, x_dtype):
    case = CASE_FOR[OPERATORS[operator].applies_to]
    function = case_derivative(backend, operator, case)
    outputs = list(function(case.point.astype(x_dtype)))
    if OPERATORS[operator].product is not None:
        shape = np.shape(outputs[1])
        outputs[0] = [outputs[0](np.ones(shape, dtype)) for dtype in (int, "f4", "f8")]
    for output in outputs:
        for array in output if isinstance(output, list) else [output]:
            assert np.asarray(array).dtype == x_dtype


@pytest.mark.parametrize("backend", ["autograd", "jax", "jax_nojit"])
def test_float64_constants_do_not_change_the_dtype_of_float32_outputs(backend):
    xp = diffops.namespaces.array_namespace(backend)
    A = xp.asarray(np.array([[2.0, 1.0], [1.0, 3.0]]))  # float64 constants

    def f(x):
        return xp.sum(x * (A @ x)) / 2

    mtp, hessian, grad, value = derivative(backend, "mtp_hessian_grad_and_value", f)(
        np.array([1.0, -1.0], np.float32)
    )
    for array in (hessian, grad, value, mtp(np.eye(2))):
        assert np.asarray(array).dtype == np.float32
    np.testing.assert_allclose(grad, [1.0, -2.0])


@pytest.mark.parametrize("point_dtype", [np.float64, np.float32])
def test_product_arguments_take_the_dtype_of_the_point(backend, point_dtype):
    function = case_derivative(backend, "mtp_hessian_grad_and_value", QUARTIC)
    mtp = function(QUARTIC.point.astype(point_dtype))[0]
    reference = mtp(np.eye(4, dtype=point_dtype))
    for M in (
        np.eye(4, dtype=np.float32),
        np.eye(4, dtype=np.float64),
        np.eye(4, dtype=np.longdouble),  # more precise than the point: converted down
        np.eye(4, dtype=int),
        np.eye(4).tolist(),
    ):
        np.testing.assert_array_equal(mtp(M), reference)


def test_a_vjp_of_a_function_computed_in_float32_takes_float64_u():
    jnp = pytest.importorskip("jax.numpy")
    vjp, value = derivative(
        "jax", "vjp_and_value", lambda x: (x**2).astype(jnp.float32)
    )(np.array([1.0, 2.0]))
    assert value.dtype == np.float64  # the dtype of x
    np.testing.assert_array_equal(vjp(np.array([1.0, 1.0])), [2.0, 4.0])


@pytest.mark.filterwarnings("ignore:Output seems independent of input")
@pytest.mark.parametrize("operator", ["jacobian_and_value", "mhp_jacobian_and_value"])
def test_a_function_with_no_outputs_has_a_jacobian_with_no_rows(backend, operator):
    if backend == "symnum":
        pytest.skip("symnum.numpify cannot make a function with no outputs")
    function = derivative(backend, operator, render(EMPTY, backend))
    outputs = function(EMPTY.point)
    np.testing.assert_array_equal(outputs[-2], EMPTY.jacobian(EMPTY.point))
    assert outputs[-2].shape == (0, 3)
    assert outputs[-1].shape == (0,)
    if operator == "mhp_jacobian_and_value":
        np.testing.assert_array_equal(outputs[0](np.zeros((0, 3))), [0, 0, 0])


def test_a_torch_tensor_that_requires_grad_is_accepted_as_x_and_m(backend):
    torch = pytest.importorskip("torch")
    function = case_derivative(backend, "mtp_hessian_grad_and_value", SMOOTH)
    x = torch.tensor(SMOOTH.point, requires_grad=True)
    mtp, hessian, *_ = function(x)
    np.testing.assert_allclose(hessian, SMOOTH.hessian(SMOOTH.point), rtol=1e-12)
    M = torch.eye(4, dtype=torch.float64, requires_grad=True)
    np.testing.assert_array_equal(mtp(M), mtp(np.eye(4)))


def test_a_sparse_torch_tensor_is_read_as_its_dense_values(backend):
    torch = pytest.importorskip("torch")
    function = case_derivative(backend, "mtp_hessian_grad_and_value", SMOOTH)
    mtp, hessian, *_ = function(torch.tensor(SMOOTH.point).to_sparse())
    np.testing.assert_allclose(hessian, SMOOTH.hessian(SMOOTH.point), rtol=1e-12)
    M = np.diag([1.0, 0.0, -2.0, 0.5])
    sparse = torch.tensor(M).to_sparse()
    np.testing.assert_array_equal(mtp(sparse), mtp(M))


def test_a_torch_size_is_read_as_the_numbers_it_holds(backend):
    torch = pytest.importorskip("torch")
    function = case_derivative(backend, "grad_and_value", QUARTIC)
    point = [1, -2, 0, 3]
    np.testing.assert_array_equal(function(torch.Size(point))[0], function(point)[0])


def test_a_torch_tensor_without_values_is_refused_naming_the_argument(backend):
    torch = pytest.importorskip("torch")
    function = case_derivative(backend, "mtp_hessian_grad_and_value", SMOOTH)
    with pytest.raises(TypeError, match=r"^x must be .*got a tensor whose values"):
        function(torch.ones(4, device="meta"))
    mtp = function(SMOOTH.point)[0]
    with pytest.raises(TypeError, match=r"^M must be .*\(4, 4\).*got a tensor whose"):
        mtp(torch.eye(4, device="meta"))


def test_extended_precision_x_is_refused_saying_how_to_convert(backend):
    function = case_derivative(backend, "grad_and_value", QUARTIC)
    with pytest.raises(TypeError, match=r"x must be .* float64 or float32; got dtype "
                       r"float128 .* x.astype\(np.float64\)"):  # fmt: skip
        function(QUARTIC.point.astype(np.longdouble))


def test_x_may_be_given_by_keyword(backend):
    function = case_derivative(backend, "grad_and_value", QUARTIC)
    np.testing.assert_array_equal(
        function(x=QUARTIC.point)[0], function(QUARTIC.point)[0]
    )


@pytest.mark.parametrize(
    ("operator", "copied"),
    [("grad_and_value", False), ("mtp_hessian_grad_and_value", True)],
)
def test_a_plain_x_is_copied_only_where_a_product_keeps_it(operator, copied):
    seen = []

    def evaluate(x):
        seen.append(x)
        outputs = (2 * x, np.sum(x**2))
        return (None, np.eye(x.size), *outputs) if copied else outputs

    runtime = diffops.functions.Runtime(None, lambda state, argument: argument)
    function = diffops.functions.DerivativeFunction(
        operator, evaluate, runtime, (print, ())
    )
    x = np.array([1.0, 2.0])
    function(x)
    assert (seen[0] is not x) == copied
    assert np.shares_memory(seen[0], x) != copied


@pytest.mark.skipif(sys.byteorder != "little", reason="big-endian is native there")
def test_jax_in_32_bit_mode_computes_a_big_endian_float64_x_in_float32():
    result = run_python(
        """
        import numpy as np, jax.numpy as jnp, diffops
        grad = diffops.autodiff_fallback(
            None, lambda x: jnp.sum(x ** 3), "mtp_hessian_grad_and_value", "m", "jax")
        mtp, H, g, v = grad(np.ones(3, ">f8"))
        print(mtp(np.eye(3)).dtype, H.dtype, g.dtype, v.dtype, mtp(np.eye(3)))
        """,
        {k: v for k, v in os.environ.items() if k != "JAX_ENABLE_X64"},
        "-W",
        "ignore",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[:4] == ["float32"] * 4
    assert result.stdout.split()[4:] == ["[6.", "6.", "6.]"]


def test_bfloat16_and_lazily_negated_tensors_are_read_as_their_values(backend):
    torch = pytest.importorskip("torch")
    function = case_derivative(backend, "vjp_and_value", CUBES)
    x = CUBES.point
    bfloat16 = torch.tensor(x, dtype=torch.bfloat16)
    vjp, value = function(bfloat16)  # bfloat16 has no NumPy type: read as float32
    reference = function(bfloat16.float().numpy())
    np.testing.assert_array_equal(value, CUBES.value(bfloat16.float().numpy()))
    u = torch.tensor([1.0, -1.0, 2.0], dtype=torch.bfloat16)
    np.testing.assert_array_equal(vjp(u), reference[0](np.array([1.0, -1.0, 2.0])))
    negated = (torch.tensor(-x, dtype=torch.complex128) * 1j).conj().imag
    assert negated.is_neg()  # -(-x), the negation not yet applied
    np.testing.assert_array_equal(function(negated)[1], function(x)[1])


def test_a_masked_array_with_masked_entries_is_refused(backend):
    function = case_derivative(backend, "grad_and_value", QUARTIC)
    masked = np.ma.masked_values([1.0, -9999.0, 3.0, 0.5], -9999.0)
    with pytest.raises(TypeError, match=r"x must be .*masked entries.*x.filled"):
        function(masked)
    unmasked = np.ma.masked_array(QUARTIC.point, mask=False)
    np.testing.assert_array_equal(function(unmasked)[0], function(QUARTIC.point)[0])


@pytest.mark.parametrize("given", [None, {"x": 1.0}, {1.0, 2.0}], ids=repr)
def test_what_is_not_an_array_is_named_by_its_type(backend, given):
    function = case_derivative(backend, "mtp_hessian_grad_and_value", QUARTIC)
    with pytest.raises(TypeError, match=rf"got {type(given).__name__}\."):
        function(given)
    mtp = function(QUARTIC.point)[0]
    with pytest.raises(TypeError, match=rf"M must be .*; got {type(given).__name__}\."):
        mtp(given)


@pytest.mark.parametrize("operator", ["grad_and_value", "jacobian_and_value"])
def test_a_function_returning_a_string_is_named_by_the_operator(backend, operator):
    if backend == "symnum":
        pytest.skip("symnum.numpify refuses such a function before diffops sees it")
    func = lambda x: "f(x)"  # noqa: E731
    with pytest.raises(TypeError, match=rf"^{operator} needs func to return"):
        derivative(backend, operator, func)(np.array([1.0, 2.0]))


@pytest.mark.parametrize("backend", ["jax", "jax_nojit", "torch"])
def test_wrap_function_converts_keyword_arguments_too(backend):
    xp = diffops.namespaces.array_namespace(backend)
    wrapped = diffops.wrap_function(lambda x, scale: xp.sum(x**2) * scale, backend)
    x = np.array([1.0, 2.0]).astype(">f8")
    assert float(wrapped(x, scale=np.array(0.5))) == 2.5
    assert float(wrapped(x=x[::-1], scale=np.array(0.5))) == 2.5
