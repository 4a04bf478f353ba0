"""rbda.arrow_columns: the columns rbda predict writes, built from buffers, equal pyarrow.array's."""

import subprocess
import sys

import numpy as np
import pyarrow as pa
import pytest

from rbda import arrow_columns
from rbda.arrow_columns import column, constant

CASES = [
    (np.array(["ZTF18abc", "é ✓", ""], dtype=object), pa.string()),
    (np.array(["02a59543o0040o_006230"] * 3), pa.string()),  # NumPy's own str dtype
    (np.array([True, False, True, True, False, False, True, False, True]), pa.bool_()),
    (np.array([0.25, np.nan, -np.inf], dtype=np.float32), pa.float32()),
    (np.array([0.5, np.nan, 1e300]), pa.float64()),
    (np.array([1, -128, 127], dtype=np.int8), pa.int8()),
    (np.array([2**40, -1]), pa.int64()),
    (np.array([1, 2], dtype=np.int64), pa.float64()),  # integers into a float column, as pyarrow takes them
]


@pytest.mark.parametrize("values, dtype", CASES)
def test_columns_equal_pyarrow_array(values, dtype):
    built = column(values, dtype)
    built.validate(full=True)
    assert built.type == dtype and built.null_count == 0
    expected = pa.array(values.tolist(), type=dtype)
    if pa.types.is_floating(dtype):  # NaN equal to NaN
        np.testing.assert_array_equal(built.to_numpy(), expected.to_numpy())
    else:
        assert built.equals(expected)
    empty = column(values[:0], dtype)
    assert len(empty) == 0 and empty.type == dtype


def test_constants_and_nulls():
    assert constant("mme", pa.string(), 3).to_pylist() == ["mme"] * 3
    assert constant(5, pa.int64(), 2).to_pylist() == [5, 5]
    assert constant(0.5, pa.float64(), 2).to_pylist() == [0.5, 0.5]
    assert constant(None, pa.float64(), 2).to_pylist() == [None, None]
    assert constant("x", pa.string(), 0).type == pa.string()


@pytest.mark.parametrize("value, dtype, message", [
    ("3", pa.int64(), "takes numbers, got str"),
    (True, pa.int64(), "got the boolean True"),
    (1.5, pa.int64(), "takes integers, got float64"),
    (2**70, pa.int64(), "takes integers, got object"),
    (3, pa.string(), "takes str values, got int 3"),
])
def test_values_of_another_type_are_refused(value, dtype, message):
    with pytest.raises(TypeError, match=message):
        constant(value, dtype, 2)


def test_out_of_range_integers_are_refused():
    with pytest.raises(OverflowError, match="int8"):
        column(np.array([1, 300]), pa.int8())


def test_strings_over_the_offset_range_are_chunked(monkeypatch):
    monkeypatch.setattr(arrow_columns, "_MAX_STRING_BYTES", 5)
    chunked = column(["ab", "cd", "ef", "g", "hhhh"], pa.string())
    chunked.validate(full=True)
    assert chunked.num_chunks == 3 and chunked.to_pylist() == ["ab", "cd", "ef", "g", "hhhh"]
    with pytest.raises(ValueError, match="strings of under 2 GiB, got one of 7 bytes"):
        column(["abcdefg"], pa.string())


def test_undecodable_file_name_bytes_are_escaped():
    assert column(["a/\udcff.avro"], pa.string()).to_pylist() == ["a/\\udcff.avro"]


def test_the_output_table_is_built_and_written_without_pandas(tmp_path):
    """pyarrow.array imports pandas (a quarter second of rbda predict's start-up); the output does not need it."""
    script = f"""
import sys
from pathlib import Path
import numpy as np
from rbda.alerts.predict import _table, identity_columns, write_table
identity = {{"model_method": "mme", "model_split": 0, "model_lambda": None, "threshold": 0.5}}
part = {{"objectId": np.array(["ZTF1"], object), "candid": np.array(["1"], object), "layout": np.array(["ztf"], object),
        "p_real": np.array([0.7], np.float32), "predicted": np.array([1], np.int8), "rb": np.array([0.9]),
        "padded": np.array([False]), "file": np.array(["a.avro"], object)}}
table = _table([part], identity, "alerts", ("rb",))
write_table(table, Path({str(tmp_path / "s.parquet")!r}))
write_table(table, Path({str(tmp_path / "s.csv")!r}))
assert table.num_rows == 1 and table.column("model_lambda").null_count == 1, table
assert "pandas" not in sys.modules, "pandas was imported"
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
