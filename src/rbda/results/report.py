"""The self-contained HTML report (``report.html``).

Everything is inline: figures are PNG data URIs, tables are HTML, the style is
a ``<style>`` block. A small script marks ``<body data-images-loaded="true">``
once every image has decoded (used by the headless-browser test).
"""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from rbda import __version__
from rbda.results.naming import method_label, pair_label, survey_label

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto;
       max-width: 1200px; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #1b9e77; padding-bottom: .2em; }
h2 { margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: .8em 0; font-size: .85em; }
th, td { border: 1px solid #ccc; padding: .25em .55em; text-align: right; }
th { background: #f3f3f3; }
td:first-child, th:first-child { text-align: left; }
img { max-width: 100%; height: auto; border: 1px solid #eee; }
figure { margin: 1em 0; }
figcaption { font-size: .9em; color: #555; }
.warning { background: #fff4e5; border-left: 4px solid #e69500; padding: .6em 1em; }
.guide { background: #f1f8f6; border-left: 4px solid #1b9e77; padding: .6em 1em; }
details { margin: .6em 0; }
summary { cursor: pointer; font-weight: 600; }
pre { background: #f6f6f6; padding: .8em; overflow-x: auto; font-size: .85em; }
nav ul { columns: 2; }
"""

IMAGE_CHECK_SCRIPT = """
(function () {
  function check() {
    var images = Array.prototype.slice.call(document.images);
    var ok = images.every(function (img) { return img.complete && img.naturalWidth > 0; });
    document.body.setAttribute("data-images-total", String(images.length));
    document.body.setAttribute("data-images-loaded", ok ? "true" : "false");
  }
  if (document.readyState === "complete") { check(); } else { window.addEventListener("load", check); }
})();
"""

GUIDE = """
<ul>
<li><b>BACC</b> (balanced accuracy) is the mean of the recall on real and on bogus alerts:
0.5 is chance, 1 is perfect. Every number is a mean over the data splits, ± the sample
standard deviation over splits ("(1 split)" when there is only one).</li>
<li><b>Baseline</b>: a model trained on one survey only. Its row in the baseline table shows
how it does on every survey's test part; the diagonal is "at home", the rest is the domain
shift. For a pair <i>source→target</i> the baseline is the source model tested on the target
(dashed lines in the figures).</li>
<li><b>FT</b> (fine-tuning) and <b>MME</b> (minimax entropy), the published study's methods, and any
other configured adaptation method (<b>S+T</b>, <b>ENT</b>, <b>DANN</b>) start from the source baseline
and use <i>n</i> labelled target alerts per class ("shots"). Each is tested on the target (did it
help?) and on the source (did it forget?). The λ of MME (and ENT) was chosen on target validation
BACC by the configured rule, never on an item of the split's own test part; the λ table shows the
candidates, how often each was chosen and what the choice cost against the best λ in hindsight.</li>
<li><b>Shots to beat the baseline</b>: the smallest shot count whose mean target BACC exceeds the
baseline's mean on the target; in brackets the stricter count whose improvement is also
significant (one-sided paired t-test by split, Holm-adjusted p &lt; 0.05). "never": no tested shot
count qualifies; "not testable": no test could be computed (e.g. a single split).</li>
<li><b>Findings</b>: each claim of the paper with its direction and margin, its effect and 95%
interval, per pair or survey (corrected resampled t over splits, since the splits resample one pool)
and for the study (over the pairs). <i>holds</i>: the interval lies inside the claimed region;
<i>contradicted</i>: entirely outside it; <i>inconclusive</i>: neither (the evidence says what would
settle it); <i>not testable</i>: too few splits. A non-significant result is inconclusive, never
evidence against a claim.</li>
<li><b>Significance</b>: every method's run <i>k</i> starts from baseline <i>k</i> and uses split <i>k</i>,
so every comparison (method vs baseline on the target, one-sided; on the source, two-sided; method vs
method, MME vs FT being the headline, on both, two-sided) is paired by split: the paired t-test and the Wilcoxon signed-rank test;
Welch's test only where two groups share no split. <i>mean_diff</i> is the mean paired difference
with its 95% interval. Holm's correction is applied within each family: one (pair, domain,
comparison, test), whose members are the shot counts; <i>p</i> is raw, <i>p_holm</i> adjusted. With
n pairs the exact Wilcoxon test cannot give p below 2<sup>1−n</sup> (two-sided); the <i>note</i>
column says when a test cannot reach 0.05 by construction (that floor times the family size), and
why a p-value is missing where it is.</li>
</ul>
"""


@dataclass
class ReportSection:
    title: str
    anchor: str
    parts: list[str] = field(default_factory=list)

    def paragraph(self, text: str, css: str | None = None) -> None:
        attr = f' class="{css}"' if css else ""
        self.parts.append(f"<p{attr}>{text}</p>")

    def table(self, frame: pd.DataFrame, caption: str | None = None, collapsed: bool = False) -> None:
        body = table_html(frame)
        if collapsed:
            self.parts.append(f"<details><summary>{html.escape(caption or 'table')}</summary>{body}</details>")
            return
        if caption:
            self.parts.append(f"<p><b>{html.escape(caption)}</b></p>")
        self.parts.append(body)

    def figure(self, png: Path, caption: str) -> None:
        data = base64.b64encode(png.read_bytes()).decode("ascii")
        self.parts.append(
            f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(caption)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")

    def raw(self, markup: str) -> None:
        self.parts.append(markup)

    def render(self) -> str:
        return f'<section id="{self.anchor}"><h2>{html.escape(self.title)}</h2>\n' + "\n".join(self.parts) + "</section>"


def for_display(frame: pd.DataFrame) -> pd.DataFrame:
    """Survey ids, pairs and methods as display names (``des`` -> DES, FT, DES→HiTS)."""
    out = frame.copy()
    if {"source", "target"} <= set(out.columns):
        out["pair"] = [pair_label(s, t) for s, t in zip(out["source"], out["target"])]
        out = out.drop(columns=["source", "target"])
        out = out[["pair", *[c for c in out.columns if c != "pair"]]]
    for column in ("trained_on", "tested_on"):
        if column in out.columns:
            out[column] = out[column].map(survey_label)
    for column in ("method", "method_a", "method_b"):
        if column in out.columns:
            out[column] = out[column].map(method_label)
    return out


def table_html(frame: pd.DataFrame) -> str:
    if frame.empty:
        return "<p><i>(no rows)</i></p>"
    return frame.to_html(index=False, escape=True, na_rep="", float_format=lambda x: f"{x:.4g}",
                         border=0)


def preformatted(obj) -> str:
    return f"<pre>{html.escape(json.dumps(obj, indent=2, sort_keys=True, default=str))}</pre>"


def render_report(title: str, sections: list[ReportSection]) -> str:
    nav = "".join(f'<li><a href="#{s.anchor}">{html.escape(s.title)}</a></li>' for s in sections)
    body = "\n".join(s.render() for s in sections)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="rbda {html.escape(__version__)}">
<title>{html.escape(title)}</title><style>{STYLE}</style></head>
<body data-images-loaded="pending">
<h1>{html.escape(title)}</h1>
<nav><ul>{nav}</ul></nav>
{body}
<script>{IMAGE_CHECK_SCRIPT}</script>
</body></html>
"""
