"""DES autoscan stamps: ``srch<ID>``, ``temp<ID>``, ``diff<ID>`` images plus a labels CSV.

Images are 8-bit GIFs (read with Pillow, converted to grey levels) or their
FITS versions (astropy), 51x51, possibly spread over sub-folders. Labels come
from ``autoscan_features*.csv`` (lines starting with ``#`` are comments; the
columns include ``ID`` and ``OBJECT_TYPE``). The class name is the
``OBJECT_TYPE`` value as text; by default 0 (not an artefact) is real and 1
(artefact) is bogus.

A triplet missing one of its images is an error naming the missing file. A
stamp triplet without a CSV row and a CSV row without stamps are not read:
each kind is logged as a warning with its count and first IDs, and counted
with up to 20 example IDs in the report (``extra_counts``). Linked folders
inside the stamp folders are not followed (a warning names them).
"""

from __future__ import annotations

import heapq
import io
import logging
import os
import re
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from rbda.errors import InputFileError
from rbda.ingest.readers.base import (ClassMap, IgnoredFiles, RawBatch, TripletBatcher, declared_class_map, iter_files,
                                     skip_linked_folders, unreadable_folder)

log = logging.getLogger("rbda.ingest.readers.des")
#: IDs named in the report (and the first few in the log) for each kind of unmatched ID.
MAX_EXAMPLE_IDS = 20
LOGGED_IDS = 5

DEFAULT_CLASSES = declared_class_map("des")  # its survey declaration's
PREFIXES = ("temp", "srch", "diff")  # channel order template, science, difference
PREFIX_BITS = {prefix: 1 << i for i, prefix in enumerate(PREFIXES)}
SUFFIXES = {"gif": (".gif",), "fits": (".fits", ".fits.gz", ".fit", ".fts")}
LABELS_GLOB = "autoscan_features*.csv"
_NAME = re.compile(r"^(temp|srch|diff)(.+?)(\.gif|\.fits\.gz|\.fits|\.fit|\.fts)$")


def read_labels_csv(path: Path) -> dict[str, str]:
    """ID -> OBJECT_TYPE (as text) from an autoscan CSV with ``#`` comment lines."""
    import pandas as pd

    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputFileError(path, f"a readable text CSV ({exc})") from None
    body = "".join(line for line in text.splitlines(keepends=True) if not line.lstrip().startswith("#"))
    if not body.strip():
        raise InputFileError(path, "a CSV with a header line and columns ID, OBJECT_TYPE; it is empty")
    try:
        frame = pd.read_csv(io.StringIO(body), dtype=str, skipinitialspace=True)
    except Exception as exc:  # noqa: BLE001 - pandas raises several parser errors
        raise InputFileError(path, f"a CSV with columns ID, OBJECT_TYPE ({exc})") from None
    frame.columns = [c.strip() for c in frame.columns]
    missing = [c for c in ("ID", "OBJECT_TYPE") if c not in frame.columns]
    if missing:
        raise InputFileError(path, f"CSV columns ID and OBJECT_TYPE, missing {missing} "
                                   f"(found {list(frame.columns)[:10]})")
    blank = frame["ID"].isna() | frame["OBJECT_TYPE"].isna()
    if blank.any():
        row = int(np.flatnonzero(blank.to_numpy())[0])
        raise InputFileError(path, "an ID and an OBJECT_TYPE on every row", f"data row {row + 1}")
    ids = frame["ID"].str.strip()
    duplicated = ids.duplicated()
    if duplicated.any():
        raise InputFileError(path, "each ID once", f"ID {ids[duplicated].iloc[0]}")
    # Interned: a few distinct OBJECT_TYPE values shared by ~900 k rows.
    return dict(zip(ids, map(sys.intern, frame["OBJECT_TYPE"].str.strip())))


