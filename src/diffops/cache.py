"""An on-disk cache of generated code, so that it is generated once per machine.

SymNum derives and generates a derivative function's code symbolically, seconds to
minutes of work that a script would otherwise redo in every process. The code is kept
here, under a key that says what it computes (the symbolic expression, the operator,
the size and the versions of the libraries that made it), never the function's name
or source, so that a changed constant can never be served stale code.

An entry is a JSON file named by the SHA-256 of its key, which it records in full with
the SHA-256 of its contents: it is used only where the recorded key equals the key
asked for and the contents their digest, so that a corrupt, truncated or foreign
entry, or one whose code was changed by a byte, is ignored (and replaced when the
code is made again).
Entries are written to a temporary file and renamed, so that processes making the same
code at once all succeed, and readable by their user only, since their code is run.

The cache lies in ``DIFFOPS_CACHE_DIR`` if that is set (and not empty), otherwise in
the platform's user cache directory; ``DIFFOPS_NO_CACHE=1`` turns it off: nothing is
read or written.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import stat
import tempfile
from pathlib import Path
from typing import Any, NamedTuple

__all__ = ["CacheSummary", "cache_directory", "clear", "load", "store", "summary"]

_SUFFIX = ".json"
_TEMPORARY = (".diffops-", ".tmp")
"""The prefix and suffix of a temporary file, renamed into an entry once written."""
_ENTRY_NAME = re.compile(r"[0-9a-f]{64}\.json")
"""An entry's file name: the SHA-256 of its key. Nothing else is diffops'."""
_OFF = ("", "0", "false", "no", "off")
"""Values of ``DIFFOPS_NO_CACHE`` that leave the cache on."""
_LARGEST = 256 * 1024**2
"""The largest entry read, in bytes: anything larger is not one diffops wrote."""


def cache_directory() -> Path | None:
    """Where the cache lies, or ``None`` where ``DIFFOPS_NO_CACHE`` turns it off.

    Returns:
        ``DIFFOPS_CACHE_DIR`` if set and not empty, else the platform's user cache
        directory for diffops; ``None`` if ``DIFFOPS_NO_CACHE`` is set to anything
        but ``0``, ``false``, ``no``, ``off`` or the empty string.

    Raises:
        OSError: Where the place depends on a home directory that cannot be told
            (``~`` with no ``HOME`` and a user the system does not know, as in some
            containers, or ``~name`` of no such user).
    """
    if os.environ.get("DIFFOPS_NO_CACHE", "").strip().lower() not in _OFF:
        return None
    configured = os.environ.get("DIFFOPS_CACHE_DIR")
    try:
        if configured:
            return Path(configured).expanduser()
        import platformdirs

        found = Path(platformdirs.user_cache_dir("diffops", appauthor=False))
        if found.parts[0].startswith("~"):  # what platformdirs cannot expand
            raise RuntimeError(f"{found} left as it is")
    except (RuntimeError, KeyError) as error:  # pathlib's; the pwd module's
        where = f"DIFFOPS_CACHE_DIR={configured}" if configured else "the default"
        msg = (
            f"cannot tell the home directory for the cache ({where}: {error}); set "
            "DIFFOPS_CACHE_DIR to an absolute path, or DIFFOPS_NO_CACHE=1"
        )
        raise OSError(msg) from error
    return found


def _path(directory: Path, key: str) -> Path:
    return directory / (hashlib.sha256(key.encode()).hexdigest() + _SUFFIX)


def _digest(key: str, payload: Any) -> str:
    """The SHA-256 of an entry's contents, its key and payload, as written."""
    text = json.dumps([key, payload], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _private(status: os.stat_result) -> bool:
    """Whether an entry is this user's own and nobody else can write it.

    An entry's code is run, so one that another user could have written is not.
    Windows has no such mode bits; there the directory's own permissions decide.
    """
    if os.name != "posix":
        return True
    return status.st_uid == os.getuid() and not status.st_mode & 0o022


def load(key: str) -> dict[str, Any] | None:
    """The payload stored under ``key``, or ``None``.

    ``None`` also where the cache is off, or the entry is missing, unreadable, not
    a regular file (a pipe would block the read), over 256 MiB, not JSON, records
    another key, does not match the digest it records, or is not this user's own
    (owned by another user or writable by others).

    Args:
        key: What the payload computes, as a string.

    Returns:
        The payload, a JSON object, or ``None``.
    """
    try:
        directory = cache_directory()
    except OSError:  # no home to find it in: it only costs time
        return None
    if directory is None:
        return None
    try:
        # Not blocking where the entry's name is a pipe, as opening one for reading
        # would; the file is then refused as not regular.
        descriptor = os.open(
            _path(directory, key), os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)
        )
        with open(descriptor, encoding="utf-8") as file:
            status = os.fstat(file.fileno())
            if not (
                stat.S_ISREG(status.st_mode)
                and status.st_size <= _LARGEST
                and _private(status)
            ):
                return None
            entry = json.loads(file.read())
    except (OSError, ValueError, RecursionError):  # the last: nested too deep
        return None
    if not isinstance(entry, dict) or entry.get("key") != key:
        return None
    payload = entry.get("payload")
    if not isinstance(payload, dict) or entry.get("sha256") != _digest(key, payload):
        return None
    return payload


