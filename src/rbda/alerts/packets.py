"""Alert packets (Avro): ZTF and ATLAS alerts as triplets to score.

A file holds one or more packets (an Avro object container file, any codec
fastavro reads; ZTF's are snappy-compressed, which needs ``cramjam``); a folder
is searched for ``*.avro`` files. Per packet:

* ids: ``objectId`` and ``candid`` (``candidate.candid``, or a top-level ``candid``);
* ZTF's own real/bogus scores ``candidate.rb`` and ``candidate.drb`` (NaN when null);
* cutouts ``cutoutScience``, ``cutoutTemplate``, ``cutoutDifference``, each a
  record ``{fileName, stampData}`` (or the bytes themselves) holding FITS bytes,
  gzip-compressed (ZTF) or plain (ATLAS), decoded by :func:`rbda.ingest.fits.decode_stamp`.

ATLAS ships no template: a packet whose ``cutoutTemplate`` is null and whose
science cutout is plain (not gzip-compressed) FITS gets template = science -
difference, as the ATLAS survey reader does for training. A ZTF-form packet
(gzip-compressed cutouts) without its template is a bad packet.

Bad packets -- a packet without a cutout, a cutout that is not a FITS image,
stamps of different shapes, non-square or smaller than the model's crop, a
stamp without any valid pixel (all NaN or sentinel) -- and unreadable or
truncated Avro files are an :class:`~rbda.errors.InputFileError` naming the
file and the packet's candid; with ``skip_bad=True`` they are collected in
:attr:`AlertReader.bad` (file, candid, reason) instead and never silently dropped.
"""

from __future__ import annotations

import io
import json
import zlib
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator, Sequence

import numpy as np

from rbda.errors import InputFileError
from rbda.ingest.fits import GZIP_MAGIC, decode_stamp, inflate
from rbda.ingest.preprocess import STAMP_SIZE, valid_mask
from rbda.ingest.readers.base import IgnoredFiles, RawBatch, iter_files
from rbda.study import CHANNELS

CUTOUTS = {"template": "cutoutTemplate", "science": "cutoutScience", "difference": "cutoutDifference"}
#: Per-alert columns an :class:`AlertBatch` carries, in output order.
ALERT_COLUMNS = ("objectId", "candid", "rb", "drb", "file")
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

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _stamp_bytes(packet: dict, key: str) -> object:
    cutout = packet.get(key)
    if isinstance(cutout, dict):
        return cutout.get("stampData")
    return cutout


def _score(candidate: dict, key: str) -> float:
    value = candidate.get(key)
    return float("nan") if value is None else float(value)


def packet_triplet(packet: dict, path: Path, where: str, min_size: int) -> np.ndarray:
    """(3, H, W) float32 triplet (template, science, difference) of one packet; BadPacketError if unusable."""
    blobs = {channel: _stamp_bytes(packet, key) for channel, key in CUTOUTS.items()}
    for channel in ("science", "difference"):
        if blobs[channel] is None:
            raise BadPacketError(f"no {CUTOUTS[channel]} (expected FITS bytes)")
    derive_template = blobs["template"] is None
    if derive_template and bytes(blobs["science"][:2]) == GZIP_MAGIC:
        raise BadPacketError("no cutoutTemplate in a ZTF-form packet (gzip-compressed cutouts); only "
                             "ATLAS packets (plain FITS cutouts) may lack the template")
    images = {}
    for channel in CHANNELS:
        if channel == "template" and derive_template:
            continue
        try:
            images[channel] = decode_stamp(blobs[channel], path, where)
        except InputFileError as exc:
            raise BadPacketError(f"{CUTOUTS[channel]}: {exc.expected}") from None
    shapes = {channel: image.shape for channel, image in images.items()}
    if len(set(shapes.values())) != 1:
        raise BadPacketError(f"cutouts of one shape, got {shapes}")
    height, width = shapes["science"]
    if height != width or height < min_size:
        raise BadPacketError(f"square cutouts of at least {min_size}x{min_size} pixels (the training preprocessing "
                             f"drops other stamps), got {height}x{width}")
    if derive_template:
        images["template"] = images["science"] - images["difference"]
    for channel in CHANNELS:
        if not valid_mask(images[channel]).any():
            name = CUTOUTS[channel] + (" (science - difference)" if channel == "template" and derive_template else "")
            raise BadPacketError(f"{name} has no valid pixel (all NaN, infinite or sentinel)")
    return np.stack([images[channel] for channel in CHANNELS])


#: Fields decoded from each packet; the rest (``prv_candidates``, most of ``candidate``) is skipped.
WANTED = {"objectId": None, "candid": None, "candidate": {"candid", "rb", "drb"},
          "cutoutScience": None, "cutoutTemplate": None, "cutoutDifference": None}


