"""Surveys are declared, not coded: the one place that reads survey declarations (standard library only).

A declaration (docs/surveys.md) gives a survey's display ``label``, ``stamp_size`` (the side of its
raw stamps), ``channels`` (their order in the raw data, a permutation of template, science,
difference), ``pixel_type``, ``band``, ``layouts`` (raw layout name -> ``{reader, settings}``: which
reader of :data:`rbda.ingest.readers.READERS` reads it, with which keyword settings; the first is the
default), ``class_map`` (``{real: [...], bogus: [...]}``, the default class -> label mapping),
optionally ``classes`` (the original classes, in label order, of ``task: multiclass``),
``study_counts`` (``{real, bogus}`` published counts the read counts are compared with) and
``synthetic`` (optional: the generative model's settings for ``rbda synth``, written in the survey's
``stamps_npz`` layout; :func:`rbda.ingest.synth.model.declared_spec`), ``headline_class`` (the class whose per-class metrics ``rbda stamp-classifier`` reports) and
``size_rule`` (``crop_or_pad``: stamps smaller than the network's crop padded with invalid pixels,
larger ones cropped by preprocessing; ``exact``: a stamp of another size than ``stamp_size`` is an
error naming the survey and the sizes).

The study's four surveys are the shipped declarations (``rbda/data/surveys.json``). More are
declared in a JSON (or YAML) file ``{"surveys": {name: declaration}}`` named by the environment
variable :data:`SURVEYS_ENV` (``rbda --surveys FILE`` sets it; the workflow sets it from the
config's ``surveys.<name>.declare`` parts); a declared name may not redefine a shipped one.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from rbda.errors import InputFileError, SettingError

SHIPPED = Path(__file__).with_name("data") / "surveys.json"
#: Environment variable naming a file of further survey declarations.
SURVEYS_ENV = "RBDA_SURVEYS"
CHANNEL_NAMES = ("template", "science", "difference")
PIXEL_TYPES = ("float32", "float64", "int16", "int32", "uint8", "uint16")
SIZE_RULES = ("crop_or_pad", "exact")
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_KEYS = {"label", "stamp_size", "channels", "pixel_type", "band", "layouts", "class_map", "classes",
         "study_counts", "size_rule", "headline_class", "synthetic"}


@dataclass(frozen=True)
class Survey:
    """One survey's declaration (see the module docstring)."""

    name: str
    label: str
    stamp_size: int
    channels: tuple
    pixel_type: str
    band: str
    layouts: dict  # raw layout name -> {"reader": id, "settings": {...}}
    real_classes: tuple
    bogus_classes: tuple
    classes: tuple = ()
    study_counts: tuple | None = None  # (real, bogus)
    size_rule: str = "crop_or_pad"
    headline_class: str | None = None
    synthetic: dict | None = None
    shipped: bool = field(default=False, compare=False)

    @property
    def formats(self) -> tuple:
        """Raw layout names, the default first."""
        return tuple(self.layouts)


def _check(source: Path, name: str, key: str, ok: bool, expected: str, got: object) -> None:
    if not ok:
        raise InputFileError(source, f"{expected}, got {json.dumps(got, default=str)[:80]}",
                             f"survey {name}: {key}")


