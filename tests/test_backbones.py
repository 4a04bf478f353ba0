"""Selectable backbones (training.model): the rotation-invariant DeepHiTS layer and EarlySN's variant."""

from __future__ import annotations

import pytest
import torch

from rbda.errors import InputFileError, RbdaError
from rbda.learn.methods import method_class
from rbda.learn.methods.base import RunSpec
from rbda.learn.backbones.deephits import DeepHiTS
from rbda.learn.backbones.deephits_unrotated import DeepHiTSUnrotated
from rbda.learn.backbones.earlysn import EarlySN
from rbda.learn.models import StampClassifier, load_model_file, model_from_payload, save_model_file
from rbda.registry import BACKBONES, REGISTRY, backbone_class
from rbda.study import TrainingOptions
from train_helpers import survey_data

ROTATION_BACKBONES = ("deephits", "earlysn")


def n_parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_every_backbone_module_declares_its_class():
    assert {"study_cnn", "deephits", "earlysn", "deephits_unrotated"} <= set(BACKBONES)
    for name in BACKBONES:
        cls = backbone_class(name)
        assert cls.__module__ == REGISTRY.backbones[name].module
    assert TrainingOptions().model == "study_cnn"
    assert TrainingOptions.__dataclass_fields__["model"].metadata["choices"] == BACKBONES


@pytest.mark.parametrize("backbone", BACKBONES)
@pytest.mark.parametrize("head", ["linear", "prototype"])
def test_head_input_is_the_backbones_feature_size(backbone, head):
    model = StampClassifier(head, backbone=backbone).eval()
    x = torch.randn(4, 3, 21, 21)
    assert model.backbone(x).shape == (4, model.backbone.feature_dim)
    assert model(x).shape == (4, 2)
    # the published sizes of the shipped backbones (a backbone added later is checked above only)
    published = {"study_cnn": 100, "deephits": 64, "earlysn": 64, "deephits_unrotated": 64}
    assert model.backbone.feature_dim == published.get(backbone, model.backbone.feature_dim)


@pytest.mark.parametrize("backbone", ROTATION_BACKBONES)
@pytest.mark.parametrize("head", ["linear", "prototype"])
def test_rotation_backbones_are_invariant_to_quarter_turns(backbone, head):
    torch.manual_seed(0)
    model = StampClassifier(head, backbone=backbone).eval()
    x = torch.randn(8, 3, 21, 21)
    with torch.no_grad():
        logits = model(x)
        for k in (1, 2, 3):
            torch.testing.assert_close(model(torch.rot90(x, k, dims=(2, 3))), logits, atol=1e-5, rtol=1e-5)
        # and not to everything: a transpose (a reflection) is another input
        assert not torch.allclose(model(x.transpose(2, 3)), logits, atol=1e-2)


def test_the_study_cnn_is_not_rotation_invariant():
    torch.manual_seed(0)
    model = StampClassifier("linear").eval()
    x = torch.randn(8, 3, 21, 21)
    with torch.no_grad():
        assert not torch.allclose(model(torch.rot90(x, 1, dims=(2, 3))), model(x), atol=1e-3)


def test_the_unrotated_ablation_is_deephits_without_rotations_and_cyclic_pooling():
    """The same layers and weights; only the four rotated branches and their mean are gone."""
    torch.manual_seed(0)
    rotated, unrotated = DeepHiTS().eval(), DeepHiTSUnrotated().eval()
    assert n_parameters(unrotated) == n_parameters(rotated)
    assert [type(m) for m in unrotated.modules()][1:] == [type(m) for m in rotated.modules()][1:]
    unrotated.load_state_dict(rotated.state_dict())  # the same parameter names and shapes
    x = torch.randn(6, 3, 21, 21)
    with torch.no_grad():
        one_branch = rotated.rotation_dense(torch.flatten(rotated.conv(rotated.pad(x)), 1))
        torch.testing.assert_close(unrotated(x), rotated.fc(one_branch))
        assert not torch.allclose(unrotated(torch.rot90(x, 1, dims=(2, 3))), unrotated(x), atol=1e-3)
    torch.manual_seed(1)
    fresh = DeepHiTSUnrotated()
    torch.manual_seed(1)
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), DeepHiTS().state_dict().values()))


def test_deephits_layer_shapes_and_parameter_count():
    layer = DeepHiTS()
    x = torch.randn(2, 3, 21, 21)
    padded = layer.pad(x)
    assert padded.shape == (2, 3, 27, 27)
    maps = layer.conv(padded)
    assert maps.shape == (2, 64, 6, 6)  # flatten 2304
    assert layer.conv[1](padded).shape == (2, 32, 24, 24)  # conv 4x4 valid
    convs = (4 * 4 * 3 * 32 + 32) + (3 * 3 * 32 * 32 + 32) + (3 * 3 * 32 * 64 + 64) + 2 * (3 * 3 * 64 * 64 + 64)
    dense = (2304 * 64 + 64) + 2 * (64 * 64 + 64)
    assert n_parameters(layer) == convs + dense == 259_008
    assert n_parameters(StampClassifier("linear", backbone="deephits")) == 259_008 + 64 * 2 + 2


