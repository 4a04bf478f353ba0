"""The restricted unpickler admits survey data and refuses code."""

from __future__ import annotations

import os
import pickle
import subprocess

import numpy as np
import pandas as pd
import pytest

from rbda.errors import InputFileError
from rbda.safe_pickle import RefusedPickleGlobal, load_pickle


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
