"""`rbda predict`: alert packets, Parquet and raw files -> scores; model files that describe themselves; bad input."""

from __future__ import annotations

import gc
import gzip
import io
import json
import os
import re
from pathlib import Path

import fastavro
import numpy as np
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest
import torch
from astropy.io import fits

from rbda.cli import main
from rbda.errors import InputFileError, RbdaError
from rbda.ingest.preprocess import PREPROCESSING_VERSION
from rbda.alerts.packets import AlertReader
from train_helpers import surveys_with_splits

TINY = ["--epoch-size", "50", "--max-epochs", "1", "--patience", "1", "--batch-size", "25", "--val-shots", "5",
        "--threads", "1", "--deterministic"]

CUTOUT = {"type": "record", "name": "cutout",
          "fields": [{"name": "fileName", "type": "string"}, {"name": "stampData", "type": "bytes"}]}
SCHEMA = fastavro.parse_schema({
    "type": "record", "name": "alert", "fields": [
        {"name": "objectId", "type": "string"},
        {"name": "candidate", "type": {"type": "record", "name": "candidate", "fields": [
            {"name": "candid", "type": "long"}, {"name": "rb", "type": ["null", "float"]},
            {"name": "drb", "type": ["null", "float"]}]}},
        {"name": "cutoutScience", "type": ["null", CUTOUT]},
        {"name": "cutoutTemplate", "type": ["null", "cutout"]},
        {"name": "cutoutDifference", "type": ["null", "cutout"]},
    ]})


def fits_blob(image: np.ndarray, compress: bool = True) -> bytes:
    buf = io.BytesIO()
    fits.PrimaryHDU(image.astype(np.float32)).writeto(buf)
    return gzip.compress(buf.getvalue()) if compress else buf.getvalue()


def packet(candid: int, rng, size: int = 63, compress: bool = True, template: bool = True, **override) -> dict:
    images = {k: rng.normal(0, 1, (size, size)) for k in ("Science", "Template", "Difference")}
    cut = {k: {"fileName": f"{candid}_{k}.fits", "stampData": fits_blob(v, compress)} for k, v in images.items()}
    out = {"objectId": f"ZTF{candid}", "candidate": {"candid": candid, "rb": 0.25, "drb": None},
           "cutoutScience": cut["Science"], "cutoutTemplate": cut["Template"] if template else None,
           "cutoutDifference": cut["Difference"]}
    out.update(override)
    return out


