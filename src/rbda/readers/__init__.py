"""Survey readers, one per raw layout, and layout detection.

``open_reader(survey, inputs, fmt, class_map)`` returns a reader with
``batches()`` (an iterator of :class:`~rbda.readers.base.RawBatch`),
``format`` and ``total`` (number of triplets when known up front, else None).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from rbda.errors import InputFileError, SettingError
from rbda.readers.base import ClassMap, RawBatch
from rbda.study import SURVEYS
FORMATS = {
    "hits": ("chunks",),
    "des": ("gif", "fits"),
    "ztf": ("pickle",),
    "atlas": ("pickle", "folder"),
}

__all__ = ["FORMATS", "ClassMap", "RawBatch", "default_class_map", "open_reader"]


def default_class_map(survey: str) -> ClassMap:
    """The study's class -> real/bogus mapping for ``survey``."""
    if survey == "hits":
        from rbda.readers.hits import DEFAULT_CLASSES
    elif survey == "des":
        from rbda.readers.des import DEFAULT_CLASSES
    elif survey == "ztf":
        from rbda.readers.ztf import DEFAULT_CLASSES
    elif survey == "atlas":
        from rbda.readers.atlas import DEFAULT_CLASSES
    else:
        raise SettingError("survey", f"one of {SURVEYS}", survey)
    return DEFAULT_CLASSES


def detect_atlas_format(inputs: Sequence[Path]) -> str:
    """``pickle`` for pickle files or folders holding ``*.pkl``; ``folder`` for folders of class folders."""
    if all(p.is_file() and p.suffix.lower() in (".pkl", ".pickle") for p in inputs):
        return "pickle"
    if all(p.is_dir() for p in inputs):
        return "pickle" if all(next(p.glob("*.pkl"), None) for p in inputs) else "folder"
    raise InputFileError(inputs[0], "ATLAS input: pickle files, or folders of class sub-folders with "
                                    "*_istamp.fits / *_dstamp.fits pairs")


def open_reader(survey: str, inputs: Sequence[str | Path], fmt: str | None = None,
                class_map: ClassMap | None = None, batch_size: int = 1024):
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
    if survey == "hits":
        from rbda.readers.hits import HitsChunkReader

        return HitsChunkReader(paths, class_map, batch_size=max(batch_size, 4096))
    if survey == "des":
        from rbda.readers.des import DesStampReader

        return DesStampReader(paths, class_map, image_format=fmt, batch_size=batch_size)
    if survey == "ztf":
        from rbda.readers.ztf import ZtfPickleReader

        return ZtfPickleReader(paths, class_map, batch_size=batch_size)
    from rbda.readers.atlas import AtlasFolderReader, AtlasPickleReader

    fmt = fmt or detect_atlas_format(paths)
    reader = AtlasPickleReader if fmt == "pickle" else AtlasFolderReader
    return reader(paths, class_map, batch_size=batch_size)
