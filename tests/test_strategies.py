"""Where a backend picks between ways of computing, every way gives the right answer.

The compiled ``jax`` backend computes ``mtp``, ``mhp`` and ``vjp`` by a table the call
computes where it is small and cheap (``TABULATE_UP_TO``, ``TABULATE_FLOPS``), from the
point up to ``n = RECOMPUTE_UP_TO`` (0 unless the user raises it) and from the
residuals of the evaluation beyond, packed with the outputs up to
``PACK_RESIDUALS_UP_TO`` numbers, and returns outputs of at most ``PACK_UP_TO``
numbers packed in one array; both sides
of each threshold are tested here, with the threshold moved so that small cases cross
it, or at sizes on either side of it. ``jax_nojit`` computes ``mtp`` and Jacobians in
forms of their own, faster op by op. The ``torch`` backend computes at one point with
PyTorch's tape and at many with :mod:`torch.func`; the tape's edge cases (outputs
that do not depend on ``x``, a caller that turned recording off, ``.detach()``) are
tested here. Expected values come from the hand-derived formulas (products by the
complex step), never from diffops.
"""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
import pytest
from functions import (
    CUBES,
    QUADRATIC,
    SEVERAL_OUTPUTS,
    SMOOTH,
    TAIL,
    ScalarCase,
    VectorCase,
    complex_step_derivative,
    render,
)
from helpers import (
    argument_for,
    derivative,
    evaluate,
    expected_outputs,
    in_threads,
    installed,
)

import diffops
from diffops.operators import OPERATORS, SCALAR_OPERATORS, VECTOR_OPERATORS

TOLERANCE = {"rtol": 1e-10, "atol": 1e-12}


def backend_module(backend: str):
    """The module of ``backend``; the test is skipped where it is not installed."""
    found = diffops.get_backend(backend)
    if not found.available:
        pytest.skip(f"{backend} is not installed")
    return found.module


def output_below_the_product(case: ScalarCase | VectorCase, operator: str = ""):
    """The hand-derived formula of the operator's output after the product."""
    if operator == "vjp_and_value":
        return case.value
    return case.hessian if isinstance(case, ScalarCase) else case.jacobian


def expected_product(
    case: ScalarCase | VectorCase, x, argument, operator: str = ""
) -> np.ndarray:
    """``∂/∂x ⟨argument, H(x)⟩`` (``J`` for ``mhp``, ``c`` for ``vjp``), by hand."""
    below = output_below_the_product(case, operator)
    return complex_step_derivative(lambda y: np.sum(argument * below(y)), x)


def jax_derivative_with(monkeypatch, threshold: str, value: int, operator: str, case):
    """``operator`` of ``case`` on ``jax``, made with ``threshold`` set to ``value``.

    With no table for a product, unless ``threshold`` is the table's.
    """
    jax_backend = backend_module("jax")
    monkeypatch.setattr(jax_backend, "TABULATE_UP_TO", 0)
    monkeypatch.setattr(jax_backend, threshold, value)
    return derivative("jax", operator, render(case, "jax"))  # made after the patch


def strategy(product) -> str:
    """How a ``jax`` product computes: by its ``"table"``, from its ``"point"``, or
    from residuals ``"kept"`` packed with the outputs or as JAX returns them,
    ``"residuals"``."""
    from diffops.backends.jax import _FromPoint, _Kept

    kinds = {np.ndarray: "table", _FromPoint: "point", _Kept: "kept"}
    return kinds.get(type(product._state), "residuals")


STRATEGIES = {
    "table": {"TABULATE_UP_TO": 10**6, "TABULATE_FLOPS": 10**12},
    "point": {"TABULATE_UP_TO": 0, "RECOMPUTE_UP_TO": 10**6},
    "kept": {"TABULATE_UP_TO": 0},
    "residuals": {"TABULATE_UP_TO": 0, "PACK_RESIDUALS_UP_TO": -1},
}
"""The thresholds that make each ``jax`` product strategy the one taken."""


def jax_derivative_by(monkeypatch, name: str, operator: str, case, func=None):
    """``operator`` on ``jax`` made with its product computed the way ``name`` says."""
    jax_backend = backend_module("jax")
    for threshold, value in STRATEGIES[name].items():
        monkeypatch.setattr(jax_backend, threshold, value)
    return derivative("jax", operator, func or render(case, "jax"))


PRODUCT_CASES = [
    ("mtp_hessian_grad_and_value", SMOOTH),
    ("mtp_hessian_grad_and_value", QUADRATIC),  # a constant Hessian: mtp is 0
    ("mhp_jacobian_and_value", SEVERAL_OUTPUTS),
    ("mhp_jacobian_and_value", CUBES),
    ("vjp_and_value", SEVERAL_OUTPUTS),
    ("vjp_and_value", CUBES),
]


@pytest.mark.parametrize("way", list(STRATEGIES))
@pytest.mark.parametrize(("operator", "case"), PRODUCT_CASES, ids=str)
def test_jax_products_computed_each_way(operator, case, way, monkeypatch):
    d = jax_derivative_by(monkeypatch, way, operator, case)
    x = case.point
    outputs = d(x)
    assert strategy(outputs[0]) == way
    rng = np.random.default_rng(3)
    for _ in range(2):  # two arguments, one point: the state serves both
        argument = rng.standard_normal(outputs[0].shape)
        np.testing.assert_allclose(
            outputs[0](argument),
            expected_product(case, x, argument, operator),
            **TOLERANCE,
        )
    below = output_below_the_product(case, operator)
    np.testing.assert_allclose(outputs[1], below(x), **TOLERANCE)


MODE_CASES = [
    *(
        ("jax", way, False, *product)
        for way in STRATEGIES
        for product in [PRODUCT_CASES[0], PRODUCT_CASES[2], PRODUCT_CASES[4]]
    ),
    # Op by op, and batched (products from the points): the same for each product,
    # so the cheaper two, not mtp (5-10 s op by op).
    *(
        (backend, None, batched, *product)
        for backend, batched in [
            ("jax_nojit", False),
            ("jax", True),
            ("jax_nojit", True),
        ]
        for product in [PRODUCT_CASES[2], PRODUCT_CASES[4]]
    ),
]
"""Backend, ``jax``'s strategy, whether batched, operator and case."""


@pytest.mark.parametrize(
    ("backend", "way", "batched", "operator", "case"), MODE_CASES, ids=str
)
@pytest.mark.parametrize("made_x64", [True, False], ids=["made in x64", "made in x32"])
def test_jax_products_compute_in_the_64_bit_mode_they_were_made_in(
    operator, case, backend, way, batched, made_x64, monkeypatch
):
    """Made in or out of a ``jax.enable_x64`` block, applied in the other.

    A float64 ``x`` is computed in float64 in the block, float32 out of it: a product
    keeps that, its result's dtype and precision those of the point it was made at.
    """
    jax = pytest.importorskip("jax")
    if not hasattr(jax, "enable_x64"):
        pytest.skip("this JAX has no jax.enable_x64")
    # Its warning of float64 computed in float32 is given once per process, not here.
    monkeypatch.setattr(backend_module("jax"), "_precision_checked", True)
    if way is None:
        d = derivative(backend, operator, render(case, backend))
    else:
        d = jax_derivative_by(monkeypatch, way, operator, case)
    x = case.point
    with jax.enable_x64(made_x64):
        if batched:
            product = diffops.vectorize(d)(np.stack([x, x]))[0]
        else:
            product = d(x)[0]
            if way is not None:
                assert strategy(product) == way
    rows = (2,) if batched else ()  # a batch: an argument per row
    argument = np.random.default_rng(3).standard_normal((*rows, *product.shape))
    with jax.enable_x64(not made_x64):
        got = product(argument)
    assert got.dtype == (np.float64 if made_x64 else np.float32)
    if batched:
        want = np.stack([expected_product(case, x, a, operator) for a in argument])
    else:
        want = expected_product(case, x, argument, operator)
    tolerance = TOLERANCE if made_x64 else {"rtol": 1e-5, "atol": 1e-5}
    np.testing.assert_allclose(got, want, **tolerance)


