"""The training loop: learning, determinism, early stopping, resume, divergence."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from rbda.errors import InputFileError, RbdaError, SettingError
from rbda.learn.methods import method_class
from rbda.learn.methods.base import RunSpec
from rbda.learn.evaluate import evaluate_method
from rbda.learn.train import TrainConfig, learning_rate_at, train
from rbda.registry import ADAPTATION_METHODS, LAMBDA_METHODS, METHODS
from rbda.study import STUDY_METHODS
from train_helpers import SIZE, make_survey, survey_data

SHORT = TrainConfig(epoch_size=500, max_epochs=4, patience=10)


# one thread, deterministic algorithms (tests/conftest.py); `surveys` is conftest's too
pytestmark = pytest.mark.usefixtures("deterministic_single_thread")


def _baseline(surveys):
    return method_class("baseline")(RunSpec("baseline", "des", None, 0, seed=4), surveys)


def _fit(method, config=SHORT, **kwargs):
    return train(method, config, progress_stream=io.StringIO(), **kwargs)


@pytest.fixture(scope="module")
def baseline_state(surveys):
    return _fit(_baseline(surveys)).model.state_dict()


def _numbers(result, method):
    return result.state.history, evaluate_method(method, result.model)


def test_baseline_learns_its_survey(surveys):
    method = _baseline(surveys)
    result = _fit(method)
    own = evaluate_method(method, result.model)[0]
    assert own["survey"] == "des" and own["bacc"] > 0.9
    assert result.state.iteration == 4 * 10  # ceil(500 / 50) iterations per epoch
    assert result.stopped_by == "max_epochs"


def test_same_seed_same_numbers(surveys):
    m1, m2 = _baseline(surveys), _baseline(surveys)
    assert _numbers(_fit(m1), m1) == _numbers(_fit(m2), m2)


@pytest.mark.parametrize("ties", ["latest", "earliest"])
def test_early_stopping_keeps_the_best_epoch(surveys, ties):
    config = TrainConfig(epoch_size=100, max_epochs=50, patience=2, best_epoch_ties=ties)
    result = _fit(_baseline(surveys), config)
    history = result.state.history
    assert result.stopped_by == "patience"
    best = max(h["val_bacc"] for h in history)
    assert result.state.best_bacc == best
    best_epochs = [h["epoch"] for h in history if h["val_bacc"] == best]
    assert result.state.best_epoch == (best_epochs[-1] if ties == "latest" else best_epochs[0])
    # patience counts from the first epoch with that BACC: a tie does not extend the run
    assert result.state.epoch == best_epochs[0] + 2 < 50


class _Model(torch.nn.Module):
    def __init__(self, value):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor([float(value)]))


@pytest.mark.parametrize(("ties", "expected_epoch", "expected_weight"), [("latest", 3, 3.0), ("earliest", 1, 1.0)])
def test_record_epoch_tie_rule(ties, expected_epoch, expected_weight):
    from rbda.learn.checkpoint import TrainingState
    from rbda.learn.train import _record_epoch

    state = TrainingState()
    for epoch, bacc in ((1, 0.9), (2, 0.8), (3, 0.9), (4, 0.85)):
        state.epoch = epoch
        _record_epoch(state, _Model(epoch), 0.1, bacc, ties)
    assert (state.best_epoch, state.best_bacc) == (expected_epoch, 0.9)
    assert state.best_weights["w"].item() == expected_weight
    assert state.epochs_since_best == 3  # only epoch 1 was strictly better


def _finetune(surveys):
    return method_class("finetune")(RunSpec("finetune", "des", "hits", 0, seed=4, shots=5), surveys)


class _Scripted:
    """Stands in for rbda.learn.train.evaluate_rows: validation BACCs from a script, in call order."""

    def __init__(self, baccs):
        self.baccs = list(baccs)

    def __call__(self, *args, **kwargs):
        bacc = self.baccs.pop(0)
        return type("C", (), {"balanced_accuracy": lambda _: bacc})()


def test_epoch_zero_is_a_candidate_only_when_asked(surveys, baseline_state, monkeypatch):
    config = TrainConfig(epoch_size=100, max_epochs=3, patience=10, epoch_zero_candidate=True)
    monkeypatch.setattr("rbda.learn.train.evaluate_rows", _Scripted([0.9, 0.8, 0.85, 0.7]))
    result = _fit(_finetune(surveys), config, init_state=baseline_state)
    history = result.state.history
    assert [h["epoch"] for h in history] == [0, 1, 2, 3] and history[0]["train_loss"] is None
    assert (result.state.best_epoch, result.state.best_bacc, result.state.epoch) == (0, 0.9, 3)
    assert all(torch.equal(result.model.state_dict()[k], v) for k, v in baseline_state.items()
               if k in result.model.state_dict())  # the starting model's weights came back
    # a training epoch that beats it wins
    monkeypatch.setattr("rbda.learn.train.evaluate_rows", _Scripted([0.9, 0.95, 0.85, 0.7]))
    assert _fit(_finetune(surveys), config, init_state=baseline_state).state.best_epoch == 1
    # off: no epoch 0
    monkeypatch.setattr("rbda.learn.train.evaluate_rows", _Scripted([0.8, 0.85, 0.7]))
    off = _fit(_finetune(surveys), TrainConfig(epoch_size=100, max_epochs=3, patience=10), init_state=baseline_state)
    assert [h["epoch"] for h in off.state.history] == [1, 2, 3] and off.state.best_epoch == 2
    # a baseline never has an epoch 0 (its starting model is random)
    monkeypatch.setattr("rbda.learn.train.evaluate_rows", _Scripted([0.8]))
    base = _fit(_baseline(surveys), TrainConfig(epoch_size=100, max_epochs=1, epoch_zero_candidate=True))
    assert [h["epoch"] for h in base.state.history] == [1]


def test_run_record_says_whether_epoch_zero_won(surveys, baseline_state, monkeypatch):
    from rbda.learn.records import run_record

    method = _finetune(surveys)
    config = TrainConfig(epoch_size=100, max_epochs=2, patience=10, best_epoch_ties="earliest",
                         epoch_zero_candidate=True)
    monkeypatch.setattr("rbda.learn.train.evaluate_rows", _Scripted([0.9, 0.9, 0.9]))
    record = run_record(method, config, _fit(method, config, init_state=baseline_state), [])
    assert record["training"]["best_epoch"] == 0 and record["training"]["epoch_zero_won"] is True
    assert record["hyperparameters"]["epoch_zero_candidate"] is True
    assert record["hyperparameters"]["best_epoch_ties"] == "earliest"
    latest = TrainConfig(epoch_size=100, max_epochs=2, patience=10, epoch_zero_candidate=True)
    monkeypatch.setattr("rbda.learn.train.evaluate_rows", _Scripted([0.9, 0.9, 0.9]))
    record = run_record(method, latest, _fit(_finetune(surveys), latest, init_state=baseline_state), [])
    assert record["training"]["best_epoch"] == 2 and record["training"]["epoch_zero_won"] is False


def test_learning_rate_is_halved_every_n_iterations():
    config = TrainConfig(lr=0.01, lr_halve_every=100)
    assert [learning_rate_at(config, i) for i in (0, 99, 100, 250)] == [0.01, 0.01, 0.005, 0.0025]


def test_inv_schedule_is_the_reference_mme_codes_inv_lr_scheduler():
    """SSDA_MME utils/lr_schedule.py: lr = init_lr * (1 + gamma * iter) ** (-power), gamma 1e-4, power 0.75."""
    config = TrainConfig(lr=0.01, lr_schedule="inv", lr_halve_every=100)
    for i in (0, 1, 99, 100, 10_000, 50_000):
        assert learning_rate_at(config, i) == pytest.approx(0.01 * (1 + 0.0001 * i) ** -0.75, rel=1e-12)
    assert learning_rate_at(config, 10_000) == pytest.approx(0.01 * 2 ** -0.75)  # halving ignored
    with pytest.raises(SettingError, match="lr_schedule"):
        TrainConfig(lr_schedule="cosine").check()


def test_the_loop_sets_the_inv_rate_at_every_iteration(surveys, monkeypatch):
    import rbda.learn.train
    from rbda.learn.optim import MomentumSGD

    rates = []

    class Recording(MomentumSGD):
        def step(self):
            rates.append(self.lr)
            super().step()

    monkeypatch.setattr(rbda.learn.train, "MomentumSGD", Recording)
    _fit(_baseline(surveys), TrainConfig(epoch_size=100, max_epochs=2, patience=10, lr_schedule="inv"))
    assert rates == pytest.approx([0.01 * (1 + 0.0001 * i) ** -0.75 for i in range(4)], rel=1e-12)


class _Interrupt(Exception):
    pass


def _interrupt_after(epoch):
    def hook(done):
        if done == epoch:
            raise _Interrupt

    return hook


LAMBDAS = {name: 0.1 for name in LAMBDA_METHODS}


def _adapt(surveys, name, **kwargs):
    return method_class(name)(RunSpec(name, "des", "hits", 0, seed=4, shots=5, lam=LAMBDAS.get(name), **kwargs),
                              surveys)


@pytest.mark.parametrize("method_name", [m for m in ADAPTATION_METHODS if m not in STUDY_METHODS])
def test_other_adaptation_methods_train_on_the_synthetic_surveys(surveys, baseline_state, method_name):
    method = _adapt(surveys, method_name)
    result = _fit(method, init_state=baseline_state)
    assert result.state.iteration == 4 * 10 and len(result.state.history) == 4
    evaluations = {e["role"]: e["bacc"] for e in evaluate_method(method, result.model)}
    assert evaluations["source"] > 0.8 and evaluations["target"] > 0.6


def test_st_trains_from_scratch(surveys):
    method = _adapt(surveys, "st", from_scratch=True)
    result = _fit(method)
    assert {e["role"]: e["bacc"] for e in evaluate_method(method, result.model)}["source"] > 0.8


def test_st_and_mme_at_lambda_zero_train_identical_weights_from_the_same_seed(surveys, baseline_state,
                                                                              monkeypatch):
    """S+T is MME's set-up minus the minimax step: with the same seeds (the loop derives them from the
    method's name and lambda too, so those keys are dropped here) the two runs are the same run."""
    import rbda.learn.train as loop
    from rbda.seeding import derive_seed

    monkeypatch.setattr(loop, "derive_seed", lambda seed, stream, *keys: derive_seed(seed, stream))
    config = TrainConfig(epoch_size=200, max_epochs=3, patience=10)
    st = _fit(_adapt(surveys, "st"), config, init_state=baseline_state)
    mme = method_class("mme")(RunSpec("mme", "des", "hits", 0, seed=4, shots=5, lam=0.0), surveys)
    mme = _fit(mme, config, init_state=baseline_state)
    assert st.state.history == mme.state.history
    st_weights, mme_weights = st.model.state_dict(), mme.model.state_dict()
    assert st_weights.keys() == mme_weights.keys()
    assert all(torch.equal(st_weights[k], mme_weights[k]) for k in st_weights)


