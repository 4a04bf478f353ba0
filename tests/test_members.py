"""Lambdas as members of one job (rbda.learn.train.train_members, `rbda train --lambda A B C`):
common random numbers across lambdas, the same numbers as separate runs, resuming every member."""

from __future__ import annotations

import io
import json

import pytest
import torch

from rbda.cli import main
from rbda.errors import SettingError
from rbda.learn.evaluate import evaluate_method
from rbda.learn.methods import method_class
from rbda.learn.methods.base import RunSpec
from rbda.learn.models import load_model_file
from rbda.learn.train import TrainConfig, seed_keys, train, train_members
from train_helpers import surveys_with_splits

LAMBDAS = (0.02, 0.1, 0.5)
# patience 1: members stop at different epochs, so a stopped member must stop stepping while the others go on
CONFIG = TrainConfig(epoch_size=300, max_epochs=5, patience=1)


# one thread, deterministic algorithms (tests/conftest.py); `surveys` is conftest's too
pytestmark = pytest.mark.usefixtures("deterministic_single_thread")


@pytest.fixture(scope="module")
def baseline_state(surveys):
    method = method_class("baseline")(RunSpec("baseline", "des", None, 0, seed=4), surveys)
    return train(method, TrainConfig(epoch_size=500, max_epochs=3), progress_stream=io.StringIO()).model.state_dict()


def _method(surveys, name, lam):
    return method_class(name)(RunSpec(name, "des", "hits", 0, seed=4, shots=5, lam=lam), surveys)


def _outcome(method, result) -> dict:
    """Every number a run ends with (its run JSON's, less the wall time) and its best weights."""
    s = result.state
    return {"history": s.history, "best": (s.best_bacc, s.best_epoch, s.epoch, s.iteration, s.epochs_since_best),
            "stopped_by": result.stopped_by, "resumed_from": result.resumed_from_epoch,
            "evaluations": evaluate_method(method, result.model),
            "weights": {k: v.clone() for k, v in result.model.state_dict().items()}}


def _assert_same(a: dict, b: dict) -> None:
    assert a["weights"].keys() == b["weights"].keys()
    for k in a["weights"]:
        assert torch.equal(a["weights"][k], b["weights"][k]), k  # bit-equal
    assert {k: v for k, v in a.items() if k != "weights"} == {k: v for k, v in b.items() if k != "weights"}


def test_seeds_do_not_depend_on_lambda():
    a, b = (RunSpec("mme", "des", "hits", 0, seed=4, shots=5, lam=lam) for lam in (0.1, 0.3))
    assert seed_keys(a) == seed_keys(b)
    assert seed_keys(a) != seed_keys(RunSpec("mme", "des", "hits", 0, seed=4, shots=10, lam=0.1))
    # runs without a lambda keep the keys they always had (the lambda's place held None)
    baseline = RunSpec("baseline", "des", None, 1, seed=4)
    assert seed_keys(baseline) == ("baseline", "des", None, 1, None, None)


@pytest.mark.parametrize("name", ["mme", "ent", "dann"])
def test_members_end_with_the_numbers_of_separate_runs(surveys, baseline_state, name):
    separate = []
    for lam in LAMBDAS:
        m = _method(surveys, name, lam)
        separate.append(_outcome(m, train(m, CONFIG, init_state=baseline_state, progress_stream=io.StringIO())))
    methods = [_method(surveys, name, lam) for lam in LAMBDAS]
    results = train_members(methods, CONFIG, init_state=baseline_state, progress_stream=io.StringIO())
    for m, r, alone in zip(methods, results, separate):
        _assert_same(_outcome(m, r), alone)
    # common random numbers: every lambda starts from the same model (epoch 0 is scored the same)
    # and the lambdas then differ; the members did not all stop at the same epoch
    assert len({s["history"][0]["val_bacc"] for s in separate}) == 1 or not CONFIG.epoch_zero_candidate
    assert len({str(s["history"]) for s in separate}) == len(LAMBDAS)


class _Interrupt(Exception):
    pass


def _interrupt_after(epoch):
    def hook(done):
        if done == epoch:
            raise _Interrupt

    return hook


