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
from typing import Iterator, Sequence

import numpy as np

from rbda.errors import InputFileError
from rbda.safe_pickle import load_pickle
from rbda.readers.base import ClassMap, IgnoredFiles, RawBatch, check_real_numeric, walk_files

CHANNEL_KEYS = ("temp_images", "sci_images", "diff_images")
LABEL_NAMES = {0: "bogus", 1: "real"}
DEFAULT_CLASSES = ClassMap.of(real=["real"], bogus=["bogus"])
SIDE = 21
#: Archives and notes that may sit beside the chunks after unpacking.
NOT_CHUNKS = (".tar", ".gz", ".tgz", ".zip", ".md", ".txt", ".json", ".sha256")


class HitsChunkReader:
    """Reads a folder (or list) of HiTS chunk files."""

    survey = "hits"
    format = "chunks"

    def __init__(self, inputs: Sequence[Path], class_map: ClassMap | None = None, batch_size: int = 4096):
        self.class_map = class_map or DEFAULT_CLASSES
        self.batch_size = batch_size
        self.files, self.ignored = find_chunks(inputs)
        if not self.files:
            raise InputFileError(inputs[0], "HiTS chunk files (pickled dicts with temp_images, "
                                            "sci_images, diff_images, labels)")
        self.total: int | None = None
        self.file_rows: dict[str, int] = {}  # rows of each chunk read so far (progress estimate)

    def batches(self) -> Iterator[RawBatch]:
        for path in self.files:
            for batch in read_chunk(path, self.class_map, self.batch_size):
                self.file_rows[str(path)] = self.file_rows.get(str(path), 0) + len(batch)
                yield batch


def find_chunks(inputs: Sequence[Path]) -> tuple[list[Path], IgnoredFiles]:
    files: list[Path] = []
    ignored = IgnoredFiles()
    for item in inputs:
        if item.is_dir():
            for path in (p for p in walk_files(item) if p.is_file() and not p.name.startswith(".")):
                if path.name.endswith(NOT_CHUNKS):
                    ignored.add(path)
                else:
                    files.append(path)
        elif item.is_file():
            files.append(item)
        else:
            raise InputFileError(item, "an existing HiTS chunk file or folder of chunks")
    return files, ignored


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
