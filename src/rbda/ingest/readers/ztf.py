"""ZTF, ALeRCE stamp-classifier set: one or more pickles in either known form.

(a) dict: ``images`` N x 63 x 63 x 3 (channel order science, template,
    difference), ``labels`` (ALeRCE ints 0 AGN, 1 SN, 2 VS, 3 asteroid,
    4 bogus, or class names), optional ``ids``/``oid``;
(b) pandas DataFrame: ``class``, ``oid``, ``cutoutScience``,
    ``cutoutTemplate``, ``cutoutDifference``, each cutout gzip-compressed FITS
    bytes (stamps may be smaller than 63x63 and hold NaN or sentinel pixels).

(c) EarlySN layout (``ALERCE_stamps_2020.pkl``): dict with capitalised keys
    ``Images`` (N x 63 x 63 x 3, or a list of per-item H x W x 3 arrays, same
    channel order as (a)), ``Labels`` (ALeRCE ints as in (a)) and ``Metadata``;
    the metadata is not read (rbda's stamp models use none). Items whose stamps
    are not square are counted and dropped like the DataFrame form's.

Ids are the ``oid`` values (``<file>:<row>`` where there is none).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from rbda.errors import InputFileError
from rbda.ingest.fits import decode_stamp
from rbda.ingest.safe_pickle import load_pickle
from rbda.ingest.readers.base import FileSetReader, RawBatch, TripletBatcher, check_real_numeric, declared_class_map
from rbda.study import SURVEY_CLASSES

ALERCE_CLASSES = SURVEY_CLASSES["ztf"]  # ALeRCE label order: 0 AGN, 1 SN, 2 VS, 3 asteroid, 4 bogus
DEFAULT_CLASSES = declared_class_map("ztf")  # its survey declaration's
CUTOUT_COLUMNS = ("cutoutTemplate", "cutoutScience", "cutoutDifference")  # output channel order
DICT_CHANNEL_ORDER = (1, 0, 2)  # dict form stores science, template, difference
EARLYSN_KEYS = {"Images": "images", "Labels": "labels"}  # EarlySN layout -> dict form; "Metadata" not read


def decode_cutout(blob: object, path: Path, where: str) -> np.ndarray:
    """A cutout's gzip-compressed (or plain) FITS bytes as a float32 2-d image (:func:`rbda.ingest.fits.decode_stamp`)."""
    return decode_stamp(blob, path, where)


def _earlysn_as_dict_form(content: dict, path: Path) -> dict:
    """The EarlySN layout (``Images``/``Labels``/``Metadata``) renamed to the dict form; other dicts as given."""
    if not all(key in content for key in EARLYSN_KEYS):
        return content
    clash = [new for new in EARLYSN_KEYS.values() if new in content]
    if clash:
        raise InputFileError(path, "one ZTF dict layout: 'Images'/'Labels' (EarlySN) or 'images'/'labels', "
                                   f"got both (also {clash})")
    return {new: content[old] for old, new in EARLYSN_KEYS.items()}


def _class_names(labels: np.ndarray, path: Path) -> np.ndarray:
    if labels.dtype.kind in "iu":
        bad = (labels < 0) | (labels >= len(ALERCE_CLASSES))
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise InputFileError(path, f"ALeRCE label 0..4 ({', '.join(ALERCE_CLASSES)}), got {labels[row]}",
                                 f"row {row}")
        return np.array(ALERCE_CLASSES)[labels]
    return labels.astype(str)


