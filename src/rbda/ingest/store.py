"""The preprocessed survey store: one Parquet file per survey.

Columns (docs/architecture.md): ``id`` string, ``label`` int8, ``class``
string, ``stamp`` fixed_size_list<float32>[1323] (3 x 21 x 21, channels
template, science, difference, C order). Schema metadata under ``rbda.*``
keys. :class:`SurveyWriter` writes row groups as data arrives, to a temporary
name that is renamed only when the file is complete.

One reader: every read opens the file with :func:`_open_survey` (schema and
survey-name checks, errors naming the file) and reads primitive columns
through views of Arrow buffers (:func:`_column_values`). Training and
evaluation use :func:`read_survey_arrays` (stamps and labels only, one row
group at a time into one array); :func:`load_survey` adds ids and classes.
"""

from __future__ import annotations

import contextlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from rbda import __version__
from rbda.atomic import atomic_path
from rbda.errors import InputFileError
from rbda.study import CHANNELS, STAMP_SIZE

STAMP_SHAPE = (len(CHANNELS), STAMP_SIZE, STAMP_SIZE)
STAMP_VALUES = int(np.prod(STAMP_SHAPE))
ROW_GROUP_ROWS = 4096

SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("label", pa.int8(), nullable=False),
        pa.field("class", pa.string(), nullable=False),
        pa.field("stamp", pa.list_(pa.float32(), STAMP_VALUES), nullable=False),
    ]
)


@dataclass
class SurveyArrays:
    """A whole preprocessed survey held in memory as NumPy arrays."""

    name: str
    stamps: np.ndarray  # float32 (N, 3, 21, 21), C-contiguous
    labels: np.ndarray  # int8 (N,)
    ids: np.ndarray  # str (N,)
    classes: np.ndarray  # str (N,)
    metadata: dict

    def __len__(self) -> int:
        return len(self.labels)


def _schema_with_metadata(survey: str, settings: dict[str, Any]) -> pa.Schema:
    metadata = {
        "rbda.survey": survey,
        "rbda.version": __version__,
        "rbda.preprocessing": json.dumps(settings, sort_keys=True),
    }
    return SCHEMA.with_metadata(metadata)


class SurveyWriter:
    """Append preprocessed rows to ``path`` in row groups; the file appears only on success.

    Use as a context manager; rows are buffered up to ``row_group_rows`` and
    written as one row group, so memory stays bounded whatever the survey size.
    """

    def __init__(self, path: str | Path, survey: str, settings: dict[str, Any] | None = None,
                 row_group_rows: int = ROW_GROUP_ROWS):
        self.path = Path(path)
        self.schema = _schema_with_metadata(survey, settings or {})
        self.row_group_rows = row_group_rows
        self.rows_written = 0
        self._pending: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        self._pending_rows = 0
        self._stack = contextlib.ExitStack()
        self._writer: pq.ParquetWriter | None = None

    def __enter__(self) -> "SurveyWriter":
        tmp = self._stack.enter_context(atomic_path(self.path, suffix=".parquet.tmp"))
        # Stamps are noisy floats: byte-stream-split + zstd shrinks them; dictionary
        # encoding only pays for the repeated class names.
        self._writer = pq.ParquetWriter(tmp, self.schema, compression="zstd", use_dictionary=["class"],
                                        use_byte_stream_split=["stamp.list.element"])
        return self

    def write(self, stamps: np.ndarray, labels: np.ndarray, classes: np.ndarray, ids: np.ndarray) -> None:
        """Queue rows: stamps (K, 3, 21, 21) float32, labels (K,), classes (K,), ids (K,)."""
        k = len(labels)
        if stamps.shape != (k, *STAMP_SHAPE) or len(classes) != k or len(ids) != k:
            raise ValueError(f"inconsistent rows: stamps {stamps.shape}, {k} labels, "
                             f"{len(classes)} classes, {len(ids)} ids")
        start = 0
        while start < k:
            take = min(k - start, self.row_group_rows - self._pending_rows)
            part = slice(start, start + take)
            self._pending.append((stamps[part], labels[part], classes[part], ids[part]))
            self._pending_rows += take
            start += take
            if self._pending_rows == self.row_group_rows:
                self._flush()

    @property
    def rows(self) -> int:
        """Rows written or queued so far."""
        return self.rows_written + self._pending_rows

    def _flush(self) -> None:
        """Write the queued rows as one row group."""
        stamps, labels, classes, ids = (np.concatenate(parts) for parts in zip(*self._pending))
        assert self._writer is not None
        self._writer.write_table(_table(stamps, labels, classes, ids, self.schema))
        self.rows_written += len(labels)
        self._pending, self._pending_rows = [], 0

    def __exit__(self, exc_type, exc, tb) -> None:
        assert self._writer is not None
        try:
            try:
                if exc_type is None and self._pending_rows:
                    self._flush()
            finally:
                self._writer.close()
        except BaseException:
            # Finishing the file failed: atomic_path removes the temporary file.
            self._stack.__exit__(*sys.exc_info())
            raise
        # atomic_path renames the temporary file on success, removes it on error.
        self._stack.__exit__(exc_type, exc, tb)


