"""Display names of surveys, pairs and methods (tables, figures, the report).

The identifiers themselves (survey names, ``source-to-target`` pairs, lambda
labels) are defined in :mod:`rbda.study`.
"""

from __future__ import annotations

from rbda.study import SURVEY_LABELS
from rbda.registry import METHOD_LABELS


def survey_label(survey: str) -> str:
    """Display name of a survey id (``hits`` -> ``HiTS``); unknown ids upper-cased."""
    return SURVEY_LABELS.get(survey, survey.upper())


def pair_label(source: str, target: str) -> str:
    """Display name of a pair: ``DES→HiTS``."""
    return f"{survey_label(source)}→{survey_label(target)}"


def method_label(method: str) -> str:
    return METHOD_LABELS.get(method, method)