@pytest.mark.parametrize("way", list(STRATEGIES))
@pytest.mark.parametrize(
    ("operator", "case"),
    [
        ("mtp_hessian_grad_and_value", SMOOTH),
        ("mhp_jacobian_and_value", SEVERAL_OUTPUTS),
        ("vjp_and_value", SEVERAL_OUTPUTS),
    ],
    ids=str,
)
def test_a_product_stays_at_its_point_and_pickles_each_way(
    operator, case, way, monkeypatch
):
    d = jax_derivative_by(monkeypatch, way, operator, case)
    x = case.point.copy()
    first = d(x)[0]
    assert strategy(first) == way
    point = x.copy()
    x += 0.5  # the caller moves on, in place
    d(x)  # and evaluates at the new point
    argument = np.random.default_rng(4).standard_normal(first.shape)
    kept = argument.copy()
    expected = expected_product(case, point, argument, operator)
    product = first(argument)
    np.testing.assert_allclose(product, expected, **TOLERANCE)
    np.testing.assert_array_equal(argument, kept)  # the argument is only read
    assert product.flags.writeable
    assert product.flags.owndata
    assert not np.shares_memory(product, argument)
    product[...] = np.nan  # the caller's own: the next product is unmoved
    np.testing.assert_allclose(first(argument), expected, **TOLERANCE)
    np.testing.assert_allclose(
        pickle.loads(pickle.dumps(first))(argument), expected, **TOLERANCE
    )


@pytest.mark.parametrize("way", list(STRATEGIES))
@pytest.mark.parametrize("backend", ["jax", "jax_nojit"])
def test_a_jax_product_reads_data_as_its_evaluation_did(backend, way, monkeypatch):
    """Data changed between the evaluation and the product's first use is not read.

    Neither a Python number rebound nor a NumPy array changed in place.
    """
    backend_module("jax")
    import jax.numpy as jnp

    for threshold, value in STRATEGIES[way].items():
        monkeypatch.setattr(backend_module("jax"), threshold, value)
    data, weights = {"scale": 1.0}, np.ones(3)

    def f(x):  # f = s Σ w x³/6: H = s diag(w x), mtp(M) = s w diag(M)
        return data["scale"] * jnp.sum(weights * x**3) / 6

    def c(x):  # c = s w x²: J = s diag(2 w x), vjp(u) = 2 s w x u, mhp = 2 s w diag(M)
        return data["scale"] * weights * x**2

    x = np.array([0.5, -1.0, 2.0])
    mtp, H, _, _ = derivative(backend, "mtp_hessian_grad_and_value", f)(x)
    mhp, J, _ = derivative(backend, "mhp_jacobian_and_value", c)(x)
    vjp, value = derivative(backend, "vjp_and_value", c)(x)
    data["scale"] = 100.0
    weights *= 10.0
    M = np.diag([1.0, 2.0, 3.0])
    np.testing.assert_allclose(value, x**2, **TOLERANCE)
    np.testing.assert_allclose(vjp(np.array([1.0, 2.0, 3.0])), [1, -4, 12], **TOLERANCE)
    np.testing.assert_allclose(J, np.diag(2 * x), **TOLERANCE)
    np.testing.assert_allclose(mhp(M), [2, 4, 6], **TOLERANCE)
    np.testing.assert_allclose(H, np.diag(x), **TOLERANCE)
    np.testing.assert_allclose(mtp(M), [1, 2, 3], **TOLERANCE)


@pytest.mark.parametrize("way", ["table", "kept", "point"])
def test_a_jax_product_jax_cannot_reverse_is_tabulated_or_fails_where_used(
    way, monkeypatch
):
    """Outputs whose derivative one order up JAX cannot reverse still come back.

    Their product then raises JAX's error where it is used, unless it is tabulated:
    its table is computed forward, which JAX can do.
    """
    jax_backend = backend_module("jax")
    import jax
    import jax.numpy as jnp

    for threshold, value in STRATEGIES[way].items():
        monkeypatch.setattr(jax_backend, threshold, value)

    def square_by_loop(x):  # x² as x²/3 three times, by a while_loop: forward only
        def body(carry):
            i, total = carry
            return i + 1, total + x * x / 3

        return jax.lax.while_loop(
            lambda carry: carry[0] < 3, body, (0, jnp.zeros_like(x))
        )[1]

    @jax.custom_jvp
    def f(x):  # f = Σ x³/3: g = x², H = diag(2x)
        return jnp.sum(x**3) / 3

    @f.defjvp
    def f_jvp(primals, tangents):
        (x,), (t,) = primals, tangents
        return f(x), jnp.sum(square_by_loop(x) * t)

    x = np.array([0.5, -1.0, 2.0])
    mtp, H, g, _ = derivative("jax", "mtp_hessian_grad_and_value", f)(x)
    np.testing.assert_allclose(H, np.diag(2 * x), **TOLERANCE)
    np.testing.assert_allclose(g, x**2, **TOLERANCE)
    assert strategy(mtp) == way
    M = np.arange(9.0).reshape(3, 3)
    if way == "table":  # ∂³f/∂x_i∂x_j∂x_k = 2 where i = j = k: mtp(M) = 2 diag(M)
        np.testing.assert_allclose(mtp(M), 2 * np.diag(M), **TOLERANCE)
        return
    with pytest.raises(ValueError, match="Reverse-mode differentiation does not work"):
        mtp(M)


def test_jax_nojit_products_keep_the_residuals():
    backend_module("jax")
    d = derivative("jax_nojit", "mtp_hessian_grad_and_value", render(SMOOTH, "jax"))
    product = d(SMOOTH.point)[0]
    assert strategy(product) == "residuals"
    argument = np.random.default_rng(5).standard_normal(product.shape)
    np.testing.assert_allclose(
        product(argument), expected_product(SMOOTH, SMOOTH.point, argument), **TOLERANCE
    )