def test_finetune_with_frozen_batch_norm_keeps_the_baselines_statistics(surveys, baseline_state):
    config = TrainConfig(epoch_size=100, max_epochs=2, patience=10)
    stats = lambda state: {k: v for k, v in state.items() if "running_" in k}  # noqa: E731
    assert stats(baseline_state)
    frozen = _fit(_adapt(surveys, "finetune", settings={"frozen_batch_norm": True}), config, init_state=baseline_state).model.state_dict()
    for k, v in stats(baseline_state).items():
        assert torch.equal(frozen[k], v), k
    assert any(not torch.equal(frozen[k], baseline_state[k]) for k in baseline_state if "weight" in k)  # it learns
    study = _fit(_adapt(surveys, "finetune"), config, init_state=baseline_state).model.state_dict()
    assert any(not torch.equal(study[k], v) for k, v in stats(baseline_state).items())  # the study's FT re-estimates
    with pytest.raises(SettingError, match="frozen_batch_norm"):
        _adapt(surveys, "mme", settings={"frozen_batch_norm": True})


def test_dann_reversal_coefficient_does_not_depend_on_max_epochs(surveys, baseline_state, monkeypatch):
    """The ramp counts iterations of the run (TLlib's max_iters), not progress towards max_epochs:
    the first two epochs use the same coefficients whether the run may last 4 epochs or 40."""
    import rbda.learn.methods.dann as dann

    used = []
    original = dann.reversal_coefficient

    def recording(*args):
        used.append(original(*args))
        return used[-1]

    monkeypatch.setattr(dann, "reversal_coefficient", recording)
    per_max_epochs = {}
    for max_epochs in (4, 40):
        used.clear()
        with pytest.raises(_Interrupt):
            _fit(_adapt(surveys, "dann"), TrainConfig(epoch_size=100, max_epochs=max_epochs, patience=100),
                 init_state=baseline_state, on_epoch_end=_interrupt_after(2))
        per_max_epochs[max_epochs] = list(used)
    assert len(per_max_epochs[4]) == 4 and per_max_epochs[4] == per_max_epochs[40]
    assert per_max_epochs[4][3] == original(3, 1000)


