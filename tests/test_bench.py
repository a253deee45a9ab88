"""``diffops bench`` runs, and what it compares agrees.

No timing is asserted (CI machines are noisy): these tests check that the bench
measures what its docs say, against hand-written forms that compute the same outputs
as diffops by another route, and that it leaves the user's SymNum cache alone.
"""

from __future__ import annotations

import os
import re

import numpy as np
import pytest
from helpers import run_python

import diffops
from diffops import bench, cache
from diffops.cli import main
from diffops.namespaces import array_namespace
from diffops.operators import OPERATORS

FAST = {"repeats": 1, "seconds_per_batch": 1e-4, "peer": False}


def available(*backends: str) -> list[str]:
    return [name for name in backends if diffops.get_backend(name).available]


@pytest.mark.parametrize(
    "operator",
    ["vjp_and_value", "hessian_grad_and_value", "mtp_hessian_grad_and_value",
     "mhp_jacobian_and_value"],
)  # fmt: skip
def test_the_bench_compares_with_the_fastest_hand_written_form(operator):
    backends = available("jax", "torch", "autograd")
    measurements = bench.run_bench(backends, [operator], [3], **FAST)
    product = OPERATORS[operator].product is not None
    targets = ["call", "product", "call+product"] if product else ["call"]
    assert [(m.backend, m.target) for m in measurements] == [
        (backend, target) for backend in backends for target in targets
    ]
    for m in measurements:
        # Hand-written by another route, the same outputs to rounding.
        assert m.max_deviation < 1e-12, (m.backend, m.target)
        hand = {k: v for k, v in m.median_us.items() if k.startswith("hand: ")}
        assert m.median_us["framework"] == min(hand.values())
        assert hand[f"hand: {m.reference}"] == m.median_us["framework"]
        assert m.median_us["diffops"] > 0
    forms = {m.reference for m in measurements if m.backend == "torch"}
    assert forms <= {"autograd.grad", "functional", "torch.func"}
    table = bench.format_table(measurements)
    assert all(m.reference in table for m in measurements)
    if product:
        assert "call+product" in table


@pytest.mark.parametrize(
    ("operator", "func", "expected"),
    [  # the product at x = (1, 2, 3) applied to the argument, by hand
        ("mtp_hessian_grad_and_value", lambda x: (x @ x) ** 2, None),
        ("mhp_jacobian_and_value", lambda x: x**3, None),
        ("vjp_and_value", lambda x: x**3, lambda x, u: 3 * x**2 * u),
    ],
    ids=["mtp", "mhp", "vjp"],
)
def test_jax_products_are_measured_against_the_two_call_bound(operator, func, expected):
    if not available("jax"):
        pytest.skip("jax is not installed")
    forms = bench.hand_written("jax", operator, func, n=3)
    names = ["jit composite", "jit, product from (x, M)", "jit, tabulated"]
    assert sorted(forms) == names
    # Where the product's table is large, it is not written tabulated.
    assert sorted(bench.hand_written("jax", operator, func, n=200)) == names[:2]
    x = np.array([1.0, 2.0, 3.0])
    composite, two_calls, tabulated = (forms[name](x) for name in names)
    argument = np.ones(np.shape(composite[1]))
    assert len(composite) == len(two_calls) == len(tabulated)
    np.testing.assert_allclose(two_calls[0](argument), composite[0](argument), 1e-5)
    np.testing.assert_allclose(tabulated[0](argument), composite[0](argument), 1e-5)
    for by_table, by_calls in zip(tabulated[1:], two_calls[1:], strict=True):
        np.testing.assert_allclose(by_table, by_calls, 1e-5)
    if expected is not None:
        np.testing.assert_allclose(two_calls[0](argument), expected(x, 1.0), 1e-5)


def _owned_reference(backend: str) -> str:
    """The hand-written form a product bound to the caller's ``x`` comes from."""
    return "autograd.grad" if backend == "torch" else "jit, product from (x, M)"


