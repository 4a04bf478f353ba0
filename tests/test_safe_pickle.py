"""The restricted unpickler admits survey data and refuses code."""

from __future__ import annotations

import copyreg
import os
import pickle
import subprocess

import numpy as np
import pandas as pd
import pytest

from rbda.errors import InputFileError
from rbda.ingest.safe_pickle import RefusedPickleGlobal, load_pickle


class CallsOsSystem:
    def __reduce__(self):
        return (os.system, ("echo unpickled-code-ran > pwned.txt",))


class CallsEval:
    def __reduce__(self):
        return (eval, ("1 + 1",))


class CallsSubprocess:
    def __reduce__(self):
        return (subprocess.check_output, (["true"],))


@pytest.mark.parametrize("payload, refused", [
    (CallsOsSystem(), "system"),
    (CallsEval(), "builtins.eval"),
    (CallsSubprocess(), "subprocess.check_output"),
])
def test_refuses_code_and_names_file_and_global(tmp_path, monkeypatch, payload, refused):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "chunk.pkl"
    path.write_bytes(pickle.dumps({"temp_images": payload}, protocol=2))
    with pytest.raises(RefusedPickleGlobal) as err:
        load_pickle(path)
    assert str(path) in str(err.value)
    assert refused in str(err.value)
    assert not (tmp_path / "pwned.txt").exists()


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_admits_numpy_dicts(tmp_path, protocol):
    chunk = {"sci_images": np.arange(882, dtype=np.float64).reshape(2, 441), "labels": np.array([0, 1]),
             "SNRs": [np.float32(3.5), 7], "name": "x"}
    path = tmp_path / "c.pkl"
    path.write_bytes(pickle.dumps(chunk, protocol=protocol))
    loaded = load_pickle(path)
    np.testing.assert_array_equal(loaded["sci_images"], chunk["sci_images"])
    assert loaded["SNRs"][0] == np.float32(3.5)


def test_admits_pandas_frames(tmp_path):
    frame = pd.DataFrame({"class": ["SN", "bogus"], "oid": ["ZTF1", "ZTF2"], "cutoutScience": [b"a", b"b"]})
    path = tmp_path / "f.pkl"
    frame.to_pickle(path)
    pd.testing.assert_frame_equal(load_pickle(path), frame)


@pytest.mark.realsamples
def test_reads_real_ztf_dataframe_pickle(real_samples):
    frame = load_pickle(real_samples / "ztf_alerce" / "small_dataset.pkl")
    assert list(frame.columns) == ["class", "oid", "cutoutScience", "cutoutTemplate", "cutoutDifference"]
    assert len(frame) == 30


@pytest.mark.parametrize("content", [b"", b"\x80\x02}q\x00(X", b"not a pickle at all"])
def test_empty_truncated_corrupt(tmp_path, content):
    path = tmp_path / "bad.pkl"
    path.write_bytes(content)
    with pytest.raises(InputFileError, match="bad.pkl"):
        load_pickle(path)


def test_npy_object_array_of_a_dict_goes_through_the_allow_list(tmp_path):
    chunk = {"diff_images": np.ones((2, 441)), "labels": np.array([1, 0])}
    np.save(tmp_path / "chunk.npy", chunk, allow_pickle=True)
    loaded = load_pickle(tmp_path / "chunk.npy")
    np.testing.assert_array_equal(loaded["diff_images"], chunk["diff_images"])
    np.save(tmp_path / "plain.npy", np.arange(6.0))
    np.testing.assert_array_equal(load_pickle(tmp_path / "plain.npy"), np.arange(6.0))
    np.save(tmp_path / "evil.npy", np.array({"labels": CallsEval()}, dtype=object), allow_pickle=True)
    with pytest.raises(RefusedPickleGlobal, match="evil.npy.*builtins.eval"):
        load_pickle(tmp_path / "evil.npy")


# ---------------------------------------------------------------- memory-safety: crafted pickles
# Each builder pickles ordinary survey content, substituting (with Pickler.reducer_override) the
# reduction of one object by a forged one that names only allow-listed globals. Given to NumPy,
# pandas or pyarrow as they stand, these corrupt memory (checked against the unprotected
# unpickler in test_crafted_pickles_crash_an_unprotected_unpickler, in a subprocess).

class _Forged:
    """An object whose reduction is given verbatim (callable, args[, state])."""

    def __init__(self, *reduction):
        self.reduction = reduction

    def __reduce__(self):
        return self.reduction


def _dumps(obj, override, protocol=4) -> bytes:
    import io

    class Forger(pickle.Pickler):
        def reducer_override(self, item):
            return override(item)

    buffer = io.BytesIO()
    Forger(buffer, protocol=protocol).dump(obj)
    return buffer.getvalue()


