"""Survey readers, one per raw layout, and layout detection.

``open_reader(survey, inputs, fmt, class_map)`` returns a reader with
``batches()`` (an iterator of :class:`~rbda.ingest.readers.base.RawBatch`),
``format`` and ``total`` (number of triplets when known up front, else None).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Sequence

from rbda.errors import InputFileError, SettingError
from rbda.ingest.readers.base import ClassMap, RawBatch
from rbda.study import SURVEYS

__all__ = ["FORMATS", "READERS", "ClassMap", "RawBatch", "default_class_map", "open_reader"]


#: (survey, raw layout) -> (module, reader class): the one table of readers. A survey's
#: first layout is its default; DES's image format and ATLAS's layout are detected.
READERS = {
    ("hits", "chunks"): ("rbda.ingest.readers.hits", "HitsChunkReader"),
    ("des", "gif"): ("rbda.ingest.readers.des", "DesStampReader"),
    ("des", "fits"): ("rbda.ingest.readers.des", "DesStampReader"),
    ("ztf", "pickle"): ("rbda.ingest.readers.ztf", "ZtfPickleReader"),
    ("atlas", "pickle"): ("rbda.ingest.readers.atlas", "AtlasPickleReader"),
    ("atlas", "folder"): ("rbda.ingest.readers.atlas", "AtlasFolderReader"),
}
#: survey -> the raw layouts its readers read (the first is the default).
FORMATS = {survey: tuple(fmt for (s, fmt) in READERS if s == survey) for survey in SURVEYS}


def _reader_class(survey: str, fmt: str):
    module, name = READERS[(survey, fmt)]
    return getattr(importlib.import_module(module), name)


def default_class_map(survey: str) -> ClassMap:
    """The study's class -> real/bogus mapping for ``survey`` (its reader module's ``DEFAULT_CLASSES``)."""
    if survey not in SURVEYS:
        raise SettingError("survey", f"one of {SURVEYS}", survey)
    module, _ = READERS[(survey, FORMATS[survey][0])]
    return importlib.import_module(module).DEFAULT_CLASSES


def detect_atlas_format(inputs: Sequence[Path]) -> str:
    """``pickle`` for pickle files or folders holding ``*.pkl``; ``folder`` for folders of class folders."""
    if all(p.is_file() and p.suffix.lower() in (".pkl", ".pickle") for p in inputs):
        return "pickle"
    if all(p.is_dir() for p in inputs):
        return "pickle" if all(next(p.glob("*.pkl"), None) for p in inputs) else "folder"
    raise InputFileError(inputs[0], "ATLAS input: pickle files, or folders of class sub-folders with "
                                    "*_istamp.fits / *_dstamp.fits pairs")


def open_reader(survey: str, inputs: Sequence[str | Path], fmt: str | None = None,
                class_map: ClassMap | None = None, batch_size: int | None = None):
    """A reader for ``survey`` over ``inputs`` (files or folders); ``fmt`` None detects the layout."""
    if survey not in SURVEYS:
        raise SettingError("survey", f"one of {SURVEYS}", survey)
    if fmt is not None and fmt not in FORMATS[survey]:
        raise SettingError("format", f"one of {FORMATS[survey]} for {survey}", fmt)
    paths = [Path(p) for p in inputs]
    if not paths:
        raise SettingError("input", "at least one file or folder")
    for path in paths:
        if not path.exists():
            raise InputFileError(path, "an existing file or folder")
    class_map = class_map or default_class_map(survey)
    if survey == "des":  # one reader for both image formats; it detects the format when not given
        return _reader_class(survey, fmt or "gif")(paths, class_map, image_format=fmt, batch_size=batch_size or 1024)
    fmt = fmt or (detect_atlas_format(paths) if survey == "atlas" else FORMATS[survey][0])
    reader = _reader_class(survey, fmt)
    return reader(paths, class_map, batch_size=batch_size) if batch_size else reader(paths, class_map)