@pytest.mark.parametrize("method_name", METHODS)
def test_interrupted_run_resumes_to_the_same_numbers(tmp_path, surveys, baseline_state, method_name):
    def make():
        if method_name == "baseline":
            return _baseline(surveys)
        return _adapt(surveys, method_name)

    init = None if method_name == "baseline" else baseline_state
    config = TrainConfig(epoch_size=300, max_epochs=5, patience=10, checkpoint_every_epochs=2)
    m = make()
    uninterrupted = _numbers(_fit(m, config, init_state=init), m)

    checkpoint = tmp_path / "run.ckpt"
    with pytest.raises(_Interrupt):
        _fit(make(), config, init_state=init, checkpoint=checkpoint, on_epoch_end=_interrupt_after(3))
    assert checkpoint.exists()  # written after epoch 2
    m = make()
    resumed = _fit(m, config, init_state=init, checkpoint=checkpoint)
    assert resumed.resumed_from_epoch == 2
    assert _numbers(resumed, m) == uninterrupted


def test_checkpoint_of_other_arguments_is_refused(tmp_path, surveys):
    checkpoint = tmp_path / "run.ckpt"
    config = TrainConfig(epoch_size=100, max_epochs=3, patience=10)
    with pytest.raises(_Interrupt):
        _fit(_baseline(surveys), config, checkpoint=checkpoint, on_epoch_end=_interrupt_after(1))
    other = TrainConfig(epoch_size=100, max_epochs=3, patience=10, lr=0.02)
    with pytest.raises(InputFileError, match="other arguments .*lr: checkpoint 0.01, now 0.02"):
        _fit(_baseline(surveys), other, checkpoint=checkpoint)


