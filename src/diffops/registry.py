"""The backend registry and the fallback rule.

A backend is an :class:`AutodiffBackend`: a module (or module-like object) exposing
the six differential operators named in :data:`DIFF_OPS`, a flag saying whether its
framework imports here, and an optional wrapper applied to every function made with
it. The registry maps lower-case names to backends. The built-in backends are
described by where their module lives and are imported on first look-up, so that
``import diffops`` imports no framework.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Iterator, Mapping
from types import ModuleType
from typing import Any, NamedTuple

import numpy as np

from diffops.functions import BoundProduct, DerivativeFunction, NumpyReturningFunction
from diffops.operators import DIFF_OPS
from diffops.vectorized import BatchedProduct, VectorizedDerivative

_NUMPY_RETURNING = (
    DerivativeFunction,
    NumpyReturningFunction,
    BoundProduct,
    VectorizedDerivative,
    BatchedProduct,
)
"""What diffops makes that takes and returns NumPy arrays already: a function
wrapper returns it as it is."""

__all__ = [
    "DIFF_OPS",
    "REGISTERED_BACKENDS",
    "AutodiffBackend",
    "autodiff_fallback",
    "available_backends",
    "get_backend",
    "register_backend",
    "wrap_function",
]


class AutodiffBackend(NamedTuple):
    """Automatic differentiation backend framework.

    Consists of a module defining the differential operators of :data:`DIFF_OPS`, a
    flag saying whether the framework is available in the current environment and,
    optionally, a function wrapper applied to every function made with the backend
    (for example to just-in-time compile it or to make it return NumPy arrays).

    Attributes:
        module: Module, or module-like object, with an attribute for each name in
            :data:`DIFF_OPS`: a function that takes a function and returns its
            derivative function.
        available: Whether the framework the module needs can be used here.
        function_wrapper: Applied by :func:`wrap_function` to every function made
            with the backend; ``None`` for none.
    """

    module: ModuleType | Any
    available: bool
    function_wrapper: Callable[[Callable[..., Any]], Callable[..., Any]] | None = None


class _BuiltinBackend(NamedTuple):
    """Where a built-in backend lives and how its framework is installed."""

    module: str
    function_wrapper: str | None
    install: str


_BUILTIN_BACKENDS: dict[str, _BuiltinBackend] = {
    "jax": _BuiltinBackend(
        "diffops.backends.jax", "jit_and_return_numpy_arrays", "jax"
    ),
    "jax_nojit": _BuiltinBackend("diffops.backends.jax", "return_numpy_arrays", "jax"),
    "autograd": _BuiltinBackend("diffops.backends.autograd", None, "autograd"),
    "symnum": _BuiltinBackend("diffops.backends.symnum", None, "symnum"),
    "torch": _BuiltinBackend("diffops.backends.torch", "return_numpy_arrays", "torch"),
}


class _BackendRegistry(Mapping[str, AutodiffBackend]):
    """Read-only mapping from lower-case backend name to :class:`AutodiffBackend`.

    Built-in backends are imported on first look-up and then kept; third-party
    backends are added with :func:`register_backend`.
    """

    def __init__(self) -> None:
        self._backends: dict[str, AutodiffBackend] = {}
        self._names: list[str] = list(_BUILTIN_BACKENDS)
        self._lock = threading.Lock()

    def __getitem__(self, name: str) -> AutodiffBackend:
        backend = self._backends.get(name)
        if backend is not None:
            return backend
        builtin = _BUILTIN_BACKENDS.get(name)
        if builtin is None or name not in self._names:
            raise KeyError(name)
        with self._lock:
            module = importlib.import_module(builtin.module)
            wrapper = (
                None
                if builtin.function_wrapper is None
                else getattr(module, builtin.function_wrapper)
            )
            backend = AutodiffBackend(module, module.AVAILABLE, wrapper)
            self._backends.setdefault(name, backend)
        return self._backends[name]

    def __iter__(self) -> Iterator[str]:
        return iter(tuple(self._names))

    def __len__(self) -> int:
        return len(self._names)

    def __contains__(self, name: object) -> bool:
        return name in self._names

    def _add(self, name: str, backend: AutodiffBackend) -> None:
        with self._lock:
            if name not in self._names:
                self._names.append(name)
            self._backends[name] = backend

    def __repr__(self) -> str:
        return f"<diffops backend registry: {', '.join(self._names)}>"


REGISTERED_BACKENDS: Mapping[str, AutodiffBackend] = _BackendRegistry()
"""Read-only mapping from backend name to :class:`AutodiffBackend`."""


def _normalise_name(name: object, argument: str = "backend", alone: str = "") -> str:
    """``name`` in lower case; ``TypeError`` where it is not a string.

    ``alone`` is what else ``argument`` may be, where the caller takes it (``",
    or None"``).
    """
    if not isinstance(name, str):
        msg = (
            f"{argument} must be a backend name (str) such as 'jax'{alone}; "
            f"got {name!r} of type {type(name).__name__}."
        )
        raise TypeError(msg)
    return name.lower()


def get_backend(name: str) -> AutodiffBackend:
    """Look up a registered backend by name, ignoring case.

    Args:
        name: Backend name, for example ``"jax"`` or ``"JAX"``.

    Returns:
        The registered backend, whose framework may not be installed here (see its
        ``available`` field).

    Raises:
        TypeError: If ``name`` is not a string.
        ValueError: If no backend of that name is registered.
    """
    key = _normalise_name(name)
    try:
        return REGISTERED_BACKENDS[key]
    except KeyError:
        msg = (
            f"Autodiff backend {name!r} is not recognised: "
            f"valid names are {tuple(REGISTERED_BACKENDS)}."
        )
        raise ValueError(msg) from None


def register_backend(
    name: str, backend: AutodiffBackend, *, replace: bool = False
) -> None:
    """Register a third-party backend under a new name.

    Args:
        name: Name to register it under; look-ups ignore case.
        backend: The backend. Its ``module`` must have a callable attribute for each
            name in :data:`DIFF_OPS`.
        replace: Whether an existing backend of the same name may be replaced.

    Raises:
        TypeError: If ``name`` is not a string, ``backend`` not an
            :class:`AutodiffBackend`, its ``available`` not a bool, or an operator
            or its function wrapper not callable.
        ValueError: If the name is empty or has spaces, is taken and ``replace`` is
            false, or the module lacks some of the operators.
    """
    key = _normalise_name(name, "name")
    if not key or any(character.isspace() for character in key):
        msg = f"name must be a non-empty string without spaces; got {name!r}."
        raise ValueError(msg)
    if not isinstance(backend, AutodiffBackend):
        msg = (
            "backend must be an AutodiffBackend(module, available, function_wrapper); "
            f"got {type(backend).__name__}."
        )
        raise TypeError(msg)
    if not isinstance(backend.available, bool | np.bool_):
        msg = (
            "backend.available must be True or False (whether its framework is "
            f"installed); got {backend.available!r}."
        )
        raise TypeError(msg)
    if not isinstance(backend.available, bool):  # NumPy's, kept as Python's
        backend = backend._replace(available=bool(backend.available))
    missing = [op for op in DIFF_OPS if not hasattr(backend.module, op)]
    if missing:
        msg = (
            f"backend.module lacks the differential operators {missing}: a backend "
            f"module must define all of {DIFF_OPS}."
        )
        raise ValueError(msg)
    uncallable = [op for op in DIFF_OPS if not callable(getattr(backend.module, op))]
    if uncallable:
        msg = f"backend.module's differential operators {uncallable} are not callable."
        raise TypeError(msg)
    if backend.function_wrapper is not None and not callable(backend.function_wrapper):
        msg = "backend.function_wrapper must be callable or None."
        raise TypeError(msg)
    if key in REGISTERED_BACKENDS and not replace:
        msg = (
            f"A backend named {key!r} is already registered: pass replace=True to "
            "replace it."
        )
        raise ValueError(msg)
    assert isinstance(REGISTERED_BACKENDS, _BackendRegistry)
    REGISTERED_BACKENDS._add(key, backend)


def available_backends() -> tuple[str, ...]:
    """Names of the registered backends whose framework is installed here.

    Probing a built-in backend imports its framework.

    Returns:
        The names, in the order they were registered, built-in backends first.
    """
    return tuple(name for name in REGISTERED_BACKENDS if get_backend(name).available)


def wrap_function(
    function: Callable[..., Any], backend: str | None
) -> Callable[..., Any]:
    """Apply the function wrapper of an automatic differentiation backend to a function.

    Backends may define a function wrapper which applies any post processing required
    to functions using the framework, for example ensuring the function returns NumPy
    arrays or just-in-time compiling it.

    Args:
        function: Function to wrap.
        backend: Name of the backend. If ``None`` ``function`` is returned unchanged.

    Returns:
        The wrapped function, or ``function`` itself when ``backend`` is ``None``, the
        backend has no wrapper, or ``function`` is one diffops made already (a
        derivative function ``autodiff_fallback`` made, which mici's SoftAbs system
        wraps again, a product, a vectorized function): it takes and returns NumPy
        arrays already.

    Raises:
        ValueError: If ``backend`` is not registered, or has a wrapper and its
            framework is not installed here (saying how to install it).
    """
    if backend is None:
        return function
    autodiff_backend = _selected(backend)
    wrapper = autodiff_backend.function_wrapper
    if wrapper is None or isinstance(function, _NUMPY_RETURNING):
        return function
    if not autodiff_backend.available:  # its wrapper would fail on the framework
        raise _unavailable(
            backend,
            f"its function wrapper cannot be applied: {_install_hint(backend.lower())}",
        )
    return wrapper(function)


def _selected(backend: object) -> AutodiffBackend:
    """The backend a caller that also takes ``None`` (handled before) names."""
    return get_backend(_normalise_name(backend, alone=", or None"))


def _unavailable(backend: str, consequence: str) -> ValueError:
    """The error for a backend whose framework is not installed, and what follows."""
    return ValueError(
        f"{backend!r} selected as autodiff backend but its framework is not "
        f"available in the current environment, so {consequence}."
    )


def _install_hint(name: str) -> str:
    builtin = _BUILTIN_BACKENDS.get(name)
    if builtin is None:
        return "install the framework that backend needs"
    return f"install it with `pip install 'diffops[{builtin.install}]'`"


def autodiff_fallback(
    diff_func: Callable[..., Any] | None,
    func: Callable[..., Any],
    diff_op_name: str,
    name: str,
    backend: str | None,
) -> Callable[..., Any]:
    """Generate a derivative function automatically if one was not provided.

    Uses automatic differentiation to generate the function corresponding to a
    differential operator applied to ``func``, unless an implementation of the
    derivative function was provided.

    Args:
        diff_func: Either a callable implementing the required derivative function
            or ``None`` if none was provided.
        func: Function to differentiate.
        diff_op_name: Name of the differential operator to apply, one of
            :data:`DIFF_OPS`.
        name: Name of the derivative function, used in error messages.
        backend: Name of the automatic differentiation backend to use. If ``None``,
            ``diff_func`` must be provided.

    Returns:
        ``diff_func`` if it is not ``None``, otherwise the derivative of ``func``
        generated by the named operator of the backend, wrapped with
        :func:`wrap_function`.

    Raises:
        ValueError: If ``diff_func`` is ``None`` and ``backend`` is ``None``, the
            operator or the backend is unknown, or the backend's framework is not
            installed.
        TypeError: If the derivative must be generated and ``func`` is not callable,
            or the backend makes something that is not callable.
    """
    if diff_func is not None:
        return diff_func
    if backend is None:
        msg = (
            f"Automatic differentiation backend specified as None so {name} must be "
            "provided directly."
        )
        raise ValueError(msg)
    if diff_op_name not in DIFF_OPS:
        msg = (
            f"Differential operator {diff_op_name!r} is not defined: valid names are "
            f"{DIFF_OPS}."
        )
        raise ValueError(msg)
    autodiff_backend = _selected(backend)
    if not autodiff_backend.available:
        raise _unavailable(
            backend,
            f"{name} must be provided directly, or {_install_hint(backend.lower())}",
        )
    if not callable(func):
        msg = f"func must be callable; got {type(func).__name__}."
        raise TypeError(msg)
    diff_func = getattr(autodiff_backend.module, diff_op_name)(func)
    made = wrap_function(diff_func, backend)
    if not callable(made):  # a third-party backend's mistake, said here
        msg = (
            f"the {backend!r} backend made {made!r} for {diff_op_name}, not a "
            "derivative function: its operator and function wrapper must each "
            "return a callable."
        )
        raise TypeError(msg)
    return made
