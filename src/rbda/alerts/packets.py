"""Alert packets (Avro) of any declared broker as triplets to score.

How a broker's packets are laid out is declared, not coded: :mod:`rbda.alerts.layouts` reads the
layouts (the shipped ZTF, ATLAS, Rubin/LSST and DECam/DESIRT ones in ``packet_layouts.yaml``, and
any a user passes with ``rbda predict --packet-layouts``). A file is one of:

* an Avro object container file (codec null, deflate, snappy, bzip2 or xz, each block inflated to
  at most :data:`MAX_BLOCK_BYTES` and holding no more records than bytes; ZTF's are
  snappy-compressed, which needs ``cramjam``) of one or more packets; each packet is read under the first container layout
  whose ``schema_names`` match the writer schema's full name and whose ``compression`` (gzip or
  plain FITS) is that of the packet's science cutout;
* a Confluent-framed packet (a zero byte, a 4-byte big-endian schema id, one schemaless record:
  Rubin's), read under the confluent layout whose schema source has a file for that id (Rubin:
  the schemas of the ``lsst-alert-packet`` package, id 900 = schema 9.0); an id no layout has is
  a bad file naming the id and the ids known.

A folder is searched for ``*.avro`` files. Per packet, by its layout:

* ids (``id``, ``object_id`` field paths) carried as strings: ZTF's are longs, ATLAS's strings such
  as ``02a59543o0040o_006230`` (:func:`packet_id`; a double, a bool or an id over
  :data:`MAX_ID_CHARS` characters is a bad packet, never truncated);
* the broker's own real/bogus scores (``scores``: ZTF's ``rb``, ``drb``; Rubin's ``reliability``),
  one output column each, NaN when null or when the packet's layout has no such score (a value that
  is not a number is a bad packet);
* the three cutouts (``cutouts``), each FITS bytes, directly or in a ``{fileName, stampData}``
  record (``cutout_forms``), gzip-compressed or plain (``compression``; of a multi-HDU file the
  PRIMARY image), decoded by :func:`rbda.ingest.fits.decode_stamp`, at most ``stamp_size`` pixels a
  side (a larger one is a bad packet; gzip-compressed cutouts are inflated only up to what that
  size needs).

Edge cutouts (e.g. ZTF's 48x63 near a CCD edge) are padded by the layout's edge rule to its stamp
size on the side the CCD edge cut (from the ``edge`` position fields; both sides evenly without
them) with NaN, which preprocessing marks as invalid pixels like any NaN; such alerts are scored
and flagged (``padded`` column). A layout with ``missing_template: science_minus_difference``
(ATLAS, which ships no template) gets template = science - difference, as the ATLAS survey reader
does for training; any other layout's packet without its template is a bad packet.

Bad packets -- a packet without a cutout, a cutout that is not a FITS image,
stamps of different shapes, non-square or smaller than the model's crop, a
stamp without any valid pixel (all NaN or sentinel), a packet no declared layout
matches -- and unreadable or truncated Avro files, a Confluent schema id no layout
knows, a writer schema whose arrays could declare items that take no bytes (a packet
of a few bytes could then make the reader loop for ever) or that is recursive, are an
:class:`~rbda.errors.InputFileError` naming the
file and the packet's candid; with ``skip_bad=True`` they are collected in
:attr:`AlertReader.bad` (file, candid, reason) instead and never silently dropped.
"""

from __future__ import annotations

import functools
import io
import json
import os
import stat
import zlib
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator, Sequence

import numpy as np
from zlib_ng import zlib_ng

from rbda.alerts.avro_decode import CorruptRecord, ProjectedDecoder, Unsupported, read_long
from rbda.errors import InputFileError
from rbda.ingest.fits import GZIP_MAGIC, decode_stamp, inflate
from rbda.ingest.preprocess import STAMP_SIZE, any_valid, centre_crop
from rbda.ingest.readers.base import IgnoredFiles, RawBatch, find_files, name_matches
from rbda.alerts.layouts import PacketLayout, load_layouts
from rbda.study import CHANNELS

#: Per-alert id columns an :class:`AlertBatch` carries first, then the layouts' score columns, then
#: :data:`TAIL_COLUMNS`.
ID_COLUMNS = ("objectId", "candid", "layout")
TAIL_COLUMNS = ("padded", "file")
#: Longest objectId or candid accepted, characters (ZTF's are 12 and 18, ATLAS's 21).
MAX_ID_CHARS = 64
#: Raw triplet bytes the reader holds at once over all its shape groups; past it the groups are emitted.
MAX_HELD_BYTES = 64 * 2**20


PATTERNS = ("*.avro",)
#: Class name of unlabelled alerts in the RawBatch (label -1).
UNLABELLED = "alert"


@dataclass
class BadPacket:
    file: str
    candid: str  # "" when the packet (or the file) has none
    reason: str

    def as_dict(self) -> dict:
        return {"file": self.file, "candid": self.candid, "reason": self.reason}


@dataclass
class AlertBatch:
    """Triplets of one shape (``raw``) and their per-alert columns (:data:`ALERT_COLUMNS`)."""

    raw: RawBatch
    columns: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.raw)


class BadPacketError(Exception):
    """A packet that cannot be scored; ``reason`` says why."""

    def __init__(self, reason: str, candid: str = ""):
        super().__init__(reason)
        self.reason = reason
        self.candid = candid


