"""Preprocessing benchmark: throughput on one core, and peak memory vs survey size.

1. Throughput of :func:`rbda.ingest.preprocess.preprocess_triplets` on 63x63
   big-endian float32 triplets (ZTF-like, 2% of stamps with a NaN patch),
   one thread, best of ``--repeats``; also the end-to-end ``rbda preprocess``
   rate (read + preprocess + write Parquet) on a synthetic HiTS survey.
2. Peak resident memory of ``rbda preprocess`` (a fresh process each) on a
   synthetic survey and on one ``--factor`` times larger, for the chunked
   HiTS layout and the file-per-stamp DES layout. Bounded memory means the
   ratio stays near 1.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_preprocess.py [--n 20000] [--survey-n 5000] [--factor 10]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from rbda.ingest.preprocess import preprocess_triplets
from rbda.ingest.readers.base import RawBatch
from rbda.ingest.synth import synthesize

# VmHWM (peak resident set of this process image); ru_maxrss would carry the
# parent's peak over the fork + exec.
CHILD = """
import json, re, sys, time
from pathlib import Path
from rbda.ingest.preprocess import convert_survey
start = time.perf_counter()
report = convert_survey(sys.argv[1], [sys.argv[2]], sys.argv[3], progress_log_every=1e9)
print(json.dumps({"kept": report["kept"], "seconds": time.perf_counter() - start,
                  "peak_mib": int(re.search(r"VmHWM:\\s+(\\d+) kB", Path("/proc/self/status").read_text())[1]) / 1024}))
"""


def throughput(n: int, repeats: int) -> float:
    gen = np.random.default_rng(0)
    images = gen.normal(150, 12, (n, 3, 63, 63)).astype(">f4")
    images[::50, :, 25:32, 28:35] = np.nan
    batch = RawBatch(images, np.arange(n).astype(str), np.full(n, "SN"), np.ones(n, np.int8), "bench")
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        preprocess_triplets(batch)
        best = min(best, time.perf_counter() - start)
    return n / best


def convert_in_fresh_process(survey: str, raw: Path, out: Path) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", CHILD, survey, str(raw), str(out)], env=env,
                          check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def machine() -> str:
    import platform

    return (f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"numpy {np.__version__}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20000, help="stamps for the throughput test")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--survey-n", type=int, default=5000,
                        help="stamps in the small survey (above one 4,096-row group, so both sizes fill row groups)")
    parser.add_argument("--factor", type=int, default=10)
    parser.add_argument("--surveys", nargs="+", default=["hits", "des"], choices=["hits", "des"],
                        help="layouts for the memory test (HiTS chunks, DES files)")
    parser.add_argument("--skip-throughput", action="store_true")
    args = parser.parse_args()
    print(f"machine: {machine()}")

    if not args.skip_throughput:
        rate = throughput(args.n, args.repeats)
        print(f"preprocess_triplets, 63x63 float32 input, 1 thread: {rate:,.0f} stamps/s "
              f"(target 20,000; {rate / 20000:.1f}x)")

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        print(f"\npeak memory of rbda preprocess, survey of n vs {args.factor} x n stamps (fresh process each):")
        print(f"{'survey':>7} {'n':>7} {'peak MiB':>9} {'stamps/s':>9} | {'n':>7} {'peak MiB':>9} {'stamps/s':>9} | peak ratio")
        small = args.survey_n
        for survey in args.surveys:
            results = []
            for n in (small, small * args.factor):
                raw = tmp_path / f"{survey}-{n}"
                synthesize(survey, n, seed=1, out=raw)
                results.append((n, convert_in_fresh_process(survey, raw, tmp_path / f"{survey}-{n}.parquet")))
            (n1, a), (n2, b) = results
            print(f"{survey:>7} {n1:>7} {a['peak_mib']:9.0f} {a['kept'] / a['seconds']:9,.0f} | "
                  f"{n2:>7} {b['peak_mib']:9.0f} {b['kept'] / b['seconds']:9,.0f} | {b['peak_mib'] / a['peak_mib']:.2f}")


if __name__ == "__main__":
    main()
