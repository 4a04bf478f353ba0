"""Training methods: each supplies its model, its batches and its loss.

The one training loop (:mod:`rbda.learn.train`) drives every method through the
:class:`~rbda.learn.methods.base.TrainingMethod` interface. :data:`METHOD_CLASSES`
maps each method name of :data:`rbda.study.METHODS` to the module and class
that implement it (imported on first use: the table itself imports nothing).
"""

from __future__ import annotations

import importlib

from rbda.errors import SettingError
from rbda.study import METHODS

#: method name -> (module, class); one entry per name in rbda.study.METHODS (a test checks it).
METHOD_CLASSES = {
    "baseline": ("rbda.learn.methods.baseline", "Baseline"),
    "finetune": ("rbda.learn.methods.finetune", "FineTune"),
    "mme": ("rbda.learn.methods.mme", "MinimaxEntropy"),
    "st": ("rbda.learn.methods.source_target", "SourceTarget"),
    "ent": ("rbda.learn.methods.entropy_min", "EntropyMinimisation"),
    "dann": ("rbda.learn.methods.dann", "DomainAdversarial"),
    "mmefm": ("rbda.learn.methods.mme_fixmatch", "MinimaxEntropyFixMatch"),
    "cdac": ("rbda.learn.methods.cdac", "CrossDomainAdaptiveClustering"),
}


def method_class(name: str):
    """The :class:`TrainingMethod` subclass called ``name``."""
    if name not in METHOD_CLASSES:
        raise SettingError("method", f"one of {', '.join(METHODS)}", name)
    module, cls = METHOD_CLASSES[name]
    return getattr(importlib.import_module(module), cls)
