"""Memory a training job needs, from the surveys it loads (the workflow's ``mem_mb``).

A training process holds every survey it is given in memory (stamps as
float32 tensors, labels twice), plus the interpreter, torch and the model.
Measured on two 200,000-stamp surveys (2.0 GiB of stamps): peak RSS 2.4 GiB,
so about 0.5 GiB beyond the data; the estimate keeps a 10% margin on the
data and 1 GiB for the rest.
"""

from __future__ import annotations

import math
from pathlib import Path

from rbda.ingest.store import STAMP_VALUES, survey_rows

#: bytes per stamp in a training process: float32 stamp, int64 label tensor, int8 label array
BYTES_PER_STAMP = STAMP_VALUES * 4 + 8 + 1
PROCESS_MB = 1024


def training_mem_mb(parquets: list[str | Path], floor_mb: int) -> int:
    """``floor_mb``, or more when the surveys in ``parquets`` need it.

    While an input does not exist yet (planning a run from scratch) the floor
    is returned; Snakemake evaluates resources again when the job is ready.
    """
    if not all(Path(p).is_file() for p in parquets):
        return floor_mb
    rows = [survey_rows(p) for p in parquets]  # an unreadable file: an error naming it
    data_mb = 1.1 * sum(rows) * BYTES_PER_STAMP / 2**20
    return max(floor_mb, PROCESS_MB + math.ceil(data_mb))
