"""Derivative functions cross process boundaries: pickle, spawned workers, Dask;
and threads.

Every derivative function and every product pickles with the standard library when
the user's function is module-level (as :func:`functions.render` makes them), and with
cloudpickle when it is a lambda. Results computed elsewhere equal those computed here.
Starting workers costs seconds, so each kind of worker is started once, for every
backend and operator together.
"""

from __future__ import annotations

import concurrent.futures
import copy
import importlib
import multiprocessing
import pickle

import numpy as np
import pytest
from functions import RANDOM_N
from helpers import (
    CASE_FOR,
    INSTALLED_BACKENDS,
    PRODUCT_OPERATORS,
    apply_product,
    argument_for,
    case_derivative,
    derivative,
    evaluate,
    evaluate_cloudpickled,
    in_threads,
)

import diffops
from diffops import DIFF_OPS
from diffops.namespaces import array_namespace
from diffops.operators import OPERATORS

TOLERANCE = {"rtol": 1e-12, "atol": 1e-12}
MODULES = {
    "jax": "jax.numpy",
    "jax_nojit": "jax.numpy",
    "autograd": "autograd.numpy",
    "symnum": "symnum.numpy",
    "torch": "torch",
}


def point_for(operator: str) -> np.ndarray:
    return CASE_FOR[OPERATORS[operator].applies_to].point


def task(backend: str, operator: str):
    """(derivative function, x, argument) for one backend and operator."""
    x = point_for(operator)
    return case_derivative(backend, operator), x, argument_for(operator, x)


def every_task():
    return [task(b, op) for b in INSTALLED_BACKENDS for op in DIFF_OPS]


def assert_same(results, expected):
    for got, want in zip(results, expected, strict=True):
        for a, b in zip(got, want, strict=True):
            np.testing.assert_allclose(a, b, **TOLERANCE)


def closure_over(np_like):
    # As users write them: the lambda refers to the array module, which cloudpickle
    # sends by reference.
    return lambda x: np_like.sum(np_like.sin(x) * x**2)


def lambda_derivative(backend: str):
    module = importlib.import_module(MODULES[backend])
    func = array_namespace(backend).prepare(closure_over(module), RANDOM_N)
    return derivative(backend, "hessian_grad_and_value", func)


@pytest.mark.parametrize("operator", DIFF_OPS)
def test_derivative_functions_pickle_and_give_the_same_results(backend, operator):
    function, x, argument = task(backend, operator)
    expected = evaluate(function, x, argument)  # compiled here first
    blob = pickle.dumps(function)
    assert len(blob) < 20_000, "a pickle carries the recipe, not compiled code"
    assert_same([evaluate(pickle.loads(blob), x, argument)], [expected])


@pytest.mark.parametrize("operator", PRODUCT_OPERATORS)
def test_products_pickle_bound_to_their_point(backend, operator):
    function, x, argument = task(backend, operator)
    point = x.copy()
    product = function(point)[0]
    expected = product(argument)
    point += 1.0  # the caller moves on, in place; the product stays where it was
    function(point)
    clone = pickle.loads(pickle.dumps(product))
    np.testing.assert_allclose(clone(argument), expected, **TOLERANCE)


@pytest.mark.parametrize("operator", PRODUCT_OPERATORS)
def test_copies_are_the_object_itself_as_a_functions_are(backend, operator):
    """copy.copy and copy.deepcopy, as mici's samplers deep-copy their systems.

    Made again from the recipe, a copy would compile again and copy the user's
    function with the data it holds, for every chain.
    """
    function, x, argument = task(backend, operator)
    product = function(x)[0]
    vectorized = diffops.vectorize(function)
    batch = vectorized(np.stack([x, x + 0.1]))[0]
    objects = [function, product, batch]
    wrapped = diffops.wrap_function(function.func, backend)
    if wrapped is not function.func:  # the backend has a function wrapper
        objects.append(wrapped)
    for obj in objects:
        assert copy.copy(obj) is obj
        assert copy.deepcopy(obj) is obj
        assert copy.deepcopy({"kept": [obj]})["kept"][0] is obj
    vectorized_copy = copy.deepcopy(vectorized)  # its chunk size is its copy's own
    assert vectorized_copy is not vectorized
    assert vectorized_copy.derivative is function
    np.testing.assert_allclose(
        vectorized_copy(x[None])[0](argument)[0], product(argument), **TOLERANCE
    )


