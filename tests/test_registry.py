"""Public names, the registry, wrap_function and the fallback rule."""

from __future__ import annotations

import inspect
import types
import typing

import numpy as np
import pytest
from functions import SMOOTH, render
from helpers import installed, run_python

import diffops
from diffops import (
    DIFF_OPS,
    AutodiffBackend,
    autodiff_fallback,
    available_backends,
    get_backend,
    register_backend,
    wrap_function,
)
from diffops.functions import DerivativeFunction, Runtime


def test_diff_ops_are_the_six_operators_in_order():
    assert DIFF_OPS == (
        "vjp_and_value",
        "grad_and_value",
        "hessian_grad_and_value",
        "mtp_hessian_grad_and_value",
        "jacobian_and_value",
        "mhp_jacobian_and_value",
    )


def test_autodiff_backend_is_the_mici_named_tuple():
    assert issubclass(AutodiffBackend, tuple)
    assert AutodiffBackend._fields == ("module", "available", "function_wrapper")
    backend = AutodiffBackend(types.SimpleNamespace(), True)
    assert backend.function_wrapper is None


@pytest.mark.parametrize(
    ("function", "parameters"),
    [
        (wrap_function, ["function", "backend"]),
        (autodiff_fallback, ["diff_func", "func", "diff_op_name", "name", "backend"]),
    ],
)
def test_signatures_are_those_of_mici(function, parameters):
    assert list(inspect.signature(function).parameters) == parameters