def parse_survey(name: object, entry: object, source: Path, shipped: bool = False) -> Survey:
    """One declaration checked; an InputFileError naming the file, the survey and the setting otherwise."""
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise InputFileError(source, f"a survey name of lower-case letters, digits and _ (starting with a letter), "
                                     f"got {name!r}", "surveys")
    _check(source, name, "(declaration)", isinstance(entry, dict), "a mapping", entry)
    unknown = sorted(set(entry) - _KEYS)
    _check(source, name, "(settings)", not unknown, f"settings among {sorted(_KEYS)}", unknown)
    size = entry.get("stamp_size")
    _check(source, name, "stamp_size", isinstance(size, int) and not isinstance(size, bool) and 8 <= size <= 1024,
           "an integer of 8 to 1024 pixels", size)
    channels = entry.get("channels", list(CHANNEL_NAMES))
    _check(source, name, "channels", isinstance(channels, list) and sorted(channels) == sorted(CHANNEL_NAMES),
           f"the order of {', '.join(CHANNEL_NAMES)} in the raw data (each once)", channels)
    pixel_type = entry.get("pixel_type", "float32")
    _check(source, name, "pixel_type", pixel_type in PIXEL_TYPES, f"one of {', '.join(PIXEL_TYPES)}", pixel_type)
    layouts = entry.get("layouts")
    _check(source, name, "layouts", isinstance(layouts, dict) and bool(layouts),
           "a mapping of raw layout name to {reader, settings}", layouts)
    for layout, spec in layouts.items():
        _check(source, name, f"layouts.{layout}",
               isinstance(spec, dict) and isinstance(spec.get("reader"), str) and set(spec) <= {"reader", "settings"}
               and isinstance(spec.get("settings", {}), dict),
               "a mapping of reader (a reader name) and optional settings (a mapping)", spec)
    class_map = entry.get("class_map")
    _check(source, name, "class_map", isinstance(class_map, dict) and set(class_map) == {"real", "bogus"}
           and all(isinstance(v, list) and v and all(isinstance(c, str) and c for c in v) for v in class_map.values())
           and not set(class_map["real"]) & set(class_map["bogus"]),
           "{real: [class names], bogus: [class names]}, disjoint and non-empty", class_map)
    classes = entry.get("classes", [])
    _check(source, name, "classes", isinstance(classes, list) and all(isinstance(c, str) and c for c in classes)
           and len(set(classes)) == len(classes), "a list of distinct class names", classes)
    counts = entry.get("study_counts")
    _check(source, name, "study_counts", counts is None or (
        isinstance(counts, dict) and set(counts) == {"real", "bogus"}
        and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in counts.values())),
        "null or {real: count, bogus: count}", counts)
    size_rule = entry.get("size_rule", "crop_or_pad")
    _check(source, name, "size_rule", size_rule in SIZE_RULES, f"one of {', '.join(SIZE_RULES)}", size_rule)
    headline = entry.get("headline_class")
    _check(source, name, "headline_class", headline is None or headline in classes,
           "null or one of the survey's classes", headline)
    synthetic = entry.get("synthetic")
    _check(source, name, "synthetic", synthetic is None or isinstance(synthetic, dict),
           "null or a mapping of the synthetic generator's settings", synthetic)
    for key in ("label", "band"):
        _check(source, name, key, isinstance(entry.get(key, ""), str), "a string", entry.get(key))
    return Survey(name=name, label=entry.get("label") or name.upper(), stamp_size=size, channels=tuple(channels),
                  pixel_type=pixel_type, band=entry.get("band", ""),
                  layouts={k: {"reader": v["reader"], "settings": dict(v.get("settings", {}))} for k, v in layouts.items()},
                  real_classes=tuple(class_map["real"]), bogus_classes=tuple(class_map["bogus"]),
                  classes=tuple(classes), study_counts=None if counts is None else (counts["real"], counts["bogus"]),
                  size_rule=size_rule, headline_class=headline, synthetic=synthetic, shipped=shipped)


def read_declarations(path: str | Path, shipped: bool = False) -> dict[str, Survey]:
    """The surveys a file declares (``{"surveys": {name: declaration}}``; JSON, or YAML by suffix)."""
    path = Path(path)
    try:
        text = path.read_text()
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            document = yaml.safe_load(text)
        else:
            document = json.loads(text)
    except Exception as exc:  # noqa: BLE001 - OSError, JSON and YAML errors
        raise InputFileError(path, f"a readable file of survey declarations ({exc.__class__.__name__}: {exc})") from None
    if not isinstance(document, dict) or not isinstance(document.get("surveys"), dict) or not document["surveys"]:
        raise InputFileError(path, "a mapping with surveys: a non-empty mapping of survey name to declaration")
    return {name: parse_survey(name, entry, path, shipped) for name, entry in document["surveys"].items()}


_CACHE: dict[str | None, dict[str, Survey]] = {}


def declared_surveys() -> dict[str, Survey]:
    """Every declared survey by name: the shipped ones (study order), then those of :data:`SURVEYS_ENV`'s file."""
    extra = os.environ.get(SURVEYS_ENV) or None
    if extra not in _CACHE:
        surveys = read_declarations(SHIPPED, shipped=True)
        if extra is not None:
            added = read_declarations(extra)
            clash = sorted(set(added) & set(surveys))
            if clash:
                raise InputFileError(extra, f"surveys of names other than the shipped ones, got {clash}")
            surveys.update(added)
        _CACHE[extra] = surveys
    return _CACHE[extra]


def shipped_surveys() -> dict[str, Survey]:
    """The shipped declarations (the study's surveys), whatever else is declared."""
    return {name: s for name, s in declared_surveys().items() if s.shipped}


def get_survey(name: str) -> Survey:
    """A declared survey; a SettingError naming the declared ones otherwise."""
    surveys = declared_surveys()
    if name not in surveys:
        raise SettingError("survey", f"a declared survey ({', '.join(surveys)}; declare others in a file named by "
                                     f"rbda --surveys or {SURVEYS_ENV})", name)
    return surveys[name]


def survey_names() -> tuple[str, ...]:
    return tuple(declared_surveys())


def survey_label(name: str) -> str:
    """A survey's display label (the upper-cased name for a name nobody declared)."""
    survey = declared_surveys().get(name)
    return survey.label if survey else name.upper()


def survey_argument(text: str) -> str:
    """argparse ``type`` of a ``--survey`` option: a declared survey's name (checked when parsed, after
    ``rbda --surveys FILE`` has declared more)."""
    import argparse

    try:
        surveys = declared_surveys()
    except InputFileError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if text not in surveys:
        raise argparse.ArgumentTypeError(f"{text!r} is not a declared survey ({', '.join(surveys)}; declare others "
                                         f"with rbda --surveys FILE)")
    return text