def write_packets(path: Path, packets: list[dict], codec: str = "null") -> Path:
    with open(path, "wb") as fh:
        fastavro.writer(fh, SCHEMA, packets, codec=codec)
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Two small surveys with splits, a des baseline model and an MME model (1 epoch of 50 items each)."""
    root = tmp_path_factory.mktemp("predict")
    data = surveys_with_splits(root, ("des", "hits"), 200)
    model = root / "baseline.pt"
    assert main(["train", "--method", "baseline", "--source", "des", "--data", data["des"][1], "--data",
                 data["hits"][1], "--split", "0", "--seed", "7", "--metrics", str(root / "b.json"),
                 "--model", str(model), *TINY]) == 0
    mme = root / "mme.pt"
    assert main(["train", "--method", "mme", "--source", "des", "--target", "hits", "--init-model", str(model),
                 "--data", data["des"][1], "--data", data["hits"][1], "--shots", "5", "--lambda", "0.1",
                 "--split", "0", "--seed", "7", "--metrics", str(root / "m.json"), "--model", str(mme), *TINY]) == 0
    return {"root": root, "model": model, "mme": mme, "run": json.loads((root / "b.json").read_text()),
            "parquet": data["des"][0]}


def _fails_cleanly(capsys, argv, *messages, absent=()):
    assert main(argv) == 2
    err = capsys.readouterr().err
    for message in messages:
        assert message in err, err
    for path in absent:
        assert not Path(path).exists()
        assert not list(Path(path).parent.glob(f".{Path(path).name}*"))


# --- model files ----------------------------------------------------------------------------------

def test_describe_prints_training_facts_preprocessing_and_hash(trained, capsys):
    from rbda.learn.models import weights_hash

    assert main(["predict", "--describe", str(trained["model"])]) == 0
    described = json.loads(capsys.readouterr().out)
    assert described["facts"]["method"] == "baseline" and described["facts"]["source"] == "des"
    assert described["training"]["evaluations"] == trained["run"]["evaluations"]
    assert described["preprocessing"] == PREPROCESSING_VERSION
    assert described["preprocessing_settings"]["stamp_size"] == 21
    state = torch.load(trained["model"], weights_only=True)["state_dict"]
    assert described["weights_sha256"] == weights_hash(state)


def test_mme_runs_write_their_model_too(trained, capsys):
    assert main(["predict", "--describe", str(trained["mme"])]) == 0
    described = json.loads(capsys.readouterr().out)
    assert described["head_kind"] == "prototype"
    assert (described["facts"]["method"], described["facts"]["target"], described["facts"]["lambda"]) == ("mme", "hits", 0.1)
    assert {e["role"] for e in described["training"]["evaluations"]} == {"source", "target"}


def _rewrite(src: Path, dst: Path, **changes) -> Path:
    payload = torch.load(src, weights_only=True)
    payload.update(changes)
    torch.save(payload, dst)
    return dst


def test_model_of_another_preprocessing_version_is_refused(trained, tmp_path, capsys):
    old = _rewrite(trained["model"], tmp_path / "old.pt", preprocessing=PREPROCESSING_VERSION + 1)
    out = tmp_path / "scores.parquet"
    _fails_cleanly(capsys, ["predict", "--model", str(old), "--input", str(trained["parquet"]), "--output", str(out)],
                   str(old), f"preprocessing version {PREPROCESSING_VERSION} (this rbda's)",
                   f"preprocessing version {PREPROCESSING_VERSION + 1}", absent=[out])
    _fails_cleanly(capsys, ["predict", "--describe", str(old)], "preprocessing version")


def test_altered_weights_and_foreign_files_are_refused(trained, tmp_path, capsys):
    payload = torch.load(trained["model"], weights_only=True)
    state = dict(payload["state_dict"])
    state["head.linear.bias"] = state["head.linear.bias"] + 1
    altered = _rewrite(trained["model"], tmp_path / "altered.pt", state_dict=state)
    out = tmp_path / "s.csv"
    _fails_cleanly(capsys, ["predict", "--model", str(altered), "--input", str(trained["parquet"]), "--output", str(out)],
                   "altered.pt", "file was altered", absent=[out])
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"no model")
    _fails_cleanly(capsys, ["predict", "--model", str(junk), "--input", str(trained["parquet"]), "--output", str(out)],
                   "junk.pt", "rbda train --model", absent=[out])


def test_integrity_facts_are_required_and_preprocessing_is_checked_on_its_settings(trained, tmp_path, capsys):
    """A model file without weights_sha256 (or without its preprocessing settings) is refused: the
    integrity check cannot be turned off by deleting it; settings that differ under the same version
    number are refused too (their hash is compared, not the number)."""
    from rbda.ingest.preprocess import PREPROCESSING

    payload = torch.load(trained["model"], weights_only=True)
    out = tmp_path / "s.csv"
    base = ["predict", "--input", str(trained["parquet"]), "--output", str(out)]
    cases = {"no_hash": ({"weights_sha256"}, {}, "weights_sha256"),
             "no_settings": ({"preprocessing_settings"}, {}, "no preprocessing settings"),
             "other_settings": ((), {"preprocessing_settings": {**PREPROCESSING, "sentinel_abs": 1e30}},
                                "with other settings")}
    for name, (dropped, changed, message) in cases.items():
        altered = {k: v for k, v in payload.items() if k not in dropped} | changed
        state = dict(altered["state_dict"])
        if name == "no_hash":  # an altered model whose hash was removed is refused, not scored
            state["head.linear.bias"] = state["head.linear.bias"] * 1e6
            altered["state_dict"] = state
        torch.save(altered, tmp_path / f"{name}.pt")
        _fails_cleanly(capsys, [*base, "--model", str(tmp_path / f"{name}.pt")], f"{name}.pt", message, absent=[out])


def test_model_facts_that_do_not_fit_the_identity_columns_are_refused_before_scoring(trained, tmp_path, capsys):
    payload = torch.load(trained["model"], weights_only=True)
    huge = _rewrite(trained["model"], tmp_path / "huge.pt", facts={**payload["facts"], "shots": 2**63})
    out = tmp_path / "s.csv"
    _fails_cleanly(capsys, ["predict", "--model", str(huge), "--input", str(trained["parquet"]), "--output", str(out)],
                   "huge.pt", "model facts that fit the output's identity columns", "(facts)", absent=[out])


# --- Parquet input --------------------------------------------------------------------------------

def test_parquet_predictions_equal_evaluate_argmax(trained, tmp_path):
    from rbda.learn.evaluate import predict
    from rbda.learn.models import load_model_file, model_from_payload
    from rbda.ingest.store import load_survey

    out = tmp_path / "scores.parquet"
    assert main(["predict", "--model", str(trained["model"]), "--input", str(trained["parquet"]),
                 "--output", str(out), "--device", "cpu", "--batch-size", "64"]) == 0
    table = pq.read_table(out).to_pydict()
    survey = load_survey(trained["parquet"])
    model = model_from_payload(load_model_file(trained["model"]))
    argmax = predict(model, torch.from_numpy(survey.stamps), torch.arange(len(survey))).numpy()
    assert table["id"] == survey.ids.tolist()
    assert table["label"] == survey.labels.tolist()
    assert np.array_equal(np.array(table["predicted"]), argmax)
    assert all(0.0 <= p <= 1.0 for p in table["p_real"])
    assert set(table["model_method"]) == {"baseline"} and set(table["model_source"]) == {"des"}
    assert len(set(table["model_weights_sha256"])) == 1 and set(table["threshold"]) == {0.5}
    # a threshold moves the labels, not the scores
    out2 = tmp_path / "scores2.parquet"
    assert main(["predict", "--model", str(trained["model"]), "--input", str(trained["parquet"]),
                 "--output", str(out2), "--threshold", "0.9"]) == 0
    t2 = pq.read_table(out2).to_pydict()
    np.testing.assert_allclose(t2["p_real"], table["p_real"], rtol=1e-5, atol=1e-6)
    assert t2["predicted"] == [int(p >= 0.9) for p in t2["p_real"]]


def test_settings_are_checked(trained, tmp_path, capsys):
    base = ["predict", "--model", str(trained["model"]), "--input", str(trained["parquet"])]
    _fails_cleanly(capsys, [*base, "--output", str(tmp_path / "s.txt")], "'output'", ".parquet or .csv")
    _fails_cleanly(capsys, [*base, "--output", str(tmp_path / "s.csv"), "--threshold", "1.5"], "'threshold'")
    _fails_cleanly(capsys, ["predict", "--model", str(trained["model"]), "--output", str(tmp_path / "s.csv")], "'input'")


# --- alert packets --------------------------------------------------------------------------------

def test_packets_to_scores_with_ids_and_ztf_scores(trained, tmp_path, caplog):
    rng = np.random.default_rng(0)
    folder = tmp_path / "alerts"
    folder.mkdir()
    write_packets(folder / "a.avro", [packet(1, rng), packet(2, rng, size=61)], codec="snappy")
    write_packets(folder / "b.avro", [packet(3, rng, candidate={"candid": 3, "rb": 0.9, "drb": 0.8})])
    (folder / "notes.txt").write_text("not a packet")
    out = tmp_path / "scores.csv"
    assert main(["predict", "--model", str(trained["mme"]), "--input", str(folder), "--output", str(out)]) == 0
    table = pcsv.read_csv(out).to_pydict()
    assert sorted(table["candid"]) == [1, 2, 3]  # CSV reads the string column back as numbers
    row = table["candid"].index(3)
    assert table["objectId"][row] == "ZTF3" and table["rb"][row] == pytest.approx(0.9)
    assert table["drb"][row] == pytest.approx(0.8)
    assert table["drb"][table["candid"].index(1)] is None  # null drb stays missing
    assert set(table["model_method"]) == {"mme"}
    # the collector, paused through the start-up and kept off the heap frozen while scoring, is handed it back
    assert gc.isenabled() and gc.get_freeze_count() == 0
    assert not (tmp_path / "scores.bad.csv").exists()
    assert "1 file(s) of the input folders are not read (not alert packets (*.avro)), e.g. " \
           f"{folder / 'notes.txt'}" in caplog.text


def test_the_rbda_executable_exits_with_mains_code_and_its_heap_frozen(monkeypatch):
    """``rbda`` (rbda.cli.run) freezes the heap before the interpreter's teardown, whose collections would
    scan everything torch left; the code is main's."""
    import tomllib

    import rbda.cli

    monkeypatch.setattr(rbda.cli, "main", lambda: 3)
    frozen_before = gc.get_freeze_count()
    try:
        with pytest.raises(SystemExit) as exited:
            rbda.cli.run()
        assert exited.value.code == 3 and gc.get_freeze_count() > frozen_before
    finally:
        gc.unfreeze()
    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert pyproject["project"]["scripts"]["rbda"] == "rbda.cli:run"


