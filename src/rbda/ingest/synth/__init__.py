"""Synthetic surveys written in their native raw layouts (``rbda synth``).

The demo goes through the same readers as the real data: :func:`synthesize`
simulates ``n`` alerts with :mod:`rbda.ingest.synth.model` and writes them with
:mod:`rbda.ingest.synth.writers` into a folder that ``rbda preprocess`` reads with
layout detection. The folder appears complete or not at all.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from rbda import __version__
from rbda.atomic import atomic_folder
from rbda.errors import SettingError
from rbda.seeding import rng as derived_rng
from rbda.ingest.synth.model import SPECS, declared_spec, simulate
from rbda.ingest.synth.writers import LAYOUTS, write_atlas, write_des, write_hits, write_stamps_npz, write_ztf

MANIFEST = "synth.json"


def synthesize(survey: str, n: int, seed: int, out: str | Path, layout: str | None = None) -> dict:
    """Write ``n`` synthetic alerts of ``survey`` under ``out``; returns the manifest. The study's surveys
    are written in their own raw layouts; a declared survey (rbda.surveys) by its declaration's
    ``synthetic`` part in its generic ``stamps_npz`` layout."""
    declaration = None
    if survey in SPECS:
        spec, layouts = SPECS[survey], LAYOUTS[survey]
    else:
        from rbda.surveys import get_survey

        declaration = get_survey(survey)
        spec = declared_spec(declaration)
        layouts = tuple(f for f, s in declaration.layouts.items() if s["reader"] == "stamps_npz")
        if not layouts:
            raise SettingError(f"survey {survey}: layouts", "a layout of the stamps_npz reader to write its "
                                                            "synthetic stamps in", sorted(declaration.layouts))
    layout = layout or layouts[0]
    if layout not in layouts:
        raise SettingError("layout", f"one of {layouts} for {survey}", layout)
    if n < 2:
        raise SettingError("n", "at least 2 stamps", n)
    with atomic_folder(out, MANIFEST) as tmp:  # an existing folder that is not synth's is refused first
        sim = simulate(spec, n, derived_rng(seed, "synth", survey, "stamps"))
        write_rng = derived_rng(seed, "synth", survey, "layout")
        if declaration is not None:
            write_stamps_npz(sim, tmp, declaration)
        elif survey == "hits":
            write_hits(sim, tmp, write_rng)
        elif survey == "des":
            write_des(sim, tmp, write_rng, layout)
        elif survey == "ztf":
            write_ztf(sim, tmp, write_rng, layout)
        else:
            write_atlas(sim, tmp, write_rng, layout)
        manifest = {
            "survey": survey, "n": n, "seed": seed, "layout": layout, "rbda_version": __version__,
            "classes": dict(sorted(Counter(sim.classes).items())),
            "labels": {str(k): v for k, v in sorted(Counter(sim.labels).items())},
            "shapes": dict(Counter(f"{t.shape[0]}x{t.shape[1]}" for t in sim.template)),
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest
