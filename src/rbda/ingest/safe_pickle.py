"""Unpickling the survey pickles (HiTS, ZTF, ATLAS) without running or corrupting anything.

A pickle names the callables that rebuild it, so a downloaded pickle is code;
and even with harmless globals only, the state handed to NumPy, pandas or
pyarrow constructors can corrupt memory (a dtype whose object flags are
cleared forges pointers, pandas block placements write out of bounds, forged
Arrow offsets read out of bounds). :func:`load_pickle` therefore has two
layers:

1. **Validating reconstruction** (:mod:`rbda.ingest.pickle_rebuild`): only the
   globals the survey layouts need are admitted, each resolved to a
   pure-Python stand-in that records its arguments; everything else is refused
   with :class:`RefusedPickleGlobal` naming the file and the global. The real
   objects are then built from checked inputs only: dtypes from their name
   with the exact state NumPy writes (no flags, fields or sizes from the
   file), arrays with ``np.frombuffer`` from exactly shape x itemsize bytes,
   DataFrames from their column arrays with every block placement checked in
   range and each column placed once (no BlockManager is unpickled), pyarrow
   string arrays from buffers whose offsets are checked and then
   ``validate(full=True)``-ed.
2. **Isolation** (:mod:`rbda.ingest.safe_pickle_worker`): that happens in a child
   process (one per file). The child hands the result back without pickle:
   a JSON description plus ``.npy`` files written with ``allow_pickle=False``
   (object columns of bytes/str as offsets + data), which the parent reads
   with ``numpy.load(allow_pickle=False)``. A child killed by a signal or
   exiting abnormally is an :class:`InputFileError` naming the file ("the
   unpickler crashed with SIGSEGV; the file is corrupt or crafted"), raised
   before the caller writes anything; the child sets no core file.

Python 2 pickles (the HiTS chunks) are read with ``encoding="latin1"``, which
is what NumPy needs to rebuild arrays pickled by Python 2. A ``.npy`` file
holding an object array (``numpy.save`` of a dict, which ``numpy.load(...,
allow_pickle=True)`` would open) is read the same way: its pickled payload
goes through the same two layers; a plain ``.npy`` is read with
``allow_pickle=False`` directly.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from rbda.errors import InputFileError
from rbda.ingest.pickle_rebuild import ALLOWED_GLOBALS  # noqa: F401 - re-exported: the admitted (module, name) pairs

NPY_MAGIC = b"\x93NUMPY"
WORKER = "rbda.ingest.safe_pickle_worker"


class RefusedPickleGlobal(InputFileError):
    """A pickle names a global outside the allow-list."""

    def __init__(self, path: str | Path, module: str, name: str):
        self.refused = f"{module}.{name}"
        super().__init__(
            path,
            f"pickle refers to {self.refused!r}, which is not an allowed type for survey "
            "data (only numpy arrays, pandas DataFrames and plain builtins are admitted; "
            "unpickling an unknown global could run arbitrary code)",
        )


def _plain_npy(path: Path) -> Any:
    """A ``.npy`` file without objects, read with ``allow_pickle=False``; None when it needs unpickling."""
    import numpy as np
    from numpy.lib import format as npy_format

    with open(path, "rb") as fh:
        if fh.read(len(NPY_MAGIC)) != NPY_MAGIC:
            return None
        fh.seek(0)
        try:
            version = npy_format.read_magic(fh)
            read_header = (npy_format.read_array_header_1_0 if version == (1, 0)
                           else npy_format.read_array_header_2_0)
            _, _, dtype = read_header(fh)
            if dtype.hasobject:
                return None
            fh.seek(0)
            return np.lib.format.read_array(fh, allow_pickle=False)
        except Exception as exc:  # noqa: BLE001 - a corrupt header/body raises many types
            raise InputFileError(path, f"a complete .npy file ({exc.__class__.__name__}: {exc})") from None


def _worker_env() -> dict[str, str]:
    """The environment for the child: this process's, with this rbda first on the path."""
    env = dict(os.environ)
    source = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (source, env.get("PYTHONPATH")) if p)
    return env


#: Exit messages of the unpickler's own writes failing: the place of its temporary files, not the input.
_TEMPORARY_FULL = ("[Errno 28]", "[Errno 122]", "[Errno 27]", "No space left on device", "Disk quota exceeded")


def _crash_message(returncode: int, stderr: bytes) -> str:
    where = f"the unpickler's temporary files (in {tempfile.gettempdir()}; TMPDIR chooses the place)"
    if returncode == -signal.SIGXFSZ:
        return (f"room for {where}, but they hit this process's file-size limit (ulimit -f); "
                "the input pickle itself may be fine")
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"a well-formed pickle (the unpickler crashed with {name}; the file is corrupt or crafted)"
    last = stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
    if any(text in last[0] for text in _TEMPORARY_FULL):
        return f"room for {where} ({last[0][:300]}); the input pickle itself may be fine"
    return (f"a well-formed pickle (the unpickler exited with status {returncode}"
            f"{': ' + last[0][:300] if last[0] else ''}; the file is corrupt or crafted)")


def load_pickle(path: str | Path, encoding: str = "latin1") -> Any:
    """Unpickle ``path`` in a child process through the validating, allow-listed unpickler.

    Returns plain builtins, NumPy arrays/scalars and pandas DataFrame/Series/
    Index objects, as ``pickle.load`` would for a well-formed survey pickle.
    Raises :class:`RefusedPickleGlobal` for a forbidden global and
    :class:`InputFileError` (naming ``path``) for a missing, empty, truncated,
    corrupt or crafted file, including one that crashes the unpickler.
    """
    from rbda.ingest.safe_pickle_worker import ERROR, RESULT, decode

    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "an existing pickle file")
    plain = _plain_npy(path)
    if plain is not None:
        return plain
    with tempfile.TemporaryDirectory(prefix="rbda-unpickle-") as tmp:
        out = Path(tmp)
        done = subprocess.run([sys.executable, "-m", WORKER, str(path.resolve()), encoding, str(out)],
                              env=_worker_env(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, cwd=out)
        if done.returncode != 0 or not ((out / RESULT).is_file() or (out / ERROR).is_file()):
            raise InputFileError(path, _crash_message(done.returncode, done.stderr))
        if (out / ERROR).is_file():
            error = json.loads((out / ERROR).read_text())
            if error.get("kind") == "global":
                raise RefusedPickleGlobal(path, str(error.get("module")), str(error.get("name")))
            raise InputFileError(path, str(error.get("expected")))
        try:
            return decode(out)
        except Exception as exc:  # noqa: BLE001 - only a misbehaving child writes a malformed result
            raise InputFileError(path, "a well-formed pickle (the unpickler's result was malformed: "
                                       f"{exc.__class__.__name__}: {exc}; the file is corrupt or crafted)") from None
