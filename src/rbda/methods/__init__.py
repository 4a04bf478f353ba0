"""Training methods: each supplies its model, its batches and its loss.

The one training loop (:mod:`rbda.train`) drives every method through the
:class:`~rbda.methods.base.TrainingMethod` interface.
"""

from __future__ import annotations

METHOD_NAMES = ("baseline", "finetune", "mme")


def method_class(name: str):
    """The :class:`TrainingMethod` subclass called ``name``."""
    from rbda.errors import SettingError

    if name == "baseline":
        from rbda.methods.baseline import Baseline

        return Baseline
    if name == "finetune":
        from rbda.methods.finetune import FineTune

        return FineTune
    if name == "mme":
        from rbda.methods.mme import MinimaxEntropy

        return MinimaxEntropy
    raise SettingError("method", f"one of {', '.join(METHOD_NAMES)}", name)