@pytest.mark.parametrize(
    ("threshold", "value", "way"),
    [
        ("TABULATE_UP_TO", 4**3, "table"),  # SMOOTH's table: 16 rows of n = 4
        ("TABULATE_UP_TO", 4**3 - 1, "kept"),
        ("TABULATE_FLOPS", 10**12, "table"),
        ("TABULATE_FLOPS", -(10**12), "kept"),
    ],
)
def test_a_jax_product_is_tabulated_on_one_side_of_each_threshold(
    threshold, value, way, monkeypatch
):
    jax_backend = backend_module("jax")
    monkeypatch.setattr(jax_backend, "TABULATE_UP_TO", 10**6)
    monkeypatch.setattr(jax_backend, "TABULATE_FLOPS", 10**12)
    monkeypatch.setattr(jax_backend, threshold, value)
    d = derivative("jax", "mtp_hessian_grad_and_value", render(SMOOTH, "jax"))
    x = SMOOTH.point
    mtp, H, _, _ = d(x)
    assert strategy(mtp) == way
    M = np.random.default_rng(6).standard_normal((4, 4))
    np.testing.assert_allclose(mtp(M), expected_product(SMOOTH, x, M), **TOLERANCE)
    np.testing.assert_allclose(H, SMOOTH.hessian(x), **TOLERANCE)


def test_a_product_dear_to_tabulate_keeps_the_residuals():
    """At the default thresholds: a small, cheap table is made, a dear one is not."""
    backend_module("jax")
    import jax.numpy as jnp

    W = np.random.default_rng(7).standard_normal((20_000, 4)) / 100

    def dear(x):  # f = Σ log cosh(W x): H = Wᵀ diag(sech²(W x)) W
        return jnp.sum(jnp.log(jnp.cosh(W @ x)))

    x = np.array([0.3, -0.2, 0.5, 0.1])
    mtp = derivative("jax", "mtp_hessian_grad_and_value", dear)(x)[0]
    assert strategy(mtp) == "residuals"  # 11 arrays of up to 80 000 numbers
    cheap = derivative("jax", "mtp_hessian_grad_and_value", render(SMOOTH, "jax"))
    assert strategy(cheap(SMOOTH.point)[0]) == "table"
    M = np.random.default_rng(8).standard_normal((4, 4))
    t = np.tanh(W @ x)  # ∂/∂x_k Σ_ij M_ij H_ij = Σ_r (w_rᵀ M w_r) (-2 t s²)_r W_rk
    weights = np.einsum("ri,ij,rj->r", W, M, W) * -2 * t * (1 - t**2)
    np.testing.assert_allclose(mtp(M), weights @ W, **TOLERANCE)


def test_a_jax_product_is_not_tabulated_where_xla_counts_no_cost(monkeypatch):
    jax_backend = backend_module("jax")
    monkeypatch.setattr(jax_backend, "_flops", lambda lowered: None)
    d = derivative("jax", "mtp_hessian_grad_and_value", render(SMOOTH, "jax"))
    mtp = d(SMOOTH.point)[0]
    assert strategy(mtp) == "kept"
    M = np.eye(4)
    np.testing.assert_allclose(
        mtp(M), expected_product(SMOOTH, SMOOTH.point, M), **TOLERANCE
    )


@pytest.mark.parametrize("check", ["jax_debug_nans", "jax_debug_infs"])
def test_products_are_not_tabulated_where_jax_checks_for_nan(check):
    """f = Σ x^(5/2) at x₀ = 0: finite H, an infinite third derivative in its table.

    With JAX's check on where a length is first called, the call returns the
    outputs, as without a table, and the product is computed from its point: the
    residuals would hold the infinity too.
    """
    backend_module("jax")
    import jax
    import jax.numpy as jnp

    d = derivative("jax", "mtp_hessian_grad_and_value", lambda x: jnp.sum(x**2.5))
    x = np.array([0.0, 1.0, 2.0])
    jax.config.update(check, True)
    try:
        mtp, H, g, _ = d(x)
        assert strategy(mtp) == "point"
        np.testing.assert_allclose(H, np.diag(3.75 * x**0.5), **TOLERANCE)
        np.testing.assert_allclose(g, 2.5 * x**1.5, **TOLERANCE)
        with np.errstate(divide="ignore"):
            third = 1.875 * x**-0.5  # ∂³f/∂x_i³, infinite at 0
        if check == "jax_debug_nans":
            np.testing.assert_allclose(mtp(np.eye(3)), third, **TOLERANCE)
    finally:
        jax.config.update(check, False)
    at = np.array([0.5, 1.0, 2.0, 3.0])  # a length first called unchecked
    mtp = d(at)[0]
    assert strategy(mtp) == "table"
    np.testing.assert_allclose(mtp(np.eye(4)), 1.875 * at**-0.5, **TOLERANCE)


@pytest.mark.parametrize("operator", ["mtp", "mhp", "vjp"])
def test_a_table_with_an_infinite_derivative_gives_no_finite_wrong_product(operator):
    """Where a derivative is infinite (of x^(5/2) at 0), a table computed forward
    holds NaN where the true derivative is 0 (docs/operators.md): its product may be
    NaN in entries the product from the point has finite, but is never finite and
    wrong.
    """
    backend_module("jax")
    import jax.numpy as jnp

    x, at = np.array([0.0, 0.5, 1.0]), np.array([0.5, 0.5, 1.0])
    if operator == "mtp":  # f = Σ|x|^(5/2) + x₁²x₂²: ∂³f/∂x₁∂x₂∂x_k = (0, 4x₂, 4x₁)
        func = lambda x: jnp.sum(jnp.abs(x) ** 2.5) + x[1] ** 2 * x[2] ** 2  # noqa: E731
        argument = np.zeros((3, 3))
        argument[1, 2] = argument[2, 1] = 1.0

        def expected(x):
            return [0.0, 8 * x[2], 8 * x[1]]

    elif operator == "mhp":  # c = (x₁ x₀^(3/2), x₁², x₀x₁, x₂): ∂²c₁/∂x₁² = 2
        func = lambda x: jnp.stack(  # noqa: E731
            [x[1] * x[0] ** 1.5, x[1] ** 2, x[0] * x[1], x[2]]
        )
        argument = np.zeros((4, 3))
        argument[1, 1] = 1.0

        def expected(x):
            return [0.0, 2.0, 0.0]

    else:  # c = (x₁√x₀, x₁, x₀ + x₁, x₂): m > n, computed forward; uᵀJ at u = e₁+e₂
        func = lambda x: jnp.stack(  # noqa: E731
            [x[1] * jnp.sqrt(x[0]), x[1], x[0] + x[1], x[2]]
        )
        argument = np.array([0.0, 1.0, 1.0, 0.0])

        def expected(x):
            return [1.0, 2.0, 0.0]

    name = {"mtp": "mtp_hessian_grad_and_value", "mhp": "mhp_jacobian_and_value"}
    d = derivative("jax", name.get(operator, "vjp_and_value"), func)
    regular, singular = d(at)[0], d(x)[0]
    assert strategy(regular) == strategy(singular) == "table"
    np.testing.assert_allclose(regular(argument), expected(at), **TOLERANCE)
    with np.errstate(invalid="ignore"):  # inf times 0 in NumPy's product: NaN
        product = singular(argument)
    assert not np.isfinite(product).all()
    finite = np.isfinite(product)
    np.testing.assert_allclose(product[finite], np.array(expected(x))[finite])


def test_a_function_that_loops_is_not_tabulated_unless_it_must_be():
    """XLA counts a loop's body once: the cost of its table is unknown."""
    backend_module("jax")
    import jax
    import jax.numpy as jnp

    def f(x):  # Σ x³/6 added up by a loop of 3 steps: H = diag(x)/... see below
        return jax.lax.fori_loop(0, 3, lambda i, total: total + jnp.sum(x**3) / 18, 0.0)

    x = np.array([0.5, -1.0, 2.0])
    mtp, H, _, _ = derivative("jax", "mtp_hessian_grad_and_value", f)(x)
    assert strategy(mtp) == "kept"
    np.testing.assert_allclose(H, np.diag(x), **TOLERANCE)  # f = Σ x³/6
    M = np.arange(9.0).reshape(3, 3)
    np.testing.assert_allclose(mtp(M), np.diag(M), **TOLERANCE)