def field_value(packet: dict, path: str) -> object:
    """The value at a dotted field path (``candidate.candid``); None where a step is missing or null."""
    value: object = packet
    for name in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(name)
    return value


def first_value(packet: dict, paths: Sequence[str]) -> tuple[str, object]:
    """(path, value) of the first of ``paths`` present and not null; (paths[0], None) when none is."""
    for path in paths:
        value = field_value(packet, path)
        if value is not None:
            return path, value
    return (paths[0] if paths else ""), None


def _stamp_bytes(packet: dict, key: str, forms: Sequence[str]) -> object:
    """A cutout's FITS bytes (None when the field is missing or null) in one of the layout's ``forms``."""
    cutout = field_value(packet, key)
    if isinstance(cutout, dict) and "record" in forms:
        cutout = cutout.get("stampData")
    elif cutout is not None and "bytes" not in forms:
        raise BadPacketError(f"{key}: a record {{fileName, stampData}} of FITS bytes, got {_avro_type(cutout)}")
    if cutout is not None and not isinstance(cutout, (bytes, bytearray, memoryview)):
        expected = "FITS bytes (or a record with stampData)" if "record" in forms else "FITS bytes"
        raise BadPacketError(f"{key}: {expected}, got {_avro_type(cutout)}")
    return cutout


def _score(packet: dict, path: str) -> float:
    value = field_value(packet, path)
    if value is None:
        return float("nan")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadPacketError(f"{path} a number or null, got {_avro_type(value)} {str(value)[:40]!r}")
    return float(value)


def _avro_type(value: object) -> str:
    """The Avro name of a decoded value's type (Python's float is Avro's double)."""
    return {"float": "double", "bool": "boolean", "NoneType": "null", "dict": "record", "list": "array",
            "str": "string"}.get(type(value).__name__, type(value).__name__)


def packet_id(value: object, name: str) -> str:
    """An id (``candid``, ``objectId``, ``diaSourceId``) as a string: a long or a string of at most
    :data:`MAX_ID_CHARS` printable characters; anything else (a double, a bool, ...) is a BadPacketError."""
    if isinstance(value, int) and not isinstance(value, bool):
        text = str(value)
    elif isinstance(value, str):
        text = value
    else:
        raise BadPacketError(f"{name} a long or a string, got {_avro_type(value)} {str(value)[:40]!r}")
    if not text or len(text) > MAX_ID_CHARS or not text.isprintable():
        raise BadPacketError(f"{name} of 1 to {MAX_ID_CHARS} printable characters, got {text[:MAX_ID_CHARS]!r}"
                             + (f"... ({len(text)} characters)" if len(text) > MAX_ID_CHARS else ""))
    return text


def is_gzip(blob: object) -> bool:
    return bytes(blob[:2]) == GZIP_MAGIC


def schema_layouts(layouts: Sequence[PacketLayout], schema_name: str) -> list[PacketLayout]:
    """The container layouts whose ``schema_names`` match a writer schema's full name, in declaration order."""
    return [layout for layout in layouts if layout.framing == "container" and layout.matches_schema(schema_name)]


def container_layout(candidates: Sequence[PacketLayout], schema_name: str, packet: dict) -> PacketLayout:
    """The layout of a container file's packet: the first of ``candidates`` (the :func:`schema_layouts` of
    its writer schema's full name) whose ``compression`` is that of the science cutout; a BadPacketError
    when none is."""
    tried = []
    missing = None
    for layout in candidates:
        field = layout.cutouts["science"]
        try:
            science = _stamp_bytes(packet, field, layout.cutout_forms)
        except BadPacketError as exc:
            tried.append(f"{layout.name} ({exc.reason})")
            continue
        if science is None:
            missing = missing or field
            tried.append(f"{layout.name} (no {field})")
            continue
        if is_gzip(science) == (layout.compression == "gzip"):
            return layout
        tried.append(f"{layout.name} ({'plain' if layout.compression == 'none' else 'gzip-compressed'} FITS cutouts)")
    if missing is not None and all("(no " in entry for entry in tried):
        raise BadPacketError(f"no {missing} (expected FITS bytes)")
    raise BadPacketError(f"a packet of a declared layout; writer schema {schema_name or '(unnamed)'!r} matched "
                         f"{', '.join(tried) or 'no layout'}")


def _pad_widths(size: int, target: int, position: object) -> tuple[int, int]:
    """Pixels before and after an axis of ``size`` to reach ``target``: on the side the CCD edge cut
    (``position``, the source's CCD pixel on this axis, below half the window: the low side), evenly without it."""
    missing = target - size
    if isinstance(position, (int, float)) and not isinstance(position, bool) and np.isfinite(position):
        return (missing, 0) if position < target / 2 else (0, missing)
    return missing // 2, missing - missing // 2


