"""Scoring alerts with a trained model (``rbda predict``).

Inputs, one kind per call:

* alert packets (``*.avro`` files or folders of them): :class:`rbda.alerts.packets.AlertReader`;
* preprocessed survey Parquet files (``rbda preprocess`` output): scored as stored;
* raw survey files in any layout a survey reader accepts (``survey`` set).

Raw stamps go through :func:`rbda.ingest.preprocess.preprocess_triplets`, the
function that made the training data; the model must have been trained with
this rbda's preprocessing settings (their SHA-256, checked on load, as is a
preprocessed Parquet input's). No score is a NaN: a preprocessed stamp with a
non-finite pixel, or a row the model scores non-finite, is a bad row (an error,
or listed with ``--skip-bad``); a run that scores nothing fails.
Inference is batched under :func:`torch.inference_mode` in eval mode, BatchNorm
folded, on CPU the backbone on oneDNN tensors where that gives the model's logits
(for batches within preprocessing's range: :func:`rbda.learn.models.scoring_forward`),
else channels-last as in ``rbda evaluate``: scores equal ``rbda evaluate``'s to
float32 rounding. ``p_real`` is the softmax
probability of class 1 (real); ``predicted`` is 1 where ``p_real >=
threshold``. The output table is written only once complete.
"""

from __future__ import annotations

import gc
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from rbda import __version__
from rbda.errors import InputFileError, SettingError

log = logging.getLogger("rbda.alerts.predict")

OUTPUT_SUFFIXES = (".parquet", ".csv")
DEFAULT_THRESHOLD = 0.5
#: Stamps per inference batch: the fastest of 64-512 for the study CNN on one CPU thread
#: with BatchNorm folded (a few % over 128, about 45% over 512; measured as in benchmarks/bench_predict.py).
DEFAULT_BATCH_SIZE = 256
#: Model identity columns of every output row, from the model file.
IDENTITY_COLUMNS = ("model_method", "model_source", "model_target", "model_split", "model_shots",
                    "model_lambda", "model_rbda_version", "model_weights_sha256", "rbda_version", "threshold")
BAD_COLUMNS = ("file", "candid", "reason")


def _identity_types() -> dict:
    import pyarrow as pa

    return {"model_lambda": pa.float64(), "threshold": pa.float64(), "model_split": pa.int64(),
            "model_shots": pa.int64()} | {name: pa.string() for name in
                                          ("model_method", "model_source", "model_target", "model_rbda_version",
                                           "model_weights_sha256", "rbda_version")}


def bad_list_path(output: Path) -> Path:
    """The side file listing skipped bad inputs: ``scores.parquet`` -> ``scores.bad.csv``."""
    return output.with_name(output.name.rsplit(".", 1)[0] + ".bad.csv")


def describe_model(path: str | Path) -> dict:
    """What a model file says about itself (``rbda predict --describe``)."""
    from rbda.learn.models import load_model_file

    payload = load_model_file(path)
    n_parameters = sum(int(t.numel()) for t in payload["state_dict"].values())
    return {"file": str(path), "format": payload["format"], "head_kind": payload["head_kind"],
            "backbone": payload["backbone"], "facts": payload["facts"], "training": payload["training"],
            "preprocessing": payload["preprocessing"],
            "preprocessing_settings": payload.get("preprocessing_settings", {}),
            "preprocessing_sha256": payload.get("preprocessing_sha256"),
            "weights_sha256": payload["weights_sha256"], "tensors": len(payload["state_dict"]),
            "values": n_parameters}


def model_identity(payload: dict, threshold: float) -> dict:
    facts = payload["facts"]
    versions = payload["training"].get("versions", {})
    return {"model_method": facts.get("method"), "model_source": facts.get("source"),
            "model_target": facts.get("target"), "model_split": facts.get("split"),
            "model_shots": facts.get("shots"), "model_lambda": facts.get("lambda"),
            "model_rbda_version": versions.get("rbda"), "model_weights_sha256": payload["weights_sha256"],
            "rbda_version": __version__, "threshold": threshold}


