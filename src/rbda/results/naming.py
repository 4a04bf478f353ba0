"""Display names of surveys, pairs and methods (tables, figures, the report).

The identifiers themselves (survey names, ``source-to-target`` pairs, lambda
labels) are defined in :mod:`rbda.study`.
"""

from __future__ import annotations

from rbda.registry import METHOD_LABELS
from rbda.surveys import survey_label as declared_label


def survey_label(survey: str) -> str:
    """Display name of a survey id (``hits`` -> ``HiTS``): its declaration's label; unknown ids upper-cased."""
    return declared_label(survey)


def pair_label(source: str, target: str) -> str:
    """Display name of a pair: ``DES→HiTS``."""
    return f"{survey_label(source)}→{survey_label(target)}"


def method_label(method: str) -> str:
    return METHOD_LABELS.get(method, method)
