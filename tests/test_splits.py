"""Splits, nested shots, validation shots, unlabelled set, split files."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rbda.errors import InputFileError, RbdaError
from rbda.ingest.splits import (Split, labelled_shots, load_split, make_split, save_split, unlabelled_rest,
                         validation_shots)


@pytest.fixture
def labels():
    # imbalanced, shuffled: 300 real, 700 bogus
    rng = np.random.default_rng(0)
    return rng.permutation(np.r_[np.ones(300, np.int8), np.zeros(700, np.int8)])


def test_split_is_stratified_disjoint_and_covering(labels):
    split = make_split(labels, "ztf", 3, seed=11)
    parts = [split.train, split.val, split.test]
    assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(labels.size))
    for part in parts:
        assert part.dtype == np.int64 and np.all(np.diff(part) > 0)
    for cls, n in ((1, 300), (0, 700)):
        assert (labels[split.val] == cls).sum() == round(0.1 * n)
        assert (labels[split.test] == cls).sum() == round(0.1 * n)
        assert (labels[split.train] == cls).sum() == n - 2 * round(0.1 * n)
    assert split.n_rows == labels.size


def test_split_is_a_pure_function_of_seed_survey_and_split(labels):
    a = make_split(labels, "ztf", 0, seed=11)
    b = make_split(labels, "ztf", 0, seed=11)
    assert np.array_equal(a.test, b.test) and a.seed == b.seed
    for other in (make_split(labels, "ztf", 1, seed=11), make_split(labels, "des", 0, seed=11),
                  make_split(labels, "ztf", 0, seed=12)):
        assert not np.array_equal(a.test, other.test)


def test_single_class_survey_is_refused():
    with pytest.raises(RbdaError, match="single class"):
        make_split(np.zeros(100, np.int8), "atlas", 0, seed=1)


def test_class_too_small_for_three_parts_is_refused():
    labels = np.r_[np.ones(4, np.int8), np.zeros(100, np.int8)]
    with pytest.raises(RbdaError, match="class 1 has 4 items"):
        make_split(labels, "atlas", 0, seed=1)


def test_unknown_label_values_are_refused():
    with pytest.raises(RbdaError, match=r"found \[2\]"):
        make_split(np.array([0, 1, 2] * 20, np.int8), "atlas", 0, seed=1)


def test_shots_are_nested_balanced_and_from_the_train_part(labels):
    split = make_split(labels, "hits", 0, seed=5)
    previous = np.array([], np.int64)
    for n in (1, 5, 10, 20, 40):
        shots = labelled_shots(split.train, labels, n, seed=5, survey="hits", split=0)
        assert np.isin(shots, split.train).all()
        assert np.bincount(labels[shots], minlength=2).tolist() == [n, n]
        assert np.isin(previous, shots).all(), f"{n}-shot set does not contain the smaller one"
        previous = shots
    again = labelled_shots(split.train, labels, 40, seed=5, survey="hits", split=0)
    assert np.array_equal(previous, again)
    other_split = labelled_shots(split.train, labels, 40, seed=5, survey="hits", split=1)
    assert not np.array_equal(previous, other_split)


def test_more_shots_than_a_class_has_is_an_error(labels):
    split = make_split(labels, "hits", 0, seed=5)
    n_real = int((labels[split.train] == 1).sum())
    with pytest.raises(RbdaError, match=f"asked for {n_real + 1} items of class 1 but the part has only {n_real}"):
        labelled_shots(split.train, labels, n_real + 1, seed=5, survey="hits", split=0)


def test_validation_shots_and_unlabelled_rest(labels):
    split = make_split(labels, "des", 2, seed=5)
    val = validation_shots(split.val, labels, 10, seed=5, survey="des", split=2)
    assert np.isin(val, split.val).all() and np.bincount(labels[val]).tolist() == [10, 10]
    shots = labelled_shots(split.train, labels, 5, seed=5, survey="des", split=2)
    rest = unlabelled_rest(split.train, shots)
    assert rest.size == split.train.size - shots.size
    assert not np.isin(rest, shots).any() and np.isin(rest, split.train).all()


def test_split_file_round_trip_and_row_count_check(tmp_path, labels):
    split = make_split(labels, "des", 0, seed=9)
    path = tmp_path / "split-0.npz"
    save_split(path, split)
    loaded = load_split(path, n_rows=labels.size)
    for part in ("train", "val", "test"):
        assert np.array_equal(loaded.part(part), split.part(part))
    assert (loaded.n_rows, loaded.seed) == (split.n_rows, split.seed)
    with pytest.raises(InputFileError, match="made for 1000 rows"):
        load_split(path, n_rows=999)


def test_bad_split_files_are_named(tmp_path):
    with pytest.raises(InputFileError, match="not found"):
        load_split(tmp_path / "missing.npz")
    overlapping = tmp_path / "overlap.npz"
    np.savez(overlapping, train=np.array([0, 1]), val=np.array([1]), test=np.array([2]),
             n_rows=np.int64(3), seed=np.int64(0))
    with pytest.raises(InputFileError, match="disjoint"):
        load_split(overlapping)
    not_npz = tmp_path / "text.npz"
    not_npz.write_text("hello")
    with pytest.raises(InputFileError, match=str(not_npz.name)):
        load_split(not_npz)
    out_of_range = tmp_path / "range.npz"
    np.savez(out_of_range, train=np.array([0, 5]), val=np.array([1]), test=np.array([2]),
             n_rows=np.int64(3), seed=np.int64(0))
    with pytest.raises(InputFileError, match=r"row indices in \[0, 3\)"):
        load_split(out_of_range)


def test_split_part_names_are_checked(labels):
    with pytest.raises(RbdaError, match="unknown split part"):
        make_split(labels, "des", 0, seed=1).part("validation")
    assert isinstance(make_split(labels, "des", 0, seed=1), Split)


def test_survey_columns_are_read_exactly_across_row_groups(tmp_path):
    import pyarrow.parquet as pq

    from rbda.ingest.store import read_survey_arrays
    from rbda.ingest.store import load_survey
    from train_helpers import write_survey_parquet

    path = write_survey_parquet(tmp_path, "ztf", 50, seed=3, real_fraction=0.3)
    chunked = tmp_path / "chunked.parquet"
    pq.write_table(pq.read_table(path), chunked, row_group_size=7)  # many chunks, non-zero offsets
    reference = load_survey(path)
    stamps, labels = read_survey_arrays(chunked, "ztf")
    assert np.array_equal(stamps, reference.stamps) and np.array_equal(labels, reference.labels)
    assert stamps.flags.c_contiguous
    # channels-last: the same values, filled as (N, 21, 21, 3) and seen as (N, 3, 21, 21)
    stamps_cl, labels_cl = read_survey_arrays(chunked, "ztf", channels_last=True)
    assert stamps_cl.shape == stamps.shape and np.array_equal(stamps_cl, stamps) and np.array_equal(labels_cl, labels)
    assert torch.from_numpy(stamps_cl).is_contiguous(memory_format=torch.channels_last)
    assert read_survey_arrays(chunked, "ztf", stamps=False)[0] is None
    with pytest.raises(InputFileError, match="holds survey 'ztf'"):
        read_survey_arrays(path, "des")
    with pytest.raises(InputFileError, match="not found"):
        read_survey_arrays(tmp_path / "absent.parquet", "ztf")
    text = tmp_path / "text.parquet"
    text.write_text("not parquet")
    with pytest.raises(InputFileError, match="Parquet"):
        read_survey_arrays(text, "ztf")
