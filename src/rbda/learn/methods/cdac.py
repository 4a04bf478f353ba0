"""CDAC: Cross-Domain Adaptive Clustering (Li et al., CVPR 2021) on MME's loop and head.

The reference is lijichang/CVPR2021-SSDA (``main.py``, ``losses.py``). Same
network, head (L2-normalised features, prototype head with temperature 0.05,
MME's fresh initialisation from the baseline's feature extractor), batches and
first update as MME (:mod:`rbda.learn.methods.mme`). The second update of each
iteration (``main.py`` lines 216-224) is, on a batch of unlabelled target
stamps ``u`` with a weak view ``w`` and two strong views ``s1``, ``s2``
(``loaders/data_list.py`` lines 64-66: the strong transform drawn twice), each
through the feature extractor in its own forward pass as in ``losses.py``
lines 8-10::

    L_u = lambda * L_aac + L_pl + w(i) * L_con

* ``L_aac``, the adversarial adaptive clustering loss (``losses.py`` lines
  38-68, 102-109): for every ordered pair (a, b) of the batch, the pairwise
  target ``S_ab`` is 1 when the ``topk`` largest feature dimensions of ``w_a``
  and ``w_b`` are the same set (rank statistics of the detached features),
  else 0; the predicted similarity is ``P_ab = p(w_a) . p(s1_b)`` with both
  predictions behind the gradient reversal layer; ``L_aac = -BCE(P, S)``
  averaged over the N^2 pairs, so the head *maximises* the pairwise BCE and
  the feature extractor, through the reversal layer, *minimises* it -- the
  minimax of MME on the pairwise clustering objective.
* ``L_pl``, pseudo-labelling (``losses.py`` lines 27-31): the weak view's
  most probable class, when its probability is at least ``tau``
  (``pseudo_label_threshold``, 0.95 in the reference), is the target of the
  second strong view; masked cross-entropy averaged over the whole batch.
* ``L_con``, consistency (``losses.py`` line 34): the mean squared difference
  of the two strong views' class probabilities, weighted by
  ``w(i) = rampup_weight * exp(-5 (1 - min(i, rampup_iterations) / rampup_iterations)^2)``
  at iteration ``i`` of the run (``main.py`` lines 40-42, 167-168;
  ``losses.py`` lines 84-91).

Augmentations: the reference's RandAugment on natural images is replaced by
stamp symmetries (:mod:`rbda.learn.augment`): the weak view is one of the 8
rotations and reflections of the square, each strong view another symmetry, a
shift by whole pixels and Gaussian noise (this method's ``strong_view_shift``
setting, as mmefm's).

``topk``, ``rampup_weight``, ``rampup_iterations``, ``pseudo_label_threshold`` and
``strong_view_shift`` are this method's settings (declared below with the reference's
defaults; config ``method_settings.cdac``, ``rbda train --topk`` and so on).

``lambda`` weighs ``L_aac`` (1 in the reference, which weighs every term
but the consistency term by 1): the adversarial term plays MME's entropy
term's part, so CDAC runs MME's lambda grid and selection.
"""

from __future__ import annotations

import math
from typing import Iterator

import torch
from torch.nn import functional as F

from rbda.learn.augment import augment_seeds, strong_view, weak_view
from rbda.learn.losses import classification_loss
from rbda.learn.methods.mme import MinimaxEntropy
from rbda.learn.methods.mme_fixmatch import pseudo_label_loss
from rbda.errors import SettingError
from rbda.learn.models import StampClassifier
from rbda.registry import MethodDeclaration, Setting

METHOD = MethodDeclaration(
    name="cdac", label="CDAC", cls="CrossDomainAdaptiveClustering", order=70, lambda_grid=True,
    settings=(
        Setting("topk", 5, "feature dimensions whose rank decides a pair's similarity target "
                "(reference --topk, main.py line 43)", ge=1),
        Setting("rampup_weight", 30.0, "weight of the consistency loss once ramped up "
                "(reference --rampup_coef, main.py line 42)", ge=0),
        Setting("rampup_iterations", 20_000, "iterations over which the consistency weight ramps up "
                "(reference --rampup_length, main.py line 40; 0: no ramp)", ge=0),
        Setting("pseudo_label_threshold", 0.95, "tau, the least softmax probability of the weak view's class "
                "for it to become the second strong view's target (reference --th, 0.95)", ge=0, le=1),
        Setting("strong_view_shift", "integer", "how the strong views shift a stamp: integer (whole pixels, "
                "every value kept) or subpixel (bilinear; smears 1-pixel artefacts)",
                choices=("integer", "subpixel")),
    ),
    mem_mb=8000, runtime=1080, colour="#a6761d", line_style="-.",
)

#: The pairwise BCE's epsilon inside the logarithms (``losses.py`` lines 94, 108).
BCE_EPS = 1e-7


def sigmoid_rampup(iteration: int, length: int) -> float:
    """``exp(-5 (1 - t)^2)`` with ``t = min(iteration, length) / length`` (1 when ``length`` is 0)."""
    if length == 0:
        return 1.0
    phase = 1.0 - min(max(iteration, 0), length) / length
    return math.exp(-5.0 * phase * phase)