def edge_rule(images: dict[str, np.ndarray], survey: PacketLayout, packet: dict) -> tuple[dict, bool]:
    """Images of one shape made scorable by the layout's edge rule: returned as they are when square and at
    least the crop; edge cutouts (each axis at least half the layout's cutout, the half that holds the
    source, and at most the cutout) padded with NaN to the layout's stamp size. Returns (images, padded)."""
    height, width = next(iter(images.values())).shape
    if height == width and height >= STAMP_SIZE:
        return images, False
    half = survey.stamp_size // 2 + 1
    if not survey.pads_edges or min(height, width) < half:
        raise BadPacketError(
            f"square cutouts of at least {STAMP_SIZE}x{STAMP_SIZE} pixels, or {survey.label} edge cutouts "
            f"of at least {half} pixels a side (padded to {survey.stamp_size}x{survey.stamp_size}), got {height}x{width}")
    position = {axis: field_value(packet, path) for axis, path in survey.position.items()}
    pads = (_pad_widths(height, survey.stamp_size, position.get("y")),
            _pad_widths(width, survey.stamp_size, position.get("x")))
    return {channel: np.pad(image, pads, constant_values=np.nan) for channel, image in images.items()}, True


def packet_triplet(packet: dict, path: Path, where: str, survey: PacketLayout,
                   crop: int | None = None) -> tuple[np.ndarray, bool]:
    """(3, H, W) float32 triplet (template, science, difference) of one packet read under its layout
    ``survey`` and whether the edge rule padded it; BadPacketError if unusable. With ``crop``, the
    triplet is the centre ``crop`` x ``crop`` pixels (:func:`rbda.ingest.preprocess.centre_crop`) of
    cutouts at least that large, once the checks have seen them whole."""
    cutouts = survey.cutouts
    blobs = {channel: _stamp_bytes(packet, cutouts[channel], survey.cutout_forms) for channel in CHANNELS}
    for channel in ("science", "difference"):
        if blobs[channel] is None:
            raise BadPacketError(f"no {cutouts[channel]} (expected FITS bytes)")
    derive_template = blobs["template"] is None
    if derive_template and survey.missing_template != "science_minus_difference":
        raise BadPacketError(f"no {cutouts['template']} in a {survey.label} packet; only layouts declaring "
                             "missing_template: science_minus_difference (ATLAS's) may lack the template")
    images = {}
    limit = survey.max_cutout_bytes()
    for channel in CHANNELS:
        if channel == "template" and derive_template:
            continue
        try:
            images[channel] = decode_stamp(blobs[channel], path, where, max_bytes=limit)
        except InputFileError as exc:
            bound = f" ({survey.label} cutouts are at most {survey.stamp_size}x{survey.stamp_size} pixels, " \
                    f"{limit} FITS bytes)" if str(limit) in exc.expected else ""
            raise BadPacketError(f"{cutouts[channel]}: {exc.expected}{bound}") from None
    shapes = {channel: image.shape for channel, image in images.items()}
    for channel, (height, width) in shapes.items():
        if max(height, width) > survey.stamp_size:
            raise BadPacketError(f"cutouts of at most {survey.stamp_size}x{survey.stamp_size} pixels (the largest "
                                 f"{survey.label} sends), got {height}x{width} in {cutouts[channel]}")
    if len(set(shapes.values())) != 1:
        raise BadPacketError(f"cutouts of one shape, got {shapes}")
    images, padded = edge_rule(images, survey, packet)
    if derive_template:
        images["template"] = images["science"] - images["difference"]
    for channel in CHANNELS:
        if not any_valid(images[channel]):
            name = cutouts[channel] + (" (science - difference)" if channel == "template" and derive_template else "")
            raise BadPacketError(f"{name} has no valid pixel (all NaN, infinite or sentinel)")
    shape = images["science"].shape
    cropped = crop is not None and min(shape) >= crop
    triplet = np.empty((len(CHANNELS), *((crop, crop) if cropped else shape)), np.float32)
    for row, channel in zip(triplet, CHANNELS):  # (filled in place: np.stack's own work is 2x this)
        row[...] = centre_crop(images[channel], crop) if cropped else images[channel]
    return triplet, padded


def wanted_fields(layouts: Sequence[PacketLayout]) -> dict:
    """The field tree the layouts read: name -> subtree (a dict) or None (the whole field)."""
    tree: dict = {}
    for layout in layouts:
        for path in layout.field_paths():
            node = tree
            *parents, leaf = path.split(".")
            for name in parents:
                if name in node and node[name] is None:
                    break  # an ancestor is read whole
                node = node.setdefault(name, {})
            else:
                node[leaf] = None
    return tree


#: Fields decoded from each packet by the shipped layouts; the rest (``prv_candidates``, most of ``candidate``)
#: is skipped.
WANTED = wanted_fields(load_layouts())


def projected_schema(writer_schema: dict, wanted: dict | None = None) -> dict | None:
    """A reader schema of only the ``wanted`` fields (default :data:`WANTED`; fastavro then skips the others),
    or None."""
    wanted = WANTED if wanted is None else wanted
    if not isinstance(writer_schema, dict) or writer_schema.get("type") != "record":
        return None

    def project(field_type, tree):
        if tree is None:
            return field_type
        if isinstance(field_type, list):
            return [project(branch, tree) for branch in field_type]
        if isinstance(field_type, dict) and field_type.get("type") == "record":
            return {**field_type, "fields": [{**f, "type": project(f["type"], tree[f["name"]])}
                                             for f in field_type.get("fields", []) if f.get("name") in tree]}
        return field_type

    return project(writer_schema, wanted)


