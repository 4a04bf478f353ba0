"""Declared alert packet layouts: which fields of a broker's packets hold what, and how they are framed.

A layout (see ``packet_layouts.yaml`` beside this module, the shipped ZTF, ATLAS, Rubin and
DECam declarations, and docs/surveys.md) says:

* ``framing``: ``container`` (an Avro object container file, its writer schema in its header;
  the layout applies to schemas whose full name matches one of ``schema_names``, shell patterns)
  or ``confluent`` (a zero byte, a 4-byte big-endian schema id, one schemaless record; the
  writer schema is found by id from ``schema``: a Python package's data files or a folder);
* ``id``, ``object_id``: dotted field paths (lists tried in order) of the alert's ids;
* ``scores``: output column -> field path of the broker's own real/bogus scores;
* ``cutouts``: the fields of the science, template and difference cutouts; ``cutout_forms``:
  ``record`` (``{fileName, stampData}``) and/or ``bytes``; ``compression``: ``gzip`` or ``none``
  (FITS; a multi-HDU file's PRIMARY image is the stamp);
* ``stamp_size`` (the largest cutout side the broker sends), ``cutout_max_bytes`` (optional),
  ``edge`` (``pad``: cut edge cutouts padded with NaN to ``stamp_size``, on the side given by the
  ``x``/``y`` source position fields), ``missing_template`` (``error`` or
  ``science_minus_difference``).

This module only reads and checks declarations; :mod:`rbda.alerts.packets` applies them.
"""

from __future__ import annotations

import fnmatch
import functools
import importlib.util
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from rbda.errors import InputFileError

SHIPPED = Path(__file__).with_name("packet_layouts.yaml")
FRAMINGS = ("container", "confluent")
CUTOUT_FORMS = ("record", "bytes")
COMPRESSIONS = ("gzip", "none")
MISSING_TEMPLATE = ("error", "science_minus_difference")
ID_SCHEMES = ("major_minor", "plain")
CHANNEL_NAMES = ("science", "template", "difference")
#: Header and structure allowance of a cutout FITS file when a layout does not declare cutout_max_bytes:
#: 36 header blocks of 2,880 bytes and one block of slack (rbda.ingest.fits bounds parsing the same way).
_HEADER_ALLOWANCE_BYTES = 37 * 2880
_KEYS = {"name", "label", "framing", "schema_names", "schema", "id", "object_id", "scores", "cutouts", "cutout_forms",
         "compression", "stamp_size", "cutout_max_bytes", "edge", "missing_template"}


def package_folder(name: str) -> Path | None:
    """The folder of an installed Python package, found without importing it (its parents are imported:
    namespace packages such as ``lsst``); None when it is not installed."""
    try:
        spec = importlib.util.find_spec(name)
    except ModuleNotFoundError:
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