@dataclass
class Scorable:
    """Preprocessed stamps (K, 3, 21, 21) and their K rows of id columns."""

    stamps: np.ndarray
    columns: dict[str, np.ndarray]


@dataclass
class PredictSummary:
    scored: int = 0
    bad: list = field(default_factory=list)
    input_kind: str = ""
    output: str = ""
    bad_list: str | None = None

    def as_dict(self) -> dict:
        return {"scored": self.scored, "bad": len(self.bad), "input_kind": self.input_kind,
                "output": self.output, "bad_list": self.bad_list}


def input_kind(inputs: Sequence[Path], survey: str | None) -> str:
    """``survey`` (raw files of a survey reader), ``parquet`` or ``alerts``."""
    for path in inputs:
        if not path.exists():
            raise InputFileError(path, "an existing file or folder")
    if survey is not None:
        return "survey"
    parquet = [p.is_file() and p.suffix == ".parquet" for p in inputs]
    if all(parquet):
        return "parquet"
    if any(parquet):
        raise SettingError("input", "inputs of one kind: preprocessed Parquet files, or alert packets",
                           [str(p) for p in inputs])
    return "alerts"


def _check_parquet_preprocessing(path: Path, metadata: dict) -> None:
    """A file written by ``rbda preprocess`` must record this rbda's preprocessing settings' hash
    (an earlier rbda's file, without it, is refused: preprocess again)."""
    from rbda.ingest.preprocess import PREPROCESSING_SHA256, PREPROCESSING_VERSION, STAMP_SIZE

    settings = metadata.get("rbda.preprocessing", {})
    if not settings:
        return  # written by rbda.ingest.store directly (not `rbda preprocess`): stamps as stored
    version = settings.get("preprocessing_version", PREPROCESSING_VERSION)
    recorded = settings.get("preprocessing_sha256")
    if version != PREPROCESSING_VERSION or settings.get("stamp_size", STAMP_SIZE) != STAMP_SIZE \
            or recorded != PREPROCESSING_SHA256:
        raise InputFileError(path, f"stamps of this rbda's preprocessing (version {PREPROCESSING_VERSION}, settings "
                                   f"sha256 {PREPROCESSING_SHA256[:12]}...), got version {version!r}, settings sha256 "
                                   f"{str(recorded)[:12]}...; preprocess the raw data again", "rbda.preprocessing")


