"""`rbda select-model`: the selected lambda-method run's model file is the chosen run's, byte for byte."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rbda.cli import main
from rbda.learn.models import StampClassifier, load_model_file, save_model_file
from results_helpers import adapted_run, write


def model(path: Path, lam: float, **facts) -> Path:
    base = {"method": "mme", "source": "des", "target": "hits", "split": 0, "shots": 5, "lambda": lam, "seed": 1}
    save_model_file(path, StampClassifier("prototype"), {**base, **facts})
    return path


@pytest.fixture()
def group(tmp_path):
    runs = [write(tmp_path / f"run-{lam}.json",
                  adapted_run("mme", "des", "hits", 0, 5, 0.9, 0.8, lam=lam, val_bacc=val))
            for lam, val in ((0.01, 0.7), (0.1, 0.95), (10.0, 0.8))]
    selected = tmp_path / "selected.json"
    assert main(["select-lambda", "--runs", *map(str, runs), "--rule", "per_split", "--output", str(selected)]) == 0
    models = [model(tmp_path / f"m-{lam}.pt", lam) for lam in (10.0, 0.01, 0.1)]  # any order
    return selected, models


def test_copies_the_chosen_lambdas_model(group, tmp_path):
    selected, models = group
    assert json.loads(selected.read_text())["selection"]["chosen_lambda"] == 0.1
    out = tmp_path / "models" / "mme-selected.pt"
    assert main(["select-model", "--selected", str(selected), "--models", *map(str, models), "--output", str(out)]) == 0
    assert out.read_bytes() == models[2].read_bytes()
    assert load_model_file(out)["facts"]["lambda"] == 0.1


def test_no_or_several_matching_models_is_an_error_and_writes_nothing(group, tmp_path, capsys):
    selected, models = group
    out = tmp_path / "out.pt"
    argv = ["select-model", "--selected", str(selected), "--output", str(out), "--models"]
    assert main([*argv, str(models[0]), str(models[1])]) == 2
    err = capsys.readouterr().err
    assert str(selected) in err and "'lambda': '0.1'" in err and "found 0" in err
    other_split = model(tmp_path / "other.pt", 0.1, split=1)
    assert main([*argv, str(other_split)]) == 2
    assert main([*argv, *map(str, models), str(model(tmp_path / "dup.pt", 0.1))]) == 2
    assert "found 2" in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.glob(".out.pt*"))


def test_an_unselected_run_is_refused(group, tmp_path, capsys):
    _, models = group
    run = write(tmp_path / "plain.json", adapted_run("mme", "des", "hits", 0, 5, 0.9, 0.8, lam=0.1))
    assert main(["select-model", "--selected", str(run), "--models", str(models[2]),
                 "--output", str(tmp_path / "o.pt")]) == 2
    assert "select-lambda" in capsys.readouterr().err
