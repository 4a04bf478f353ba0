"""ATLAS stamps: science ("istamp") and difference ("dstamp"), grouped by class.

Two layouts:

* ``folder``: one sub-folder per class (burn, cr, kast, noise, spike,
  streak), each holding ``<name>_istamp.fits[.gz]`` / ``<name>_dstamp.fits[.gz]``
  pairs; the id is ``<name>``. An istamp without its dstamp (or the reverse)
  is an error naming the file.
* ``pickle``: a dict ``{class name: {"science": (n, H, W), "difference":
  (n, H, W), "ids": n names}}`` (``istamp``/``dstamp`` accepted as key names
  for the two images).

ATLAS has no template: template = science - difference. The real istamps
have a non-conforming SIMPLE card; astropy's VerifyWarning about it is
expected and silenced for these reads only.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from rbda.errors import InputFileError
from rbda.ingest.fits import read_stamp_file
from rbda.ingest.safe_pickle import load_pickle
from rbda.ingest.readers.base import (ClassMap, FileSetReader, IgnoredFiles, RawBatch, TripletBatcher, check_real_numeric,
                                     declared_class_map, skip_linked_folders, walk_files)

DEFAULT_CLASSES = declared_class_map("atlas")  # its survey declaration's
_STAMP = re.compile(r"^(?P<name>.+)_(?P<kind>istamp|dstamp)\.(?:fits|fit|fts)(?:\.gz)?$")
KEY_ALIASES = {"science": ("science", "istamp"), "difference": ("difference", "dstamp")}


def read_fits_stamp(path: Path) -> np.ndarray:
    """An ATLAS stamp as float32, tolerating the non-conforming SIMPLE card (:mod:`rbda.ingest.fits`)."""
    return read_stamp_file(path, ignore_missing_simple=True)


def _triplet(science: np.ndarray, difference: np.ndarray) -> list[np.ndarray]:
    """(template, science, difference) with template = science - difference.

    A pair of different shapes has no template; the empty placeholder makes the
    batcher drop (and count) the triplet as non-square or mismatched.
    """
    if science.shape != difference.shape:
        return [np.empty((0, 0), np.float32), science, difference]
    return [science - difference, science, difference]


def find_pairs(folder: Path, ignored: IgnoredFiles) -> list[tuple[str, str, Path, Path]]:
    """(class, id, istamp, dstamp) for every pair under the class sub-folders of ``folder``.

    Other files (in ``folder`` itself or in the class folders) are counted in ``ignored``.
    """
    if not folder.is_dir():
        raise InputFileError(folder, "a folder of ATLAS class sub-folders (burn/, cr/, kast/, ...)")
    pairs = []
    # A linked folder (``up -> ..``, or one leading out of the tree) is not a class folder.
    folders = skip_linked_folders(folder, sorted(p.name for p in folder.iterdir() if p.is_dir()))
    class_dirs = [folder / name for name in folders if not name.startswith(".")]
    for path in sorted(folder.iterdir()):
        if path.is_file():
            ignored.add(path)
    for class_dir in class_dirs:
        found: dict[str, dict[str, Path]] = {}
        for path in walk_files(class_dir):
            match = _STAMP.match(path.name)
            if match:
                found.setdefault(match["name"], {})[match["kind"]] = path
            else:
                ignored.add(path)
        for name, kinds in found.items():
            for have, need in (("istamp", "dstamp"), ("dstamp", "istamp")):
                if need not in kinds:
                    raise InputFileError(kinds[have], f"its {need} partner ({name}_{need}.fits[.gz]) "
                                                      f"beside it", f"class {class_dir.name}")
            pairs.append((class_dir.name, name, kinds["istamp"], kinds["dstamp"]))
    return pairs


class AtlasFolderReader:
    survey = "atlas"
    format = "folder"
    expected = "folders of class sub-folders with *_istamp.fits / *_dstamp.fits pairs"

    @classmethod
    def claims(cls, inputs: Sequence[Path]) -> bool:
        """Folders none of which holds a ``*.pkl`` (the pickle layout's)."""
        return all(p.is_dir() for p in inputs) and not AtlasPickleReader.claims(inputs)

    def __init__(self, inputs: Sequence[Path], class_map: ClassMap | None = None, batch_size: int = 1024):
        self.class_map = class_map or DEFAULT_CLASSES
        self.batch_size = batch_size
        self.ignored = IgnoredFiles()
        self.pairs = [pair for folder in inputs for pair in find_pairs(folder, self.ignored)]
        if not self.pairs:
            raise InputFileError(inputs[0], "class sub-folders (kast/, streak/, ...) holding "
                                            "<name>_istamp.fits[.gz] and <name>_dstamp.fits[.gz] pairs")
        classes = np.array([p[0] for p in self.pairs], dtype=str)
        ids = [p[1] for p in self.pairs]
        self.labels = self.class_map.labels(classes, inputs[0], ids)
        self.total = len(self.pairs)
        self.source = str(inputs[0])

    def batches(self) -> Iterator[RawBatch]:
        batcher = TripletBatcher(self.source, self.batch_size)
        for (class_name, id_, istamp, dstamp), label in zip(self.pairs, self.labels):
            triplet = _triplet(read_fits_stamp(istamp), read_fits_stamp(dstamp))
            yield from batcher.add(triplet, id_, class_name, int(label))
        yield from batcher.flush()


class AtlasPickleReader(FileSetReader):
    survey = "atlas"
    format = "pickle"

    default_classes = DEFAULT_CLASSES
    patterns = ("*.pkl", "*.pickle")
    expected = "ATLAS pickle files (*.pkl)"

    @classmethod
    def claims(cls, inputs: Sequence[Path]) -> bool:
        """Pickle files, or folders each holding a ``*.pkl``."""
        if all(p.is_file() and p.suffix.lower() in (".pkl", ".pickle") for p in inputs):
            return True
        return all(p.is_dir() and next(p.glob("*.pkl"), None) is not None for p in inputs)

    def read_file(self, path: Path) -> Iterator[RawBatch]:
        content = load_pickle(path, encoding="latin1")
        if not isinstance(content, dict) or not content:
            raise InputFileError(path, "a pickled dict {class name: {'science', 'difference', 'ids'}}, "
                                       f"got {type(content).__name__}")
        for class_name, group in content.items():
            yield from self._class_group(path, str(class_name), group)

    def _class_group(self, path: Path, class_name: str, group: object) -> Iterator[RawBatch]:
        where = f"class {class_name!r}"
        if not isinstance(group, dict):
            raise InputFileError(path, f"a dict with 'science', 'difference', 'ids', got {type(group).__name__}", where)
        arrays = {}
        for key, aliases in KEY_ALIASES.items():
            found = next((a for a in aliases if a in group), None)
            if found is None:
                raise InputFileError(path, f"key {key!r} (or {aliases[1]!r})", where)
            arrays[key] = check_real_numeric(np.asarray(group[found]), path, f"{where}, key {found!r}",
                                             f"{key} stamps")
        science, difference = arrays["science"], arrays["difference"]
        if science.ndim != 3 or science.shape != difference.shape:
            raise InputFileError(path, "science and difference arrays of one shape (n, H, W), got "
                                       f"{science.shape} and {difference.shape}", where)
        n = len(science)
        ids = np.asarray(group.get("ids", [f"{class_name}:{i}" for i in range(n)])).astype(str)
        if len(ids) != n:
            raise InputFileError(path, f"{n} ids (one per stamp), got {len(ids)}", where)
        classes = np.full(n, class_name)
        labels = self.class_map.labels(classes, path, ids)
        for start in range(0, n, self.batch_size):
            part = slice(start, start + self.batch_size)
            sci = science[part].astype(np.float32)
            diff = difference[part].astype(np.float32)
            yield RawBatch(np.stack([sci - diff, sci, diff], axis=1), ids[part], classes[part], labels[part], str(path))
