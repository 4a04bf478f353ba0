"""The three methods: their data selection, batches, models and settings."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rbda.errors import RbdaError, SettingError
from rbda.methods import method_class
from rbda.methods.base import RunSpec
from rbda.models import StampClassifier
from train_helpers import survey_data


@pytest.fixture(scope="module")
def surveys():
    # des imbalanced (20% real) to check class-balanced drawing
    return {"des": survey_data("des", 600, 1, real_fraction=0.2), "hits": survey_data("hits", 600, 2)}


def _gen(seed=0):
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def test_unknown_method_is_a_setting_error():
    with pytest.raises(SettingError, match="'method'.*baseline, finetune, mme.*'dann'"):
        method_class("dann")


def test_baseline_draws_class_balanced_batches_from_source_train(surveys):
    m = method_class("baseline")(RunSpec("baseline", "des", None, 0, seed=1), surveys)
    plan = m.plan_epoch(200, _gen())
    rows = plan["source"]
    assert rows.shape == (200, 50)
    des = surveys["des"]
    assert np.isin(rows.numpy(), des.split.train).all()
    real_share = des.labels_np[rows.numpy()].mean()
    assert 0.47 < real_share < 0.53  # balanced although the part is 20% real
    survey_val, val_rows = m.validation()
    assert survey_val is des and np.array_equal(val_rows, des.split.val)
    roles = [(e.survey.name, e.role) for e in m.evaluations()]
    assert roles == [("des", "source"), ("hits", "other")]


def test_finetune_trains_on_shots_and_validates_on_target_val_shots(surveys):
    spec = RunSpec("finetune", "des", "hits", 0, seed=1, shots=5, val_shots=10)
    m = method_class("finetune")(spec, surveys)
    hits = surveys["hits"]
    assert m.shots.size == 10 and np.isin(m.shots, hits.split.train).all()
    rows = m.plan_epoch(40, _gen())["target"].numpy()
    assert set(np.unique(rows)) <= set(m.shots.tolist())
    _, val_rows = m.validation()
    assert val_rows.size == 20 and np.isin(val_rows, hits.split.val).all()
    assert [(e.survey.name, e.role) for e in m.evaluations()] == [("des", "source"), ("hits", "target")]


def test_mme_batches_half_source_half_target_plus_unlabelled(surveys):
    spec = RunSpec("mme", "des", "hits", 0, seed=1, shots=5, lam=0.1)
    m = method_class("mme")(spec, surveys)
    plan = m.plan_epoch(30, _gen())
    assert plan["source"].shape == (30, 25) and plan["target"].shape == (30, 25)
    assert plan["unlabelled"].shape == (30, 50)
    assert np.isin(plan["source"].numpy(), surveys["des"].split.train).all()
    assert np.isin(plan["target"].numpy(), m.shots).all()
    unl = plan["unlabelled"].numpy()
    assert np.isin(unl, surveys["hits"].split.train).all() and not np.isin(unl, m.shots).any()
    losses = list(m.losses(StampClassifier("prototype"), plan, 0))
    assert len(losses) == 2  # one labelled update, one entropy update


def test_mme_starts_from_baseline_extractor_with_random_prototypes(surveys):
    torch.manual_seed(3)
    baseline = StampClassifier("linear")
    spec = RunSpec("mme", "des", "hits", 0, seed=1, shots=1, lam=0.1)
    model = method_class("mme")(spec, surveys).build_model(baseline.state_dict())
    for key, value in baseline.backbone.state_dict().items():
        assert torch.equal(model.backbone.state_dict()[key], value)
    assert model.head_kind == "prototype"


def test_finetune_starts_from_the_whole_baseline(surveys):
    baseline = StampClassifier("linear")
    spec = RunSpec("finetune", "des", "hits", 0, seed=1, shots=1)
    model = method_class("finetune")(spec, surveys).build_model(baseline.state_dict())
    for key, value in baseline.state_dict().items():
        assert torch.equal(model.state_dict()[key], value)


@pytest.mark.parametrize(
    "spec, message",
    [
        (RunSpec("finetune", "des", "hits", 0, seed=1, shots=10_000), "asked for 10000 items of class"),
        (RunSpec("finetune", "des", None, 0, seed=1, shots=5), "'target'"),
        (RunSpec("finetune", "des", "des", 0, seed=1, shots=5), "other than the source"),
        (RunSpec("finetune", "des", "hits", 0, seed=1, shots=0), "'shots'"),
        (RunSpec("finetune", "des", "hits", 0, seed=1, shots=5, lam=0.1), "'lambda'"),
        (RunSpec("mme", "des", "hits", 0, seed=1, shots=5), "'lambda'"),
        (RunSpec("mme", "des", "hits", 0, seed=1, shots=5, lam=float("nan")), "'lambda'"),
        (RunSpec("baseline", "des", None, 0, seed=1, shots=5), "'shots'"),
        (RunSpec("baseline", "ztf", None, 0, seed=1), "source survey 'ztf'"),
        (RunSpec("finetune", "des", "atlas", 0, seed=1, shots=1), "target survey 'atlas'"),
    ],
)
def test_bad_method_settings_are_clear_errors(surveys, spec, message):
    with pytest.raises(RbdaError, match=message):
        method_class(spec.method)(spec, surveys)


def test_finetune_without_an_initial_model_is_refused(surveys):
    m = method_class("finetune")(RunSpec("finetune", "des", "hits", 0, seed=1, shots=1), surveys)
    with pytest.raises(SettingError, match="baseline model"):
        m.build_model(None)