class ScorableInput:
    """An input of ``rbda predict`` (alerts, a survey's raw files, or Parquet) as :class:`Scorable` blocks;
    collects bad items; counts what it read. Used by ``rbda predict`` and the prediction galleries."""

    def __init__(self, kind: str, inputs: Sequence[Path], survey: str | None, fmt: str | None, skip_bad: bool,
                 packet_layouts: Sequence[Path] = ()):
        self.kind, self.inputs, self.skip_bad = kind, list(inputs), skip_bad
        self.bad: list = []
        self.read = 0
        self.total: int | None = None
        if kind == "alerts":
            from rbda.alerts.layouts import load_layouts
            from rbda.alerts.packets import AlertReader
            from rbda.ingest.preprocess import STAMP_SIZE

            self.reader = AlertReader(self.inputs, skip_bad=skip_bad, layouts=load_layouts(packet_layouts),
                                      crop=STAMP_SIZE)
        elif kind == "survey":
            from rbda.ingest.readers import open_reader

            self.reader = open_reader(survey, self.inputs, fmt)
            self.total = self.reader.total
        else:
            from rbda.ingest.store import survey_rows

            self.total = sum(survey_rows(p) for p in self.inputs)

    def bad_count(self) -> int:
        return len(self.bad) + (len(self.reader.bad) if self.kind == "alerts" else 0)

    def status(self, scored: int) -> str:
        """The progress line's status: alerts scored and refused, and (alert packets) unreadable files apart."""
        if self.kind != "alerts":
            return f"scored {scored}, refused {self.bad_count()}"
        files = self.reader.bad_files
        return f"scored {scored}, refused {self.bad_count() - files}" + (f", unreadable files {files}" if files else "")

    def blocks(self) -> Iterator[Scorable]:
        if self.kind == "parquet":
            yield from self._parquet()
        elif self.kind == "alerts":
            yield from self._alerts()
        else:
            yield from self._survey()

    def _parquet(self) -> Iterator[Scorable]:
        from rbda.ingest.store import iter_row_groups

        for path in self.inputs:
            for group in iter_row_groups(path):
                _check_parquet_preprocessing(path, group.metadata)
                self.read += len(group)
                finite = np.isfinite(group.stamps).all(axis=(1, 2, 3))
                for row in np.flatnonzero(~finite):
                    self.refuse(path, str(group.ids[row]), "a preprocessed stamp of finite pixels (preprocessing "
                                                           "fills invalid ones), got NaN or infinite values")
                yield Scorable(group.stamps[finite], {"id": group.ids[finite].astype(object),
                                                      "class": group.classes[finite].astype(object),
                                                      "label": group.labels[finite]})

    def refuse(self, source: str | Path, item_id: str, reason: str) -> None:
        """A row that cannot be scored: an error, or with ``skip_bad`` a bad entry."""
        from rbda.alerts.packets import BadPacket

        if not self.skip_bad:
            raise InputFileError(source, reason + " (use --skip-bad to list such rows and go on)", f"id {item_id}")
        self.bad.append(BadPacket(str(source), item_id, reason))

    def _alerts(self) -> Iterator[Scorable]:
        from rbda.ingest.preprocess import preprocess_triplets

        for batch in self.reader.batches():
            stamps, keep = preprocess_triplets(batch.raw)
            assert keep.all(), "the alert reader passes only triplets preprocessing keeps"
            self.read = self.reader.read
            yield Scorable(stamps, batch.columns)
        self.read = self.reader.read

    def all_bad(self) -> list:
        return (self.reader.bad if self.kind == "alerts" else []) + self.bad

    def _survey(self) -> Iterator[Scorable]:
        from rbda.ingest.preprocess import PreprocessStats, preprocess_triplets

        stats = PreprocessStats()
        for batch in self.reader.batches():
            stamps, keep = preprocess_triplets(batch, stats)
            self.read += len(batch)
            for row in np.flatnonzero(~keep):
                reason = f"preprocessing drops it: {batch.drop_reason or 'non-square or smaller than the crop'}"
                self.refuse(batch.source, str(batch.ids[row]), reason)
            yield Scorable(stamps, {"id": batch.ids[keep].astype(object), "class": batch.classes[keep].astype(object),
                                    "label": batch.labels[keep]})
            if self.total is None and getattr(self.reader, "file_rows", None):
                from rbda.ingest.preprocess import _estimated_total

                self.total = _estimated_total(self.reader.file_rows, len(self.reader.files))


def score_stamps(forward, stamps: np.ndarray, device, batch_size: int) -> np.ndarray:
    """p_real (float32) of preprocessed (K, 3, 21, 21) stamps, in batches, without autograd; ``forward``: the
    model's forward pass for scoring (:func:`rbda.learn.models.scoring_forward`)."""
    import torch

    out = np.empty(len(stamps), dtype=np.float32)
    tensor = torch.from_numpy(np.ascontiguousarray(stamps, dtype=np.float32))
    with torch.inference_mode():
        for start in range(0, len(stamps), batch_size):
            logits = forward(tensor[start : start + batch_size].to(device))
            out[start : start + len(logits)] = torch.softmax(logits.float(), dim=1)[:, 1].cpu().numpy()
    return out


def _table(parts: list[dict], identity: dict, kind: str, score_columns: Sequence[str] = ()):
    """The output table; alert packets' carry their ids, the layout that read them, the brokers' own scores
    (``score_columns``: ZTF's rb, drb, Rubin's reliability, ...; NaN where a packet's layout has none)."""
    import pyarrow as pa

    from rbda import arrow_columns

    id_columns = (("objectId", pa.string()), ("candid", pa.string()), ("layout", pa.string())) \
        if kind == "alerts" else (("id", pa.string()), ("class", pa.string()), ("label", pa.int8()))
    tail = (*((name, pa.float64()) for name in score_columns), ("padded", pa.bool_()), ("file", pa.string())) \
        if kind == "alerts" else ()
    columns: dict[str, pa.Array] = {}
    n = sum(len(p["p_real"]) for p in parts)

    def gather(name: str, dtype) -> pa.Array:
        values = [p[name] for p in parts]
        return arrow_columns.column(np.concatenate(values) if values else np.empty(0, object), dtype)

    for name, dtype in id_columns:
        columns[name] = gather(name, dtype)
    columns["p_real"] = gather("p_real", pa.float32())
    columns["predicted"] = gather("predicted", pa.int8())
    for name, dtype in tail:
        columns[name] = gather(name, dtype)
    columns.update(identity_columns(identity, n))
    return pa.table(columns)


