"""Preprocessing of raw triplets (docs/method.md section 2), vectorised over a batch.

1. filter: a triplet with a non-square image is dropped (and counted);
2. crop: the central 21x21 pixels of each image;
3. normalise: per triplet and channel, mean 0 and standard deviation 1 over
   the *valid* pixels;
4. fill: invalid pixels get the median of the channel's valid pixels (after
   normalisation, so the median of the normalised values); a channel with no
   valid pixel is all 0; a constant channel becomes all 0, never NaN.

A pixel is invalid if it is NaN, +-inf, or a float32 sentinel: ZTF marks bad
pixels with values near +-3.4e38 (float32 max), which are finite.
``|x| >= SENTINEL_ABS`` (1e38) is treated as a sentinel; no astronomical
stamp in these surveys comes near that magnitude.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from rbda.atomic import check_output_path, write_json
from rbda.errors import InputFileError, SettingError
from rbda.progress import Progress
from rbda.ingest.store import SurveyWriter
from rbda.study import CHANNELS, STAMP_SIZE
from rbda.ingest.readers import ClassMap, open_reader
from rbda.ingest.readers.base import NON_SQUARE, RawBatch

log = logging.getLogger("rbda.ingest.preprocess")

SENTINEL_ABS = np.float32(1e38)
#: No preprocessed value exceeds this in magnitude: a channel's n <= STAMP_SIZE**2 valid values, at mean 0
#: and (population) standard deviation 1, lie within sqrt(n - 1) of 0, and the fill is their median or 0;
#: with 1e-3 of it allowed for float32 rounding.
NORMALISED_ABS_BOUND = float(np.sqrt(STAMP_SIZE**2 - 1)) * (1 + 1e-3)
#: Rows processed at once inside a batch (keeps the working set in cache).
BLOCK_ROWS = 1024

#: Version of what :func:`preprocess_triplets` does to a stamp. A model file
#: records the version it was trained with and ``rbda predict`` refuses a model
#: of another version. Bump it (and describe the change in PREPROCESSING) when
#: the crop, the invalid-pixel rule, the normalisation or the fill changes.
PREPROCESSING_VERSION = 1
PREPROCESSING = {
    "version": PREPROCESSING_VERSION,
    "channels": list(CHANNELS),
    "crop": f"central {STAMP_SIZE}x{STAMP_SIZE}, start (H - {STAMP_SIZE}) // 2; non-square stamps dropped",
    "stamp_size": STAMP_SIZE,
    "invalid_pixels": f"NaN, +-inf or |x| >= {float(SENTINEL_ABS):g}",
    "sentinel_abs": float(SENTINEL_ABS),
    "normalisation": "per triplet and channel: mean 0, standard deviation 1 over the valid pixels",
    "fill": "invalid pixels: median of the channel's normalised valid pixels; a channel without valid "
            "pixels, or constant, is all 0",
}


def preprocessing_sha256(settings: dict) -> str:
    """SHA-256 of preprocessing settings (their key-sorted JSON): what compatibility is checked on, so
    that a change of the settings is caught whatever the version number says."""
    import hashlib
    import json

    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


#: :func:`preprocessing_sha256` of this rbda's :data:`PREPROCESSING`.
PREPROCESSING_SHA256 = preprocessing_sha256(PREPROCESSING)


def _count(counter: Counter, values: np.ndarray) -> None:
    """Add the occurrences of each distinct value (vectorised)."""
    distinct, counts = np.unique(values, return_counts=True)
    counter.update(dict(zip(distinct.tolist(), counts.tolist())))


@dataclass
class PreprocessStats:
    """Counts accumulated over all batches of a survey (the JSON report)."""

    read: int = 0
    kept: int = 0
    dropped: Counter = field(default_factory=Counter)
    read_per_class: Counter = field(default_factory=Counter)
    kept_per_class: Counter = field(default_factory=Counter)
    read_per_label: Counter = field(default_factory=Counter)
    kept_per_label: Counter = field(default_factory=Counter)
    invalid_pixels: int = 0
    stamps_with_invalid_pixels: int = 0
    zero_filled_channels: int = 0
    constant_channels: int = 0
    input_shapes: Counter = field(default_factory=Counter)

    def count_read(self, batch: RawBatch) -> None:
        self.read += len(batch)
        _count(self.read_per_class, batch.classes)
        _count(self.read_per_label, batch.labels)
        shape = "x".join(map(str, batch.images.shape[2:])) if batch.drop_reason is None else batch.drop_reason
        self.input_shapes[shape] += len(batch)

    def count_kept(self, classes: np.ndarray, labels: np.ndarray) -> None:
        self.kept += len(classes)
        _count(self.kept_per_class, classes)
        _count(self.kept_per_label, labels)

    def as_dict(self) -> dict:
        def plain(counter: Counter) -> dict:
            return {str(k): int(v) for k, v in sorted(counter.items(), key=lambda kv: str(kv[0]))}

        return {
            "read": self.read,
            "kept": self.kept,
            "dropped": plain(self.dropped),
            "dropped_total": int(sum(self.dropped.values())),
            "per_class": {
                c: {"read": int(self.read_per_class[c]), "kept": int(self.kept_per_class[c])}
                for c in sorted(self.read_per_class)
            },
            "per_label": {
                str(lab): {"read": int(self.read_per_label[lab]), "kept": int(self.kept_per_label[lab])}
                for lab in sorted(self.read_per_label)
            },
            "input_shapes": plain(self.input_shapes),
            "invalid_pixels": self.invalid_pixels,
            "stamps_with_invalid_pixels": self.stamps_with_invalid_pixels,
            "zero_filled_channels": self.zero_filled_channels,
            "constant_channels": self.constant_channels,
        }

    def summary(self) -> str:
        dropped = ", ".join(f"{k} {v}" for k, v in sorted(self.dropped.items())) or "none"
        labels = ", ".join(f"label {k}: {v}" for k, v in sorted(self.kept_per_label.items()))
        return (
            f"read {self.read}, kept {self.kept} ({labels}), dropped: {dropped}; "
            f"invalid pixels {self.invalid_pixels} in {self.stamps_with_invalid_pixels} stamps, "
            f"zero-filled channels {self.zero_filled_channels}"
        )


def centre_crop(images: np.ndarray, size: int = STAMP_SIZE) -> np.ndarray:
    """The central ``size`` x ``size`` pixels of (..., H, W); start at (H - size) // 2."""
    height, width = images.shape[-2:]
    if height < size or width < size:
        raise ValueError(f"cannot crop {height}x{width} images to {size}x{size}")
    top, left = (height - size) // 2, (width - size) // 2
    return images[..., top : top + size, left : left + size]


