"""Stamps written as alert packets of a declared layout (``rbda packets``), one packet per file.

The inverse of :mod:`rbda.alerts.packets`, driven by the same declarations
(:mod:`rbda.alerts.layouts`), so that a survey's labelled stamps can be scored by ``rbda predict``
exactly as its broker would send them (a synthetic Rubin-like survey as Rubin packets, in
``presets/rubin.yaml``), and that every declared layout is checked by a round trip:

* **Confluent framing** (Rubin's): a zero byte, the 4-byte big-endian schema id, then one schemaless
  record of the schema the layout's schema source holds for that id (default: the newest it has).
  Every field the layout does not fill gets the smallest valid value of its type: null where the type
  allows it, else zero, an empty string, array or map, an enum's first symbol, a record of such values.
* **Container framing** (ZTF's, ATLAS's, DECam's): an Avro object container file of one packet, of a
  schema made from the layout's declared field paths (``rbda.<layout>.alert``; ids longs, scores
  nullable doubles, cutouts in the layout's first cutout form).

Each cutout is a single-HDU float32 FITS file (gzip-compressed when the layout's ``compression`` is
gzip), at the stamp's own size. The packet id is the stamp's row (0, 1, ...), as brokers' ids are
longs; ``truth.csv`` beside the packets gives each packet id's file, the survey's own id, class and
label, so that scores can be checked against the labels. Nothing is written until every stamp is
encoded, and the folder appears complete or not at all.
"""

from __future__ import annotations

import copy
import csv
import gzip
import io
import itertools
from pathlib import Path
from typing import Iterable

import numpy as np

from rbda.alerts.layouts import PacketLayout
from rbda.atomic import atomic_folder
from rbda.errors import RbdaError, SettingError
from rbda.ingest.readers.base import RawBatch
from rbda.ingest.synth.writers import fits_bytes
from rbda.study import CHANNELS

#: Written beside the packets: packet id, file, the survey's id, class and label of each.
TRUTH = "truth.csv"
TRUTH_COLUMNS = ("candid", "file", "id", "class", "label")

_PRIMITIVE_BLANKS = {"null": None, "boolean": False, "int": 0, "long": 0, "float": 0.0, "double": 0.0,
                     "bytes": b"", "string": ""}


def blank_value(node: object, named: dict | None = None, namespace: str = "") -> object:
    """The smallest valid value of an Avro type (see the module docstring); ``named`` collects named types."""
    named = {} if named is None else named
    if isinstance(node, str):
        if node in _PRIMITIVE_BLANKS:
            return _PRIMITIVE_BLANKS[node]
        full = node if "." in node or not namespace else f"{namespace}.{node}"
        return blank_value(named.get(full, named.get(node)), named, namespace)
    if isinstance(node, list):
        return None if "null" in node else blank_value(node[0], named, namespace)
    if not isinstance(node, dict):
        raise RbdaError(f"an Avro type, got {node!r}")
    kind = node["type"]
    if kind in ("record", "error", "enum", "fixed"):
        space = node.get("namespace", namespace)
        name = node["name"]
        named[name if "." in name else f"{space}.{name}" if space else name] = node
        if kind == "enum":
            return node["symbols"][0]
        if kind == "fixed":
            return b"\0" * node["size"]
        return {f["name"]: blank_value(f["type"], named, space) for f in node["fields"]}
    if kind == "array":
        return []
    if kind == "map":
        return {}
    return blank_value(kind, named, namespace)


def _set(record: dict, path: str, value: object) -> None:
    *parents, last = path.split(".")
    for name in parents:
        record = record.setdefault(name, {}) if record.get(name) is None else record[name]
    record[last] = value


def _declared_schema(layout: PacketLayout) -> dict:
    """A container schema holding exactly the layout's declared fields (nested records for dotted paths)."""
    tree: dict = {}
    kinds = {path: "long" for path in (*layout.id[:1], *layout.object_id[:1])}
    kinds.update({path: ["null", "double"] for path in layout.scores.values()})
    kinds.update({path: "double" for path in layout.position.values()})
    for channel in CHANNELS:  # each cutout record its own named type (a name is defined once per schema)
        cutout = ({"type": "record", "name": f"{channel}_cutout", "fields": [
            {"name": "fileName", "type": "string"}, {"name": "stampData", "type": "bytes"}]}
            if layout.cutout_forms[0] == "record" else "bytes")
        kinds[layout.cutouts[channel]] = ["null", cutout]
    for path, kind in kinds.items():
        _set(tree, path, kind)

    def schema_of(name: str, node: dict) -> dict:
        fields = [{"name": key, "type": schema_of(key, value) if isinstance(value, dict) else value}
                  for key, value in node.items()]
        return {"type": "record", "name": name, "fields": fields}

    return schema_of(f"rbda.{layout.name}.alert", tree)