def projected_schema(writer_schema: dict) -> dict | None:
    """A reader schema of only the :data:`WANTED` fields (fastavro then skips the others), or None."""
    if not isinstance(writer_schema, dict) or writer_schema.get("type") != "record":
        return None

    def keep_subfields(field_type, names):
        branches = field_type if isinstance(field_type, list) else [field_type]
        out = []
        for branch in branches:
            if isinstance(branch, dict) and branch.get("type") == "record":
                branch = {**branch, "fields": [f for f in branch["fields"] if f["name"] in names]}
            out.append(branch)
        return out if isinstance(field_type, list) else out[0]

    fields = []
    for field in writer_schema.get("fields", []):
        if field.get("name") not in WANTED:
            continue
        sub = WANTED[field["name"]]
        fields.append(field if sub is None else {**field, "type": keep_subfields(field["type"], sub)})
    return {**writer_schema, "fields": fields}


# ---------------------------------------------------------------- Avro object container files
#
# fastavro.reader parses a file's writer schema from its header every time: about 0.23 ms for
# ZTF's schema, 0.46 ms with the projection, as much as decoding the packet itself, and a ZTF
# night is one packet per file. So the container's framing (header, blocks, sync markers; Avro
# 1.11 spec, "Object Container Files") is read here, and the parsed writer schema and its
# projection are kept per distinct schema text; records are decoded by fastavro
# (``schemaless_reader``). Codecs other than null, deflate and snappy go through fastavro.reader.

#: The container header (Avro spec): magic, metadata map, 16-byte sync marker.
_HEADER_SCHEMA = {"type": "record", "name": "org.apache.avro.file.Header", "fields": [
    {"name": "magic", "type": {"type": "fixed", "name": "Magic", "size": 4}},
    {"name": "meta", "type": {"type": "map", "values": "bytes"}},
    {"name": "sync", "type": {"type": "fixed", "name": "Sync", "size": 16}}]}
_MAGIC = b"Obj\x01"
_FRAMED_CODECS = ("null", "deflate", "snappy")
#: Largest decompressed block accepted, bytes (a compression bomb stops here; ZTF's are ~45 kB a packet).
MAX_BLOCK_BYTES = 512 * 2**20


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


def _decompress(data: bytes, codec: str) -> bytes:
    if codec == "null":
        return data
    if codec == "deflate":  # raw deflate, no header
        return inflate(data, -zlib.MAX_WBITS, MAX_BLOCK_BYTES, CorruptAvro)
    import cramjam  # snappy: the raw stream, then the CRC-32 (big-endian) of the uncompressed bytes

    if len(data) < 4:
        raise CorruptAvro("a snappy block shorter than its checksum")
    if _snappy_length(data) > MAX_BLOCK_BYTES:
        raise CorruptAvro(f"a snappy block that declares more than {MAX_BLOCK_BYTES} bytes")
    raw = bytes(cramjam.snappy.decompress_raw(data[:-4]))
    if zlib.crc32(raw) != int.from_bytes(data[-4:], "big"):
        raise CorruptAvro("a snappy block whose checksum does not match")
    return raw


class AvroSchemas:
    """Parsed writer schemas and their :func:`projected_schema`, one entry per distinct schema text."""

    def __init__(self):
        self._parsed: dict[bytes, tuple] = {}

    def get(self, schema_text: bytes) -> tuple:
        entry = self._parsed.get(schema_text)
        if entry is None:
            from fastavro import parse_schema

            loaded = json.loads(schema_text)
            projected = projected_schema(loaded)  # before parsing: a new dict, the loaded one untouched
            writer = parse_schema(loaded)
            try:  # decode only the fields used; a schema the projection cannot express is read whole
                reader = None if projected is None else parse_schema(projected)
            except Exception:  # noqa: BLE001 - fastavro raises many types for schemas it refuses
                reader = None
            entry = (writer, reader)
            self._parsed[schema_text] = entry
        return entry


def read_container(fh: BinaryIO, schemas: AvroSchemas) -> Iterator[dict]:
    """The records of an Avro object container file, decoded with the :data:`WANTED` projection."""
    import fastavro

    header = fastavro.schemaless_reader(fh, _HEADER_SCHEMA)
    if header["magic"] != _MAGIC:
        raise CorruptAvro("an Avro object container file (magic 'Obj\\x01')")
    codec = header["meta"].get("avro.codec", b"null").decode("ascii", "replace")
    schema_text = header["meta"].get("avro.schema")
    if schema_text is None:
        raise CorruptAvro("a header with its schema (avro.schema)")
    writer, reader = schemas.get(schema_text)
    if codec not in _FRAMED_CODECS:
        fh.seek(0)
        yield from fastavro.reader(fh, reader_schema=reader)
        return
    while (count := _read_long(fh)) is not None:
        size = _read_long(fh)
        if size is None or count < 0 or size < 0:
            raise CorruptAvro("truncated or invalid block header")
        data = fh.read(size)
        if len(data) != size:
            raise CorruptAvro(f"truncated (a block of {size} bytes has {len(data)})")
        if fh.read(16) != header["sync"]:  # before any record of the block is trusted
            raise CorruptAvro("a block not followed by the file's sync marker")
        block = io.BytesIO(_decompress(data, codec))
        for _ in range(count):
            yield fastavro.schemaless_reader(block, writer, reader)