@pytest.mark.parametrize("unavailable", ["none", "raises"])
def test_a_cost_the_lowered_computation_cannot_count_is_counted_compiled(unavailable):
    """As on CUDA, a plugin platform: the lowered analysis is None (or raises)."""
    jax_backend = backend_module("jax")
    import jax
    import jax.numpy as jnp

    point = jax.ShapeDtypeStruct((3,), np.float64)
    lowered = jax.jit(lambda x: jnp.sum(x * x) + jnp.prod(x)).trace(point).lower()

    class Plugin:  # the lowered computation as a plugin platform's is
        def cost_analysis(self) -> dict | None:
            if unavailable == "raises":
                raise NotImplementedError
            return None  # what JAX's Lowered.cost_analysis returns on CUDA

        def compile(self):
            return lowered.compile()

    counted = jax_backend._flops(Plugin())
    assert counted == jax_backend._flops(lowered.compile())
    assert counted >= 5  # 3 products, 2 sums at least, and XLA counts them


def test_a_vjp_whose_table_jax_cannot_compute_forward_keeps_the_residuals():
    """A ``custom_vjp`` function has no forward derivative: a table of ``m >= n``
    rows, computed forward, cannot be made; the product keeps the residuals."""
    backend_module("jax")
    import jax
    import jax.numpy as jnp

    @jax.custom_vjp
    def c(x):  # c = sin x: J = diag(cos x), vjp(u) = u cos x
        return jnp.sin(x)

    c.defvjp(lambda x: (jnp.sin(x), x), lambda x, u: (jnp.cos(x) * u,))
    x = np.array([0.5, -1.0, 2.0])
    vjp, value = derivative("jax", "vjp_and_value", c)(x)
    assert strategy(vjp) == "kept"
    u = np.array([1.0, 2.0, -3.0])
    np.testing.assert_allclose(vjp(u), u * np.cos(x), **TOLERANCE)
    np.testing.assert_allclose(value, np.sin(x), **TOLERANCE)


@pytest.mark.parametrize("backend", ["jax", "jax_nojit"])
def test_a_custom_vjp_function_has_a_hessian_but_no_forward_jacobian(backend):
    """As docs/operators.md says: forward over reverse differentiates the rule."""
    backend_module("jax")
    import jax
    import jax.numpy as jnp

    @jax.custom_vjp
    def sine(x):
        return jnp.sin(x)

    sine.defvjp(lambda x: (jnp.sin(x), x), lambda x, u: (jnp.cos(x) * u,))
    x = np.array([0.3, -0.5, 1.1])
    H, g, v = derivative(
        backend, "hessian_grad_and_value", lambda x: jnp.sum(sine(x)) ** 2
    )(x)
    np.testing.assert_allclose(v, np.sum(np.sin(x)) ** 2, **TOLERANCE)
    s = np.sum(np.sin(x))  # f = s²: g = 2 s cos x, H = 2 cos x cos xᵀ - 2 s diag(sin x)
    np.testing.assert_allclose(g, 2 * s * np.cos(x), **TOLERANCE)
    hessian = 2 * np.outer(np.cos(x), np.cos(x)) - 2 * s * np.diag(np.sin(x))
    np.testing.assert_allclose(H, hessian, **TOLERANCE)
    wide = derivative(  # m = 2n rows: computed forward
        backend, "jacobian_and_value", lambda x: jnp.concatenate([sine(x), sine(x)])
    )
    with pytest.raises(TypeError):
        wide(x)


@pytest.mark.parametrize(("operator", "case"), PRODUCT_CASES[::2], ids=str)
def test_a_tabulated_product_in_float32_and_from_threads(operator, case):
    backend_module("jax")
    d = derivative("jax", operator, render(case, "jax"))
    x = case.point.astype(np.float32)
    product = d(x)[0]
    assert strategy(product) == "table"
    arguments = np.random.default_rng(9).standard_normal((8, *product.shape))
    expected = [
        expected_product(case, x.astype(float), argument, operator)
        for argument in arguments
    ]
    results = [None] * len(arguments)

    def work(i):
        results[i] = product(arguments[i])

    assert not in_threads(work, len(arguments))
    for result, wanted in zip(results, expected, strict=True):
        assert result.dtype == np.float32
        np.testing.assert_allclose(result, wanted, rtol=1e-5, atol=1e-5)


RUN_ONCE_CASES = [
    *((operator, SMOOTH) for operator in SCALAR_OPERATORS),
    *(
        (operator, case)
        for operator in VECTOR_OPERATORS
        for case in (CUBES, TAIL, SEVERAL_OUTPUTS)  # m = n, m < n, m > n
    ),
]


@pytest.mark.parametrize(
    "backend", [installed(b) for b in ("jax_nojit", "autograd", "torch")]
)
@pytest.mark.parametrize(("operator", "case"), RUN_ONCE_CASES, ids=str)
def test_uncompiled_backends_run_func_once_a_call_and_not_in_a_product(
    backend, operator, case
):
    # Op by op, every pass runs the user's Python: a jax_nojit Jacobian ran func
    # twice, an abstract trace for m before the pass, which compiled code pays for
    # only when traced. Now func is linearised once (transposed where m <= n).
    rendered, runs = render(case, backend), []

    def counted(x):
        runs.append(None)
        return rendered(x)

    d = derivative(backend, operator, counted)
    argument = argument_for(operator, case.point, case)
    outputs = list(d(case.point))
    assert len(runs) == 1
    if argument is not None:
        outputs[0] = outputs[0](argument)
        assert len(runs) == 1
    expected = expected_outputs(case, operator, case.point, argument)
    for output, wanted in zip(outputs, expected, strict=True):
        np.testing.assert_allclose(output, wanted, **TOLERANCE)


def packed(derivative_function, x) -> bool:
    """Whether a ``jax`` derivative function computed its outputs at ``x`` packed."""
    return type(derivative_function.evaluate.plans[(x.size, x.dtype)]) is tuple


def assert_the_callers_own(outputs, x) -> None:
    """Writable arrays that own their memory and share it with nothing."""
    arrays = [output for output in outputs if isinstance(output, np.ndarray)]
    for i, array in enumerate(arrays):
        assert array.flags.writeable
        assert array.flags.owndata
        assert array.base is None
        assert not np.shares_memory(array, x)
        for other in arrays[i + 1 :]:
            assert not np.shares_memory(array, other)
    kept = [np.array(output) for output in outputs]
    for array in arrays:  # overwriting one output leaves every other as it was
        array[...] = np.nan
        for output, before in zip(outputs, kept, strict=True):
            if output is not array:
                np.testing.assert_array_equal(output, before)
        array[...] = kept[[o is array for o in outputs].index(True)]