@pytest.mark.parametrize("lose_one", [False, True])
def test_a_job_killed_mid_way_resumes_every_member(tmp_path, surveys, baseline_state, lose_one):
    """Every member resumes from its own checkpoint and ends as uninterrupted; with one member's
    checkpoint lost, that member starts afresh (its batch stream apart from the others') and still does."""
    config = TrainConfig(epoch_size=300, max_epochs=5, patience=10, checkpoint_every_epochs=2)
    make = lambda: [_method(surveys, "mme", lam) for lam in LAMBDAS]  # noqa: E731
    methods = make()
    whole = [_outcome(m, r) for m, r in zip(methods, train_members(methods, config, init_state=baseline_state,
                                                                    progress_stream=io.StringIO()))]
    checkpoints = [tmp_path / f"lambda-{lam}.ckpt" for lam in LAMBDAS]
    with pytest.raises(_Interrupt):
        train_members(make(), config, init_state=baseline_state, checkpoints=checkpoints,
                      progress_stream=io.StringIO(), on_epoch_end=_interrupt_after(3))
    assert all(c.exists() for c in checkpoints)  # written after epoch 2
    if lose_one:
        checkpoints[1].unlink()
    methods = make()
    resumed = train_members(methods, config, init_state=baseline_state, checkpoints=checkpoints,
                            progress_stream=io.StringIO())
    expected_from = [2, None, 2] if lose_one else [2, 2, 2]
    assert [r.resumed_from_epoch for r in resumed] == expected_from
    for m, r, w, start in zip(methods, resumed, whole, expected_from):
        _assert_same(_outcome(m, r), {**w, "resumed_from": start})


def test_members_must_differ_in_lambda_only(surveys):
    with pytest.raises(SettingError, match="distinct lambdas"):
        train_members([_method(surveys, "mme", 0.1), _method(surveys, "mme", 0.1)], CONFIG)
    other_shots = method_class("mme")(RunSpec("mme", "des", "hits", 0, seed=4, shots=10, lam=0.2), surveys)
    with pytest.raises(SettingError, match="differ in lambda only"):
        train_members([_method(surveys, "mme", 0.1), other_shots], CONFIG)


# ------------------------------------------------------------------ `rbda train --lambda A B C`

SHORT = ["--epoch-size", "300", "--max-epochs", "4", "--patience", "1", "--threads", "1", "--deterministic"]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    data = {name: arg for name, (_, arg) in surveys_with_splits(root, ("des", "hits"), 600).items()}
    model = root / "baseline.pt"
    assert main(["train", "--method", "baseline", "--source", "des", "--data", data["des"], "--data", data["hits"],
                 "--split", "0", "--seed", "7", "--metrics", str(root / "baseline.json"), "--model", str(model),
                 *SHORT]) == 0
    return {"data": data, "model": model}


def _mme(study, *extra):
    return ["train", "--method", "mme", "--source", "des", "--target", "hits", "--shots", "5",
            "--init-model", str(study["model"]), "--data", study["data"]["des"], "--data", study["data"]["hits"],
            "--split", "0", "--seed", "7", *SHORT, *extra]


def _without_wall_time(record: dict) -> dict:
    return {**record, "training": {k: v for k, v in record["training"].items() if k != "wall_seconds"}}


def test_one_job_writes_the_files_of_separate_runs(study, tmp_path):
    """Three lambdas as one job and as three: every number of the run JSONs (all but the wall time)
    and the model files' weights are equal to the bit; no checkpoint is left."""
    lams = [str(lam) for lam in LAMBDAS]
    for lam in lams:
        assert main(_mme(study, "--lambda", lam, "--metrics", str(tmp_path / f"alone-{lam}.json"),
                         "--model", str(tmp_path / f"alone-{lam}.pt"))) == 0
    assert main(_mme(study, "--lambda", *lams, "--metrics", *(str(tmp_path / f"job-{lam}.json") for lam in lams),
                     "--model", *(str(tmp_path / f"job-{lam}.pt") for lam in lams))) == 0
    for lam in lams:
        alone = json.loads((tmp_path / f"alone-{lam}.json").read_text())
        member = json.loads((tmp_path / f"job-{lam}.json").read_text())
        assert member["lambda"] == float(lam)
        assert _without_wall_time(member) == _without_wall_time(alone)
        a, b = load_model_file(tmp_path / f"alone-{lam}.pt"), load_model_file(tmp_path / f"job-{lam}.pt")
        assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
        assert a["state_dict"].keys() == b["state_dict"].keys()
    assert not list(tmp_path.glob("*.ckpt"))


def test_member_paths_are_checked(study, tmp_path, capsys):
    out = [str(tmp_path / "a.json")]
    assert main(_mme(study, "--lambda", "0.1", "0.2", "--metrics", *out)) != 0
    assert "--metrics" in capsys.readouterr().err and not list(tmp_path.iterdir())
    assert main(_mme(study, "--lambda", "0.1", "0.2", "--metrics", *out, *out)) != 0
    assert "a different file from --metrics" in capsys.readouterr().err and not list(tmp_path.iterdir())
