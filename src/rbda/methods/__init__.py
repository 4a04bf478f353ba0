"""Training methods: each supplies its model, its batches and its loss.

The one training loop (:mod:`rbda.train`) drives every method through the
:class:`~rbda.methods.base.TrainingMethod` interface. :data:`METHOD_CLASSES`
maps each method name of :data:`rbda.study.METHODS` to the module and class
that implement it (imported on first use: the table itself imports nothing).
"""

from __future__ import annotations

import importlib

from rbda.errors import SettingError
from rbda.study import METHODS

#: method name -> (module, class); one entry per name in rbda.study.METHODS (a test checks it).
METHOD_CLASSES = {
    "baseline": ("rbda.methods.baseline", "Baseline"),
    "finetune": ("rbda.methods.finetune", "FineTune"),
    "mme": ("rbda.methods.mme", "MinimaxEntropy"),
    "st": ("rbda.methods.source_target", "SourceTarget"),
    "ent": ("rbda.methods.entropy_min", "EntropyMinimisation"),
    "dann": ("rbda.methods.dann", "DomainAdversarial"),
    "mmefm": ("rbda.methods.mme_fixmatch", "MinimaxEntropyFixMatch"),
}


def method_class(name: str):
    """The :class:`TrainingMethod` subclass called ``name``."""
    if name not in METHOD_CLASSES:
        raise SettingError("method", f"one of {', '.join(METHODS)}", name)
    module, cls = METHOD_CLASSES[name]
    return getattr(importlib.import_module(module), cls)