# ---------------------------------------------------------------- Avro object container files
#
# fastavro.reader parses a file's writer schema from its header every time: about 0.23 ms for
# ZTF's schema, 0.46 ms with the projection, as much as decoding the packet itself, and a ZTF
# night is one packet per file. So the container's framing (header, blocks, sync markers; Avro
# 1.11 spec, "Object Container Files") is read here, and the parsed writer schema and its
# projection are kept per distinct schema text, with the compiled decoder of the wanted fields
# (rbda.alerts.avro_decode; fastavro's ``schemaless_reader`` for a schema it does not compile). Every block is inflated here with a bound (MAX_BLOCK_BYTES): null, deflate,
# snappy, bzip2 and xz; other codecs (fastavro's zstandard and lz4, whose packages rbda does not
# install) are refused by name, as fastavro would inflate their blocks without a bound.

#: The container header (Avro spec): magic, metadata map, 16-byte sync marker.
_HEADER_SCHEMA = {"type": "record", "name": "org.apache.avro.file.Header", "fields": [
    {"name": "magic", "type": {"type": "fixed", "name": "Magic", "size": 4}},
    {"name": "meta", "type": {"type": "map", "values": "bytes"}},
    {"name": "sync", "type": {"type": "fixed", "name": "Sync", "size": 16}}]}
_MAGIC = b"Obj\x01"
_FRAMED_CODECS = ("null", "deflate", "snappy", "bzip2", "xz")
#: Largest decompressed block accepted, bytes (a compression bomb stops here; ZTF's are ~45 kB a packet,
#: one packet a block; fastavro's writers cut blocks at 16 kB by default).
MAX_BLOCK_BYTES = 64 * 2**20


@functools.cache
def _header_schema() -> dict:
    """:data:`_HEADER_SCHEMA` parsed by fastavro, once (an unparsed one is parsed again at every read)."""
    import fastavro

    return fastavro.parse_schema(_HEADER_SCHEMA)


class CorruptAvro(ValueError):
    """A container file that breaks the Avro framing (the reader names the file)."""


def _read_long(fh: BinaryIO) -> int | None:
    """A zig-zag varint long; None at the end of the file (before its first byte)."""
    result = shift = 0
    for _ in range(10):
        byte = fh.read(1)
        if not byte:
            if shift == 0:
                return None
            raise CorruptAvro("truncated (ends inside a block header)")
        result |= (byte[0] & 0x7F) << shift
        if not byte[0] & 0x80:
            return (result >> 1) ^ -(result & 1)
        shift += 7
    raise CorruptAvro("a block header number longer than 10 bytes")


def _snappy_length(data: bytes) -> int:
    """The uncompressed length a raw snappy stream declares (its leading varint)."""
    result = shift = 0
    for byte in data[:5]:
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result
        shift += 7
    raise CorruptAvro("a snappy block without a valid length")


def _decompress(data: bytes | memoryview, codec: str) -> bytes:
    """A container block's records' bytes, from its bytes (or a view of them) as ``codec`` stored them."""
    if codec == "null":
        return bytes(data)  # (bytes as they are; a view copied out)
    if codec == "deflate":  # raw deflate, no header
        return inflate(data, -zlib.MAX_WBITS, MAX_BLOCK_BYTES, CorruptAvro)
    if codec in ("bzip2", "xz"):
        import bz2
        import lzma

        inflater = bz2.BZ2Decompressor() if codec == "bzip2" else lzma.LZMADecompressor()
        try:
            raw = inflater.decompress(data, MAX_BLOCK_BYTES)
        except (OSError, EOFError, lzma.LZMAError, ValueError) as exc:
            raise CorruptAvro(f"a {codec} block that decompresses ({exc})") from None
        if not inflater.eof:
            raise CorruptAvro(f"a {codec} block that declares more than {MAX_BLOCK_BYTES} bytes"
                              if not inflater.needs_input else f"a complete {codec} block (truncated)")
        return raw
    import cramjam  # snappy: the raw stream, then the CRC-32 (big-endian) of the uncompressed bytes

    if len(data) < 4:
        raise CorruptAvro("a snappy block shorter than its checksum")
    if _snappy_length(data) > MAX_BLOCK_BYTES:
        raise CorruptAvro(f"a snappy block that declares more than {MAX_BLOCK_BYTES} bytes")
    raw = bytes(cramjam.snappy.decompress_raw(data[:-4]))
    if zlib_ng.crc32(raw) != int.from_bytes(data[-4:], "big"):  # zlib-ng's: 13x the standard library's here
        raise CorruptAvro("a snappy block whose checksum does not match")
    return raw


_PRIMITIVE_MIN_BYTES = {"null": 0, "boolean": 1, "int": 1, "long": 1, "float": 4, "double": 8, "bytes": 1,
                        "string": 1}


def check_schema_bounded(schema: object) -> None:
    """A :class:`CorruptAvro` for a writer schema under which a few bytes could make the decoder loop
    or recurse without bound: an array whose items can take no bytes (``null``, a record of such
    fields: a count of 2**62 then costs one varint), or a recursive named type (nesting as deep as
    the packet has bytes). Every other declared length (arrays of items of at least one byte, maps,
    bytes, strings) is bounded by the bytes the block holds (the decoder stops at its end)."""
    named: dict[str, object] = {}
    sizes: dict[str, int] = {}  # named type -> its smallest encoding (each computed once)

    def full_name(node: dict, namespace: str) -> str:
        name = node.get("name", "")
        return name if "." in name or not namespace else f"{namespace}.{name}"

    def min_bytes(node: object, namespace: str, stack: tuple) -> int:
        if isinstance(node, list):  # a union: the branch index, then the smallest branch
            return 1 + min((min_bytes(b, namespace, stack) for b in node), default=0)
        if isinstance(node, str):
            if node in _PRIMITIVE_MIN_BYTES:
                return _PRIMITIVE_MIN_BYTES[node]
            name = node if "." in node or not namespace or node in named else f"{namespace}.{node}"
            if name in stack or node in stack:
                raise CorruptAvro(f"a writer schema without recursive types ({node!r} contains itself)")
            key = name if name in named else node
            if key not in named:
                raise CorruptAvro(f"a writer schema whose type names are defined ({node!r} is not)")
            if key not in sizes:
                sizes[key] = min_bytes(named[key], namespace, stack)
            return sizes[key]
        if not isinstance(node, dict):
            raise CorruptAvro(f"a writer schema of Avro types, got {node!r:.60}")
        kind = node.get("type")
        if kind in ("record", "error", "enum", "fixed"):
            name = full_name(node, node.get("namespace", namespace))
            if name in stack:
                raise CorruptAvro(f"a writer schema without recursive types ({name!r} contains itself)")
            named.setdefault(name, node)
            if kind == "enum":
                return 1
            if kind == "fixed":
                return int(node.get("size", 0))
            inner = name.rpartition(".")[0]
            return sum(min_bytes(f.get("type"), inner, stack + (name,)) for f in node.get("fields", []))
        if kind in ("array", "map"):
            items = min_bytes(node.get("items" if kind == "array" else "values"), namespace, stack)
            if kind == "array" and items == 0:
                raise CorruptAvro("a writer schema whose arrays hold items of at least one byte (an array of "
                                  f"{json.dumps(node.get('items'))[:60]} can declare any number of items in no bytes)")
            return 1
        return min_bytes(kind, namespace, stack)

    if min_bytes(schema, "", ()) == 0:
        raise CorruptAvro("a writer schema whose records take at least one byte (a block could declare any "
                          "number of empty records)")


@dataclass(frozen=True)
class WriterSchema:
    """A writer schema parsed once: its full ``name``, and its records decoded for the wanted fields by
    the compiled :class:`~rbda.alerts.avro_decode.ProjectedDecoder` (``decoder``), or, for a schema it does
    not compile, by fastavro with the :func:`projected_schema` reader schema (``reader``; None: every field)."""

    parsed: dict
    reader: dict | None
    name: str
    decoder: ProjectedDecoder | None

    def decode(self, raw: bytes, pos: int = 0) -> tuple[object, int]:
        """(record, position after it) of the record at ``pos`` of ``raw``; :class:`CorruptAvro` (or
        fastavro's own exception, on its path) when the bytes are not one."""
        if self.decoder is not None:
            try:
                return self.decoder.decode(raw, pos)
            except CorruptRecord as exc:
                raise CorruptAvro(str(exc)) from None
        import fastavro

        stream = io.BytesIO(raw)
        stream.seek(pos)
        record = fastavro.schemaless_reader(stream, self.parsed, self.reader)
        return record, stream.tell()


class AvroSchemas:
    """:class:`WriterSchema` entries (for ``wanted``, default :data:`WANTED`), one per distinct schema text
    (or Confluent schema file)."""

    def __init__(self, wanted: dict | None = None):
        self._parsed: dict[object, WriterSchema] = {}
        self.wanted = WANTED if wanted is None else wanted
        self._last: tuple[bytes | None, WriterSchema | None] = (None, None)  # (schema text, its entry)

    def get(self, schema_text: bytes) -> WriterSchema:
        last_text, entry = self._last
        if schema_text == last_text:  # a folder of one broker's files: compared, not hashed (1/10 of the time)
            return entry
        entry = self._parsed.get(schema_text)
        if entry is None:
            entry = self._parsed[schema_text] = self._parse(json.loads(schema_text))
        self._last = (schema_text, entry)
        return entry

    def get_file(self, path: Path) -> WriterSchema:
        """The entry of a schema file (its named types in sibling files, as fastavro.schema.load_schema reads them)."""
        entry = self._parsed.get(path)
        if entry is None:
            from fastavro.schema import load_schema

            entry = self._parsed[path] = self._parse(load_schema(str(path), _write_hint=False))
        return entry

    def _parse(self, loaded: object) -> WriterSchema:
        from fastavro import parse_schema

        check_schema_bounded(loaded)
        projected = projected_schema(loaded, self.wanted)  # before parsing: a new dict, the loaded one untouched
        writer = parse_schema(loaded)
        try:  # decode only the fields used; a schema the projection cannot express is read whole
            reader = None if projected is None else parse_schema(projected)
        except Exception:  # noqa: BLE001 - fastavro raises many types for schemas it refuses
            reader = None
        try:
            decoder = ProjectedDecoder(writer, None if reader is None else self.wanted)
        except Unsupported:
            decoder = None
        name = loaded.get("name", "") if isinstance(loaded, dict) else ""
        namespace = loaded.get("namespace", "") if isinstance(loaded, dict) else ""
        full = name if "." in name or not namespace else f"{namespace}.{name}"
        return WriterSchema(writer, reader, full, decoder)


