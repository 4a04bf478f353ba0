"""The child process of :func:`rbda.ingest.safe_pickle.load_pickle`, and the plain format it hands back.

``python -m rbda.ingest.safe_pickle_worker FILE ENCODING OUTDIR`` unpickles FILE with
:func:`rbda.ingest.pickle_rebuild.unpickle_checked` and writes the result to OUTDIR
without pickle: ``result.json`` describes the structure and every array is a
``<k>.npy`` written with ``allow_pickle=False``. A refused or corrupt file
gives ``error.json`` instead. The parent reads that back with
:func:`decode`, which only ever calls ``numpy.load(allow_pickle=False)`` and
builds builtins, arrays and pandas objects from checked parts, so nothing that
happened in the child (not even memory corruption) reaches the parent except
as plain data or a failed exit.

Nodes of ``result.json``: JSON scalars (None, bool, int, float, str) stand
for themselves; every other value is a one-key object: ``l``/``t``/``s``/
``fs`` (list, tuple, set, frozenset of nodes), ``d``/``od`` (dict,
OrderedDict as [key, value] pairs), ``b``/``ba`` (bytes, bytearray, base64),
``c`` (complex), ``sl``/``r`` (slice, range), ``na`` (pandas.NA), ``sc``
(numpy scalar: dtype and base64 bytes), ``a`` (array file), ``ob`` (object
array of bytes/str/None: kinds, offsets and data files), ``oa`` (other object
array: its items as nodes), ``col`` (a pandas column: array node and string
dtype), ``ix``/``ri`` (Index, RangeIndex), ``df``/``ser`` (DataFrame, Series).
"""

from __future__ import annotations

import base64
import json
import math
import re
import sys
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

RESULT, ERROR = "result.json", "error.json"
#: Output budget: the plain form may hold at most this multiple of the file's size
#: (plus a constant), so shared references cannot inflate a small file into a huge output.
OUTPUT_FACTOR, OUTPUT_EXTRA = 4, 256 * 2**20
_ARRAY_FILE = re.compile(r"^\d+\.npy$")
_BYTES_KINDS = {type(None): 0, bytes: 1, str: 2}


class TooLarge(Exception):
    pass


def _b64(raw: bytes | bytearray) -> str:
    return base64.b64encode(bytes(raw)).decode("ascii")