class AlertReader:
    """Reads Avro alert packets from files and folders; see the module docstring."""

    format = "avro"

    def __init__(self, inputs: Sequence[str | Path], skip_bad: bool = False, batch_size: int = 1024,
                 min_size: int | None = None):
        paths = [Path(p) for p in inputs]
        if not paths:
            raise InputFileError(".", "at least one Avro alert file or folder")
        self.files = iter_files(paths, PATTERNS)
        self.ignored = IgnoredFiles()
        for folder in (p for p in paths if p.is_dir()):
            for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix != ".avro"):
                self.ignored.add(path)
        if not self.files:
            raise InputFileError(paths[0], "Avro alert packet files (*.avro)")
        self.skip_bad = skip_bad
        self.batch_size = batch_size
        self.min_size = STAMP_SIZE if min_size is None else min_size
        self.bad: list[BadPacket] = []
        self.schemas = AvroSchemas()
        self.read = 0  # packets read (good and bad)
        self.files_done = 0
        self.total: int | None = None

    def _bad(self, path: Path, candid: str, reason: str) -> None:
        if not self.skip_bad:
            raise InputFileError(path, reason, f"candid {candid}" if candid else None)
        self.bad.append(BadPacket(str(path), candid, reason))

    def _packets(self, path: Path) -> Iterator[tuple[int, dict]]:
        """(index, packet) of one Avro file; an unreadable file or packet becomes a bad entry."""
        index = -1
        try:
            with open(path, "rb") as fh:
                for index, packet in enumerate(read_container(fh, self.schemas)):
                    yield index, packet
        except OSError as exc:
            self._bad(path, "", f"a readable Avro file ({exc})")
        except Exception as exc:  # noqa: BLE001 - fastavro raises many types for corrupt or truncated files
            after = f" after {index + 1} packets" if index >= 0 else ""
            self._bad(path, "", f"an Avro alert file, unreadable{after} "
                                f"({exc.__class__.__name__}: {exc}); corrupt or truncated?")

    def batches(self) -> Iterator[AlertBatch]:
        groups: dict[tuple, list] = defaultdict(list)
        for path in self.files:
            for index, packet in self._packets(path):
                self.read += 1
                if not isinstance(packet, dict):
                    self._bad(path, "", f"an alert record, got {type(packet).__name__} (packet {index})")
                    continue
                candidate = packet.get("candidate") if isinstance(packet.get("candidate"), dict) else {}
                candid = candidate.get("candid", packet.get("candid"))
                candid_text = "" if candid is None else str(candid)
                where = f"candid {candid_text}" if candid_text else f"packet {index}"
                try:
                    if candid is None:
                        raise BadPacketError("a candid (candidate.candid or candid)")
                    triplet = packet_triplet(packet, path, where, self.min_size)
                except BadPacketError as exc:
                    self._bad(path, candid_text, exc.reason)
                    continue
                row = (triplet, str(packet.get("objectId", "")), int(candid),
                       _score(candidate, "rb"), _score(candidate, "drb"), str(path))
                group = groups[triplet.shape]
                group.append(row)
                if len(group) >= self.batch_size:
                    yield self._emit(groups.pop(triplet.shape))
            self.files_done += 1
        for shape in list(groups):
            yield self._emit(groups.pop(shape))

    def _emit(self, rows: list) -> AlertBatch:
        n = len(rows)
        candids = np.array([r[2] for r in rows], dtype=np.int64)
        raw = RawBatch(images=np.stack([r[0] for r in rows]), ids=candids.astype(str),
                       classes=np.full(n, UNLABELLED), labels=np.full(n, -1, np.int8), source=rows[0][5])
        columns = {"objectId": np.array([r[1] for r in rows], dtype=object), "candid": candids,
                   "rb": np.array([r[3] for r in rows], dtype=np.float64),
                   "drb": np.array([r[4] for r in rows], dtype=np.float64),
                   "file": np.array([r[5] for r in rows], dtype=object)}
        return AlertBatch(raw, columns)