def test_nan_loss_stops_with_an_error_and_no_checkpoint(tmp_path):
    broken = survey_data("des", 400, 5)
    broken.stamps[broken.split.train[:200]] = float("nan")
    checkpoint = tmp_path / "run.ckpt"
    method = method_class("baseline")(RunSpec("baseline", "des", None, 0, seed=4), {"des": broken})
    with pytest.raises(RbdaError, match="training diverged: the mean loss of epoch 1 is nan"):
        _fit(method, TrainConfig(epoch_size=500, max_epochs=3), checkpoint=checkpoint)
    assert not checkpoint.exists()


@pytest.mark.parametrize("field, value", [("epoch_size", 0), ("patience", -1), ("lr", 0.0), ("momentum", 1.0)])
def test_bad_training_settings_are_named(field, value):
    with pytest.raises(SettingError, match=field):
        TrainConfig(**{field: value}).check()


def test_progress_writes_one_line_per_n_epochs_in_a_log(surveys):
    log = io.StringIO()
    train(_baseline(surveys), TrainConfig(epoch_size=50, max_epochs=4, patience=10, log_every_epochs=2),
          progress_stream=log)
    lines = log.getvalue().splitlines()
    assert [line.split(":")[1].split()[0] for line in lines] == ["2/4", "4/4", "4/4"]
    assert "val BACC" in lines[0] and "best" in lines[0] and "ETA" in lines[0]
    assert lines[-1].endswith("stopped by max_epochs")


def test_bf16_option_trains(surveys):
    config = TrainConfig(epoch_size=100, max_epochs=1, bf16=True)
    result = _fit(_baseline(surveys), config)
    assert result.state.epoch == 1


def test_memory_format_auto_is_channels_last_on_cpu_and_contiguous_on_cuda():
    from rbda.device import resolve_memory_format

    assert resolve_memory_format("auto", torch.device("cpu")) == "channels_last"
    assert resolve_memory_format("auto", torch.device("cuda")) == "contiguous"
    for setting in ("channels_last", "contiguous"):
        assert resolve_memory_format(setting, torch.device("cpu")) == setting
    with pytest.raises(SettingError, match="memory_format"):
        TrainConfig(memory_format="nhwc").check()


