"""Validating reconstruction of survey pickles (the first layer of :mod:`rbda.ingest.safe_pickle`).

The pickle machine never calls a NumPy, pandas or pyarrow constructor with
the file's values. :class:`StandInUnpickler` resolves each admitted global to
a pure-Python stand-in that only records its arguments and state, so the
unpickled tree holds plain builtins and stand-ins. :func:`materialize` then
builds the real objects from checked inputs only:

* dtypes from their name (``f8``, ``<U5``, ``O8``, ...) and byte order, with
  the ``__setstate__`` state compared to the one NumPy itself writes for that
  dtype (a state that sets flags, fields, sizes or alignment of its own is
  refused: that is how an object dtype's flags were cleared to forge pointers);
  kinds limited to bool, integer, float, complex, object, bytes and str;
* arrays with ``np.frombuffer`` from raw bytes whose length is exactly
  shape x itemsize (object arrays from a list of exactly that many items);
* DataFrames/Series from their column arrays: each pandas block's placement
  is resolved to column numbers, checked in range, each column placed exactly
  once and every block's shape checked against the frame's (the BlockManager
  is never unpickled: its placements wrote out of bounds);
* pyarrow string arrays from buffers whose offsets and validity bitmap are
  checked here and then by ``Array.validate(full=True)`` before use.

Anything else is :class:`Refused` (turned into an ``InputFileError`` naming
the file by :mod:`rbda.ingest.safe_pickle`).
"""

from __future__ import annotations

import _compat_pickle
import math
import pickle
import re
import sys
from collections import OrderedDict
from typing import Any, Callable

import numpy as np


class Refused(Exception):
    """The pickle's content is not a well-formed survey object (message: what was expected)."""


class RefusedGlobal(Exception):
    """The pickle names a global outside the allow-list."""

    def __init__(self, module: str, name: str):
        self.module, self.name = module, name
        super().__init__(f"{module}.{name}")


class StandIn:
    """Base of the stand-ins: records arguments, refuses state unless a subclass takes it."""

    def __setstate__(self, state: Any) -> None:
        raise Refused(f"no pickled state for {type(self).__name__}")

    def build(self, m: Callable[[Any], Any]) -> Any:  # pragma: no cover - every stand-in overrides
        raise Refused(f"{type(self).__name__} cannot stand alone")


def _int(value: Any, what: str, minimum: int = 0) -> int:
    if type(value) is not int or value < minimum:
        raise Refused(f"{what}: an integer >= {minimum}, got {value!r}")
    return value


def _raw_bytes(value: Any, what: str) -> bytes | bytearray | memoryview:
    if isinstance(value, str):  # Python 2 str read with encoding="latin1"
        return value.encode("latin1")
    if isinstance(value, (bytes, bytearray)):
        return value
    if isinstance(value, pickle.PickleBuffer):
        return value.raw()
    raise Refused(f"{what}: raw bytes, got {type(value).__name__}")


# ---------------------------------------------------------------- numpy


