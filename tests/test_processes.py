"""Derivative functions cross process boundaries: pickle, process pools, Dask, threads.

Every derivative function and every product callable pickles with the standard
library when the user's function is module-level (``models``), and with cloudpickle
when it is a lambda. Results computed elsewhere equal those computed here.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import pickle
import threading

import models
import numpy as np
import pytest
from conftest import derivative

from diffops import DIFF_OPS
from diffops.validation import SCALAR_OPERATORS

X = np.array([0.4, -0.7, 1.2])
TOLERANCE = {"rtol": 1e-12, "atol": 1e-12}


def model_derivative(backend: str, operator: str):
    functions = models.SCALAR if operator in SCALAR_OPERATORS else models.VECTOR
    return derivative(backend, operator, functions[backend])


def tasks(backends):
    """(derivative function, x, argument) for every backend and operator."""
    return [
        (model_derivative(backend, operator), X, models.argument_for(operator))
        for backend in backends
        for operator in DIFF_OPS
    ]


def assert_same(results, expected):
    for got, want in zip(results, expected, strict=True):
        for a, b in zip(got, want, strict=True):
            np.testing.assert_allclose(a, b, **TOLERANCE)


@pytest.fixture(scope="module")
def backends():
    import diffops

    return [name for name in models.SCALAR if diffops.get_backend(name).available]


@pytest.mark.parametrize("operator", DIFF_OPS)
def test_derivative_functions_pickle_and_give_the_same_results(backend, operator):
    function = model_derivative(backend, operator)
    argument = models.argument_for(operator)
    expected = models.evaluate(function, X, argument)  # compiled here first
    blob = pickle.dumps(function)
    assert len(blob) < 20_000, "a pickle carries the recipe, not compiled code"
    assert_same([models.evaluate(pickle.loads(blob), X, argument)], [expected])


@pytest.mark.parametrize(
    "operator",
    ["mtp_hessian_grad_and_value", "mhp_jacobian_and_value", "vjp_and_value"],
)
def test_products_pickle_bound_to_their_point(backend, operator):
    function = model_derivative(backend, operator)
    argument = models.argument_for(operator)
    product = function(X)[0]
    function(X + 1.0)  # the function moves on; the product stays at X
    clone = pickle.loads(pickle.dumps(product))
    np.testing.assert_allclose(clone(argument), product(argument), **TOLERANCE)


def test_spawned_pool_evaluates_every_backend(backends):
    work = tasks(backends)
    expected = [models.evaluate(*task) for task in work]
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        results = pool.starmap(models.evaluate, work)
        products = [
            function(x)[0] for function, x, argument in work if argument is not None
        ]
        arguments = [argument for _, _, argument in work if argument is not None]
        applied = pool.starmap(
            models.apply_product, zip(products, arguments, strict=True)
        )
    assert_same(results, expected)
    for got, product, argument in zip(applied, products, arguments, strict=True):
        np.testing.assert_allclose(got, product(argument), **TOLERANCE)


def test_process_pool_executor_evaluates_every_backend(backends):
    work = tasks(backends)
    expected = [models.evaluate(*task) for task in work]
    # JAX and torch start threads, so forking a process that has used them can
    # deadlock: pools for derivative functions use the spawn start method.
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=context) as executor:
        results = list(executor.map(models.evaluate, *zip(*work, strict=True)))
    assert_same(results, expected)


def test_lambdas_need_cloudpickle_and_then_travel(backends):
    cloudpickle = pytest.importorskip("cloudpickle")
    import importlib

    from diffops.namespaces import array_namespace

    modules = {
        "jax": "jax.numpy",
        "jax_nojit": "jax.numpy",
        "autograd": "autograd.numpy",
        "symnum": "symnum.numpy",
        "torch": "torch",
    }

    def closure_over(np_like):
        # As users write them: the lambda refers to the array module, which
        # cloudpickle sends by reference.
        return lambda x: np_like.sum(np_like.sin(x) * x**2)

    work = []
    for backend in backends:
        module = importlib.import_module(modules[backend])
        func = array_namespace(backend).prepare(closure_over(module), models.N)
        function = derivative(backend, "hessian_grad_and_value", func)
        work.append((function, X, None))
    with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
        pickle.dumps(work[0][0])
    expected = [models.evaluate(*task) for task in work]
    blobs = [cloudpickle.dumps(function) for function, _, _ in work]
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        results = pool.starmap(
            models.evaluate_cloudpickled, [(blob, X, None) for blob in blobs]
        )
    assert_same(results, expected)


def test_dask_local_cluster_evaluates_every_backend(backends):
    distributed = pytest.importorskip("distributed")
    work = tasks(backends)
    expected = [models.evaluate(*task) for task in work]
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        futures = client.map(models.evaluate, *zip(*work, strict=True), pure=False)
        results = client.gather(futures)
    assert_same(results, expected)


@pytest.mark.parametrize("operator", DIFF_OPS)
def test_eight_threads_share_one_derivative_function(backend, operator):
    function = model_derivative(backend, operator)
    argument = models.argument_for(operator)
    points = [X + 0.1 * k for k in range(6)]
    expected = [models.evaluate(function, point, argument) for point in points]
    results: dict[int, list] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def work(thread: int) -> None:
        try:
            barrier.wait()
            for repeat in range(2):
                for index, point in enumerate(points):
                    results[thread * 1000 + repeat * 100 + index] = (
                        models.evaluate(function, point, argument),
                        expected[index],
                    )
        except BaseException as error:  # reported below, with the thread's traceback
            errors.append(error)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not errors, errors
    assert len(results) == 8 * 2 * len(points)
    for got, want in results.values():
        assert_same([got], [want])