#: The first byte of the Confluent wire format (then a 4-byte big-endian schema id, then one schemaless record).
CONFLUENT_MAGIC = 0
#: Schema ids taken as Confluent framing (registries number schemas from 1; Rubin's is 900).
MAX_CONFLUENT_SCHEMA_ID = 2**20


def confluent_schema_id(head: bytes) -> int | None:
    """The schema id of a Confluent-framed packet (Rubin's, e.g. 900), from its first 5 bytes; None otherwise."""
    if len(head) >= 5 and head[0] == CONFLUENT_MAGIC:
        schema_id = int.from_bytes(head[1:5], "big")
        return schema_id if 0 < schema_id < MAX_CONFLUENT_SCHEMA_ID else None
    return None


def _container_start(fh: BinaryIO, schemas: AvroSchemas, header_out: dict | None) -> tuple[str, WriterSchema, bytes]:
    """(codec, writer schema, sync marker) of the Avro object container file whose header starts ``fh``;
    ``header_out`` (when given) receives the writer schema's full name as ``schema_name``."""
    import fastavro

    header = fastavro.schemaless_reader(fh, _header_schema())
    if header["magic"] != _MAGIC:
        raise CorruptAvro("an Avro object container file (magic 'Obj\\x01')")
    codec = header["meta"].get("avro.codec", b"null").decode("ascii", "replace")
    schema_text = header["meta"].get("avro.schema")
    if schema_text is None:
        raise CorruptAvro("a header with its schema (avro.schema)")
    schema = schemas.get(schema_text)
    if header_out is not None:
        header_out["schema_name"] = schema.name
    if codec not in _FRAMED_CODECS:
        raise CorruptAvro(f"an Avro codec rbda reads ({', '.join(_FRAMED_CODECS)}), got {codec!r}")
    return codec, schema, header["sync"]


def _block_records(data: bytes | memoryview, codec: str, count: int, schema: WriterSchema) -> Iterator[dict]:
    """The ``count`` records of one container block (its bytes, after the sync marker was checked)."""
    raw = _decompress(data, codec)
    if count > len(raw):  # every record takes at least one byte (check_schema_bounded)
        raise CorruptAvro(f"a block whose record count fits its bytes (it declares {count} records in "
                          f"{len(raw)} bytes)")
    pos = 0
    for _ in range(count):
        try:
            record, pos = schema.decode(raw, pos)
        except CorruptAvro as exc:
            raise CorruptAvro(f"an Avro alert file whose records are of its writer schema ({exc})") from None
        yield record


def read_container(fh: BinaryIO, schemas: AvroSchemas, header_out: dict | None = None) -> Iterator[dict]:
    """The records of an Avro object container file read from a stream, decoded with the :data:`WANTED`
    projection; ``header_out`` (when given) receives the writer schema's full name as ``schema_name``."""
    codec, schema, sync = _container_start(fh, schemas, header_out)
    while (count := _read_long(fh)) is not None:
        size = _read_long(fh)
        if size is None or count < 0 or size < 0:
            raise CorruptAvro("truncated or invalid block header")
        data = fh.read(size)
        if len(data) != size:
            raise CorruptAvro(f"truncated (a block of {size} bytes has {len(data)})")
        if fh.read(16) != sync:  # before any record of the block is trusted
            raise CorruptAvro("a block not followed by the file's sync marker")
        yield from _block_records(data, codec, count, schema)


def _block_long(data: bytes, pos: int) -> tuple[int | None, int]:
    """:func:`_read_long` on bytes in memory, with its errors: (value, position after it); (None, pos) at
    the end of the bytes."""
    if pos >= len(data):
        return None, pos
    try:
        return read_long(data, pos)
    except CorruptRecord:  # it ran out of bytes, or read 10 without an end
        raise CorruptAvro("truncated (ends inside a block header)" if len(data) - pos < 10
                          else "a block header number longer than 10 bytes") from None


def read_container_bytes(data: bytes, schemas: AvroSchemas, header_out: dict | None = None) -> Iterator[dict]:
    """:func:`read_container` of a whole file's bytes: the same records and errors, its blocks read in
    place rather than copied out of a stream (a broker's one packet per file: about 10 us a file less)."""
    stream = io.BytesIO(data)
    codec, schema, sync = _container_start(stream, schemas, header_out)
    pos = stream.tell()
    view = memoryview(data)
    while True:
        count, pos = _block_long(data, pos)
        if count is None:
            return
        size, pos = _block_long(data, pos)
        if size is None or count < 0 or size < 0:
            raise CorruptAvro("truncated or invalid block header")
        block = view[pos : pos + size]
        if len(block) != size:
            raise CorruptAvro(f"truncated (a block of {size} bytes has {len(block)})")
        pos += size
        if data[pos : pos + 16] != sync:  # before any record of the block is trusted
            raise CorruptAvro("a block not followed by the file's sync marker")
        pos += 16
        yield from _block_records(block, codec, count, schema)


#: Files up to this size are read in one call and parsed from memory (a broker's one packet per file is
#: 40-100 kB); larger ones (container files of many packets) are read through a buffer, a block at a time.
WHOLE_FILE_BYTES = 2**20