def valid_mask(pixels: np.ndarray) -> np.ndarray:
    """True where a pixel is finite and not a float32 sentinel (NaN compares False)."""
    return np.abs(pixels) < SENTINEL_ABS


def any_valid(pixels: np.ndarray) -> bool:
    """Whether any pixel is valid (:func:`valid_mask`). The centre pixel, valid in nearly every stamp, is
    looked at first; the whole mask only when it is not."""
    if pixels.size and abs(float(pixels.flat[pixels.size // 2])) < SENTINEL_ABS:
        return True
    return bool(valid_mask(pixels).any())


def normalise_and_fill(pixels: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Normalise (N, C, P) float32 pixels per (row, channel) over valid pixels, fill the rest.

    Returns the filled array (modified in place), a boolean (N, C) of channels
    with no valid pixel and a boolean (N, C) of constant channels.
    """
    n_valid = valid.sum(axis=-1, dtype=np.int32)
    any_invalid = bool((n_valid != pixels.shape[-1]).any())
    if any_invalid:
        np.copyto(pixels, 0.0, where=~valid)
    count = np.maximum(n_valid, 1).astype(np.float32)[..., None]
    mean = pixels.sum(axis=-1, keepdims=True, dtype=np.float64).astype(np.float32) / count
    pixels -= mean
    if any_invalid:
        np.copyto(pixels, 0.0, where=~valid)
    # float64 accumulation: squares of large (but valid) float32 values must not overflow.
    var = np.einsum("ncp,ncp->nc", pixels, pixels, dtype=np.float64)[..., None] / count
    std = np.sqrt(var).astype(np.float32)
    # Constant channel: every valid value equals the first valid one. Its
    # rounding-level variance must not be blown up to +-1 by the division.
    constant = _constant_channels(pixels, valid, std, mean)
    std[constant[..., None]] = 1.0
    pixels /= std
    if constant.any():
        pixels[constant] = 0.0
    no_valid = n_valid == 0
    if any_invalid:
        _fill_invalid_with_median(pixels, valid, n_valid)
    return pixels, no_valid, constant & ~no_valid


def _constant_channels(centred: np.ndarray, valid: np.ndarray, std: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """(N, C) True where all valid pixels are equal (or there are none)."""
    # A spread at float32 rounding level of the mean is no real variation.
    tolerance = 8 * np.finfo(np.float32).eps * np.maximum(np.abs(mean), np.finfo(np.float32).tiny)
    suspects = (std <= tolerance)[..., 0]
    if suspects.any():
        rows = centred[suspects]
        ok = valid[suspects]
        spread = np.where(ok, rows, -np.inf).max(axis=-1) - np.where(ok, rows, np.inf).min(axis=-1)
        spread = np.where(ok.any(axis=-1), spread, 0.0)
        suspects[suspects] = spread <= tolerance[suspects][..., 0]
    return suspects


def _fill_invalid_with_median(pixels: np.ndarray, valid: np.ndarray, n_valid: np.ndarray) -> None:
    """Set invalid pixels to the median of their channel's valid pixels (0 when none)."""
    partial = (n_valid > 0) & (n_valid < pixels.shape[-1])
    if partial.any():
        rows = np.where(valid[partial], pixels[partial], np.nan)
        medians = np.nanmedian(rows, axis=-1, keepdims=True).astype(np.float32)
        pixels[partial] = np.where(valid[partial], pixels[partial], medians)
    # Channels without any valid pixel are already 0 from the masked normalisation.


def preprocess_triplets(batch: RawBatch, stats: PreprocessStats | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Filter, crop, normalise and fill one batch.

    Returns ``(stamps, keep)``: float32 (K, 3, 21, 21) C-contiguous stamps and
    the boolean mask (len(batch),) of the rows they come from. Counts go to
    ``stats`` when given.
    """
    stats = stats if stats is not None else PreprocessStats()
    stats.count_read(batch)
    n = len(batch)
    height, width = batch.images.shape[-2:]
    reason = batch.drop_reason
    if reason is None and height != width:
        reason = NON_SQUARE
    if reason is None and height < STAMP_SIZE:
        reason = "smaller_than_21x21"
    if reason is not None:
        stats.dropped[reason] += n
        return np.empty((0, 3, STAMP_SIZE, STAMP_SIZE), np.float32), np.zeros(n, bool)

    out = np.empty((n, 3, STAMP_SIZE, STAMP_SIZE), dtype=np.float32)
    flat = out.reshape(n, 3, STAMP_SIZE * STAMP_SIZE)
    for start in range(0, n, BLOCK_ROWS):
        stop = min(start + BLOCK_ROWS, n)
        block = flat[start:stop]
        block.reshape(-1, 3, STAMP_SIZE, STAMP_SIZE)[...] = centre_crop(batch.images[start:stop])
        valid = valid_mask(block)
        _, no_valid, constant = normalise_and_fill(block, valid)
        n_invalid = valid.size - int(np.count_nonzero(valid))
        if n_invalid:
            stats.invalid_pixels += n_invalid
            stats.stamps_with_invalid_pixels += int((~valid).any(axis=(1, 2)).sum())
        stats.zero_filled_channels += int(no_valid.sum())
        stats.constant_channels += int(constant.sum())
    keep = np.ones(n, dtype=bool)
    stats.count_kept(batch.classes, batch.labels)
    return out, keep


def compare_with_study(survey: str, stats: PreprocessStats) -> dict | None:
    """Read real/bogus counts next to the study's; flags a full-size set whose real share
    differs, and one whose counts are exactly the study's with real and bogus swapped.

    A swapped mapping is invisible to the share test when the classes are nearly
    balanced (DES: 50.5% real, swapped 49.5%), so the counts are compared too: on a
    full-size set, counts nearer (in total absolute difference) to the swapped
    published counts than to the published counts are a swap, even when a few rows
    differ (an ignored file, a dropped stamp). A survey with equal published counts
    (HiTS) cannot show a swap this way. The published counts are the survey declaration's
    ``study_counts`` (docs/method.md section 1, before filtering); None for a survey without them.
    """
    from rbda.surveys import get_survey

    counts = get_survey(survey).study_counts
    if counts is None:
        return None
    real, bogus = counts
    read_real, read_bogus = int(stats.read_per_label[1]), int(stats.read_per_label[0])
    full_size = stats.read >= 0.9 * (real + bogus)
    share_gap = abs(read_real / max(stats.read, 1) - real / (real + bogus))
    return {"study_real": real, "study_bogus": bogus, "read_real": read_real, "read_bogus": read_bogus,
            "full_size": full_size, "real_share_differs": bool(full_size and share_gap > 0.02),
            "counts_match": (read_real, read_bogus) == (real, bogus),
            "counts_swapped": bool(full_size and real != bogus
                                   and abs(read_real - bogus) + abs(read_bogus - real)
                                   < abs(read_real - real) + abs(read_bogus - bogus))}


def check_label_mapping(survey: str, comparison: dict | None, allow_count_mismatch: bool = False) -> None:
    """A :class:`SettingError` when the read counts are the study's with real and bogus swapped
    (unless ``allow_count_mismatch``: a deliberately different data release)."""
    if comparison is None or not comparison["counts_swapped"] or allow_count_mismatch:
        return
    raise SettingError(
        f"--real-classes/--bogus-classes (config surveys.{survey}.real_classes / bogus_classes)",
        f"a class mapping that gives {survey}'s published counts, {comparison['study_real']:,} real / "
        f"{comparison['study_bogus']:,} bogus (for a different data release: --allow-count-mismatch, "
        f"config surveys.{survey}.allow_count_mismatch: true)",
        f"{comparison['read_real']:,} real / {comparison['read_bogus']:,} bogus, nearer the published counts "
        f"with real and bogus swapped",
    )


def _estimated_total(file_rows: dict[str, int], files: int) -> int | None:
    """Total stamps extrapolated from the files opened so far (readers that cannot count up front)."""
    if not file_rows:
        return None
    return round(sum(file_rows.values()) / len(file_rows) * files)


def convert_survey(survey: str, inputs: Sequence[str | Path], output: str | Path,
                   report_path: str | Path | None = None, fmt: str | None = None,
                   class_map: ClassMap | None = None, progress_log_every: float = 30.0,
                   allow_count_mismatch: bool = False) -> dict:
    """Read a survey's raw files, preprocess them and write the Parquet store (and report).

    Bounded memory: each reader batch is preprocessed and appended as it
    arrives. Returns the report dict. ``output`` appears only once complete
    (any error leaves nothing); the report is written after it, and a report
    that cannot be written removes it again. Both paths are checked before
    anything is read (:func:`check_output_path`): an input, a folder or an
    unwritable place is a :class:`SettingError` naming it.
    """
    output = check_output_path(output, "--output", inputs)
    if report_path is not None:
        report_path = check_output_path(report_path, "--report", inputs)
        if os.path.realpath(report_path) == os.path.realpath(output):
            raise SettingError("--report", "a different file from --output", str(report_path))
    started = time.monotonic()
    reader = open_reader(survey, inputs, fmt, class_map)
    stats = PreprocessStats()
    settings = {"preprocessing_version": PREPROCESSING_VERSION, "preprocessing_sha256": PREPROCESSING_SHA256,
                "stamp_size": STAMP_SIZE, "sentinel_abs": float(SENTINEL_ABS),
                "format": reader.format, "real_classes": sorted(reader.class_map.real),
                "bogus_classes": sorted(reader.class_map.bogus)}
    with SurveyWriter(output, survey, settings) as writer, \
            Progress(reader.total, f"preprocess {survey}", "stamps", log_every=progress_log_every) as progress:
        for batch in reader.batches():
            stamps, keep = preprocess_triplets(batch, stats)
            writer.write(stamps, batch.labels[keep], batch.classes[keep], batch.ids[keep])
            if reader.total is None:
                progress.total = _estimated_total(reader.file_rows, len(reader.files))
            progress.update(stats.read, status=f"kept {stats.kept}")
        if stats.kept == 0:  # raised inside the writer: no empty Parquet is left behind
            dropped = ", ".join(f"{k} {v}" for k, v in sorted(stats.dropped.items()))
            raise InputFileError(Path(inputs[0]), f"{survey} stamps in the {reader.format!r} layout; "
                                                  f"read {stats.read}, kept none" + (f" (dropped: {dropped})" if dropped else ""))
        # inside the writer: a swapped mapping leaves no Parquet behind
        check_label_mapping(survey, compare_with_study(survey, stats), allow_count_mismatch)
    report = {
        "survey": survey,
        "format": reader.format,
        "inputs": [str(Path(p)) for p in inputs],
        "output": str(output),
        "rows_written": writer.rows_written,
        **stats.as_dict(),
        "reader": getattr(reader, "extra_counts", {}),
        "ignored_files": reader.ignored.as_dict(),
        "settings": settings,
        "seconds": round(time.monotonic() - started, 3),
    }
    comparison = report["study_comparison"] = compare_with_study(survey, stats)
    if comparison is not None and comparison["real_share_differs"]:
        log.warning("%s: %d real / %d bogus read, the study has %d / %d: check the class mapping "
                    "(--real-classes/--bogus-classes)", survey, comparison["read_real"],
                    comparison["read_bogus"], comparison["study_real"], comparison["study_bogus"])
    if report_path is not None:
        try:
            write_json(report_path, report)
        except BaseException:
            output.unlink(missing_ok=True)  # no store without its report
            raise
    log.info("%s: %s", survey, stats.summary())
    return report
