"""Atomic output: write under a temporary name, rename when complete.

A failed step must leave no partial output. Every writer in the package goes
through :func:`atomic_path` (or the small helpers on top of it): the file
appears under its final name only once it is complete, and the temporary file
is removed if anything fails.

A process killed hard (SIGKILL, a segfault, the node going down) cannot clean
up, so the temporary name records who wrote it:
``.<final name>.rbda-<host>-<pid>-<random><suffix>``. The next
:func:`atomic_path` for the same target removes that target's temporaries
whose writer was on this host and is no longer running (:func:`sweep_stale_temporaries`).
A temporary of a live process, or of another host (a shared cluster file
system, where this host cannot tell whether the pid is alive), is never
touched; nor is any file that is not exactly a temporary of that target.

:func:`check_output_path` checks an output path before any work: not an
input (nor inside an input folder), not a folder, in a place that can be
written; each failure is a :class:`~rbda.errors.SettingError` naming it.
:func:`check_outputs` is the guard every ``rbda`` command runs before its work
(``rbda.cli`` calls it with what the command's ``io_paths(args)`` declares):
each output file checked so against every input, each output folder neither
an input nor a file, and no two outputs the same file.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from rbda.errors import RbdaError, SettingError

log = logging.getLogger(__name__)


def current_umask() -> int:
    """The process's umask (read by setting it and putting it back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _host_tag() -> str:
    """This host's name as it appears in temporary names (letters, digits, ``_``)."""
    return re.sub(r"[^A-Za-z0-9_]", "_", socket.gethostname()) or "host"


def _temporary_prefix(final: Path, pid: int | None = None) -> str:
    return f".{final.name}.rbda-{_host_tag()}-{os.getpid() if pid is None else pid}-"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def sweep_stale_temporaries(final: str | Path) -> list[Path]:
    """Remove the temporaries of ``final`` left by processes of this host that are gone.

    Only names of exactly the form :func:`atomic_path` gives ``final``'s
    temporaries, with this host's tag and the pid of a process that no longer
    exists, are removed; returns them.
    """
    final = Path(final)
    pattern = re.compile(re.escape(f".{final.name}.rbda-{_host_tag()}-") + r"(\d+)-[a-z0-9_]{8}(?:\..*)?\Z")
    removed = []
    try:
        names = os.listdir(final.parent)
    except OSError:
        return removed
    for name in names:
        match = pattern.match(name)
        if not match or int(match.group(1)) == os.getpid() or _pid_alive(int(match.group(1))):
            continue
        stale = final.parent / name
        with contextlib.suppress(FileNotFoundError, IsADirectoryError):
            stale.unlink()
            removed.append(stale)
            log.warning("removed %s, a temporary file left by process %s (killed before it finished %s)",
                        stale, match.group(1), final.name)
    return removed


@contextlib.contextmanager
def atomic_path(final: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; rename it to ``final`` on success.

    Stale temporaries of ``final`` from killed processes are swept first
    (see the module docstring).
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale_temporaries(final)
    fd, tmp_name = tempfile.mkstemp(
        prefix=_temporary_prefix(final), suffix=suffix or ".tmp", dir=final.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    # mkstemp creates 0600; give the final file the mode a plain open() would,
    # so outputs on a shared cluster are readable by the group as usual.
    os.chmod(tmp, 0o666 & ~current_umask())
    try:
        yield tmp
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


@contextlib.contextmanager
def atomic_folder(final: str | Path, marker: str) -> Iterator[Path]:
    """Yield a new temporary folder beside ``final``; on success it replaces ``final``, which may
    exist only as an earlier output of the same command (holding the file ``marker``) or an empty
    folder: anything else is refused before any work, never replaced. On failure the temporary goes."""
    final = Path(final)
    if final.exists() and not (final / marker).is_file() and (not final.is_dir() or any(final.iterdir())):
        raise RbdaError(f"{final}: exists and is not an earlier output of this command (no {marker}); "
                        "refusing to replace it")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    try:
        yield tmp
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as indented, key-sorted JSON, atomically."""
    with atomic_path(path, suffix=".json.tmp") as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n")


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def _inside(path: str, folder: str) -> bool:
    return os.path.commonpath([path, folder]) == folder


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def check_output_path(path: str | Path, setting: str,
                      inputs: Iterable[str | Path] | Mapping[str, Iterable[str | Path]] = ()) -> Path:
    """Check, before any work, that ``path`` can be written as a file; return it.

    Refused with a :class:`SettingError` naming ``setting`` and the path: one of
    ``inputs`` (the same file, by any name) or inside an input folder; an
    existing folder; a place below a file; a folder this process cannot write in.
    ``inputs`` may map each input's setting to its paths (the error then names it).
    """
    path = Path(path)
    real = os.path.realpath(path)
    named = inputs.items() if isinstance(inputs, Mapping) else [("", inputs)]
    for input_setting, items in named:
        for item in (Path(i) for i in items if i is not None):
            if not item.exists():
                continue
            same = path.exists() and _same_file(path, item)
            if same or (item.is_dir() and _inside(real, os.path.realpath(item))):
                where = "is" if same else "is inside"
                which = f" {input_setting}" if input_setting else ""
                raise SettingError(setting, f"an output path that is not an input (it {where} the input{which} "
                                            f"{str(item)!r}, which writing would replace or add to)", str(path))
    if path.is_dir():
        raise SettingError(setting, "a file path (it is an existing folder)", str(path))
    _check_writable_place(path, setting)
    return path


def _check_writable_place(path: Path, setting: str) -> None:
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if ancestor.exists() and not ancestor.is_dir():
        raise SettingError(setting, f"a path below folders ({str(ancestor)!r} is a file)", str(path))
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise SettingError(setting, f"a place this process can write ({str(ancestor)!r} is not writable)", str(path))


def check_outputs(outputs: Mapping[str, str | Path | None], inputs: Mapping[str, Iterable[str | Path | None]],
                  folders: Mapping[str, str | Path | None] | None = None) -> None:
    """The guard every command runs before its work: each of ``outputs`` (setting -> file) passes
    :func:`check_output_path` against every one of ``inputs`` (setting -> paths); each of ``folders``
    (setting -> an output folder) is not an input, not a file and in a writable place; no two
    outputs are the same file. ``None`` entries (options not given) are skipped."""
    given = {setting: Path(p) for setting, p in outputs.items() if p is not None}
    clean_inputs = {setting: [Path(p) for p in paths if p is not None] for setting, paths in inputs.items()}
    for setting, path in given.items():
        check_output_path(path, setting, clean_inputs)
    settings = list(given)
    for i, first in enumerate(settings):
        for second in settings[i + 1:]:
            a, b = given[first], given[second]
            if os.path.realpath(a) == os.path.realpath(b) or (a.exists() and b.exists() and _same_file(a, b)):
                raise SettingError(second, f"a different file from {first}", str(b))
    for setting, folder in (folders or {}).items():
        if folder is None:
            continue
        folder = Path(folder)
        for input_setting, items in clean_inputs.items():
            for item in items:
                if item.exists() and folder.exists() and _same_file(folder, item):
                    raise SettingError(setting, f"an output folder that is not an input (it is the input "
                                                f"{input_setting} {str(item)!r})", str(folder))
        if folder.exists() and not folder.is_dir():
            raise SettingError(setting, "a folder (it is an existing file)", str(folder))
        _check_writable_place(folder / ".rbda-probe", setting)
