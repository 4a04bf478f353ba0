"""`rbda predict` on ZTF alert packets: alerts/s end to end on one core, and each part alone.

Input: the real ZTF packets of ``../shared/real-samples/ztf_avro/`` (those with
square cutouts) repeated into one snappy-compressed Avro file of ``--alerts``
packets with their own schema; where the samples are absent, packets of the
same layout (63x63 gzip-compressed float32 FITS cutouts) are synthesised.
The model is an untrained baseline network (speed does not depend on the weights).

Measured in one process, one thread (``torch.set_num_threads(1)``), each step
on the same packets; the steps after the Avro read one block of :data:`CHUNK`
packets at a time, as the pipeline works, each change beside what it replaced
on the same block (alternating which runs first):

* end to end    -- :func:`rbda.alerts.predict.predict_files` (read, decompress, parse, preprocess, infer, write Parquet);
* avro          -- reading the packets as ``rbda predict`` does (:func:`rbda.alerts.packets.read_container`:
                   snappy blocks, the compiled decoder of :mod:`rbda.alerts.avro_decode` reading only the
                   fields used), beside the same framing with fastavro decoding the projection (before)
                   and fastavro.reader decoding every field;
* gzip          -- inflating the three cutouts as rbda does (:func:`rbda.ingest.fits.decompress`:
                   libdeflate, one call per cutout), beside zlib-ng's streaming inflate (before)
                   and the standard library's zlib;
* fits rbda     -- :func:`rbda.ingest.fits.parse_image` on the three inflated cutouts (the last header
                   read remembered, as consecutive cutouts share it: :func:`rbda.ingest.fits.cached_image_layout`);
* fits astropy  -- ``astropy.io.fits`` on the same bytes (what the readers did before; on a subset);
* preprocess    -- :func:`rbda.ingest.preprocess.preprocess_triplets` on the stacked 63x63 triplets;
* inference     -- :func:`rbda.alerts.predict.score_stamps` as ``rbda predict`` runs it (BatchNorm folded
                   into the layers before it, the forward pass of :func:`rbda.learn.models.scoring_forward`:
                   oneDNN tensors, the default batch), beside the same folded network channels-last
                   (before) and the network unfolded, channels-last;
* write         -- building the output table and writing it as Parquet.

Then the layout ZTF distributes (one packet per file): ``--files`` single-packet
snappy files in one folder, end to end, and reading them with ``fastavro.reader``
(which parses each file's writer schema again) beside rbda's reading of such a file
(:func:`rbda.alerts.packets.packet_file`, then
:func:`~rbda.alerts.packets.read_container_bytes`: the file read whole with os calls, its
blocks parsed in place, the schema parsed once); and the
whole ``rbda predict --threads 1`` process on that folder as a broker runs it
(rbda's modules compiled to bytecode first, as an install leaves them), start-up
included, beside the same command on one of those files (its start-up:
imports, the model, the first packet), which splits the whole process into
start-up and a rate per further packet; from these, the time per packet that
2,000 alerts/s with start-up would need on ``--files`` files.

The core's speed (the study CNN's bare training loop, the unit of the brief's
reference machine) is measured before and after, and the end-to-end figure is
also printed scaled to the reference core, as an estimate.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_predict.py [--alerts 20000]
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import gzip
import io
import os
import platform
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np

REAL = Path(__file__).resolve().parents[2] / "shared" / "real-samples" / "ztf_avro"


def packets_source(samples: Path) -> tuple[dict | None, list[dict], str]:
    """(writer schema, packets with square cutouts, where they come from)."""
    import fastavro

    if samples.is_dir() and list(samples.glob("*.avro")):
        schema, packets = None, []
        for path in sorted(samples.glob("*.avro")):
            with open(path, "rb") as fh:
                reader = fastavro.reader(fh)
                schema = schema or reader.writer_schema
                for p in reader:
                    shape = fits_shape(gzip.decompress(p["cutoutScience"]["stampData"]))
                    if shape[0] == shape[1]:
                        packets.append(p)
        return schema, packets, f"{len(packets)} real ZTF packets from {samples}"
    from astropy.io import fits

    rng = np.random.default_rng(0)
    cutout = {"type": "record", "name": "cutout",
              "fields": [{"name": "fileName", "type": "string"}, {"name": "stampData", "type": "bytes"}]}
    schema = {"type": "record", "name": "alert", "fields": [
        {"name": "objectId", "type": "string"},
        {"name": "candidate", "type": {"type": "record", "name": "candidate", "fields": [
            {"name": "candid", "type": "long"}, {"name": "rb", "type": ["null", "float"]},
            {"name": "drb", "type": ["null", "float"]}]}},
        {"name": "cutoutScience", "type": ["null", cutout]}, {"name": "cutoutTemplate", "type": ["null", "cutout"]},
        {"name": "cutoutDifference", "type": ["null", "cutout"]}]}
    packets = []
    for i in range(20):
        cut = {}
        for key in ("cutoutScience", "cutoutTemplate", "cutoutDifference"):
            buf = io.BytesIO()
            fits.PrimaryHDU(rng.normal(100, 10, (63, 63)).astype(np.float32)).writeto(buf)
            cut[key] = {"fileName": f"{i}_{key}.fits.gz", "stampData": gzip.compress(buf.getvalue())}
        packets.append({"objectId": f"ZTF{i}", "candidate": {"candid": i, "rb": 0.5, "drb": 0.5}, **cut})
    return schema, packets, "20 synthetic ZTF-layout packets (real samples absent)"


def fits_shape(raw: bytes) -> tuple[int, int]:
    from rbda.ingest.fits import parse_image

    return parse_image(raw).shape


#: Packets per block in the parts measured alone (about the pipeline's batch).
CHUNK = 1024
#: The developers' brief's figure for its reference core: the study CNN's bare channels-last training
#: loop, batch 50, one thread, about 4,100 samples/s. The target (2,000 alerts/s per core) is set there.
REFERENCE_LOOP_SAMPLES_PER_S = 4_100


def core_speed(seconds: float = 5.0) -> float:
    """Samples/s of the study CNN's bare channels-last training loop (batch 50, SGD) on this core.

    A shared machine's speed drifts by tens of percent within minutes, so it is measured before
    and after the rest and both are reported.
    """
    import torch
    from torch.nn import functional as F

    from rbda.learn.models import StampClassifier

    torch.manual_seed(0)
    model = StampClassifier("linear").train().to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(50, 3, 21, 21).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 2, (50,))

    def step():
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        optimizer.step()

    for _ in range(5):
        step()
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        step()
        steps += 1
    return steps * 50 / (time.perf_counter() - start)


def timed(fn, *args):
    start = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - start, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=20_000)
    parser.add_argument("--astropy-alerts", type=int, default=1_000, help="subset parsed with astropy")
    parser.add_argument("--samples", type=Path, default=REAL)
    parser.add_argument("--files", type=int, default=2_000, help="single-packet files for the per-file part")
    args = parser.parse_args()

    import fastavro
    import torch

    torch.set_num_threads(1)
    from rbda.ingest.fits import MAX_STAMP_BYTES, astropy_image, decompress, inflate, parse_image
    from rbda.learn.models import StampClassifier, fold_batch_norm, save_model_file, scoring_forward
    from rbda.alerts.predict import DEFAULT_BATCH_SIZE, _table, model_identity, predict_files, score_stamps, write_table
    from rbda.ingest.preprocess import NORMALISED_ABS_BOUND, STAMP_SIZE, preprocess_triplets
    from rbda.ingest.readers.base import RawBatch

    loop_before = core_speed()
    schema, base, origin = packets_source(args.samples)
    n = args.alerts
    packets = []
    for i in range(n):
        p = dict(base[i % len(base)])
        p["candidate"] = {**p["candidate"], "candid": 10**15 + i}
        packets.append(p)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        avro = tmp / "alerts.avro"
        with open(avro, "wb") as fh:
            fastavro.writer(fh, fastavro.parse_schema(schema), packets, codec="snappy")
        os.sync()  # written to disk before the timing: the kernel's writeback otherwise runs during it
        model_path = tmp / "model.pt"
        save_model_file(model_path, StampClassifier("linear"),
                        {"method": "baseline", "source": "ztf", "target": None, "split": 0, "shots": None,
                         "lambda": None, "seed": 0})
        predict_files(model_path, [avro], tmp / "warm.parquet", threads=1, log_every=1e9)  # warm-up
        t_e2e, summary = timed(predict_files, model_path, [avro], tmp / "scores.parquet", 0.5, DEFAULT_BATCH_SIZE, "cpu",
                               None, None, False, 1, 1e9)
        assert summary.scored == n, summary.as_dict()

        from rbda.alerts.packets import AvroSchemas, read_container, packet_file, read_container_bytes

        class FastavroProjection(AvroSchemas):
            """The records decoded by fastavro with the projected reader schema (before the compiled decoder)."""

            def _parse(self, loaded):
                return dataclasses.replace(super()._parse(loaded), decoder=None)

        def read_avro(keep: bool, schemas=AvroSchemas):
            with open(avro, "rb") as fh:
                packets = read_container(fh, schemas())
                return list(packets) if keep else sum(1 for _ in packets)

        def read_avro_all_fields():
            with open(avro, "rb") as fh:
                return sum(1 for _ in fastavro.reader(fh))

        read = read_avro(keep=True)  # the packets the parts below work on (untimed)
        t_avro, _ = timed(read_avro, False)
        t_avro_fastavro, _ = timed(read_avro, False, FastavroProjection)
        t_avro_all, _ = timed(read_avro_all_fields)
        unfolded = StampClassifier("linear").eval().to(memory_format=torch.channels_last)
        folded = fold_batch_norm(copy.deepcopy(unfolded))
        cpu = torch.device("cpu")
        forward, engine = scoring_forward(folded, cpu, "channels_last", STAMP_SIZE, input_bound=NORMALISED_ABS_BOUND)

        def channels_last(net):
            return lambda batch: net(batch.contiguous(memory_format=torch.channels_last))

        forwards = {"inf": forward, "channels-last": channels_last(folded), "unfolded": channels_last(unfolded)}
        keys = ("cutoutTemplate", "cutoutScience", "cutoutDifference")
        t = dict.fromkeys(("gzip", "zlib-ng", "zlib", "fits", "astropy", "pre", "inf", "channels-last", "unfolded"), 0.0)
        p_parts, astropy_done = [], 0
        # The parts one block of packets at a time, as the pipeline works (a block stays in cache;
        # whole-run lists of 10,000 packets' arrays would time memory instead), each change beside
        # what it replaced on the same block, in alternating order.
        for block, start in enumerate(range(0, n, CHUNK)):
            blobs = [p[k]["stampData"] for p in read[start : start + CHUNK] for k in keys]
            steps = [("gzip", lambda: [decompress(b) for b in blobs]),
                     ("zlib-ng", lambda: [inflate(b, 16 + zlib.MAX_WBITS, MAX_STAMP_BYTES) for b in blobs]),
                     ("zlib", lambda: [zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(b) for b in blobs])]
            out = {}
            for name, fn in steps if block % 2 == 0 else steps[::-1]:
                seconds, out[name] = timed(fn)
                t[name] += seconds
            assert out["gzip"] == out["zlib-ng"] == out["zlib"]
            raws = out["gzip"]
            seconds, images = timed(lambda: [parse_image(r) for r in raws])
            t["fits"] += seconds
            if astropy_done < args.astropy_alerts:
                seconds, _ = timed(lambda: [astropy_image(r) for r in raws])
                t["astropy"] += seconds
                astropy_done += len(raws) // 3
            m = len(raws) // 3
            batch = RawBatch(np.stack(images).reshape(m, 3, *images[0].shape), np.arange(start, start + m).astype(str),
                             np.full(m, "alert"), np.full(m, -1, np.int8), "bench")
            seconds, (stamps, *_) = timed(preprocess_triplets, batch)
            t["pre"] += seconds
            for name in list(forwards) if block % 2 == 0 else list(forwards)[::-1]:
                seconds, out[name] = timed(score_stamps, forwards[name], stamps, cpu, DEFAULT_BATCH_SIZE)
                t[name] += seconds
            assert np.allclose(out["inf"], out["unfolded"], atol=1e-5)
            assert np.allclose(out["inf"], out["channels-last"], atol=1e-5)
            p_parts.append(out["inf"])
        p_real = np.concatenate(p_parts)
        t_gzip, t_zlib_ng, t_zlib, t_fits, t_pre, t_inf, t_channels_last, t_unfolded = (
            t[k] for k in ("gzip", "zlib-ng", "zlib", "fits", "pre", "inf", "channels-last", "unfolded"))
        t_astropy = t["astropy"] * n / astropy_done
        columns = {"objectId": np.array([p["objectId"] for p in read], dtype=object),
                   "candid": np.array([str(p["candidate"]["candid"]) for p in read], dtype=object),
                   "layout": np.full(n, "ztf", dtype=object),
                   "rb": np.zeros(n), "drb": np.zeros(n), "padded": np.zeros(n, bool),
                   "file": np.full(n, str(avro), dtype=object),
                   "p_real": p_real, "predicted": (p_real >= 0.5).astype(np.int8)}
        from rbda.learn.models import load_model_file

        identity = model_identity(load_model_file(model_path), 0.5)
        t_write, _ = timed(lambda: write_table(_table([columns], identity, "alerts", ("rb", "drb")),
                                                   tmp / "w.parquet"))

        folder = tmp / "one-per-file"
        folder.mkdir()
        n_files = args.files
        for i in range(n_files):
            with open(folder / f"{i:07d}.avro", "wb") as fh:
                fastavro.writer(fh, fastavro.parse_schema(schema), [packets[i % n]], codec="snappy")
        os.sync()  # (the 10,000 new files' writeback took 0.5 s of a 5 s whole-process run when left to it)
        files = sorted(folder.glob("*.avro"))
        t_files, summary = timed(predict_files, model_path, [folder], tmp / "files.parquet", 0.5, DEFAULT_BATCH_SIZE, "cpu",
                                 None, None, False, 1, 1e9)
        assert summary.scored == n_files, summary.as_dict()

        def fastavro_per_file():
            for path in files:
                with open(path, "rb") as fh:
                    list(fastavro.reader(fh))

        def rbda_per_file():
            schemas = AvroSchemas()
            for path in files:
                list(read_container_bytes(packet_file(path), schemas))

        t_fastavro_files, _ = timed(fastavro_per_file)
        t_rbda_files, _ = timed(rbda_per_file)

        def whole_process(inputs: Path, output: str) -> None:
            subprocess.run([sys.executable, "-m", "rbda.cli", "predict", "--model", str(model_path), "--input",
                            str(inputs), "--output", str(tmp / output), "--threads", "1"],
                           check=True, capture_output=True, env=dict(os.environ, OMP_NUM_THREADS="1"))

        # As installed (pip compiles every module): rbda's bytecode written first, so that no process
        # compiles its sources (PYTHONDONTWRITEBYTECODE, or a first run, would make it do so every time).
        import compileall

        import rbda

        compileall.compile_dir(Path(rbda.__file__).parent, quiet=1)
        loop_process = [core_speed(3.0)]  # the core's speed right around the whole process (it drifts)
        t_process, _ = timed(whole_process, folder, "process.parquet")
        t_start_up, _ = timed(whole_process, files[0], "one.parquet")
        loop_process.append(core_speed(3.0))

    print(f"rbda predict benchmark: {n} alerts ({origin}), one thread; {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, Python {platform.python_version()}, torch {torch.__version__}")
    parts = [("end to end (rbda predict)", t_e2e), ("avro read (rbda, compiled decoder, snappy)", t_avro),
             ("avro read, fastavro's projection (before)", t_avro_fastavro),
             ("avro read, fastavro.reader (all fields)", t_avro_all),
             ("gzip inflate, 3 cutouts (libdeflate)", t_gzip), ("gzip inflate, zlib-ng (before)", t_zlib_ng),
             ("gzip inflate, zlib (stdlib)", t_zlib),
             ("FITS parse, rbda.ingest.fits", t_fits),
             (f"FITS parse, astropy ({args.astropy_alerts} alerts, scaled)", t_astropy),
             ("preprocess (crop, normalise, fill)", t_pre), (f"inference (CNN, BatchNorm folded, {engine})", t_inf),
             ("inference, folded, channels-last (before)", t_channels_last),
             ("inference, BatchNorm not folded, channels-last", t_unfolded),
             ("write Parquet", t_write)]
    print(f"{'step':48s} {'alerts/s':>10s} {'us/alert':>9s} {'share of e2e':>12s}")
    for name, seconds in parts:
        print(f"{name:48s} {n / seconds:10,.0f} {seconds / n * 1e6:9.1f} {seconds / t_e2e:11.1%}")
    measured = dict(parts[1:])
    for before in ("avro read, fastavro.reader (all fields)", "avro read, fastavro's projection (before)",
                   f"FITS parse, astropy ({args.astropy_alerts} alerts, scaled)", "gzip inflate, zlib-ng (before)",
                   "gzip inflate, zlib (stdlib)", "inference, folded, channels-last (before)",
                   "inference, BatchNorm not folded, channels-last"):
        measured.pop(before)
    slowest = max(measured, key=measured.get)
    print(f"fastavro's projection / rbda's compiled decoder Avro read time: {t_avro_fastavro / t_avro:.2f}x")
    print(f"astropy / rbda.ingest.fits FITS parse time: {t_astropy / t_fits:.1f}x")
    print(f"zlib-ng / libdeflate inflate time: {t_zlib_ng / t_gzip:.2f}x; zlib / libdeflate: {t_zlib / t_gzip:.2f}x")
    print(f"channels-last / {engine} inference time (BatchNorm folded): {t_channels_last / t_inf:.2f}x; "
          f"unfolded / folded (channels-last): {t_unfolded / t_channels_last:.2f}x")
    print(f"\none packet per file ({n_files} files, snappy; ZTF's layout):")
    for name, seconds in [("end to end (rbda predict on the folder)", t_files),
                          ("avro read, fastavro.reader per file (all fields)", t_fastavro_files),
                          ("avro read, rbda (whole file, projected)", t_rbda_files)]:
        print(f"{name:48s} {n_files / seconds:10,.0f} {seconds / n_files * 1e6:9.1f}")
    print(f"fastavro.reader / rbda per-file read time: {t_fastavro_files / t_rbda_files:.1f}x")
    per_packet = (t_process - t_start_up) / (n_files - 1)
    budget = (n_files / 2000 - t_start_up) / n_files
    print(f"whole process (rbda predict --threads 1, start-up included): {t_process:.2f} s, "
          f"{n_files / t_process:,.0f} alerts/s; the same command on one file (start-up): {t_start_up:.2f} s; "
          f"each further packet {per_packet * 1e6:.0f} us ({1 / per_packet:,.0f} alerts/s)")
    slow_p, fast_p = sorted(loop_process)
    print(f"  the core around it: the training loop at {slow_p:,.0f}-{fast_p:,.0f} samples/s, "
          f"{slow_p / REFERENCE_LOOP_SAMPLES_PER_S:.2f}-{fast_p / REFERENCE_LOOP_SAMPLES_PER_S:.2f}x the reference; "
          f"scaled to the reference core (an estimate): {n_files / t_process * REFERENCE_LOOP_SAMPLES_PER_S / fast_p:,.0f}"
          f"-{n_files / t_process * REFERENCE_LOOP_SAMPLES_PER_S / slow_p:,.0f} alerts/s with start-up")
    if budget > 0:
        print(f"2,000 alerts/s with start-up on {n_files} files needs at most {budget * 1e6:.0f} us per further "
              f"packet: {per_packet / budget:.2f}x less time than measured")
    else:
        print(f"2,000 alerts/s with start-up is out of reach on {n_files} files: the start-up alone takes over "
              f"{n_files / 2000:.1f} s")
    print(f"bottleneck: {slowest} ({measured[slowest] / t_e2e:.0%} of end to end); "
          f"parts alone sum to {sum(measured.values()) / t_e2e:.0%} of end to end")
    loop_after = core_speed()
    slow, fast = sorted((loop_before, loop_after))
    e2e = n / t_e2e
    print(f"\ncore speed: the study CNN's bare training loop (batch 50, channels-last, one thread) ran at "
          f"{loop_before:,.0f} samples/s before the measurements and {loop_after:,.0f} after, "
          f"{slow / REFERENCE_LOOP_SAMPLES_PER_S:.2f}-{fast / REFERENCE_LOOP_SAMPLES_PER_S:.2f}x the brief's reference "
          f"core ({REFERENCE_LOOP_SAMPLES_PER_S:,}). End to end scaled to that core (an estimate: assumes the whole "
          f"pipeline scales like the loop): {e2e * REFERENCE_LOOP_SAMPLES_PER_S / fast:,.0f} alerts/s by the faster "
          f"loop speed, {e2e * REFERENCE_LOOP_SAMPLES_PER_S / slow:,.0f} by the slower")
    return 0


if __name__ == "__main__":
    sys.exit(main())