def test_earlysn_has_the_tabulated_210117_parameters_with_five_outputs():
    layer = EarlySN()
    assert layer.conv(torch.randn(2, 3, 21, 21)).shape == (2, 64, 5, 5)
    assert n_parameters(StampClassifier("linear", backbone="earlysn", n_classes=5)) == 210_117


def test_earlysn_averages_conv_maps_deephits_averages_dense_vectors():
    """The two variants differ only where the rotations are pooled; check each pools where it says."""
    torch.manual_seed(1)
    x = torch.randn(3, 3, 21, 21)
    early = EarlySN().eval()
    maps = torch.stack([early.conv(torch.rot90(x, k, dims=(2, 3))) for k in range(4)]).mean(0)
    torch.testing.assert_close(early(x), early.fc(torch.flatten(maps, 1)))
    deep = DeepHiTS().eval()
    vectors = torch.stack([deep.rotation_dense(torch.flatten(deep.conv(torch.rot90(deep.pad(x), k, dims=(2, 3))), 1))
                           for k in range(4)]).mean(0)
    torch.testing.assert_close(deep(x), deep.fc(vectors))


@pytest.fixture(scope="module")
def surveys():
    return {"des": survey_data("des", 300, 1), "hits": survey_data("hits", 300, 2)}


@pytest.mark.parametrize("backbone", BACKBONES)
@pytest.mark.parametrize("method", ["baseline", "finetune", "mme"])
def test_a_training_step_of_every_method_with_every_backbone(surveys, backbone, method):
    torch.manual_seed(0)
    kwargs = {} if method == "baseline" else {"target": "hits", "shots": 5}
    if method == "mme":
        kwargs["lam"] = 0.1
    kwargs.setdefault("target", None)
    spec = RunSpec(method, "des", split=0, seed=1, model=backbone, beta=0.5 if method == "mme" else 0.0, **kwargs)
    m = method_class(method)(spec, surveys)
    init = StampClassifier("linear", backbone=backbone).state_dict() if method != "baseline" else None
    model = m.build_model(init)
    assert model.backbone_name == backbone and isinstance(model.backbone, backbone_class(backbone))
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    plan = m.plan_epoch(1, torch.Generator().manual_seed(0))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for loss in m.losses(model, plan, 0):
        assert torch.isfinite(loss)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    changed = [k for k, v in model.state_dict().items() if k.startswith("backbone.") and not torch.equal(v, before[k])]
    assert changed  # the backbone learns


def test_an_adaptation_from_a_baseline_of_another_backbone_is_refused(surveys):
    spec = RunSpec("finetune", "des", "hits", 0, seed=1, shots=5, model="deephits")
    with pytest.raises(RbdaError, match="do not fit"):
        method_class("finetune")(spec, surveys).build_model(StampClassifier("linear").state_dict())


@pytest.mark.parametrize("backbone", ROTATION_BACKBONES)
def test_model_files_record_and_rebuild_the_backbone(tmp_path, backbone):
    model = StampClassifier("linear", backbone=backbone).eval()
    path = tmp_path / "m.pt"
    save_model_file(path, model, {"method": "baseline", "source": "des"})
    payload = load_model_file(path, expect_head="linear", expect_backbone=backbone)
    assert payload["backbone"] == backbone
    rebuilt = model_from_payload(payload).eval()
    assert rebuilt.backbone_name == backbone
    x = torch.randn(3, 3, 21, 21)
    torch.testing.assert_close(rebuilt(x), model(x))
    with pytest.raises(InputFileError, match=rf"m\.pt.*backbone 'study_cnn'.*trained with backbone '{backbone}'"):
        load_model_file(path, expect_backbone="study_cnn")


def test_a_model_file_without_a_backbone_is_of_the_study_cnn(tmp_path):
    model = StampClassifier("linear").eval()
    path = tmp_path / "old.pt"
    save_model_file(path, model, {})
    payload = torch.load(path, weights_only=True)
    del payload["backbone"]
    torch.save(payload, path)
    assert load_model_file(path, expect_backbone="study_cnn")["backbone"] == "study_cnn"
    payload["backbone"] = "resnet"
    torch.save(payload, path)
    with pytest.raises(InputFileError, match="backbone one of"):
        load_model_file(path)