PACKED_CASES = [
    ("grad_and_value", SMOOTH),
    ("hessian_grad_and_value", SMOOTH),
    ("jacobian_and_value", SEVERAL_OUTPUTS),
    ("mtp_hessian_grad_and_value", SMOOTH),
    ("mhp_jacobian_and_value", SEVERAL_OUTPUTS),
    ("vjp_and_value", SEVERAL_OUTPUTS),  # c(x) alone: never packed
]


@pytest.mark.parametrize("pack_up_to", [10_000, 0], ids=["below", "above"])
@pytest.mark.parametrize(("operator", "case"), PACKED_CASES, ids=str)
def test_jax_outputs_on_both_sides_of_the_packing_threshold(
    operator, case, pack_up_to, monkeypatch
):
    d = jax_derivative_with(monkeypatch, "PACK_UP_TO", pack_up_to, operator, case)
    x = case.point.copy()
    argument = argument_for(operator, x, case, seed=8)
    expected = expected_outputs(case, operator, x, argument)
    outputs = list(d(x))
    product = outputs.pop(0) if callable(outputs[0]) else None
    product_expected = expected.pop(0) if product is not None else None
    # A product's outputs are packed with its residuals whatever PACK_UP_TO says.
    assert packed(d, x) == (
        product is not None or (pack_up_to > 0 and len(outputs) > 1)
    )
    for output, wanted in zip(outputs, expected, strict=True):
        np.testing.assert_allclose(output, wanted, **TOLERANCE)
    assert isinstance(outputs[-1], np.floating | np.ndarray)
    if isinstance(case, ScalarCase):
        assert isinstance(outputs[-1], np.float64)  # a NumPy scalar, packed or not
    assert_the_callers_own(outputs, x)
    x += 0.5  # in place: nothing returned moves, the product stays at its point
    for output, wanted in zip(outputs, expected, strict=True):
        np.testing.assert_allclose(output, wanted, **TOLERANCE)
    if product is not None:
        np.testing.assert_allclose(product(argument), product_expected, **TOLERANCE)


def test_jax_packs_small_outputs_only_and_each_size_its_own_way():
    """One derivative function, at sizes either side of PACK_UP_TO, in either order."""
    jax_backend = backend_module("jax")
    import jax.numpy as jnp

    def f(x):  # f = Σ x³/6: g = x²/2, H = diag(x)
        return jnp.sum(x**3) / 6

    d = derivative("jax", "hessian_grad_and_value", f)
    small = 3  # 9 + 3 + 1 numbers
    large = int(np.sqrt(jax_backend.PACK_UP_TO)) + 1  # n² alone is over the limit
    for n in (small, large, small, large):
        for dtype in (np.float64, np.float32):
            x = np.linspace(-1.0, 2.0, n, dtype=dtype)
            H, g, v = d(x)
            assert packed(d, x) == (n == small)
            assert_the_callers_own([H, g, v], x)
            assert H.dtype == g.dtype == dtype
            assert type(v) is dtype
            tolerance = TOLERANCE if dtype == np.float64 else {"rtol": 1e-6}
            np.testing.assert_allclose(H, np.diag(x), **tolerance)
            np.testing.assert_allclose(g, x**2 / 2, **tolerance)
            np.testing.assert_allclose(v, np.sum(x.astype(float) ** 3) / 6, **tolerance)


@pytest.mark.parametrize("pack_up_to", [10_000, 0], ids=["packed", "separate"])
@pytest.mark.parametrize(
    "operator", ["jacobian_and_value", "vjp_and_value", "vjp_and_value kept"]
)
def test_jax_outputs_whose_shape_data_changed_are_planned_again(
    operator, pack_up_to, monkeypatch
):
    """After jax.clear_caches(), JAX traces again, reading the data as they are.

    A product that keeps the residuals then takes them apart as the new trace
    packed them.
    """
    jax_backend = backend_module("jax")
    import jax

    monkeypatch.setattr(jax_backend, "PACK_UP_TO", pack_up_to)
    operator, _, kept = operator.partition(" ")
    if kept:
        monkeypatch.setattr(jax_backend, "TABULATE_UP_TO", 0)
    data = {"weights": np.array([1.0, 2.0])}

    def c(x):  # one residual per weight: c = x₀ w + x₁², J = [w, 2 x₁]
        return x[0] * data["weights"] + x[1] ** 2

    d = derivative("jax", operator, c)
    x = np.array([0.5, 3.0])
    d(x)
    data["weights"] = np.array([1.0, 2.0, 4.0])
    jax.clear_caches()
    outputs = d(x)
    weights = data["weights"]
    np.testing.assert_allclose(outputs[-1], 0.5 * weights + 9.0, **TOLERANCE)
    if operator == "jacobian_and_value":
        jacobian = np.stack([weights, np.full(3, 6.0)], axis=1)
        np.testing.assert_allclose(outputs[0], jacobian, **TOLERANCE)
    else:
        assert strategy(outputs[0]) == ("kept" if kept else "table")
        u = np.array([1.0, -1.0, 2.0])
        expected = [u @ weights, 6 * u.sum()]  # u @ J
        np.testing.assert_allclose(outputs[0](u), expected, **TOLERANCE)


def test_threads_first_calling_at_once_get_their_own_outputs():
    backend_module("jax")
    d = derivative("jax", "hessian_grad_and_value", render(SMOOTH, "jax"))
    points = SMOOTH.point + np.linspace(0.0, 0.3, 8)[:, None]
    results = [None] * len(points)

    def work(i):
        results[i] = d(points[i])

    assert not in_threads(work, len(points))
    for x, (H, g, v) in zip(points, results, strict=True):
        np.testing.assert_allclose(H, SMOOTH.hessian(x), **TOLERANCE)
        np.testing.assert_allclose(g, SMOOTH.grad(x), **TOLERANCE)
        np.testing.assert_allclose(v, SMOOTH.value(x), **TOLERANCE)


# The torch tape's edge cases.


def _torch_functions():
    torch = backend_module("torch").torch
    return torch, {
        "constant": lambda x: torch.tensor(2.0, dtype=x.dtype),
        "linear": lambda x: torch.sum(3 * x),
        "quadratic": lambda x: torch.sum(x**2) / 2,
    }


@pytest.mark.parametrize("kind", ["constant", "linear", "quadratic"])
def test_torch_derivatives_that_vanish_are_zeros(kind):
    _, functions = _torch_functions()
    x = np.array([0.5, -1.0, 2.0])
    d = derivative("torch", "mtp_hessian_grad_and_value", functions[kind])
    mtp, H, g, _ = d(x)
    grad = {"constant": 0 * x, "linear": 3 + 0 * x, "quadratic": x}[kind]
    hessian = np.eye(3) if kind == "quadratic" else np.zeros((3, 3))
    np.testing.assert_allclose(g, grad, **TOLERANCE)
    np.testing.assert_allclose(H, hessian, **TOLERANCE)
    np.testing.assert_array_equal(mtp(np.ones((3, 3))), np.zeros(3))
    assert g.dtype == H.dtype == np.float64


