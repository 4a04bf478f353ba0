"""The hostile corpus: packets, model files, data files and configs built to break rbda.

Each case feeds one hostile input to the command line (in-process, ``rbda.cli.main``) or to the
function the workflow calls, and says what must happen: a clear error (exit 2, a message naming
what was expected, no traceback, no partial output, every input unchanged) or a correct
acceptance (exit 0 and a checked result). Anything else -- a traceback, a hang (each case runs
under an alarm), a NaN score, an input overwritten, a wrong message -- is *bad*.
:func:`test_hostile_corpus` runs them all in seconds, prints the summary (tried / clear error /
correctly accepted / bad) and fails unless bad is 0, naming each bad case. The cases are grouped
by the numbered items of issue 28 ("Nothing lost, nothing silent").
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import fastavro
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from rbda.cli import main
from test_predict import CUTOUT, SCHEMA, fits_blob, packet, write_packets

REPO = Path(__file__).resolve().parents[1]
REAL_SAMPLES = Path(os.environ.get("RBDA_REAL_SAMPLES") or REPO.parent / "shared" / "real-samples")
#: Seconds a case may take before it counts as a hang.
CASE_SECONDS = 20


class Outcome(Exception):
    """How a case ended when it did what it must: ``kind`` "error" or "accepted"."""


@dataclass
class Case:
    item: int
    name: str
    run: Callable[["Corpus"], str]  # returns "error" or "accepted"; raises on anything else


def digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


class Corpus:
    """Shared fixtures of the cases: a tiny model file, a survey Parquet, good packets; helpers."""

    def __init__(self, root: Path, capsys):
        from rbda.ingest.store import write_survey
        from rbda.learn.models import StampClassifier, save_model_file

        self.root, self.capsys = root, capsys
        torch.manual_seed(0)
        self.model = root / "model.pt"
        facts = {"method": "baseline", "source": "des", "target": None, "split": 0, "shots": None,
                 "lambda": None, "seed": 1}
        save_model_file(self.model, StampClassifier("linear").eval(), facts, {"versions": {"rbda": "test"}})
        rng = np.random.default_rng(0)
        self.stamps = rng.normal(size=(12, 3, 21, 21)).astype(np.float32)
        self.parquet = root / "des.parquet"
        write_survey(self.parquet, "des", self.stamps, np.arange(12, dtype=np.int8) % 2, np.array(["a"] * 12),
                     np.array([f"id{i}" for i in range(12)]))
        self.rng = rng
        self.counter = 0

    def path(self, name: str) -> Path:
        self.counter += 1
        folder = self.root / f"case{self.counter}"
        folder.mkdir()
        return folder / name

    def cli(self, argv: list[str], *fragments: str, absent: tuple = (), unchanged: tuple = ()) -> str:
        """Run ``rbda ARGV`` expecting a clear error holding every fragment; 'error'."""
        before = {p: digest(p) for p in unchanged}
        self.capsys.readouterr()
        code = main([str(a) for a in argv])
        err = self.capsys.readouterr().err
        assert code == 2, f"exit {code}, expected 2 (a clear error); stderr: {err[-600:]}"
        assert "Traceback" not in err, err[-600:]
        for fragment in fragments:
            assert fragment in err, f"{fragment!r} not in the message: {err[-600:]}"
        for path in absent:
            assert not Path(path).exists(), f"{path} was written"
            assert not list(Path(path).parent.glob(f".{Path(path).name}*")), f"a temporary of {path} was left"
        for path, value in before.items():
            assert digest(path) == value, f"input {path} was changed"
        return "error"

    def accept(self, argv: list[str]) -> str:
        self.capsys.readouterr()
        code = main([str(a) for a in argv])
        err = self.capsys.readouterr().err
        assert code == 0, f"exit {code}, expected 0; stderr: {err[-600:]}"
        return "accepted"

    def predict(self, inputs, *fragments, skip_bad=False, model=None, **kwargs) -> str:
        out = self.path("scores.parquet")
        argv = ["predict", "--model", model or self.model, "--input", *inputs, "--output", out]
        return self.cli(argv + (["--skip-bad"] if skip_bad else []), *fragments, absent=[out], **kwargs)

    def scores(self, inputs, skip_bad=False) -> dict:
        out = self.path("scores.parquet")
        self.accept(["predict", "--model", self.model, "--input", *inputs, "--output", out]
                    + (["--skip-bad"] if skip_bad else []))
        table = pq.read_table(out).to_pydict()
        assert all(np.isfinite(table["p_real"])), "a NaN or infinite score was written"
        return table

    def packets(self, name: str, packets: list[dict], schema=SCHEMA) -> Path:
        path = self.path(name)
        with open(path, "wb") as fh:
            fastavro.writer(fh, schema, packets)
        return path

    def model_variant(self, name: str, change: Callable[[dict], None]) -> Path:
        payload = torch.load(self.model, weights_only=True)
        change(payload)
        path = self.path(name)
        torch.save(payload, path)
        return path


# ---------------------------------------------------------------- raw Avro packet building

def zigzag(n: int) -> bytes:
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def container(schema: dict, record: bytes, count: int = 1, codec: bytes = b"null") -> bytes:
    """An Avro object container file holding ``record`` (raw bytes) as one block."""
    meta = {"avro.schema": json.dumps(schema).encode(), "avro.codec": codec}
    header = b"Obj\x01" + zigzag(len(meta)) + b"".join(
        zigzag(len(k)) + k.encode() + zigzag(len(v)) + v for k, v in meta.items()) + b"\x00"
    sync = bytes(range(16))
    return header + sync + zigzag(count) + zigzag(len(record)) + record + sync


def raw_file(corpus: Corpus, name: str, raw: bytes) -> Path:
    path = corpus.path(name)
    path.write_bytes(raw)
    return path


# ---------------------------------------------------------------- 1. inputs never overwritten

def _guarded(argv_of: Callable[[Corpus, Path], tuple[list, list]], fragment: str) -> Callable[[Corpus], str]:
    """A command whose output is one of its inputs: refused naming the input's option; inputs unchanged."""
    def run(c: Corpus) -> str:
        argv, inputs = argv_of(c, c.path("x"))
        return c.cli(argv, fragment, unchanged=inputs)
    return run


