"""The memory estimate behind the training jobs' mem_mb."""

from __future__ import annotations

import math

import pytest

from rbda.errors import InputFileError
from rbda.resources import BYTES_PER_STAMP, PROCESS_MB, training_mem_mb
from rbda.ingest.store import survey_rows
from train_helpers import write_survey_parquet


def test_memory_grows_with_the_surveys_rows_above_the_floor(tmp_path):
    des = write_survey_parquet(tmp_path, "des", 300, seed=1)
    hits = write_survey_parquet(tmp_path, "hits", 200, seed=2)
    assert survey_rows(des) == 300
    estimate = PROCESS_MB + math.ceil(1.1 * 500 * BYTES_PER_STAMP / 2**20)
    assert training_mem_mb([des, hits], floor_mb=100) == estimate
    assert training_mem_mb([des, hits], floor_mb=8000) == 8000  # the configured value is a floor


def test_floor_while_an_input_is_not_made_yet(tmp_path):
    des = write_survey_parquet(tmp_path, "des", 300, seed=1)
    assert training_mem_mb([des, tmp_path / "hits.parquet"], floor_mb=100) == 100



@pytest.mark.parametrize("content", [b"", b"PAR1 truncated"])
def test_an_unreadable_survey_is_an_error_naming_it(tmp_path, content):
    des = write_survey_parquet(tmp_path, "des", 300, seed=1)
    broken = tmp_path / "hits.parquet"
    broken.write_bytes(content)
    with pytest.raises(InputFileError, match="hits.parquet.*Parquet survey file"):
        training_mem_mb([des, broken], floor_mb=100)