def _table(stamps: np.ndarray, labels: np.ndarray, classes: np.ndarray, ids: np.ndarray,
           schema: pa.Schema) -> pa.Table:
    flat = pa.array(np.ascontiguousarray(stamps, dtype=np.float32).reshape(-1), type=pa.float32())
    return pa.Table.from_arrays(
        [
            pa.array(np.asarray(ids).astype(str), type=pa.string()),
            pa.array(np.asarray(labels, dtype=np.int8), type=pa.int8()),
            pa.array(np.asarray(classes).astype(str), type=pa.string()),
            pa.FixedSizeListArray.from_arrays(flat, STAMP_VALUES),
        ],
        schema=schema,
    )


def write_survey(path: str | Path, survey: str, stamps: np.ndarray, labels: np.ndarray,
                 classes: np.ndarray, ids: np.ndarray, settings: dict[str, Any] | None = None) -> None:
    """Write a whole in-memory survey (tests, small tools)."""
    with SurveyWriter(path, survey, settings) as writer:
        writer.write(stamps, labels, classes, ids)


def _check_schema(path: Path, schema: pa.Schema) -> None:
    for field in SCHEMA:
        if field.name not in schema.names:
            raise InputFileError(path, f"a preprocessed survey with column {field.name!r} ({field.type})")
        got = schema.field(field.name).type
        if not got.equals(field.type):
            raise InputFileError(path, f"column {field.name!r} of type {field.type}, got {got}")