@pytest.mark.parametrize("operator", list(diffops.DIFF_OPS))
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_owned_hand_written_forms_keep_diffops_guarantees(backend, operator):
    """Each output a new array of its own, each product bound to a copy of x."""
    if not available(backend):
        pytest.skip(f"{backend} is not installed")
    record = OPERATORS[operator]
    func = bench._SAMPLE_FUNCTIONS[record.applies_to](array_namespace(backend), 4)
    x = np.linspace(-0.5, 0.7, 4)
    d = diffops.autodiff_fallback(None, func, operator, operator, backend)
    expected = d(x)  # by diffops, another route than the forms'
    product = record.product is not None
    rng = np.random.default_rng(3)
    argument = rng.standard_normal(np.shape(expected[1])) if product else None
    wanted = [expected[0](argument), *expected[1:]] if product else list(expected)
    forms = bench.hand_written(backend, operator, func, owned=True, n=4)
    assert set(forms) == set(bench.hand_written(backend, operator, func, n=4))
    for name, form in forms.items():
        point = x.copy()
        outputs = list(form(point))
        arrays = [output for output in outputs if isinstance(output, np.ndarray)]
        if product:
            results = [outputs[0](argument), outputs[0](argument)]
            assert not np.shares_memory(*results), name
            arrays += results
        for i, array in enumerate(arrays):
            assert array.flags.writeable, name
            assert not np.shares_memory(array, point), name
            assert not any(np.shares_memory(array, b) for b in arrays[i + 1 :]), name
        point += 0.5  # in place: nothing returned moves, nor does a product
        got = [outputs[0](argument), *outputs[1:]] if product else outputs
        for output, value in zip(got, wanted, strict=True):
            np.testing.assert_allclose(output, value, rtol=1e-6, err_msg=name)
    # As the framework hands it back, the product moves with x (but an mhp: the
    # sample constraints are quadratic, so their mhp does not depend on x).
    if product and operator != "mhp_jacobian_and_value":
        plain = bench.hand_written(backend, operator, func)
        point = x.copy()
        moving = plain[_owned_reference(backend)](point)[0]
        point += 0.5
        assert not np.allclose(moving(argument), wanted[0], rtol=1e-6)


def test_owned_forms_are_measured_for_jax_and_torch_only():
    backends = available("jax", "torch", "autograd")
    measurements = bench.run_bench(backends, ["vjp_and_value"], [3], **FAST)
    for m in measurements:
        owned = {k: v for k, v in m.median_us.items() if k.startswith("owned: ")}
        if m.backend in bench.OWNED_FORMS:
            assert m.median_us["owned"] == min(owned.values())
            assert m.ratio("diffops", "owned") is not None
        else:
            assert not owned
            assert "owned" not in m.median_us
    assert "ours/owned" in bench.format_table(measurements)
    with pytest.raises(ValueError, match="owned forms are written for jax"):
        bench.hand_written("autograd", "grad_and_value", np.sum, owned=True)


def test_symnum_is_built_cold_then_warm_in_a_cache_of_the_bench_own():
    if not available("symnum"):
        pytest.skip("symnum is not installed")
    before, entries = os.environ.get("DIFFOPS_CACHE_DIR"), cache.summary().entries
    (m,) = bench.run_bench(["symnum"], ["grad_and_value"], [3], **FAST)
    assert m.warm_build_s is not None
    assert m.warm_build_s >= 0
    assert os.environ.get("DIFFOPS_CACHE_DIR") == before
    assert cache.summary().entries == entries  # the suite's cache left alone
    assert "warm build s" in bench.format_table([m])


