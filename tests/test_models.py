"""Networks, the gradient reversal layer, the MME sign convention, model files."""

from __future__ import annotations

import pytest
import torch

from rbda.errors import InputFileError
from rbda.registry import BACKBONES
from rbda.learn.entropy import prediction_entropy
from rbda.learn.methods.mme import adversarial_entropy_loss
from rbda.learn.backbones.study_cnn import Backbone
from rbda.learn.models import (GradientReversal, PrototypeHead, StampClassifier, fold_batch_norm, load_model_file,
                         model_from_payload, save_model_file)


def test_shapes_of_backbone_and_heads():
    x = torch.randn(7, 3, 21, 21)
    assert Backbone()(x).shape == (7, 100)
    for kind in ("linear", "prototype"):
        assert StampClassifier(kind)(x).shape == (7, 2)
    conv_out = Backbone().conv(x)
    assert conv_out.shape == (7, 50, 2, 2)  # 200 features into the first linear layer


def test_prototype_head_is_a_scaled_cosine_similarity_without_bias():
    head = PrototypeHead(100)
    assert head.prototypes.bias is None and head.temperature == 0.05
    f = torch.randn(5, 100)
    # invariant to the feature's norm, bounded by |w| / T
    torch.testing.assert_close(head(f), head(3.0 * f))
    bound = head.prototypes.weight.norm(dim=1) / 0.05
    assert torch.all(head(f).abs() <= bound + 1e-4)


@pytest.mark.parametrize("coefficient", [1.0, 0.25])
def test_gradient_reversal_is_identity_forward_and_negates_scaled_gradient(coefficient):
    layer = GradientReversal(coefficient)
    x = torch.randn(4, 6, requires_grad=True)
    upstream = torch.randn(4, 6)
    y = layer(x)
    assert torch.equal(y, x)
    y.backward(upstream)
    torch.testing.assert_close(x.grad, -coefficient * upstream)


def _grads(loss, params):
    return torch.autograd.grad(loss, params, retain_graph=True)


def test_mme_loss_gradient_signs_head_maximises_extractor_minimises_entropy():
    torch.manual_seed(0)
    model = StampClassifier("prototype").eval()  # fixed forward (no dropout, running BN stats)
    x = torch.randn(16, 3, 21, 21)
    lam = 0.3
    head, backbone = list(model.head.parameters()), list(model.backbone.parameters())
    entropy = prediction_entropy(model(x))
    dh_head, dh_backbone = _grads(entropy, head), _grads(entropy, backbone)
    loss = adversarial_entropy_loss(model, x, lam)
    dl_head, dl_backbone = _grads(loss, head), _grads(loss, backbone)
    # descent on the loss = ascent on H for the head ...
    for g_loss, g_h in zip(dl_head, dh_head):
        torch.testing.assert_close(g_loss, -lam * g_h)
    # ... and descent on H for the feature extractor (through the reversal layer)
    for g_loss, g_h in zip(dl_backbone, dh_backbone):
        torch.testing.assert_close(g_loss, lam * g_h)


def test_one_mme_entropy_step_raises_entropy_via_head_and_lowers_it_via_extractor():
    torch.manual_seed(1)
    model = StampClassifier("prototype").eval()
    x = torch.randn(32, 3, 21, 21)

    def entropy_after_step(part: torch.nn.Module) -> tuple[float, float]:
        trial = StampClassifier("prototype").eval()
        trial.load_state_dict(model.state_dict())
        before = prediction_entropy(trial(x)).item()
        optimizer = torch.optim.SGD(getattr(trial, part).parameters(), lr=1e-3)
        optimizer.zero_grad()
        adversarial_entropy_loss(trial, x, lam=1.0).backward()
        optimizer.step()
        return before, prediction_entropy(trial(x)).item()

    before, after_head = entropy_after_step("head")
    assert after_head > before
    before, after_backbone = entropy_after_step("backbone")
    assert after_backbone < before


def test_prediction_entropy_bounds():
    assert prediction_entropy(torch.zeros(3, 2)).item() == pytest.approx(torch.log(torch.tensor(2.0)).item())
    assert prediction_entropy(torch.tensor([[50.0, -50.0]])).item() == pytest.approx(0.0, abs=1e-6)