def store(key: str, payload: dict[str, Any]) -> None:
    """Keep ``payload`` under ``key``; do nothing where the cache is off.

    Written to a temporary file in the cache, readable by this user only, then
    renamed over the entry, so that a reader never sees half an entry. A cache that
    cannot be written (a read-only file system, say) is passed over in silence: it
    only saves time.

    Args:
        key: What the payload computes, as a string.
        payload: A JSON object.
    """
    try:
        directory = cache_directory()
    except OSError:
        return
    if directory is None:
        return
    text = json.dumps({"key": key, "payload": payload, "sha256": _digest(key, payload)})
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        prefix, suffix = _TEMPORARY
        descriptor, temporary = tempfile.mkstemp(suffix, prefix, directory)
    except OSError:
        return
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:  # mode 0o600
            file.write(text)
        os.replace(temporary, _path(directory, key))
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(temporary)


class CacheSummary(NamedTuple):
    """What ``diffops cache`` shows.

    Attributes:
        directory: Where the cache lies; ``None`` where it is off.
        entries: How many entries it holds.
        size: Their size in bytes.
    """

    directory: Path | None
    entries: int
    size: int


def summary() -> CacheSummary:
    """Where the cache lies, how many entries it holds and their size in bytes.

    Returns:
        The :class:`CacheSummary`.

    Raises:
        OSError: Where the cache directory cannot be read.
    """
    directory = cache_directory()
    sizes = []
    for file in _files(directory):
        if _ENTRY_NAME.fullmatch(file.name):
            with contextlib.suppress(FileNotFoundError):  # removed meanwhile
                sizes.append(file.stat().st_size)
    return CacheSummary(directory, len(sizes), sum(sizes))


def _files(directory: Path | None) -> list[Path]:
    """The files in ``directory``, none where it is off or missing.

    Raises:
        NotADirectoryError: Where something else (a file, a symbolic link that
            leads nowhere) lies at the cache's place or at that of a directory above
            it, so that nothing can be cached.
    """
    if directory is None:
        return []
    for place in (directory, *directory.parents):  # the nearest that exists
        if place.exists():
            break
        if place.is_symlink():  # to nothing, or in a loop
            msg = f"{place} is a symbolic link that leads nowhere, so nothing is cached"
            raise NotADirectoryError(msg)
    if not place.is_dir():
        what = "" if place == directory else f"{place} is "
        msg = f"{what}not a directory, so nothing is cached"
        raise NotADirectoryError(msg)
    if place != directory:
        return []  # made at the first entry stored
    return sorted(file for file in directory.iterdir() if file.is_file())


def clear() -> int:
    """Remove every entry (and temporary file) from the cache.

    Only the files diffops writes there are removed: entries, named by the SHA-256 of
    their key, and temporary files; anything else in the directory is left alone.

    Returns:
        How many entries were removed.

    Raises:
        OSError: Where the cache directory cannot be read, or an entry cannot be
            removed (the others are removed first), saying how many were.
    """
    prefix, suffix = _TEMPORARY
    removed, failures = 0, []
    for file in _files(cache_directory()):
        entry = _ENTRY_NAME.fullmatch(file.name) is not None
        if entry or (file.name.startswith(prefix) and file.name.endswith(suffix)):
            try:
                file.unlink()
            except FileNotFoundError:  # removed meanwhile, by another process
                continue
            except OSError as error:
                failures.append(error)
                continue
            removed += entry
    if failures:
        files = "a file" if len(failures) == 1 else f"{len(failures)} files"
        msg = f"removed {removed} entries; could not remove {files}: {failures[0]}"
        raise OSError(msg)
    return removed
