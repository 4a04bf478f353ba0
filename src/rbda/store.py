"""The preprocessed survey store: one Parquet file per survey.

Columns (docs/architecture.md): ``id`` string, ``label`` int8, ``class``
string, ``stamp`` fixed_size_list<float32>[1323] (3 x 21 x 21, channels
template, science, difference, C order). Schema metadata under ``rbda.*``
keys. :class:`SurveyWriter` writes row groups as data arrives, to a temporary
name that is renamed only when the file is complete; :func:`load_survey`
returns the whole survey as contiguous arrays without per-row Python work.
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

STAMP_SHAPE = (3, 21, 21)
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
class Survey:
    """A preprocessed survey held in memory."""

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


def _stamps_from_column(column: pa.ChunkedArray) -> np.ndarray:
    values = [chunk.flatten().to_numpy(zero_copy_only=False) for chunk in column.chunks]
    flat = np.concatenate(values) if values else np.empty(0, np.float32)
    return np.ascontiguousarray(flat, dtype=np.float32).reshape(-1, *STAMP_SHAPE)


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


def _open_survey(path: Path) -> tuple[pq.ParquetFile, dict[str, Any]]:
    """Open a survey file, check its columns, and return it with its ``rbda.*`` metadata."""
    try:
        parquet = pq.ParquetFile(path)
    except (OSError, pa.ArrowInvalid) as exc:
        raise InputFileError(path, f"a Parquet survey file written by rbda preprocess ({exc})") from None
    _check_schema(path, parquet.schema_arrow)
    return parquet, _rbda_metadata(parquet.schema_arrow)


def survey_rows(path: str | Path) -> int:
    """Rows of a survey file, from its Parquet footer (the data is not read)."""
    path = Path(path)
    parquet, _ = _open_survey(path)
    return parquet.metadata.num_rows


def _survey_from_table(table: pa.Table, name: str, metadata: dict[str, Any]) -> Survey:
    return Survey(
        name=name,
        stamps=_stamps_from_column(table.column("stamp")),
        labels=table.column("label").to_numpy().astype(np.int8, copy=False),
        ids=table.column("id").to_numpy(zero_copy_only=False).astype(str),
        classes=table.column("class").to_numpy(zero_copy_only=False).astype(str),
        metadata=metadata,
    )


def load_survey(path: str | Path) -> Survey:
    """Load a preprocessed survey: stamps float32 (N, 3, 21, 21), labels int8, ids and classes str."""
    path = Path(path)
    parquet, metadata = _open_survey(path)
    try:
        table = parquet.read()
    except (OSError, pa.ArrowInvalid) as exc:
        raise InputFileError(path, f"a readable Parquet survey file (its data: {exc})") from None
    return _survey_from_table(table, metadata.get("rbda.survey", path.stem), metadata)


def iter_row_groups(path: str | Path) -> Iterator[Survey]:
    """Yield a survey file row group by row group (bounded memory)."""
    path = Path(path)
    parquet, metadata = _open_survey(path)
    for i in range(parquet.num_row_groups):
        yield _survey_from_table(parquet.read_row_group(i), metadata.get("rbda.survey", path.stem), metadata)
