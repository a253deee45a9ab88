"""The on-disk cache of SymNum's generated code (``diffops.cache``).

What is checked: a second process builds from the cache without generating code; the
key is what a function computes (a changed constant is a different entry); damaged,
foreign and unsafe entries are ignored and rebuilt; concurrent builders all succeed;
``DIFFOPS_NO_CACHE`` and ``DIFFOPS_CACHE_DIR`` are obeyed; ``diffops cache``. The
suite's own cache directory is set in ``conftest``; each test here uses a fresh one.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import pickle
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import run_python

pytest.importorskip("symnum")

import symnum
import symnum.numpy as snp

from diffops import cache
from diffops.backends import symnum as symnum_backend
from diffops.cli import main

X = np.array([0.3, -1.2, 2.0])


def _scaled(a: float) -> Callable[..., Any]:
    """f(x) = a Σ x² / 2 + Σ sin x: its gradient is a x + cos x."""

    @symnum.numpify(3)
    def f(x: Any) -> Any:
        return a * snp.sum(x**2) / 2 + snp.sum(snp.sin(x))

    return f


def _gradient(a: float, x: np.ndarray) -> np.ndarray:
    return a * x + np.cos(x)


def _hessian(a: float, x: np.ndarray) -> np.ndarray:
    return np.diag(a - np.sin(x))


@pytest.fixture
def directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty cache directory, not yet created, set as ``DIFFOPS_CACHE_DIR``."""
    path = tmp_path / "cache"
    monkeypatch.setenv("DIFFOPS_CACHE_DIR", str(path))
    monkeypatch.delenv("DIFFOPS_NO_CACHE", raising=False)
    return path


@contextlib.contextmanager
def no_generation() -> Iterator[None]:
    """SymNum's code generators raise: what is built in the block is from the cache."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("SymNum generated code; the cache was not used")

    with pytest.MonkeyPatch.context() as patch:
        for generator in symnum_backend.SYMNUM_OPERATORS.values():
            patch.setattr(symnum, generator, refuse)
        yield


def _entries(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.json"))


def _check_grad(a: float) -> None:
    value_grad = symnum_backend.grad_and_value(_scaled(a))
    gradient, value = value_grad(X)
    np.testing.assert_allclose(gradient, _gradient(a, X), rtol=1e-12)
    np.testing.assert_allclose(value, a * X @ X / 2 + np.sin(X).sum(), rtol=1e-12)


def test_a_second_build_comes_from_the_cache(directory: Path) -> None:
    _check_grad(2.0)
    assert len(_entries(directory)) == 1
    with no_generation():
        _check_grad(2.0)
    assert len(_entries(directory)) == 1


def test_a_changed_constant_is_a_different_entry(directory: Path) -> None:
    _check_grad(2.0)
    _check_grad(3.0)  # same name, same source text, another constant
    assert len(_entries(directory)) == 2
    hessian = symnum_backend.hessian_grad_and_value(_scaled(3.0))(X)[0]
    np.testing.assert_allclose(hessian, _hessian(3.0, X), rtol=1e-12)
    assert len(_entries(directory)) == 3


def test_constants_of_a_vector_function_are_told_apart_to_the_last_bit(
    directory: Path,
) -> None:
    """An array's printed form rounds to 15 digits; the key writes each entry exactly.

    c(x) = (x₀^a, x₁): ∂J₀₀/∂x₀ = a (a - 1) x₀^(a-2), where a - 1 is a few ulps and
    x₀ tiny, so a constant one ulp apart changes the product by a factor of 3.
    """
    x = np.array([1e-200, 1.0])
    M = np.array([[1.0, 0.0], [0.0, 0.0]])

    def powered(a: float) -> Callable[..., Any]:
        @symnum.numpify(2)
        def c(x: Any) -> Any:
            return snp.array([x[0] ** a, x[1]])

        return c

    for a in (1 + 2**-52, 1 + 3 * 2**-52):
        mhp, _, _ = symnum_backend.mhp_jacobian_and_value(powered(a))(x)
        np.testing.assert_allclose(mhp(M)[0], a * (a - 1) * x[0] ** (a - 2), rtol=1e-6)
    assert len(_entries(directory)) == 2


def test_the_same_expression_under_another_name_shares_the_entry(
    directory: Path,
) -> None:
    _check_grad(2.0)

    @symnum.numpify(3)
    def other(y: Any) -> Any:
        return 2.0 * snp.sum(y**2) / 2 + snp.sum(snp.sin(y))

    gradient = symnum_backend.grad_and_value(other)(X)[0]
    np.testing.assert_allclose(gradient, _gradient(2.0, X), rtol=1e-12)
    assert len(_entries(directory)) == 1


def test_products_and_pickles_from_the_cache(directory: Path) -> None:
    generated = symnum_backend.mtp_hessian_grad_and_value(_scaled(2.0))
    with no_generation():
        loaded = symnum_backend.mtp_hessian_grad_and_value(_scaled(2.0))
    assert len(_entries(directory)) == 1
    M = np.arange(9.0).reshape(3, 3)
    for derivative in (generated, loaded, pickle.loads(pickle.dumps(loaded))):
        mtp, hessian, _, _ = derivative(X)
        np.testing.assert_allclose(hessian, _hessian(2.0, X), rtol=1e-12)
        # The third derivative is diagonal, -cos x: mtp(M)_k = -M_kk cos x_k.
        np.testing.assert_allclose(mtp(M), -np.diag(M) * np.cos(X), rtol=1e-12)


def test_the_vjp_of_a_scalar_from_its_gradient_is_cached(directory: Path) -> None:
    """vjp_and_value of a scalar c, made from SymNum's gradient: vjp(u) = u g."""
    generated = symnum_backend.vjp_and_value(_scaled(2.0))
    with no_generation():
        loaded = symnum_backend.vjp_and_value(_scaled(2.0))
    assert len(_entries(directory)) == 1
    for derivative in (generated, loaded, pickle.loads(pickle.dumps(loaded))):
        vjp, value = derivative(X)
        assert np.shape(value) == ()
        np.testing.assert_allclose(vjp(1.5), 1.5 * _gradient(2.0, X), rtol=1e-12)


