"""The three methods: their data selection, batches, models and settings."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rbda.errors import RbdaError, SettingError
from rbda.learn.methods import method_class
from rbda.learn.methods.base import RunSpec
from rbda.learn.models import StampClassifier
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
    with pytest.raises(SettingError, match="'method'.*baseline, finetune, mme, st, ent, dann.*'adamatch'"):
        method_class("adamatch")


def test_every_method_name_has_a_class():
    from rbda.registry import ADAPTATION_METHODS, LAMBDA_METHODS, METHOD_LABELS, METHODS, REGISTRY

    assert set(METHODS) == set(METHOD_LABELS) and METHODS[0] == "baseline"
    assert set(LAMBDA_METHODS) <= set(ADAPTATION_METHODS)
    for name in METHODS:
        cls = method_class(name)
        assert cls.name == name and cls.__module__ == REGISTRY.methods[name].module


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
        (RunSpec("ent", "des", "hits", 0, seed=1, shots=5), "'lambda'.*'ent'"),
        (RunSpec("st", "des", "hits", 0, seed=1, shots=5, lam=0.1), "'lambda'"),
        (RunSpec("dann", "des", "hits", 0, seed=1, shots=5, lam=-1.0), "'lambda'"),
        (RunSpec("finetune", "des", "hits", 0, seed=1, shots=5, from_scratch=True), "'from_scratch'"),
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


# -- the standard semi-supervised baselines: S+T, ENT, DANN ------------------------------------


def test_st_is_mmes_set_up_one_cross_entropy_update_on_mmes_labelled_batch(surveys):
    st = method_class("st")(RunSpec("st", "des", "hits", 0, seed=1, shots=5), surveys)
    mme = method_class("mme")(RunSpec("mme", "des", "hits", 0, seed=1, shots=5, lam=0.1), surveys)
    assert st.head_kind == mme.head_kind == "prototype"
    plan = st.plan_epoch(30, _gen())
    mme_plan = mme.plan_epoch(30, _gen())
    assert set(plan) == set(mme_plan) == {"source", "target", "unlabelled"}  # MME's draws, same generator use
    assert all(torch.equal(plan[k], mme_plan[k]) for k in plan)
    assert plan["source"].shape == (30, 25) and plan["target"].shape == (30, 25)
    assert np.isin(plan["source"].numpy(), surveys["des"].split.train).all()
    assert np.isin(plan["target"].numpy(), st.shots).all()
    assert surveys["des"].labels_np[plan["source"].numpy()].mean() == pytest.approx(0.5, abs=0.06)
    model = StampClassifier("prototype")
    xs, ys = surveys["des"].batch(plan["source"][0])
    xt, yt = surveys["hits"].batch(plan["target"][0])
    model.eval()  # same BatchNorm behaviour for both computations
    [loss] = list(st.losses(model, plan, 0))
    expected = torch.nn.functional.cross_entropy(model(torch.cat((xs, xt))), torch.cat((ys, yt)))
    assert torch.equal(loss, expected)
    assert torch.equal(next(mme.losses(model, plan, 0)), expected)
    assert "target_unlabelled" not in st.describe()  # drawn for the common batches, never trained on


def test_mme_at_lambda_zero_makes_no_second_update(surveys):
    m = method_class("mme")(RunSpec("mme", "des", "hits", 0, seed=1, shots=5, lam=0.0), surveys)
    plan = m.plan_epoch(2, _gen())
    assert len(list(m.losses(StampClassifier("prototype").eval(), plan, 0))) == 1


def test_st_starts_from_the_baseline_feature_extractor_or_from_scratch(surveys):
    baseline = StampClassifier("linear")
    m = method_class("st")(RunSpec("st", "des", "hits", 0, seed=1, shots=1), surveys)
    torch.manual_seed(3)
    model = m.build_model(baseline.state_dict())
    torch.manual_seed(3)
    mme_model = method_class("mme")(RunSpec("mme", "des", "hits", 0, seed=1, shots=1, lam=0.1), surveys
                                    ).build_model(baseline.state_dict())
    assert model.head_kind == "prototype"
    assert all(torch.equal(v, model.backbone.state_dict()[k]) for k, v in baseline.backbone.state_dict().items())
    assert all(torch.equal(v, mme_model.state_dict()[k]) for k, v in model.state_dict().items())  # MME's init
    with pytest.raises(SettingError, match="baseline model"):
        m.build_model(None)
    scratch = method_class("st")(RunSpec("st", "des", "hits", 0, seed=1, shots=1, from_scratch=True), surveys)
    assert scratch.build_model(None).head_kind == "prototype"
    with pytest.raises(SettingError, match="init_model"):
        scratch.build_model(baseline.state_dict())


def _grads(model, loss):
    model.zero_grad()
    loss.backward()
    return ({k: p.grad.clone() for k, p in model.backbone.named_parameters() if p.grad is not None},
            {k: p.grad.clone() for k, p in model.head.named_parameters()})


def test_ent_minimises_entropy_with_head_and_features_where_mme_maximises_it_with_the_head():
    from rbda.learn.entropy import prediction_entropy
    from rbda.learn.methods.entropy_min import entropy_loss
    from rbda.learn.methods.mme import adversarial_entropy_loss

    torch.manual_seed(0)
    model = StampClassifier("prototype").eval()
    x = torch.randn(16, 3, 21, 21)
    ent_backbone, ent_head = _grads(model, entropy_loss(model, x, 0.5))
    mme_backbone, mme_head = _grads(model, adversarial_entropy_loss(model, x, 0.5))
    h_backbone, h_head = _grads(model, prediction_entropy(model(x)))
    assert entropy_loss(model, x, 0.5).item() == pytest.approx(0.5 * prediction_entropy(model(x)).item())
    for k in h_head:  # head: ENT descends H, MME ascends it
        torch.testing.assert_close(ent_head[k], 0.5 * h_head[k])
        torch.testing.assert_close(mme_head[k], -0.5 * h_head[k])
    for k in h_backbone:  # features: both descend H
        torch.testing.assert_close(ent_backbone[k], 0.5 * h_backbone[k])
        torch.testing.assert_close(mme_backbone[k], 0.5 * h_backbone[k])
    # one SGD step on the ENT loss lowers the entropy
    before = prediction_entropy(model(x)).item()
    with torch.no_grad():
        for p in model.parameters():
            if p.grad is not None:
                p.grad.zero_()
    entropy_loss(model, x, 1.0).backward()
    with torch.no_grad():
        for p in model.parameters():
            if p.grad is not None:
                p -= 0.01 * p.grad
    assert prediction_entropy(model(x)).item() < before


def test_ent_is_mme_with_the_entropy_step_replaced(surveys):
    spec = RunSpec("ent", "des", "hits", 0, seed=1, shots=5, lam=0.1)
    m = method_class("ent")(spec, surveys)
    assert m.head_kind == "prototype"
    plan = m.plan_epoch(3, _gen())
    assert set(plan) == {"source", "target", "unlabelled"}
    model = StampClassifier("prototype").eval()
    losses = list(m.losses(model, plan, 0))
    assert len(losses) == 2 and losses[1].item() > 0  # +lambda*H (MME's is negative)


def test_dann_reversal_schedule_is_tllibs_warm_start_over_a_fixed_iteration_count():
    from rbda.learn.methods.dann import reversal_coefficient

    assert reversal_coefficient(0, 1000) == 0.0
    # TLlib WarmStartGradientReverseLayer(alpha=1, lo=0, hi=1, max_iters=1000) at iteration 1000 and 4000
    assert reversal_coefficient(1000, 1000) == pytest.approx(2 / (1 + np.exp(-1)) - 1)  # 0.462
    assert reversal_coefficient(4000, 1000) == pytest.approx(2 / (1 + np.exp(-4)) - 1)  # 0.964
    assert reversal_coefficient(500, 500) == reversal_coefficient(1000, 1000)
    values = [reversal_coefficient(i, 1000) for i in range(0, 10_001, 1000)]
    assert all(a < b < 1 for a, b in zip(values, values[1:]))


def test_dann_coefficient_counts_the_runs_iterations_only(surveys):
    from rbda.learn.methods.dann import reversal_coefficient

    m = method_class("dann")(RunSpec("dann", "des", "hits", 0, seed=1, shots=5, settings={"reversal_ramp_iterations": 200}), surveys)
    m.begin_epoch(iteration=30)
    assert m.coefficient(0) == reversal_coefficient(30, 200) and m.coefficient(5) == reversal_coefficient(35, 200)
    assert m.describe()["reversal_schedule"] == "2/(1+exp(-i/200))-1 at iteration i"
    with pytest.raises(SettingError, match="reversal_ramp_iterations"):
        method_class("dann")(RunSpec("dann", "des", "hits", 0, seed=1, shots=5, settings={"reversal_ramp_iterations": 0}), surveys)


def test_dann_domain_head_learns_while_features_get_the_reversed_gradient():
    from rbda.learn.methods.dann import DomainAdversarialClassifier, domain_loss

    torch.manual_seed(0)
    model = DomainAdversarialClassifier().eval()
    x = torch.randn(12, 3, 21, 21)
    is_target = torch.arange(12) >= 4

    def grads(coefficient):
        model.zero_grad()
        domain_loss(model.domain_logits(model.backbone(x), coefficient), is_target).backward()
        return ({k: p.grad.clone() for k, p in model.backbone.named_parameters() if p.grad is not None},
                {k: p.grad.clone() for k, p in model.domain_head.named_parameters()})

    plain_backbone, plain_head = grads(-1.0)  # coefficient -1: no reversal (gradient times +1)
    rev_backbone, rev_head = grads(0.5)
    for k in plain_head:  # the domain head descends its loss, whatever the coefficient
        torch.testing.assert_close(rev_head[k], plain_head[k])
    for k in plain_backbone:  # the features ascend it, scaled
        torch.testing.assert_close(rev_backbone[k], -0.5 * plain_backbone[k])
    assert any(g.abs().sum() > 0 for g in plain_backbone.values())


def test_dann_domain_loss_weighs_the_two_domains_equally():
    from rbda.learn.methods.dann import domain_loss

    logits = torch.tensor([0.0, 0.0, 2.0, 2.0, 2.0, -1.0])
    is_target = torch.tensor([False, False, True, True, True, True])
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    expected = 0.5 * (bce(logits[:2], torch.zeros(2)) + bce(logits[2:], torch.ones(4)))
    torch.testing.assert_close(domain_loss(logits, is_target), expected)


def test_dann_model_starts_from_the_whole_baseline_and_writes_the_classifier_only(surveys):
    baseline = StampClassifier("linear")
    m = method_class("dann")(RunSpec("dann", "des", "hits", 0, seed=1, shots=5), surveys)
    model = m.build_model(baseline.state_dict())
    for k, v in baseline.state_dict().items():
        assert torch.equal(model.state_dict()[k], v)
    assert any(k.startswith("domain_head.") for k in model.state_dict())
    assert set(model.classifier_state()) == set(baseline.state_dict())
    plan = m.plan_epoch(2, _gen())
    assert plan["unlabelled"].shape == (2, 50) and not np.isin(plan["unlabelled"].numpy(), m.shots).any()
    m.begin_epoch(0)
    [loss] = list(m.losses(model, plan, 0))
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert m.describe()["domain_weight"] == 1.0


# -- mmefm: MME + FixMatch-style pseudo-labels --------------------------------------------------


def test_pseudo_label_loss_on_fixed_inputs_masks_items_below_the_threshold():
    from rbda.learn.methods.mme_fixmatch import pseudo_label_loss

    # weak-view probabilities of class 1: 0.9 (confident), 0.6 (not), 0.02 (confident class 0), 0.5
    p1 = torch.tensor([0.9, 0.6, 0.02, 0.5])
    logits_weak = torch.stack((torch.zeros(4), torch.log(p1 / (1 - p1))), dim=1)
    logits_strong = torch.tensor([[0.0, 2.0], [1.0, -1.0], [0.5, 0.0], [0.0, 0.0]], requires_grad=True)
    loss, mask = pseudo_label_loss(logits_weak, logits_strong, tau=0.8)
    assert mask.tolist() == [True, False, True, False]
    log_p = torch.log_softmax(logits_strong.detach(), dim=1)
    expected = -(log_p[0, 1] + log_p[2, 0]) / 4  # confident items' CE, divided by the whole batch
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    loss.backward()
    assert torch.equal(logits_strong.grad[1], torch.zeros(2)) and torch.equal(logits_strong.grad[3], torch.zeros(2))
    assert logits_strong.grad[0].abs().sum() > 0 and logits_strong.grad[2].abs().sum() > 0
    # tau = 1: no item is confident enough -> no target, loss 0
    none, mask = pseudo_label_loss(logits_weak, logits_strong, tau=1.0)
    assert not mask.any() and none.item() == 0.0
    # tau = 0: every item has a target (its weak argmax; a tie goes to class 0)
    _, mask = pseudo_label_loss(logits_weak, logits_strong, tau=0.0)
    assert mask.all()


def test_pseudo_labels_carry_no_gradient_to_the_weak_view():
    from rbda.learn.methods.mme_fixmatch import pseudo_label_loss

    logits_weak = torch.tensor([[3.0, 0.0], [0.0, 3.0]], requires_grad=True)
    loss, _ = pseudo_label_loss(logits_weak, torch.zeros(2, 2, requires_grad=True), tau=0.9)
    loss.backward()
    assert logits_weak.grad is None or torch.equal(logits_weak.grad, torch.zeros(2, 2))


def test_mmefm_unlabelled_loss_is_mme_entropy_plus_weighted_consistency():
    from rbda.learn.methods.mme import adversarial_entropy_loss
    from rbda.learn.methods.mme_fixmatch import mmefm_unlabelled_loss, pseudo_label_loss

    torch.manual_seed(0)
    model = StampClassifier("prototype").eval()
    weak, strong = torch.randn(16, 3, 21, 21), torch.randn(16, 3, 21, 21)
    lam, mu = 0.1, 2.0
    # the threshold between the weak view's confidences (the prototype head's T = 0.05 makes most high)
    tau = torch.softmax(model(weak), dim=1).max(dim=1).values.median().item()
    total = mmefm_unlabelled_loss(model, weak, strong, lam, tau, mu)
    consistency, mask = pseudo_label_loss(model(weak), model(strong), tau)
    assert 0 < mask.sum() < 16  # the fixed inputs exercise both sides of the threshold
    expected = adversarial_entropy_loss(model, weak, lam) + mu * consistency
    assert total.item() == pytest.approx(expected.item(), rel=1e-5)
    # mu = 0 is MME's unlabelled step exactly, gradients included
    g_fm = _grads(model, mmefm_unlabelled_loss(model, weak, strong, lam, tau, 0.0))
    g_mme = _grads(model, adversarial_entropy_loss(model, weak, lam))
    for a, b in zip(g_fm, g_mme):
        for k in b:
            torch.testing.assert_close(a[k], b[k])


def test_mmefm_plans_mme_batches_and_resumable_view_seeds(surveys):
    spec = RunSpec("mmefm", "des", "hits", 0, seed=1, shots=5, lam=0.1,
                   settings={"pseudo_label_threshold": 0.9, "consistency_weight": 0.5})
    m = method_class("mmefm")(spec, surveys)
    assert m.head_kind == "prototype"
    plan = m.plan_epoch(3, _gen())
    assert set(plan) == {"source", "target", "unlabelled", "augment_seed"}
    assert plan["augment_seed"].shape == (3,) and plan["augment_seed"].device.type == "cpu"
    assert torch.equal(plan["augment_seed"], m.plan_epoch(3, _gen())["augment_seed"])
    model = StampClassifier("prototype").eval()
    first = [loss.item() for loss in m.losses(model, plan, 0)]
    again = [loss.item() for loss in m.losses(model, plan, 0)]
    assert len(first) == 2 and first == again  # views drawn from the plan's seed: the same numbers
    assert spec.as_dict()["pseudo_label_threshold"] == 0.9 and spec.as_dict()["consistency_weight"] == 0.5
    assert RunSpec("mmefm", "des", "hits", 0, seed=1, shots=5, lam=0.1).settings == {
        "pseudo_label_threshold": 0.95, "consistency_weight": 0.3, "strong_view_shift": "integer"}  # the declared defaults
    assert "consistency_weight" not in RunSpec("mme", "des", "hits", 0, seed=1, shots=5, lam=0.1).as_dict()


@pytest.mark.parametrize(("kwargs", "message"), [({"settings": {"pseudo_label_threshold": 1.5}}, "pseudo_label_threshold"),
                                                 ({"settings": {"consistency_weight": -1.0}}, "consistency_weight"),
                                                 ({"settings": {"smoothing": 0.1}}, "'smoothing'.*setting of method 'mmefm'"),
                                                 ({"lam": None}, "'lambda'")])
def test_mmefm_settings_are_checked(surveys, kwargs, message):
    spec = RunSpec("mmefm", "des", "hits", 0, seed=1, shots=5, **{"lam": 0.1, **kwargs})
    with pytest.raises(SettingError, match=message):
        method_class("mmefm")(spec, surveys)


# -- cdac: Cross-Domain Adaptive Clustering (Li et al. 2021) -------------------------------------


def test_cdac_rank_similarity_targets_compare_top_k_feature_sets():
    from rbda.learn.methods.cdac import rank_similarity_targets

    features = torch.tensor([[5.0, 4.0, 0.0, 1.0],   # top-2 {0, 1}
                             [3.0, 9.0, 1.0, 2.0],   # top-2 {0, 1} (other order)
                             [0.0, 1.0, 7.0, 2.0]])  # top-2 {2, 3}
    expected = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    assert torch.equal(rank_similarity_targets(features, topk=2), expected)
    assert torch.equal(rank_similarity_targets(features, topk=1), torch.eye(3))  # top-1: 0, 1, 2
    assert torch.equal(rank_similarity_targets(features, topk=4), torch.ones(3, 3))


def test_cdac_pairwise_bce_on_a_hand_computed_case():
    from rbda.learn.methods.cdac import BCE_EPS, pairwise_bce

    pa = torch.tensor([[0.9, 0.1], [0.2, 0.8]])
    pb = torch.tensor([[0.6, 0.4], [0.5, 0.5]])
    targets = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # P = pa @ pb.T = [[0.58, 0.50], [0.44, 0.50]]
    terms = [-math.log(0.58 + BCE_EPS), -math.log(1 - 0.50 + BCE_EPS), -math.log(1 - 0.44 + BCE_EPS),
             -math.log(0.50 + BCE_EPS)]
    assert pairwise_bce(pa, pb, targets).item() == pytest.approx(sum(terms) / 4, rel=1e-6)


def test_cdac_pairwise_bce_is_the_references_flattened_pair_enumeration():
    """lijichang/CVPR2021-SSDA losses.py: PairEnum2D(prob) rows against PairEnum2D(prob_bar) columns."""
    from rbda.learn.methods.cdac import BCE_EPS, pairwise_bce, rank_similarity_targets

    torch.manual_seed(0)
    p, p_bar = torch.softmax(torch.randn(5, 3), 1), torch.softmax(torch.randn(5, 3), 1)
    feat = torch.randn(5, 8)
    n = 5
    rows, cols = p.repeat(n, 1), p_bar.repeat(1, n).view(-1, 3)
    rank = torch.argsort(feat, dim=1, descending=True)
    r1, r2 = rank.repeat(n, 1)[:, :3].sort(1).values, rank.repeat(1, n).view(-1, 8)[:, :3].sort(1).values
    simi = ((r1 - r2).abs().sum(1) == 0).float()
    prob = (rows * cols).sum(1)
    reference = -(simi * torch.log(prob + BCE_EPS) + (1 - simi) * torch.log(1 - prob + BCE_EPS)).mean()
    ours = pairwise_bce(p, p_bar, rank_similarity_targets(feat, 3))
    torch.testing.assert_close(ours, reference)


def test_cdac_consistency_loss_and_rampup_on_hand_computed_cases():
    from rbda.learn.methods.cdac import METHOD, consistency_loss, sigmoid_rampup

    length = METHOD.setting("rampup_iterations").default

    a = torch.log(torch.tensor([[0.75, 0.25]]))  # logits whose softmax is (0.75, 0.25)
    b = torch.log(torch.tensor([[0.25, 0.75]]))
    assert consistency_loss(a, b).item() == pytest.approx((0.5 ** 2 + 0.5 ** 2) / 2)
    assert consistency_loss(a, a).item() == 0.0
    assert sigmoid_rampup(0, length) == pytest.approx(math.exp(-5))
    assert sigmoid_rampup(length // 2, length) == pytest.approx(math.exp(-5 * 0.25))
    assert sigmoid_rampup(length, length) == sigmoid_rampup(10 * length, length) == 1.0
    assert length == 20_000 and sigmoid_rampup(5, 0) == 1.0  # the reference's --rampup_length


def test_cdac_adversarial_clustering_gradients_are_reversed_for_the_features():
    """lambda * L_aac: the head ascends the pairwise BCE, the feature extractor descends it."""
    from rbda.learn.methods.cdac import adaptive_clustering_loss, pairwise_bce, rank_similarity_targets

    torch.manual_seed(0)
    model = StampClassifier("prototype").eval()
    weak, strong = torch.randn(8, 3, 21, 21), torch.randn(8, 3, 21, 21)

    def aac():
        fw, fs = model.backbone(weak), model.backbone(strong)
        return adaptive_clustering_loss(fw, model.head(model.reversal(fw)), model.head(model.reversal(fs)), 5)

    def bce():
        fw, fs = model.backbone(weak), model.backbone(strong)
        return pairwise_bce(torch.softmax(model.head(fw), 1), torch.softmax(model.head(fs), 1),
                            rank_similarity_targets(fw, 5))

    aac_backbone, aac_head = _grads(model, aac())
    bce_backbone, bce_head = _grads(model, bce())
    for k in bce_head:
        torch.testing.assert_close(aac_head[k], -bce_head[k])
    for k in bce_backbone:
        torch.testing.assert_close(aac_backbone[k], bce_backbone[k])


def test_cdac_unlabelled_loss_sums_its_three_terms():
    from rbda.learn.methods.cdac import adaptive_clustering_loss, cdac_unlabelled_loss, consistency_loss
    from rbda.learn.methods.mme_fixmatch import pseudo_label_loss

    torch.manual_seed(1)
    model = StampClassifier("prototype").eval()
    w, s1, s2 = (torch.randn(6, 3, 21, 21) for _ in range(3))
    fw, f1, f2 = (model.backbone(x) for x in (w, s1, s2))
    aac = adaptive_clustering_loss(fw, model.head(fw), model.head(f1), 4)
    pl, _ = pseudo_label_loss(model.head(fw), model.head(f2), 0.6)
    con = consistency_loss(model.head(f1), model.head(f2))
    total = cdac_unlabelled_loss(model, w, s1, s2, lam=0.3, tau=0.6, consistency_weight=2.0, topk=4)
    torch.testing.assert_close(total, 0.3 * aac + pl + 2.0 * con)


def test_cdac_plans_mme_batches_and_view_seeds_and_ramps_its_consistency_weight(surveys):
    from rbda.learn.methods.cdac import sigmoid_rampup

    m = method_class("cdac")(RunSpec("cdac", "des", "hits", 0, seed=1, shots=5, lam=1.0), surveys)
    assert m.spec.settings == {"topk": 5, "rampup_weight": 30.0, "rampup_iterations": 20_000,
                               "pseudo_label_threshold": 0.95, "strong_view_shift": "integer"}  # the reference's
    assert m.head_kind == "prototype"
    plan = m.plan_epoch(3, _gen())
    assert set(plan) == {"source", "target", "unlabelled", "augment_seed"}
    m.begin_epoch(400)
    assert m.consistency_weight(2) == 30.0 * sigmoid_rampup(402, 20_000)
    short = method_class("cdac")(RunSpec("cdac", "des", "hits", 0, seed=1, shots=5, lam=1.0,
                                         settings={"rampup_weight": 2.0, "rampup_iterations": 100}), surveys)
    short.begin_epoch(50)
    assert short.consistency_weight(0) == 2.0 * sigmoid_rampup(50, 100)
    assert short.describe()["consistency_rampup"] == "2 x sigmoid_rampup(i, 100)"
    model = StampClassifier("prototype")
    losses = list(m.losses(model, plan, 0))
    assert len(losses) == 2 and all(torch.isfinite(loss) for loss in losses)
    with pytest.raises(SettingError, match="lambda"):
        method_class("cdac")(RunSpec("cdac", "des", "hits", 0, seed=1, shots=5), surveys)
    with pytest.raises(SettingError, match="strong_view_shift"):
        method_class("cdac")(RunSpec("cdac", "des", "hits", 0, seed=1, shots=5, lam=1.0,
                                         settings={"strong_view_shift": "x"}), surveys)