def _bad_case(tmp_path, name, packets=None, raw=None):
    path = tmp_path / f"{name}.avro"
    if raw is not None:
        path.write_bytes(raw)
    else:
        write_packets(path, packets)
    return path


def bad_cases(tmp_path):
    rng = np.random.default_rng(1)
    good = packet(10, rng)
    nan = packet(14, rng)
    nan["cutoutDifference"] = {"fileName": "d", "stampData": fits_blob(np.full((63, 63), np.nan))}
    mixed = packet(15, rng)
    mixed["cutoutTemplate"] = {"fileName": "t", "stampData": fits_blob(np.zeros((61, 61)))}
    full = io.BytesIO()
    fastavro.writer(full, SCHEMA, [packet(i, rng) for i in range(20, 30)])
    return {
        "missing cutout": (_bad_case(tmp_path, "missing", [good, packet(11, rng, cutoutDifference=None)]),
                           "11", "no cutoutDifference"),
        "not FITS": (_bad_case(tmp_path, "notfits", [good, packet(12, rng, cutoutScience={
            "fileName": "s", "stampData": gzip.compress(b"\x89PNG" * 900)})]), "12", "cutoutScience"),
        "small stamp": (_bad_case(tmp_path, "small", [good, packet(13, rng, size=15)]), "13", "at least 21x21"),
        "all NaN": (_bad_case(tmp_path, "nan", [good, nan]), "14", "no valid pixel"),
        "shapes differ": (_bad_case(tmp_path, "mixed", [good, mixed]), "15", "cutouts of one shape"),
        "ZTF without template": (_bad_case(tmp_path, "notemplate", [good, packet(16, rng, template=False)]),
                                 "16", "no cutoutTemplate"),
        "truncated Avro": (_bad_case(tmp_path, "truncated", raw=full.getvalue()[:-3000]), "", "truncated"),
        "not Avro": (_bad_case(tmp_path, "garbage", raw=b"\x00garbage" * 500), "", "an Avro alert file"),
    }


def test_each_bad_input_is_an_error_naming_file_and_candid(trained, tmp_path, capsys):
    out = tmp_path / "scores.parquet"
    for path, candid, reason in bad_cases(tmp_path).values():
        expected = [str(path), reason] + ([f"(candid {candid})"] if candid else [])
        _fails_cleanly(capsys, ["predict", "--model", str(trained["model"]), "--input", str(path),
                                "--output", str(out)], *expected, absent=[out, tmp_path / "scores.bad.csv"])
        assert gc.isenabled() and gc.get_freeze_count() == 0


def test_skip_bad_lists_every_bad_packet_and_scores_the_rest(trained, tmp_path):
    cases = bad_cases(tmp_path)
    out = tmp_path / "scores.parquet"
    assert main(["predict", "--model", str(trained["model"]), "--input", *[str(c[0]) for c in cases.values()],
                 "--output", str(out), "--skip-bad"]) == 0
    bad = pcsv.read_csv(tmp_path / "scores.bad.csv", convert_options=pcsv.ConvertOptions(
        column_types={"candid": "string"})).to_pydict()
    assert len(bad["file"]) == len(cases)
    for path, candid, reason in cases.values():
        row = bad["file"].index(str(path))
        assert (bad["candid"][row] or "") == candid and reason in bad["reason"][row]
    scored = pq.read_table(out).to_pydict()
    # one good packet in each of the six packet files, and the truncated file's packets before the damage
    assert scored["candid"].count("10") == 6 and len(scored["candid"]) > 6  # ids are strings
    assert all(20 <= int(c) < 30 for c in scored["candid"] if c != "10")


def test_atlas_packets_get_template_science_minus_difference(tmp_path):
    rng = np.random.default_rng(2)
    atlas = packet(5, rng, size=61, compress=False, template=False)
    reader = AlertReader([write_packets(tmp_path / "atlas.avro", [atlas])])
    (batch,) = list(reader.batches())
    science = fits.getdata(io.BytesIO(atlas["cutoutScience"]["stampData"])).astype(np.float32)
    difference = fits.getdata(io.BytesIO(atlas["cutoutDifference"]["stampData"])).astype(np.float32)
    np.testing.assert_array_equal(batch.raw.images[0, 0], science - difference)
    np.testing.assert_array_equal(batch.raw.images[0, 1], science)
    assert batch.columns["candid"].tolist() == ["5"]