def rank_similarity_targets(features: torch.Tensor, topk: int) -> torch.Tensor:
    """(N, N) float: 1 where items a and b have the same set of ``topk`` largest feature dimensions, else 0
    (computed on detached features; the diagonal is 1)."""
    top = torch.topk(features.detach(), topk, dim=1).indices.sort(dim=1).values  # (N, topk), a set per item
    return (top[:, None, :] == top[None, :, :]).all(dim=2).float()


def pairwise_bce(prob_a: torch.Tensor, prob_b: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over every ordered pair (a, b) of the binary cross-entropy between the predicted similarity
    ``P_ab = prob_a[a] . prob_b[b]`` and ``targets[a, b]`` (the reference's ``BCE_softlabels``)."""
    similarity = prob_a @ prob_b.T
    bce = -(targets * torch.log(similarity + BCE_EPS) + (1 - targets) * torch.log(1 - similarity + BCE_EPS))
    return bce.mean()


def adaptive_clustering_loss(features_weak: torch.Tensor, logits_weak_reversed: torch.Tensor,
                             logits_strong_reversed: torch.Tensor, topk: int) -> torch.Tensor:
    """``L_aac = -pairwise_bce(p(weak), p(strong), S)``, the logits taken behind the reversal layer."""
    targets = rank_similarity_targets(features_weak, topk)
    return -pairwise_bce(F.softmax(logits_weak_reversed, dim=1), F.softmax(logits_strong_reversed, dim=1), targets)


def consistency_loss(logits_strong1: torch.Tensor, logits_strong2: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of the two strong views' class probabilities (over items and classes)."""
    return F.mse_loss(F.softmax(logits_strong1, dim=1), F.softmax(logits_strong2, dim=1))


def cdac_unlabelled_loss(model: StampClassifier, weak: torch.Tensor, strong1: torch.Tensor, strong2: torch.Tensor,
                         lam: float, tau: float, consistency_weight: float, topk: int) -> torch.Tensor:
    """``lam * L_aac + L_pl + consistency_weight * L_con`` (module docstring); one forward pass per view."""
    features = [model.backbone(x) for x in (weak, strong1, strong2)]
    aac = adaptive_clustering_loss(features[0], model.head(model.reversal(features[0])),
                                   model.head(model.reversal(features[1])), topk)
    logits_weak, logits_strong1, logits_strong2 = (model.head(f) for f in features)
    pl, _ = pseudo_label_loss(logits_weak, logits_strong2, tau)
    return lam * aac + pl + consistency_weight * consistency_loss(logits_strong1, logits_strong2)


class CrossDomainAdaptiveClustering(MinimaxEntropy):
    name = METHOD.name

    def __init__(self, spec, surveys):
        super().__init__(spec, surveys)
        self.first_iteration = 0

    def build_model(self, init_state: dict | None) -> StampClassifier:
        model = super().build_model(init_state)
        if self.spec.settings["topk"] > model.backbone.feature_dim:
            raise SettingError("method_settings.cdac.topk", f"at most the {self.spec.model!r} backbone's "
                               f"{model.backbone.feature_dim} feature dimensions", self.spec.settings["topk"])
        return model

    def begin_epoch(self, iteration: int) -> None:
        self.first_iteration = iteration

    def consistency_weight(self, i: int) -> float:
        """``w`` of iteration ``i`` of the current epoch (the run's iteration count)."""
        s = self.spec.settings
        return s["rampup_weight"] * sigmoid_rampup(self.first_iteration + i, s["rampup_iterations"])

    def plan_epoch(self, iterations: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        plan = super().plan_epoch(iterations, generator)
        plan["augment_seed"] = augment_seeds(iterations, generator)
        return plan

    def losses(self, model: StampClassifier, plan: dict[str, torch.Tensor], i: int) -> Iterator[torch.Tensor]:
        x, y = self.labelled_batch(plan, i)
        yield classification_loss(model(x), y, self.spec.beta)
        xu = self.unlabelled_batch(plan, i)
        views = torch.Generator(device=xu.device)
        views.manual_seed(int(plan["augment_seed"][i]))
        layout = torch.channels_last if xu.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
        weak = weak_view(xu, views).contiguous(memory_format=layout)
        shift = self.spec.settings["strong_view_shift"]
        strong1, strong2 = (strong_view(xu, views, shift=shift).contiguous(memory_format=layout) for _ in range(2))
        yield cdac_unlabelled_loss(model, weak, strong1, strong2, self.spec.lam,
                                   self.spec.settings["pseudo_label_threshold"], self.consistency_weight(i),
                                   self.spec.settings["topk"])

    def describe(self) -> dict:
        s = self.spec.settings
        return {**super().describe(), "consistency_rampup": f"{s['rampup_weight']:g} x sigmoid_rampup(i, "
                f"{s['rampup_iterations']})"}