def _train_args(c: Corpus, **paths) -> tuple[list, list]:
    split = c.root / "split.npz"
    if not split.exists():
        assert main(["split", "--data", str(c.parquet), "--survey", "des", "--split", "0", "--seed", "1",
                     "--output", str(split)]) == 0
    folder = c.path("t")
    folder.parent.mkdir(exist_ok=True)
    argv = ["train", "--method", paths.get("method", "baseline"), "--source", "des", "--data",
            f"des={c.parquet}:{split}", "--split", "0", "--seed", "1",
            "--metrics", paths.get("metrics", folder.with_name("run.json"))]
    for flag in ("model", "init-model", "checkpoint", "target", "shots", "lambda"):
        if flag in paths:
            argv += [f"--{flag}", paths[flag]]
    return argv, [c.parquet, split, c.model]


def _label_csv(near: Path) -> Path:
    path = near.with_name("autoscan_features.3.csv")
    path.write_text("# DES labels\nID,OBJECT_TYPE\n1,0\n")
    return path


def _runs_file(c: Corpus) -> Path:
    path = c.path("run.json")
    path.write_text("{}")
    return path


CASES: list[Case] = [
    Case(1, "predict --output onto its --input Parquet", _guarded(
        lambda c, p: (["predict", "--model", c.model, "--input", c.parquet, "--output", c.parquet], [c.parquet]),
        "--input")),
    Case(1, "predict --output onto a survey's label CSV given as --input", _guarded(
        lambda c, p: (lambda f: (["predict", "--model", c.model, "--survey", "des", "--input", f, f.parent,
                                  "--output", f], [f]))(_label_csv(p)), "--input")),
    Case(1, "train --metrics onto its --data Parquet", _guarded(
        lambda c, p: _train_args(c, metrics=c.parquet), "--data")),
    Case(1, "train --checkpoint onto its --data (was 'delete it to start afresh')", _guarded(
        lambda c, p: _train_args(c, checkpoint=c.parquet), "--data")),
    Case(1, "train --model onto its --init-model", _guarded(
        lambda c, p: _train_args(c, method="finetune", target="des", shots="1", model=c.model,
                                 **{"init-model": c.model}), "--init-model")),
    Case(1, "train --metrics and --model the same file", _guarded(
        lambda c, p: _train_args(c, metrics=p.with_name("same.pt"), model=p.with_name("same.pt")),
        "a different file from --metrics")),
    Case(1, "evaluate --output onto its --model", _guarded(
        lambda c, p: (["evaluate", "--model", c.model, "--data", _train_args(c)[0][6], "--output", c.model],
                      [c.model]), "--model")),
    Case(1, "choose-lambda --output onto one of its --runs", _guarded(
        lambda c, p: (lambda r: (["choose-lambda", "--runs", r, "--target-data", c.parquet, "--target-split",
                                  f"0={c.root / 'split.npz'}", "--output", r], [r]))(_runs_file(c)), "--runs")),
    Case(1, "select-lambda --output onto its --choice", _guarded(
        lambda c, p: (lambda r: (["select-lambda", "--runs", _runs_file(c), "--choice", r, "--output", r], [r]))(
            _runs_file(c)), "--choice")),
    Case(1, "aggregate --out-dir onto its --runs-list file", _guarded(
        lambda c, p: (lambda r: (["aggregate", "--runs-list", r, "--config", _runs_file(c), "--out-dir", r], [r]))(
            _runs_file(c)), "not an input (it is the input --runs-list")),
    Case(1, "preprocess --output onto a label CSV inside its --input folder", _guarded(
        lambda c, p: (lambda f: (["preprocess", "--survey", "des", "--input", f.parent, "--output", f], [f]))(
            _label_csv(p)), "is inside the input --input")),
    Case(1, "predict --output an existing folder, checked before the work", lambda c: c.cli(
        ["predict", "--model", c.model, "--input", c.parquet, "--output", (lambda d: (d.mkdir(), d)[1])(
            c.path("out.parquet"))], "an existing folder")),
    Case(1, "predict --output below a file", lambda c: c.cli(
        ["predict", "--model", c.model, "--input", c.parquet, "--output", c.parquet / "s.csv"], "is a file")),
]


