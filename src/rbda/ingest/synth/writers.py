"""Write simulated triplets in each survey's native raw layout (docs/data.md).

* HiTS: ``chunk_<k>.pkl`` pickled dicts (protocol 2, as the Python 2 chunks),
  ``temp_images``/``sci_images``/``diff_images``/``SNR_images`` N x 441, ``labels``, ``SNRs``.
* DES: ``stamps/<night>/{srch,temp,diff}<ID>.gif`` (8-bit) or ``.fits``, and
  ``autoscan_features.3.csv`` (``#`` header lines; ``ID``, ``OBJECT_TYPE``, ...).
* ZTF: ``ztf_stamps.pkl``, a pandas DataFrame (``class``, ``oid``, gzip-FITS
  cutouts), or the dict form (``images`` N x 63 x 63 x 3 science/template/
  difference, ALeRCE integer ``labels``).
* ATLAS: ``atlas_stamps.pkl`` ``{class: {science, difference, ids}}`` or class
  folders of ``<id>_istamp.fits.gz``/``<id>_dstamp.fits.gz``.
"""

from __future__ import annotations

import gzip
import pickle
from functools import lru_cache
from pathlib import Path

import numpy as np

from rbda.ingest.synth.model import Triplets

HITS_CHUNK_ROWS = 1000
LAYOUTS = {"hits": ("chunks",), "des": ("gif", "fits"), "ztf": ("dataframe", "dict"),
           "atlas": ("pickle", "folder")}


@lru_cache(maxsize=64)
def _fits_header(shape: tuple[int, int]) -> bytes:
    from astropy.io import fits

    return fits.PrimaryHDU(np.zeros(shape, dtype=">f4")).header.tostring().encode("ascii")


def fits_bytes(image: np.ndarray) -> bytes:
    """A single-HDU FITS file (float32) holding ``image``; header built by astropy."""
    data = np.ascontiguousarray(image, dtype=">f4").tobytes()
    padding = b"\0" * (-len(data) % 2880)
    return _fits_header(tuple(image.shape)) + data + padding


def write_hits(sim: Triplets, out: Path, rng: np.random.Generator) -> None:
    n = len(sim.classes)
    for k, start in enumerate(range(0, n, HITS_CHUNK_ROWS)):
        part = slice(start, start + HITS_CHUNK_ROWS)
        flat = {key: np.stack(images[part]).reshape(-1, 441).astype(np.float32)
                for key, images in (("temp_images", sim.template), ("sci_images", sim.science),
                                    ("diff_images", sim.difference))}
        noise = np.std(flat["diff_images"], axis=1, keepdims=True) + 1e-6
        chunk = {**flat, "SNR_images": flat["diff_images"] / noise,
                 "labels": np.array(sim.labels[part], dtype=np.int64),
                 "SNRs": np.array(sim.snr[part], dtype=np.float64)}
        with open(out / f"chunk_{k:03d}.pkl", "wb") as fh:
            pickle.dump(chunk, fh, protocol=2)


def write_des(sim: Triplets, out: Path, rng: np.random.Generator, layout: str) -> None:
    from PIL import Image

    first_id = int(rng.integers(1_000_000, 9_000_000))
    ids = np.arange(first_id, first_id + len(sim.classes))
    nights = [f"2013{m:02d}{d:02d}" for m, d in zip(rng.integers(8, 13, 4), rng.integers(1, 29, 4))]
    for i, id_ in enumerate(ids.tolist()):
        folder = out / "stamps" / nights[i % len(nights)]
        folder.mkdir(parents=True, exist_ok=True)
        for prefix, images in (("temp", sim.template), ("srch", sim.science), ("diff", sim.difference)):
            if layout == "gif":
                Image.fromarray(images[i], mode="L").save(folder / f"{prefix}{id_}.gif")
            else:
                (folder / f"{prefix}{id_}.fits").write_bytes(fits_bytes(images[i].astype(np.float32)))
    band = rng.choice(list("griz"), len(ids))
    lines = ["# autoscan features (synthetic survey written by rbda synth)",
             "# OBJECT_TYPE: 0 = not an artefact (fake SN), 1 = artefact",
             "ID,OBJECT_TYPE,BAND,SNR"]
    lines += [f"{id_},{cls},{b},{snr:.3f}" for id_, cls, b, snr in zip(ids, sim.classes, band, sim.snr)]
    (out / "autoscan_features.3.csv").write_text("\n".join(lines) + "\n")