def test_memory_formats_train_the_same_model_up_to_rounding():
    """Only the layout differs: the same first-epoch mean loss up to rounding; the layout is recorded."""
    runs = {}
    for memory_format in ("channels_last", "contiguous"):
        fresh = {"des": survey_data("des", 800, 1), "hits": survey_data("hits", 800, 2)}
        assert fresh["des"].stamps.is_contiguous()
        result = _fit(_baseline(fresh), TrainConfig(epoch_size=100, max_epochs=1, memory_format=memory_format))
        assert result.memory_format == memory_format
        runs[memory_format] = result.state.history[0]["train_loss"]
    assert runs["channels_last"] == pytest.approx(runs["contiguous"], rel=1e-3)
    fresh = {"des": survey_data("des", 800, 1), "hits": survey_data("hits", 800, 2)}
    auto = _fit(_baseline(fresh), TrainConfig(epoch_size=100, max_epochs=1))
    assert auto.memory_format == "channels_last"
    assert fresh["des"].stamps.is_contiguous(memory_format=torch.channels_last)


def test_momentum_sgd_matches_torch_optim_sgd_exactly():
    from rbda.learn.models import StampClassifier
    from rbda.learn.optim import MomentumSGD

    torch.manual_seed(0)
    ours, reference = StampClassifier("prototype").eval(), StampClassifier("prototype").eval()
    reference.load_state_dict(ours.state_dict())
    opt_ours = MomentumSGD(ours.parameters(), lr=0.01, momentum=0.9)
    opt_ref = torch.optim.SGD(reference.parameters(), lr=0.01, momentum=0.9)
    for step in range(4):
        x = torch.randn(8, 3, 21, 21)
        if step == 2:
            opt_ours.lr = 0.005
            for group in opt_ref.param_groups:
                group["lr"] = 0.005
        for model, opt in ((ours, opt_ours), (reference, opt_ref)):
            opt.zero_grad()
            model(x).logsumexp(dim=1).mean().backward()
            opt.step()
    for a, b in zip(ours.state_dict().values(), reference.state_dict().values()):
        assert torch.equal(a, b)
    restored = MomentumSGD(reference.parameters(), lr=1.0, momentum=0.0)
    restored.load_state_dict(opt_ours.state_dict())
    assert restored.lr == 0.005 and all(torch.equal(a, b) for a, b in zip(restored.buffers, opt_ours.buffers))


def test_momentum_sgd_with_the_reference_mme_options_matches_torch_optim_sgd_exactly():
    """Per-group learning rates (backbone 0.1x, head 1x), weight decay and Nesterov: the same update as
    torch.optim.SGD with one param group per group, through a learning-rate change and a state restore."""
    from rbda.learn.models import StampClassifier
    from rbda.learn.optim import MomentumSGD, parameter_groups

    torch.manual_seed(1)
    ours, reference = StampClassifier("prototype").eval(), StampClassifier("prototype").eval()
    reference.load_state_dict(ours.state_dict())
    scales = (0.1, 1.0, 1.0)
    opt_ours = MomentumSGD(parameter_groups(ours.backbone, ours, *scales), lr=0.01, momentum=0.9,
                           weight_decay=0.0005, nesterov=True)
    assert [len(g) for g, _ in opt_ours.groups] == [len(list(ours.backbone.conv.parameters())),
                                                    len(list(ours.backbone.fc.parameters())),
                                                    len(list(ours.head.parameters()))]
    groups = [{"params": list(reference.backbone.conv.parameters()), "lr": 0.01 * scales[0]},
              {"params": list(reference.backbone.fc.parameters()), "lr": 0.01 * scales[1]},
              {"params": list(reference.head.parameters()), "lr": 0.01 * scales[2]}]
    opt_ref = torch.optim.SGD(groups, lr=0.01, momentum=0.9, weight_decay=0.0005, nesterov=True)
    for step in range(4):
        x = torch.randn(8, 3, 21, 21)
        if step == 2:
            opt_ours.lr = 0.005
            for group, scale in zip(opt_ref.param_groups, scales):
                group["lr"] = 0.005 * scale
        for model, opt in ((ours, opt_ours), (reference, opt_ref)):
            opt.zero_grad()
            model(x).logsumexp(dim=1).mean().backward()
            opt.step()
    for a, b in zip(ours.state_dict().values(), reference.state_dict().values()):
        assert torch.equal(a, b)
    restored = MomentumSGD(parameter_groups(ours.backbone, ours, 1.0, 1.0, 1.0), lr=1.0, momentum=0.0)
    restored.load_state_dict(opt_ours.state_dict())
    assert (restored.lr, restored.weight_decay, restored.nesterov) == (0.005, 0.0005, True)
    assert [scale for _, scale in restored.groups] == list(scales)
    assert all(torch.equal(a, b) for a, b in zip(restored.buffers, opt_ours.buffers))