def _rbda_metadata(schema: pa.Schema) -> dict[str, Any]:
    raw = {k.decode(): v.decode() for k, v in (schema.metadata or {}).items() if k.startswith(b"rbda.")}
    if "rbda.preprocessing" in raw:
        raw["rbda.preprocessing"] = json.loads(raw["rbda.preprocessing"])
    return raw


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The ``rbda.*`` schema metadata of a survey file (survey, version, preprocessing settings)."""
    path = Path(path)
    try:
        schema = pq.read_schema(path)
    except (OSError, pa.ArrowInvalid) as exc:
        raise InputFileError(path, f"a Parquet survey file ({exc})") from None
    return _rbda_metadata(schema)


def _open_survey(path: Path, name: str | None = None) -> tuple[pq.ParquetFile, dict[str, Any]]:
    """Open a survey file, check its columns (and that it holds survey ``name``); return it and its metadata."""
    if not path.is_file():
        raise InputFileError(path, f"preprocessed survey file{f' for {name!r}' if name else ''} not found "
                                   "(run `rbda preprocess`)")
    try:
        parquet = pq.ParquetFile(path)
    except (OSError, pa.ArrowInvalid) as exc:
        raise InputFileError(path, f"a Parquet survey file written by rbda preprocess ({exc})") from None
    _check_schema(path, parquet.schema_arrow)
    metadata = _rbda_metadata(parquet.schema_arrow)
    stored = metadata.get("rbda.survey")
    if name is not None and stored is not None and stored != name:
        raise InputFileError(path, f"the survey {name!r}, but the file holds survey {stored!r}")
    return parquet, metadata


def survey_rows(path: str | Path) -> int:
    """Rows of a survey file, from its Parquet footer (the data is not read)."""
    parquet, _ = _open_survey(Path(path))
    return parquet.metadata.num_rows


def _column_values(path: Path, table, column: str, dtype) -> np.ndarray:
    """A primitive (or fixed-size-list-of-primitive) column as one NumPy array.

    Reads views of the Arrow data buffers chunk by chunk: ``Array.to_numpy``
    would import pandas (~0.4 s in every training process). The caller has
    checked the column's type.
    """
    chunks = []
    for chunk in table.column(column).chunks:
        values = chunk.flatten() if hasattr(chunk, "flatten") else chunk
        if chunk.null_count or values.null_count:
            raise InputFileError(path, f"no missing values in column {column!r}")
        chunks.append(np.frombuffer(values.buffers()[1], dtype=dtype, count=len(values),
                                    offset=values.offset * np.dtype(dtype).itemsize))
    return np.concatenate(chunks) if chunks else np.empty(0, dtype)


def read_survey_arrays(path: str | Path, name: str, stamps: bool = True, channels_last: bool = False):
    """Stamps float32 (N, 3, 21, 21) (None unless ``stamps``) and labels int8 (N,).

    Reads only the columns that splitting and training need, with pyarrow (no
    ids, no pandas: this is on the path of every training process), and checks
    their types and the survey name stored in the file. Stamps are read one
    row group at a time into one preallocated array, so the peak memory is the
    survey's stamps plus one row group (reading the whole column first held
    it twice, and more in Arrow's pool). With ``channels_last`` that array is
    filled in (N, 21, 21, 3) order and returned as an (N, 3, 21, 21) view with
    channels-last strides: the layout training uses on CPU, without a second copy.
    """
    path = Path(path)
    parquet, _ = _open_survey(path, name)
    try:
        # ParquetFile.read without pandas metadata: pq.read_table would import pandas (~0.4 s)
        labels = _column_values(path, parquet.read(columns=["label"], use_pandas_metadata=False), "label", np.int8)
        if not stamps:
            return None, labels
        n = labels.size
        channels, height, width = STAMP_SHAPE
        out = np.empty((n, height, width, channels) if channels_last else (n, *STAMP_SHAPE), np.float32)
        start = 0
        for group in range(parquet.num_row_groups):
            table = parquet.read_row_group(group, columns=["stamp"], use_pandas_metadata=False)
            values = _column_values(path, table, "stamp", np.float32).reshape(-1, *STAMP_SHAPE)
            stop = start + values.shape[0]
            if stop > n:
                raise InputFileError(path, "one stamp per label")
            out[start:stop] = values.transpose(0, 2, 3, 1) if channels_last else values
            start = stop
        if start != n:
            raise InputFileError(path, "one stamp per label")
    except (OSError, pa.ArrowInvalid) as exc:
        raise InputFileError(path, f"a Parquet survey file written by `rbda preprocess` ({exc})") from None
    pa.default_memory_pool().release_unused()  # hand the row groups' buffers back
    return (out.transpose(0, 3, 1, 2) if channels_last else out), labels


def _strings(path: Path, parquet: pq.ParquetFile, column: str) -> np.ndarray:
    try:
        values = parquet.read(columns=[column], use_pandas_metadata=False).column(column)
    except (OSError, pa.ArrowInvalid) as exc:
        raise InputFileError(path, f"a readable Parquet survey file (its data: {exc})") from None
    return values.to_numpy(zero_copy_only=False).astype(str)


def load_survey(path: str | Path) -> SurveyArrays:
    """A whole survey: stamps float32 (N, 3, 21, 21), labels int8, ids and classes str."""
    path = Path(path)
    parquet, metadata = _open_survey(path)
    name = metadata.get("rbda.survey", path.stem)
    stamps, labels = read_survey_arrays(path, name)
    return SurveyArrays(name=name, stamps=stamps, labels=labels, ids=_strings(path, parquet, "id"),
                        classes=_strings(path, parquet, "class"), metadata=metadata)


def iter_row_groups(path: str | Path) -> Iterator[SurveyArrays]:
    """Yield a survey file row group by row group (bounded memory)."""
    path = Path(path)
    parquet, metadata = _open_survey(path)
    name = metadata.get("rbda.survey", path.stem)
    for i in range(parquet.num_row_groups):
        try:
            table = parquet.read_row_group(i, use_pandas_metadata=False)
        except (OSError, pa.ArrowInvalid) as exc:
            raise InputFileError(path, f"a readable Parquet survey file (row group {i}: {exc})") from None
        yield SurveyArrays(
            name=name,
            stamps=_column_values(path, table, "stamp", np.float32).reshape(-1, *STAMP_SHAPE),
            labels=_column_values(path, table, "label", np.int8),
            ids=table.column("id").to_numpy(zero_copy_only=False).astype(str),
            classes=table.column("class").to_numpy(zero_copy_only=False).astype(str),
            metadata=metadata,
        )


def read_labels_and_classes(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Labels int8 (N,) and original class names str (N,) of a survey file, without its stamps."""
    path = Path(path)
    parquet, metadata = _open_survey(path)
    _, labels = read_survey_arrays(path, metadata.get("rbda.survey", path.stem), stamps=False)
    return labels, _strings(path, parquet, "class")