@pytest.mark.parametrize("mode", ["no_grad", "inference_mode"])
def test_torch_records_where_the_caller_turned_recording_off(mode):
    torch, _ = _torch_functions()
    x = np.array([0.5, -1.0, 2.0])

    def f(x):  # f = Σ x³/6: g = x²/2, H = diag(x), mtp(M) = diag(M)
        return torch.sum(x**3) / 6

    def c(x):  # c = x²: J = diag(2x), vjp(u) = 2 u x, mhp(M) = 2 diag(M)
        return x**2

    with getattr(torch, mode)():
        mtp, H, g, v = derivative("torch", "mtp_hessian_grad_and_value", f)(x)
        mhp, J, _ = derivative("torch", "mhp_jacobian_and_value", c)(x)
        vjp, _ = derivative("torch", "vjp_and_value", c)(x)
        inside = mtp(np.eye(3))
    np.testing.assert_allclose(H, np.diag(x), **TOLERANCE)
    np.testing.assert_allclose(g, x**2 / 2, **TOLERANCE)
    np.testing.assert_allclose(v, np.sum(x**3) / 6, **TOLERANCE)
    np.testing.assert_allclose(J, np.diag(2 * x), **TOLERANCE)
    np.testing.assert_allclose(inside, np.ones(3), **TOLERANCE)
    # Applied after recording is back on, too.
    np.testing.assert_allclose(mtp(np.diag([1.0, 2.0, 3.0])), [1, 2, 3], **TOLERANCE)
    np.testing.assert_allclose(mhp(np.ones((3, 3))), 2 * np.ones(3), **TOLERANCE)
    np.testing.assert_allclose(vjp(np.ones(3)), 2 * x, **TOLERANCE)


@pytest.mark.filterwarnings("ignore:Anomaly Detection has been enabled")
@pytest.mark.parametrize("seen", [True, False], ids=["seen", "turned-on-after"])
def test_torch_differentiates_under_anomaly_detection(monkeypatch, seen):
    """Whose checks the batched pullback cannot run: the rows go one by one.

    Anomaly mode is process-wide, so another thread may turn it on after diffops
    looked (``turned-on-after``, as if it had been off when looked at): the batched
    pass then finds no batching rule, and the rows go one by one too.
    """
    torch, _ = _torch_functions()
    if not seen:
        monkeypatch.setattr(torch, "is_anomaly_enabled", lambda: False)
    x = np.array([0.5, -1.0, 2.0])

    def f(x):  # f = Σ x³/6: g = x²/2, H = diag(x), mtp(M) = diag(M)
        return torch.sum(x**3) / 6

    def c(x):  # c = (x₀ x₁, x₂²): J = [[x₁, x₀, 0], [0, 0, 2 x₂]]
        return torch.stack([x[0] * x[1], x[2] ** 2])

    M = np.arange(6.0).reshape(2, 3)
    with torch.autograd.detect_anomaly():
        mtp, H, g, _ = derivative("torch", "mtp_hessian_grad_and_value", f)(x)
        mhp, J, _ = derivative("torch", "mhp_jacobian_and_value", c)(x)
        products = mtp(np.diag([1.0, 2.0, 3.0])), mhp(M)
    np.testing.assert_allclose(H, np.diag(x), **TOLERANCE)
    np.testing.assert_allclose(g, x**2 / 2, **TOLERANCE)
    np.testing.assert_allclose(J, [[x[1], x[0], 0], [0, 0, 2 * x[2]]], **TOLERANCE)
    np.testing.assert_allclose(products[0], [1, 2, 3], **TOLERANCE)
    expected = [M[0, 1], M[0, 0], 2 * M[1, 2]]  # ∂/∂x Σ M ∘ J
    np.testing.assert_allclose(products[1], expected, **TOLERANCE)


@pytest.mark.parametrize("reading", ["item", "tolist"])
def test_torch_pulls_rows_back_one_by_one_where_a_backward_cannot_be_batched(reading):
    """A backward of the user's that reads numbers from its cotangent.

    PyTorch cannot batch it (no batching rule for ``aten::item``; a batched tensor
    has no storage to read for ``.tolist()``), so the rows of the Jacobian are pulled
    back one by one, and come out right.
    """
    torch, _ = _torch_functions()

    def total(cotangent):
        if reading == "item":
            return cotangent.abs().sum().item()
        return sum(abs(entry) for entry in cotangent.tolist())

    class Cube(torch.autograd.Function):  # y = x³, whose backward checks its input
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x**3

        @staticmethod
        def backward(ctx, cotangent):
            (x,) = ctx.saved_tensors
            if total(cotangent) == 0:  # numbers read: the pass cannot be batched
                return torch.zeros_like(x)
            return cotangent * 3 * x**2

    x = np.array([0.5, -1.0, 2.0])
    M = np.arange(9.0).reshape(3, 3)
    for operator in ("jacobian_and_value", "mhp_jacobian_and_value"):
        *mhp, J, value = derivative("torch", operator, Cube.apply)(x)
        np.testing.assert_allclose(J, np.diag(3 * x**2), **TOLERANCE)
        np.testing.assert_allclose(value, x**3, **TOLERANCE)
    # mhp(M) = ∂/∂x Σ M ∘ J = 6 x ∘ diag(M)
    np.testing.assert_allclose(mhp[0](M), 6 * x * np.diag(M), **TOLERANCE)


def test_torch_pulls_rows_back_one_by_one_where_vmap_refuses_a_backward():
    """A backward that scatters into a buffer of its own (``index_add_``).

    ``vmap`` refuses an in-place operation on an unbatched tensor with a batched
    argument, so the Hessian's and the Jacobian's rows go one by one.
    """
    torch, _ = _torch_functions()
    order = torch.tensor([2, 0])

    class Gather(torch.autograd.Function):  # y = (x₂, x₀)
        @staticmethod
        def forward(ctx, x):
            ctx.n = x.shape[0]
            return x[order].clone()

        @staticmethod
        def backward(ctx, cotangent):
            scattered = torch.zeros(ctx.n, dtype=cotangent.dtype)
            scattered.index_add_(0, order, cotangent)  # in place: vmap refuses it
            return scattered

    x = np.array([0.3, -0.7, 1.1])
    J, value = derivative("torch", "jacobian_and_value", Gather.apply)(x)
    np.testing.assert_allclose(J, [[0, 0, 1], [1, 0, 0]], **TOLERANCE)
    np.testing.assert_allclose(value, [x[2], x[0]], **TOLERANCE)

    def f(x):  # f = x₂³ + x₀³: H = diag(6 x₀, 0, 6 x₂)
        return torch.sum(Gather.apply(x) ** 3)

    H, g, _ = derivative("torch", "hessian_grad_and_value", f)(x)
    np.testing.assert_allclose(H, np.diag([6 * x[0], 0, 6 * x[2]]), **TOLERANCE)
    np.testing.assert_allclose(g, [3 * x[0] ** 2, 0, 3 * x[2] ** 2], **TOLERANCE)


@pytest.mark.parametrize("operator", ["grad_and_value", "jacobian_and_value"])
def test_torch_outputs_a_backward_computed_in_grad_mode(operator):
    """A backward that differentiates inside ``torch.enable_grad()``, as implicit
    layers do: the derivative PyTorch returns still requires grad, and is detached
    before it becomes NumPy, on the one-frame path as on the general one."""
    torch, _ = _torch_functions()

    class Square(torch.autograd.Function):  # y = x², its derivative by autograd
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * x

        @staticmethod
        def backward(ctx, cotangent):
            (x,) = ctx.saved_tensors
            with torch.enable_grad():
                leaf = x.detach().requires_grad_(True)
                (derivative_,) = torch.autograd.grad(
                    leaf * leaf, leaf, cotangent, create_graph=True
                )
            return derivative_

    def f(x):
        applied = Square.apply(x)
        return torch.sum(applied) if operator == "grad_and_value" else applied

    x = np.array([0.3, -0.7, 1.1])
    function = derivative("torch", operator, f)
    for point in (x, list(x)):  # the one-frame path and the general one
        derivative_, _ = function(point)
        expected = 2 * x if operator == "grad_and_value" else np.diag(2 * x)
        np.testing.assert_allclose(derivative_, expected, **TOLERANCE)


