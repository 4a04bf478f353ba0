"""Stable names shared by paths, tables and figures.

The identifiers here are part of the contracts in ``docs/architecture.md``:
survey ids are lower case (``hits``), a pair is ``{source}-to-{target}`` and a
lambda is written with :func:`format_lambda`.
"""

from __future__ import annotations

from itertools import permutations

SURVEY_LABELS = {"hits": "HiTS", "des": "DES", "ztf": "ZTF", "atlas": "ATLAS"}

METHOD_LABELS = {"baseline": "Baseline", "finetune": "FT", "mme": "MME"}


def format_lambda(value: float) -> str:
    """A lambda as it appears in paths and JSON: ``format(x, "g")`` (0.01, 0.5, 10)."""
    return format(float(value), "g")


def pair_name(source: str, target: str) -> str:
    """``des-to-hits``."""
    return f"{source}-to-{target}"


def parse_pair_name(name: str) -> tuple[str, str]:
    """``des-to-hits`` -> ``("des", "hits")``; ``ValueError`` if not of that form."""
    parts = name.split("-to-")
    if len(parts) != 2 or not all(parts) or parts[0] == parts[1]:
        raise ValueError(f"expected a pair written source-to-target, got {name!r}")
    return parts[0], parts[1]


def survey_label(survey: str) -> str:
    """Display name of a survey id (``hits`` -> ``HiTS``); unknown ids upper-cased."""
    return SURVEY_LABELS.get(survey, survey.upper())


def pair_label(source: str, target: str) -> str:
    """Display name of a pair: ``DES→HiTS``."""
    return f"{survey_label(source)}→{survey_label(target)}"


def method_label(method: str) -> str:
    return METHOD_LABELS.get(method, method)


def ordered_pairs(surveys: list[str]) -> list[tuple[str, str]]:
    """All ordered (source, target) pairs of distinct surveys, by source then target
    in the given survey order."""
    return list(permutations(surveys, 2))