class NdarrayClass:
    """``numpy.ndarray``: only admitted as the class argument of ``_reconstruct``."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        raise Refused("numpy.ndarray only as the class argument of numpy's _reconstruct")


_DTYPE_NAME = re.compile(r"^(b1|[iu][1248]|f(2|4|8|16)|c(8|16|32)|O[48]|[US]\d{1,9})$")
_NATIVE = "<" if sys.byteorder == "little" else ">"


class DtypeStandIn(StandIn):
    """``numpy.dtype(name, align, copy)`` followed by its version-3 state."""

    def __init__(self, obj: Any = None, align: Any = False, copy: Any = False):
        self.obj, self.align, self.state = obj, align, None

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def build(self, m: Callable[[Any], Any]) -> np.dtype:
        name = self.obj
        if not isinstance(name, str) or not _DTYPE_NAME.match(name):
            raise Refused(f"a numpy dtype of a plain kind (bool, int, float, complex, object, bytes, str), "
                          f"got {name!r}")
        if self.align not in (False, 0):
            raise Refused("an unaligned numpy dtype")
        try:
            dtype = np.dtype(name)
        except TypeError as exc:
            raise Refused(f"a numpy dtype name, got {name!r} ({exc})") from None
        state = self.state
        if state is None:
            return dtype
        if not isinstance(state, tuple) or len(state) != 8 or state[0] != 3 or state[1] not in ("<", ">", "|", "="):
            raise Refused(f"the standard numpy state of dtype {name!r}, got {state!r}")
        order = _NATIVE if state[1] == "=" else state[1]
        if order != "|" and dtype.itemsize > 1 and dtype.kind != "O":
            dtype = dtype.newbyteorder(order)
        expected = dtype.__reduce__()[2]
        if (3, order, *state[2:]) != expected:
            raise Refused(f"the standard numpy state of dtype {name!r}, {expected!r} (fields, sizes and "
                          f"flags are not taken from the file), got {state!r}")
        return dtype


def _dtype(value: Any, m: Callable[[Any], Any]) -> np.dtype:
    if not isinstance(value, DtypeStandIn):
        raise Refused(f"a numpy dtype, got {type(value).__name__}")
    return m(value)


def _shape(value: Any) -> tuple[int, ...]:
    if not isinstance(value, tuple) or len(value) > 32:
        raise Refused(f"an array shape (a tuple of at most 32 sizes), got {value!r}")
    return tuple(_int(n, "an array dimension") for n in value)


def _from_bytes(raw: Any, dtype: np.dtype, shape: tuple[int, ...], fortran: bool, what: str) -> np.ndarray:
    raw = _raw_bytes(raw, what)
    count = math.prod(shape)
    if len(raw) != count * dtype.itemsize:
        raise Refused(f"{what}: {count} x {dtype.itemsize} = {count * dtype.itemsize} bytes for shape {shape} "
                      f"of {dtype}, got {len(raw)}")
    flat = np.frombuffer(raw, dtype=dtype, count=count)
    return flat.reshape(shape, order="F" if fortran else "C")


class ArrayStandIn(StandIn):
    """``numpy.core.multiarray._reconstruct(ndarray, (0,), b'b')`` followed by its state."""

    def __init__(self) -> None:
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def build(self, m: Callable[[Any], Any]) -> np.ndarray:
        state = self.state
        if isinstance(state, tuple) and len(state) == 4:
            state = (1, *state)
        if not isinstance(state, tuple) or len(state) != 5 or state[0] != 1:
            raise Refused("the numpy array state (1, shape, dtype, is_fortran, data)")
        _, shape, dtype, fortran, raw = state
        shape, dtype = _shape(shape), _dtype(dtype, m)
        if type(fortran) is not bool and fortran not in (0, 1):
            raise Refused(f"a boolean is_fortran flag, got {fortran!r}")
        if not dtype.hasobject:
            return _from_bytes(raw, dtype, shape, bool(fortran), "array data")
        count = math.prod(shape)
        if type(raw) is not list or len(raw) != count:
            raise Refused(f"an object array's {count} items as a list, got {type(raw).__name__} "
                          f"of {len(raw) if type(raw) is list else '?'}")
        flat = np.empty(count, dtype=object)
        for i, item in enumerate(raw):
            flat[i] = m(item)
        return flat.reshape(shape, order="F" if fortran else "C")


def reconstruct(cls: Any, shape: Any, typecode: Any) -> ArrayStandIn:
    if cls is not NdarrayClass:
        raise Refused(f"numpy._reconstruct of numpy.ndarray, got {cls!r}")
    return ArrayStandIn()


class ScalarStandIn(StandIn):
    def __init__(self, dtype: Any, data: Any = None):
        self.dtype, self.data = dtype, data

    def build(self, m: Callable[[Any], Any]) -> Any:
        dtype = _dtype(self.dtype, m)
        if dtype.hasobject:
            return m(self.data)
        return _from_bytes(self.data, dtype, (1,), False, "numpy scalar data")[0].copy()


class FromBufferStandIn(StandIn):
    """``numpy.core.numeric._frombuffer(buf, dtype, shape, order)`` (protocol 5)."""

    def __init__(self, buf: Any, dtype: Any, shape: Any, order: Any):
        self.args = (buf, dtype, shape, order)

    def build(self, m: Callable[[Any], Any]) -> np.ndarray:
        buf, dtype, shape, order = self.args
        dtype = _dtype(dtype, m)
        if dtype.hasobject or order not in ("C", "F"):
            raise Refused(f"a non-object array in C or F order, got {dtype} order {order!r}")
        return _from_bytes(buf, dtype, _shape(shape), order == "F", "array buffer")


# ---------------------------------------------------------------- pyarrow

ARROW_STRING_TYPES = ("string", "utf8", "large_string", "large_utf8")


class ArrowTypeStandIn(StandIn):
    def __init__(self, alias: Any):
        if alias not in ARROW_STRING_TYPES:
            raise Refused(f"a pyarrow string type ({', '.join(ARROW_STRING_TYPES)}), got {alias!r}")
        self.alias = alias

    def build(self, m: Callable[[Any], Any]) -> Any:
        import pyarrow as pa

        return pa.type_for_alias(self.alias)


class BufferStandIn(StandIn):
    def __init__(self, data: Any):
        self.data = bytes(_raw_bytes(data, "pyarrow buffer"))

    def build(self, m: Callable[[Any], Any]) -> Any:
        return self


class ArrowArrayStandIn(StandIn):
    """``pyarrow.lib._restore_array((type, length, null_count, offset, buffers, children, dictionary))``."""

    def __init__(self, data: Any):
        self.data = data

    def build(self, m: Callable[[Any], Any]) -> Any:
        import pyarrow as pa

        data = self.data
        if not isinstance(data, tuple) or len(data) != 7 or not isinstance(data[0], ArrowTypeStandIn):
            raise Refused("a pyarrow string array (type, length, null_count, offset, buffers, children, dictionary)")
        type_, length, null_count, offset, buffers, children, dictionary = data
        arrow_type = m(type_)
        length, offset = _int(length, "pyarrow array length"), _int(offset, "pyarrow array offset")
        null_count = _int(null_count, "pyarrow null count", minimum=-1)
        if children or dictionary is not None or type(buffers) is not list or len(buffers) != 3:
            raise Refused("a pyarrow string array: 3 buffers (validity, offsets, data), no children")
        validity, offsets_buf, values = (None if b is None else m(b) for b in buffers)
        if not all(b is None or isinstance(b, BufferStandIn) for b in (validity, offsets_buf, values)):
            raise Refused("pyarrow buffers")
        if offsets_buf is None:
            raise Refused("a pyarrow string array's offsets buffer")
        width = 8 if pa.types.is_large_string(arrow_type) else 4
        end = offset + length
        if len(offsets_buf.data) < (end + 1) * width:
            raise Refused(f"{end + 1} string offsets, got a {len(offsets_buf.data)}-byte offsets buffer")
        offsets = np.frombuffer(offsets_buf.data, dtype=f"<i{width}", count=end + 1)[offset:]
        n_values = 0 if values is None else len(values.data)
        if len(offsets) and (offsets[0] < 0 or offsets[-1] > n_values or np.any(np.diff(offsets) < 0)):
            raise Refused(f"string offsets non-decreasing within the {n_values}-byte data buffer")
        if validity is not None and len(validity.data) * 8 < end:
            raise Refused(f"a validity bitmap of {end} bits, got {len(validity.data)} bytes")
        arrow_buffers = [None if b is None else pa.py_buffer(b.data) for b in (validity, offsets_buf, values)]
        try:
            array = pa.Array.from_buffers(arrow_type, length, arrow_buffers, null_count, offset)
            array.validate(full=True)
        except (pa.ArrowException, ValueError, TypeError) as exc:
            raise Refused(f"a valid pyarrow string array ({exc})") from None
        return array


# ---------------------------------------------------------------- pandas


class _NA:
    """``pandas.NA`` in the pickle."""


NA = _NA()


class StringDtypeStandIn(StandIn):
    def __init__(self, storage: Any = None, na_value: Any = NA):
        self.storage, self.na_value = storage, na_value

    def build(self, m: Callable[[Any], Any]) -> Any:
        import pandas as pd

        nan = isinstance(self.na_value, float) and math.isnan(self.na_value)
        if self.storage not in (None, "python", "pyarrow") or not (nan or self.na_value is NA):
            raise Refused(f"a pandas StringDtype (python or pyarrow, NA or NaN), got {self.storage!r}")
        return pd.StringDtype(self.storage, na_value=np.nan if nan else pd.NA)


class StatefulStandIn(StandIn):
    """A stand-in rebuilt from its pickled state (NEWOBJ, then BUILD): arguments are ignored,
    the state is kept for :meth:`build` to check."""

    def __new__(cls, *args: Any, **kwargs: Any) -> "StatefulStandIn":
        return super().__new__(cls)

    def __init__(self, *args: Any) -> None:
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state


class ArrowStringArrayStandIn(StatefulStandIn):

    def build(self, m: Callable[[Any], Any]) -> Any:
        import pandas as pd

        state = self.state
        if not isinstance(state, dict) or not isinstance(state.get("_pa_array"), ArrowArrayStandIn):
            raise Refused("a pandas ArrowStringArray state with its '_pa_array'")
        array = m(state["_pa_array"])
        dtype = m(state.get("_dtype", StringDtypeStandIn("pyarrow")))
        if not isinstance(dtype, pd.StringDtype):
            raise Refused(f"a pandas StringDtype, got {type(dtype).__name__}")
        return pd.array(array.to_numpy(zero_copy_only=False), dtype=dtype)


class IndexClass:
    """A pandas Index class: only admitted as the class argument of ``_new_Index``."""

    kind = "index"

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        raise Refused(f"pandas {cls.__name__} only through pandas' _new_Index")


class RangeIndexClass(IndexClass):
    kind = "range"


_NAME_TYPES = (str, int, float, bytes, type(None))


def _label(value: Any) -> Any:
    if type(value) is tuple and all(isinstance(v, _NAME_TYPES) for v in value):
        return value
    if not isinstance(value, _NAME_TYPES):
        raise Refused(f"a plain index name (str, number or None), got {type(value).__name__}")
    return value


class IndexStandIn(StandIn):
    def __init__(self, cls: Any, d: Any):
        if not (isinstance(cls, type) and issubclass(cls, IndexClass)) or not isinstance(d, dict):
            raise Refused("pandas _new_Index(Index class, dict)")
        self.cls, self.d = cls, d

    def build(self, m: Callable[[Any], Any]) -> Any:
        import pandas as pd

        name = _label(m(self.d.get("name")))
        if self.cls.kind == "range":
            start, stop, step = (self.d.get(k, d) for k, d in (("start", 0), ("stop", None), ("step", 1)))
            if type(start) is not int or type(stop) is not int or type(step) is not int or step == 0:
                raise Refused(f"RangeIndex start/stop/step integers (step not 0), got {start!r}, {stop!r}, {step!r}")
            return pd.RangeIndex(start, stop, step, name=name)
        data = m(self.d.get("data"))
        if isinstance(data, np.ndarray):
            if data.ndim != 1:
                raise Refused(f"1-d index values, got shape {data.shape}")
            return pd.Index(data, dtype=data.dtype, name=name, copy=False)
        if isinstance(data, pd.api.extensions.ExtensionArray):
            return pd.Index(data, name=name)
        raise Refused(f"index values as an array, got {type(data).__name__}")


class BlockStandIn(StandIn):
    """``_unpickle_block(values, placement, ndim)`` / ``new_block(...)``."""

    def __init__(self, values: Any, placement: Any, ndim: Any = 2, *rest: Any):
        self.values, self.placement = values, placement


class PlacementStandIn(StandIn):
    def __init__(self, value: Any):
        self.value = value

    def build(self, m: Callable[[Any], Any]) -> Any:
        return m(self.value)


def _placement(value: Any, n_columns: int) -> list[int]:
    """A block's column numbers, each checked to be in range(n_columns)."""
    if isinstance(value, slice):
        start, stop, step = value.start, value.stop, 1 if value.step is None else value.step
        start = 0 if start is None else start
        if type(start) is not int or type(stop) is not int or type(step) is not int or start < 0 or stop < 0 \
                or step < 1:
            raise Refused(f"a block placement slice of non-negative integers, got {value!r}")
        columns = range(start, stop, step)
    elif isinstance(value, np.ndarray) and value.ndim == 1 and (value.dtype.kind in "iu" or value.size == 0):
        columns = value.tolist()
    else:
        raise Refused(f"a block placement (slice or integer array), got {type(value).__name__}")
    if len(columns) > n_columns or any(not 0 <= c < n_columns for c in columns):
        raise Refused(f"block placement within the frame's {n_columns} columns, got {value!r}")
    return list(columns)


