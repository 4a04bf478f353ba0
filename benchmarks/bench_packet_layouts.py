"""Rubin/LSST packets beside ZTF's: alerts/s of `rbda predict`, one packet per file, on one core.

Input: the real packets of ``../shared/real-samples/`` -- ZTF's ``ztf_avro/*.avro`` (Avro container
files, snappy, ``{fileName, stampData}`` gzip FITS cutouts, 63x63) and Rubin's
``lsst_avro/*.avro`` (Confluent wire format, schema 9.0 by id from lsst-alert-packet's schema files,
plain three-HDU FITS cutouts, 30x30) -- each copied to ``--files`` files of one packet, as brokers
archive them. The model is an untrained baseline network (speed does not depend on the weights).

Measured in one process, one thread, each layout on its own folder, alternating which runs first:

* read   -- :class:`rbda.alerts.packets.AlertReader` alone (framing, decoding the declared fields,
            cutouts to triplets), alerts/s;
* end to end -- :func:`rbda.alerts.predict.predict_files` (read, preprocess, infer, write Parquet), alerts/s,
            after one warm-up run (so without the process start-up and imports).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_packet_layouts.py [--files 2000]

Needs the real samples and lsst-alert-packet; says so and exits 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REAL = Path(__file__).resolve().parents[2] / "shared" / "real-samples"


def copies(samples: list[Path], folder: Path, n: int) -> Path:
    """``n`` one-packet files cycling over ``samples`` (each a one-packet file already)."""
    folder.mkdir(parents=True)
    for i in range(n):
        shutil.copyfile(samples[i % len(samples)], folder / f"{i:06d}.avro")
    return folder


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=2_000)
    parser.add_argument("--samples", type=Path, default=REAL)
    parser.add_argument("--repeats", type=int, default=2, help="runs per layout and measure (best kept)")
    args = parser.parse_args()

    import torch

    from rbda.alerts.layouts import package_folder
    from rbda.alerts.packets import AlertReader
    from rbda.alerts.predict import predict_files
    from rbda.learn.models import StampClassifier, save_model_file

    ztf = sorted((args.samples / "ztf_avro").glob("*.avro"))
    rubin = sorted((args.samples / "lsst_avro").glob("*.avro"))
    if not ztf or not rubin or package_folder("lsst.alert.packet") is None:
        print(f"needs the real ZTF and Rubin packets under {args.samples} and lsst-alert-packet installed",
              file=sys.stderr)
        return 1
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        folders = {"ztf": copies(ztf, tmp / "ztf", args.files), "rubin": copies(rubin, tmp / "rubin", args.files)}
        os.sync()  # written to disk before the timing: the kernel's writeback otherwise runs during it
        model = tmp / "model.pt"
        save_model_file(model, StampClassifier("linear"), {"method": "baseline", "source": "ztf", "target": None,
                                                           "split": 0, "shots": None, "lambda": None, "seed": 0})
        for folder in folders.values():  # warm-up: imports, schema files, the model
            predict_files(model, [folder], tmp / "warm.parquet", threads=1, log_every=1e9, skip_bad=True)
        best: dict[tuple[str, str], float] = {}
        order = list(folders)
        for repeat in range(args.repeats):
            for name in (order if repeat % 2 == 0 else order[::-1]):
                started = time.perf_counter()
                reader = AlertReader([folders[name]])
                alerts = sum(len(batch) for batch in reader.batches())
                rate = alerts / (time.perf_counter() - started)
                best[(name, "read")] = max(best.get((name, "read"), 0.0), rate)
                started = time.perf_counter()
                summary = predict_files(model, [folders[name]], tmp / f"{name}.parquet", threads=1, log_every=1e9)
                rate = summary.scored / (time.perf_counter() - started)
                best[(name, "end to end")] = max(best.get((name, "end to end"), 0.0), rate)
    print(f"{args.files} one-packet files per layout, one thread, best of {args.repeats}")
    print(f"{'layout':8} {'read alerts/s':>14} {'end to end alerts/s':>20}")
    for name in folders:
        print(f"{name:8} {best[(name, 'read')]:14,.0f} {best[(name, 'end to end')]:20,.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
