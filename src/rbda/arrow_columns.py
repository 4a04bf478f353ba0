"""Arrow columns built from NumPy buffers, without :func:`pyarrow.array`.

``pyarrow.array`` imports pandas on its first call (to recognise pandas objects), a quarter of a
second of ``rbda predict``'s start-up that scores nothing; :meth:`pyarrow.Array.from_buffers` does
not. :func:`column` builds the types ``rbda predict`` writes (strings, booleans, fixed-width numbers)
from a NumPy array, :func:`constant` an ``n``-row column of one value or of nulls. Values are checked,
more strictly than ``pyarrow.array`` checks them: a string column takes only ``str`` (a character
UTF-8 cannot encode, such as a file name's undecodable byte kept by Python as a lone surrogate, is
written as its escape), a boolean column only booleans, an integer column only integers (not
booleans, not floats) within its range, a float column only integers and floats (cast to its
width); anything else is a TypeError or OverflowError naming the value. No column holds nulls
except :func:`constant`'s of None.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

#: Arrow type -> NumPy dtype of its values buffer.
_FIXED = {pa.int8(): np.int8, pa.int16(): np.int16, pa.int32(): np.int32, pa.int64(): np.int64,
          pa.float32(): np.float32, pa.float64(): np.float64}
#: A string column's offsets are int32: a column of more bytes is split into chunks below this.
_MAX_STRING_BYTES = 2**31 - 1


def _buffer(values: np.ndarray) -> pa.Buffer:
    return pa.py_buffer(np.ascontiguousarray(values))


def _strings(values) -> pa.Array | pa.ChunkedArray:
    try:
        encoded = [value.encode("utf-8", "backslashreplace") for value in values]
    except AttributeError:
        bad = next(value for value in values if not isinstance(value, str))
        raise TypeError(f"a string column takes str values, got {type(bad).__name__} {bad!r:.40}") from None
    ends = np.cumsum(np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded)))
    chunks, first = [], 0
    while True:  # int32 offsets: chunks of under 2 GiB of text
        start = ends[first - 1] if first else 0
        last = int(np.searchsorted(ends, start + _MAX_STRING_BYTES, side="right"))
        if last == first < len(encoded):
            raise ValueError(f"strings of under 2 GiB, got one of {ends[first] - start} bytes")
        offsets = np.concatenate(([0], ends[first:last] - start)).astype(np.int32)
        chunks.append(pa.Array.from_buffers(pa.string(), last - first,
                                            [None, _buffer(offsets), pa.py_buffer(b"".join(encoded[first:last]))]))
        if last >= len(encoded):
            return chunks[0] if len(chunks) == 1 else pa.chunked_array(chunks, type=pa.string())
        first = last


def column(values: np.ndarray | list, dtype: pa.DataType) -> pa.Array | pa.ChunkedArray:
    """``values`` (no nulls) as an Arrow column of ``dtype``: string, bool, int8-64, float32 or float64."""
    if dtype == pa.string():
        return _strings(values)
    array = np.asarray(values)
    if not len(array):
        return pa.nulls(0, dtype)
    if dtype == pa.bool_():
        if array.dtype != np.bool_:
            raise TypeError(f"a boolean column takes bool values, got {array.dtype}")
        return pa.Array.from_buffers(dtype, len(array), [None, pa.py_buffer(np.packbits(array, bitorder="little"))])
    if dtype not in _FIXED:
        raise TypeError(f"a column type of {', '.join(map(str, [pa.string(), pa.bool_(), *_FIXED]))}, got {dtype}")
    kind = np.dtype(_FIXED[dtype]).kind
    if array.dtype.kind not in ("iu" if kind == "i" else "iuf"):
        raise TypeError(f"a {dtype} column takes {'integers' if kind == 'i' else 'numbers'}, got {array.dtype}")
    limits = np.iinfo(_FIXED[dtype]) if kind == "i" else None
    if limits is not None and (array.min() < limits.min or array.max() > limits.max):
        raise OverflowError(f"values of a {dtype} column, got {array.min()}..{array.max()}")
    return pa.Array.from_buffers(dtype, len(array), [None, _buffer(array.astype(_FIXED[dtype], copy=False))])


def constant(value: object, dtype: pa.DataType, n: int) -> pa.Array | pa.ChunkedArray:
    """An ``n``-row column of ``value`` (nulls for None), checked as :func:`column` checks values."""
    if value is None:
        return pa.nulls(n, dtype)
    if dtype == pa.string():
        if not isinstance(value, str):
            raise TypeError(f"a string column takes str values, got {type(value).__name__} {value!r:.40}")
        return _strings([value] * n)
    if isinstance(value, bool) and dtype != pa.bool_():
        raise TypeError(f"a {dtype} column takes numbers, got the boolean {value}")
    if not isinstance(value, (int, float, np.integer, np.floating, bool)):
        raise TypeError(f"a {dtype} column takes numbers, got {type(value).__name__} {value!r:.40}")
    return column(np.full(n, value), dtype)
