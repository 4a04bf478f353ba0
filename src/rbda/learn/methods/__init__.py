"""Training methods, one module each: each supplies its model, its batches and its loss.

The one training loop (:mod:`rbda.learn.train`) drives every method through the
:class:`~rbda.learn.methods.base.TrainingMethod` interface. A method module declares itself with
``METHOD = MethodDeclaration(...)`` (name, label, lambda grid, its own settings, resources, plot
style, class; :mod:`rbda.registry`), which the workflow, the CLI, the config checks and the figures
read; modules that declare nothing (:mod:`~rbda.learn.methods.base`) hold shared code. This package
imports nothing itself: the workflow reads the declarations without torch.
"""

from __future__ import annotations

from rbda.registry import method_class

__all__ = ["method_class"]