def identity_columns(identity: dict, n: int) -> dict:
    """The model identity as ``n``-row Arrow columns (built once with n=1 before any scoring, so that a
    model file whose facts do not fit the columns fails first)."""
    from rbda.arrow_columns import constant

    types = _identity_types()
    return {name: constant(value, types[name], n) for name, value in identity.items()}


def write_table(table, path: Path) -> None:
    """Parquet or CSV by suffix, atomically."""
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    from rbda.atomic import atomic_path

    with atomic_path(path, suffix=path.suffix + ".tmp") as tmp:
        if path.suffix == ".parquet":
            pq.write_table(table, tmp)
        else:
            pcsv.write_csv(table, tmp)


class _Collector:
    """How ``rbda predict`` uses the garbage collector: paused through the start-up (importing torch makes
    a few hundred thousand objects and no garbage worth scanning for: 0.9x the import's time), then the
    objects alive when scoring starts frozen out of its full scans (:func:`gc.freeze`: they were scanned
    again and again, 0.93x the whole process on 10,000 one-packet files, docs/benchmarks.md), and all
    handed back after, whatever happens. A caller that froze objects or paused the collector itself keeps
    its own arrangement."""

    def __enter__(self) -> "_Collector":
        self.owner = gc.isenabled() and not gc.get_freeze_count()
        if self.owner:
            gc.disable()
        return self

    def scoring(self) -> None:
        if self.owner:
            gc.freeze()
            gc.enable()

    def __exit__(self, *exc) -> None:
        if self.owner:
            gc.unfreeze()
            gc.enable()


def check_output(path: Path) -> None:
    if path.suffix not in OUTPUT_SUFFIXES:
        raise SettingError("output", f"a file name ending in {' or '.join(OUTPUT_SUFFIXES)}", str(path))


def check_threshold(threshold: float) -> None:
    if not 0.0 <= threshold <= 1.0:
        raise SettingError("threshold", "a probability between 0 and 1", threshold)