def forged_dtype_flags() -> bytes:
    """ZTF dict pickle whose labels are an object array with its dtype's object flags cleared,
    so the 'objects' are raw bytes from the file: forged pointers."""
    from numpy._core.multiarray import _reconstruct

    object_dtype_no_flags = _Forged(np.dtype, ("O8", False, True), (3, "|", None, None, None, -1, -1, 0))
    labels = _Forged(_reconstruct, (np.ndarray, (0,), b"b"),
                     (1, (3,), object_dtype_no_flags, False, b"\x41" * 8 * 3))
    return _dumps({"images": np.zeros((3, 63, 63, 3), np.float32), "labels": labels},
                  lambda item: NotImplemented, protocol=2)


def _forge_block_placement(item):
    """A pandas block's reduction with its rows placed at columns 0 and 2**40."""
    from pandas.core.internals.blocks import Block

    if isinstance(item, Block):
        return pd._libs.internals._unpickle_block, (item.values, np.array([0, 2**40]), 2)
    return NotImplemented


def forged_block_placement() -> bytes:
    """DataFrame whose block places its two rows at columns 0 and 2**40 (the frame has two)."""
    return _dumps(pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.0]}), _forge_block_placement)


def forged_hits_chunk() -> bytes:
    """HiTS chunk whose labels are such a DataFrame (the reader turns them into an array)."""
    chunk = {key: np.zeros((2, 441), np.float32) for key in ("temp_images", "sci_images", "diff_images")}
    return _dumps({**chunk, "labels": pd.DataFrame({"a": [1, 0], "b": [0, 1]})}, _forge_block_placement, protocol=2)


def forged_arrow_offsets() -> bytes:
    """DataFrame (pandas >= 3 string column) whose Arrow offsets point 2**40 bytes past the data."""
    import pyarrow as pa

    frame = pd.DataFrame({"oid": pd.array(["ZTF1", "ZTF2"], dtype="str"), "class": [1, 2]})

    def override(item):
        if isinstance(item, pa.Array) and pa.types.is_large_string(item.type):
            offsets = np.array([0, 4, 2**40], dtype=np.int64).tobytes()
            state = (item.type, 2, 0, 0, [None, pa.py_buffer(offsets), pa.py_buffer(b"ZTF1ZTF2")], [], None)
            return pa.lib._restore_array, (state,)
        return NotImplemented

    return _dumps(frame, override)


def forged_block_shape() -> bytes:
    """DataFrame (pandas' 0.14.1 state, as the real ZTF samples) whose block holds fewer rows than its index."""
    from pandas.core.internals.managers import BlockManager

    frame = pd.DataFrame({"a": np.arange(1000.0)})

    def override(item):
        if isinstance(item, BlockManager):
            short = np.zeros((1, 2))
            state = (list(item.axes), [short], [item.axes[0]],
                     {"0.14.1": {"axes": list(item.axes), "blocks": [{"values": short, "mgr_locs": slice(0, 1, 1)}]}})
            return copyreg.__newobj__, (BlockManager,), state
        return NotImplemented

    return _dumps(frame, override)


CRAFTED = {
    "dtype-flags": forged_dtype_flags,
    "block-placement": forged_block_placement,
    "hits-chunk": forged_hits_chunk,
    "arrow-offsets": forged_arrow_offsets,
    "block-shape": forged_block_shape,
}


