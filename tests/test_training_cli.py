"""`rbda split`, `rbda train` and `rbda evaluate` end to end, and their errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from rbda.cli import main
from rbda.registry import ADAPTATION_METHODS, LAMBDA_METHODS
from train_helpers import surveys_with_splits, write_survey_parquet

SHORT = ["--epoch-size", "300", "--max-epochs", "3", "--patience", "3", "--threads", "1", "--deterministic"]
RUN_KEYS = {"schema", "method", "source", "target", "split", "shots", "lambda", "seed", "evaluations",
            "validation", "training", "hyperparameters", "versions"}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """Two small surveys, split 0 of each, and a trained des baseline."""
    root = tmp_path_factory.mktemp("study")
    data = {name: arg for name, (_, arg) in surveys_with_splits(root, ("des", "hits"), 600).items()}
    baseline = root / "baseline.json"
    model = root / "baseline.pt"
    assert main(["train", "--method", "baseline", "--source", "des", "--data", data["des"], "--data", data["hits"],
                 "--split", "0", "--seed", "7", "--metrics", str(baseline), "--model", str(model), *SHORT]) == 0
    return {"root": root, "data": data, "baseline": baseline, "model": model}


def _adapt(study, method, metrics, *extra):
    return main(["train", "--method", method, "--source", "des", "--target", "hits",
                 "--init-model", str(study["model"]), "--data", study["data"]["des"], "--data", study["data"]["hits"],
                 "--split", "0", "--seed", "7", "--metrics", str(metrics), *SHORT, *extra])


def test_baseline_run_json_follows_the_contract(study):
    record = json.loads(study["baseline"].read_text())
    assert set(record) >= RUN_KEYS and record["schema"] == "rbda.run/1"
    assert (record["method"], record["source"], record["target"], record["shots"], record["lambda"]) == \
        ("baseline", "des", None, None, None)
    assert [(e["survey"], e["role"], e["part"]) for e in record["evaluations"]] == \
        [("des", "source", "test"), ("hits", "other", "test")]
    for e in record["evaluations"]:
        assert e["n"] == e["tp"] + e["fn"] + e["tn"] + e["fp"] == 60 and 0 <= e["bacc"] <= 1
    t = record["training"]
    assert t["epochs_run"] == 3 and t["iterations"] == 18 and t["stopped_by"] in ("patience", "max_epochs")
    assert t["device"] == "cpu" and t["threads"] == 1 and t["resumed_from_epoch"] is None
    assert record["hyperparameters"]["epoch_size"] == 300
    assert len(record["validation"]["history"]) == 3
    assert not Path(str(study["baseline"]) + ".ckpt").exists()  # removed when the run completes


@pytest.mark.parametrize("method", ADAPTATION_METHODS)
def test_adaptation_runs_evaluate_source_and_target(study, tmp_path, method):
    extra = ["--lambda", "0.1"] if method in LAMBDA_METHODS else []
    metrics = tmp_path / "run.json"
    model = tmp_path / "run.pt"
    assert _adapt(study, method, metrics, "--shots", "5", "--model", str(model), *extra) == 0
    record = json.loads(metrics.read_text())
    assert (record["method"], record["target"], record["shots"]) == (method, "hits", 5)
    assert record["lambda"] == (0.1 if method in LAMBDA_METHODS else None)
    # the model file holds the stamp classifier alone (DANN's domain head is left out) and scores again
    out = tmp_path / "eval.json"
    assert main(["evaluate", "--model", str(model), "--data", study["data"]["des"], "--data", study["data"]["hits"],
                 "--output", str(out), "--device", "cpu"]) == 0
    evaluated = {e["survey"]: e["bacc"] for e in json.loads(out.read_text())["evaluations"]}
    assert evaluated == {e["survey"]: e["bacc"] for e in record["evaluations"]}
    assert [(e["survey"], e["role"]) for e in record["evaluations"]] == [("des", "source"), ("hits", "target")]


def test_st_from_scratch_needs_no_initial_model(study, tmp_path, capsys):
    metrics = tmp_path / "run.json"
    base = ["train", "--method", "st", "--source", "des", "--target", "hits", "--shots", "5",
            "--data", study["data"]["des"], "--data", study["data"]["hits"], "--split", "0", "--seed", "7",
            "--metrics", str(metrics), *SHORT, "--from-scratch"]
    _fails_cleanly(capsys, [*base, "--init-model", str(study["model"])], "no initial model for method 'st'", metrics)
    assert main(base) == 0
    assert json.loads(metrics.read_text())["data"]["from_scratch"] is True
    _fails_cleanly(capsys, [*base[:2], "finetune", *base[3:], "--init-model", str(study["model"])],
                   "'from_scratch'", tmp_path / "other.json")


def test_same_arguments_same_metrics(study, tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    for path in (a, b):
        assert _adapt(study, "mme", path, "--shots", "1", "--lambda", "0.5") == 0
    ra, rb = json.loads(a.read_text()), json.loads(b.read_text())
    assert ra["evaluations"] == rb["evaluations"] and ra["validation"] == rb["validation"]


def test_evaluate_command_reproduces_the_run_metrics(study, tmp_path):
    out = tmp_path / "eval.json"
    assert main(["evaluate", "--model", str(study["model"]), "--data", study["data"]["des"],
                 "--data", study["data"]["hits"], "--output", str(out), "--device", "cpu"]) == 0
    evaluated = json.loads(out.read_text())["evaluations"]
    trained = json.loads(study["baseline"].read_text())["evaluations"]
    assert evaluated == trained


def _fails_cleanly(capsys, argv, message, *absent):
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    for path in absent:
        assert not Path(path).exists()
        assert not list(Path(path).parent.glob(f".{Path(path).name}*"))  # no temporary left behind


def test_bad_input_is_a_clear_error_without_output(study, tmp_path, capsys):
    metrics = tmp_path / "run.json"
    base = ["--data", study["data"]["des"], "--data", study["data"]["hits"], "--split", "0", "--seed", "7",
            "--metrics", str(metrics), *SHORT]
    _fails_cleanly(capsys, ["train", "--method", "adamatch", "--source", "des", *base], "one of baseline, finetune, mme", metrics)
    _fails_cleanly(capsys, ["train", "--method", "finetune", "--source", "des", "--target", "hits", "--shots", "5",
                            "--init-model", str(tmp_path / "none.pt"), *base], "none.pt: model file not found", metrics)
    _fails_cleanly(capsys, ["train", "--method", "finetune", "--source", "des", "--target", "hits", "--shots", "500",
                            "--init-model", str(study["model"]), *base], "asked for 500 items of class", metrics)
    _fails_cleanly(capsys, ["train", "--method", "mme", "--source", "des", "--target", "hits", "--shots", "5",
                            "--init-model", str(study["model"]), *base], "'lambda'", metrics)
    _fails_cleanly(capsys, ["train", "--method", "baseline", "--source", "ztf", *base], "source survey 'ztf'", metrics)


def test_split_of_another_survey_size_is_refused(study, tmp_path, capsys):
    other = write_survey_parquet(tmp_path, "des", 500, seed=3)
    split = study["data"]["des"].split(":")[-1]
    metrics = tmp_path / "run.json"
    _fails_cleanly(capsys, ["train", "--method", "baseline", "--source", "des", "--data", f"des={other}:{split}",
                            "--split", "0", "--seed", "7", "--metrics", str(metrics), *SHORT],
                   "a split of a survey with 500 rows, but it was made for 600 rows", metrics)


def test_single_class_survey_cannot_be_split(tmp_path, capsys):
    from rbda.ingest.store import write_survey

    path = tmp_path / "atlas.parquet"
    write_survey(path, "atlas", np.zeros((30, 3, 21, 21), np.float32), np.zeros(30, np.int8),
                 np.array(["noise"] * 30), np.array([f"a{i}" for i in range(30)]))
    out = tmp_path / "split.npz"
    _fails_cleanly(capsys, ["split", "--data", str(path), "--survey", "atlas", "--split", "0", "--seed", "1",
                            "--output", str(out)], "single class", out)


def test_data_option_format_is_checked(tmp_path, capsys):
    metrics = tmp_path / "run.json"
    _fails_cleanly(capsys, ["train", "--method", "baseline", "--source", "des", "--data", "des=only.parquet",
                            "--split", "0", "--seed", "7", "--metrics", str(metrics)],
                   "SURVEY=DATA.parquet:SPLIT.npz", metrics)


@pytest.mark.slow
def test_killed_process_resumes_to_the_same_metrics(study, tmp_path):
    """SIGKILL a real `rbda train` after its first checkpoint; the rerun finishes with the same numbers."""
    args = ["--method", "baseline", "--source", "des", "--data", study["data"]["des"], "--split", "0", "--seed", "7",
            "--epoch-size", "500", "--max-epochs", "8", "--patience", "8", "--threads", "1", "--deterministic"]
    rbda = [sys.executable, "-m", "rbda.cli", "train"]
    whole = tmp_path / "whole.json"
    subprocess.run([*rbda, *args, "--metrics", str(whole)], check=True, capture_output=True)

    killed = tmp_path / "killed.json"
    checkpoint = Path(str(killed) + ".ckpt")
    proc = subprocess.Popen([*rbda, *args, "--metrics", str(killed)], stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert checkpoint.exists() and not killed.exists()
    subprocess.run([*rbda, *args, "--metrics", str(killed)], check=True, capture_output=True)
    a, b = json.loads(whole.read_text()), json.loads(killed.read_text())
    assert b["training"]["resumed_from_epoch"] >= 1
    assert a["evaluations"] == b["evaluations"] and a["validation"] == b["validation"]
    assert not checkpoint.exists()


def test_backbone_and_beta_options_reach_the_run_and_a_baseline_of_another_backbone_is_refused(study, tmp_path, capsys):
    metrics, model = tmp_path / "deephits.json", tmp_path / "deephits.pt"
    assert main(["train", "--method", "baseline", "--source", "des", "--data", study["data"]["des"],
                 "--split", "0", "--seed", "7", "--metrics", str(metrics), "--model", str(model),
                 "--backbone", "deephits", "--beta", "0.5", *SHORT]) == 0
    hyper = json.loads(metrics.read_text())["hyperparameters"]
    assert (hyper["model"], hyper["beta"]) == ("deephits", 0.5)
    from rbda.learn.models import load_model_file
    assert load_model_file(model)["backbone"] == "deephits"
    # fine-tuning a study-CNN baseline with --backbone deephits: refused, naming the file and both backbones
    out = tmp_path / "ft.json"
    assert _adapt(study, "finetune", out, "--shots", "5", "--backbone", "deephits") != 0
    err = capsys.readouterr().err
    assert "baseline.pt" in err and "'deephits'" in err and "'study_cnn'" in err and not out.exists()
    # fine-tuning and MME from the deephits baseline
    for method, extra in (("finetune", []), ("mme", ["--lambda", "0.1"])):
        out = tmp_path / f"{method}.json"
        assert main(["train", "--method", method, "--source", "des", "--target", "hits", "--init-model", str(model),
                     "--data", study["data"]["des"], "--data", study["data"]["hits"], "--split", "0", "--seed", "7",
                     "--shots", "5", "--backbone", "deephits", "--metrics", str(out), *extra, *SHORT]) == 0
        assert json.loads(out.read_text())["hyperparameters"]["model"] == "deephits"


def test_optimiser_and_mmefm_options_reach_the_run_json(study, tmp_path):
    metrics = tmp_path / "run.json"
    assert _adapt(study, "mmefm", metrics, "--shots", "5", "--lambda", "0.1", "--backbone-lr-scale", "0.1",
                  "--weight-decay", "0.0005", "--nesterov", "--pseudo-label-threshold", "0.9",
                  "--consistency-weight", "0.5") == 0
    hyper = json.loads(metrics.read_text())["hyperparameters"]
    assert (hyper["backbone_lr_scale"], hyper["head_lr_scale"], hyper["weight_decay"], hyper["nesterov"]) == \
        (0.1, 1.0, 0.0005, True)
    assert (hyper["pseudo_label_threshold"], hyper["consistency_weight"]) == (0.9, 0.5)


def test_a_method_setting_is_refused_with_another_method(study, tmp_path, capsys):
    """A method's own settings (rbda.registry) are options of `rbda train` valid with that method only."""
    metrics = tmp_path / "run.json"
    assert _adapt(study, "mme", metrics, "--shots", "5", "--lambda", "0.1", "--consistency-weight", "0.5") == 2
    assert "'--consistency-weight': expected only with --method mmefm, got 0.5" in capsys.readouterr().err
    assert not metrics.exists()
