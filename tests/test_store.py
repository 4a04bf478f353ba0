"""Parquet survey store: schema, round trip, row groups, atomic writes."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rbda.errors import InputFileError
from rbda.ingest.store import SCHEMA, SurveyWriter, iter_row_groups, load_survey, read_metadata, write_survey


def rows(n: int, seed: int = 0):
    gen = np.random.default_rng(seed)
    stamps = gen.normal(size=(n, 3, 21, 21)).astype(np.float32)
    labels = gen.integers(0, 2, n).astype(np.int8)
    classes = np.where(labels == 1, "kast", "burn")
    ids = np.array([f"id-{i}" for i in range(n)])
    return stamps, labels, classes, ids


def test_round_trip_and_schema(tmp_path):
    stamps, labels, classes, ids = rows(1000)
    path = tmp_path / "atlas.parquet"
    write_survey(path, "atlas", stamps, labels, classes, ids, {"stamp_size": 21})
    schema = pq.read_schema(path)
    assert schema.remove_metadata().equals(SCHEMA)
    assert schema.field("stamp").type.list_size == 1323 and schema.field("stamp").type.value_type == pa.float32()
    survey = load_survey(path)
    assert survey.name == "atlas" and len(survey) == 1000
    assert survey.stamps.dtype == np.float32 and survey.stamps.flags.c_contiguous
    np.testing.assert_array_equal(survey.stamps, stamps)  # C order: template, science, difference
    np.testing.assert_array_equal(survey.labels, labels)
    assert survey.labels.dtype == np.int8
    np.testing.assert_array_equal(survey.ids, ids)
    np.testing.assert_array_equal(survey.classes, classes)
    assert read_metadata(path)["rbda.preprocessing"] == {"stamp_size": 21}


def test_written_in_row_groups_as_data_arrives(tmp_path):
    path = tmp_path / "s.parquet"
    parts = [rows(700, seed) for seed in range(5)]
    with SurveyWriter(path, "ztf", row_group_rows=1000) as writer:
        for part in parts:
            writer.write(*part)
        assert not path.exists()  # only the temporary file exists while writing
    assert pq.ParquetFile(path).metadata.num_row_groups == 4  # 3500 rows -> 1000, 1000, 1000, 500
    survey = load_survey(path)
    np.testing.assert_array_equal(survey.stamps, np.concatenate([p[0] for p in parts]))
    np.testing.assert_array_equal(survey.ids, np.concatenate([p[3] for p in parts]))
    groups = list(iter_row_groups(path))
    assert [len(g) for g in groups] == [1000, 1000, 1000, 500]
    np.testing.assert_array_equal(np.concatenate([g.stamps for g in groups]), survey.stamps)


def test_failure_leaves_no_file(tmp_path):
    path = tmp_path / "s.parquet"
    with pytest.raises(RuntimeError):
        with SurveyWriter(path, "hits", row_group_rows=10) as writer:
            writer.write(*rows(25))
            raise RuntimeError("reader failed half way")
    assert list(tmp_path.iterdir()) == []


def test_failure_while_finishing_leaves_no_file(tmp_path, monkeypatch):
    import rbda.ingest.store

    def broken_table(*args, **kwargs):
        raise OSError("disk full")

    path = tmp_path / "s.parquet"
    monkeypatch.setattr(rbda.ingest.store, "_table", broken_table)
    with pytest.raises(OSError, match="disk full"):
        with SurveyWriter(path, "hits", row_group_rows=100) as writer:
            writer.write(*rows(25))  # queued; written (and failing) on exit
    assert list(tmp_path.iterdir()) == []


def test_inconsistent_rows_rejected(tmp_path):
    stamps, labels, classes, ids = rows(5)
    with pytest.raises(ValueError):
        with SurveyWriter(tmp_path / "s.parquet", "hits") as writer:
            writer.write(stamps[:4], labels, classes, ids)
    assert list(tmp_path.iterdir()) == []


def test_load_rejects_foreign_or_corrupt_files(tmp_path):
    other = tmp_path / "other.parquet"
    pq.write_table(pa.table({"id": ["a"], "label": pa.array([1], pa.int8())}), other)
    with pytest.raises(InputFileError, match="other.parquet.*'class'"):
        load_survey(other)
    corrupt = tmp_path / "corrupt.parquet"
    corrupt.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(InputFileError, match="corrupt.parquet"):
        load_survey(corrupt)