class Encoder:
    def __init__(self, folder: Path, budget: int):
        self.folder, self.budget, self.count = folder, budget, 0

    def _spend(self, n: int) -> None:
        self.budget -= n
        if self.budget < 0:
            raise TooLarge

    def file(self, array: np.ndarray) -> str:
        self._spend(array.nbytes)
        name = f"{self.count}.npy"
        self.count += 1
        np.save(self.folder / name, array, allow_pickle=False)
        return name

    def array(self, array: np.ndarray) -> Any:
        if not array.dtype.hasobject:
            return {"a": self.file(array)}
        order = "F" if array.flags.f_contiguous and not array.flags.c_contiguous else "C"
        flat = array.reshape(-1, order=order)
        shape = {"shape": list(array.shape), "order": order}
        if all(type(x) in _BYTES_KINDS for x in flat):
            kinds = np.array([_BYTES_KINDS[type(x)] for x in flat], dtype=np.uint8)
            parts = [x if type(x) is bytes else b"" if x is None else x.encode("utf-8", "surrogatepass")
                     for x in flat]
            offsets = np.zeros(len(parts) + 1, dtype=np.int64)
            np.cumsum([len(p) for p in parts], out=offsets[1:])
            self._spend(int(offsets[-1]))
            data = np.frombuffer(b"".join(parts), dtype=np.uint8)
            return {"ob": [self.file(kinds), self.file(offsets), self.file(data)], **shape}
        return {"oa": [self.node(x) for x in flat], **shape}

    def column(self, values: Any) -> Any:
        import pandas as pd

        if isinstance(values, np.ndarray):
            return {"col": self.array(values)}
        if isinstance(values.dtype, pd.StringDtype):
            na_nan = isinstance(values.dtype.na_value, float)
            items = np.asarray(values.to_numpy(dtype=object, na_value=None), dtype=object)
            return {"col": self.array(items), "str": [values.dtype.storage, na_nan]}
        raise TypeError(f"unexpected column type {type(values).__name__}")  # pragma: no cover

    def index(self, index: Any) -> Any:
        import pandas as pd

        if isinstance(index, pd.RangeIndex):
            return {"ri": [index.start, index.stop, index.step], "name": self.node(index.name)}
        return {"ix": self.column(index.array if not isinstance(index.dtype, np.dtype) else index.to_numpy()),
                "name": self.node(index.name)}

    def node(self, obj: Any) -> Any:
        kind = type(obj)
        if obj is None or kind in (bool, int, str):
            self._spend(len(obj) if kind is str else 8)
            return obj
        if kind is float:
            return obj if math.isfinite(obj) else {"f": repr(obj)}
        if kind in (bytes, bytearray):
            self._spend(len(obj))
            return {"b" if kind is bytes else "ba": _b64(obj)}
        if kind is complex:
            return {"c": [self.node(obj.real), self.node(obj.imag)]}
        if kind in (list, tuple, set, frozenset):
            return {{list: "l", tuple: "t", set: "s", frozenset: "fs"}[kind]: [self.node(x) for x in obj]}
        if kind in (dict, OrderedDict):
            return {"d" if kind is dict else "od": [[self.node(k), self.node(v)] for k, v in obj.items()]}
        if kind is slice:
            return {"sl": [self.node(obj.start), self.node(obj.stop), self.node(obj.step)]}
        if kind is range:
            return {"r": [obj.start, obj.stop, obj.step]}
        if isinstance(obj, np.ndarray):
            return self.array(obj)
        if isinstance(obj, np.generic):
            return {"sc": obj.dtype.str, "b": _b64(obj.tobytes())}
        import pandas as pd

        if obj is pd.NA:
            return {"na": 1}
        if isinstance(obj, pd.DataFrame):
            return {"df": {"columns": self.index(obj.columns), "index": self.index(obj.index),
                           "data": [self.column(obj.iloc[:, i].array if not isinstance(obj.dtypes.iloc[i], np.dtype)
                                                else obj.iloc[:, i].to_numpy()) for i in range(obj.shape[1])]}}
        if isinstance(obj, pd.Series):
            values = obj.array if not isinstance(obj.dtype, np.dtype) else obj.to_numpy()
            return {"ser": {"index": self.index(obj.index), "values": self.column(values), "name": self.node(obj.name)}}
        if isinstance(obj, pd.Index):
            return self.index(obj)
        raise TypeError(f"unexpected type {kind.__name__} after rebuilding")  # pragma: no cover


def main(argv: list[str]) -> int:
    import resource

    from rbda.ingest.pickle_rebuild import Refused, RefusedGlobal, unpickle_checked

    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a crash leaves no core file behind
    path, encoding, out = Path(argv[0]), argv[1], Path(argv[2])

    def error(**fields: Any) -> int:
        (out / ERROR).write_text(json.dumps(fields))
        return 0

    try:
        with open(path, "rb") as fh:
            if fh.read(6) == b"\x93NUMPY":
                from numpy.lib import format as npy_format

                fh.seek(0)
                version = npy_format.read_magic(fh)
                read_header = (npy_format.read_array_header_1_0 if version == (1, 0)
                               else npy_format.read_array_header_2_0)
                read_header(fh)
                array = unpickle_checked(fh, encoding)
                result = array.item() if isinstance(array, np.ndarray) and array.shape == () else array
            else:
                fh.seek(0)
                result = unpickle_checked(fh, encoding)
        encoder = Encoder(out, OUTPUT_FACTOR * path.stat().st_size + OUTPUT_EXTRA)
        tree = encoder.node(result)
        (out / RESULT).write_text(json.dumps(tree))
    except RefusedGlobal as exc:
        return error(kind="global", module=exc.module, name=exc.name)
    except Refused as exc:
        return error(kind="refused", expected=f"survey data as numpy arrays, pandas frames or plain values ({exc})")
    except TooLarge:
        return error(kind="refused", expected="survey data whose rebuilt size is in proportion to the file's "
                                              "(shared references would inflate it)")
    except Exception as exc:  # noqa: BLE001 - corrupt pickles raise many types (struct.error, EOFError, ...)
        return error(kind="corrupt", expected="a complete pickle file (it is empty, truncated or corrupt: "
                                              f"{exc.__class__.__name__}: {str(exc)[:300]})")
    return 0