def test_import_imports_no_framework():
    result = run_python(
        """
        import sys, diffops
        loaded = [m for m in ("jax", "autograd", "symnum", "torch", "sympy")
                  if m in sys.modules]
        print(loaded)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_builtin_backends_are_registered():
    registry = diffops.registry.REGISTERED_BACKENDS
    assert {"jax", "jax_nojit", "autograd", "symnum"} <= set(registry)
    assert isinstance(registry, typing.Mapping)
    with pytest.raises(TypeError):
        registry["mine"] = AutodiffBackend(types.SimpleNamespace(), True)  # type: ignore[index]


@pytest.mark.parametrize("name", ["jax", "JAX", "Jax_NoJit", "AUTOGRAD", "SymNum"])
def test_backend_names_ignore_case(name):
    assert get_backend(name) is get_backend(name.lower())


def test_get_backend_rejects_unknown_names_listing_valid_ones():
    with pytest.raises(ValueError, match=r"'tensorflow'.*not recognised.*'jax'"):
        get_backend("tensorflow")


def test_get_backend_rejects_non_strings():
    # None only where the argument may be None: autodiff_fallback and wrap_function.
    for name in (3, None):
        with pytest.raises(
            TypeError, match=r"backend must be a backend name \(str\) such as 'jax'; "
        ):
            get_backend(name)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^name must be .* such as 'jax'; got 3"):
        register_backend(3, AutodiffBackend(_module(), True))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"such as 'jax', or None; got 3"):
        autodiff_fallback(None, square_sum, "grad_and_value", "grad", 3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"such as 'jax', or None; got 3"):
        wrap_function(square_sum, 3)  # type: ignore[arg-type]


def test_available_backends_lists_importable_ones():
    names = available_backends()
    assert isinstance(names, tuple)
    for name in diffops.registry.REGISTERED_BACKENDS:
        assert (name in names) == get_backend(name).available


def square_sum(x):
    return (x**2).sum()


def test_wrap_function_without_backend_returns_the_function_itself():
    assert wrap_function(square_sum, None) is square_sum


@pytest.mark.parametrize("backend", [installed("autograd"), installed("symnum")])
def test_wrap_function_without_wrapper_returns_the_function_itself(backend):
    assert wrap_function(square_sum, backend) is square_sum


@pytest.mark.parametrize(
    "backend", [installed("jax"), installed("jax_nojit"), installed("torch")]
)
def test_wrap_function_returns_what_a_wrapper_made_as_it_is(backend):
    # mici's SoftAbs system wraps the Hessian function it made with the backend's
    # wrapper again: that one already takes and returns NumPy arrays (compiled jax
    # raised "cannot create weak reference" there).
    func = render(SMOOTH, backend)
    derivative = diffops.autodiff_fallback(
        None, func, "hessian_grad_and_value", "hessian", backend
    )
    wrapped = wrap_function(func, backend)
    assert wrap_function(derivative, backend) is derivative
    assert wrap_function(wrapped, backend) is wrapped
    vectorized = diffops.vectorize(derivative)
    assert wrap_function(vectorized, backend) is vectorized
    mtp = diffops.autodiff_fallback(
        None, func, "mtp_hessian_grad_and_value", "mtp", backend
    )(SMOOTH.point)[0]
    assert wrap_function(mtp, backend) is mtp
    H, _, v = wrap_function(derivative, backend)(SMOOTH.point)
    np.testing.assert_allclose(H, SMOOTH.hessian(SMOOTH.point), rtol=1e-10)
    np.testing.assert_allclose(wrapped(SMOOTH.point), v, rtol=1e-12)


@pytest.mark.parametrize("backend", [installed("jax"), installed("jax_nojit")])
def test_jax_wrap_function_returns_numpy(backend):
    import jax.numpy as jnp

    wrapped = wrap_function(lambda x: (jnp.sum(x**2), 2 * x), backend)
    value, doubled = wrapped(np.arange(3.0))
    assert isinstance(doubled, np.ndarray)
    np.testing.assert_array_equal(doubled, [0.0, 2.0, 4.0])
    assert value == 5.0


@pytest.mark.parametrize(
    "backend", [installed("jax"), installed("jax_nojit"), installed("torch")]
)
def test_a_function_the_wrapped_function_returns_returns_numpy_too(backend):
    # As mici's wrappers do: a pullback returned is made to return NumPy arrays.
    if backend == "torch":
        import torch

        def with_pullback(x):
            return torch.sin(x), lambda u: (u * torch.cos(x),)
    else:
        import jax
        import jax.numpy as jnp

        def with_pullback(x):
            return jax.vjp(jnp.sin, x)

    x = np.array([0.1, 0.2])
    value, pullback = wrap_function(with_pullback, backend)(x)
    (product,) = pullback(np.array([1.0, 3.0]))
    assert type(value) is np.ndarray
    assert type(product) is np.ndarray
    np.testing.assert_allclose(product, [1.0, 3.0] * np.cos(x), rtol=1e-6)


# The fallback rule, case by case.


def test_fallback_returns_a_given_derivative_unchanged():
    def my_grad(x):
        return 2 * x

    assert (
        autodiff_fallback(my_grad, square_sum, "grad_and_value", "grad", "jax")
        is my_grad
    )
    assert autodiff_fallback(my_grad, square_sum, "nonsense", "grad", None) is my_grad


def test_fallback_without_backend_asks_for_the_derivative():
    with pytest.raises(ValueError, match=r"None so grad_neg_log_dens must be provided"):
        autodiff_fallback(None, square_sum, "grad_and_value", "grad_neg_log_dens", None)


def test_fallback_rejects_unknown_operators_listing_valid_ones():
    with pytest.raises(ValueError, match=r"'laplacian' is not defined.*grad_and_value"):
        autodiff_fallback(None, square_sum, "laplacian", "lap", "autograd")


def test_fallback_rejects_unknown_backends_listing_valid_ones():
    with pytest.raises(ValueError, match=r"'theano'.*valid names.*'autograd'"):
        autodiff_fallback(None, square_sum, "grad_and_value", "grad", "theano")


def test_fallback_rejects_non_callable_func():
    with pytest.raises(TypeError, match="func must be callable; got int"):
        autodiff_fallback(None, 3, "grad_and_value", "grad", "autograd")


@pytest.mark.parametrize("backend", ["jax", "jax_nojit", "autograd", "symnum", "torch"])
def test_fallback_and_wrap_function_with_missing_framework_say_so(backend):
    # wrap_function too: a library wraps the user's own function before any
    # derivative is asked for. Where the wrapper needs the framework, the same
    # ValueError, not a NameError from inside the wrapper; where there is none, f.
    framework = backend.removesuffix("_nojit")
    result = run_python(
        f"""
        import sys
        sys.modules[{framework!r}] = None  # makes `import {framework}` fail
        import diffops
        assert not diffops.get_backend({backend!r}).available
        assert {backend!r} not in diffops.available_backends()
        for make in (
            lambda: diffops.autodiff_fallback(
                None, abs, "grad_and_value", "grad_neg_log_dens", {backend!r}
            ),
            lambda: print(diffops.wrap_function(abs, {backend!r}) is abs),
        ):
            try:
                make()
            except ValueError as error:
                print(error)
        """
    )
    assert result.returncode == 0, result.stderr
    fallback, wrapped = result.stdout.splitlines()
    assert "grad_neg_log_dens must be provided directly" in fallback
    messages = [fallback]
    if get_backend(backend).function_wrapper is None:
        assert wrapped == "True"
    else:
        messages.append(wrapped)
    for message in messages:
        assert "not available" in message
        assert f"pip install 'diffops[{framework}]'" in message


def test_fallback_applies_the_operator_and_the_wrapper():
    pytest.importorskip("jax")
    import jax.numpy as jnp

    grad_and_value = autodiff_fallback(
        None, lambda x: jnp.sum(x**3), "grad_and_value", "grad", "JAX"
    )
    grad, value = grad_and_value(np.array([1.0, 2.0]))
    assert isinstance(grad, np.ndarray)
    np.testing.assert_allclose(grad, [3.0, 12.0])
    assert float(value) == 9.0


# Third-party backends.


def _fd_grad_and_value(func):
    def grad_and_value(x):
        x = np.asarray(x, dtype=float)
        h = 1e-6
        grad = np.array(
            [(func(x + h * e) - func(x - h * e)) / (2 * h) for e in np.eye(x.size)]
        )
        return grad, func(x)

    return grad_and_value


def _not_implemented(func):
    raise NotImplementedError


def _module(**operators):
    defaults = dict.fromkeys(DIFF_OPS, _not_implemented)
    return types.SimpleNamespace(**{**defaults, **operators})


def test_registered_backend_is_used_by_the_fallback():
    register_backend(
        "Central_Differences_Test",
        AutodiffBackend(_module(grad_and_value=_fd_grad_and_value), True),
    )
    assert "central_differences_test" in diffops.registry.REGISTERED_BACKENDS
    grad_and_value = autodiff_fallback(
        None, square_sum, "grad_and_value", "grad", "central_differences_test"
    )
    grad, value = grad_and_value(np.array([1.0, -2.0]))
    np.testing.assert_allclose(grad, [2.0, -4.0], rtol=1e-8)
    assert value == 5.0


def test_register_refuses_an_existing_name_unless_asked():
    backend = AutodiffBackend(_module(), True)
    register_backend("replace_me_test", backend)
    with pytest.raises(ValueError, match="already registered: pass replace=True"):
        register_backend("Replace_Me_Test", backend)
    with pytest.raises(ValueError, match="already registered"):
        register_backend("jax", backend)
    replacement = AutodiffBackend(_module(), False)
    register_backend("replace_me_test", replacement, replace=True)
    assert get_backend("replace_me_test") is replacement


def test_register_refuses_a_module_missing_operators():
    module = types.SimpleNamespace(grad_and_value=_fd_grad_and_value)
    with pytest.raises(ValueError, match=r"lacks.*'vjp_and_value'.*'mhp_jacobian"):
        register_backend("incomplete_test", AutodiffBackend(module, True))
    assert "incomplete_test" not in diffops.registry.REGISTERED_BACKENDS


def test_register_refuses_what_is_not_a_backend():
    with pytest.raises(TypeError, match="backend must be an AutodiffBackend"):
        register_backend("tuple_test", (_module(), True))  # type: ignore[arg-type]


@pytest.mark.parametrize("name", [" padded_test", "two words", "tab\ttest", ""])
def test_register_refuses_a_name_with_spaces_or_none(name):
    with pytest.raises(ValueError, match="non-empty string without spaces"):
        register_backend(name, AutodiffBackend(_module(), True))
    assert name.lower() not in diffops.registry.REGISTERED_BACKENDS


@pytest.mark.parametrize("available", ["no", 1, None])
def test_register_refuses_an_availability_that_is_not_a_bool(available):
    with pytest.raises(TypeError, match=r"backend\.available must be True or False"):
        register_backend("availability_test", AutodiffBackend(_module(), available))
    assert "availability_test" not in diffops.registry.REGISTERED_BACKENDS


def test_register_takes_numpys_bool_as_an_availability():
    register_backend("numpy_bool_test", AutodiffBackend(_module(), np.True_))
    assert get_backend("numpy_bool_test").available is True


def test_register_says_which_operators_are_not_callable():
    module = _module(hessian_grad_and_value=42)
    with pytest.raises(TypeError, match=r"\['hessian_grad_and_value'\] are not call"):
        register_backend("uncallable_test", AutodiffBackend(module, True))


@pytest.mark.parametrize("where", ["operator", "wrapper"])
def test_fallback_refuses_what_a_backend_makes_that_is_not_callable(where):
    if where == "operator":
        backend = AutodiffBackend(_module(grad_and_value=lambda func: None), True)
    else:
        backend = AutodiffBackend(_module(grad_and_value=_fd_grad_and_value), True)
        backend = backend._replace(function_wrapper=lambda function: None)
    register_backend(f"makes_none_{where}_test", backend)
    with pytest.raises(TypeError, match="made None for grad_and_value, not a deriv"):
        autodiff_fallback(
            None, square_sum, "grad_and_value", "grad", f"makes_none_{where}_test"
        )


def test_a_derivative_function_names_an_operator_it_does_not_know():
    runtime = Runtime(lambda value, dtype: np.array(value, dtype=dtype), np.dot)
    with pytest.raises(ValueError, match=r"operator must be one of \('vjp_and_value'"):
        DerivativeFunction("grad", lambda x: (x, 1.0), runtime, (print, ()))


def test_a_derivative_function_made_by_a_recipe_of_no_arguments_has_a_repr():
    runtime = Runtime(lambda value, dtype: np.array(value, dtype=dtype), np.dot)
    d = DerivativeFunction(
        "grad_and_value", lambda x: (x, 1.0), runtime, (print, ()), func=square_sum
    )
    assert repr(d) == f"<diffops grad_and_value of {square_sum!r}>"
