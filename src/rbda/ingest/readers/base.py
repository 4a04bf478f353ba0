"""What every survey reader yields, and the helpers they share.

A reader turns one raw layout into a stream of :class:`RawBatch` es: stacked
triplets (template, science, difference) of one image shape, with their ids,
original class names and binary labels. Readers never hold more than one
input file's (HiTS: one chunk's) raw data at a time beyond the current batch.
"""

from __future__ import annotations

import errno
import fnmatch
import logging
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, ClassVar, Iterable, Iterator, Sequence

import numpy as np

from rbda.errors import InputFileError, SettingError

log = logging.getLogger("rbda.ingest.readers")

#: Drop reasons a reader can attach to triplets that cannot be stacked.
NON_SQUARE = "non_square"
MISMATCHED_SHAPES = "mismatched_channel_shapes"


@dataclass
class RawBatch:
    """Triplets of one shape: ``images`` is (N, 3, H, W), channels template, science, difference.

    ``drop_reason`` is set when the reader already knows the triplets cannot be
    used (images of different shapes within a triplet); ``images`` is then empty
    and the batch only carries the ids, classes and labels to count.
    """

    images: np.ndarray
    ids: np.ndarray
    classes: np.ndarray
    labels: np.ndarray
    source: str
    drop_reason: str | None = None

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class ClassMap:
    """Which original class names are real (label 1) and which bogus (label 0)."""

    real: frozenset[str]
    bogus: frozenset[str]

    def __post_init__(self) -> None:
        both = self.real & self.bogus
        if both:
            raise SettingError("real-classes/bogus-classes", "disjoint lists", sorted(both))
        if not self.real or not self.bogus:
            raise SettingError("real-classes/bogus-classes", "at least one real and one bogus class",
                               {"real": sorted(self.real), "bogus": sorted(self.bogus)})

    @classmethod
    def of(cls, real: Iterable[str], bogus: Iterable[str]) -> "ClassMap":
        return cls(frozenset(map(str, real)), frozenset(map(str, bogus)))

    def labels(self, classes: np.ndarray, path: str | Path, ids: Sequence[str] | None = None) -> np.ndarray:
        """int8 labels for ``classes``; a class in neither list is an error naming it."""
        classes = np.asarray(classes).astype(str)
        labels = np.full(len(classes), -1, dtype=np.int8)
        for name in np.unique(classes).tolist():
            if name in self.real:
                labels[classes == name] = 1
            elif name in self.bogus:
                labels[classes == name] = 0
            else:
                row = int(np.flatnonzero(classes == name)[0])
                where = f"id {ids[row]}" if ids is not None else f"row {row}"
                raise InputFileError(
                    path,
                    f"class {name!r} is neither real {sorted(self.real)} nor bogus "
                    f"{sorted(self.bogus)} (set --real-classes/--bogus-classes)",
                    where,
                )
        return labels


def declared_class_map(survey: str) -> ClassMap:
    """The class -> real/bogus mapping ``survey``'s declaration gives (rbda.surveys)."""
    from rbda.surveys import get_survey

    declaration = get_survey(survey)
    return ClassMap.of(declaration.real_classes, declaration.bogus_classes)


@dataclass
class IgnoredFiles:
    """Files found among the inputs that are not part of the layout: counted, a few named."""

    count: int = 0
    examples: list[str] = field(default_factory=list)
    max_examples: int = 20

    def add(self, path: str | Path) -> None:
        self.count += 1
        if len(self.examples) < self.max_examples:
            self.examples.append(str(path))

    def as_dict(self) -> dict:
        return {"count": self.count, "examples": self.examples}


def skip_linked_folders(root: str | Path, folders: list[str]) -> list[str]:
    """``folders`` (names in ``root``) without symbolic links, each skipped with a warning.

    Searches of an input tree never follow a link to a folder: ``up -> ..``
    would loop or read the tree twice, and a link can lead out of the tree.
    Give a linked folder itself as an input to read it.
    """
    kept = []
    for name in folders:
        path = Path(root, name)
        if path.is_symlink():
            log.warning("%s: not following this symbolic link to a folder (-> %s); give the folder itself "
                        "as an input to read it", path, os.readlink(path))
        else:
            kept.append(name)
    return kept