# ---------------------------------------------------------------- parent side


class Decoder:
    def __init__(self, folder: Path):
        self.folder = folder

    def file(self, name: Any) -> np.ndarray:
        if not isinstance(name, str) or not _ARRAY_FILE.match(name):
            raise ValueError(f"bad array file name {name!r}")
        return np.load(self.folder / name, allow_pickle=False)

    def array(self, node: dict) -> np.ndarray:
        if "a" in node:
            return self.file(node["a"])
        shape, order = tuple(int(n) for n in node["shape"]), node["order"]
        if "ob" in node:
            kinds, offsets, data = (self.file(name) for name in node["ob"])
            raw = data.tobytes()
            if len(offsets) != len(kinds) + 1 or np.any(np.diff(offsets) < 0) or offsets[-1] > len(raw):
                raise ValueError("inconsistent object-array offsets")
            items = [None if k == 0 else raw[a:b] if k == 1 else raw[a:b].decode("utf-8", "surrogatepass")
                     for k, a, b in zip(kinds.tolist(), offsets[:-1].tolist(), offsets[1:].tolist())]
        else:
            items = [self.node(x) for x in node["oa"]]
        flat = np.empty(len(items), dtype=object)
        for i, item in enumerate(items):
            flat[i] = item
        return flat.reshape(shape, order=order)

    def column(self, node: dict) -> Any:
        import pandas as pd

        values = self.array(node["col"])
        if "str" in node:
            storage, na_nan = node["str"]
            return pd.array(values, dtype=pd.StringDtype(storage, na_value=np.nan if na_nan else pd.NA))
        return values

    def index(self, node: dict) -> Any:
        import pandas as pd

        name = self.node(node["name"])
        if "ri" in node:
            return pd.RangeIndex(*node["ri"], name=name)
        values = self.column(node["ix"])
        return pd.Index(values, dtype=values.dtype, name=name, copy=False)

    def node(self, node: Any) -> Any:
        if not isinstance(node, (dict, list)):
            return node
        if not isinstance(node, dict) or not node:
            raise ValueError("bad node")
        key = next(iter(node))
        value = node[key]
        if key in ("l", "t", "s", "fs"):
            return {"l": list, "t": tuple, "s": set, "fs": frozenset}[key](self.node(x) for x in value)
        if key in ("d", "od"):
            return (dict if key == "d" else OrderedDict)((self.node(k), self.node(v)) for k, v in value)
        if key == "f":
            return float(value)
        if key in ("b", "ba"):
            raw = base64.b64decode(value)
            return raw if key == "b" else bytearray(raw)
        if key == "c":
            return complex(self.node(value[0]), self.node(value[1]))
        if key == "sl":
            return slice(*(self.node(x) for x in value))
        if key == "r":
            return range(*value)
        if key == "sc":
            dtype = np.dtype(value)
            if dtype.hasobject:
                raise ValueError("object scalar")
            return np.frombuffer(base64.b64decode(node["b"]), dtype=dtype, count=1)[0].copy()
        if key in ("a", "ob", "oa"):
            return self.array(node)
        import pandas as pd

        if key == "na":
            return pd.NA
        if key in ("ix", "ri"):
            return self.index(node)
        if key == "ser":
            from rbda.ingest.pickle_rebuild import series_of

            return series_of(self.column(value["values"]), self.index(value["index"]), self.node(value["name"]))
        if key == "df":
            from rbda.ingest.pickle_rebuild import frame_from_columns

            return frame_from_columns(self.index(value["columns"]), self.index(value["index"]),
                                      [self.column(c) for c in value["data"]])
        raise ValueError(f"unknown node {key!r}")


def decode(folder: Path) -> Any:
    """The object the child wrote to ``folder`` (``result.json`` and its array files)."""
    return Decoder(folder).node(json.loads((folder / RESULT).read_text()))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