class ZtfPickleReader(FileSetReader):
    """Reads ALeRCE ZTF pickles (dict or DataFrame form, detected per file)."""

    survey = "ztf"
    format = "pickle"

    default_classes = DEFAULT_CLASSES
    patterns = ("*.pkl", "*.pickle")
    expected = "ZTF pickle files (*.pkl)"

    def read_file(self, path: Path) -> Iterator[RawBatch]:
        content = load_pickle(path, encoding="latin1")
        if isinstance(content, dict):
            content = _earlysn_as_dict_form(content, path)
            yield from self._dict_form(content, path)
        elif hasattr(content, "columns") and hasattr(content, "iloc"):
            yield from self._dataframe_form(content, path)
        else:
            raise InputFileError(path, "a ZTF pickle: a dict with 'images' and 'labels' (or EarlySN's 'Images', 'Labels') or a pandas "
                                       f"DataFrame with cutout columns, got {type(content).__name__}")

    def _dict_form(self, content: dict, path: Path) -> Iterator[RawBatch]:
        missing = [k for k in ("images", "labels") if k not in content]
        if missing:
            raise InputFileError(path, f"ZTF dict keys 'images' and 'labels', missing {missing}")
        labels_raw = np.asarray(content["labels"]).reshape(-1)
        n = len(labels_raw)
        if isinstance(content["images"], (list, tuple)):
            yield from self._ragged_images(content["images"], labels_raw, path)
            return
        images = np.asarray(content["images"])
        if images.ndim != 4 or images.shape[0] != n or images.shape[3] != 3:
            raise InputFileError(path, f"'images' of shape ({n}, H, W, 3) (one triplet per label), "
                                       f"got {images.shape}", "key 'images'")
        check_real_numeric(images, path, "key 'images'", "stamp triplets")
        raw_ids = content.get("ids", content.get("oid"))
        ids = (np.asarray(raw_ids).astype(str) if raw_ids is not None
               else np.char.add(f"{path.name}:", np.arange(n).astype(str)))
        if len(ids) != n:
            raise InputFileError(path, f"{n} ids (one per label), got {len(ids)}", "key 'ids'")
        classes = _class_names(labels_raw, path)
        labels = self.class_map.labels(classes, path, ids)
        for start in range(0, n, self.batch_size):
            part = slice(start, start + self.batch_size)
            triplets = np.moveaxis(images[part], 3, 1)[:, DICT_CHANNEL_ORDER]
            yield RawBatch(triplets, ids[part], classes[part], labels[part], str(path))

    def _ragged_images(self, images: Sequence, labels_raw: np.ndarray, path: Path) -> Iterator[RawBatch]:
        """Dict form whose ``images`` is a list of per-item H x W x 3 arrays (EarlySN's pickle)."""
        n = len(labels_raw)
        if len(images) != n:
            raise InputFileError(path, f"{n} images (one per label), got {len(images)}", "key 'images'")
        ids = np.char.add(f"{path.name}:", np.arange(n).astype(str))
        classes = _class_names(labels_raw, path)
        labels = self.class_map.labels(classes, path, ids)
        batcher = TripletBatcher(str(path), self.batch_size)
        for row, item in enumerate(images):
            where = f"key 'images', item {row}"
            item = check_real_numeric(np.asarray(item), path, where, "a stamp triplet")
            if item.ndim != 3 or item.shape[2] != 3:
                raise InputFileError(path, f"an H x W x 3 stamp triplet, got shape {item.shape}", where)
            triplet = [item[:, :, c].astype(np.float32) for c in DICT_CHANNEL_ORDER]
            yield from batcher.add(triplet, ids[row], classes[row], labels[row])
        yield from batcher.flush()

    def _dataframe_form(self, frame, path: Path) -> Iterator[RawBatch]:
        missing = [c for c in ("class", *CUTOUT_COLUMNS) if c not in frame.columns]
        if missing:
            raise InputFileError(path, f"DataFrame columns 'class', 'oid', {', '.join(CUTOUT_COLUMNS)}; "
                                       f"missing {missing}")
        n = len(frame)
        ids = (frame["oid"].astype(str).to_numpy() if "oid" in frame.columns
               else np.char.add(f"{path.name}:", np.arange(n).astype(str)))
        classes = _class_names(frame["class"].to_numpy(), path)
        labels = self.class_map.labels(classes, path, ids)
        cutouts = [frame[c].to_numpy() for c in CUTOUT_COLUMNS]
        batcher = TripletBatcher(str(path), self.batch_size)
        for row in range(n):
            where = f"row {row}, oid {ids[row]}"
            triplet = [decode_cutout(column[row], path, f"{where}, {name}")
                       for column, name in zip(cutouts, CUTOUT_COLUMNS)]
            yield from batcher.add(triplet, ids[row], classes[row], labels[row])
        yield from batcher.flush()
