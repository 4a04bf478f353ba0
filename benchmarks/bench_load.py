"""Loading a preprocessed survey for training: peak memory and time, side by side.

Each variant runs in its own fresh process (peak RSS is per process), on the
same Parquet file, in interleaved rounds; the median is reported:

* rbda            -- :func:`rbda.ingest.splits.read_survey_arrays`: one row group at a
                     time into one preallocated array (standard layout);
* rbda CL         -- the same, filled in channels-last order (CPU training's
                     default layout), no second copy;
* whole table     -- the straightforward way: read the stamp and label columns
                     whole with pyarrow, concatenate to one NumPy array, then
                     convert to channels-last with torch (what rbda did before).

Peak memory (the process's VmHWM, Linux) is reported beyond its high-water
mark after its imports, as a multiple of the stamps' size.

    .venv/bin/python benchmarks/bench_load.py [--rows 200000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

CHILD = r"""
import json, sys, time
import numpy as np, pyarrow as pa, pyarrow.parquet as pq, torch
from rbda.ingest.store import read_survey_arrays

def high_water_kb():
    # VmHWM of this process image (getrusage's ru_maxrss keeps the forking parent's peak)
    status = open("/proc/self/status").read()
    return int(status.split("VmHWM:")[1].split()[0])

path, variant = sys.argv[1], sys.argv[2]
before = high_water_kb()
start = time.perf_counter()
if variant == "whole table":
    table = pq.read_table(path, columns=["label", "stamp"])
    stamps = np.concatenate([np.asarray(c.flatten()) for c in table.column("stamp").chunks]).reshape(-1, 3, 21, 21)
    labels = np.concatenate([np.asarray(c) for c in table.column("label").chunks])
    del table
    tensor = torch.from_numpy(stamps).contiguous(memory_format=torch.channels_last)
    del stamps
else:
    stamps, labels = read_survey_arrays(path, "des", channels_last=variant == "rbda CL")
    tensor = torch.from_numpy(stamps)
seconds = time.perf_counter() - start
peak = high_water_kb()
print(json.dumps({"seconds": seconds, "extra_kb": peak - before, "stamp_bytes": tensor.numel() * 4}))
"""

VARIANTS = ("rbda", "rbda CL", "whole table")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    from rbda.ingest.store import write_survey

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "des.parquet"
        rng = np.random.default_rng(0)
        stamps = rng.standard_normal((args.rows, 3, 21, 21), dtype=np.float32)
        labels = (rng.random(args.rows) < 0.5).astype(np.int8)
        write_survey(path, "des", stamps, labels, np.array(["x"] * args.rows), np.arange(args.rows).astype(str))
        del stamps
        results: dict[str, list[dict]] = {v: [] for v in VARIANTS}
        for _ in range(args.rounds):
            for variant in VARIANTS:
                out = subprocess.run([sys.executable, "-c", CHILD, str(path), variant],
                                     check=True, capture_output=True, text=True).stdout
                results[variant].append(json.loads(out))

    stamp_gb = results["rbda"][0]["stamp_bytes"] / 2**30
    print(f"{args.rows:,} stamps ({stamp_gb:.2f} GiB as float32), {args.rounds} rounds (median), one process each")
    print(f"{'variant':12s} {'seconds':>8s} {'peak extra GiB':>15s} {'x stamps':>9s}")
    for variant, runs in results.items():
        seconds = statistics.median(r["seconds"] for r in runs)
        extra = statistics.median(r["extra_kb"] for r in runs) / 2**20
        print(f"{variant:12s} {seconds:8.2f} {extra:15.2f} {extra / stamp_gb:9.2f}")


if __name__ == "__main__":
    main()