def packet_file(path: Path) -> bytes | BinaryIO:
    """A packet file to parse, opened once: all its bytes when it is a regular file of at most
    :data:`WHOLE_FILE_BYTES` (read to its end with os calls: its size, then the call that finds the end),
    else (larger, not a regular file, or grown past that while read) a buffered reader over it from its
    start, which the caller closes."""
    fd = os.open(path, os.O_RDONLY)
    reader = None
    try:
        info = os.fstat(fd)
        if stat.S_ISREG(info.st_mode) and info.st_size <= WHOLE_FILE_BYTES:
            chunks, total = [], 0
            while chunk := os.read(fd, (info.st_size if not chunks else WHOLE_FILE_BYTES) + 1 - total):
                chunks.append(chunk)
                total += len(chunk)
                if total > WHOLE_FILE_BYTES:
                    os.lseek(fd, 0, os.SEEK_SET)
                    break
            else:
                return b"".join(chunks)
        reader = open(fd, "rb")  # (closing it closes the descriptor)
        return reader
    finally:
        if reader is None:
            os.close(fd)


class AlertReader:
    """Reads Avro alert packets from files and folders; see the module docstring.

    ``read`` counts alert records decoded (scored or bad); a file that cannot be read at
    all is a bad entry, not an alert (``bad_files`` counts those)."""

    format = "avro"

    def __init__(self, inputs: Sequence[str | Path], skip_bad: bool = False, batch_size: int = 1024,
                 layouts: Sequence[PacketLayout] | None = None, crop: int | None = None):
        paths = [Path(p) for p in inputs]
        #: Triplets are held and batched as their centre ``crop`` x ``crop`` pixels (what preprocessing keeps
        #: of them: :func:`rbda.ingest.preprocess.centre_crop`) once the packet's checks have seen them whole;
        #: None keeps them whole.
        self.crop = crop
        if not paths:
            raise InputFileError(".", "at least one Avro alert file or folder")
        #: Files of the input folders that are not packets (not ``*.avro``): counted, a few named.
        self.ignored: IgnoredFiles
        self.files, self.ignored = find_files(paths, name_matches(PATTERNS))
        if not self.files:
            raise InputFileError(paths[0], "Avro alert packet files (*.avro)")
        self.skip_bad = skip_bad
        self.batch_size = batch_size
        self.bad: list[BadPacket] = []
        self.layouts = list(load_layouts() if layouts is None else layouts)
        if not self.layouts:
            raise InputFileError(paths[0], "at least one declared packet layout to read alert packets with")
        #: The broker score columns of the output: every layout's, in declaration order.
        self.score_columns = tuple(dict.fromkeys(c for layout in self.layouts for c in layout.scores))
        self.schemas = AvroSchemas(wanted_fields(self.layouts))
        #: :func:`schema_layouts` per writer schema name.
        self._schema_layouts: dict[str, list[PacketLayout]] = {}
        self._confluent: dict[int, PacketLayout | str] = {}
        self.read = 0  # alert records read (scored and bad)
        self.bad_files = 0  # files (or their tails) that could not be read
        self.files_done = 0
        self.total: int | None = None

    def _bad(self, path: Path, candid: str, reason: str) -> None:
        if not self.skip_bad:
            raise InputFileError(path, reason, f"candid {candid}" if candid else None)
        self.bad.append(BadPacket(str(path), candid, reason))

    def _packets(self, path: Path, header: dict) -> Iterator[tuple[int, dict]]:
        """(index, packet) of one Avro file; an unreadable file or packet becomes a bad entry. ``header``
        receives ``schema_name`` (a container file's writer schema) or ``layout`` (a Confluent packet's)."""
        index = -1
        try:
            data = packet_file(path)
            if not isinstance(data, bytes):  # large, not a regular file, or grown while read: through a buffer
                with data as fh:
                    head = fh.read(5)
                    if confluent_schema_id(head) is None:
                        fh.seek(0)
                        for index, packet in enumerate(read_container(fh, self.schemas, header)):
                            yield index, packet
                        return
                    data = head + fh.read()
            schema_id = confluent_schema_id(data)
            if schema_id is None:
                for index, packet in enumerate(read_container_bytes(data, self.schemas, header)):
                    yield index, packet
            else:
                header["layout"], packet = self._confluent_packet(data, schema_id)
                index = 0
                yield index, packet
        except OSError as exc:
            self.bad_files += 1
            self._bad(path, "", f"a readable Avro file ({exc})")
        except CorruptAvro as exc:
            self.bad_files += 1
            after = f" (after {index + 1} packets)" if index >= 0 else ""
            self._bad(path, "", f"{exc}{after}")
        except Exception as exc:  # noqa: BLE001 - fastavro raises many types for corrupt or truncated files
            self.bad_files += 1
            after = f" after {index + 1} packets" if index >= 0 else ""
            self._bad(path, "", f"an Avro alert file, unreadable{after} "
                                f"({exc.__class__.__name__}: {exc}); corrupt or truncated?")

    def confluent_layout(self, schema_id: int) -> PacketLayout:
        """The confluent layout whose schema source has a file for ``schema_id``; CorruptAvro naming the id
        and the ids the layouts know otherwise."""
        found = self._confluent.get(schema_id)
        if isinstance(found, PacketLayout):
            return found
        if found is None:
            known = []
            for layout in (lay for lay in self.layouts if lay.framing == "confluent"):
                try:
                    if layout.schema.path(schema_id).is_file():
                        found = layout
                        break
                    ids = layout.schema.known_ids()
                    known.append(f"{layout.name}: {', '.join(map(str, ids)) or 'none'} "
                                 f"({layout.schema.describe()})")
                except LookupError as exc:
                    known.append(f"{layout.name}: needs {exc}")
            self._confluent[schema_id] = found or (
                f"a Confluent-framed packet of a schema id a declared layout knows; schema id {schema_id} is in "
                f"none ({'; '.join(known) or 'no confluent layout is declared'})")
            found = self._confluent[schema_id]
        if isinstance(found, str):
            raise CorruptAvro(found)
        return found

    def _confluent_packet(self, data: bytes, schema_id: int) -> tuple[PacketLayout, dict]:
        """The one schemaless record of a Confluent-framed packet (``data``: the file, its 5-byte header first)."""
        layout = self.confluent_layout(schema_id)
        schema = self.schemas.get_file(layout.schema.path(schema_id))
        body = data[5:]  # (the record's own bytes: the positions errors name are the record's)
        try:
            packet, end = schema.decode(body)
        except (EOFError, CorruptAvro) as exc:
            raise CorruptAvro(f"a complete Confluent-framed record (schema id {schema_id}, {layout.label}); "
                              f"truncated or corrupt at {len(data)} bytes" + (f" ({exc})" if str(exc) else "")) \
                from None
        if end != len(body):
            raise CorruptAvro(f"one Confluent-framed record per file (schema id {schema_id}); "
                              f"{len(body) - end} bytes follow the record")
        return layout, packet

    def _layout(self, header: dict, packet: dict) -> PacketLayout:
        if "layout" in header:
            return header["layout"]
        name = header.get("schema_name", "")
        candidates = self._schema_layouts.get(name)
        if candidates is None:
            candidates = self._schema_layouts[name] = schema_layouts(self.layouts, name)
        return container_layout(candidates, name, packet)

    def _row(self, packet: object, index: int, path: Path, header: dict) -> tuple:
        """One packet's (triplet, objectId, candid, layout, scores, padded, file); BadPacketError (with the
        candid as ``candid``, when known) if it cannot be scored."""
        if not isinstance(packet, dict):
            raise BadPacketError(f"an alert record, got {type(packet).__name__} (packet {index})")
        layout = self._layout(header, packet)
        id_path, raw_id = first_value(packet, layout.id)
        if raw_id is None:
            raise BadPacketError(f"an alert id ({' or '.join(layout.id)}, {layout.label} layout)")
        candid = packet_id(raw_id, id_path)
        try:
            object_text = ""
            if layout.object_id:
                object_path, object_id = first_value(packet, layout.object_id)
                object_text = "" if object_id is None else packet_id(object_id, object_path)
            scores = tuple(_score(packet, layout.scores[c]) if c in layout.scores else float("nan")
                           for c in self.score_columns)
            triplet, padded = packet_triplet(packet, path, f"candid {candid}", layout, self.crop)
            return triplet, object_text, candid, layout.name, scores, padded, str(path)
        except BadPacketError as exc:
            exc.candid = candid
            raise

    def batches(self) -> Iterator[AlertBatch]:
        """Batches of one shape (at most ``batch_size`` alerts); all groups are emitted whenever the
        triplets held reach :data:`MAX_HELD_BYTES`, so memory is bounded whatever the shapes."""
        groups: dict[tuple, list] = defaultdict(list)
        held = 0
        for path in self.files:
            header: dict = {}
            for index, packet in self._packets(path, header):
                self.read += 1
                try:
                    row = self._row(packet, index, path, header)
                except BadPacketError as exc:
                    self._bad(path, exc.candid, exc.reason)
                    continue
                group = groups[row[0].shape]
                group.append(row)
                held += row[0].nbytes
                if len(group) >= self.batch_size:
                    held -= sum(r[0].nbytes for r in group)
                    yield self._emit(groups.pop(row[0].shape))
                elif held >= MAX_HELD_BYTES:
                    for shape in list(groups):
                        yield self._emit(groups.pop(shape))
                    held = 0
            self.files_done += 1
        for shape in list(groups):
            yield self._emit(groups.pop(shape))

    def _emit(self, rows: list) -> AlertBatch:
        n = len(rows)
        candids = np.array([r[2] for r in rows], dtype=object)
        raw = RawBatch(images=np.stack([r[0] for r in rows]), ids=candids.astype(str),
                       classes=np.full(n, UNLABELLED), labels=np.full(n, -1, np.int8), source=rows[0][6])
        scores = np.array([r[4] for r in rows], dtype=np.float64).reshape(n, len(self.score_columns))
        columns = {"objectId": np.array([r[1] for r in rows], dtype=object), "candid": candids,
                   "layout": np.array([r[3] for r in rows], dtype=object),
                   **{name: scores[:, i] for i, name in enumerate(self.score_columns)},
                   "padded": np.array([r[5] for r in rows], dtype=bool),
                   "file": np.array([r[6] for r in rows], dtype=object)}
        return AlertBatch(raw, columns)