def predict_files(model_path: Path, inputs: Sequence[str | Path], output: Path, threshold: float = DEFAULT_THRESHOLD,
                  batch_size: int = DEFAULT_BATCH_SIZE, device: str = "auto", survey: str | None = None,
                  fmt: str | None = None, skip_bad: bool = False, threads: int | None = None,
                  log_every: float = 30.0, packet_layouts: Sequence[str | Path] = ()) -> PredictSummary:
    """Score every alert of ``inputs`` with the model at ``model_path``; write ``output`` (and the bad list).

    Everything that can be checked is checked before the work: the output (not an input, a writable
    file place: :func:`rbda.atomic.check_outputs`), the settings, the model file (integrity, weights,
    facts, preprocessing). ``packet_layouts``: YAML files of packet layouts read before the shipped ones
    (:func:`rbda.alerts.layouts.load_layouts`). A run that scores nothing is an error (with ``skip_bad`` the bad list is
    still written, to say why)."""
    from rbda.atomic import check_outputs

    output = Path(output)
    check_output(output)
    check_threshold(threshold)
    if batch_size < 1:
        raise SettingError("batch-size", "a positive integer", batch_size)
    inputs = [Path(p) for p in inputs]
    if not inputs:
        raise SettingError("input", "at least one file or folder")
    check_outputs({"--output": output, "--output's bad list": bad_list_path(output)},
                  {"--input": inputs, "--model": [model_path]})
    with _Collector() as collector:
        import pyarrow as pa

        from rbda import arrow_columns
        from rbda.ingest.preprocess import NORMALISED_ABS_BOUND, STAMP_SIZE
        from rbda.learn.models import fold_batch_norm, load_model_file, model_from_payload, scoring_forward
        from rbda.progress import Progress
        from rbda.device import configure_torch, resolve_device, resolve_memory_format

        payload = load_model_file(model_path)
        identity = model_identity(payload, threshold)
        try:  # the identity columns of the output, before any scoring
            identity_columns(identity, 1)
        except (TypeError, ValueError, OverflowError) as exc:
            raise InputFileError(model_path, f"model facts that fit the output's identity columns ({exc})",
                                 "facts") from None
        configure_torch(threads, deterministic=False)
        torch_device = resolve_device(device)
        model = fold_batch_norm(model_from_payload(payload).eval()).to(torch_device)
        forward, engine = scoring_forward(model, torch_device, resolve_memory_format("auto", torch_device), STAMP_SIZE,
                                          input_bound=NORMALISED_ABS_BOUND)
        log.info("scoring on %s with the %s forward pass", torch_device, engine)
        kind = input_kind(inputs, survey)
        source = ScorableInput(kind, inputs, survey, fmt, skip_bad, [Path(p) for p in packet_layouts])
        ignored = getattr(getattr(source, "reader", None), "ignored", None)
        if ignored is not None and ignored.count:
            log.warning("%d file(s) of the input folders are not read (not %s), e.g. %s", ignored.count,
                        "alert packets (*.avro)" if kind == "alerts" else "of the layout", ", ".join(ignored.examples[:3]))
        labels_path = getattr(getattr(source, "reader", None), "labels_path", None)
        if labels_path is not None:
            check_outputs({"--output": output, "--output's bad list": bad_list_path(output)},
                          {"labels file": [labels_path]})
        parts: list[dict] = []
        summary = PredictSummary(input_kind=kind, output=str(output))
        id_key = "candid" if kind == "alerts" else "id"
        with Progress(source.total, "predict", "alerts", log_every=log_every) as progress:
            collector.scoring()
            for block in source.blocks():
                p_real = score_stamps(forward, block.stamps, torch_device, batch_size)
                finite = np.isfinite(p_real)
                for row in np.flatnonzero(~finite):
                    source.refuse(block.columns.get("file", [str(model_path)] * len(p_real))[row],
                                  str(block.columns[id_key][row]), "a finite score; the model gave NaN or infinity")
                columns = {name: values[finite] for name, values in block.columns.items()}
                p_real = p_real[finite]
                parts.append({**columns, "p_real": p_real, "predicted": (p_real >= threshold).astype(np.int8)})
                summary.scored += len(p_real)
                progress.total = source.total
                progress.update(source.read, status=source.status(summary.scored))
            progress.done, progress.status = source.read, source.status(summary.scored)
        summary.bad = source.all_bad()
        table = _table(parts, identity, kind, source.reader.score_columns if kind == "alerts" else ())
        if skip_bad:
            bad_path = bad_list_path(output)
            rows = [b.as_dict() for b in summary.bad]
            bad_table = pa.table({c: arrow_columns.column([r[c] for r in rows], pa.string()) for c in BAD_COLUMNS})
            write_table(bad_table, bad_path)
            summary.bad_list = str(bad_path)
            if summary.bad:
                log.warning("%d bad input(s) skipped, listed in %s", len(summary.bad), bad_path)
        if summary.scored == 0:
            listed = f", listed in {summary.bad_list}" if summary.bad_list else ""
            first = f"; the first: {summary.bad[0].file}: {summary.bad[0].reason}" if summary.bad else ""
            raise InputFileError(inputs[0], f"at least one scorable alert in the inputs; none could be scored "
                                            f"({len(summary.bad)} bad{listed}{first}); no scores written")
        try:
            write_table(table, output)
        except BaseException:
            if summary.bad_list:
                Path(summary.bad_list).unlink(missing_ok=True)
            raise
        log.info("scored %d alerts (%d predicted real at threshold %g) -> %s", summary.scored,
                 int(sum(int(p["predicted"].sum()) for p in parts)), threshold, output)
        return summary
