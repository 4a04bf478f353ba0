"""Surveys are declared, not coded: the shipped declarations, a survey nobody coded run end to end, and
a scan that no code outside the declarations and their readers names the study's surveys."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from rbda.cli import main
from rbda.errors import InputFileError

REPO = Path(__file__).resolve().parents[1]
TINY = ["--epoch-size", "50", "--max-epochs", "1", "--patience", "1", "--batch-size", "25", "--val-shots", "5",
        "--threads", "1", "--deterministic"]

WINTER = {"label": "WINTER", "stamp_size": 25, "channels": ["science", "template", "difference"],
          "pixel_type": "float32", "band": "J", "layouts": {"npz": {"reader": "stamps_npz"}},
          "class_map": {"real": ["transient"], "bogus": ["artefact"]}}


def write_declarations(path: Path, **surveys) -> Path:
    path.write_text(json.dumps({"surveys": surveys}))
    return path


def write_stamps(path: Path, n: int, size: int, seed: int, classes: bool = False) -> Path:
    """The generic labelled-stamp layout, as docs/surveys.md shows it: real = a point source in science and
    difference; bogus = noise and a hot pixel."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    stamps = rng.normal(0.0, 1.0, (n, 3, size, size)).astype(np.float32)  # science, template, difference
    y, x = np.mgrid[:size, :size] - size // 2
    source = 8.0 * np.exp(-(x ** 2 + y ** 2) / 4.0)
    stamps[labels == 1, 0] += source
    stamps[labels == 1, 2] += source
    stamps[labels == 0, 2, size // 2 + 3, size // 2 - 2] += 40.0
    content = {"stamps": stamps, "ids": np.array([f"w{seed}-{i}" for i in range(n)])}
    if classes:
        content["classes"] = np.where(labels == 1, "transient", "artefact")
    else:
        content["labels"] = labels
    np.savez_compressed(path, **content)
    return path


def test_shipped_declarations_are_the_study_surveys():
    from rbda.study import SURVEY_CLASSES, SURVEY_LABELS, SURVEYS
    from rbda.surveys import shipped_surveys

    shipped = shipped_surveys()
    assert SURVEYS == tuple(shipped) and len(SURVEYS) == 4
    assert SURVEY_LABELS == {name: s.label for name, s in shipped.items()}
    assert set(SURVEY_CLASSES) == {name for name, s in shipped.items() if s.classes}


def test_a_survey_nobody_coded_runs_preprocess_split_train_and_predict(tmp_path):
    """Declared in a file only (channels in another order, 25x25 stamps, class names of its own), written
    in the generic layout with numpy: preprocessed, split, a tiny baseline trained, raw stamps scored."""
    declarations = write_declarations(tmp_path / "surveys.json", winter=WINTER)
    raw = tmp_path / "raw"
    raw.mkdir()
    write_stamps(raw / "a.npz", 200, 25, seed=1, classes=True)
    write_stamps(raw / "b.npz", 100, 25, seed=2, classes=True)
    head = ["--surveys", str(declarations)]
    parquet, split = tmp_path / "winter.parquet", tmp_path / "split.npz"
    assert main([*head, "preprocess", "--survey", "winter", "--input", str(raw), "--output", str(parquet),
                 "--report", str(tmp_path / "report.json")]) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["kept"] == 300 and report["study_comparison"] is None
    assert main([*head, "split", "--data", str(parquet), "--survey", "winter", "--split", "0", "--seed", "7",
                 "--output", str(split)]) == 0
    model, run = tmp_path / "winter.pt", tmp_path / "run.json"
    assert main([*head, "train", "--method", "baseline", "--source", "winter", "--data",
                 f"winter={parquet}:{split}", "--split", "0", "--seed", "7", "--metrics", str(run),
                 "--model", str(model), *TINY]) == 0
    record = json.loads(run.read_text())
    assert record["source"] == "winter" and record["evaluations"][0]["survey"] == "winter"
    team = record["evaluations"][0]["survey_metrics"]  # the metrics survey teams report, in every run
    assert 0 <= team["roc_auc"] <= 1 and set(team["at_completeness"]) == {"0.95", "0.99"}
    assert team["at_completeness"]["0.95"]["fpr"] is not None
    scores = tmp_path / "scores.parquet"
    assert main([*head, "predict", "--model", str(model), "--survey", "winter", "--input", str(raw / "b.npz"),
                 "--output", str(scores)]) == 0
    table = pq.read_table(scores).to_pydict()
    assert len(table["id"]) == 100 and set(table["class"]) == {"transient", "artefact"}
    assert table["label"] == [i % 2 for i in range(100)] and all(np.isfinite(table["p_real"]))
    # the declaration holds for that command only
    with pytest.raises(SystemExit):
        main(["preprocess", "--survey", "winter", "--input", str(raw), "--output", str(tmp_path / "x.parquet")])


def test_generic_layout_channel_order_and_labels(tmp_path):
    from rbda.ingest.readers.stamps import StampArrayReader
    from rbda.surveys import parse_survey

    declaration = parse_survey("winter", WINTER, tmp_path / "surveys.json")
    path = write_stamps(tmp_path / "a.npz", 6, 25, seed=3)
    (batch,) = list(StampArrayReader([path], declaration=declaration).batches())
    with np.load(path) as content:
        stamps = content["stamps"]
        np.testing.assert_array_equal(batch.images[:, 0], stamps[:, 1])  # template: the file's second channel
        np.testing.assert_array_equal(batch.images[:, 1], stamps[:, 0])  # science: its first
        np.testing.assert_array_equal(batch.labels, content["labels"])


def test_size_mismatches_follow_the_declared_rule(tmp_path):
    from rbda.ingest.readers.stamps import StampArrayReader
    from rbda.surveys import parse_survey

    declared = parse_survey("winter", WINTER, tmp_path / "s.json")
    with pytest.raises(InputFileError, match=r"survey winter: stamps of its declared 25x25 pixels, got 30x30"):
        list(StampArrayReader([write_stamps(tmp_path / "big.npz", 4, 30, seed=4)], declaration=declared).batches())
    small = write_stamps(tmp_path / "small.npz", 4, 15, seed=5)
    padded = parse_survey("tiny", WINTER | {"stamp_size": 15}, tmp_path / "s.json")
    (batch,) = list(StampArrayReader([small], declaration=padded).batches())
    assert batch.images.shape == (4, 3, 21, 21) and np.isnan(batch.images[:, :, :3]).all()
    assert not np.isnan(batch.images[:, :, 3:18, 3:18]).any()
    exact = parse_survey("tiny", WINTER | {"stamp_size": 15, "size_rule": "exact"}, tmp_path / "s.json")
    with pytest.raises(InputFileError, match=r"survey tiny: stamps of at least the network's 21x21 input .* got 15x15"):
        list(StampArrayReader([small], declaration=exact).batches())


@pytest.mark.parametrize("change, setting", [
    ({"stamp_size": 3}, "stamp_size"), ({"channels": ["science", "science", "difference"]}, "channels"),
    ({"class_map": {"real": ["a"], "bogus": ["a"]}}, "class_map"), ({"layouts": {}}, "layouts"),
    ({"pixel_type": "complex64"}, "pixel_type"), ({"size_rule": "stretch"}, "size_rule"), ({"colour": 1}, "settings")])
def test_bad_declarations_name_file_survey_and_setting(tmp_path, change, setting):
    from rbda.surveys import read_declarations

    path = write_declarations(tmp_path / "surveys.json", winter=WINTER | change)
    with pytest.raises(InputFileError) as info:
        read_declarations(path)
    assert str(path) in str(info.value) and "survey winter" in str(info.value) and setting in str(info.value)


def test_undeclared_survey_and_redeclared_study_survey_are_refused(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["preprocess", "--survey", "wintr", "--input", str(tmp_path), "--output", str(tmp_path / "a.parquet")])
    assert "'wintr' is not a declared survey (hits, des, ztf, atlas" in capsys.readouterr().err
    clash = write_declarations(tmp_path / "clash.json", ztf=WINTER)
    with pytest.raises(SystemExit):
        main(["--surveys", str(clash), "preprocess", "--survey", "ztf", "--input", str(tmp_path),
              "--output", str(tmp_path / "a.parquet")])
    assert "surveys of names other than the shipped ones" in capsys.readouterr().err


#: Where the study's survey names may be written: the shipped declarations' readers (each reads its
#: survey's raw layout) and the synthetic generators of those raw layouts (rbda synth).
NAMES_ALLOWED_IN = ("ingest/readers/hits.py", "ingest/readers/des.py", "ingest/readers/ztf.py",
                    "ingest/readers/atlas.py", "ingest/synth/")


def test_no_code_outside_the_declarations_and_their_readers_names_a_study_survey():
    """An AST scan of src/rbda: no string constant is a study survey's name (a list, a table, a branch
    ``if survey == "des"``) outside the files allowed above; the names live in rbda/data/surveys.json."""
    from rbda.surveys import shipped_surveys

    names = {name.lower() for name in shipped_surveys()}
    found = []
    for path in sorted((REPO / "src" / "rbda").rglob("*.py")):
        relative = path.relative_to(REPO / "src" / "rbda").as_posix()
        if relative.startswith(NAMES_ALLOWED_IN):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.lower() in names:
                found.append(f"{relative}:{node.lineno}: {node.value!r}")
    assert not found, "study survey names written in code:\n" + "\n".join(found)


def test_synth_writes_a_declared_survey_from_its_synthetic_part_or_names_what_is_missing(tmp_path, capsys):
    """rbda synth simulates a declared survey by its declaration's synthetic part, in its stamps_npz layout
    (read back by preprocess); one without that part is an error naming the survey, never another survey's data."""
    synthetic = {"psf_sigma": 1.5, "sky": 600.0, "noise": 15.0, "template_noise": 4.0}
    declarations = write_declarations(tmp_path / "surveys.json", winter=WINTER | {"synthetic": synthetic},
                                      bare=WINTER)
    head = ["--surveys", str(declarations)]
    assert main([*head, "synth", "--survey", "winter", "--n", "40", "--seed", "3", "--out", str(tmp_path / "raw")]) == 0
    (part,) = sorted((tmp_path / "raw").glob("*.npz"))
    with np.load(part) as content:
        assert content["stamps"].shape == (40, 3, 25, 25)
        assert sorted(set(content["classes"].tolist())) == ["artefact", "transient"]
    assert main([*head, "preprocess", "--survey", "winter", "--input", str(tmp_path / "raw"),
                 "--output", str(tmp_path / "w.parquet")]) == 0
    assert main([*head, "synth", "--survey", "bare", "--n", "40", "--seed", "3", "--out", str(tmp_path / "b")]) == 2
    assert "survey bare: synthetic" in capsys.readouterr().err and not (tmp_path / "b").exists()