def read_image(path: Path, image_format: str) -> np.ndarray:
    """One stamp image as a 2-d array (GIF: uint8 grey levels; FITS: float32)."""
    try:
        if image_format == "gif":
            from PIL import Image

            with Image.open(path) as image:
                return np.asarray(image.convert("L"))
        from astropy.io import fits

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=fits.verify.VerifyWarning)
            data = fits.getdata(path)
    except Exception as exc:  # noqa: BLE001 - Pillow/astropy raise many types for bad files
        raise InputFileError(path, f"a readable {image_format.upper()} image ({exc.__class__.__name__}: {exc})") from None
    if data is None or data.ndim != 2:
        raise InputFileError(path, f"a 2-d image, got {None if data is None else data.shape}")
    return data.astype(np.float32)


class DesStampReader:
    """Reads DES autoscan stamp folders (GIF or FITS) with their labels CSV."""

    survey = "des"

    def __init__(self, inputs: Sequence[Path], class_map: ClassMap | None = None,
                 image_format: str | None = None, batch_size: int = 1024):
        self.class_map = class_map or DEFAULT_CLASSES
        self.batch_size = batch_size
        csvs = [p for p in inputs if p.is_file() and p.suffix.lower() == ".csv"]
        folders = [p for p in inputs if p not in csvs]
        if not csvs:
            csvs = iter_files([p for p in folders if p.is_dir()], [LABELS_GLOB])
        if len(csvs) != 1:
            raise InputFileError(inputs[0], f"exactly one DES labels CSV ({LABELS_GLOB}) among the "
                                            f"inputs, found {len(csvs)}: {[str(c) for c in csvs][:5]}")
        self.labels_path = csvs[0]
        self.format = image_format or detect_image_format(folders)
        self.ignored = IgnoredFiles()  # files that are not stamps of this format (the CSV aside)
        self.triplets = find_triplets(folders, self.format, self.ignored, skip={self.labels_path})
        object_types = read_labels_csv(self.labels_path)
        # Per-ID state kept as aligned arrays, not dicts: the real set has 899 k IDs.
        self.ids = [i for i in self.triplets if i in object_types]
        self.classes = np.array([object_types[i] for i in self.ids], dtype=str)
        self.labels = self.class_map.labels(self.classes, self.labels_path, self.ids)
        n_unlabelled = len(self.triplets) - len(self.ids)
        n_stampless = len(object_types) - len(self.ids)
        # The triplets are sorted by ID already; the CSV rows are not.
        unlabelled = [i for i in self.triplets if i not in object_types][:MAX_EXAMPLE_IDS] if n_unlabelled else []
        stampless = (heapq.nsmallest(MAX_EXAMPLE_IDS, (i for i in object_types if i not in self.triplets),
                                     key=_id_sort_key) if n_stampless else [])
        self.extra_counts = {
            "stamps_without_label_row": n_unlabelled,
            "stamps_without_label_row_ids": unlabelled,
            "label_rows_without_stamps": n_stampless,
            "label_rows_without_stamps_ids": stampless,
        }
        if n_unlabelled:
            log.warning("%s: %d stamp triplet(s) have no row in this CSV and are not read (IDs %s%s)",
                        self.labels_path, n_unlabelled, ", ".join(unlabelled[:LOGGED_IDS]),
                        ", ..." if n_unlabelled > LOGGED_IDS else "")
        if n_stampless:
            log.warning("%s: %d row(s) have no stamps among the inputs and are not read (IDs %s%s)",
                        self.labels_path, n_stampless, ", ".join(stampless[:LOGGED_IDS]),
                        ", ..." if n_stampless > LOGGED_IDS else "")
        self.total = len(self.ids)

    def batches(self) -> Iterator[RawBatch]:
        batcher = TripletBatcher(str(self.labels_path.parent), self.batch_size)
        for id_, class_name, label in zip(self.ids, self.classes.tolist(), self.labels.tolist()):
            triplet = [read_image(path, self.format) for path in self.triplets.paths(id_)]
            yield from batcher.add(triplet, id_, class_name, label)
        yield from batcher.flush()