def test_model_file_round_trip_and_errors(tmp_path):
    model = StampClassifier("linear").eval()
    path = tmp_path / "m.pt"
    save_model_file(path, model, {"method": "baseline", "source": "des"})
    payload = load_model_file(path, expect_head="linear")
    assert payload["facts"]["source"] == "des"
    x = torch.randn(3, 3, 21, 21)
    torch.testing.assert_close(model_from_payload(payload).eval()(x), model(x))
    with pytest.raises(InputFileError, match="a 'prototype' head, but it has a 'linear' head"):
        load_model_file(path, expect_head="prototype")
    with pytest.raises(InputFileError, match="not found"):
        load_model_file(tmp_path / "absent.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(InputFileError, match="junk.pt"):
        load_model_file(junk)


@pytest.mark.parametrize("backbone", BACKBONES)
@pytest.mark.parametrize("head", ["linear", "prototype"])
def test_folded_batch_norm_gives_the_same_scores(backbone, head):
    """rbda predict folds each BatchNorm into the layer before it: same outputs, no BatchNorm left."""
    torch.manual_seed(0)
    model = StampClassifier(head, backbone=backbone)
    for module in model.modules():  # running statistics and affine terms far from the identity
        if isinstance(module, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            module.running_mean.normal_(0, 2)
            module.running_var.uniform_(0.2, 5)
            module.weight.data.normal_(1, 0.5)
            module.bias.data.normal_(0, 0.5)
    model.eval()
    x = torch.randn(16, 3, 21, 21)
    with torch.no_grad():
        expected = model(x)
        folded = fold_batch_norm(model)
        assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in folded.modules())
        torch.testing.assert_close(folded(x), expected, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="eval mode"):
        fold_batch_norm(StampClassifier(head, backbone=backbone).train())


def _trained_like(head: str, backbone: str) -> StampClassifier:
    """A model in eval mode, BatchNorm folded, with statistics far from the identity (as after training)."""
    torch.manual_seed(1)
    model = StampClassifier(head, backbone=backbone)
    for module in model.modules():
        if isinstance(module, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            module.running_mean.normal_(0, 2)
            module.running_var.uniform_(0.2, 5)
    return fold_batch_norm(model.eval())


@pytest.mark.parametrize("backbone", BACKBONES)
@pytest.mark.parametrize("head", ["linear", "prototype"])
def test_the_scoring_forward_pass_gives_the_models_logits(backbone, head):
    """rbda predict's forward pass (oneDNN tensors where the backbone runs on them, else the model in its
    memory format) gives the model's own logits, on a batch that is not the probe's."""
    from rbda.learn.models import scoring_forward

    model = _trained_like(head, backbone)
    x = torch.randn(300, 3, 21, 21)
    with torch.inference_mode():
        expected = model(x)
        forward, engine = scoring_forward(model, torch.device("cpu"), "channels_last", 21)
        torch.testing.assert_close(forward(x), expected, rtol=1e-4, atol=1e-4)
    assert engine in ("onednn", "channels_last")
    if backbone == "study_cnn" and torch.backends.mkldnn.is_available():
        assert engine == "onednn"  # (the speed docs/benchmarks.md quotes)


def test_the_scoring_forward_pass_takes_batches_beyond_its_bound_to_the_model_itself():
    """oneDNN's ReLU turns a NaN into 0 where the standard kernel passes it on: a batch with a value beyond
    the bound (what preprocessing cannot produce) goes through the model itself, so a NaN made inside the
    network is still a NaN score (refused by rbda predict)."""
    from rbda.learn.models import scoring_forward

    if not torch.backends.mkldnn.is_available():
        pytest.skip("this torch has no oneDNN (mkldnn): the model itself is the only forward pass")
    model = _trained_like("linear", "study_cnn")
    forward, engine = scoring_forward(model, torch.device("cpu"), "channels_last", 21, input_bound=21.0)
    assert engine == "onednn"
    x = torch.randn(8, 3, 21, 21).clamp(-3, 3)
    x[0, 0, 10, 10] = float("nan")  # (as a NaN made inside the network would be)
    with torch.inference_mode():
        assert torch.isnan(model(x)[0]).all()
        assert torch.isnan(forward(x)[0]).all()
        swallowed = model.head(model.backbone(x.to_mkldnn()).to_dense())  # what the bound keeps out
        assert torch.isfinite(swallowed[0]).all(), "oneDNN now passes NaN on: the bound may no longer be needed"
        x[0, 0, 10, 10] = 22.0  # finite, beyond the bound: the model itself too
        torch.testing.assert_close(forward(x), model(x))
        x[0, 0, 10, 10] = 21.0
        torch.testing.assert_close(forward(x), model(x), rtol=1e-4, atol=1e-4)


def test_the_scoring_forward_pass_falls_back_when_onednn_differs():
    """The oneDNN forward pass is used only where it gives the model's logits: a backbone that computes
    something else on oneDNN tensors (here: its features plus one), or fails on them, gets the model itself."""
    from rbda.learn.models import scoring_forward

    if not torch.backends.mkldnn.is_available():
        pytest.skip("this torch has no oneDNN (mkldnn): the fallback is the only forward pass")

    class Shifted(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner, self.feature_dim = inner, inner.feature_dim

        def forward(self, x):
            features = self.inner(x)
            return (features.to_dense() + 1).to_mkldnn() if x.is_mkldnn else features

    model = _trained_like("linear", "study_cnn")
    model.backbone = Shifted(model.backbone)
    x = torch.randn(8, 3, 21, 21)
    with torch.inference_mode():
        forward, engine = scoring_forward(model, torch.device("cpu"), "contiguous", 21)
        assert engine == "contiguous"
        torch.testing.assert_close(forward(x), model(x))

    class Failing(Shifted):
        def forward(self, x):
            if x.is_mkldnn:
                raise AttributeError("no such operation on oneDNN tensors")
            return self.inner(x)

    model.backbone = Failing(model.backbone.inner)
    assert scoring_forward(model, torch.device("cpu"), "channels_last", 21)[1] == "channels_last"


def test_weights_of_another_network_are_a_clear_error():
    from rbda.errors import RbdaError

    payload = {"format": "rbda.model/1", "head_kind": "linear", "facts": {},
               "state_dict": {"backbone.fc.0.weight": torch.zeros(3, 3)}}
    with pytest.raises(RbdaError, match="do not fit the study's network"):
        model_from_payload(payload)