def unreadable_folder(exc: OSError) -> None:
    """``os.walk``'s ``onerror``: a folder that cannot be listed is an error, not silently skipped."""
    raise InputFileError(exc.filename or "?", f"a folder that can be listed ({exc.strerror or exc})")


#: Errors of asking what an entry is that mean "not there" (a link to nothing, a vanished entry), as
#: :meth:`pathlib.Path.is_file` takes them; any other (a link whose target may not be examined) is an error.
_GONE_ERRNOS = {errno.ENOENT, errno.ENOTDIR, errno.EBADF, errno.ELOOP}


def walk_files(folder: Path) -> Iterator[Path]:
    """Every file (a regular file, or a link to one) under ``folder``, recursively: a folder's files in
    sorted order, then each of its folders' in turn (the order of :func:`os.walk`, without its
    recursion: a tree of any depth), linked folders not followed. Read from the folders' listings
    (:func:`os.scandir`): no call per file to ask what it is, unless it is a link."""
    pending = [Path(folder)]
    while pending:
        root = pending.pop()
        try:
            with os.scandir(root) as listing:
                entries = list(listing)
        except OSError as exc:
            unreadable_folder(exc)
        files, folders = [], []
        for entry in entries:
            try:
                if entry.is_dir():
                    folders.append(entry.name)
                elif entry.is_file():
                    files.append(entry.name)
            except OSError as exc:
                if exc.errno not in _GONE_ERRNOS:
                    raise InputFileError(root / entry.name, f"a file or folder that can be examined "
                                                            f"({exc.strerror or exc})") from None
        for name in sorted(files):
            yield root / name
        pending.extend(root / name for name in reversed(skip_linked_folders(root, sorted(folders))))


def find_files(inputs: Sequence[Path], accept: Callable[[Path], bool]) -> tuple[list[Path], IgnoredFiles]:
    """The one rule for finding a layout's files: ``(files, ignored)``.

    A file given as an input is taken whatever its name; a folder is searched
    recursively (hidden files skipped, linked folders not followed) and its
    files that ``accept`` are taken, the others counted in ``ignored``.
    """
    found: list[Path] = []
    ignored = IgnoredFiles()
    for item in inputs:
        if item.is_dir():
            for path in walk_files(item):
                if path.name.startswith("."):
                    continue
                if accept(path):
                    found.append(path)
                else:
                    ignored.add(path)
        elif item.is_file():
            found.append(item)
        else:
            raise InputFileError(item, "an existing file or folder")
    return sorted(dict.fromkeys(found)), ignored  # (in walk order, nearly sorted: a set would scramble it)


def name_matches(patterns: Sequence[str]) -> Callable[[Path], bool]:
    """Whether a path's name matches any of the shell ``patterns`` (case-sensitive): a :func:`find_files` rule."""
    return lambda path: any(fnmatch.fnmatchcase(path.name, pattern) for pattern in patterns)


def iter_files(inputs: Sequence[Path], patterns: Sequence[str]) -> list[Path]:
    """Files among ``inputs`` (files, or folders searched recursively) matching any pattern."""
    return find_files(inputs, name_matches(patterns))[0]