def test_the_standard_pickle_needs_a_module_level_function(backend):
    function = lambda_derivative(backend)
    if backend == "symnum":  # pickles as the generated code, not as the lambda
        x = np.array([0.4, -0.7, 1.2])
        assert_same([evaluate(pickle.loads(pickle.dumps(function)), x, None)],
                    [evaluate(function, x, None)])  # fmt: skip
        return
    with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
        pickle.dumps(function)


def test_spawned_workers_evaluate_every_backend_and_operator():
    cloudpickle = pytest.importorskip("cloudpickle")
    work = every_task()
    expected = [evaluate(*item) for item in work]
    products = [(f(x)[0], a) for f, x, a in work if a is not None]
    lambdas = [lambda_derivative(b) for b in INSTALLED_BACKENDS]
    x = np.array([0.4, -0.7, 1.2])
    lambdas_expected = [evaluate(f, x, None) for f in lambdas]
    # JAX and torch start threads, so forking a process that has used them can
    # deadlock: pools for derivative functions use the spawn start method.
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=context) as pool:
        results = list(pool.map(evaluate, *zip(*work, strict=True)))
        applied = list(pool.map(apply_product, *zip(*products, strict=True)))
        blobs = [cloudpickle.dumps(f) for f in lambdas]
        count = len(blobs)
        lambdas_results = list(
            pool.map(evaluate_cloudpickled, blobs, [x] * count, [None] * count)
        )
    assert_same(results, expected)
    for got, (product, argument) in zip(applied, products, strict=True):
        np.testing.assert_allclose(got, product(argument), **TOLERANCE)
    assert_same(lambdas_results, lambdas_expected)


def test_dask_local_cluster_evaluates_every_backend_and_operator():
    distributed = pytest.importorskip("distributed")
    work = every_task()
    expected = [evaluate(*item) for item in work]
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
        futures = client.map(evaluate, *zip(*work, strict=True), pure=False)
        results = client.gather(futures)
    assert_same(results, expected)


@pytest.mark.parametrize("operator", DIFF_OPS)
def test_eight_threads_share_one_derivative_function(backend, operator):
    function, x, argument = task(backend, operator)
    points = [x + 0.1 * k for k in range(3)]
    expected = [evaluate(function, point, argument) for point in points]
    results: dict[int, list] = {}

    def work(thread: int) -> None:
        for repeat in range(2):
            for index, point in enumerate(points):
                results[thread * 1000 + repeat * 100 + index] = (
                    evaluate(function, point, argument),
                    expected[index],
                )

    errors = in_threads(work, 8)
    assert not errors, errors
    assert len(results) == 8 * 2 * len(points)
    for got, want in results.values():
        assert_same([got], [want])


def test_threads_mix_every_operator_with_vectorised_ones(backend):
    """Per-point operators in some threads, :func:`diffops.vectorize` in another.

    ``torch`` runs its tape without a lock, and :mod:`torch.func`'s transforms
    (``vectorize``'s) with one: threads doing both at once still each get
    their own answers, and one product applied from every thread at once too.
    """
    from diffops import vectorize

    tasks = [task(backend, operator) for operator in DIFF_OPS]
    expected = [evaluate(*work) for work in tasks]
    vectorized = vectorize(case_derivative(backend, "mtp_hessian_grad_and_value"))
    X = np.stack([point_for("mtp_hessian_grad_and_value") + 0.1 * k for k in range(4)])
    M = np.eye(X.shape[1])
    batched = vectorized(X)
    vectorized_expected = [batched[0](M), *batched[1:]]
    product, *_ = tasks[0][0](tasks[0][1])  # vjp, applied by every thread at once
    product_expected = apply_product(product, tasks[0][2])
    failures: list[str] = []
    repeats = 2 if backend == "jax_nojit" else 5  # op by op: 20 ms and more a call

    def work(thread: int) -> None:
        for repeat in range(repeats):
            if thread == 0:
                mtp, *arrays = vectorized(X)
                got, want = [mtp(M), *arrays], vectorized_expected
            else:
                index = (thread + repeat) % len(tasks)
                got, want = evaluate(*tasks[index]), expected[index]
                got.append(apply_product(product, tasks[0][2]))
                want = [*want, product_expected]
            for a, b in zip(got, want, strict=True):
                if not np.allclose(a, b, **TOLERANCE):
                    failures.append(f"thread {thread}, repeat {repeat}")

    errors = in_threads(work, 4)
    assert not errors, errors
    assert not failures, failures