def test_alert_reader_needs_packets(tmp_path):
    (tmp_path / "x.txt").write_text("x")
    with pytest.raises(InputFileError, match=r"\*\.avro"):
        AlertReader([tmp_path])


# --- real samples ---------------------------------------------------------------------------------

@pytest.mark.realsamples
def test_real_ztf_packets_to_scores(trained, real_samples, tmp_path):
    """All 20 real packets are scored, without --skip-bad: the one with 48x63 edge cutouts (a source 16.5
    pixels from the CCD's low y edge) is padded to 63x63 by ZTF's edge rule and flagged in `padded`."""
    folder = real_samples / "ztf_avro"
    out = tmp_path / "scores.parquet"
    assert main(["predict", "--model", str(trained["model"]), "--input", str(folder), "--output", str(out)]) == 0
    table = pq.read_table(out).to_pydict()
    assert len(table["candid"]) == 20 and all(np.isfinite(table["p_real"]))
    rb = {}
    for path in folder.glob("*.avro"):
        with open(path, "rb") as fh:
            for p in fastavro.reader(fh):
                rb[str(p["candidate"]["candid"])] = (p["objectId"], p["candidate"]["rb"], p["candidate"]["drb"])
    for candid, object_id, score, drb in zip(table["candid"], table["objectId"], table["rb"], table["drb"]):
        assert rb[candid][0] == object_id and rb[candid][1] == pytest.approx(score)
        assert (drb is None and rb[candid][2] is None) or rb[candid][2] == pytest.approx(drb)
    padded = [Path(f).name for f, flag in zip(table["file"], table["padded"]) if flag]
    assert padded == ["000010510300844919.avro"]
    (batch,) = [b for b in AlertReader([folder / padded[0]]).batches()]
    image = batch.raw.images[0]
    assert image.shape == (3, 63, 63)
    assert np.isnan(image[:, :15]).all() and not np.isnan(image[:, 15:]).all(axis=(1, 2)).any()


@pytest.mark.realsamples
def test_raw_survey_files_are_scored_with_ids_and_labels(trained, real_samples, tmp_path):
    out = tmp_path / "ztf.csv"
    assert main(["predict", "--model", str(trained["model"]), "--survey", "ztf", "--input",
                 str(real_samples / "ztf_alerce" / "small_dataset.pkl"), "--output", str(out)]) == 0
    table = pcsv.read_csv(out).to_pydict()
    assert len(table["id"]) == 30 and set(table["label"]) == {1}


# ---------------------------------------------------------------- the Avro container framing


@pytest.mark.parametrize("codec", ["null", "deflate", "snappy", "bzip2", "xz"])
def test_container_reader_decodes_what_fastavro_decodes(tmp_path, codec):
    """rbda's framing (header, blocks, sync, each codec's bounded inflating) + fastavro's record
    decoding = fastavro.reader, projected to the fields rbda uses."""
    from rbda.alerts.packets import WANTED, AvroSchemas, read_container

    rng = np.random.default_rng(5)
    path = tmp_path / f"{codec}.avro"
    with open(path, "wb") as fh:  # several blocks
        fastavro.writer(fh, SCHEMA, [packet(i, rng, size=25) for i in range(30)], codec=codec, sync_interval=2000)
    with open(path, "rb") as fh:
        expected = [{k: v for k, v in p.items() if k in WANTED} for p in fastavro.reader(fh)]
    with open(path, "rb") as fh:
        assert list(read_container(fh, AvroSchemas())) == expected


def test_container_reader_parses_each_schema_once(tmp_path, monkeypatch):
    """One packet per file (ZTF's layout): the writer schema and its projection are parsed once, not per file."""
    import fastavro as fa

    rng = np.random.default_rng(6)
    files = [write_packets(tmp_path / f"{i}.avro", [packet(i, rng, size=25)], codec="snappy") for i in range(5)]
    calls = []
    real_parse = fa.parse_schema
    monkeypatch.setattr(fa, "parse_schema", lambda *a, **k: calls.append(1) or real_parse(*a, **k))
    reader = AlertReader(files)
    assert sum(len(b) for b in reader.batches()) == 5
    assert len(calls) == 2  # the writer schema and its projection


def test_writer_schemas_alternating_between_files_are_each_their_own():
    """AvroSchemas compares a file's schema text with the last one before looking it up: texts of two
    schemas, alternating, each get their own entry."""
    from rbda.alerts.packets import AvroSchemas

    texts = [json.dumps({"type": "record", "name": name, "fields": [{"name": "candid", "type": "long"}]}).encode()
             for name in ("ztf.alert", "other.alert")]
    schemas = AvroSchemas({"candid": None})
    entries = [schemas.get(text) for text in texts + texts]
    assert entries[0] is entries[2] and entries[1] is entries[3]
    assert [e.name for e in entries] == ["ztf.alert", "other.alert"] * 2
    with pytest.raises(ValueError):  # an empty schema text is parsed (and refused), never a cached entry
        AvroSchemas({"candid": None}).get(b"")


def test_container_reader_real_ztf_packets_match_fastavro(real_samples):
    from rbda.alerts.packets import WANTED, AvroSchemas, read_container

    schemas = AvroSchemas()
    files = sorted((real_samples / "ztf_avro").glob("*.avro"))
    assert len(files) == 20
    for path in files:
        with open(path, "rb") as fh:
            expected = [{k: v for k, v in p.items() if k in WANTED} for p in fastavro.reader(fh)]
        with open(path, "rb") as fh:
            got = list(read_container(fh, schemas))
        assert [p["cutoutScience"] for p in got] == [p["cutoutScience"] for p in expected], path
        assert [p["candidate"] for p in got] == [{k: v for k, v in p["candidate"].items()
                                                  if k in ("candid", "rb", "drb", "xpos", "ypos")}
                                                 for p in expected], path