class PacketWriter:
    """Encodes stamps as packets of one declared layout (see the module docstring)."""

    def __init__(self, layout: PacketLayout, schema_id: int | None = None):
        import fastavro

        self.layout = layout
        self.schema_id = None
        if layout.framing == "confluent":
            from fastavro.schema import load_schema

            known = layout.schema.known_ids()
            if schema_id is None:
                if not known:
                    raise SettingError(f"packet layout {layout.name}: schema", "a schema file for some id",
                                       layout.schema.describe())
                schema_id = known[-1]
            path = layout.schema.path(schema_id)
            if not path.is_file():
                raise SettingError("schema id", f"an id {layout.label}'s schema source has ({known})", schema_id)
            self.schema_id = schema_id
            schema = load_schema(str(path), _write_hint=False)
        else:
            if schema_id is not None:
                raise SettingError("schema id", f"none for the container layout {layout.name}", schema_id)
            schema = _declared_schema(layout)
        self.blank = blank_value(copy.deepcopy(schema))
        self.schema = fastavro.parse_schema(schema)

    def cutout(self, image: np.ndarray, name: str) -> object:
        data = fits_bytes(image)
        if self.layout.compression == "gzip":
            data = gzip.compress(data, compresslevel=6, mtime=0)
        return {"fileName": name, "stampData": data} if self.layout.cutout_forms[0] == "record" else data

    def record(self, triplet: np.ndarray, candid: int) -> dict:
        """One packet of the (3, H, W) template/science/difference ``triplet``, id ``candid``."""
        layout = self.layout
        if layout.missing_template == "science_minus_difference":
            # such a layout's packets carry no template; the reader derives it, so write what it derives
            if not np.allclose(triplet[0], triplet[1] - triplet[2], equal_nan=True, atol=1e-3):
                raise RbdaError(f"{layout.label} packets carry no template (the reader takes science - "
                                "difference): stamps whose template is not science - difference would change")
        packet = copy.deepcopy(self.blank)
        for path in (*layout.id[:1], *layout.object_id[:1]):
            _set(packet, path, candid)
        for channel, image in zip(CHANNELS, triplet):
            if channel == "template" and layout.missing_template == "science_minus_difference":
                continue
            _set(packet, layout.cutouts[channel], self.cutout(image, f"candid{candid}_{channel}.fits"))
        return packet

    def encode(self, packet: dict) -> bytes:
        import fastavro

        out = io.BytesIO()
        if self.layout.framing == "confluent":
            out.write(b"\0" + self.schema_id.to_bytes(4, "big"))
            fastavro.schemaless_writer(out, self.schema, packet)
        else:
            fastavro.writer(out, self.schema, [packet], codec="null")
        return out.getvalue()


def write_packets(batches: Iterable[RawBatch], layout: PacketLayout, out: str | Path,
                  schema_id: int | None = None, limit: int | None = None, inputs: str = "the input") -> dict:
    """Every stamp of ``batches`` (at most ``limit``) as one packet file of ``layout`` under ``out``
    (replaced only if an earlier ``rbda packets`` output), with :data:`TRUTH`; returns a summary.
    ``inputs`` names what ``batches`` were read from, for the error when they hold no stamp."""
    writer = PacketWriter(layout, schema_id)
    size = layout.stamp_size
    rows = []
    # lazily, so that reading stops at the limit
    stamps = ((batch.source, *stamp) for batch in batches
              for stamp in zip(batch.images, batch.ids, batch.classes, batch.labels))
    with atomic_folder(out, TRUTH) as tmp:
        for source, triplet, item_id, cls, label in itertools.islice(stamps, limit):
            if triplet.shape[-2:] != (size, size):
                raise RbdaError(f"{source}: {item_id}: stamps of the {layout.label} layout's "
                                f"{size}x{size} pixels, got {triplet.shape[-2]}x{triplet.shape[-1]}")
            candid = len(rows)
            name = f"{candid:07d}.avro"
            (tmp / name).write_bytes(writer.encode(writer.record(triplet, candid)))
            rows.append((candid, name, str(item_id), str(cls), int(label)))
        if not rows:
            raise RbdaError(f"{inputs}: stamps to write as {layout.label} packets, found none")
        with open(tmp / TRUTH, "w", newline="") as fh:
            table = csv.writer(fh)
            table.writerow(TRUTH_COLUMNS)
            table.writerows(rows)
    return {"packets": len(rows), "layout": layout.name, "schema_id": writer.schema_id,
            "real": sum(r[4] for r in rows), "bogus": sum(1 - r[4] for r in rows)}