class FileSetReader:
    """A layout that is a set of files, each read on its own (HiTS chunks, ZTF and ATLAS pickles).

    The base owns what these readers share: the class map (the subclass's
    ``default_classes`` unless given), the batch size, finding the files
    (:func:`find_files` with the subclass's ``patterns`` and ``excluded``
    suffixes) and counting the rows of each file read (``file_rows``, the
    progress estimate of a layout that cannot count up front). A subclass
    sets ``survey``, ``format``, ``default_classes``, ``patterns``,
    ``expected`` (what the inputs should hold, for the error when none is
    found) and implements :meth:`read_file`.
    """

    survey: ClassVar[str]
    format: ClassVar[str]
    default_classes: ClassVar[ClassMap]
    patterns: ClassVar[tuple[str, ...]] = ("*",)
    excluded: ClassVar[tuple[str, ...]] = ()  # name endings that are never the layout's files
    expected: ClassVar[str]
    default_batch_size: ClassVar[int] = 1024

    def __init__(self, inputs: Sequence[Path], class_map: ClassMap | None = None, batch_size: int | None = None):
        self.class_map = class_map or self.default_classes
        self.batch_size = batch_size or self.default_batch_size
        self.files, self.ignored = find_files(inputs, self.is_layout_file)
        if not self.files:
            raise InputFileError(inputs[0], self.expected)
        self.total: int | None = None
        self.file_rows: dict[str, int] = {}

    @classmethod
    def is_layout_file(cls, path: Path) -> bool:
        name = path.name
        return (any(fnmatch.fnmatchcase(name, pattern) for pattern in cls.patterns)
                and not name.lower().endswith(cls.excluded))

    def batches(self) -> Iterator[RawBatch]:
        for path in self.files:
            for batch in self.read_file(path):
                self.file_rows[str(path)] = self.file_rows.get(str(path), 0) + len(batch)
                yield batch

    def read_file(self, path: Path) -> Iterator[RawBatch]:
        raise NotImplementedError


def check_real_numeric(array: np.ndarray, path: str | Path, where: str, expected: str) -> np.ndarray:
    """``array`` if it holds real numbers (integers or floats); else an error naming the file and key.

    Strings, objects and booleans are not images; complex values would lose
    their imaginary part in the float32 cast without a word.
    """
    if array.dtype.kind not in "iuf":
        raise InputFileError(path, f"{expected}: real numbers (integer or float), got {array.dtype} "
                                   f"({_KIND_NAMES.get(array.dtype.kind, 'not numbers')})", where)
    return array


_KIND_NAMES = {"U": "text", "S": "bytes", "O": "Python objects", "c": "complex numbers", "b": "booleans",
               "M": "dates", "m": "time spans", "V": "raw records"}


@dataclass
class TripletBatcher:
    """Collects single triplets (possibly of varying shape) into stacked RawBatches.

    Triplets are grouped by shape; a group is emitted when it reaches
    ``batch_size`` and at :meth:`flush`. Triplets whose three images differ in
    shape are emitted as drop-only batches (non-square if any image is not
    square, otherwise mismatched shapes).
    """

    source: str
    batch_size: int = 1024
    _groups: dict = field(default_factory=lambda: defaultdict(list))

    def add(self, triplet: Sequence[np.ndarray], id_: str, class_name: str, label: int) -> Iterator[RawBatch]:
        shapes = tuple(np.shape(image) for image in triplet)
        if len(set(shapes)) == 1:
            key: object = shapes[0]
        elif any(len(s) != 2 or s[0] != s[1] for s in shapes):
            key = NON_SQUARE
        else:
            key = MISMATCHED_SHAPES
        group = self._groups[key]
        # Triplets that will be dropped are only counted: their pixels are not kept.
        group.append((triplet if isinstance(key, tuple) else None, id_, class_name, label))
        if len(group) >= self.batch_size:
            yield self._emit(key)

    def flush(self) -> Iterator[RawBatch]:
        for key in list(self._groups):
            if self._groups[key]:
                yield self._emit(key)

    def _emit(self, key: object) -> RawBatch:
        rows = self._groups.pop(key)
        ids = np.array([r[1] for r in rows], dtype=str)
        classes = np.array([r[2] for r in rows], dtype=str)
        labels = np.array([r[3] for r in rows], dtype=np.int8)
        if isinstance(key, str):
            images = np.empty((len(rows), 3, 0, 0), dtype=np.float32)
            return RawBatch(images, ids, classes, labels, self.source, drop_reason=key)
        images = np.stack([np.stack(r[0]) for r in rows])
        return RawBatch(images, ids, classes, labels, self.source)