@pytest.mark.parametrize("operator", OPERATORS)
def test_torch_calls_each_transform_itself_where_the_graph_is_recorded(operator):
    # The per-call path skips _recording's wrapper only for this module's transforms.
    backend_module("torch")
    made = derivative("torch", operator, lambda x: x)
    assert made.evaluate.transform is not None


def test_a_torch_framework_derivative_of_another_transform_still_records():
    torch, _ = _torch_functions()
    from diffops.backends import torch as torch_backend
    from diffops.functions import FrameworkDerivative

    def transform(func, x):  # written by a user, not wrapped by _recording
        value = func(x)
        (grad,) = torch.autograd.grad(value, x)
        return grad, value.detach()

    def f(x):  # f = Σ x³/6: g = x²/2
        return torch.sum(x**3) / 6

    made = torch_backend.return_numpy_arrays(
        FrameworkDerivative("grad_and_value", transform, f)
    )
    assert made.evaluate.transform is None
    x = np.array([0.5, -1.0, 2.0])
    g, v = made(x)
    np.testing.assert_allclose(g, x**2 / 2, **TOLERANCE)
    np.testing.assert_allclose(v, np.sum(x**3) / 6, **TOLERANCE)


def test_a_torch_product_whose_data_changed_in_place_says_so():
    torch, _ = _torch_functions()
    data = torch.tensor([1.0, 2.0], dtype=torch.float64)

    def c(x):
        return data * x[:2] ** 2

    vjp, _ = derivative("torch", "vjp_and_value", c)(np.array([0.5, -1.0, 2.0]))
    data.mul_(10.0)  # an optimiser step, the next batch of data
    with pytest.raises(TypeError, match=r"changed in place after the product"):
        vjp(np.ones(2))


def test_torch_takes_detach_as_a_constant_as_pytorch_does():
    torch, _ = _torch_functions()
    x = np.array([0.5, -1.0, 2.0])

    def f(x):
        return torch.sum(x**2) / 2 + torch.sum(x.detach() ** 3)

    g, v = derivative("torch", "grad_and_value", f)(x)
    np.testing.assert_allclose(g, x, **TOLERANCE)  # the detached term counts as 0
    np.testing.assert_allclose(v, x @ x / 2 + np.sum(x**3), **TOLERANCE)


def torch_backward_by(engine: bool, monkeypatch):
    """The torch backend, its single backward passes by the engine or not."""
    torch_backend = backend_module("torch")
    if not engine:
        monkeypatch.setattr(torch_backend, "_ENGINE", None)
    elif torch_backend._ENGINE is None:
        pytest.skip("this PyTorch has no _engine_run_backward")
    return torch_backend


ALL_CASES = [*PACKED_CASES, ("vjp_and_value", SEVERAL_OUTPUTS)]


@pytest.mark.parametrize("engine", [True, False], ids=["engine", "autograd.grad"])
@pytest.mark.parametrize(("operator", "case"), ALL_CASES, ids=str)
def test_torch_backward_passes_by_the_engine_or_by_autograd_grad(
    operator, case, engine, monkeypatch
):
    torch_backward_by(engine, monkeypatch)
    d = derivative("torch", operator, render(case, "torch"))
    x = case.point.copy()
    argument = argument_for(operator, x, case, seed=9)
    for _ in range(2):  # the product's graph is kept for a second pass
        outputs = evaluate(d, x, argument)
        expected = expected_outputs(case, operator, x, argument)
        for output, wanted in zip(outputs, expected, strict=True):
            np.testing.assert_allclose(output, wanted, **TOLERANCE)


