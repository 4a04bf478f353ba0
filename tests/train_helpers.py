"""Small synthetic surveys with a domain shift, for the training tests.

Real alerts: a point source (Gaussian PSF) in the science and difference
images. Bogus alerts: artefacts in the difference image (a dipole from bad
subtraction, or a sharp hot pixel / cosmic ray). Each survey has its own PSF
width, noise level and artefact mix, so a model trained on one survey is
worse on another. Stamps are normalised per channel as preprocessing does.
Its generator is checked in tests/test_train.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SIZE = 21
SURVEY_STYLE = {
    # psf sigma (px), noise, fraction of bogus that are dipoles (rest: hot pixels), real amplitude
    "hits": dict(psf=1.0, noise=0.5, dipole=1.0, amplitude=2.0),
    "des": dict(psf=3.0, noise=0.8, dipole=0.0, amplitude=1.5),
    "ztf": dict(psf=1.5, noise=0.6, dipole=0.5, amplitude=1.5),
    "atlas": dict(psf=2.5, noise=1.0, dipole=0.2, amplitude=1.2),
}


def _blob(sigma: float, dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    y, x = np.mgrid[:SIZE, :SIZE] - SIZE // 2
    return np.exp(-((x[None] - dx[:, None, None]) ** 2 + (y[None] - dy[:, None, None]) ** 2) / (2 * sigma**2))


def make_survey(name: str, n: int, seed: int, real_fraction: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """``n`` normalised stamps (n, 3, 21, 21) float32 and 0/1 labels of survey ``name``."""
    style = SURVEY_STYLE[name]
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < real_fraction).astype(np.int8)
    stamps = rng.normal(0.0, style["noise"], size=(n, 3, SIZE, SIZE))
    # a faint host galaxy in template and science for everybody
    host = 0.5 * _blob(3.5, rng.normal(0, 2, n), rng.normal(0, 2, n))
    stamps[:, 0] += host
    stamps[:, 1] += host
    real = labels == 1
    offsets = rng.normal(0, 0.7, (2, n))
    source = style["amplitude"] * _blob(style["psf"], *offsets)
    stamps[real, 1] += source[real]
    stamps[real, 2] += source[real]
    bogus = np.flatnonzero(~real)
    dipole = rng.random(bogus.size) < style["dipole"]
    shift = rng.choice([-2, 2], size=(2, bogus.size))
    lobe = _blob(style["psf"], offsets[0, bogus], offsets[1, bogus])
    lobe_shifted = _blob(style["psf"], offsets[0, bogus] + shift[0], offsets[1, bogus] + shift[1])
    stamps[bogus[dipole], 2] += 2.5 * (lobe[dipole] - lobe_shifted[dipole])
    hot = bogus[~dipole]
    px = rng.integers(SIZE // 2 - 3, SIZE // 2 + 4, size=(2, hot.size))
    stamps[hot, 2, px[1], px[0]] += 6.0
    mean = stamps.mean(axis=(2, 3), keepdims=True)
    std = stamps.std(axis=(2, 3), keepdims=True)
    return ((stamps - mean) / std).astype(np.float32), labels


def write_survey_parquet(directory: Path, name: str, n: int, seed: int, real_fraction: float = 0.5) -> Path:
    """A preprocessed-survey Parquet file per the contract (via rbda.ingest.store)."""
    from rbda.ingest.store import write_survey

    stamps, labels = make_survey(name, n, seed, real_fraction)
    path = Path(directory) / f"{name}.parquet"
    classes = np.where(labels == 1, "real", "bogus")
    ids = np.array([f"{name}-{i}" for i in range(n)])
    write_survey(path, name, stamps, labels, classes, ids)
    return path


def survey_data(name: str, n: int, seed: int, real_fraction: float = 0.5, base_seed: int = 1, split: int = 0):
    """In-memory :class:`SurveyTensors` (CPU tensors) of a synthetic survey with its split."""
    import torch

    from rbda.learn.data import SurveyTensors
    from rbda.ingest.splits import make_split

    stamps, labels = make_survey(name, n, seed, real_fraction)
    return SurveyTensors(name, torch.from_numpy(stamps), torch.from_numpy(labels.astype(np.int64)), labels,
                      make_split(labels, name, split, base_seed))


def surveys_with_splits(root: Path, names: tuple[str, ...], rows: int) -> dict[str, tuple[Path, str]]:
    """Synthetic surveys written by rbda.ingest.store and split 0 of each made by `rbda split` (seed 7):
    ``{name: (parquet, "NAME=PARQUET:SPLIT" for rbda train --data)}``."""
    from rbda.cli import main

    data = {}
    for i, name in enumerate(names):
        parquet = write_survey_parquet(root, name, rows, seed=i)
        split = Path(root) / f"{name}-split-0.npz"
        assert main(["split", "--data", str(parquet), "--survey", name, "--split", "0", "--seed", "7",
                     "--output", str(split)]) == 0
        data[name] = (parquet, f"{name}={parquet}:{split}")
    return data