def _damaged(tmp_path, name, mutate, codec="snappy"):
    rng = np.random.default_rng(7)
    good = io.BytesIO()
    fastavro.writer(good, SCHEMA, [packet(i, rng, size=25) for i in range(3)], codec=codec)
    path = tmp_path / f"{name}.avro"
    path.write_bytes(mutate(good.getvalue()))
    return path


def test_damaged_containers_are_bad_files_named_with_the_reason(tmp_path, monkeypatch):
    from rbda.alerts import packets as alerts

    cases = {
        "magic": (lambda raw: b"Obj\x02" + raw[4:], "magic"),
        "sync": (lambda raw: raw[:-16] + bytes(16), "sync marker"),
        "crc": (lambda raw: raw[:-20] + bytes(b ^ 0xFF for b in raw[-20:-16]) + raw[-16:], "checksum"),
        "cut": (lambda raw: raw[:-100], "truncated"),
    }
    for name, (mutate, reason) in cases.items():
        path = _damaged(tmp_path, name, mutate)
        reader = AlertReader([path], skip_bad=True)
        assert sum(len(b) for b in reader.batches()) == 0, name
        ((file, _candid, text),) = [(b.file, b.candid, b.reason) for b in reader.bad]
        assert file == str(path) and reason in text, (name, text)
    # a block that inflates past the limit is refused before it is held in memory
    monkeypatch.setattr(alerts, "MAX_BLOCK_BYTES", 1000)
    for codec in ("deflate", "snappy", "bzip2", "xz"):
        reader = AlertReader([_damaged(tmp_path, f"bomb-{codec}", lambda raw: raw, codec=codec)], skip_bad=True)
        assert sum(len(b) for b in reader.batches()) == 0
        assert "more than 1000 bytes" in reader.bad[0].reason, reader.bad[0].reason


def test_small_files_read_whole_and_large_or_grown_ones_buffered_give_the_same_packets(tmp_path, monkeypatch):
    """A file of at most WHOLE_FILE_BYTES is read in one call and parsed in memory; a larger one, or one
    that grew past the limit after its size was taken, is read through a buffer: the same packets, the
    same bad files and reasons either way, container files and Confluent-framed ones alike, and every
    file closed."""
    from rbda.alerts import packets as alerts
    from rbda.alerts.layouts import load_layouts

    rng = np.random.default_rng(8)
    many = tmp_path / "many.avro"
    with open(many, "wb") as fh:
        fastavro.writer(fh, SCHEMA, [packet(i, rng, size=25) for i in range(12)], codec="snappy", sync_interval=2000)
    files = [many, _damaged(tmp_path, "cut", lambda raw: raw[:-100]),
             _damaged(tmp_path, "sync", lambda raw: raw[:-16] + bytes(16)),
             _damaged(tmp_path, "header", lambda raw: raw + b"\x80")]  # ends inside a block header
    schemas = tmp_path / "schemas"
    schemas.mkdir()
    (schemas / "77.avsc").write_text(json.dumps(BROKER_SCHEMA))
    declared = tmp_path / "confluent.yaml"
    declared.write_text(BROKER_LAYOUT.format(framing="confluent", selector='schema: {folder: schemas, file: "{id}.avsc"}'))
    body = io.BytesIO()
    fastavro.schemaless_writer(body, fastavro.parse_schema(BROKER_SCHEMA), broker_packet("c-1", rng))
    framed = b"\x00" + (77).to_bytes(4, "big") + body.getvalue()
    for name, raw in {"c": framed, "c-cut": framed[:-300], "c-long": framed + b"\x00\x00"}.items():
        (tmp_path / f"{name}.avro").write_bytes(raw)
        files.append(tmp_path / f"{name}.avro")
    layouts = load_layouts([declared])
    paths = []
    real_stream, real_bytes = alerts.read_container, alerts.read_container_bytes
    monkeypatch.setattr(alerts, "read_container", lambda *a: paths.append("stream") or real_stream(*a))
    monkeypatch.setattr(alerts, "read_container_bytes", lambda *a: paths.append("memory") or real_bytes(*a))
    open_files = Path("/proc/self/fd")

    def read() -> tuple:
        paths.clear()
        before = len(list(open_files.iterdir())) if open_files.is_dir() else 0
        reader = AlertReader(files, skip_bad=True, layouts=layouts)
        out = [list(b.columns["candid"]) for b in reader.batches()], [(b.file, b.reason) for b in reader.bad]
        assert not open_files.is_dir() or len(list(open_files.iterdir())) == before  # every file closed
        return out

    whole = read()
    assert set(sum(whole[0], [])) == {"c-1", *map(str, range(12))}, whole[0]
    reasons = dict((Path(f).name, r) for f, r in whole[1])
    assert sorted(reasons) == ["c-cut.avro", "c-long.avro", "cut.avro", "header.avro", "sync.avro"]
    assert "ends inside a block header" in reasons["header.avro"] and "2 bytes follow" in reasons["c-long.avro"]
    assert f"of the record's {len(framed) - 300 - 5}" in reasons["c-cut.avro"]  # (the record's own positions)
    assert paths == ["memory"] * 4  # the in-memory path is the one taken
    assert alerts.packet_file(many) == many.read_bytes()
    monkeypatch.setattr(alerts, "WHOLE_FILE_BYTES", 100)  # every file over the limit: buffered
    with alerts.packet_file(many) as fh:
        assert fh.read(4) == b"Obj\x01"
    assert read() == whole and paths == ["stream"] * 4
    # a file that grows past the limit while read (its size taken as 10 bytes): read again from its start
    real_fstat = os.fstat
    monkeypatch.setattr(alerts.os, "fstat", lambda fd: os.stat_result((*real_fstat(fd)[:6], 10, *real_fstat(fd)[7:])))
    monkeypatch.setattr(alerts, "WHOLE_FILE_BYTES", 50)
    with alerts.packet_file(many) as fh:
        assert fh.read(4) == b"Obj\x01"
    assert read() == whole
    monkeypatch.undo()
    # not a regular file: buffered
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with open(fifo, "r+b", buffering=0) as writer:  # (a writer exists: opening it does not block)
        writer.write(b"Obj\x01")
        with alerts.packet_file(fifo) as fh:
            assert fh.read(4) == b"Obj\x01"