@dataclass(frozen=True)
class SchemaSource:
    """Where a Confluent layout's writer schemas are: ``file`` (a pattern of ``{id}``, ``{major}``,
    ``{minor}``) under a Python package's folder (``package``, found without importing it) or ``folder``."""

    file: str
    package: str | None = None
    folder: Path | None = None
    id_scheme: str = "plain"

    def root(self) -> Path:
        if self.folder is not None:
            return self.folder
        folder = package_folder(self.package)
        if folder is None:
            raise LookupError(f"the Python package {self.package} (pip install {self.package.replace('.', '-')}), "
                              "whose schema files this layout reads")
        return folder

    def path(self, schema_id: int) -> Path:
        if self.id_scheme == "major_minor":
            names = {"id": schema_id, "major": schema_id // 100, "minor": schema_id % 100}
        else:
            names = {"id": schema_id}
        return self.root() / self.file.format(**names)

    def known_ids(self) -> list[int]:
        """The schema ids whose files exist (for error messages)."""
        root = self.root()
        found = []
        pattern = self.file.format(id="*", major="*", minor="*")
        for path in sorted(root.glob(pattern)):
            parts = [int(p) for p in path.relative_to(root).parts if p.isdigit()]
            if self.id_scheme == "major_minor" and len(parts) >= 2:
                found.append(parts[0] * 100 + parts[1])
            elif self.id_scheme == "plain":
                digits = "".join(ch for ch in path.name if ch.isdigit())
                if digits:
                    found.append(int(digits))
        return sorted(found)

    def describe(self) -> str:
        return f"package {self.package}" if self.package else f"folder {self.folder}"


@dataclass(frozen=True)
class PacketLayout:
    """One broker's packet layout (see the module docstring)."""

    name: str
    label: str
    framing: str
    cutouts: dict
    cutout_forms: tuple
    compression: str
    stamp_size: int
    id: tuple
    object_id: tuple = ()
    scores: dict = field(default_factory=dict)
    schema_names: tuple = ()
    schema: SchemaSource | None = None
    cutout_max_bytes: int | None = None
    pads_edges: bool = True
    position: dict = field(default_factory=dict)  # "x"/"y" -> field path
    missing_template: str = "error"

    def max_cutout_bytes(self) -> int:
        """Largest (inflated) cutout FITS file accepted: declared, or a header allowance and float64 pixels."""
        return self.cutout_max_bytes or _HEADER_ALLOWANCE_BYTES + 8 * self.stamp_size ** 2

    def matches_schema(self, schema_name: str) -> bool:
        return any(fnmatch.fnmatch(schema_name.lower(), p.lower()) for p in self.schema_names)

    def field_paths(self) -> list[str]:
        """Every field path the layout reads (the decoder's projection keeps only these)."""
        return [*self.id, *self.object_id, *self.scores.values(), *self.cutouts.values(), *self.position.values()]


def _fail(source: Path, where: str, expected: str, got: object) -> None:
    raise InputFileError(source, f"{expected}, got {json.dumps(got, default=str)[:80]}", where)


def _paths(source: Path, where: str, value: object, required: bool) -> tuple:
    if value is None and not required:
        return ()
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not values or not all(isinstance(v, str) and v.strip(".") for v in values):
        _fail(source, where, "a field path (e.g. candidate.candid) or a non-empty list of them", value)
    return tuple(values)


def parse_layout(entry: object, source: Path, index: int) -> PacketLayout:
    """One declaration checked: an InputFileError naming the file, the layout and the setting otherwise."""
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not entry["name"]:
        _fail(source, f"layouts[{index}]", "a mapping with a name", entry)
    name = entry["name"]
    where = f"layout {name}"
    unknown = sorted(set(entry) - _KEYS)
    if unknown:
        _fail(source, where, f"settings among {sorted(_KEYS)}", unknown)

    def choice(key: str, options: tuple, default: str | None = None) -> str:
        value = entry.get(key, default)
        if value not in options:
            _fail(source, f"{where}: {key}", f"one of {', '.join(options)}", value)
        return value

    framing = choice("framing", FRAMINGS)
    cutouts = entry.get("cutouts")
    if not isinstance(cutouts, dict) or set(cutouts) != set(CHANNEL_NAMES) \
            or not all(isinstance(v, str) and v for v in cutouts.values()):
        _fail(source, f"{where}: cutouts", f"the field of each of {', '.join(CHANNEL_NAMES)}", cutouts)
    forms = entry.get("cutout_forms")
    if not isinstance(forms, list) or not forms or not set(forms) <= set(CUTOUT_FORMS):
        _fail(source, f"{where}: cutout_forms", f"a non-empty list of {', '.join(CUTOUT_FORMS)}", forms)
    stamp_size = entry.get("stamp_size")
    if isinstance(stamp_size, bool) or not isinstance(stamp_size, int) or not 8 <= stamp_size <= 1024:
        _fail(source, f"{where}: stamp_size", "an integer of 8 to 1024 pixels", stamp_size)
    max_bytes = entry.get("cutout_max_bytes")
    if max_bytes is not None and (isinstance(max_bytes, bool) or not isinstance(max_bytes, int)
                                  or not 2880 <= max_bytes <= 64 * 2**20):
        _fail(source, f"{where}: cutout_max_bytes", "an integer of 2880 to 67108864 bytes", max_bytes)
    scores = entry.get("scores") or {}
    if not isinstance(scores, dict) or not all(isinstance(k, str) and k.isidentifier() and isinstance(v, str) and v
                                               for k, v in scores.items()):
        _fail(source, f"{where}: scores", "a mapping of output column (a name) to field path", scores)
    reserved = {"objectId", "candid", "layout", "padded", "file", "p_real", "predicted"}
    if set(scores) & reserved:
        _fail(source, f"{where}: scores", f"column names other than {sorted(reserved)}", sorted(set(scores) & reserved))
    edge = entry.get("edge") or {}
    if not isinstance(edge, dict) or not set(edge) <= {"pad", "x", "y"} or not isinstance(edge.get("pad", True), bool):
        _fail(source, f"{where}: edge", "a mapping of pad (true/false) and optional x, y field paths", edge)
    position = {axis: _paths(source, f"{where}: edge.{axis}", edge[axis], True)[0] for axis in ("x", "y") if axis in edge}
    schema_names: tuple = ()
    schema = None
    if framing == "container":
        names = entry.get("schema_names")
        if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
            _fail(source, f"{where}: schema_names", "a non-empty list of writer schema name patterns (e.g. '*')", names)
        schema_names = tuple(names)
    else:
        spec = entry.get("schema")
        if not isinstance(spec, dict) or not isinstance(spec.get("file"), str) \
                or (spec.get("package") is None) == (spec.get("folder") is None) \
                or not set(spec) <= {"file", "package", "folder", "id_scheme"}:
            _fail(source, f"{where}: schema", "a mapping of file (a pattern of {id} or {major}/{minor}) and one of "
                                              "package or folder (and optional id_scheme)", spec)
        scheme = spec.get("id_scheme", "plain")
        if scheme not in ID_SCHEMES:
            _fail(source, f"{where}: schema.id_scheme", f"one of {', '.join(ID_SCHEMES)}", scheme)
        folder = spec.get("folder")
        schema = SchemaSource(file=spec["file"], package=spec.get("package"), id_scheme=scheme,
                              folder=None if folder is None else (source.parent / folder).resolve())
    return PacketLayout(
        name=name, label=str(entry.get("label", name)), framing=framing, cutouts=dict(cutouts),
        cutout_forms=tuple(forms), compression=choice("compression", COMPRESSIONS), stamp_size=stamp_size,
        id=_paths(source, f"{where}: id", entry.get("id"), True),
        object_id=_paths(source, f"{where}: object_id", entry.get("object_id"), False), scores=dict(scores),
        schema_names=schema_names, schema=schema, cutout_max_bytes=max_bytes, pads_edges=edge.get("pad", True),
        position=position, missing_template=choice("missing_template", MISSING_TEMPLATE, "error"))


def read_layouts(path: str | Path) -> list[PacketLayout]:
    """The layouts a YAML file declares (``layouts:``, a list), checked."""
    import yaml

    path = Path(path)
    try:
        document = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise InputFileError(path, f"a readable YAML file of packet layouts ({exc.__class__.__name__}: {exc})") from None
    if not isinstance(document, dict) or not isinstance(document.get("layouts"), list) or not document["layouts"]:
        raise InputFileError(path, "a YAML mapping with layouts: a non-empty list of packet layouts")
    layouts = [parse_layout(entry, path, i) for i, entry in enumerate(document["layouts"])]
    names = [layout.name for layout in layouts]
    if len(set(names)) != len(names):
        raise InputFileError(path, f"layouts of distinct names, got {names}")
    return layouts


def load_layouts(extra: Sequence[str | Path] = ()) -> list[PacketLayout]:
    """The layouts ``rbda predict`` tries, in order: those of the ``extra`` files (a user's brokers), then the
    shipped ones; a user layout of a shipped layout's name replaces it."""
    added = [layout for path in extra for layout in read_layouts(path)]
    names = [layout.name for layout in added]
    if len(set(names)) != len(names):
        raise InputFileError(extra[0], f"packet layouts of distinct names over the files given, got {names}")
    return added + [layout for layout in shipped_layouts() if layout.name not in names]


@functools.cache
def shipped_layouts() -> tuple[PacketLayout, ...]:
    """The shipped layouts (``packet_layouts.yaml``), read once per process (they are read at import, for
    the decoder's projection, and again by every reader)."""
    return tuple(read_layouts(SHIPPED))