class ManagerStandIn(StandIn):
    """pandas ``BlockManager``/``SingleBlockManager``: (blocks, axes) or the '0.14.1' state."""

    blocks: Any = ()
    axes: Any = ()

    def __new__(cls, *args: Any, **kwargs: Any) -> "ManagerStandIn":
        return super().__new__(cls)

    def __init__(self, blocks: Any = (), axes: Any = (), *rest: Any):
        self.blocks, self.axes = blocks, axes

    def __setstate__(self, state: Any) -> None:
        if not (isinstance(state, tuple) and len(state) >= 4 and isinstance(state[3], dict)
                and isinstance(state[3].get("0.14.1"), dict)):
            raise Refused("a pandas BlockManager state of pandas >= 0.14.1")
        state = state[3]["0.14.1"]
        blocks = state.get("blocks")
        if type(blocks) is not list or not all(isinstance(b, dict) for b in blocks):
            raise Refused("a pandas BlockManager's list of blocks")
        self.axes = state.get("axes")
        self.blocks = [BlockStandIn(b.get("values"), b.get("mgr_locs")) for b in blocks]

    def columns(self, m: Callable[[Any], Any], n_axes: int) -> tuple[list[Any], list[Any]]:
        """(axes, one values array per column in order), every placement and shape checked."""
        import pandas as pd

        axes = [m(a) for a in self.axes] if isinstance(self.axes, (list, tuple)) else None
        if axes is None or len(axes) != n_axes or not all(isinstance(a, pd.Index) for a in axes):
            raise Refused(f"{n_axes} pandas Index axes")
        n_rows = len(axes[-1])
        n_columns = len(axes[0]) if n_axes == 2 else 1
        blocks = self.blocks if isinstance(self.blocks, (list, tuple)) else None
        if blocks is None or not all(isinstance(b, BlockStandIn) for b in blocks):
            raise Refused("pandas blocks")
        if n_axes == 1:  # a Series: one 1-d block placed over all its rows
            values = m(blocks[0].values) if len(blocks) == 1 else None
            if not isinstance(values, (np.ndarray, pd.api.extensions.ExtensionArray)) or values.ndim != 1 \
                    or len(values) != n_rows or _placement(m(blocks[0].placement), n_rows) != list(range(n_rows)):
                raise Refused(f"a Series' one 1-d block of {n_rows} values placed over its rows")
            return axes, [values]
        data: list[Any] = [None] * n_columns
        for block in blocks:
            values = m(block.values)
            columns = _placement(m(block.placement), n_columns)
            if isinstance(values, np.ndarray) and values.ndim == 2 and n_axes == 2:
                if values.shape != (len(columns), n_rows):
                    raise Refused(f"a block of shape ({len(columns)}, {n_rows}) for its placement, "
                                  f"got {values.shape}")
                parts = list(values)
            elif isinstance(values, (np.ndarray, pd.api.extensions.ExtensionArray)) and values.ndim == 1:
                if len(columns) != 1 or len(values) != n_rows:
                    raise Refused(f"a 1-d block of {n_rows} rows for one column, got {len(values)} rows "
                                  f"for {len(columns)} columns")
                parts = [values]
            else:
                raise Refused(f"block values as an array, got {type(values).__name__}")
            for column, part in zip(columns, parts):
                if data[column] is not None:
                    raise Refused(f"each column in one block, column {column} is in two")
                data[column] = part
        missing = [i for i, part in enumerate(data) if part is None]
        if missing:
            raise Refused(f"every column in a block, columns {missing[:5]} are in none")
        return axes, data