def test_progress_counts_alerts_apart_from_unreadable_files(trained, tmp_path, monkeypatch):
    """The progress line counts alerts read; refused packets and unreadable files are named apart
    (a file that could not be read is not an alert)."""
    from rbda.alerts import predict as predicting

    rng = np.random.default_rng(4)
    good = write_packets(tmp_path / "good.avro", [packet(1, rng), packet(2, rng, size=15)])
    junk = [tmp_path / f"junk{i}.avro" for i in range(3)]
    for path in junk:
        path.write_bytes(b"\x01not avro" * 50)
    lines = []
    real = predicting.ScorableInput.status
    monkeypatch.setattr(predicting.ScorableInput, "status", lambda self, scored: lines.append(
        (self.read, real(self, scored))) or real(self, scored))
    summary = predicting.predict_files(trained["model"], [good, *junk], tmp_path / "s.parquet", skip_bad=True)
    assert summary.scored == 1 and len(summary.bad) == 4
    assert lines[-1] == (2, "scored 1, refused 1, unreadable files 3")


# --- declared packet layouts ----------------------------------------------------------------------

BROKER_SCHEMA = {"type": "record", "name": "alert", "namespace": "newbroker", "fields": [
    {"name": "alertId", "type": "string"},
    {"name": "source", "type": {"type": "record", "name": "source", "fields": [
        {"name": "score", "type": ["null", "double"]}, {"name": "extra", "type": "string"}]}},
    {"name": "stamps", "type": {"type": "record", "name": "stamps", "fields": [
        {"name": n, "type": ["null", "bytes"]} for n in ("new", "ref", "diff")]}}]}

BROKER_LAYOUT = """
layouts:
  - name: newbroker
    label: New broker
    framing: {framing}
    {selector}
    id: alertId
    scores: {{broker_score: source.score}}
    cutouts: {{science: stamps.new, template: stamps.ref, difference: stamps.diff}}
    cutout_forms: [bytes]
    compression: none
    stamp_size: 25
"""


def broker_packet(alert_id: str, rng, score=0.7) -> dict:
    blobs = {k: fits_blob(rng.normal(0, 1, (25, 25)), compress=False) for k in ("new", "ref", "diff")}
    return {"alertId": alert_id, "source": {"score": score, "extra": "x" * 50}, "stamps": blobs}


def test_a_broker_nobody_has_seen_is_read_by_declaring_its_layout(trained, tmp_path):
    """Container and Confluent framing of an unseen schema (fields named nothing like ZTF's), read with
    --packet-layouts only; its score is a column of its own, NaN for the other layouts' packets."""
    rng = np.random.default_rng(3)
    container = tmp_path / "container.yaml"
    container.write_text(BROKER_LAYOUT.format(framing="container", selector='schema_names: ["newbroker.*"]'))
    with open(tmp_path / "a.avro", "wb") as fh:
        fastavro.writer(fh, fastavro.parse_schema(BROKER_SCHEMA), [broker_packet("b-1", rng), broker_packet("b-2", rng)])
    write_packets(tmp_path / "ztf.avro", [packet(9, rng)])
    out = tmp_path / "scores.parquet"
    argv = ["predict", "--model", str(trained["model"]), "--input", str(tmp_path / "a.avro"), str(tmp_path / "ztf.avro"),
            "--output", str(out)]
    assert main(argv + ["--packet-layouts", str(container)]) == 0
    table = pq.read_table(out).to_pydict()
    assert table["layout"] == ["newbroker", "newbroker", "ztf"] and table["candid"] == ["b-1", "b-2", "9"]
    assert table["broker_score"][:2] == [pytest.approx(0.7)] * 2 and np.isnan(table["broker_score"][2])
    assert table["rb"][2] == pytest.approx(0.25)

    schemas = tmp_path / "schemas"
    schemas.mkdir()
    (schemas / "77.avsc").write_text(json.dumps(BROKER_SCHEMA))
    confluent = tmp_path / "confluent.yaml"
    confluent.write_text(BROKER_LAYOUT.format(framing="confluent",
                                              selector='schema: {folder: schemas, file: "{id}.avsc"}'))
    body = io.BytesIO()
    fastavro.schemaless_writer(body, fastavro.parse_schema(BROKER_SCHEMA), broker_packet("c-1", rng, score=None))
    (tmp_path / "c.avro").write_bytes(b"\x00" + (77).to_bytes(4, "big") + body.getvalue())
    out2 = tmp_path / "scores2.parquet"
    assert main(["predict", "--model", str(trained["model"]), "--input", str(tmp_path / "c.avro"), "--output",
                 str(out2), "--packet-layouts", str(confluent)]) == 0
    table = pq.read_table(out2).to_pydict()
    assert table["candid"] == ["c-1"] and table["layout"] == ["newbroker"] and np.isnan(table["broker_score"][0])


@pytest.mark.parametrize("change, message", [
    ({"framing": "kafka"}, "framing"), ({"cutouts": {"science": "a", "template": "b"}}, "cutouts"),
    ({"stamp_size": 4}, "stamp_size"), ({"compression": "bz2"}, "compression"), ({"scores": {"rb": 3}}, "scores"),
    ({"cutout_forms": ["png"]}, "cutout_forms"), ({"colour": "red"}, "settings among"),
    ({"schema_names": []}, "schema_names")])
def test_bad_layout_declarations_are_errors_naming_file_layout_and_setting(tmp_path, change, message):
    import yaml

    from rbda.alerts.layouts import read_layouts

    layout = {"name": "mine", "framing": "container", "schema_names": ["*"], "id": "candid",
              "cutouts": {"science": "s", "template": "t", "difference": "d"}, "cutout_forms": ["bytes"],
              "compression": "gzip", "stamp_size": 63} | change
    path = tmp_path / "layouts.yaml"
    path.write_text(yaml.safe_dump({"layouts": [layout]}))
    with pytest.raises(InputFileError) as info:
        read_layouts(path)
    assert str(path) in str(info.value) and "layout mine" in str(info.value) and message in str(info.value)