def read_rows(path: str | Path, rows) -> SurveyArrays:
    """The rows ``rows`` (indices into the file, as the splits) of a survey file, in that order.

    Reads only the row groups that hold them (a few stamps of a large survey, e.g. for a gallery).
    """
    path = Path(path)
    parquet, metadata = _open_survey(path)
    rows = np.asarray(rows, dtype=np.int64)
    n = parquet.metadata.num_rows
    if rows.size and (rows.min() < 0 or rows.max() >= n):
        raise InputFileError(path, f"row indices below its {n} rows", f"row {int(rows.max() if rows.max() >= n else rows.min())}")
    starts = np.cumsum([0] + [parquet.metadata.row_group(i).num_rows for i in range(parquet.num_row_groups)])
    groups = np.searchsorted(starts, rows, side="right") - 1
    stamps = np.empty((rows.size, *STAMP_SHAPE), np.float32)
    labels = np.empty(rows.size, np.int8)
    ids = np.empty(rows.size, object)
    classes = np.empty(rows.size, object)
    for group in np.unique(groups):
        try:
            table = parquet.read_row_group(int(group), use_pandas_metadata=False)
        except (OSError, pa.ArrowInvalid) as exc:
            raise InputFileError(path, f"a readable Parquet survey file (row group {group}: {exc})") from None
        where = np.flatnonzero(groups == group)
        local = rows[where] - starts[group]
        stamps[where] = _column_values(path, table, "stamp", np.float32).reshape(-1, *STAMP_SHAPE)[local]
        labels[where] = _column_values(path, table, "label", np.int8)[local]
        ids[where] = np.asarray(table.column("id").to_pylist(), dtype=object)[local]
        classes[where] = np.asarray(table.column("class").to_pylist(), dtype=object)[local]
    return SurveyArrays(name=metadata.get("rbda.survey", path.stem), stamps=stamps, labels=labels,
                        ids=ids.astype(str), classes=classes.astype(str), metadata=metadata)
