"""`rbda predict`: alert packets, Parquet and raw files -> scores; model files that describe themselves; bad input."""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import fastavro
import numpy as np
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest
import torch
from astropy.io import fits

from rbda.cli import main
from rbda.errors import InputFileError
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


def test_files_from_before_the_preprocessing_version_are_version_1(trained, tmp_path):
    from rbda.learn.models import load_model_file

    payload = torch.load(trained["model"], weights_only=True)
    for key in ("preprocessing", "preprocessing_settings", "weights_sha256", "training"):
        payload.pop(key)
    torch.save(payload, tmp_path / "legacy.pt")
    assert PREPROCESSING_VERSION == 1
    assert load_model_file(tmp_path / "legacy.pt")["preprocessing"] == 1


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

def test_packets_to_scores_with_ids_and_ztf_scores(trained, tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "alerts"
    folder.mkdir()
    write_packets(folder / "a.avro", [packet(1, rng), packet(2, rng, size=61)], codec="snappy")
    write_packets(folder / "b.avro", [packet(3, rng, candidate={"candid": 3, "rb": 0.9, "drb": 0.8})])
    (folder / "notes.txt").write_text("not a packet")
    out = tmp_path / "scores.csv"
    assert main(["predict", "--model", str(trained["mme"]), "--input", str(folder), "--output", str(out)]) == 0
    table = pcsv.read_csv(out).to_pydict()
    assert sorted(table["candid"]) == [1, 2, 3]
    row = table["candid"].index(3)
    assert table["objectId"][row] == "ZTF3" and table["rb"][row] == pytest.approx(0.9)
    assert table["drb"][row] == pytest.approx(0.8)
    assert table["drb"][table["candid"].index(1)] is None  # null drb stays missing
    assert set(table["model_method"]) == {"mme"}
    assert not (tmp_path / "scores.bad.csv").exists()


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
    assert scored["candid"].count(10) == 6 and len(scored["candid"]) > 6
    assert all(20 <= c < 30 for c in scored["candid"] if c != 10)


def test_atlas_packets_get_template_science_minus_difference(tmp_path):
    rng = np.random.default_rng(2)
    atlas = packet(5, rng, size=61, compress=False, template=False)
    reader = AlertReader([write_packets(tmp_path / "atlas.avro", [atlas])])
    (batch,) = list(reader.batches())
    science = fits.getdata(io.BytesIO(atlas["cutoutScience"]["stampData"])).astype(np.float32)
    difference = fits.getdata(io.BytesIO(atlas["cutoutDifference"]["stampData"])).astype(np.float32)
    np.testing.assert_array_equal(batch.raw.images[0, 0], science - difference)
    np.testing.assert_array_equal(batch.raw.images[0, 1], science)
    assert batch.columns["candid"].tolist() == [5]


def test_alert_reader_needs_packets(tmp_path):
    (tmp_path / "x.txt").write_text("x")
    with pytest.raises(InputFileError, match=r"\*\.avro"):
        AlertReader([tmp_path])


# --- real samples ---------------------------------------------------------------------------------

@pytest.mark.realsamples
def test_real_ztf_packets_to_scores(trained, real_samples, tmp_path):
    folder = real_samples / "ztf_avro"
    out = tmp_path / "scores.parquet"
    assert main(["predict", "--model", str(trained["model"]), "--input", str(folder), "--output", str(out),
                 "--skip-bad"]) == 0
    table = pq.read_table(out).to_pydict()
    bad = pcsv.read_csv(tmp_path / "scores.bad.csv").to_pydict()
    assert len(table["candid"]) + len(bad["file"]) == 20
    assert len(table["candid"]) >= 19  # one real packet has a 48x63 edge cutout, listed as bad
    rb = {}
    for path in folder.glob("*.avro"):
        with open(path, "rb") as fh:
            for p in fastavro.reader(fh):
                rb[p["candidate"]["candid"]] = (p["objectId"], p["candidate"]["rb"], p["candidate"]["drb"])
    for candid, object_id, score, drb in zip(table["candid"], table["objectId"], table["rb"], table["drb"]):
        assert rb[candid][0] == object_id and rb[candid][1] == pytest.approx(score)
        assert (drb is None and rb[candid][2] is None) or rb[candid][2] == pytest.approx(drb)


@pytest.mark.realsamples
def test_raw_survey_files_are_scored_with_ids_and_labels(trained, real_samples, tmp_path):
    out = tmp_path / "ztf.csv"
    assert main(["predict", "--model", str(trained["model"]), "--survey", "ztf", "--input",
                 str(real_samples / "ztf_alerce" / "small_dataset.pkl"), "--output", str(out)]) == 0
    table = pcsv.read_csv(out).to_pydict()
    assert len(table["id"]) == 30 and set(table["label"]) == {1}


# ---------------------------------------------------------------- the Avro container framing


@pytest.mark.parametrize("codec", ["null", "deflate", "snappy", "bzip2"])
def test_container_reader_decodes_what_fastavro_decodes(tmp_path, codec):
    """rbda's framing (header, blocks, sync) + fastavro's record decoding = fastavro.reader, projected
    to the fields rbda uses; bzip2 (not framed here) goes through fastavro.reader itself."""
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
        assert [p["candidate"] for p in got] == [{k: v for k, v in p["candidate"].items() if k in ("candid", "rb", "drb")}
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
    for codec in ("deflate", "snappy"):
        reader = AlertReader([_damaged(tmp_path, f"bomb-{codec}", lambda raw: raw, codec=codec)], skip_bad=True)
        assert sum(len(b) for b in reader.batches()) == 0
        assert "more than 1000 bytes" in reader.bad[0].reason, reader.bad[0].reason