# ---------------------------------------------------------------- 2. packets that could hang or exhaust memory

NULLS_SCHEMA = {"type": "record", "name": "alert", "fields": [
    {"name": "objectId", "type": "string"}, {"name": "junk", "type": {"type": "array", "items": "null"}}]}
EMPTY_RECORDS_SCHEMA = {"type": "record", "name": "alert", "fields": [
    {"name": "junk", "type": {"type": "array", "items": {"type": "record", "name": "e", "fields": []}}}]}
RECURSIVE_SCHEMA = {"type": "record", "name": "node", "fields": [{"name": "next", "type": ["null", "node"]}]}
STRING_SCHEMA = {"type": "record", "name": "alert", "fields": [{"name": "objectId", "type": "string"}]}


def _huge_cutout(c: Corpus, size: int) -> dict:
    return packet(70, c.rng, size=size)


def _bomb(c: Corpus) -> dict:
    bomb = gzip.compress(fits_blob(np.zeros((63, 63)), compress=False) + bytes(20 * 2**20))
    return packet(71, c.rng, cutoutScience={"fileName": "s", "stampData": bomb})


CASES += [
    Case(2, "2**62 nulls declared in 223 bytes (was a minute-long spin)", lambda c: c.predict(
        [raw_file(c, "nulls.avro", container(NULLS_SCHEMA, zigzag(1) + b"a" + zigzag(2**62) + b"\x00"))],
        "arrays hold items of at least one byte")),
    Case(2, "2**62 nulls declared, --skip-bad: nothing scorable fails", lambda c: c.predict(
        [raw_file(c, "nulls.avro", container(NULLS_SCHEMA, zigzag(1) + b"a" + zigzag(2**62) + b"\x00"))],
        "none could be scored", skip_bad=True)),
    Case(2, "2**62 empty records declared", lambda c: c.predict(
        [raw_file(c, "empty.avro", container(EMPTY_RECORDS_SCHEMA, zigzag(2**62) + b"\x00"))],
        "arrays hold items of at least one byte")),
    Case(2, "a recursive schema nested a million deep", lambda c: c.predict(
        [raw_file(c, "deep.avro", container(RECURSIVE_SCHEMA, b"\x02" * 10**6 + b"\x00"))], "recursive")),
    Case(2, "a string declaring 2**62 bytes", lambda c: c.predict(
        [raw_file(c, "string.avro", container(STRING_SCHEMA, zigzag(2**62) + b"abc"))], "an Avro alert file")),
    Case(2, "a block count of 2**62 records, --skip-bad", lambda c: c.predict(
        [raw_file(c, "count.avro", container(STRING_SCHEMA, zigzag(1) + b"a", count=2**62))],
        "declares 4611686018427387904 records in 2 bytes", skip_bad=True)),
    Case(2, "2**62 records of a schema of no bytes", lambda c: c.predict(
        [raw_file(c, "nothing.avro", container({"type": "record", "name": "r", "fields": []}, b"", count=2**62))],
        "records take at least one byte", skip_bad=True)),
    Case(2, "a zstandard block (fastavro would inflate it without a bound)", lambda c: c.predict(
        [raw_file(c, "zstd.avro", container(STRING_SCHEMA, b"\x28\xb5\x2f\xfd" + bytes(20), codec=b"zstandard"))],
        "an Avro codec rbda reads", "'zstandard'")),
    Case(2, "a 512x512 cutout (over ZTF's 63x63)", lambda c: c.predict(
        [c.packets("big.avro", [_huge_cutout(c, 512)])], "ZTF cutouts are at most 63x63 pixels", "candid 70")),
    Case(2, "a 100x100 cutout compressed small", lambda c: c.predict(
        [c.packets("big.avro", [packet(72, c.rng, cutoutScience={"fileName": "s", "stampData": fits_blob(
            np.zeros((100, 100)))})])], "cutouts of at most 63x63", "candid 72")),
    Case(2, "a gzip cutout inflating to 20 MB", lambda c: c.predict(
        [c.packets("bomb.avro", [_bomb(c)])], "decompresses to more than", "candid 71")),
]