def detect_image_format(folders: Sequence[Path]) -> str:
    for image_format, suffixes in SUFFIXES.items():
        for folder in folders:
            if folder.is_file() and folder.name.lower().endswith(suffixes):
                return image_format
            if folder.is_dir() and any(next(folder.rglob(f"srch*{s}"), None) for s in suffixes):
                return image_format
    raise InputFileError(folders[0] if folders else Path("."),
                         "DES stamps named srch<ID>.gif / temp<ID>.gif / diff<ID>.gif (or .fits)")


@dataclass
class TripletIndex:
    """Where each ID's three images are, compactly (the real set has 899 k IDs).

    An ID maps to (folder index, file-name suffix); its images are
    ``<folder>/<prefix><ID><suffix>`` for the three prefixes.
    """

    folders: list[str]
    entries: dict[str, tuple[int, str]]

    def paths(self, id_: str) -> list[Path]:
        folder, suffix = self.entries[id_]
        return [Path(self.folders[folder], f"{prefix}{id_}{suffix}") for prefix in PREFIXES]

    def __iter__(self) -> Iterator[str]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, id_: object) -> bool:
        return id_ in self.entries


def _walk(inputs: Sequence[Path]) -> Iterator[tuple[str, list[str]]]:
    """(folder, file names) for every folder under ``inputs``; a file input is its own folder entry."""
    for item in inputs:
        if item.is_dir():
            for folder, folders, names in os.walk(item, onerror=unreadable_folder):
                folders[:] = skip_linked_folders(folder, sorted(folders))
                yield folder, names
        elif item.is_file():
            yield str(item.parent), [item.name]
        else:
            raise InputFileError(item, "an existing file or folder of DES stamps")


def find_triplets(inputs: Sequence[Path], image_format: str, ignored: IgnoredFiles | None = None,
                  skip: set[Path] = frozenset()) -> TripletIndex:
    """Index of complete triplets, sorted by ID; an ID lacking one of its images is an error naming it."""
    suffixes = SUFFIXES[image_format]
    folders: list[str] = []
    found: dict[str, list] = {}  # ID -> [folder index, suffix, bit mask of the prefixes seen]
    for folder, names in _walk(inputs):
        index = len(folders)
        folders.append(folder)
        for name in names:
            match = _NAME.match(name)
            if not match or not name.lower().endswith(suffixes):
                if ignored is not None and Path(folder, name) not in skip:
                    ignored.add(os.path.join(folder, name))
                continue
            prefix, id_, suffix = match.groups()
            bit = PREFIX_BITS[prefix]
            entry = found.setdefault(id_, [index, suffix, 0])
            if entry[0] != index or entry[1] != suffix or entry[2] & bit:
                raise InputFileError(
                    Path(folder, name),
                    "each image of a DES triplet once, the three side by side in one folder with one suffix; "
                    f"this ID already has {', '.join(_prefixes(entry[2]))} images ({entry[1]}) in {folders[entry[0]]}",
                    f"ID {id_}",
                )
            entry[2] |= bit
    for id_, (index, suffix, mask) in found.items():
        missing = [p for p in PREFIXES if p not in _prefixes(mask)]
        if missing:
            present = _prefixes(mask)[0]
            raise InputFileError(Path(folders[index], f"{missing[0]}{id_}{suffix}"),
                                 f"the {missing[0]} image of DES triplet {id_} (found {present}{id_}{suffix})",
                                 f"ID {id_}")
    ordered = sorted(found, key=_id_sort_key)
    return TripletIndex(folders, {id_: (found[id_][0], found[id_][1]) for id_ in ordered})


def _prefixes(mask: int) -> list[str]:
    return [p for p in PREFIXES if mask & PREFIX_BITS[p]]


def _id_sort_key(id_: str) -> tuple[int, str]:
    return (int(id_), "") if id_.isdigit() else (1 << 62, id_)
