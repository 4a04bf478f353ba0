"""Restricted unpickling for the survey pickles (HiTS, ZTF, ATLAS).

Unpickling runs whatever callable the file names (``os.system``,
``builtins.eval``, ...), so a downloaded pickle is code. :func:`load_pickle`
admits only the globals the survey layouts need — NumPy array and scalar
reconstruction, the pandas DataFrame/Index/Block machinery, a few harmless
builtins — and refuses everything else with :class:`RefusedPickleGlobal`,
which names the file and the refused global.

Python 2 pickles (the HiTS chunks) are read with ``encoding="latin1"``, which
is what NumPy needs to rebuild arrays pickled by Python 2. A ``.npy`` file
holding an object array (``numpy.save`` of a dict, which ``numpy.load(...,
allow_pickle=True)`` would open) is read the same way: its pickled payload
goes through the allow-list.
"""

from __future__ import annotations

import _compat_pickle
import pickle
from pathlib import Path
from typing import Any

from rbda.errors import InputFileError

# (module, name) pairs after Python 2 -> 3 renaming. Only reconstructors and
# plain data types: nothing that can call an arbitrary function or import.
ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    {
        # builtins that rebuild plain data
        ("builtins", "slice"),
        ("builtins", "range"),
        ("builtins", "complex"),
        ("builtins", "set"),
        ("builtins", "frozenset"),
        ("builtins", "bytearray"),
        # protocol 2 pickles b"" as bytes() (a zero-row HiTS chunk's array data); bytes
        # builds only a bytes object, as bytearray and _codecs.encode below do
        ("builtins", "bytes"),
        ("builtins", "object"),
        ("collections", "OrderedDict"),
        ("_codecs", "encode"),  # protocol-2 pickles store bytes as encode(str, "latin1")
        # numpy arrays, dtypes and scalars (numpy 1.x and 2.x module names)
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        *(
            ("numpy.dtypes", f"{kind}DType")
            for kind in (
                "Float16", "Float32", "Float64", "Int8", "Int16", "Int32", "Int64",
                "UInt8", "UInt16", "UInt32", "UInt64", "Bool", "Object", "Bytes", "Str",
            )
        ),
        # pandas DataFrame / Series with numeric, object or string columns
        ("pandas.core.frame", "DataFrame"),
        ("pandas.core.series", "Series"),
        ("pandas.core.internals.managers", "BlockManager"),
        ("pandas.core.internals.managers", "SingleBlockManager"),
        ("pandas.core.internals.blocks", "Block"),
        ("pandas.core.internals.blocks", "NumpyBlock"),
        ("pandas.core.internals.blocks", "ObjectBlock"),
        ("pandas.core.internals.blocks", "FloatBlock"),
        ("pandas.core.internals.blocks", "IntBlock"),
        ("pandas.core.internals.blocks", "new_block"),
        ("pandas._libs.internals", "_unpickle_block"),
        ("pandas._libs.internals", "BlockPlacement"),
        ("pandas.core.indexes.base", "Index"),
        ("pandas.core.indexes.base", "_new_Index"),
        ("pandas.core.indexes.range", "RangeIndex"),
        ("pandas.core.indexes.numeric", "Int64Index"),
        ("pandas.core.indexes.numeric", "UInt64Index"),
        ("pandas.core.indexes.numeric", "Float64Index"),
        ("pandas", "DataFrame"),
        ("pandas", "Series"),
        ("pandas", "Index"),
        ("pandas", "RangeIndex"),
        ("pandas", "StringDtype"),
        ("pandas", "NA"),
        ("pandas.arrays", "ArrowStringArray"),
        ("pandas.arrays", "StringArray"),
        ("pandas.core.arrays.string_arrow", "ArrowStringArray"),
        ("pandas.core.arrays.string_", "StringArray"),
        ("pandas.core.arrays.string_", "StringDtype"),
        ("pandas.core.arrays.numpy_", "NumpyExtensionArray"),
        # pyarrow-backed string columns (pandas >= 3): arrays rebuilt from buffers
        ("pyarrow.lib", "_restore_array"),
        ("pyarrow.lib", "py_buffer"),
        ("pyarrow.lib", "type_for_alias"),
    }
)


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


def _python3_name(module: str, name: str) -> tuple[str, str]:
    """Apply the Python 2 -> 3 renames that ``fix_imports`` applies."""
    if (module, name) in _compat_pickle.NAME_MAPPING:
        return _compat_pickle.NAME_MAPPING[(module, name)]
    return _compat_pickle.IMPORT_MAPPING.get(module, module), name


def _restricted(base: type, path: Path) -> type:
    """``base`` with a ``find_class`` that admits only :data:`ALLOWED_GLOBALS`."""

    class RestrictedUnpickler(base):  # type: ignore[misc, valid-type]
        def find_class(self, module: str, name: str) -> Any:
            python3 = _python3_name(module, name)
            if python3 not in ALLOWED_GLOBALS:
                raise RefusedPickleGlobal(path, *python3)
            return super().find_class(module, name)

    return RestrictedUnpickler


def _pandas_compat_unpickler() -> type:
    """pandas' unpickler for pickles written by older pandas versions (renamed classes)."""
    from pandas.compat.pickle_compat import Unpickler

    return Unpickler


NPY_MAGIC = b"\x93NUMPY"


def _load(path: Path, base: type, encoding: str) -> Any:
    with open(path, "rb") as fh:
        if fh.read(len(NPY_MAGIC)) == NPY_MAGIC:
            fh.seek(0)
            return _load_npy(fh, path, base, encoding)
        fh.seek(0)
        return _restricted(base, path)(fh, encoding=encoding).load()


def _load_npy(fh, path: Path, base: type, encoding: str) -> Any:
    """A ``.npy`` file; an object array (``np.save`` of a dict) is a pickle after the header.

    ``numpy.load(allow_pickle=True)`` would unpickle that payload unrestricted;
    here it goes through the same allow-list. A 0-d object array gives its item.
    """
    from numpy.lib import format as npy_format

    version = npy_format.read_magic(fh)
    read_header = npy_format.read_array_header_1_0 if version == (1, 0) else npy_format.read_array_header_2_0
    _, _, dtype = read_header(fh)
    if not dtype.hasobject:
        fh.seek(0)
        return npy_format.read_array(fh, allow_pickle=False)
    array = _restricted(base, path)(fh, encoding=encoding).load()
    return array.item() if getattr(array, "shape", None) == () else array


def load_pickle(path: str | Path, encoding: str = "latin1") -> Any:
    """Unpickle ``path`` admitting only the allow-listed globals.

    Like ``pandas.read_pickle``, a pickle the standard (C) unpickler cannot
    rebuild is retried with pandas' compatibility unpickler, which knows the
    classes older pandas versions pickled; both are restricted.

    Raises :class:`RefusedPickleGlobal` for a forbidden global and
    :class:`InputFileError` for a missing, empty, truncated or corrupt file.
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "an existing pickle file")
    try:
        try:
            return _load(path, pickle.Unpickler, encoding)
        except RefusedPickleGlobal:
            raise
        except Exception:  # noqa: BLE001 - retried below; a real corruption fails there too
            return _load(path, _pandas_compat_unpickler(), encoding)
    except RefusedPickleGlobal:
        raise
    except Exception as exc:  # noqa: BLE001 - corrupt pickles raise many types (struct.error, ...)
        raise InputFileError(
            path, f"a complete pickle file (it is empty, truncated or corrupt: {exc.__class__.__name__}: {exc})"
        ) from None