def test_held_triplets_are_capped_whatever_the_shapes(tmp_path, monkeypatch):
    """Triplets of many shapes are emitted once MAX_HELD_BYTES is held (each shape used to hold up to
    1,024 triplets, whatever the number of shapes)."""
    from rbda.alerts import packets as alerts

    rng = np.random.default_rng(3)
    shapes = [(63, 63), (61, 61), (59, 59), (57, 57)]
    path = write_packets(tmp_path / "shapes.avro", [packet(i, rng, size=shapes[i % 4][0]) for i in range(16)])
    held = 3 * 4 * 63 * 63 * 3  # about three triplets
    monkeypatch.setattr(alerts, "MAX_HELD_BYTES", held)
    sizes = [len(b) for b in alerts.AlertReader([path]).batches()]
    assert sum(sizes) == 16 and max(sizes) <= 2 and len(sizes) >= 6


# ---------------------------------------------------------------- 3. no NaN score with exit 0

def _nan_parquet(c: Corpus) -> Path:
    from rbda.ingest.store import write_survey

    stamps = c.stamps.copy()
    stamps[3, 1, 5, 5] = np.nan
    stamps[7, 0] = np.inf
    path = c.path("nan.parquet")
    write_survey(path, "des", stamps, np.zeros(12, np.int8), np.array(["a"] * 12), np.array([f"id{i}" for i in range(12)]))
    return path


def _nan_rows_listed(c: Corpus) -> str:
    path = _nan_parquet(c)
    table = c.scores([path], skip_bad=True)
    assert len(table["id"]) == 10 and "id3" not in table["id"] and "id7" not in table["id"]
    return "accepted"


def _nan_weights(payload: dict) -> None:
    """NaN weights with a matching weights_sha256 (the hash alone would not catch them)."""
    from rbda.learn.models import weights_hash

    payload["state_dict"] = dict(payload["state_dict"])
    key = next(k for k, v in payload["state_dict"].items() if v.is_floating_point())
    payload["state_dict"][key] = payload["state_dict"][key].clone().fill_(float("nan"))
    payload["weights_sha256"] = weights_hash(payload["state_dict"])