def test_sizes_beyond_a_backend_limit_are_left_out():
    backends = available("autograd")
    if not backends:
        pytest.skip("autograd is not installed")
    limit = bench.SIZE_LIMITS["autograd"]
    measurements = bench.run_bench(backends, ["grad_and_value"], [3, limit + 1], **FAST)
    assert [m.n for m in measurements] == [3]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--backend", "nosuch"], r"measures the backends .*; got 'nosuch'"),
        (["--size", "0"], r"--size: must be a positive integer; got '0'"),
        (["--repeats", "-1"], r"--repeats: must be a positive integer"),
        (["--batch", "0"], r"--batch: must be a positive integer"),
        (["--json", "/no/such/folder/b.json"], r"--json: no folder '/no/such/folder'"),
        (["--plot", "bench.txt"], r"--plot: the file's suffix names its format, one "
                                  r"of .*png.*; got 'bench.txt'"),
        (["--batch", "2", "--json", "b.json", "--memory"],
         r"--json and --memory: for the latency bench, not --batch"),
        (["--json", "."], r"--json: needs a file's name; got '\.'"),
        (["--json", ""], r"--json: needs a file's name; got ''"),
        (["--plot", "figures/"], r"--plot: needs a file's name; got 'figures/'"),
        (["--plot", "bench.pgf"], r"--plot: the file's suffix .* got 'bench.pgf'"),
        (["--plot", "bench.png/."], r"--plot: needs a file's name; got 'bench.png/.'"),
        (["--json", "b" * 300 + ".json"], r"--json: cannot write 'b+\.json': .*long"),
        (["--json", "b.png", "--plot", "./b.png"],
         r"--json and --plot name the same file"),
    ],
)  # fmt: skip
def test_the_bench_command_refuses_what_it_cannot_measure(
    arguments, message, capsys, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)  # where the files named would be written
    with pytest.raises(SystemExit) as exited:
        main(["bench", *arguments])
    assert exited.value.code == 2
    assert re.search(message, capsys.readouterr().err)


def test_torch_compile_is_measured_only_where_it_can_be(capsys):
    if not available("torch"):
        pytest.skip("torch is not installed")
    for arguments in (
        ["--backend", "torch+compile", "--operator", "hessian_grad_and_value"],
        ["--batch", "10", "--backend", "torch+compile"],
    ):
        with pytest.raises(SystemExit):
            main(["bench", *arguments])
        assert "torch+compile" in capsys.readouterr().err


def test_jax_sync_runs_jax_on_the_calling_thread_in_that_process_only():
    if not available("jax"):
        pytest.skip("jax is not installed")
    program = """
        import jax
        from diffops.cli import main
        main(["bench", "--backend", "jax", "--operator", "grad_and_value",
              "--size", "3", "--repeats", "1", "--no-peer", "--jax-sync"])
        print("async:", jax.config.read("jax_cpu_enable_async_dispatch"))
    """
    result = run_python(program)
    assert result.returncode == 0, result.stderr
    assert "ran on the calling thread (--jax-sync)" in result.stdout
    assert re.search(r"^jax +grad +3 call ", result.stdout, re.MULTILINE)
    assert "async: False" in result.stdout
    # Without the option, JAX keeps its default.
    result = run_python(program.replace(', "--jax-sync"', ""))
    assert result.returncode == 0, result.stderr
    assert "async: True" in result.stdout


def test_torch_compile_is_compiled_anew_at_each_size(monkeypatch):
    """Each n's build and first call are measured cold, as in a fresh process."""
    if not available("torch"):
        pytest.skip("torch is not installed")
    import torch

    resets = []
    reset = torch._dynamo.reset
    monkeypatch.setattr(torch._dynamo, "reset", lambda: resets.append(reset()))
    measurements = bench.run_bench(
        [bench.TORCH_COMPILE], ["grad_and_value"], [3, 4], **FAST
    )
    assert len(resets) == 2
    assert [m.n for m in measurements] == [3, 4]
    assert all(m.max_deviation < 1e-12 for m in measurements)


def test_variants_take_turns_first_each_after_untimed_calls_of_its_own(monkeypatch):
    # Timed in a fixed order, the variant listed first always ran just after the
    # one listed last, and paid for what it left behind.
    monkeypatch.setattr(bench, "_batch_size", lambda call, seconds: 20)
    log: list[str] = []
    calls = {name: (lambda name=name: log.append(name)) for name in "abc"}
    median, _ = bench._interleaved(calls, 3, 0.01)
    runs: list[tuple[str, int]] = []
    for name in log:
        if runs and runs[-1][0] == name:
            runs[-1] = (name, runs[-1][1] + 1)
        else:
            runs.append((name, 1))
    # Each run: 2 untimed calls (a tenth of the batch), then the timed batch of 20.
    assert runs == [(name, 22) for name in "abcbcacab"]
    assert set(median) == set("abc")