def series_of(values: Any, index: Any = None, name: Any = None) -> Any:
    """A pandas Series holding ``values`` as they are (no dtype inference: object stays object)."""
    import pandas as pd

    return pd.Series(values, index=index, dtype=values.dtype, name=name, copy=False)


def frame_from_columns(columns: Any, index: Any, data: list[Any]) -> Any:
    """A DataFrame from checked parts: one 1-d array per column, each as long as ``index``."""
    import pandas as pd

    if len(columns) != len(data) or any(len(values) != len(index) for values in data):
        raise Refused(f"{len(columns)} columns of {len(index)} rows")
    if not data:
        return pd.DataFrame(index=index, columns=columns)
    frame = pd.DataFrame({i: series_of(values) for i, values in enumerate(data)})
    frame.index, frame.columns = index, columns
    return frame


class FrameStandIn(StatefulStandIn):
    """``pandas.DataFrame`` / ``Series``: NEWOBJ then a state dict holding the manager."""

    series = False

    def build(self, m: Callable[[Any], Any]) -> Any:
        state = self.state
        manager = state.get("_mgr", state.get("_data")) if isinstance(state, dict) else None
        if not isinstance(manager, ManagerStandIn):
            raise Refused(f"a pandas {'Series' if self.series else 'DataFrame'} state with its block manager")
        if self.series:
            (index,), (values,) = manager.columns(m, 1)
            return series_of(values, index, _label(m(state.get("_name"))))
        (columns, index), data = manager.columns(m, 2)
        return frame_from_columns(columns, index, data)