def _other_settings(payload: dict) -> None:
    payload["preprocessing_settings"] = {**payload["preprocessing_settings"], "crop": "something else"}


def _altered_without_hash(payload: dict) -> None:
    payload.pop("weights_sha256")
    payload["state_dict"] = {k: v * 3 if v.is_floating_point() else v for k, v in payload["state_dict"].items()}


CASES += [
    Case(3, "Parquet stamps with NaN/inf pixels", lambda c: c.predict([_nan_parquet(c)], "(id id3)", "NaN")),
    Case(3, "Parquet stamps with NaN/inf pixels, --skip-bad: rows listed, no NaN score", _nan_rows_listed),
    Case(3, "NaN weights", lambda c: c.predict([c.parquet], "finite weights",
                                               model=c.model_variant("nan.pt", _nan_weights))),
    Case(3, "weights altered and weights_sha256 removed", lambda c: c.predict(
        [c.parquet], "weights_sha256", model=c.model_variant("nohash.pt", _altered_without_hash))),
    Case(3, "other preprocessing settings, same version number", lambda c: c.predict(
        [c.parquet], "with other settings", model=c.model_variant("settings.pt", _other_settings))),
    Case(3, "a Parquet file of another preprocessing's settings", lambda c: (lambda p: c.predict(
        [p], "preprocess the raw data again"))(_parquet_with_settings(c, {"preprocessing_version": 1,
                                                                           "preprocessing_sha256": "0" * 64}))),
]


def _parquet_with_settings(c: Corpus, settings: dict) -> Path:
    from rbda.ingest.store import write_survey

    path = c.path("old.parquet")
    write_survey(path, "des", c.stamps, np.zeros(12, np.int8), np.array(["a"] * 12),
                 np.array([str(i) for i in range(12)]), settings)
    return path


# ---------------------------------------------------------------- 4. clear errors, not tracebacks

ATLAS_SCHEMA = fastavro.parse_schema({"type": "record", "name": "atlas_alert", "fields": [
    {"name": "objectId", "type": "string"}, {"name": "candid", "type": "string"},
    {"name": "cutoutScience", "type": ["null", "bytes"]}, {"name": "cutoutTemplate", "type": ["null", "bytes"]},
    {"name": "cutoutDifference", "type": ["null", "bytes"]}]})
LOOSE_SCHEMA = fastavro.parse_schema({"type": "record", "name": "loose", "fields": [
    {"name": "objectId", "type": ["string", "long"]},
    {"name": "candidate", "type": {"type": "record", "name": "candidate", "fields": [
        {"name": "candid", "type": ["long", "string", "double", "boolean"]},
        {"name": "rb", "type": ["null", "float", "string"]}, {"name": "drb", "type": ["null", "float"]}]}},
    {"name": "cutoutScience", "type": ["null", "bytes", "string", CUTOUT]},
    {"name": "cutoutTemplate", "type": ["null", "bytes", "string", "cutout"]},
    {"name": "cutoutDifference", "type": ["null", "bytes", "string", "cutout"]}]})


def _atlas_packet(c: Corpus, candid: str) -> dict:
    images = {k: c.rng.normal(size=(61, 61)) for k in ("Science", "Difference")}
    return {"objectId": "1132217491303814600", "candid": candid,
            "cutoutScience": fits_blob(images["Science"], compress=False), "cutoutTemplate": None,
            "cutoutDifference": fits_blob(images["Difference"], compress=False)}


def _atlas_accepted(c: Corpus) -> str:
    path = c.packets("atlas.avro", [_atlas_packet(c, "02a59543o0040o_006230")], ATLAS_SCHEMA)
    table = c.scores([path])
    assert table["candid"] == ["02a59543o0040o_006230"]
    return "accepted"


def _loose(c: Corpus, name: str, candid=5, rb=0.5, science=None, skip_bad=False, *fragments) -> str:
    good = packet(1, c.rng)
    bad = packet(2, c.rng, candidate={"candid": candid, "rb": rb, "drb": None})
    if science is not None:
        bad["cutoutScience"] = science
    path = c.packets(name, [good, bad], LOOSE_SCHEMA)
    if skip_bad:
        table = c.scores([path], skip_bad=True)
        assert table["candid"] == ["1"]
        bad_list = Path(c.root).glob("case*/scores.bad.csv")
        assert any(all(f in p.read_text() for f in fragments) for p in bad_list)
        return "accepted"
    return c.predict([path], *fragments)


