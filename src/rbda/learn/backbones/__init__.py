"""Feature extractors, one module each: a backbone module declares itself with
``BACKBONE = BackboneDeclaration(name=..., cls=..., help=..., order=...)`` and defines that class
(an ``nn.Module`` taking the stamps and returning features, with a ``feature_dim`` attribute).
:mod:`rbda.registry` finds the modules here (and those named in ``RBDA_EXTRA_MODULES``); modules that
declare nothing (:mod:`~rbda.learn.backbones.rotation`) hold shared code. Imports nothing itself: the
workflow reads the declarations without torch.
"""
