"""The generic labelled-stamp layout (``stamps_npz``): any survey's stamps in one or more NumPy ``.npz`` files.

Each file holds

* ``stamps``: (N, 3, H, W) real numbers, the channels in the order the survey declares
  (``channels``, e.g. ``[science, template, difference]``), H = W = the declared ``stamp_size``;
* ``labels``: (N,) integers, 1 real and 0 bogus; or ``classes``: (N,) class names, labelled by the
  survey's class map (``--real-classes``/``--bogus-classes`` or the declaration's ``class_map``);
* ``ids`` (optional): (N,) ids (default ``<file stem>:<row>``).

Written from numpy in a few lines (docs/surveys.md). A stamp of another size than the declared one is
an error naming the survey and both sizes; stamps smaller than the network's crop
(:data:`rbda.study.STAMP_SIZE`) are padded with NaN (invalid pixels, filled by preprocessing) when the
survey's ``size_rule`` is ``crop_or_pad`` and are an error naming the survey and the sizes when it is
``exact``; larger ones are cropped by preprocessing (its central crop).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from rbda.errors import InputFileError
from rbda.ingest.readers.base import ClassMap, FileSetReader, RawBatch, check_real_numeric
from rbda.study import CHANNELS, STAMP_SIZE
from rbda.surveys import Survey


def fit_to_crop(images: np.ndarray, survey: Survey, path: Path) -> np.ndarray:
    """(N, 3, S, S) stamps made at least the network's crop by the survey's size rule (NaN padding, centred)."""
    size = images.shape[-1]
    if size >= STAMP_SIZE:
        return images
    if survey.size_rule != "crop_or_pad":
        raise InputFileError(path, f"survey {survey.name}: stamps of at least the network's {STAMP_SIZE}x{STAMP_SIZE} "
                                   f"input under size_rule {survey.size_rule}, got {size}x{size} (declare size_rule: "
                                   "crop_or_pad to pad them)")
    before = (STAMP_SIZE - size) // 2
    after = STAMP_SIZE - size - before
    return np.pad(images, ((0, 0), (0, 0), (before, after), (before, after)), constant_values=np.nan)


class StampArrayReader(FileSetReader):
    """Reads the generic labelled-stamp layout (see the module docstring) under a survey's declaration."""

    survey = ""
    format = "npz"
    takes_declaration = True
    patterns = ("*.npz",)
    expected = "NumPy .npz files of stamps (N, 3, H, W) with labels or classes"

    def __init__(self, inputs: Sequence[Path], class_map: ClassMap | None = None, batch_size: int | None = None,
                 declaration: Survey | None = None):
        if declaration is None:
            raise ValueError("StampArrayReader reads under a survey declaration")
        self.declaration = declaration
        self.default_classes = ClassMap.of(declaration.real_classes, declaration.bogus_classes)
        super().__init__(inputs, class_map, batch_size)
        self.survey = declaration.name
        #: index of each stored channel (template, science, difference) in the file's declared order
        self.order = [declaration.channels.index(channel) for channel in CHANNELS]

    def read_file(self, path: Path) -> Iterator[RawBatch]:
        survey = self.declaration
        try:
            with np.load(path, allow_pickle=False) as content:
                arrays = {key: content[key] for key in content.files}
        except Exception as exc:  # noqa: BLE001 - zip, format and pickle errors
            raise InputFileError(path, f"a NumPy .npz file ({exc.__class__.__name__}: {exc})") from None
        if "stamps" not in arrays:
            raise InputFileError(path, f"an array 'stamps' (N, 3, H, W), got arrays {sorted(arrays)}")
        stamps = check_real_numeric(arrays["stamps"], path, "stamps", "stamps")
        n = len(stamps)
        if stamps.ndim != 4 or stamps.shape[1] != 3:
            raise InputFileError(path, f"stamps of shape (N, 3, H, W), got {stamps.shape}", "stamps")
        size = survey.stamp_size
        if stamps.shape[2:] != (size, size):
            raise InputFileError(path, f"survey {survey.name}: stamps of its declared {size}x{size} pixels, got "
                                       f"{stamps.shape[2]}x{stamps.shape[3]}", "stamps")
        if "labels" in arrays:
            labels = check_real_numeric(arrays["labels"], path, "labels", "labels")
            if labels.shape != (n,) or not np.isin(labels, (0, 1)).all():
                raise InputFileError(path, f"labels: {n} values, each 0 (bogus) or 1 (real)", "labels")
            labels = labels.astype(np.int8)
            classes = np.where(labels == 1, "real", "bogus")
        elif "classes" in arrays:
            classes = arrays["classes"]
            if classes.shape != (n,) or classes.dtype.kind not in "US":
                raise InputFileError(path, f"classes: {n} class names", "classes")
            classes = classes.astype(str)
            labels = None
        else:
            raise InputFileError(path, "an array 'labels' (0 bogus, 1 real) or 'classes' (class names)")
        ids = arrays.get("ids")
        ids = np.array([f"{path.stem}:{row}" for row in range(n)]) if ids is None else ids.astype(str)
        if ids.shape != (n,):
            raise InputFileError(path, f"ids: {n} ids, one per stamp", "ids")
        if labels is None:
            labels = self.class_map.labels(classes, path, ids)
        images = fit_to_crop(stamps[:, self.order].astype(np.float32), survey, path)
        for start in range(0, n, self.batch_size):
            part = slice(start, start + self.batch_size)
            yield RawBatch(images=images[part], ids=ids[part], classes=classes[part], labels=labels[part],
                           source=str(path))
