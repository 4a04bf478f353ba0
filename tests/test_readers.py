"""Survey readers on synthetic raw files, on the real samples, and on bad input."""

from __future__ import annotations

import gzip
import inspect
import io
import re
import shutil
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits
from PIL import Image

from data_helpers import hits_chunk, write_pickle, write_python2_pickle
from rbda.errors import InputFileError, SettingError
from rbda.ingest.preprocess import convert_survey
from rbda.ingest.safe_pickle import RefusedPickleGlobal
from rbda.ingest.readers import ClassMap, open_reader
from rbda.ingest.synth import synthesize
from rbda.ingest.synth.writers import fits_bytes


def batches(reader):
    return list(reader.batches())


def usable(reader):
    """(images concatenated over stackable batches, ids, classes, labels) for 21..63 square shapes."""
    got = [b for b in batches(reader) if b.drop_reason is None and b.images.shape[-1] == b.images.shape[-2]]
    return (np.concatenate([b.images.astype(np.float32) for b in got]), np.concatenate([b.ids for b in got]),
            np.concatenate([b.classes for b in got]), np.concatenate([b.labels for b in got]))


# -- HiTS --------------------------------------------------------------------

def test_hits_python2_chunks(tmp_path):
    chunks = [hits_chunk(30, seed) for seed in range(3)]
    for k, chunk in enumerate(chunks):
        write_python2_pickle(tmp_path / f"chunk_{k}.pkl", chunk)
    (tmp_path / "all_chunks.tar.gz").write_bytes(b"archive left beside the chunks")
    reader = open_reader("hits", [tmp_path])
    got = batches(reader)
    assert [len(b) for b in got] == [30, 30, 30]  # one batch per chunk
    assert reader.ignored.as_dict() == {"count": 1, "examples": [str(tmp_path / "all_chunks.tar.gz")]}
    first = got[0]
    assert first.images.shape == (30, 3, 21, 21)
    np.testing.assert_array_equal(first.images[:, 0].reshape(30, 441), chunks[0]["temp_images"])
    np.testing.assert_array_equal(first.images[:, 1].reshape(30, 441), chunks[0]["sci_images"])
    np.testing.assert_array_equal(first.images[:, 2].reshape(30, 441), chunks[0]["diff_images"])
    np.testing.assert_array_equal(first.labels, chunks[0]["labels"])
    assert list(first.classes[:3]) == [["bogus", "real"][v] for v in chunks[0]["labels"][:3]]
    assert first.ids[4] == "chunk_0.pkl:4"


@pytest.mark.parametrize("mutate, message", [
    (lambda c: c.pop("diff_images"), "missing \\['diff_images'\\]"),
    (lambda c: c.update(sci_images=c["sci_images"][:, :400]), "'sci_images'"),
    (lambda c: c.update(temp_images=c["temp_images"][:-1]), "'temp_images'"),
    (lambda c: c["labels"].__setitem__(7, 2), "row 7.*labels 0 or 1"),
])
def test_hits_bad_chunk_names_file_and_leaves_no_output(tmp_path, mutate, message):
    raw = tmp_path / "raw"
    raw.mkdir()
    write_python2_pickle(raw / "chunk_0.pkl", hits_chunk(20))
    bad = hits_chunk(20, seed=1)
    mutate(bad)
    write_python2_pickle(raw / "chunk_1.pkl", bad)
    out = tmp_path / "out"
    with pytest.raises(InputFileError, match=f"chunk_1.pkl.*{message}"):
        convert_survey("hits", [raw], out / "hits.parquet", out / "hits.report.json")
    assert not out.exists() or list(out.iterdir()) == []


