"""With JAX's 64-bit mode off, a float64 input gets one clear warning, and
diffops never switches the mode itself. Run in subprocesses, whose JAX starts with
the mode off."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("jax")


def run_without_x64(
    code: str, path: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``code`` in a new Python, 64-bit mode off; diffops from ``path`` if given."""
    env = {k: v for k, v in os.environ.items() if k != "JAX_ENABLE_X64"}
    if path is not None:
        env["PYTHONPATH"] = path
    return subprocess.run(
        [sys.executable, "-W", "always::UserWarning", "-c", textwrap.dedent(code)],
        capture_output=True, text=True, env=env, check=False, timeout=300,
    )  # fmt: skip


PROGRAM = """
    import warnings, numpy as np, jax, jax.numpy as jnp, diffops
    grad = diffops.autodiff_fallback(
        None, lambda x: jnp.sum(x ** 2), "grad_and_value", "grad", {backend!r})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            g, v = grad(np.ones(3, dtype={dtype!r}))
    print(len(caught), g.dtype, jax.config.read("jax_enable_x64"))
    for w in caught:
        print(w.message)
        print(w.filename, w.lineno)
"""
CALL_LINE = (
    textwrap.dedent(PROGRAM)
    .splitlines()
    .index("        g, v = grad(np.ones(3, dtype={dtype!r}))")
    + 1
)


@pytest.mark.parametrize("backend", ["jax", "jax_nojit"])
def test_a_first_call_with_the_mode_on_in_a_block_leaves_the_warning(backend):
    # The mode on only in jax.enable_x64's block: the first float64 input is
    # computed in float64, and the warning is still given for one computed in float32
    # after it (at a new length, where compiled code is planned again).
    result = run_without_x64(f"""
        import warnings, numpy as np, jax, jax.numpy as jnp, diffops
        grad = diffops.autodiff_fallback(
            None, lambda x: jnp.sum(x ** 2), "grad_and_value", "grad", {backend!r})
        with jax.enable_x64(True):
            print(grad(np.ones(3))[0].dtype)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            g, v = grad(np.ones(4))
        print(g.dtype, len(caught), "computed in float32" in str(caught[0].message))
    """)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["float64", "float32", "1", "True"]


@pytest.mark.parametrize("backend", ["jax", "jax_nojit"])
def test_float64_input_warns_once_how_to_enable_x64(backend):
    result = run_without_x64(PROGRAM.format(backend=backend, dtype="float64"))
    assert result.returncode == 0, result.stderr
    first, *messages = result.stdout.splitlines()
    assert first == "1 float32 False"
    assert "computed in float32" in messages[0]
    assert "JAX_ENABLE_X64=1" in messages[0]
    assert "jax.config.update('jax_enable_x64', True)" in messages[0]
    assert messages[1] == f"<string> {CALL_LINE}"  # the caller's line, not diffops'


@pytest.mark.parametrize("backend", ["jax", "jax_nojit"])
def test_a_wrapped_function_warns_once_of_float64_computed_in_float32(backend):
    # wrap_function(f, "jax"), as a library evaluates the user's own density: a
    # float64 x computed in float32, told once, naming the caller's line.
    result = run_without_x64(f"""
        import warnings, numpy as np, jax.numpy as jnp, diffops
        wrapped = diffops.wrap_function(lambda x: jnp.sum(x ** 2), {backend!r})
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for _ in range(3):
                value = wrapped(np.ones(3))
        print(len(caught), value.dtype)
        for w in caught:
            print(w.message)
            print(w.lineno)
    """)  # fmt: skip
    assert result.returncode == 0, result.stderr
    first, message, line = result.stdout.splitlines()
    assert first == "1 float32"
    assert "computed in float32" in message
    assert line == "7"  # value = wrapped(...), in the program


@pytest.mark.parametrize("backend", ["jax", "jax_nojit"])
def test_hessians_and_tall_jacobians_add_no_warning_of_jaxs(backend):
    """Their bases are made in the dtype JAX computes in, not asked for as float64."""
    program = f"""
        import warnings, numpy as np, jax.numpy as jnp, diffops
        hessian = diffops.autodiff_fallback(
            None, lambda x: jnp.sum(x ** 3), "hessian_grad_and_value", "h", {backend!r})
        jacobian = diffops.autodiff_fallback(  # m = 3 > n = 2: forward mode
            None, lambda x: jnp.stack([x[0], x[1], x[0] * x[1]]),
            "jacobian_and_value", "j", {backend!r})
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for _ in range(2):
                hessian(np.ones(2)), jacobian(np.ones(2))
        print(len(caught), *(w.message for w in caught), sep="\\n")
    """
    result = run_without_x64(program)
    assert result.returncode == 0, result.stderr
    count, *messages = result.stdout.splitlines()
    assert count == "1", messages
    assert "computed in float32" in messages[0]


def test_the_warning_names_the_callers_line_through_a_symbolic_link(tmp_path):
    """diffops imported from a linked folder: its frames keep the link's name."""
    import diffops

    linked = tmp_path / "linked"
    linked.symlink_to(Path(diffops.__file__).parents[1], target_is_directory=True)
    where = run_without_x64("import diffops; print(diffops.__file__)", str(linked))
    assert where.stdout.startswith(str(linked)), where.stderr
    program = PROGRAM.format(backend="jax", dtype="float64")
    result = run_without_x64(program, str(linked))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[2] == f"<string> {CALL_LINE}"


def test_float32_input_does_not_warn():
    result = run_without_x64(PROGRAM.format(backend="jax", dtype="float32"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "0 float32 False"


def test_float64_computed_in_float64_when_enabled():
    import jax

    assert jax.config.read("jax_enable_x64")  # set by conftest, not by diffops
    import jax.numpy as jnp
    import numpy as np

    import diffops

    grad = diffops.autodiff_fallback(
        None, lambda x: jnp.sum(x**2), "grad_and_value", "grad", "jax"
    )
    assert grad(np.ones(3))[0].dtype == np.float64