class SeriesStandIn(FrameStandIn):
    series = True


# ---------------------------------------------------------------- builtins


def _encode(text: Any, encoding: Any = "latin1") -> bytes:
    """``_codecs.encode(str, 'latin1')``: how protocol-2 pickles from Python 3 store bytes."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1", "iso-8859-1"):
        raise Refused(f"_codecs.encode(str, 'latin1'), got encoding {encoding!r}")
    return text.encode("latin1")


def _bytes(*args: Any) -> bytes:
    """``bytes()`` (how protocol 2 stores ``b''``) or ``bytes(raw)``; never ``bytes(n)``."""
    if len(args) > 1 or (args and not isinstance(args[0], (bytes, bytearray))):
        raise Refused("bytes() or bytes(raw bytes)")
    return bytes(*args)


def _bytearray(*args: Any) -> bytearray:
    """``bytearray(raw)`` or ``bytearray(str, 'latin-1')`` (protocol 2); never ``bytearray(n)``."""
    if args and isinstance(args[0], str) and len(args) == 2:
        return bytearray(_encode(*args))
    if len(args) > 1 or (args and not isinstance(args[0], (bytes, bytearray))):
        raise Refused("bytearray(raw bytes)")
    return bytearray(*args)


def _ordered_dict(*args: Any) -> OrderedDict:
    """``OrderedDict()``: pickles fill it with SETITEMS afterwards."""
    if args:
        raise Refused("OrderedDict() filled by the pickle's items")
    return OrderedDict()


_NUMPY = ("numpy.core", "numpy._core")
ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    # builtins that rebuild plain data
    ("builtins", "slice"): slice,
    ("builtins", "range"): range,
    ("builtins", "complex"): complex,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "bytes"): _bytes,
    ("builtins", "bytearray"): _bytearray,
    ("collections", "OrderedDict"): _ordered_dict,
    ("_codecs", "encode"): _encode,
    # numpy arrays, dtypes and scalars (numpy 1.x and 2.x module names)
    ("numpy", "ndarray"): NdarrayClass,
    ("numpy", "dtype"): DtypeStandIn,
    **{(f"{core}.multiarray", "_reconstruct"): reconstruct for core in _NUMPY},
    **{(f"{core}.multiarray", "scalar"): ScalarStandIn for core in _NUMPY},
    **{(f"{core}.numeric", "_frombuffer"): FromBufferStandIn for core in _NUMPY},
    # pandas DataFrame / Series / Index, rebuilt from checked column arrays
    ("pandas.core.frame", "DataFrame"): FrameStandIn,
    ("pandas", "DataFrame"): FrameStandIn,
    ("pandas.core.series", "Series"): SeriesStandIn,
    ("pandas", "Series"): SeriesStandIn,
    ("pandas.core.internals.managers", "BlockManager"): ManagerStandIn,
    ("pandas.core.internals.managers", "SingleBlockManager"): ManagerStandIn,
    ("pandas._libs.internals", "_unpickle_block"): BlockStandIn,
    ("pandas.core.internals.blocks", "new_block"): BlockStandIn,
    ("pandas._libs.internals", "BlockPlacement"): PlacementStandIn,
    ("pandas.core.indexes.base", "_new_Index"): IndexStandIn,
    ("pandas.core.indexes.base", "Index"): IndexClass,
    ("pandas", "Index"): IndexClass,
    ("pandas.core.indexes.numeric", "Int64Index"): IndexClass,
    ("pandas.core.indexes.numeric", "UInt64Index"): IndexClass,
    ("pandas.core.indexes.numeric", "Float64Index"): IndexClass,
    ("pandas.core.indexes.range", "RangeIndex"): RangeIndexClass,
    ("pandas", "RangeIndex"): RangeIndexClass,
    ("pandas", "StringDtype"): StringDtypeStandIn,
    ("pandas.core.arrays.string_", "StringDtype"): StringDtypeStandIn,
    ("pandas", "NA"): NA,
    ("pandas._libs.missing", "NA"): NA,
    ("pandas.arrays", "ArrowStringArray"): ArrowStringArrayStandIn,
    ("pandas.core.arrays.string_arrow", "ArrowStringArray"): ArrowStringArrayStandIn,
    # pyarrow string arrays (pandas >= 3 string columns), rebuilt from checked buffers
    ("pyarrow.lib", "_restore_array"): ArrowArrayStandIn,
    ("pyarrow.lib", "py_buffer"): BufferStandIn,
    ("pyarrow.lib", "type_for_alias"): ArrowTypeStandIn,
}


def _python3_name(module: str, name: str) -> tuple[str, str]:
    """Apply the Python 2 -> 3 renames that ``fix_imports`` applies."""
    if (module, name) in _compat_pickle.NAME_MAPPING:
        return _compat_pickle.NAME_MAPPING[(module, name)]
    return _compat_pickle.IMPORT_MAPPING.get(module, module), name


class StandInUnpickler(pickle.Unpickler):
    """Resolves admitted globals to stand-ins and refuses every other global (and persistent ids)."""

    def find_class(self, module: str, name: str) -> Any:
        python3 = _python3_name(module, name)
        if python3 not in ALLOWED_GLOBALS:
            raise RefusedGlobal(*python3)
        return ALLOWED_GLOBALS[python3]

    def persistent_load(self, pid: Any) -> Any:
        raise Refused("a pickle without persistent ids")


_SCALARS = (str, bytes, int, float, bool, complex, type(None))


def materialize(tree: Any) -> Any:
    """The real objects for an unpickled tree of builtins and stand-ins (shared references kept)."""
    memo: dict[int, Any] = {}

    def m(obj: Any) -> Any:
        kind = type(obj)
        if kind in _SCALARS:
            return obj
        if obj is NA:
            return _pandas_na_value()
        key = id(obj)
        if key in memo:
            return memo[key]
        if kind is list:
            out: Any = []
            memo[key] = out
            out.extend(m(x) for x in obj)
        elif kind is dict or kind is OrderedDict:
            out = kind()
            memo[key] = out
            for k, v in obj.items():
                k = m(k)
                if not isinstance(k, _SCALARS + (tuple, frozenset)):
                    raise Refused(f"dict keys of plain types, got {type(k).__name__}")
                out[k] = m(v)
        elif kind is tuple:
            out = tuple(m(x) for x in obj)
        elif kind in (set, frozenset):
            out = kind(m(x) for x in obj)
        elif kind is slice:
            out = slice(m(obj.start), m(obj.stop), m(obj.step))
        elif kind in (range, bytearray):
            out = obj
        elif isinstance(obj, StandIn):
            out = obj.build(m)
        else:
            raise Refused(f"survey data (arrays, frames, plain values), got {kind.__name__}")
        memo[key] = out
        return out

    return m(tree)


def _pandas_na_value() -> Any:
    import pandas as pd

    return pd.NA


def unpickle_checked(fh: Any, encoding: str = "latin1") -> Any:
    """Unpickle an open file through the stand-ins and build its objects from checked inputs."""
    return materialize(StandInUnpickler(fh, encoding=encoding).load())