@pytest.mark.realsamples
def test_real_ztf_rubin_decam_and_atlas_packets_scored_together_bad_ones_listed(trained, real_samples, tmp_path):
    """Every real packet of the three brokers (and the real ATLAS stamps as an ATLAS packet) is read by its
    declared layout; Rubin's reliability and ZTF's
    rb beside p_real. A truncated Rubin packet, an unknown schema id and a packet without a cutout field are
    listed (file and field) while the rest are scored."""
    from rbda.alerts.layouts import package_folder

    if package_folder("lsst.alert.packet") is None:
        pytest.skip("lsst-alert-packet (Rubin's schema files) is not installed")
    rubin = real_samples / "lsst_avro" / "7912941781254298.avro"
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "truncated.avro").write_bytes(rubin.read_bytes()[:70000])
    (bad / "unknown_id.avro").write_bytes(b"\x00" + (123456).to_bytes(4, "big") + rubin.read_bytes()[5:])
    write_packets(bad / "nocutout.avro", [packet(77, np.random.default_rng(4), cutoutScience=None)])
    # the real ATLAS stamps as an ATLAS packet: plain FITS in {fileName, stampData}, no template
    stamp = {kind: gzip.decompress((real_samples / "atlas" / f"01a59897o0020c_000002_{kind}.fits.gz").read_bytes())
             for kind in ("istamp", "dstamp")}
    write_packets(tmp_path / "atlas.avro", [{
        "objectId": "01a59897o0020c_000002", "candidate": {"candid": 2, "rb": None, "drb": None},
        "cutoutScience": {"fileName": "i", "stampData": stamp["istamp"]}, "cutoutTemplate": None,
        "cutoutDifference": {"fileName": "d", "stampData": stamp["dstamp"]}}])
    out = tmp_path / "scores.parquet"
    inputs = [str(real_samples / d) for d in ("ztf_avro", "lsst_avro", "decam_avro")] + [str(bad),
                                                                                          str(tmp_path / "atlas.avro")]
    assert main(["predict", "--model", str(trained["model"]), "--input", *inputs, "--output", str(out),
                 "--skip-bad"]) == 0
    table = pq.read_table(out).to_pydict()
    assert sorted(set(table["layout"])) == ["atlas", "decam", "rubin", "ztf"] and len(table["candid"]) == 23
    assert table["objectId"][table["layout"].index("atlas")] == "01a59897o0020c_000002"
    row = table["layout"].index("rubin")
    assert table["candid"][row] == "7912941781254298" and table["reliability"][row] == pytest.approx(0.11248, abs=1e-4)
    assert np.isnan(table["rb"][row]) and not np.isnan(table["rb"][table["layout"].index("ztf")])
    listed = pcsv.read_csv(tmp_path / "scores.bad.csv", convert_options=pcsv.ConvertOptions(
        column_types={"candid": "string"})).to_pydict()
    reasons = dict(zip([Path(f).name for f in listed["file"]], listed["reason"]))
    assert "truncated" in reasons["truncated.avro"] and "schema id 900" in reasons["truncated.avro"]
    assert "schema id 123456 is in none" in reasons["unknown_id.avro"] and "900" in reasons["unknown_id.avro"]
    assert "no cutoutScience" in reasons["nocutout.avro"]


def _layout_stamps(layout, n: int, seed: int):
    """(n, 3, S, S) float32 template/science/difference stamps of the layout's size (template = science -
    difference for a layout whose packets carry none, as its reader derives it)."""
    rng = np.random.default_rng(seed)
    stamps = rng.normal(100.0, 10.0, (n, 3, layout.stamp_size, layout.stamp_size)).astype(np.float32)
    if layout.missing_template == "science_minus_difference":
        stamps[:, 0] = stamps[:, 1] - stamps[:, 2]
    return stamps


def _every_layout():
    from rbda.alerts.layouts import load_layouts, package_folder

    return [pytest.param(layout, marks=pytest.mark.skipif(
        layout.schema is not None and layout.schema.package and package_folder(layout.schema.package) is None,
        reason=f"{layout.schema.package if layout.schema else ''} (the layout's schema files) is not installed"),
        id=layout.name) for layout in load_layouts()]


@pytest.mark.parametrize("layout", _every_layout())
def test_every_declared_layout_reads_back_the_packets_written_in_it(layout, tmp_path):
    """rbda packets writes stamps as packets of a declared layout (framing, schema, cutout form and
    compression from the declaration alone); the reader gives back the same pixels, ids and layout."""
    from rbda.alerts.writer import TRUTH, write_packets
    from rbda.ingest.readers.base import RawBatch

    stamps = _layout_stamps(layout, 5, seed=3)
    batch = RawBatch(images=stamps, ids=np.array([f"s{i}" for i in range(5)]),
                     classes=np.array(["real", "bogus"] * 2 + ["real"]), labels=np.array([1, 0, 1, 0, 1], np.int8),
                     source="memory")
    summary = write_packets([batch], layout, tmp_path / "packets")
    assert summary["packets"] == 5 and (summary["schema_id"] is not None) == (layout.framing == "confluent")
    truth = pcsv.read_csv(tmp_path / "packets" / TRUTH, convert_options=pcsv.ConvertOptions(
        column_types={"candid": "string"})).to_pydict()
    assert truth["id"] == [f"s{i}" for i in range(5)] and truth["label"] == [1, 0, 1, 0, 1]
    read = [b for b in AlertReader([tmp_path / "packets"], batch_size=100).batches()]
    candids = np.concatenate([b.columns["candid"] for b in read]).tolist()
    got = np.concatenate([b.raw.images for b in read])
    assert set(np.concatenate([b.columns["layout"] for b in read])) == {layout.name}
    order = [candids.index(c) for c in truth["candid"]]
    np.testing.assert_array_equal(got[order], stamps)
    # inputs that hold no stamp: an error naming them, and no output folder
    with pytest.raises(RbdaError, match=re.escape(f"raw/: stamps to write as {layout.label} packets, found none")):
        write_packets([], layout, tmp_path / "none", inputs="raw/")
    assert not (tmp_path / "none").exists()


