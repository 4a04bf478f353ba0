"""Synthetic surveys: native layouts read back by the real readers, deterministic, survey-like."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rbda.cli import main
from rbda.errors import RbdaError, SettingError
from rbda.ingest.store import load_survey
from rbda.ingest.synth import synthesize
from rbda.ingest.synth.model import SPECS, class_counts


@pytest.mark.parametrize("survey, n, real_share, tolerance", [
    ("hits", 400, 0.50, 0.0), ("des", 400, 0.505, 0.01), ("ztf", 300, 0.853, 0.02), ("atlas", 400, 0.32, 0.01),
])
def test_cli_synth_then_preprocess_with_layout_detection(tmp_path, survey, n, real_share, tolerance):
    raw, out = tmp_path / "raw", tmp_path / "data"
    assert main(["synth", "--survey", survey, "--n", str(n), "--seed", "11", "--out", str(raw)]) == 0
    assert main(["preprocess", "--survey", survey, "--input", str(raw), "--output", str(out / f"{survey}.parquet"),
                 "--report", str(out / f"{survey}.report.json")]) == 0
    report = json.loads((out / f"{survey}.report.json").read_text())
    data = load_survey(out / f"{survey}.parquet")
    assert report["read"] == n and report["kept"] == len(data) == n - report["dropped_total"]
    assert data.stamps.shape == (len(data), 3, 21, 21) and np.isfinite(data.stamps).all()
    assert abs(data.labels.mean() - real_share) <= tolerance + 0.02
    manifest = json.loads((raw / "synth.json").read_text())
    assert manifest["classes"] == class_counts(SPECS[survey], n)
    assert set(data.classes) == set(SPECS[survey].classes)


def test_native_stamp_sizes_and_ztf_defects(tmp_path):
    sizes = {}
    for survey in SPECS:
        manifest = synthesize(survey, 300, seed=2, out=tmp_path / survey)
        sizes[survey] = max(manifest["shapes"], key=manifest["shapes"].get)
    assert sizes == {"hits": "21x21", "des": "51x51", "ztf": "63x63", "atlas": "61x61"}
    from rbda.ingest.preprocess import convert_survey

    report = convert_survey("ztf", [tmp_path / "ztf"], tmp_path / "ztf.parquet")
    assert report["dropped"].get("non_square", 0) >= 1  # a few clipped (CCD edge) stamps
    assert report["invalid_pixels"] > 0  # NaN and float32-max patches
    des_gif = next((tmp_path / "des").rglob("srch*.gif"))
    from PIL import Image

    with Image.open(des_gif) as image:
        assert image.format == "GIF" and np.asarray(image.convert("L")).dtype == np.uint8


def test_same_seed_same_survey_other_seed_differs(tmp_path):
    a = synthesize("atlas", 50, seed=3, out=tmp_path / "a")
    b = synthesize("atlas", 50, seed=3, out=tmp_path / "b")
    synthesize("atlas", 50, seed=4, out=tmp_path / "c")
    assert a == b
    assert (tmp_path / "a" / "atlas_stamps.pkl").read_bytes() == (tmp_path / "b" / "atlas_stamps.pkl").read_bytes()
    assert (tmp_path / "a" / "atlas_stamps.pkl").read_bytes() != (tmp_path / "c" / "atlas_stamps.pkl").read_bytes()


def test_real_alerts_show_in_the_difference(tmp_path):
    """The label is in the data: real differences are brighter at the centre than bogus ones on average."""
    from rbda.ingest.preprocess import convert_survey

    synthesize("hits", 400, seed=5, out=tmp_path / "raw")
    convert_survey("hits", [tmp_path / "raw"], tmp_path / "hits.parquet")
    data = load_survey(tmp_path / "hits.parquet")
    centre = data.stamps[:, 2, 9:12, 9:12].mean(axis=(1, 2))
    assert centre[data.labels == 1].mean() > centre[data.labels == 0].mean() + 0.5


def test_refuses_to_replace_foreign_folder_and_replaces_own(tmp_path):
    foreign = tmp_path / "raw"
    foreign.mkdir()
    (foreign / "precious.txt").write_text("keep me")
    with pytest.raises(RbdaError, match="not an earlier output of this command"):
        synthesize("hits", 10, seed=1, out=foreign)
    assert (foreign / "precious.txt").exists()
    synthesize("hits", 10, seed=1, out=tmp_path / "own")
    synthesize("hits", 12, seed=1, out=tmp_path / "own")
    assert json.loads((tmp_path / "own" / "synth.json").read_text())["n"] == 12
    assert sorted(p.name for p in tmp_path.iterdir()) == ["own", "raw"]  # no temporary folders left


@pytest.mark.parametrize("kwargs, setting", [
    ({"survey": "sdss"}, "survey"), ({"layout": "fits"}, "layout"), ({"n": 1}, "n"),
])
def test_bad_settings(tmp_path, kwargs, setting):
    args = {"survey": "hits", "n": 10, "seed": 1, "out": tmp_path / "x", **kwargs}
    with pytest.raises(SettingError, match=setting):
        synthesize(**args)
    assert not (tmp_path / "x").exists()


def test_cli_preprocess_bad_input_exit_2_and_no_output(tmp_path, capsys):
    raw = tmp_path / "raw"
    synthesize("atlas", 30, seed=1, out=raw, layout="folder")
    out = tmp_path / "data"
    code = main(["preprocess", "--survey", "atlas", "--input", str(raw), "--output", str(out / "atlas.parquet"),
                 "--report", str(out / "atlas.report.json"), "--real-classes", "kast"])
    assert code == 2
    assert "class 'streak' is neither real ['kast']" in capsys.readouterr().err
    assert not out.exists() or list(out.iterdir()) == []
    code = main(["preprocess", "--survey", "atlas", "--input", str(raw), "--output", str(out / "atlas.parquet"),
                 "--real-classes", "kast,streak,cr", "--bogus-classes", "burn,noise,spike"])
    assert code == 0
    data = load_survey(out / "atlas.parquet")
    assert set(data.classes[data.labels == 1]) == {"kast", "streak", "cr"}


def test_specs_use_known_generators_and_unique_ids(tmp_path):
    from rbda.ingest.synth.model import GENERATORS, StampSimulator

    for spec in SPECS.values():
        for _, _, kinds in spec.classes.values():
            assert set(kinds) <= set(GENERATORS)
    # the explicit dispatch table names every generator method, each under its own name
    drawers = {name for name in vars(StampSimulator) if name.startswith("_draw_")}
    assert {f.__name__ for f in GENERATORS.values()} == drawers
    assert all(f.__name__ == f"_draw_{kind}" for kind, f in GENERATORS.items())
    from rbda.ingest.preprocess import convert_survey

    for survey in ("ztf", "atlas", "des"):
        synthesize(survey, 200, seed=8, out=tmp_path / survey)
        convert_survey(survey, [tmp_path / survey], tmp_path / f"{survey}.parquet")
        ids = load_survey(tmp_path / f"{survey}.parquet").ids
        assert len(set(ids)) == len(ids)