@pytest.mark.parametrize("engine", [True, False], ids=["engine", "autograd.grad"])
def test_torch_backward_passes_under_a_torch_function_mode(engine, monkeypatch):
    """A ``__torch_function__`` mode (here ``torch.device``) sees every pass."""
    torch_backend = torch_backward_by(engine, monkeypatch)
    torch = torch_backend.torch
    x = SMOOTH.point
    M = np.random.default_rng(10).standard_normal((x.size, x.size))
    seen = []

    class Watching(torch.overrides.TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            seen.append(getattr(func, "__name__", str(func)))
            return func(*args, **(kwargs or {}))

    d = derivative("torch", "mtp_hessian_grad_and_value", render(SMOOTH, "torch"))
    with Watching():
        mtp, H, g, _ = d(x)
        product = mtp(M)
    assert "grad" in seen  # torch.autograd.grad, which the mode may override
    np.testing.assert_allclose(H, SMOOTH.hessian(x), **TOLERANCE)
    np.testing.assert_allclose(g, SMOOTH.grad(x), **TOLERANCE)
    np.testing.assert_allclose(product, expected_product(SMOOTH, x, M), **TOLERANCE)


@pytest.mark.parametrize("engine", [True, False], ids=["engine", "autograd.grad"])
def test_torch_a_function_of_parameters_alone_has_zero_derivatives(engine, monkeypatch):
    """Its value records a graph (from a parameter), on which x is not."""
    torch = torch_backward_by(engine, monkeypatch).torch
    weight = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
    x = np.array([0.5, -1.0, 2.0])

    def f(x):
        return weight * torch.sum(x.detach() ** 2)

    def c(x):
        return weight * x.detach() ** 2

    mtp, H, g, v = derivative("torch", "mtp_hessian_grad_and_value", f)(x)
    vjp, value = derivative("torch", "vjp_and_value", c)(x)
    np.testing.assert_array_equal(g, np.zeros(3))
    np.testing.assert_array_equal(H, np.zeros((3, 3)))
    np.testing.assert_array_equal(mtp(np.ones((3, 3))), np.zeros(3))
    np.testing.assert_array_equal(vjp(np.ones(3)), np.zeros(3))
    np.testing.assert_allclose(v, 2 * x @ x, **TOLERANCE)
    np.testing.assert_allclose(value, 2 * x**2, **TOLERANCE)
    assert weight.grad is None  # nothing accumulated into the parameter


@pytest.mark.filterwarnings("error::UserWarning")  # none for a read-only one
def test_a_torch_pullback_takes_any_cotangent_of_its_shape():
    torch_backend = backend_module("torch")
    torch = torch_backend.torch
    vjp, _ = torch_backend.vjp_and_value(lambda x: x**2)(
        torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    )
    read_only = np.ones(3)
    read_only.flags.writeable = False
    for cotangent in (
        np.ones(3),
        np.ones(3, dtype=np.float32),
        read_only,
        np.ones(3, dtype=">f8"),  # big-endian
        np.ones(6)[::-2],  # negative strides
        [1.0, 1.0, 1.0],
        torch.ones(3),
    ):
        np.testing.assert_allclose(vjp(cotangent).numpy(), [1.0, -2.0, 4.0])
    with pytest.raises(ValueError, match=r"the shape of y, \(3,\); got \(2,\)"):
        vjp(np.ones(2))


@pytest.mark.parametrize(("operator", "case"), PRODUCT_CASES, ids=str)
def test_torch_one_point_and_many_agree(operator, case):
    """The tape (one point) and torch.func (many points) give the same outputs."""
    backend_module("torch")
    d = derivative("torch", operator, render(case, "torch"))
    points = case.point + np.random.default_rng(6).uniform(-0.2, 0.2, (3, case.n))
    batched = diffops.vectorize(d)(points)
    argument = np.random.default_rng(7).standard_normal(batched[0].shape)
    for i, x in enumerate(points):
        one = d(x)
        np.testing.assert_allclose(
            batched[0](argument)[i], one[0](argument), **TOLERANCE
        )
        for many, single in zip(batched[1:], one[1:], strict=True):
            np.testing.assert_allclose(many[i], single, **TOLERANCE)


def cubic_and_sine(x):
    """``f = Σ x³/6 + Σ sin x``: ``g = x²/2 + cos x``; at module level, to pickle."""
    import torch

    return torch.sum(x**3) / 6 + torch.sum(torch.sin(x))


def test_torch_compile_for_first_order_operators():
    torch_backend = backend_module("torch")
    f = cubic_and_sine
    d = torch_backend.return_numpy_arrays(torch_backend.grad_and_value(f), compile=True)
    x = np.array([0.5, -1.0, 2.0])
    g, v = d(x)
    np.testing.assert_allclose(g, x**2 / 2 + np.cos(x), **TOLERANCE)
    np.testing.assert_allclose(v, np.sum(x**3) / 6 + np.sum(np.sin(x)), **TOLERANCE)
    again = pickle.loads(pickle.dumps(d))  # compiled again where unpickled
    assert again._rebuild[1][2] is True
    np.testing.assert_allclose(again(x + 1)[0], (x + 1) ** 2 / 2 + np.cos(x + 1))

    # A second and third length: compiled anew for each, where PyTorch's code for
    # dynamic shapes could not be pulled back through again (logsumexp's backward).
    def with_logsumexp(x):  # g = x²/2 + cos x + softmax(x)
        return cubic_and_sine(x) + torch_backend.torch.logsumexp(x, 0)

    lse = torch_backend.return_numpy_arrays(
        torch_backend.grad_and_value(with_logsumexp), compile=True
    )
    for point in (x, np.linspace(-1.0, 1.0, 7), np.linspace(-2.0, 1.0, 13)):
        softmax = np.exp(point) / np.sum(np.exp(point))
        expected = point**2 / 2 + np.cos(point) + softmax
        np.testing.assert_allclose(lse(point)[0], expected, **TOLERANCE)

    # Unlike the tape, torch.compile's code is not safe to run from threads at once:
    # compiled derivative functions hold a lock, and from threads agree.
    assert d.runtime.lock is not None
    assert torch_backend.RUNTIME.lock is None
    points = [x + 0.25 * k for k in range(4)]
    results: dict[int, np.ndarray] = {}
    errors = in_threads(lambda k: results.setdefault(k, d(points[k])[0]), 4)
    assert not errors, errors
    for k, point in enumerate(points):
        np.testing.assert_allclose(results[k], point**2 / 2 + np.cos(point))
    with pytest.raises(
        ValueError, match=r"compile=True is for vjp_and_value and.*twice"
    ):
        torch_backend.return_numpy_arrays(
            torch_backend.hessian_grad_and_value(f), compile=True
        )
    with pytest.raises(ValueError, match=r"jacobian_and_value pulls its rows back"):
        torch_backend.return_numpy_arrays(
            torch_backend.jacobian_and_value(torch_backend.torch.sin), compile=True
        )


def counted(backend: str, case: ScalarCase | VectorCase, calls: list[int]):
    """``case``'s function on ``backend``, adding 1 to ``calls[0]`` as it is evaluated.

    Compiled ``jax`` runs no Python when it evaluates: there a ``jax.debug.callback``
    counts, at each run of the compiled code that evaluates the function.
    """
    func = render(case, backend)

    def count(*_: Any) -> None:
        calls[0] += 1

    if backend != "jax":

        def counting(x):
            count()
            return func(x)

        return counting
    import jax

    def counting_in_jax(x):
        jax.debug.callback(count, x[0])
        return func(x)

    return counting_in_jax


@pytest.mark.parametrize(
    "way", ["table", "kept", "residuals", "point", "jax_nojit", "autograd", "torch"]
)
@pytest.mark.parametrize(("operator", "case"), PRODUCT_CASES[::2], ids=str)
def test_applying_a_product_evaluates_nothing_of_the_function_again(
    operator, case, way, monkeypatch
):
    """A product is bound to its point: applying it reuses what the call computed.

    But for a product from the point (``RECOMPUTE_UP_TO`` raised), which the count
    here shows evaluating the function again at each application.
    """
    calls = [0]
    backend = way if way in ("jax_nojit", "autograd", "torch") else "jax"
    backend_module(backend)
    func = counted(backend, case, calls)
    if backend == "jax":
        d = jax_derivative_by(monkeypatch, way, operator, case, func)
    else:
        d = derivative(backend, operator, func)
    x = case.point
    product = d(x)[0]
    assert calls[0] > 0  # the count counts
    before = calls[0]
    rng = np.random.default_rng(9)
    for _ in range(2):
        argument = rng.standard_normal(product.shape)
        expected = expected_product(case, x, argument, operator)
        np.testing.assert_allclose(product(argument), expected, **TOLERANCE)
    assert (calls[0] > before) == (way == "point")


def test_kept_products_at_lengths_whose_residuals_look_alike_stay_apart(monkeypatch):
    """A linear function keeps no residuals at any length, and one that reads x[0]
    alone as many at every length: each length's product takes its own apart."""
    monkeypatch.setattr(backend_module("jax"), "TABULATE_UP_TO", 0)
    import jax
    import jax.numpy as jnp

    def linear(x):  # c = 2x: vjp(u) = 2u
        return 2.0 * x

    def first(x):  # c = (y, y²) for y = sin applied 3 times to x₀: vjp(u) ∥ e₀
        y = jax.lax.fori_loop(0, 3, lambda i, y: jnp.sin(y), x[0])
        return jnp.stack([y, y * y])

    def dy(x0):  # ∂y/∂x₀ by the chain rule
        y, slope = x0, 1.0
        for _ in range(3):
            y, slope = np.sin(y), slope * np.cos(y)
        return y, slope

    linear_vjp = derivative("jax", "vjp_and_value", linear)
    first_vjp = derivative("jax", "vjp_and_value", first)
    for n in (3, 5, 3, 5):
        x = np.linspace(0.1, 0.5, n)
        vjp = linear_vjp(x)[0]
        assert strategy(vjp) == "kept"
        u = np.arange(1.0, n + 1)
        np.testing.assert_allclose(vjp(u), 2 * u, **TOLERANCE)
        vjp = first_vjp(x)[0]
        assert strategy(vjp) == "kept"
        y, slope = dy(x[0])
        expected = np.zeros(n)
        expected[0] = (1.0 + 2 * y * 0.5) * slope  # u = (1, 0.5)
        np.testing.assert_allclose(vjp(np.array([1.0, 0.5])), expected, **TOLERANCE)
