"""MME+FM: Minimax Entropy with FixMatch-style pseudo-labels and consistency (``mmefm``).

MME (:mod:`rbda.learn.methods.mme`) plus the ingredient that lifts CDAC (Li et al.
2021) and AdaMatch (Berthelot et al. 2022) above MME in semi-supervised domain
adaptation: confident predictions on a *weak* view of an unlabelled target
stamp become hard targets for a *strong* view of the same stamp (FixMatch,
Sohn et al. 2020). Views (:mod:`rbda.learn.augment`), alert-stamp safe: weak = one of
the 8 rotations/reflections of the square; strong = another symmetry, a
shift of at most 1 px per axis (whole pixels; bilinear sub-pixel with this
method's setting ``strong_view_shift: subpixel``) and Gaussian noise; no colour
operations.

Each iteration makes MME's two optimiser updates:

1. cross-entropy on the labelled batch (half source, half target shots), as MME;
2. on a batch of unlabelled target items ``u``::

       L_u = -lambda * H(p(weak(u)))  [through the gradient reversal layer, as MME]
             + mu * mean_i( 1[max p_i >= tau] * CE(p(strong(u_i)), argmax p_i) )

   where ``p_i = softmax`` of the weak view's logits with no gradient (the
   pseudo-label) and the mean runs over the whole unlabelled batch, so items
   below the threshold ``tau`` contribute nothing (FixMatch's normalisation).
   The consistency term has no reversal: head and features both fit it.

``tau`` and ``mu`` are this method's settings ``pseudo_label_threshold`` and
``consistency_weight`` (declared below with ``strong_view_shift``; config ``method_settings.mmefm``,
``rbda train --pseudo-label-threshold/--consistency-weight/--strong-view-shift``; defaults and their measurement: docs/method.md section 5).
The minimax entropy term is computed on the weak view, whose detached
prediction also gives the pseudo-labels; weak and strong views share one
forward pass of twice MME's unlabelled batch. The name has no ``_`` or ``-``: method names
are parts of rule names (``train_mmefm``), paths and ``NAME-selected``.
"""

from __future__ import annotations

from typing import Iterator

import torch
from torch.nn import functional as F

from rbda.learn.augment import augment_seeds, strong_view, weak_view
from rbda.learn.entropy import prediction_entropy
from rbda.learn.losses import classification_loss
from rbda.learn.methods.mme import MinimaxEntropy
from rbda.learn.models import StampClassifier
from rbda.registry import MethodDeclaration, Setting

METHOD = MethodDeclaration(
    name="mmefm", label="MME+FM", cls="MinimaxEntropyFixMatch", order=60, lambda_grid=True,
    settings=(
        Setting("pseudo_label_threshold", 0.95, "tau, the least softmax probability of the weak view's class "
                "for it to become the strong view's target", ge=0, le=1),
        Setting("consistency_weight", 0.3, "mu, the weight of the pseudo-label consistency loss", ge=0),
        Setting("strong_view_shift", "integer", "how the strong view shifts a stamp: integer (whole pixels, "
                "every value kept) or subpixel (bilinear; smears 1-pixel artefacts)",
                choices=("integer", "subpixel")),
    ),
    mem_mb=8000, runtime=720, colour="#e6ab02", line_style=":",
)


def pseudo_label_loss(logits_weak: torch.Tensor, logits_strong: torch.Tensor, tau: float) -> tuple[torch.Tensor, torch.Tensor]:
    """FixMatch's consistency loss and its mask.

    The weak view's most probable class is the target of the strong view when
    its probability is at least ``tau`` (no gradient through the weak view);
    the loss is the masked cross-entropy summed and divided by the batch size.
    Returns ``(loss, mask)``.
    """
    probs = F.softmax(logits_weak.detach().float(), dim=1)
    confidence, pseudo = probs.max(dim=1)
    mask = confidence >= tau
    ce = F.cross_entropy(logits_strong, pseudo, reduction="none")
    return (ce * mask).sum() / logits_strong.shape[0], mask


def mmefm_unlabelled_loss(model: StampClassifier, weak: torch.Tensor, strong: torch.Tensor, lam: float, tau: float,
                          mu: float) -> torch.Tensor:
    """``-lam * H(p(weak))`` through the reversal layer plus ``mu`` times the consistency loss.

    The two views go through the feature extractor in one forward pass (as
    FixMatch does; BatchNorm statistics over both views); the reversal layer
    sits on the weak view's features only.
    """
    features = model.backbone(torch.cat((weak, strong)))
    n = weak.shape[0]
    logits_weak = model.head(model.reversal(features[:n]))
    consistency, _ = pseudo_label_loss(logits_weak, model.head(features[n:]), tau)
    return -lam * prediction_entropy(logits_weak) + mu * consistency


class MinimaxEntropyFixMatch(MinimaxEntropy):
    name = METHOD.name

    def plan_epoch(self, iterations: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        plan = super().plan_epoch(iterations, generator)
        plan["augment_seed"] = augment_seeds(iterations, generator)
        return plan

    def losses(self, model: StampClassifier, plan: dict[str, torch.Tensor], i: int) -> Iterator[torch.Tensor]:
        xs, ys = self.source.batch(plan["source"][i])
        xt, yt = self.target.batch(plan["target"][i])
        yield classification_loss(model(torch.cat((xs, xt))), torch.cat((ys, yt)), self.spec.beta)
        xu, _ = self.target.batch(plan["unlabelled"][i])
        views = torch.Generator(device=xu.device)
        views.manual_seed(int(plan["augment_seed"][i]))
        layout = torch.channels_last if xu.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
        weak = weak_view(xu, views).contiguous(memory_format=layout)
        strong = strong_view(xu, views, shift=self.spec.settings["strong_view_shift"]).contiguous(memory_format=layout)
        yield mmefm_unlabelled_loss(model, weak, strong, self.spec.lam,
                                    self.spec.settings["pseudo_label_threshold"], self.spec.settings["consistency_weight"])