def _facts_lambda_string(payload: dict) -> None:
    payload["facts"] = {**payload["facts"], "lambda": "0.1; rm -rf"}


def _weights_not_tensors(payload: dict) -> None:
    payload["state_dict"] = {k: v.tolist() for k, v in payload["state_dict"].items()}


def _enospc(c: Corpus, monkeypatch_target: str, argv: list, out: Path) -> str:
    import pyarrow.parquet

    real = getattr(pyarrow.parquet, monkeypatch_target)

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(out))

    setattr(pyarrow.parquet, monkeypatch_target, full)
    try:
        return c.cli(argv, "No space left on device", absent=[out])
    finally:
        setattr(pyarrow.parquet, monkeypatch_target, real)


def _enospc_predict(c: Corpus) -> str:
    out = c.path("s.parquet")
    return _enospc(c, "write_table", ["predict", "--model", c.model, "--input", c.parquet, "--output", out], out)


def _enospc_preprocess(c: Corpus) -> str:
    raw = c.path("raw")
    assert main(["synth", "--survey", "atlas", "--n", "12", "--seed", "1", "--out", str(raw)]) == 0
    out = c.path("atlas.parquet")
    import pyarrow.parquet

    real = pyarrow.parquet.ParquetWriter.write_table

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(out))

    pyarrow.parquet.ParquetWriter.write_table = full
    try:
        return c.cli(["preprocess", "--survey", "atlas", "--input", raw, "--output", out], "No space left on device",
                     absent=[out])
    finally:
        pyarrow.parquet.ParquetWriter.write_table = real


CASES += [
    Case(4, "ATLAS string candid 02a59543o0040o_006230 scored", _atlas_accepted),
    Case(4, "candid a double (1.7 was truncated to 1)", lambda c: _loose(c, "d.avro", 1.7, 0.5, None, False,
                                                                          "candid a long or a string", "double")),
    Case(4, "candid a double, --skip-bad: listed", lambda c: _loose(c, "d.avro", 1.7, 0.5, None, True, "double")),
    Case(4, "candid a bool", lambda c: _loose(c, "b.avro", True, 0.5, None, False, "candid a long or a string")),
    Case(4, "candid of 10,000 characters", lambda c: _loose(c, "o.avro", "x" * 10000, 0.5, None, False,
                                                             "(10000 characters)")),
    Case(4, "rb a string", lambda c: _loose(c, "rb.avro", 5, "high", None, False, "candidate.rb a number", "candid 5")),
    Case(4, "rb a string, --skip-bad: listed", lambda c: _loose(c, "rb.avro", 5, "high", None, True, "candidate.rb")),
    Case(4, "cutout a string", lambda c: _loose(c, "cs.avro", 5, 0.5, "not bytes", False,
                                                "cutoutScience: FITS bytes", "got str")),
    Case(4, "cutout a string, --skip-bad: listed", lambda c: _loose(c, "cs.avro", 5, 0.5, "x", True, "got str")),
    Case(4, "model facts.lambda a string (was after scoring everything)", lambda c: c.predict(
        [c.parquet], "facts.lambda a finite", model=c.model_variant("lam.pt", _facts_lambda_string))),
    Case(4, "model weights not tensors", lambda c: c.predict(
        [c.parquet], "weights that are tensors", model=c.model_variant("list.pt", _weights_not_tensors))),
    Case(4, "ENOSPC writing predict's output", _enospc_predict),
    Case(4, "ENOSPC writing preprocess's Parquet", _enospc_preprocess),
]


# ---------------------------------------------------------------- 5. edge cutouts

def _edge(c: Corpus, rows: int, cols: int, ypos: float) -> dict:
    p = packet(80, c.rng)
    for key in ("cutoutScience", "cutoutTemplate", "cutoutDifference"):
        p[key] = {"fileName": key, "stampData": fits_blob(c.rng.normal(size=(rows, cols)))}
    p["candidate"] = {"candid": 80, "rb": 0.7, "drb": None}
    return p