@pytest.mark.parametrize("content", [b"", None])
def test_hits_empty_or_truncated_chunk(tmp_path, content):
    data = pytest.importorskip("pickle").dumps(hits_chunk(10), protocol=2)
    (tmp_path / "chunk.pkl").write_bytes(content if content is not None else data[: len(data) // 2])
    with pytest.raises(InputFileError, match="chunk.pkl.*(empty, truncated or corrupt|not an allowed)"):
        batches(open_reader("hits", [tmp_path / "chunk.pkl"]))


def test_hits_chunk_that_runs_code_is_refused(tmp_path):
    import os

    class Evil:
        def __reduce__(self):
            return (os.system, ("touch pwned",))

    (tmp_path / "raw").mkdir()
    write_pickle(tmp_path / "raw" / "chunk.pkl", {**hits_chunk(3), "labels": Evil()}, protocol=2)
    with pytest.raises(RefusedPickleGlobal, match="chunk.pkl.*system"):
        convert_survey("hits", [tmp_path / "raw"], tmp_path / "out.parquet")
    assert not (tmp_path / "out.parquet").exists()


# -- DES ---------------------------------------------------------------------

def write_des_triplet(folder, id_, images):
    for prefix, image in zip(("temp", "srch", "diff"), images):
        Image.fromarray(image, mode="L").save(folder / f"{prefix}{id_}.gif")


@pytest.mark.realsamples
def test_real_decam_stamps_through_gif_reader(real_samples, tmp_path):
    stamps = np.load(real_samples / "decam" / "test_stamps.npy")  # (30, 3, 51, 51) search, template, difference
    night = tmp_path / "stamps" / "20190101"
    night.mkdir(parents=True)
    ids = [str(100 + i) for i in range(len(stamps))]
    for id_, (search, template, difference) in zip(ids, stamps):
        write_des_triplet(night, id_, [template, search, difference])
    object_types = ["0" if i % 3 else "1" for i in range(len(ids))]
    (tmp_path / "autoscan_features.3.csv").write_text(
        "# a comment\n# another\nID,OBJECT_TYPE,BAND\n" + "".join(f"{i},{t},r\n" for i, t in zip(ids, object_types)))
    images, got_ids, classes, labels = usable(open_reader("des", [tmp_path]))
    assert list(got_ids) == ids
    np.testing.assert_array_equal(images, stamps[:, [1, 0, 2]].astype(np.float32))
    assert list(classes) == object_types
    np.testing.assert_array_equal(labels, [1 if t == "0" else 0 for t in object_types])


def test_des_fits_layout(tmp_path):
    synthesize("des", 40, seed=3, out=tmp_path / "gif", layout="gif")
    synthesize("des", 40, seed=3, out=tmp_path / "fits", layout="fits")
    gif = usable(open_reader("des", [tmp_path / "gif"]))
    fit = usable(open_reader("des", [tmp_path / "fits"]))
    assert open_reader("des", [tmp_path / "fits"]).format == "fits"
    np.testing.assert_array_equal(gif[0], fit[0])
    np.testing.assert_array_equal(gif[1], fit[1])


def test_des_missing_image_names_it(tmp_path):
    synthesize("des", 10, seed=1, out=tmp_path / "raw")
    victim = sorted((tmp_path / "raw").rglob("diff*.gif"))[4]
    victim.unlink()
    with pytest.raises(InputFileError, match=f"{victim.name}.*diff image"):
        open_reader("des", [tmp_path / "raw"])


def test_des_same_id_in_two_folders(tmp_path):
    synthesize("des", 6, seed=1, out=tmp_path / "raw")
    first = sorted((tmp_path / "raw").rglob("srch*.gif"))[0]
    other = tmp_path / "raw" / "stamps" / "elsewhere"
    other.mkdir()
    shutil.copy(first, other / first.name)
    with pytest.raises(InputFileError, match=f"{first.name}.*already has"):
        open_reader("des", [tmp_path / "raw"])


def test_des_counts_stamps_without_labels_and_labels_without_stamps(tmp_path, caplog):
    synthesize("des", 12, seed=1, out=tmp_path / "raw")
    csv = tmp_path / "raw" / "autoscan_features.3.csv"
    lines = csv.read_text().splitlines()
    header = [line for line in lines if line.startswith("#") or line.startswith("ID")]
    data = [line for line in lines if line not in header]
    csv.write_text("\n".join(header + data[2:] + ["99999999,1,r,0"]) + "\n")
    (tmp_path / "raw" / "stamps" / "notes.txt").write_text("not a stamp")
    caplog.set_level("WARNING", logger="rbda.ingest.readers.des")
    report = convert_survey("des", [tmp_path / "raw"], tmp_path / "des.parquet")
    assert report["read"] == 10
    unlabelled = sorted((line.split(",")[0] for line in data[:2]), key=int)
    assert report["reader"] == {"stamps_without_label_row": 2, "stamps_without_label_row_ids": unlabelled,
                                "label_rows_without_stamps": 1, "label_rows_without_stamps_ids": ["99999999"]}
    logged = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("2 stamp triplet(s) have no row" in m and f"IDs {unlabelled[0]}, {unlabelled[1]})" in m for m in logged)
    assert any("1 row(s) have no stamps" in m and "IDs 99999999)" in m for m in logged)
    assert report["ignored_files"] == {"count": 2, "examples": [str(tmp_path / "raw" / "synth.json"),
                                                                str(tmp_path / "raw" / "stamps" / "notes.txt")]}


@pytest.mark.parametrize("csv_text, message", [
    ("# only comments\n", "empty"),
    ("ID,TYPE\n1,0\n", "missing \\['OBJECT_TYPE'\\]"),
    ("ID,OBJECT_TYPE\n{id},7\n", "class '7' is neither real"),
])
def test_des_bad_labels(tmp_path, csv_text, message):
    synthesize("des", 4, seed=1, out=tmp_path / "raw")
    some_id = sorted((tmp_path / "raw").rglob("srch*.gif"))[0].name[4:-4]
    (tmp_path / "raw" / "autoscan_features.3.csv").write_text(csv_text.format(id=some_id))
    with pytest.raises(InputFileError, match=f"autoscan_features.3.csv.*{message}"):
        convert_survey("des", [tmp_path / "raw"], tmp_path / "des.parquet")
    assert not (tmp_path / "des.parquet").exists()


def test_des_corrupt_gif(tmp_path):
    synthesize("des", 4, seed=1, out=tmp_path / "raw")
    victim = sorted((tmp_path / "raw").rglob("srch*.gif"))[2]
    victim.write_bytes(victim.read_bytes()[:20])
    with pytest.raises(InputFileError, match=f"{victim.name}.*readable GIF"):
        convert_survey("des", [tmp_path / "raw"], tmp_path / "des.parquet")
    assert not (tmp_path / "des.parquet").exists()


# -- ZTF ---------------------------------------------------------------------

def decode(blob):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fits.verify.VerifyWarning)  # ZTF cutouts' SIMPLE card
        with fits.open(io.BytesIO(gzip.decompress(blob))) as hdus:
            return hdus[0].data.astype(np.float32)


@pytest.mark.realsamples
def test_real_ztf_dataframe(real_samples):
    path = real_samples / "ztf_alerce" / "small_dataset.pkl"
    frame = pd.read_pickle(path)  # trusted reference reading of the same file
    images, ids, classes, labels = usable(open_reader("ztf", [path]))
    assert list(ids) == list(frame["oid"]) and list(classes) == list(frame["class"])
    assert labels.tolist() == [1] * 30  # AGN, SN, VS, asteroid are all real
    row = 7
    for channel, column in enumerate(("cutoutTemplate", "cutoutScience", "cutoutDifference")):
        np.testing.assert_array_equal(images[row, channel], decode(frame[column].iloc[row]))


@pytest.mark.realsamples
def test_real_ztf_stamp_with_nan_pixels(real_samples, tmp_path):
    report = convert_survey("ztf", [real_samples / "ztf_alerce"], tmp_path / "ztf.parquet")
    assert report["read"] == 31 and report["kept"] == 31
    from rbda.ingest.store import load_survey

    assert np.isfinite(load_survey(tmp_path / "ztf.parquet").stamps).all()


def test_ztf_dict_and_dataframe_forms_agree(tmp_path):
    synthesize("ztf", 300, seed=5, out=tmp_path / "frame", layout="dataframe")
    synthesize("ztf", 300, seed=5, out=tmp_path / "dict", layout="dict")
    frame = usable(open_reader("ztf", [tmp_path / "frame"]))
    as_dict = usable(open_reader("ztf", [tmp_path / "dict"]))
    keep = np.isin(frame[1], as_dict[1])  # the dict form holds only the 63x63 stamps
    assert keep.sum() == len(as_dict[1]) > 250
    np.testing.assert_array_equal(frame[0][keep], as_dict[0])
    np.testing.assert_array_equal(frame[2][keep], as_dict[2])


def test_ztf_dict_integer_labels_map_to_alerce_names(tmp_path):
    images = np.zeros((5, 63, 63, 3), np.float32)
    images[..., 0], images[..., 1], images[..., 2] = 1.0, 2.0, 3.0  # science, template, difference
    path = write_pickle(tmp_path / "set.pkl", {"images": images, "labels": np.arange(5), "features": None})
    got = usable(open_reader("ztf", [path]))
    assert list(got[2]) == ["AGN", "SN", "VS", "asteroid", "bogus"]
    assert got[3].tolist() == [1, 1, 1, 1, 0]
    assert got[0][0, :, 0, 0].tolist() == [2.0, 1.0, 3.0]  # template, science, difference
    assert got[1][3] == "set.pkl:3"


def earlysn_pickle(path, images, labels):
    """A pickle of EarlySN's layout (``ALERCE_stamps_2020.pkl``): capitalised keys, metadata beside."""
    metadata = np.arange(len(labels) * 2, dtype=np.float64).reshape(len(labels), 2)
    return write_pickle(path, {"Images": images, "Labels": np.asarray(labels), "Metadata": metadata})


def test_ztf_earlysn_layout(tmp_path):
    images = np.zeros((5, 63, 63, 3), np.float32)
    images[..., 0], images[..., 1], images[..., 2] = 1.0, 2.0, 3.0  # science, template, difference
    images[4, 10, 20, 2] = 7.0
    path = earlysn_pickle(tmp_path / "ALERCE_stamps_2020.pkl", images, [4, 3, 2, 1, 0])
    got = usable(open_reader("ztf", [path]))
    assert list(got[2]) == ["bogus", "asteroid", "VS", "SN", "AGN"]
    assert got[3].tolist() == [0, 1, 1, 1, 1]
    assert got[0][0, :, 0, 0].tolist() == [2.0, 1.0, 3.0]  # template, science, difference
    assert got[0][4, 2, 10, 20] == 7.0  # (row, column) kept, difference channel last
    assert got[1][2] == "ALERCE_stamps_2020.pkl:2"


def test_ztf_earlysn_layout_list_of_stamps_drops_non_square(tmp_path):
    square = [np.full((63, 63, 3), k, np.float32) for k in range(3)]
    path = earlysn_pickle(tmp_path / "set.pkl", [square[0], np.zeros((63, 50, 3)), square[1], square[2]], [1, 1, 0, 4])
    report = convert_survey("ztf", [path], tmp_path / "ztf.parquet")
    assert report["read"] == 4 and report["kept"] == 3 and report["dropped_total"] == 1
    from rbda.ingest.store import load_survey

    assert sorted(load_survey(tmp_path / "ztf.parquet").classes.tolist()) == ["AGN", "SN", "bogus"]


@pytest.mark.parametrize("content, message", [
    ({"Images": np.zeros((2, 63, 63, 3)), "Labels": np.array([0, 9]), "Metadata": None}, "row 1.*ALeRCE label"),
    ({"Images": [np.zeros((63, 63))], "Labels": np.array([0])}, "item 0.*H x W x 3"),
    ({"Images": np.zeros((1, 63, 63, 3)), "Labels": np.array([0]), "labels": np.array([1])}, "got both"),
    ({"images": np.zeros((2, 63, 63, 3)), "labels": np.array([0, 9])}, "row 1.*ALeRCE label"),
    ({"images": np.zeros((3, 63, 63)), "labels": np.array([0, 1, 2])}, "'images' of shape"),
    ({"labels": np.array([0])}, "missing \\['images'\\]"),
    ([1, 2, 3], "a ZTF pickle"),
])
def test_ztf_bad_dict(tmp_path, content, message):
    path = write_pickle(tmp_path / "set.pkl", content)
    with pytest.raises(InputFileError, match=f"set.pkl.*{message}"):
        convert_survey("ztf", [path], tmp_path / "ztf.parquet")
    assert not (tmp_path / "ztf.parquet").exists()


def test_ztf_corrupt_cutout_names_row_and_oid(tmp_path):
    synthesize("ztf", 20, seed=2, out=tmp_path / "raw")
    frame = pd.read_pickle(tmp_path / "raw" / "ztf_stamps.pkl")
    frame.loc[frame.index[6], "cutoutDifference"] = b"\x1f\x8bnot gzip"
    frame.to_pickle(tmp_path / "raw" / "ztf_stamps.pkl")
    with pytest.raises(InputFileError, match=f"row 6, oid {frame['oid'].iloc[6]}, cutoutDifference"):
        convert_survey("ztf", [tmp_path / "raw"], tmp_path / "ztf.parquet")


def test_ztf_unknown_class_names_file_and_class(tmp_path):
    synthesize("ztf", 20, seed=2, out=tmp_path / "raw")
    frame = pd.read_pickle(tmp_path / "raw" / "ztf_stamps.pkl")
    frame.loc[frame.index[3], "class"] = "galaxy"
    frame.to_pickle(tmp_path / "raw" / "ztf_stamps.pkl")
    with pytest.raises(InputFileError, match="ztf_stamps.pkl.*class 'galaxy' is neither"):
        open_reader("ztf", [tmp_path / "raw"]).batches().__next__()


# -- ATLAS -------------------------------------------------------------------

@pytest.mark.realsamples
def test_real_atlas_pair(real_samples, tmp_path):
    kast = tmp_path / "kast"
    kast.mkdir()
    for path in (real_samples / "atlas").glob("*.fits.gz"):
        shutil.copy(path, kast)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the non-conforming SIMPLE card is handled, not warned about
        images, ids, classes, labels = usable(open_reader("atlas", [tmp_path]))
    assert list(ids) == ["01a59897o0020c_000002"] and list(classes) == ["kast"] and labels.tolist() == [1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        science = fits.getdata(kast / "01a59897o0020c_000002_istamp.fits.gz", ignore_missing_simple=True)
        difference = fits.getdata(kast / "01a59897o0020c_000002_dstamp.fits.gz", ignore_missing_simple=True)
    assert images.shape == (1, 3, 61, 61)
    np.testing.assert_array_equal(images[0, 1], science)
    np.testing.assert_array_equal(images[0, 2], difference)
    np.testing.assert_array_equal(images[0, 0], science.astype(np.float32) - difference.astype(np.float32))


def test_atlas_pickle_and_folder_forms_agree(tmp_path):
    synthesize("atlas", 60, seed=4, out=tmp_path / "pkl", layout="pickle")
    synthesize("atlas", 60, seed=4, out=tmp_path / "dir", layout="folder")
    a = usable(open_reader("atlas", [tmp_path / "pkl"]))
    b = usable(open_reader("atlas", [tmp_path / "dir"]))
    order_a, order_b = np.argsort(a[1]), np.argsort(b[1])
    np.testing.assert_array_equal(a[1][order_a], b[1][order_b])
    np.testing.assert_array_equal(a[0][order_a], b[0][order_b])
    assert set(a[2]) == {"burn", "cr", "kast", "noise", "spike", "streak"}


def test_atlas_istamp_without_dstamp(tmp_path):
    synthesize("atlas", 20, seed=4, out=tmp_path / "raw", layout="folder")
    victim = sorted((tmp_path / "raw").rglob("*_dstamp.fits.gz"))[3]
    victim.unlink()
    orphan = victim.name.replace("_dstamp", "_istamp")
    with pytest.raises(InputFileError, match=f"{orphan}.*dstamp partner"):
        open_reader("atlas", [tmp_path / "raw"])


def test_atlas_unknown_class_folder_and_mapping_override(tmp_path):
    synthesize("atlas", 20, seed=4, out=tmp_path / "raw", layout="folder")
    (tmp_path / "raw" / "cr").rename(tmp_path / "raw" / "cosmic")
    with pytest.raises(InputFileError, match="class 'cosmic' is neither real"):
        open_reader("atlas", [tmp_path / "raw"])
    thesis = ClassMap.of(real=["cr", "kast", "cosmic"], bogus=["burn", "noise", "spike", "streak"])
    _, _, classes, labels = usable(open_reader("atlas", [tmp_path / "raw"], class_map=thesis))
    assert set(classes[labels == 1]) == {"cosmic", "kast"}


def test_atlas_pickle_wrong_shapes(tmp_path):
    path = write_pickle(tmp_path / "atlas.pkl", {"kast": {"science": np.zeros((3, 61, 61)),
                                                         "difference": np.zeros((2, 61, 61))}})
    with pytest.raises(InputFileError, match="atlas.pkl \\(class 'kast'\\).*same shape|one shape"):
        batches(open_reader("atlas", [path]))


def test_atlas_mismatched_pair_shapes_dropped_and_counted(tmp_path):
    raw = tmp_path / "raw"
    kast = raw / "kast"
    kast.mkdir(parents=True)
    gen = np.random.default_rng(0)
    for name, (shape_i, shape_d) in {"a": ((61, 61), (61, 61)), "b": ((61, 61), (55, 55))}.items():
        (kast / f"{name}_istamp.fits").write_bytes(fits_bytes(gen.normal(size=shape_i)))
        (kast / f"{name}_dstamp.fits").write_bytes(fits_bytes(gen.normal(size=shape_d)))
    (raw / "burn").mkdir()
    for name in ("c",):
        (raw / "burn" / f"{name}_istamp.fits").write_bytes(fits_bytes(gen.normal(size=(61, 61))))
        (raw / "burn" / f"{name}_dstamp.fits").write_bytes(fits_bytes(gen.normal(size=(61, 61))))
    report = convert_survey("atlas", [raw], tmp_path / "atlas.parquet")
    assert report["kept"] == 2 and report["dropped"] == {"mismatched_channel_shapes": 1}


# -- detection and settings ----------------------------------------------------

def test_unknown_format_and_survey_are_setting_errors(tmp_path):
    with pytest.raises(SettingError, match="format"):
        open_reader("des", [tmp_path], fmt="pickle")
    with pytest.raises(SettingError, match="survey"):
        open_reader("sdss", [tmp_path])
    with pytest.raises(InputFileError, match="does-not-exist"):
        open_reader("hits", [tmp_path / "does-not-exist"])
    with pytest.raises(SettingError, match="disjoint"):
        ClassMap.of(real=["a", "b"], bogus=["b"])


def test_des_labels_csv_given_beside_the_stamp_folder(tmp_path):
    synthesize("des", 8, seed=6, out=tmp_path / "raw")
    csv = tmp_path / "labels" / "autoscan_features.3.csv"
    csv.parent.mkdir()
    (tmp_path / "raw" / "autoscan_features.3.csv").rename(csv)
    with pytest.raises(InputFileError, match="exactly one DES labels CSV.*found 0"):
        open_reader("des", [tmp_path / "raw"])
    report = convert_survey("des", [tmp_path / "raw" / "stamps", csv], tmp_path / "des.parquet")
    assert report["kept"] == 8


@pytest.mark.parametrize("damage", ["truncate", "empty", "garbage"])
def test_atlas_corrupt_fits_names_file(tmp_path, damage):
    synthesize("atlas", 12, seed=4, out=tmp_path / "raw", layout="folder")
    victim = sorted((tmp_path / "raw").rglob("*_istamp.fits.gz"))[5]
    data = victim.read_bytes()
    victim.write_bytes({"truncate": data[: len(data) // 3], "empty": b"", "garbage": b"SIMPLE = nonsense" * 20}[damage])
    with pytest.raises(InputFileError, match=f"{victim.name}.*FITS"):
        convert_survey("atlas", [tmp_path / "raw"], tmp_path / "atlas.parquet")
    assert not (tmp_path / "atlas.parquet").exists()


def test_hits_chunks_saved_with_numpy_save(tmp_path):
    chunk = hits_chunk(12, seed=4)
    np.save(tmp_path / "chunk_7.npy", chunk, allow_pickle=True)
    (batch,) = batches(open_reader("hits", [tmp_path]))
    np.testing.assert_array_equal(batch.images[:, 2].reshape(12, 441), chunk["diff_images"])
    assert batch.ids[0] == "chunk_7.npy:0"


def test_no_stamp_found_or_kept_is_an_error_without_output(tmp_path):
    synthesize("des", 6, seed=1, out=tmp_path / "raw")
    with pytest.raises(InputFileError, match="des stamps in the 'fits' layout; read 0, kept none"):
        convert_survey("des", [tmp_path / "raw"], tmp_path / "des.parquet", fmt="fits")
    images = np.zeros((3, 63, 50, 3), np.float32)  # every stamp non-square
    path = write_pickle(tmp_path / "z.pkl", {"images": images, "labels": np.array([0, 1, 4])})
    with pytest.raises(InputFileError, match="read 3, kept none \\(dropped: non_square 3\\)"):
        convert_survey("ztf", [path], tmp_path / "ztf.parquet")
    assert not (tmp_path / "des.parquet").exists() and not (tmp_path / "ztf.parquet").exists()


# -- output paths are checked before anything is read ---------------------------------------

def test_preprocess_output_that_is_an_input_is_refused_and_the_input_kept(tmp_path, capsys):
    from rbda.cli import main

    raw = write_pickle(tmp_path / "ztf.pkl", {"images": np.zeros((2, 63, 63, 3)), "labels": np.array([0, 4])})
    before = raw.read_bytes()
    assert main(["preprocess", "--survey", "ztf", "--input", str(raw), "--output", str(raw)]) == 2
    assert "--output" in capsys.readouterr().err
    assert main(["preprocess", "--survey", "ztf", "--input", str(tmp_path),
                 "--output", str(tmp_path / "new.parquet")]) == 2
    assert "is inside the input" in capsys.readouterr().err
    assert raw.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ztf.pkl"]


@pytest.mark.parametrize("case", ["output-folder", "output-below-file", "report-folder", "report-is-output"])
def test_preprocess_bad_output_paths_are_errors_before_any_work(tmp_path, monkeypatch, case):
    raw = tmp_path / "raw"
    write_pickle(raw.mkdir() or raw / "ztf.pkl", {"images": np.zeros((2, 63, 63, 3)), "labels": np.array([0, 4])})
    out, report = tmp_path / "out" / "ztf.parquet", tmp_path / "out" / "ztf.report.json"
    (tmp_path / "out").mkdir()
    if case == "output-folder":
        out.mkdir()
    elif case == "output-below-file":
        (tmp_path / "out" / "file").write_text("x")
        out = tmp_path / "out" / "file" / "ztf.parquet"
    elif case == "report-folder":
        report.mkdir()
    else:
        report = out
    opened = []
    monkeypatch.setattr("rbda.ingest.preprocess.open_reader", lambda *a, **k: opened.append(a))
    setting = "--output" if case.startswith("output") else "--report"
    with pytest.raises(SettingError, match=setting):
        convert_survey("ztf", [raw], out, report)
    assert opened == []  # refused before any input was opened
    assert not (tmp_path / "out" / "ztf.parquet").is_file()


def test_report_that_cannot_be_written_leaves_no_parquet(tmp_path, monkeypatch):
    raw = tmp_path / "raw"
    write_pickle(raw.mkdir() or raw / "ztf.pkl", {"images": np.zeros((2, 63, 63, 3)), "labels": np.array([0, 4])})

    def failing_write_json(path, obj):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("rbda.ingest.preprocess.write_json", failing_write_json)
    with pytest.raises(OSError, match="No space"):
        convert_survey("ztf", [raw], tmp_path / "ztf.parquet", tmp_path / "ztf.report.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw"]


# -- silent or weak cases made errors or named warnings ---------------------------------------

@pytest.mark.parametrize("form", ["ztf-dict", "atlas-pickle"])
def test_pickled_string_images_are_an_error_naming_file_and_key(tmp_path, form):
    if form == "ztf-dict":
        images = np.full((2, 63, 63, 3), "1.0")
        path = write_pickle(tmp_path / "z.pkl", {"images": images, "labels": np.array([0, 4])})
        survey, key = "ztf", "key 'images'"
    else:
        text = np.full((2, 61, 61), "x")
        path = write_pickle(tmp_path / "a.pkl", {"kast": {"science": text, "difference": text, "ids": ["a", "b"]}})
        survey, key = "atlas", "class 'kast', key 'science'"
    with pytest.raises(InputFileError, match=re.escape(f"{path.name} ({key})") + ".*real numbers.*text"):
        convert_survey(survey, [path], tmp_path / "out.parquet")
    assert not (tmp_path / "out.parquet").exists()


def test_complex_hits_images_are_an_error_not_a_silent_cast(tmp_path):
    chunk = hits_chunk(5)
    chunk["sci_images"] = chunk["sci_images"] + 1j
    write_python2_pickle(tmp_path / "chunk_0.pkl", chunk)
    with pytest.raises(InputFileError, match=r"chunk_0.pkl \(key 'sci_images'\).*complex"):
        convert_survey("hits", [tmp_path / "chunk_0.pkl"], tmp_path / "hits.parquet")
    assert not (tmp_path / "hits.parquet").exists()


def test_zero_row_protocol_2_hits_chunk_reads_as_no_rows(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    # protocol 2 pickles an empty array's data as builtins.bytes(): it must not be refused as code
    write_pickle(raw / "chunk_0.pkl", hits_chunk(0), protocol=2)
    assert batches(open_reader("hits", [raw / "chunk_0.pkl"])) == []
    with pytest.raises(InputFileError, match="read 0, kept none"):
        convert_survey("hits", [raw], tmp_path / "hits.parquet")
    write_pickle(raw / "chunk_1.pkl", hits_chunk(7, seed=2), protocol=2)
    assert convert_survey("hits", [raw], tmp_path / "hits.parquet")["read"] == 7


def test_atlas_symlink_to_parent_is_not_a_class_folder(tmp_path, caplog):
    raw = tmp_path / "raw"
    synthesize("atlas", 20, seed=4, out=raw, layout="folder")
    expected = len(open_reader("atlas", [raw]).pairs)
    (raw / "up").symlink_to("..")
    outside = tmp_path / "elsewhere"
    shutil.copytree(raw / "kast", outside / "kast")
    (raw / "kast" / "more").symlink_to(outside / "kast")
    caplog.set_level("WARNING", logger="rbda.ingest.readers")
    reader = open_reader("atlas", [raw])
    assert len(reader.pairs) == expected
    logged = " ".join(r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    assert str(raw / "up") in logged and str(raw / "kast" / "more") in logged


@pytest.mark.parametrize("survey", ["hits", "des", "ztf"])
def test_recursive_search_does_not_follow_linked_folders(tmp_path, caplog, survey):
    raw, outside = tmp_path / "raw", tmp_path / "outside"
    synthesize(survey, 12, seed=3, out=raw)
    synthesize(survey, 12, seed=9, out=outside)
    n_inside = convert_survey(survey, [raw], tmp_path / "a.parquet")["read"]
    (raw / "loop").symlink_to("..")  # would read the tree (and its sibling) again
    link_target = next(p for p in sorted(outside.rglob("*")) if p.is_dir()) if survey == "des" else outside
    (raw / "linked").symlink_to(link_target)
    if survey == "des":  # the DES stamps sit in a sub-folder: link there too
        (raw / "stamps" / "linked").symlink_to(link_target)
    caplog.set_level("WARNING", logger="rbda.ingest.readers")
    assert convert_survey(survey, [raw], tmp_path / "b.parquet")["read"] == n_inside
    logged = " ".join(r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    assert str(raw / "loop") in logged and str(raw / "linked") in logged


def test_every_layout_has_one_reader_in_the_table():
    """Every declared layout of the shipped surveys names a reader of the table, which imports and (for a
    survey-specific reader) reads that survey."""
    import importlib

    from rbda.ingest.readers import READERS, formats
    from rbda.study import SURVEYS
    from rbda.surveys import shipped_surveys

    for survey, declaration in shipped_surveys().items():
        assert formats(survey) and survey in SURVEYS
        for fmt, spec in declaration.layouts.items():
            module, name = READERS[spec["reader"]]
            reader = getattr(importlib.import_module(module), name)
            assert reader.survey == survey, (survey, fmt)


def test_find_files_order_links_and_duplicates(tmp_path, monkeypatch):
    """find_files: files of nested folders in path order, whichever input came first; a link to a file
    taken, a broken link and a FIFO not (they are not files), a linked folder not followed, a file
    found twice listed once; a folder that cannot be listed, or an entry that cannot be examined, is an
    error naming it; a tree deeper than Python's recursion limit is walked."""
    import os

    from rbda.ingest.readers.base import find_files

    for name in ("b.avro", "a/z.avro", "a/b/c.avro", "a.avro", "ab/y.avro", "a-b/x.avro"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "link.avro").symlink_to(tmp_path / "b.avro")
    (tmp_path / "broken.avro").symlink_to(tmp_path / "gone.avro")
    (tmp_path / "up").symlink_to(tmp_path)
    os.mkfifo(tmp_path / "fifo.avro")
    files, ignored = find_files([tmp_path / "a", tmp_path, tmp_path / "b.avro"], lambda p: True)
    assert files == sorted(files) and len(files) == len(set(files)) and ignored.count == 0
    assert [p.relative_to(tmp_path).as_posix() for p in files] == [
        "a/b/c.avro", "a/z.avro", "a-b/x.avro", "a.avro", "ab/y.avro", "b.avro", "link.avro"]  # by parts
    locked = tmp_path / "a" / "b"
    listing = os.scandir

    def refused(path):  # as a folder without read permission (root would list it anyway)
        if Path(path) == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return listing(path)

    monkeypatch.setattr(os, "scandir", refused)
    with pytest.raises(InputFileError, match=f"{locked}: a folder that can be listed"):
        find_files([tmp_path], lambda p: True)
    # an entry that cannot be examined (a link whose target may not be stat'ed) is an error naming it;
    # one gone since the listing (or a link to nothing) is not a file
    class Entry:
        def __init__(self, name, error=None):
            self.name, self.error = name, error

        def is_dir(self):
            if self.error:
                raise self.error
            return False

        is_file = is_dir

    class Listing(list):
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    gone = OSError(2, "No such file or directory")
    monkeypatch.setattr(os, "scandir", lambda path: Listing([Entry("gone.avro", gone)]))
    assert find_files([tmp_path], lambda p: True)[0] == []
    monkeypatch.setattr(os, "scandir", lambda path: Listing([Entry("link.avro", PermissionError(13, "Permission denied"))]))
    with pytest.raises(InputFileError, match="link.avro: a file or folder that can be examined"):
        find_files([tmp_path], lambda p: True)
    monkeypatch.setattr(os, "scandir", listing)
    # a tree deeper than Python's recursion limit is walked (the limit lowered for the test: a tree deeper
    # than the default one would break the recursive removal of old test folders)
    deep = folder = tmp_path / "deep"
    deep.mkdir()
    for _ in range(300):
        folder = folder / "d"
        folder.mkdir()
    (folder / "bottom.avro").write_bytes(b"x")
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(len(inspect.stack()) + 100)
    try:
        found = find_files([deep], lambda p: True)[0]
    finally:
        sys.setrecursionlimit(limit)
    assert found == [folder / "bottom.avro"]


def test_file_set_readers_share_one_discovery_rule(tmp_path):
    """HiTS, ZTF and ATLAS pickles are found by the base reader: hidden files skipped, other
    names counted as ignored, a file given explicitly taken whatever its name."""
    from rbda.ingest.readers.atlas import AtlasPickleReader
    from rbda.ingest.readers.hits import HitsChunkReader
    from rbda.ingest.readers.ztf import ZtfPickleReader

    (tmp_path / "sub").mkdir()
    for name in ("a.pkl", "sub/b.pickle", ".hidden.pkl", "notes.txt", "archive.tar.gz"):
        (tmp_path / name).write_bytes(b"x")
    names = lambda reader: sorted(p.relative_to(tmp_path).as_posix() for p in reader.files)  # noqa: E731
    assert names(ZtfPickleReader([tmp_path])) == ["a.pkl", "sub/b.pickle"]
    assert names(AtlasPickleReader([tmp_path])) == ["a.pkl", "sub/b.pickle"]
    hits = HitsChunkReader([tmp_path])
    assert names(hits) == ["a.pkl", "sub/b.pickle"]  # archives and notes are not chunks
    assert hits.ignored.count == 2
    assert names(ZtfPickleReader([tmp_path / "notes.txt"])) == ["notes.txt"]
