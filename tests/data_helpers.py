"""Helpers for the data-layer tests: Python 2 style pickles, small raw files."""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np


class Python2Pickler(pickle._Pickler):
    """Writes ``bytes`` as Python 2 ``str`` opcodes, as the HiTS chunks (cPickle) do.

    Loading such a pickle in Python 3 needs ``encoding="latin1"`` for NumPy
    arrays, whose raw data then arrives as a latin-1 decoded ``str``.
    """

    dispatch = pickle._Pickler.dispatch.copy()

    def save_bytes(self, obj: bytes) -> None:
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_bytes


def write_python2_pickle(path: Path, obj: object) -> None:
    with open(path, "wb") as fh:
        Python2Pickler(fh, protocol=2).dump(obj)


def hits_chunk(n: int, seed: int = 0, labels: np.ndarray | None = None) -> dict:
    gen = np.random.default_rng(seed)
    images = {k: gen.normal(100, 10, (n, 441)) for k in ("temp_images", "sci_images", "diff_images", "SNR_images")}
    return {**images, "labels": gen.integers(0, 2, n) if labels is None else labels, "SNRs": gen.uniform(3, 50, n)}


def write_pickle(path: Path, obj: object, protocol: int = 4) -> Path:
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    return path