def _edge_scored(c: Corpus) -> str:
    path = c.packets("edge.avro", [packet(1, c.rng), _edge(c, 43, 63, 10.0)])
    table = c.scores([path])
    assert table["candid"] == ["1", "80"] and table["padded"] == [False, True]
    return "accepted"


CASES += [
    Case(5, "a 43x63 ZTF edge cutout: padded, scored, flagged", _edge_scored),
    Case(5, "a 20x63 cutout: no rule makes it valid", lambda c: c.predict(
        [c.packets("thin.avro", [_edge(c, 20, 63, 10.0)])], "edge cutouts of at least 32 pixels", "20x63")),
]


def _real_ztf(c: Corpus) -> str:
    folder = REAL_SAMPLES / "ztf_avro"
    if not folder.is_dir():
        return "skipped"
    table = c.scores([folder])
    assert len(table["candid"]) == 20 and sum(table["padded"]) == 1
    return "accepted"


def _real_atlas_packet(c: Corpus) -> str:
    """The real ATLAS stamps (no packets ship) as an ATLAS packet with ATLAS's string id."""
    folder = REAL_SAMPLES / "atlas"
    if not folder.is_dir():
        return "skipped"
    science = gzip.decompress((folder / "01a59897o0020c_000002_istamp.fits.gz").read_bytes())
    difference = gzip.decompress((folder / "01a59897o0020c_000002_dstamp.fits.gz").read_bytes())
    path = c.packets("atlas.avro", [{"objectId": "x", "candid": "01a59897o0020c_000002", "cutoutScience": science,
                                     "cutoutTemplate": None, "cutoutDifference": difference}], ATLAS_SCHEMA)
    assert c.scores([path])["candid"] == ["01a59897o0020c_000002"]
    return "accepted"


CASES += [Case(5, "the real ZTF packets (one 48x63 edge cutout)", _real_ztf),
          Case(4, "the real ATLAS stamps as a packet with a string candid", _real_atlas_packet)]


# ---------------------------------------------------------------- 6. configs

def _config(overlay: dict, key: str) -> Callable[[Corpus], str]:
    def run(c: Corpus) -> str:
        import yaml
        from snakemake.utils import update_config, validate

        from rbda.config_numbers import check_finite_numbers
        from rbda.errors import ConfigKeyError

        config = yaml.safe_load((REPO / "config.yaml").read_text())
        update_config(config, overlay)
        validate(config, str(REPO / "workflow" / "schemas" / "config.schema.yaml"))
        with pytest.raises(ConfigKeyError, match=key):
            check_finite_numbers(config)
        return "error"
    return run


CASES += [Case(6, "lr: .inf", _config({"training": {"lr": float("inf")}}, r"training\.lr")),
          Case(6, "lambdas: [.nan]", _config({"lambdas": [float("nan")]}, r"lambdas\[0\]")),
          Case(6, "method_settings.mmefm.pseudo_label_threshold: .nan", _config(
              {"method_settings": {"mmefm": {"pseudo_label_threshold": float("nan")}}},
              "method_settings.mmefm.pseudo_label_threshold"))]


# ---------------------------------------------------------------- 7. quiet failures

def _confluent(c: Corpus, schema_id: int = 900) -> bytes:
    return b"\x00" + schema_id.to_bytes(4, "big") + b"\x02" * 200


def _real_rubin(c: Corpus) -> str:
    """Read under the shipped Rubin layout (needs lsst-alert-packet's schema files)."""
    from rbda.alerts.layouts import package_folder

    path = REAL_SAMPLES / "lsst_avro" / "7912941781254298.avro"
    if not path.is_file() or package_folder("lsst.alert.packet") is None:
        return "skipped"
    table = c.scores([path])
    assert table["layout"] == ["rubin"] and table["reliability"][0] == pytest.approx(0.1125, abs=1e-4)
    return "accepted"


def _truncated_rubin(c: Corpus) -> str:
    path = REAL_SAMPLES / "lsst_avro" / "7912941781254298.avro"
    if not path.is_file():
        return "skipped"
    return c.predict([raw_file(c, "rubin_cut.avro", path.read_bytes()[:60000])], "Confluent-framed",
                     "schema id 900")