def _ztf_oids(rng: np.random.Generator, n: int) -> list[str]:
    """ZTF-style object ids (``ZTF19abcdefg``), unique."""
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    years = rng.integers(18, 23, n)
    tails = rng.choice(letters, (n, 7))
    oids, seen = [], set()
    for i, (year, tail) in enumerate(zip(years, tails)):
        oid = f"ZTF{year}{''.join(tail)}"
        oid = oid if oid not in seen else f"{oid}{i}"
        seen.add(oid)
        oids.append(oid)
    return oids


def write_ztf(sim: Triplets, out: Path, rng: np.random.Generator, layout: str) -> None:
    n = len(sim.classes)
    oids = _ztf_oids(rng, n)
    if layout == "dict":
        from rbda.ingest.readers.ztf import ALERCE_CLASSES

        square = [i for i in range(n) if sim.science[i].shape[0] == sim.science[i].shape[1]]
        images = np.stack([np.stack([sim.science[i], sim.template[i], sim.difference[i]], axis=-1) for i in square])
        labels = np.array([ALERCE_CLASSES.index(sim.classes[i]) for i in square], dtype=np.int64)
        content = {"images": images.astype(np.float32), "labels": labels,
                   "features": np.zeros((len(square), 0)), "ids": np.array([oids[i] for i in square])}
        with open(out / "ztf_stamps.pkl", "wb") as fh:
            pickle.dump(content, fh, protocol=4)
        return
    import pandas as pd

    def column(images: list[np.ndarray]) -> list[bytes]:
        return [gzip.compress(fits_bytes(im), compresslevel=1, mtime=0) for im in images]

    frame = pd.DataFrame({"class": sim.classes, "oid": oids, "cutoutScience": column(sim.science),
                          "cutoutTemplate": column(sim.template), "cutoutDifference": column(sim.difference)})
    frame.to_pickle(out / "ztf_stamps.pkl", protocol=4)


def write_atlas(sim: Triplets, out: Path, rng: np.random.Generator, layout: str) -> None:
    names = [f"{int(rng.integers(1, 99)):02d}a{59800 + i // 50}o{i % 10000:04d}c_{i:06d}" for i in range(len(sim.classes))]
    if layout == "folder":
        for name, cls, sci, diff in zip(names, sim.classes, sim.science, sim.difference):
            folder = out / cls
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{name}_istamp.fits.gz").write_bytes(gzip.compress(fits_bytes(sci), compresslevel=1, mtime=0))
            (folder / f"{name}_dstamp.fits.gz").write_bytes(gzip.compress(fits_bytes(diff), compresslevel=1, mtime=0))
        return
    content = {}
    for cls in sorted(set(sim.classes)):
        rows = [i for i, c in enumerate(sim.classes) if c == cls]
        content[cls] = {"science": np.stack([sim.science[i] for i in rows]),
                        "difference": np.stack([sim.difference[i] for i in rows]),
                        "ids": [names[i] for i in rows]}
    with open(out / "atlas_stamps.pkl", "wb") as fh:
        pickle.dump(content, fh, protocol=4)


STAMPS_NPZ_ROWS = 5000


def write_stamps_npz(sim: Triplets, out: Path, declaration) -> None:
    """A declared survey's synthetic stamps in the generic labelled-stamp layout (rbda.ingest.readers.stamps):
    ``part-NNN.npz`` files of ``stamps`` (channels in the declared order), ``classes`` and ``ids``."""
    by_channel = {"template": sim.template, "science": sim.science, "difference": sim.difference}
    stamps = np.stack([np.stack(by_channel[c]) for c in declaration.channels], axis=1).astype(np.float32)
    classes = np.array(sim.classes, dtype=str)
    ids = np.array([f"{declaration.name}-{i:07d}" for i in range(len(classes))])
    out.mkdir(parents=True, exist_ok=True)
    for part, start in enumerate(range(0, len(classes), STAMPS_NPZ_ROWS)):
        rows = slice(start, start + STAMPS_NPZ_ROWS)
        np.savez_compressed(out / f"part-{part:03d}.npz", stamps=stamps[rows], classes=classes[rows], ids=ids[rows])
