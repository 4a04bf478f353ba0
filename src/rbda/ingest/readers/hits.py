"""HiTS chunk files: pickled dicts of N x 441 arrays (Python 2 pickles).

Each chunk holds ``temp_images``, ``sci_images``, ``diff_images`` (N x 441,
flattened 21x21), ``labels`` (0/1); ``SNR_images`` and ``SNRs`` are ignored.
A chunk is a pickle or, as ``numpy.load(..., allow_pickle=True)`` also
accepts, a ``.npy`` object array holding the dict; both are unpickled with
the restricted unpickler.
Chunks are read one at a time (never more than one chunk in memory); ids are
``<chunk file name>:<row>``; class names are ``bogus`` (0) and ``real`` (1).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np

from rbda.errors import InputFileError
from rbda.ingest.safe_pickle import load_pickle
from rbda.ingest.readers.base import ClassMap, FileSetReader, RawBatch, check_real_numeric, declared_class_map

CHANNEL_KEYS = ("temp_images", "sci_images", "diff_images")
LABEL_NAMES = {0: "bogus", 1: "real"}
DEFAULT_CLASSES = declared_class_map("hits")  # its survey declaration's
SIDE = 21
#: Archives and notes that may sit beside the chunks after unpacking.
NOT_CHUNKS = (".tar", ".gz", ".tgz", ".zip", ".md", ".txt", ".json", ".sha256")


class HitsChunkReader(FileSetReader):
    """Reads a folder (or list) of HiTS chunk files (any file but archives and notes)."""

    survey = "hits"
    format = "chunks"
    default_classes = DEFAULT_CLASSES
    excluded = NOT_CHUNKS
    expected = "HiTS chunk files (pickled dicts with temp_images, sci_images, diff_images, labels)"
    default_batch_size = 4096

    def read_file(self, path: Path) -> Iterator[RawBatch]:
        return read_chunk(path, self.class_map, self.batch_size)


def read_chunk(path: Path, class_map: ClassMap, batch_size: int = 4096) -> Iterator[RawBatch]:
    """One chunk as RawBatches of (<= batch_size, 3, 21, 21) triplets.

    The chunk is validated whole before anything is yielded; triplets are
    stacked one batch at a time, so the extra memory is one batch, not a chunk.
    """
    chunk = load_pickle(path, encoding="latin1")
    if not isinstance(chunk, dict):
        raise InputFileError(path, f"a pickled dict (HiTS chunk), got {type(chunk).__name__}")
    missing = [k for k in (*CHANNEL_KEYS, "labels") if k not in chunk]
    if missing:
        raise InputFileError(path, f"HiTS chunk keys {list(CHANNEL_KEYS) + ['labels']}, missing {missing}")
    labels_raw = np.asarray(chunk["labels"]).reshape(-1)
    n = len(labels_raw)
    channels = []
    for key in CHANNEL_KEYS:
        array = np.asarray(chunk[key])
        if array.shape == (n, SIDE, SIDE):
            array = array.reshape(n, SIDE * SIDE)
        if array.shape != (n, SIDE * SIDE):
            raise InputFileError(path, f"numeric {n} x {SIDE * SIDE} array (one flattened 21x21 "
                                       f"stamp per label), got {array.dtype} {array.shape}", f"key {key!r}")
        check_real_numeric(array, path, f"key {key!r}", f"a {n} x {SIDE * SIDE} stamp array")
        channels.append(array.reshape(n, SIDE, SIDE))
    ids = np.char.add(f"{path.name}:", np.arange(n).astype(str))
    bad = ~np.isin(labels_raw, list(LABEL_NAMES))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise InputFileError(path, f"labels 0 or 1, got {labels_raw[row]!r}", f"row {row}")
    classes = np.array([LABEL_NAMES[0], LABEL_NAMES[1]])[labels_raw.astype(int)]
    labels = class_map.labels(classes, path, ids)
    for start in range(0, n, batch_size):
        part = slice(start, start + batch_size)
        images = np.stack([channel[part] for channel in channels], axis=1)
        yield RawBatch(images, ids[part], classes[part], labels[part], str(path))