def test_the_loop_builds_the_optimiser_from_the_options(surveys, baseline_state, monkeypatch):
    """Backbone = the method's feature extractor, head = every other weight; the run JSON records the options."""
    import rbda.learn.train
    from rbda.learn.optim import MomentumSGD
    from rbda.learn.records import run_record

    built = []

    class Recording(MomentumSGD):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            built.append(self)

    monkeypatch.setattr(rbda.learn.train, "MomentumSGD", Recording)
    config = TrainConfig(epoch_size=100, max_epochs=1, patience=10, backbone_lr_scale=0.1, weight_decay=0.0005,
                         nesterov=True, lr_schedule="inv")
    for name in ADAPTATION_METHODS:  # every head kind, DANN's domain head too
        method = _adapt(surveys, name)
        result = _fit(method, config, init_state=baseline_state)
        optimizer = built.pop()
        (conv, conv_scale), (dense, dense_scale), (head, head_scale) = optimizer.groups
        model = result.model
        ids = lambda params: {id(p) for p in params}  # noqa: E731
        assert ids(conv) == ids(model.backbone.conv.parameters()) and ids(dense) == ids(model.backbone.fc.parameters())
        assert ids(conv) | ids(dense) | ids(head) == ids(model.parameters())
        assert len(ids(conv)) + len(ids(dense)) + len(ids(head)) == len(ids(model.parameters()))
        assert (conv_scale, dense_scale, head_scale, optimizer.weight_decay, optimizer.nesterov) == \
            (0.1, 1.0, 1.0, 0.0005, True)
        hyper = run_record(method, config, result, [])["hyperparameters"]
        assert (hyper["lr_schedule"], hyper["backbone_lr_scale"], hyper["backbone_dense_lr_scale"],
                hyper["head_lr_scale"], hyper["weight_decay"], hyper["nesterov"]) == (
            "inv", 0.1, 1.0, 1.0, 0.0005, True)
    # the default is the study's plain SGD: one learning rate, no decay, no Nesterov
    _fit(_baseline(surveys), TrainConfig(epoch_size=100, max_epochs=1))
    optimizer = built.pop()
    assert [scale for _, scale in optimizer.groups] == [1.0, 1.0, 1.0]
    assert (optimizer.weight_decay, optimizer.nesterov) == (0.0, False)


def test_nesterov_needs_momentum():
    with pytest.raises(SettingError, match="nesterov"):
        TrainConfig(momentum=0.0, nesterov=True).check()
    TrainConfig(momentum=0.9, nesterov=True).check()


def test_interrupted_run_with_the_reference_mme_optimiser_resumes_to_the_same_numbers(tmp_path, surveys,
                                                                                     baseline_state):
    config = TrainConfig(epoch_size=300, max_epochs=5, patience=10, checkpoint_every_epochs=2,
                         backbone_lr_scale=0.1, weight_decay=0.0005, nesterov=True, lr_schedule="inv")
    m = _adapt(surveys, "mme")
    uninterrupted = _numbers(_fit(m, config, init_state=baseline_state), m)
    checkpoint = tmp_path / "run.ckpt"
    with pytest.raises(_Interrupt):
        _fit(_adapt(surveys, "mme"), config, init_state=baseline_state, checkpoint=checkpoint,
             on_epoch_end=_interrupt_after(3))
    m = _adapt(surveys, "mme")
    resumed = _fit(m, config, init_state=baseline_state, checkpoint=checkpoint)
    assert resumed.resumed_from_epoch == 2
    assert _numbers(resumed, m) == uninterrupted
    # a checkpoint of the plain optimiser is not resumed with the reference one
    with pytest.raises(InputFileError, match="backbone_lr_scale: checkpoint 0.1, now 1.0"):
        _fit(_adapt(surveys, "mme"), TrainConfig(epoch_size=300, max_epochs=5, patience=10, weight_decay=0.0005,
                                                 nesterov=True), init_state=baseline_state, checkpoint=checkpoint)


def test_generator_is_reproducible_and_normalised():
    a, la = make_survey("des", 50, seed=3)
    b, lb = make_survey("des", 50, seed=3)
    assert np.array_equal(a, b) and np.array_equal(la, lb)
    assert a.shape == (50, 3, SIZE, SIZE) and a.dtype == np.float32
    np.testing.assert_allclose(a.mean(axis=(2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(a.std(axis=(2, 3)), 1, atol=1e-4)
    assert set(np.unique(la)) == {0, 1}
