"""The HTML report renders in headless Chromium with every image decoded."""

from __future__ import annotations

import re
import shutil
import subprocess

from conftest import skip_unless_available
from results_helpers import fabricate_study

from rbda.results.aggregate import aggregate
from rbda.results.outputs import FIGURES
from rbda.results.report import ReportSection, render_report

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run",
                  "--virtual-time-budget=10000"]


def chromium_or_skip() -> str:
    chromium = shutil.which("chromium")
    skip_unless_available(chromium is not None, "chromium not installed (apt-get install -y chromium)")
    return chromium


def rendered_dom(page, profile) -> str:
    """The page's DOM after its scripts ran, from headless Chromium."""
    result = subprocess.run(
        [chromium_or_skip(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_report_loads_all_images_in_chromium(tmp_path):
    chromium_or_skip()
    runs_list, config = fabricate_study(tmp_path / "study", ["hits", "des"], splits=2, shots=[1, 5],
                                        lambdas=[0.1, 1.0])
    out = tmp_path / "out"
    aggregate(runs_list, config, out)
    report = out / "report.html"
    expected = len(re.findall(r"<img ", report.read_text()))
    assert expected == len(FIGURES)  # one inline PNG per figure
    dom = rendered_dom(report, tmp_path / "profile")
    body = re.search(r"<body[^>]*>", dom)
    assert body is not None, dom[:500]
    assert f'data-images-total="{expected}"' in body.group(0)
    assert 'data-images-loaded="true"' in body.group(0)


def test_report_check_detects_a_broken_image(tmp_path):
    """The in-page check is not vacuous: a corrupt image makes it report false."""
    chromium_or_skip()
    section = ReportSection("Broken", "broken")
    section.raw('<img src="data:image/png;base64,bm90IGEgcG5n" alt="broken">')
    page = tmp_path / "broken.html"
    page.write_text(render_report("broken", [section]))
    assert 'data-images-loaded="false"' in rendered_dom(page, tmp_path / "profile")
