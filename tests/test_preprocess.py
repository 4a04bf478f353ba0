"""Preprocessing (docs/method.md section 2) properties on constructed batches."""

from __future__ import annotations

import numpy as np
import pytest

from rbda.ingest.preprocess import NORMALISED_ABS_BOUND, SENTINEL_ABS, PreprocessStats, any_valid, centre_crop, preprocess_triplets, valid_mask
from rbda.ingest.readers.base import MISMATCHED_SHAPES, RawBatch, TripletBatcher

F32_MAX = np.finfo(np.float32).max


def batch(images: np.ndarray, classes=None) -> RawBatch:
    n = len(images)
    classes = np.array(classes if classes is not None else ["real"] * n)
    return RawBatch(images, np.arange(n).astype(str), classes, (classes == "real").astype(np.int8), "test")


def noisy(n: int, size: int, seed: int = 0) -> np.ndarray:
    gen = np.random.default_rng(seed)
    return (gen.normal(100, 15, (n, 3, size, size)) * gen.uniform(0.1, 10, (n, 3, 1, 1))).astype(np.float32)


@pytest.mark.parametrize("size", [21, 51, 61, 63])
def test_shape_finite_and_standardised(size):
    stamps, keep = preprocess_triplets(batch(noisy(50, size)))
    assert stamps.shape == (50, 3, 21, 21) and stamps.dtype == np.float32 and stamps.flags.c_contiguous
    assert keep.all()
    assert np.isfinite(stamps).all()
    np.testing.assert_allclose(stamps.mean(axis=(2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(stamps.std(axis=(2, 3)), 1, atol=1e-4)


def test_no_preprocessed_value_exceeds_the_normalised_bound():
    """NORMALISED_ABS_BOUND (sqrt(440), and float32 rounding) bounds every preprocessed value (rbda predict's oneDNN forward pass
    relies on it), and is reached: one outlier among equal pixels, with or without invalid pixels."""
    images = noisy(40, 21, seed=3)
    images[:10] = 0.0
    images[:10, :, 7, 3] = 1e6  # the extreme: one pixel apart from 440 equal ones
    images[10:20] = np.random.default_rng(4).standard_cauchy((10, 3, 21, 21)).astype(np.float32) * 1e30
    images[20:30, :, :5] = np.nan  # invalid pixels: fewer valid values, the fill their median
    images[20:30, :, 6, 6] = 1e20
    stamps, keep = preprocess_triplets(batch(images))
    assert keep.all()
    assert np.abs(stamps).max() <= NORMALISED_ABS_BOUND
    np.testing.assert_allclose(np.abs(stamps[:10]).max(axis=(2, 3)), np.sqrt(21 * 21 - 1), rtol=1e-5)


def test_crop_is_central():
    images = np.zeros((1, 3, 63, 63), np.float32)
    images[0, :, 21:42, 21:42] = 1.0
    assert centre_crop(images).min() == 1.0
    odd = np.arange(61 * 61, dtype=np.float32).reshape(1, 1, 61, 61)
    assert centre_crop(odd)[0, 0, 0, 0] == odd[0, 0, 20, 20]  # start at (61 - 21) // 2


def test_crop_then_normalise_ignores_outside_pixels():
    images = noisy(4, 63)
    outside_changed = images.copy()
    outside_changed[:, :, :5, :] = np.nan  # outside the central 21x21
    outside_changed[:, :, -3:, :] = 1e6
    a, _ = preprocess_triplets(batch(images))
    b, _ = preprocess_triplets(batch(outside_changed))
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, F32_MAX, -F32_MAX, 1.5e38])
def test_invalid_pixels_ignored_and_median_filled(bad):
    images = noisy(3, 21, seed=1)
    images[1, 2, 3:8, 4:9] = bad
    stats = PreprocessStats()
    stamps, _ = preprocess_triplets(batch(images), stats)
    assert np.isfinite(stamps).all()
    channel = stamps[1, 2]
    invalid = np.zeros((21, 21), bool)
    invalid[3:8, 4:9] = True
    valid_values = channel[~invalid]
    assert abs(valid_values.mean()) < 1e-5 and abs(valid_values.std() - 1) < 1e-4
    np.testing.assert_allclose(channel[invalid], np.median(valid_values), atol=1e-6)
    # same normalisation as if the invalid pixels had never been there
    raw = images[1, 2][~invalid].astype(np.float64)
    np.testing.assert_allclose(valid_values, (raw - raw.mean()) / raw.std(), atol=1e-4)
    assert stats.invalid_pixels == 25 and stats.stamps_with_invalid_pixels == 1
    np.testing.assert_array_equal(stamps[0], preprocess_triplets(batch(images[:1]))[0][0])


@pytest.mark.parametrize("centre", [0.5, np.nan, np.inf, -SENTINEL_ABS])
@pytest.mark.parametrize("elsewhere", [None, 2.0, np.nan])
def test_any_valid_agrees_with_the_mask(centre, elsewhere):
    """any_valid looks at the centre pixel first; where it is invalid, the whole mask decides."""
    image = np.full((5, 7), np.nan, np.float32)
    image[2, 3] = centre
    if elsewhere is not None:
        image[4, 6] = elsewhere
    assert any_valid(image) == bool(valid_mask(image).any())
    assert not any_valid(np.empty((0, 3), np.float32))


def test_sentinel_threshold_is_far_above_real_values():
    assert SENTINEL_ABS == np.float32(1e38)
    images = noisy(1, 21) * np.float32(1e30)  # huge but valid
    stamps, _ = preprocess_triplets(batch(images))
    np.testing.assert_allclose(stamps.std(axis=(2, 3)), 1, atol=1e-3)


def test_channel_without_valid_pixel_is_zero():
    images = noisy(2, 21)
    images[0, 1] = np.nan
    images[1, 0] = F32_MAX
    stats = PreprocessStats()
    stamps, _ = preprocess_triplets(batch(images), stats)
    assert (stamps[0, 1] == 0).all() and (stamps[1, 0] == 0).all()
    assert stats.zero_filled_channels == 2
    assert np.isfinite(stamps).all()


@pytest.mark.parametrize("value", [0.0, 7.3, -1234.5678, 3.0e5])
def test_constant_channel_is_zero_not_nan(value):
    images = noisy(2, 21)
    images[0, 2] = value
    images[1, 0] = value
    images[1, 0, 0, 0] = np.nan  # constant over its valid pixels
    stats = PreprocessStats()
    stamps, _ = preprocess_triplets(batch(images), stats)
    assert (stamps[0, 2] == 0).all() and (stamps[1, 0] == 0).all()
    assert stats.constant_channels == 2
    np.testing.assert_allclose(stamps[0, 0].std(), 1, atol=1e-4)


def test_uint8_input_like_des():
    images = np.random.default_rng(3).integers(0, 256, (5, 3, 51, 51)).astype(np.uint8)
    stamps, _ = preprocess_triplets(batch(images))
    ref = images[:, :, 15:36, 15:36].astype(np.float64)
    ref = (ref - ref.mean(axis=(2, 3), keepdims=True)) / ref.std(axis=(2, 3), keepdims=True)
    np.testing.assert_allclose(stamps, ref, atol=1e-5)


def test_big_endian_input_like_fits():
    images = noisy(3, 61).astype(">f4")
    a, _ = preprocess_triplets(batch(images))
    b, _ = preprocess_triplets(batch(images.astype("<f4")))
    np.testing.assert_array_equal(a, b)


def test_non_square_dropped_and_counted():
    stats = PreprocessStats()
    stamps, keep = preprocess_triplets(batch(noisy(4, 63)[:, :, :, :50], ["real", "bogus", "real", "real"]), stats)
    assert stamps.shape == (0, 3, 21, 21) and not keep.any()
    report = stats.as_dict()
    assert report["dropped"] == {"non_square": 4} and report["kept"] == 0 and report["read"] == 4
    assert report["per_class"]["real"] == {"read": 3, "kept": 0}


def test_batcher_groups_shapes_and_marks_unusable_triplets():
    batcher = TripletBatcher("src", batch_size=100)
    square = [np.zeros((63, 63))] * 3
    out = []
    for i in range(3):
        out += batcher.add(square, f"s{i}", "SN", 1)
    out += batcher.add([np.zeros((63, 63)), np.zeros((63, 63)), np.zeros((63, 40))], "ns", "SN", 1)
    out += batcher.add([np.zeros((63, 63)), np.zeros((51, 51)), np.zeros((63, 63))], "mm", "bogus", 0)
    out += batcher.add([np.zeros((63, 40))] * 3, "edge", "VS", 1)
    out += batcher.flush()
    stats = PreprocessStats()
    kept = sum(preprocess_triplets(b, stats)[1].sum() for b in out)
    assert kept == 3
    assert stats.dropped == {"non_square": 2, MISMATCHED_SHAPES: 1}


def test_blocks_give_same_result_as_single_rows():
    images = noisy(1500, 63, seed=5)
    images[::7, 1, 30, 30] = np.nan
    whole, _ = preprocess_triplets(batch(images))
    rows = np.concatenate([preprocess_triplets(batch(images[i : i + 1]))[0] for i in range(0, 1500, 97)])
    np.testing.assert_array_equal(whole[::97], rows)


def test_square_but_smaller_than_crop_dropped_and_counted():
    stats = PreprocessStats()
    stamps, keep = preprocess_triplets(batch(noisy(3, 15)), stats)
    assert len(stamps) == 0 and not keep.any()
    assert stats.dropped == {"smaller_than_21x21": 3}


def test_study_comparison_flags_an_inverted_mapping_on_a_full_size_set():
    from collections import Counter

    from rbda.ingest.preprocess import compare_with_study

    stats = PreprocessStats(read=3678, read_per_label=Counter({1: 1178, 0: 2500}))
    assert not compare_with_study("atlas", stats)["real_share_differs"]
    inverted = PreprocessStats(read=3678, read_per_label=Counter({1: 2500, 0: 1178}))
    assert compare_with_study("atlas", inverted)["real_share_differs"]
    small = PreprocessStats(read=300, read_per_label=Counter({1: 200, 0: 100}))
    assert compare_with_study("atlas", small) == {
        "study_real": 1178, "study_bogus": 2500, "read_real": 200, "read_bogus": 100,
        "full_size": False, "real_share_differs": False, "counts_match": False, "counts_swapped": False}


def test_a_swapped_des_mapping_is_an_error_naming_survey_setting_and_counts():
    from collections import Counter

    from rbda.errors import SettingError
    from rbda.ingest.preprocess import check_label_mapping, compare_with_study

    right = compare_with_study("des", PreprocessStats(read=898_963, read_per_label=Counter({1: 454_092, 0: 444_871})))
    assert right["counts_match"] and not right["counts_swapped"] and not right["real_share_differs"]
    check_label_mapping("des", right)
    swapped = compare_with_study("des", PreprocessStats(read=898_963,
                                                        read_per_label=Counter({1: 444_871, 0: 454_092})))
    assert swapped["counts_swapped"] and not swapped["real_share_differs"]  # the share test misses it
    with pytest.raises(SettingError) as info:
        check_label_mapping("des", swapped)
    message = str(info.value)
    for part in ("des", "--real-classes/--bogus-classes", "surveys.des.real_classes", "454,092 real / 444,871 bogus",
                 "444,871 real / 454,092 bogus", "--allow-count-mismatch"):
        assert part in message, part
    check_label_mapping("des", swapped, allow_count_mismatch=True)  # a different release, on purpose
    # a swap survives a few missing rows (one ignored file): nearer the swapped counts is a swap
    nearly = compare_with_study("des", PreprocessStats(read=898_950, read_per_label=Counter({1: 444_870, 0: 454_080})))
    assert nearly["counts_swapped"]
    # ... and the right mapping with a few rows missing is not
    short = compare_with_study("des", PreprocessStats(read=898_950, read_per_label=Counter({1: 454_080, 0: 444_870})))
    assert not short["counts_swapped"]
    check_label_mapping("des", short)
    # a small demo-sized set is never judged against the published counts
    small = compare_with_study("des", PreprocessStats(read=2_000, read_per_label=Counter({1: 990, 0: 1_010})))
    assert not small["counts_swapped"]
    hits = compare_with_study("hits", PreprocessStats(read=1_437_684, read_per_label=Counter({1: 718_842, 0: 718_842})))
    assert not hits["counts_swapped"]  # equal counts: a swap cannot be seen
    check_label_mapping("hits", hits)