@pytest.mark.parametrize("family", sorted(CRAFTED))
def test_crafted_pickle_is_an_error_naming_the_file(tmp_path, family):
    path = tmp_path / f"{family}.pkl"
    path.write_bytes(CRAFTED[family]())
    with pytest.raises(InputFileError) as err:
        load_pickle(path)
    assert str(path) in str(err.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


@pytest.mark.parametrize("family", sorted(CRAFTED))
def test_validating_reconstruction_refuses_crafted_pickles_in_process(family):
    """The first layer alone (no child process) refuses each family before building anything."""
    import io

    from rbda.ingest.pickle_rebuild import Refused, unpickle_checked

    with pytest.raises(Refused):
        unpickle_checked(io.BytesIO(CRAFTED[family]()))


@pytest.mark.parametrize("family", ["dtype-flags", "block-placement", "arrow-offsets", "hits-chunk"])
def test_crafted_pickles_crash_an_unprotected_unpickler(tmp_path, family):
    """The crafted pickles are real attacks: plain pickle.load dies by a signal on them.

    (If a NumPy/pandas/pyarrow release makes this fail, the library fixed the hole and the
    crafted pickle no longer proves anything: craft a new one.)"""
    import sys

    path = tmp_path / "x.pkl"
    path.write_bytes(CRAFTED[family]())
    code = f"import pickle; print(repr(pickle.load(open({str(path)!r}, 'rb'))))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, cwd=tmp_path)
    assert done.returncode < 0, done.stderr[-500:]


@pytest.mark.parametrize("survey, family", [("ztf", "dtype-flags"), ("hits", "hits-chunk"),
                                            ("ztf", "arrow-offsets")])
def test_preprocess_of_a_crafted_pickle_exits_2_and_writes_nothing(tmp_path, capsys, survey, family):
    from rbda.cli import main

    raw, out = tmp_path / "raw", tmp_path / "out"
    raw.mkdir()
    out.mkdir()
    (raw / "chunk_000.pkl").write_bytes(CRAFTED[family]())
    assert main(["preprocess", "--survey", survey, "--input", str(raw), "--output", str(out / "s.parquet")]) == 2
    assert str(raw / "chunk_000.pkl") in capsys.readouterr().err
    assert list(out.iterdir()) == []


def test_a_crashing_unpickler_is_an_error_naming_the_file(tmp_path, monkeypatch):
    """Isolation: whatever kills the child (here a SIGSEGV it sends itself) is an InputFileError."""
    import rbda.ingest.safe_pickle

    (tmp_path / "segfaulting_worker.py").write_text("import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n")
    monkeypatch.setenv("PYTHONPATH", f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    monkeypatch.setattr(rbda.ingest.safe_pickle, "WORKER", "segfaulting_worker")
    path = tmp_path / "chunk.pkl"
    path.write_bytes(pickle.dumps({"labels": np.arange(3)}, protocol=2))
    with pytest.raises(InputFileError, match=r"chunk\.pkl.*crashed with SIGSEGV; the file is corrupt or crafted"):
        load_pickle(path)


def _array_with_state(state) -> bytes:
    from numpy._core.multiarray import _reconstruct

    return pickle.dumps({"labels": _Forged(_reconstruct, (np.ndarray, (0,), b"b"), state)}, protocol=2)


def _dtype(name, state):
    return _Forged(np.dtype, (name, False, True), state)


F8 = _dtype("f8", (3, "<", None, None, None, -1, -1, 0))


@pytest.mark.parametrize("state, refused", [
    ((1, (3,), F8, False, b"\0" * 16), "3 x 8 = 24 bytes"),  # data shorter than shape x itemsize
    ((1, (2**40, 2**40), F8, False, b"\0" * 16), "bytes for shape"),
    ((1, (-1,), F8, False, b""), "array dimension"),
    ((1, (2,), _dtype("U1", (3, "<", None, None, None, 400, 4, 8)), False, b"\0" * 8), "standard numpy state"),
    ((1, (2,), _dtype("f8", (3, "<", None, ("x",), {"x": (F8, 0)}, -1, -1, 16)), False, b"\0" * 16),
     "standard numpy state"),
    ((1, (2,), _dtype("V8", (3, "|", None, None, None, 8, 1, 0)), False, b"\0" * 16), "plain kind"),
    ((1, (2,), _dtype("O8", (3, "|", None, None, None, -1, -1, 63)), False, [1]), "2 items"),
], ids=["short-data", "huge-shape", "negative-dim", "str-itemsize", "fields", "void", "object-count"])
def test_forged_array_states_are_refused(tmp_path, state, refused):
    path = tmp_path / "chunk.pkl"
    path.write_bytes(_array_with_state(state))
    with pytest.raises(InputFileError, match=refused) as err:
        load_pickle(path)
    assert str(path) in str(err.value)


def test_zero_row_protocol_2_chunk_and_other_plain_values_load(tmp_path):
    chunk = {"diff_images": np.zeros((0, 441), np.float32), "labels": np.zeros(0, np.int64), "empty": b"",
             "u": np.array(["ab", "c"]), "big": np.arange(4, dtype=">f4"), "f": np.asfortranarray(np.eye(3)),
             "o": np.array([None, b"x", "y", 1.5], dtype=object), "c": 1 + 2j, "s": {1, 2}, "ba": bytearray(b"x"),
             "series": pd.Series([1.5, 2.5], index=["a", "b"], name="snr")}
    path = tmp_path / "chunk.pkl"
    path.write_bytes(pickle.dumps(chunk, protocol=2))
    loaded = load_pickle(path)
    assert loaded.keys() == chunk.keys()
    for key, value in chunk.items():
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(loaded[key], value)
            assert loaded[key].dtype == value.dtype and loaded[key].flags.f_contiguous == value.flags.f_contiguous
        elif isinstance(value, pd.Series):
            pd.testing.assert_series_equal(loaded[key], value)
        else:
            assert loaded[key] == value and type(loaded[key]) is type(value)