def _describe_head(c: Corpus) -> str:
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    script = "import sys; from rbda.cli import main; sys.exit(main())"
    result = subprocess.run(f"{sys.executable} -c '{script}' predict --describe {c.model} | head -1",
                            shell=True, capture_output=True, text=True, env=env, timeout=CASE_SECONDS)
    assert result.stdout.strip() == "{" and "Traceback" not in result.stderr, result.stderr[-600:]
    return "accepted"


CASES += [
    Case(7, "--skip-bad with only unreadable files exits non-zero", lambda c: c.predict(
        [raw_file(c, "junk.avro", b"\x01garbage" * 100)], "none could be scored", skip_bad=True)),
    Case(7, "a damaged Confluent-framed packet (schema id 900) is named", lambda c: c.predict(
        [raw_file(c, "rubin.avro", _confluent(c))], "Confluent-framed", "schema id 900")),
    Case(7, "a Confluent schema id no layout declares is named with the ids known", lambda c: c.predict(
        [raw_file(c, "unknown.avro", _confluent(c, 4242))], "Confluent-framed", "schema id 4242 is in none")),
    Case(7, "a truncated real Rubin packet is named", _truncated_rubin),
    Case(7, "the real Rubin packet is read by the declared Rubin layout", _real_rubin),
    Case(7, "predict --describe M.pt | head", _describe_head),
]


# ---------------------------------------------------------------- the corpus

def test_hostile_corpus(tmp_path, capsys):
    corpus = Corpus(tmp_path, capsys)
    counts = {"error": 0, "accepted": 0, "skipped": 0}
    bad: list[str] = []

    def alarm(signum, frame):
        raise TimeoutError(f"no answer in {CASE_SECONDS} s (a hang)")

    previous = signal.signal(signal.SIGALRM, alarm)
    try:
        for case in CASES:
            signal.alarm(CASE_SECONDS)
            try:
                kind = case.run(corpus)
                assert kind in counts, kind
                counts[kind] += 1
            except BaseException as exc:  # noqa: BLE001 - every way of going wrong is a bad case
                if isinstance(exc, KeyboardInterrupt):
                    raise
                bad.append(f"[{case.item}] {case.name}: {type(exc).__name__}: {str(exc)[:300]}")
            finally:
                signal.alarm(0)
    finally:
        signal.signal(signal.SIGALRM, previous)
    tried = len(CASES) - counts["skipped"]
    summary = (f"hostile corpus: tried {tried}, clear error {counts['error']}, correctly accepted "
               f"{counts['accepted']}, bad {len(bad)}" + (f" (skipped {counts['skipped']}: no real samples)"
                                                            if counts["skipped"] else ""))
    with capsys.disabled():
        print("\n" + summary)
        for line in bad:
            print("  BAD " + line)
    assert not bad, summary + "\n" + "\n".join(bad)


def test_unpickler_out_of_room_is_not_called_a_corrupt_pickle(tmp_path, monkeypatch):
    """A file-size limit (SIGXFSZ) or a full disk hit by the unpickler's temporary files used to be
    reported as the input pickle being "corrupt or crafted"."""
    import pickle
    import signal as signals

    from rbda.errors import InputFileError
    from rbda.ingest import safe_pickle

    path = tmp_path / "survey.pkl"
    path.write_bytes(pickle.dumps({"a": [1, 2]}, protocol=2))
    real_run = subprocess.run
    for returncode, stderr, message in ((-signals.SIGXFSZ, b"", "file-size limit (ulimit -f)"),
                                        (1, b"OSError: [Errno 28] No space left on device", "No space left")):
        monkeypatch.setattr(safe_pickle.subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(
            a, returncode, b"", stderr))
        with pytest.raises(InputFileError, match="temporary files") as info:
            safe_pickle.load_pickle(path)
        assert message in str(info.value) and "corrupt" not in str(info.value)
    monkeypatch.setattr(safe_pickle.subprocess, "run", real_run)
    assert safe_pickle.load_pickle(path) == {"a": [1, 2]}
