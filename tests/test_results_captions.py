"""The Snakemake report captions (workflow/report/*.rst) are valid reStructuredText,
and every figure rbda aggregate writes has its caption."""

from __future__ import annotations

import importlib.util

import pytest
from conftest import skip_unless_available

from rbda.results.outputs import FIGURES

HAVE_DOCUTILS = importlib.util.find_spec("docutils") is not None
if HAVE_DOCUTILS:
    import docutils.core
    import docutils.utils

CAPTIONS = ["tables", "stats", "report", "gallery", "prediction_gallery", *FIGURES]


@pytest.mark.parametrize("name", CAPTIONS)
def test_caption_is_clean_rst(repo_root, name):
    skip_unless_available(HAVE_DOCUTILS, "docutils (installed with snakemake) is missing")
    text = (repo_root / "workflow" / "report" / f"{name}.rst").read_text()
    # halt_level 2: any warning (bad markup, unknown role, dangling reference) raises
    docutils.core.publish_doctree(text, settings_overrides={"halt_level": 2, "report_level": 5})


def test_bad_rst_would_fail():
    skip_unless_available(HAVE_DOCUTILS, "docutils (installed with snakemake) is missing")
    with pytest.raises(docutils.utils.SystemMessage):
        docutils.core.publish_doctree("see :ref:`nowhere`", settings_overrides={"halt_level": 2,
                                                                                 "report_level": 5})