def test_packets_stop_reading_at_the_limit(tmp_path):
    """write_packets takes the first ``limit`` stamps and reads no batch past them."""
    from rbda.alerts.layouts import load_layouts
    from rbda.alerts.writer import write_packets
    from rbda.ingest.readers.base import RawBatch

    layout = {lay.name: lay for lay in load_layouts()}["ztf"]
    pulled = []

    def batches():
        for b in range(5):
            pulled.append(b)
            yield RawBatch(images=_layout_stamps(layout, 4, seed=b), ids=np.array([f"{b}-{i}" for i in range(4)]),
                           classes=np.array(["real"] * 4), labels=np.ones(4, np.int8), source="memory")

    assert write_packets(batches(), layout, tmp_path / "out", limit=6)["packets"] == 6
    assert pulled == [0, 1]
    assert len(list((tmp_path / "out").glob("*.avro"))) == 6


def test_rubin_packets_of_a_declared_survey_score_as_its_raw_stamps(trained, tmp_path, capsys):
    """A Rubin-like survey declared in a file (30x30 stamps, science first), its stamps written as Rubin packets
    (Confluent framing, the lsst-alert-packet schema) by rbda packets: rbda predict scores the packets exactly
    as it scores the raw stamps. Stamps of another size and an output folder holding the input are refused."""
    from rbda.alerts.layouts import package_folder
    from test_surveys import WINTER, write_declarations, write_stamps

    if package_folder("lsst.alert.packet") is None:
        pytest.skip("lsst-alert-packet (Rubin's schema files) is not installed")
    declarations = write_declarations(tmp_path / "surveys.json", lsstlike=WINTER | {"stamp_size": 30})
    head = ["--surveys", str(declarations)]
    raw = tmp_path / "raw"
    raw.mkdir()
    write_stamps(raw / "a.npz", 60, 30, seed=5, classes=True)
    packets = tmp_path / "packets"
    assert main([*head, "packets", "--survey", "lsstlike", "--input", str(raw), "--layout", "rubin",
                 "--schema-id", "900", "--out", str(packets)]) == 0  # schema 9.0, as the real packet
    assert (packets / "0000059.avro").read_bytes()[:5] == b"\x00" + (900).to_bytes(4, "big")
    from_packets, from_raw = tmp_path / "packets.parquet", tmp_path / "raw.parquet"
    assert main(["predict", "--model", str(trained["model"]), "--input", str(packets),
                 "--output", str(from_packets)]) == 0
    assert main([*head, "predict", "--model", str(trained["model"]), "--survey", "lsstlike", "--input", str(raw),
                 "--output", str(from_raw)]) == 0
    scored = pq.read_table(from_packets).to_pydict()
    reference = pq.read_table(from_raw).to_pydict()
    truth = pcsv.read_csv(packets / "truth.csv", convert_options=pcsv.ConvertOptions(
        column_types={"candid": "string"})).to_pydict()
    by_id = dict(zip(reference["id"], reference["p_real"]))
    to_id = dict(zip(truth["candid"], truth["id"]))
    assert set(scored["layout"]) == {"rubin"} and len(scored["candid"]) == 60
    assert [by_id[to_id[c]] for c in scored["candid"]] == scored["p_real"]
    assert all(np.isnan(scored["reliability"]))  # Rubin's own score is null in these packets
    # refusals, each naming what was expected
    capsys.readouterr()
    assert main([*head, "packets", "--survey", "lsstlike", "--input", str(raw), "--layout", "ztf",
                 "--out", str(tmp_path / "ztf")]) != 0
    assert "63x63" in capsys.readouterr().err and not (tmp_path / "ztf").exists()
    assert main([*head, "packets", "--survey", "lsstlike", "--input", str(raw), "--layout", "rubin",
                 "--out", str(tmp_path)]) != 0
    assert "--out" in capsys.readouterr().err and (raw / "a.npz").is_file()
    assert main([*head, "packets", "--survey", "lsstlike", "--input", str(raw), "--layout", "rubin",
                 "--schema-id", "123456", "--out", str(tmp_path / "u")]) != 0
    assert "schema id" in (err := capsys.readouterr().err) and "900" in err and not (tmp_path / "u").exists()
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("keep me")
    assert main([*head, "packets", "--survey", "lsstlike", "--input", str(raw), "--layout", "rubin",
                 "--out", str(foreign)]) != 0
    assert "not an earlier output" in capsys.readouterr().err and (foreign / "keep.txt").is_file()
    assert main([*head, "packets", "--survey", "lsstlike", "--input", str(raw), "--layout", "rubin", "--limit", "7",
                 "--out", str(packets)]) == 0  # its own earlier output is replaced
    assert len(list(packets.glob("*.avro"))) == 7
    swapped = tmp_path / "swapped"  # the config's class map, as preprocessing gets it, labels the truth
    assert main([*head, "packets", "--survey", "lsstlike", "--input", str(raw), "--layout", "rubin", "--limit", "7",
                 "--real-classes", "artefact", "--bogus-classes", "transient", "--out", str(swapped)]) == 0
    relabelled = pcsv.read_csv(swapped / "truth.csv").to_pydict()
    assert relabelled["label"] == [int(c == "artefact") for c in relabelled["class"]] and len(set(relabelled["label"])) == 2
    assert main([*head, "packets", "--survey", "lsstlike", "--input", str(raw), "--layout", "nosuch",
                 "--out", str(tmp_path / "n")]) != 0
    assert "decam" in capsys.readouterr().err