_BUILD_IN_A_PROCESS = """
    import numpy as np
    import symnum, symnum.numpy as snp
    from diffops.backends import symnum as backend
    if {warm}:
        for generator in backend.SYMNUM_OPERATORS.values():
            setattr(symnum, generator, None)  # generating would fail

    @symnum.numpify(3)
    def f(x):
        return {scale} * snp.sum(x**2) / 2 + snp.sum(snp.sin(x))

    x = np.array([0.3, -1.2, 2.0])
    hessian = backend.hessian_grad_and_value(f)(x)[0]
    np.testing.assert_allclose(hessian, np.diag({scale} - np.sin(x)), rtol=1e-12)
"""
"""A process that builds a Hessian with SymNum; ``warm``: from the cache only."""


def test_a_second_process_builds_from_the_cache(directory: Path) -> None:
    environment = {**os.environ, "DIFFOPS_CACHE_DIR": str(directory)}
    for warm in (False, True):
        code = _BUILD_IN_A_PROCESS.format(warm=warm, scale=2.0)
        done = run_python(code, environment)
        assert done.returncode == 0, done.stderr
    assert len(_entries(directory)) == 1


def _key_of(directory: Path, a: float) -> tuple[Path, dict[str, Any]]:
    """Build f with constant ``a`` alone in the cache; its entry's path and record."""
    before = set(_entries(directory))
    _check_grad(a)
    (path,) = set(_entries(directory)) - before
    return path, json.loads(path.read_text())


def _damaged(directory: Path) -> dict[str, Callable[[Path, str], None]]:
    """Ways an entry can be damaged, each writing over the entry at ``path``."""
    _, other = _key_of(directory, 5.0)

    def write(text: str) -> Callable[[Path, str], None]:
        return lambda path, _: path.write_text(text)

    def with_payload(payload: Any) -> Callable[[Path, str], None]:
        # Whole entries, their digests right: each damage here is in the payload.
        return lambda path, key: path.write_text(
            json.dumps(
                {"key": key, "payload": payload, "sha256": cache._digest(key, payload)}
            )
        )

    def code_changed(path: Path, _: str) -> None:
        # One byte of the code changed, key and digest as written: still valid
        # JSON and runnable code, which gives 3 x + cos x for 2 x + cos x.
        text = path.read_text()
        assert "2.0*x[0]" in text, "the generated code is not as this test expects"
        path.write_text(text.replace("2.0*x[0]", "3.0*x[0]"))

    return {
        "empty": write(""),
        "garbage": lambda path, _: path.write_bytes(os.urandom(64)),
        "truncated": lambda path, _: path.write_text(path.read_text()[:100]),
        "a JSON list": write("[1, 2]"),
        "no key": write(json.dumps({"payload": other["payload"]})),
        "another key's entry": write(json.dumps(other)),
        "no payload": with_payload(None),
        "no source": with_payload({"function": "f"}),
        "source that raises": with_payload({"source": "1 / 0", "function": "f"}),
        "source in error": with_payload({"source": "def (", "function": "f"}),
        "wrong function": with_payload({"source": "g = 1", "function": "f"}),
        "code changed by a byte": code_changed,
        "nested too deep": write("[" * 100_000 + "]" * 100_000),
        "no digest": lambda path, key: path.write_text(
            json.dumps({"key": key, "payload": json.loads(path.read_text())["payload"]})
        ),
    }


