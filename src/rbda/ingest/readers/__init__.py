"""Survey readers, one per raw layout, and layout detection.

``open_reader(survey, inputs, fmt, class_map)`` returns a reader with
``batches()`` (an iterator of :class:`~rbda.ingest.readers.base.RawBatch`),
``format`` and ``total`` (number of triplets when known up front, else None).
Which reader reads which survey's layout is declared (:mod:`rbda.surveys`:
a survey's ``layouts``, raw layout name -> reader name and settings); this
module holds only the readers by name.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Sequence

from rbda.errors import InputFileError, SettingError
from rbda.ingest.readers.base import ClassMap, RawBatch
from rbda.surveys import Survey, declared_surveys, get_survey

__all__ = ["READERS", "ClassMap", "RawBatch", "default_class_map", "formats", "open_reader", "all_formats"]


#: Reader name (as survey declarations name it) -> (module, class): the one table of readers.
READERS = {
    "hits_chunks": ("rbda.ingest.readers.hits", "HitsChunkReader"),
    "des_stamps": ("rbda.ingest.readers.des", "DesStampReader"),
    "ztf_pickle": ("rbda.ingest.readers.ztf", "ZtfPickleReader"),
    "atlas_pickle": ("rbda.ingest.readers.atlas", "AtlasPickleReader"),
    "atlas_folder": ("rbda.ingest.readers.atlas", "AtlasFolderReader"),
    "stamps_npz": ("rbda.ingest.readers.stamps", "StampArrayReader"),
}


def formats(survey: str) -> tuple[str, ...]:
    """The raw layouts a declared survey is read from (the first is the default)."""
    return get_survey(survey).formats


def all_formats() -> tuple[str, ...]:
    """Every raw layout name of every declared survey."""
    return tuple(dict.fromkeys(f for s in declared_surveys().values() for f in s.formats))


def _reader_class(declaration: Survey, fmt: str):
    reader = declaration.layouts[fmt]["reader"]
    if reader not in READERS:
        raise SettingError(f"survey {declaration.name}: layouts.{fmt}.reader", f"one of {', '.join(READERS)}", reader)
    module, name = READERS[reader]
    return getattr(importlib.import_module(module), name)


def default_class_map(survey: str) -> ClassMap:
    """The declared class -> real/bogus mapping of ``survey``."""
    declaration = get_survey(survey)
    return ClassMap.of(declaration.real_classes, declaration.bogus_classes)


def _detect_format(declaration: Survey, paths: Sequence[Path]) -> str | None:
    """The layout of ``paths`` when the survey has several readers: the first whose reader claims them
    (``claims(paths)``); None when all its layouts share one reader (which then detects, e.g. DES's image format)."""
    readers = {spec["reader"] for spec in declaration.layouts.values()}
    if len(readers) == 1:
        return None
    for fmt in declaration.formats:
        if getattr(_reader_class(declaration, fmt), "claims", lambda _: False)(paths):
            return fmt
    expected = "; or ".join(getattr(_reader_class(declaration, f), "expected", f) for f in declaration.formats)
    raise InputFileError(paths[0], f"{declaration.label} input in one of its layouts: {expected}")


def open_reader(survey: str, inputs: Sequence[str | Path], fmt: str | None = None,
                class_map: ClassMap | None = None, batch_size: int | None = None):
    """A reader for ``survey`` over ``inputs`` (files or folders); ``fmt`` None detects the layout."""
    declaration = get_survey(survey)
    if fmt is not None and fmt not in declaration.formats:
        raise SettingError("format", f"one of {declaration.formats} for {survey}", fmt)
    paths = [Path(p) for p in inputs]
    if not paths:
        raise SettingError("input", "at least one file or folder")
    for path in paths:
        if not path.exists():
            raise InputFileError(path, "an existing file or folder")
    class_map = class_map or default_class_map(survey)
    detected = fmt or _detect_format(declaration, paths)
    chosen = detected or declaration.formats[0]
    reader = _reader_class(declaration, chosen)
    # without a layout named or detected, the one reader of all the survey's layouts detects it itself
    settings = dict(declaration.layouts[chosen]["settings"]) if detected or len(declaration.formats) == 1 else {}
    if getattr(reader, "takes_declaration", False):
        settings["declaration"] = declaration
    if batch_size:
        settings["batch_size"] = batch_size
    return reader(paths, class_map, **settings)