DAMAGES = [
    "empty", "garbage", "truncated", "a JSON list", "no key", "another key's entry",
    "no payload", "no source", "source that raises", "source in error",
    "wrong function", "code changed by a byte", "no digest", "nested too deep",
]  # fmt: skip


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_damaged_entry_is_rebuilt(directory: Path, damage: str) -> None:
    path, record = _key_of(directory, 2.0)
    _damaged(directory)[damage](path, record["key"])
    _check_grad(2.0)  # neither an exception nor another function's gradient
    assert json.loads(path.read_text()) == record  # made again


def test_a_foreign_entry_is_not_used(directory: Path) -> None:
    path, _ = _key_of(directory, 2.0)
    _, other = _key_of(directory, 3.0)
    path.write_text(json.dumps(other))
    with no_generation(), pytest.raises(AssertionError, match="cache was not used"):
        symnum_backend.grad_and_value(_scaled(2.0))


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_entries_are_private_and_others_writable_ones_are_not_used(
    directory: Path,
) -> None:
    path, _ = _key_of(directory, 2.0)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.chmod(0o622)  # others could have written it
    with no_generation(), pytest.raises(AssertionError, match="cache was not used"):
        symnum_backend.grad_and_value(_scaled(2.0))
    _check_grad(2.0)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_no_cache_reads_and_writes_nothing(
    directory: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _check_grad(2.0)
    (entry,) = _entries(directory)
    monkeypatch.setenv("DIFFOPS_NO_CACHE", "1")
    assert cache.cache_directory() is None
    with no_generation(), pytest.raises(AssertionError, match="cache was not used"):
        symnum_backend.grad_and_value(_scaled(2.0))
    _check_grad(3.0)
    assert _entries(directory) == [entry]


def _without_distribution(
    monkeypatch: pytest.MonkeyPatch, missing: str
) -> Callable[..., Any]:
    """``importlib.metadata.version`` as where ``missing`` is on the path only."""
    import importlib.metadata

    found = importlib.metadata.version

    def version(name: str) -> str:
        if name == missing:
            raise importlib.metadata.PackageNotFoundError(name)
        return found(name)

    monkeypatch.setattr(importlib.metadata, "version", version)
    return version


def test_diffops_run_from_a_clone_uninstalled_still_caches(
    directory: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The key takes diffops' version from the code imported, not from pip's record."""
    _without_distribution(monkeypatch, "diffops")
    _check_grad(2.0)
    (entry,) = _entries(directory)
    key = json.loads(entry.read_text())["key"]
    import diffops

    assert json.loads(key)["versions"]["diffops"] == diffops.__version__
    with no_generation():
        _check_grad(2.0)


def test_symnum_of_unknown_version_builds_and_caches_nothing(
    directory: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Code cached under a version that cannot be told could be served stale."""
    _check_grad(2.0)
    (entry,) = _entries(directory)
    _without_distribution(monkeypatch, "symnum")
    with no_generation(), pytest.raises(AssertionError, match="cache was not used"):
        symnum_backend.grad_and_value(_scaled(2.0))
    _check_grad(3.0)
    assert _entries(directory) == [entry]


@pytest.mark.parametrize(
    ("value", "off"),
    [("1", True), ("yes", True), ("TRUE", True), ("0", False), ("false", False),
     ("No", False), ("off", False), (" ", False), ("", False)],
)  # fmt: skip
def test_no_cache_is_read_as_people_write_it(
    directory: Path, monkeypatch: pytest.MonkeyPatch, value: str, off: bool
) -> None:
    monkeypatch.setenv("DIFFOPS_NO_CACHE", value)
    assert cache.cache_directory() == (None if off else directory)


def test_the_default_location_is_the_user_cache_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import platformdirs

    monkeypatch.delenv("DIFFOPS_CACHE_DIR")
    monkeypatch.delenv("DIFFOPS_NO_CACHE", raising=False)
    expected = Path(platformdirs.user_cache_dir("diffops", appauthor=False))
    assert cache.cache_directory() == expected
    monkeypatch.setenv("DIFFOPS_CACHE_DIR", str(tmp_path / "elsewhere"))
    assert cache.cache_directory() == tmp_path / "elsewhere"


def test_an_unwritable_cache_only_costs_time(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    blocker = tmp_path / "a file"
    blocker.write_text("")
    monkeypatch.setenv("DIFFOPS_CACHE_DIR", str(blocker / "cache"))
    _check_grad(2.0)
    _check_grad(2.0)
    assert not blocker.read_text()
    with pytest.raises(NotADirectoryError, match="a file is not a directory"):
        cache.summary()  # says why nothing is cached, as diffops cache does


def test_processes_building_at_once_all_succeed(directory: Path) -> None:
    code = _BUILD_IN_A_PROCESS.format(warm=False, scale=4.0)
    environment = {**os.environ, "DIFFOPS_CACHE_DIR": str(directory)}
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        runs = list(pool.map(lambda _: run_python(code, environment), range(4)))
    for done in runs:
        assert done.returncode == 0, done.stderr
    assert len(_entries(directory)) == 1


def test_stores_at_once_leave_one_whole_entry(directory: Path) -> None:
    payload = {"source": "x" * 1_000_000, "function": "f"}
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: cache.store("key", payload), range(32)))
    assert cache.load("key") == payload
    assert list(directory.glob("*.tmp")) == []


def test_the_cache_command_shows_and_clears(
    directory: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _check_grad(2.0)
    _check_grad(3.0)
    assert main(["cache"]) == 0
    shown = capsys.readouterr().out
    assert f"location  {directory} (DIFFOPS_CACHE_DIR)" in shown
    assert "entries   2\n" in shown
    size = sum(path.stat().st_size for path in _entries(directory))
    assert f"size      {size / 1024:.1f} KiB" in shown
    assert main(["cache", "clear"]) == 0
    assert capsys.readouterr().out == f"removed 2 entries from {directory}\n"
    assert _entries(directory) == []
    with no_generation(), pytest.raises(AssertionError, match="cache was not used"):
        symnum_backend.grad_and_value(_scaled(2.0))


def test_clear_and_the_count_leave_other_files_alone(
    directory: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A cache directory may be shared scratch space: only entries are diffops'."""
    _check_grad(2.0)
    others = {
        "run_config.json": "{}",
        "notes.txt": "mine",
        "results.tmp": "mine",
        f"{'a' * 63}.json": "{}",  # one digit short of an entry's name
    }
    for name, text in others.items():
        (directory / name).write_text(text)
    assert cache.summary().entries == 1
    assert main(["cache", "clear"]) == 0
    assert capsys.readouterr().out == f"removed 1 entry from {directory}\n"
    assert sorted(path.name for path in directory.iterdir()) == sorted(others)


def test_an_entry_removed_while_counted_is_not_counted(
    directory: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Another process may clear the cache between listing it and reading a size."""
    _check_grad(2.0)
    _check_grad(3.0)
    listed = cache._files(directory)
    gone, kept = _entries(directory)

    def listed_then_removed(place: Path | None) -> list[Path]:
        gone.unlink(missing_ok=True)
        return listed

    monkeypatch.setattr(cache, "_files", listed_then_removed)
    assert cache.summary() == (directory, 1, kept.stat().st_size)
    assert main(["cache"]) == 0
    assert "entries   1\n" in capsys.readouterr().out


def test_the_cache_command_says_when_the_cache_is_off(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DIFFOPS_NO_CACHE", "1")
    for action in ([], ["clear"]):
        assert main(["cache", *action]) == 0
        assert "the cache is off" in capsys.readouterr().out


def test_a_pipe_or_a_huge_file_at_an_entry_is_not_read(directory: Path) -> None:
    """Opening a pipe for reading would block; reading a huge file would fill memory."""
    directory.mkdir()
    key = symnum_backend._cache_key(
        "grad_and_value", 3, symnum_backend._expression(_scaled(2.0), 3)
    )
    path = cache._path(directory, key)
    os.mkfifo(path)
    assert cache.load(key) is None  # at once: not blocked on the pipe
    _check_grad(2.0)  # built, and the pipe replaced by the entry
    assert stat.S_ISREG(path.stat().st_mode)
    with no_generation():
        _check_grad(2.0)
    entry = path.read_text()
    with open(path, "r+") as file:  # the same entry, made 1 GiB long (sparse)
        file.truncate(1024**3)
    assert cache.load(key) is None
    path.write_text(entry)
    assert cache.load(key) is not None


def test_the_cache_command_says_what_it_could_not_do(
    directory: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An entry that cannot be removed, a directory that cannot be read: status 1."""
    _check_grad(2.0)
    _check_grad(3.0)

    def refuse(path: Path, *args: Any, **kwargs: Any) -> None:
        raise PermissionError(13, "Permission denied", str(path))

    with monkeypatch.context() as patch:
        patch.setattr(Path, "unlink", refuse)
        assert main(["cache", "clear"]) == 1
    err = capsys.readouterr().err
    assert "removed 0 entries; could not remove 2 files: [Errno 13]" in err
    assert len(_entries(directory)) == 2
    with monkeypatch.context() as patch:
        patch.setattr(Path, "iterdir", refuse)
        for action in ([], ["clear"]):
            assert main(["cache", *action]) == 1
            assert f"diffops cache: {directory}: [Errno 13]" in capsys.readouterr().err
    assert main(["cache", "clear"]) == 0
    assert _entries(directory) == []
    directory.rmdir()
    directory.write_text("")  # DIFFOPS_CACHE_DIR names a file: nothing is cached
    for action in ([], ["clear"]):
        assert main(["cache", *action]) == 1
        err = capsys.readouterr().err
        assert (
            err
            == f"diffops cache: {directory}: not a directory, so nothing is cached\n"
        )
    below = directory / "sub" / "deeper"  # a file above the cache's place: the same
    monkeypatch.setenv("DIFFOPS_CACHE_DIR", str(below))
    for action in ([], ["clear"]):
        assert main(["cache", *action]) == 1
        err = capsys.readouterr().err
        assert f"{below}: {directory} is not a directory, so nothing is cached" in err


@pytest.mark.parametrize("link", ["to nothing", "in a loop"])
@pytest.mark.parametrize("below", [False, True], ids=["at the place", "above it"])
def test_a_symbolic_link_that_leads_nowhere_is_reported_and_only_costs_time(
    directory: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    link: str,
    below: bool,
) -> None:
    """As a file in the cache's way: ``diffops cache`` says which; builds go on."""
    place = directory.parent / "link"
    if link == "to nothing":
        place.symlink_to(directory.parent / "nothing")
    else:
        place.symlink_to(directory.parent / "other")
        (directory.parent / "other").symlink_to(place)
    cache_dir = place / "sub" if below else place
    monkeypatch.setenv("DIFFOPS_CACHE_DIR", str(cache_dir))
    for action in ([], ["clear"]):
        assert main(["cache", *action]) == 1
        err = capsys.readouterr().err
        assert f"{place} is a symbolic link that leads nowhere" in err
    _check_grad(2.0)
    assert not directory.exists()


@pytest.mark.parametrize(
    "where", ["~ of no such user", "a default platformdirs cannot make"]
)
def test_a_home_directory_that_cannot_be_told_is_reported_and_only_costs_time(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], where: str
) -> None:
    """As in a container whose user has no home: nothing cached, and said why."""
    monkeypatch.delenv("DIFFOPS_NO_CACHE", raising=False)
    if where.startswith("~"):
        monkeypatch.setenv("DIFFOPS_CACHE_DIR", "~no-such-user-of-diffops/cache")
    else:
        import platformdirs

        def unexpanded(*args: Any, **kwargs: Any) -> str:
            return "~/.cache/diffops"  # what platformdirs leaves, lacking a home

        monkeypatch.delenv("DIFFOPS_CACHE_DIR", raising=False)
        monkeypatch.setattr(platformdirs, "user_cache_dir", unexpanded)
    with pytest.raises(OSError, match="cannot tell the home directory"):
        cache.cache_directory()
    for action in ([], ["clear"]):
        assert main(["cache", *action]) == 1
        assert "cannot tell the home directory" in capsys.readouterr().err
    with no_generation(), pytest.raises(AssertionError, match="cache was not used"):
        symnum_backend.grad_and_value(_scaled(2.0))
    _check_grad(2.0)
