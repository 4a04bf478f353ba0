"""Avro records decoded for only the fields a layout reads, the rest skipped by compiled patterns.

An alert packet is mostly what rbda does not read: ZTF's carries its 30-day history
(``prv_candidates``, about 100 fields per earlier detection) and a ``candidate`` record of about 100
fields of which a layout reads five. fastavro decodes a projection (a reader schema of the wanted
fields) by walking every skipped field through its generic schema dispatch, which is most of the
time a packet takes to decode. Avro has no field offsets, so a skipped field must still be walked,
but a run of fields without a length prefix (numbers, booleans, fixed, enums, unions of them, records
of them) is one regular expression over the bytes, run by ``re``'s C matcher: a varint is
``[\\x80-\\xff]{0,9}[\\x00-\\x7f]``, a float four bytes, a ``["null", "float"]`` union ``\\x00|\\x02....``.
:class:`ProjectedDecoder` compiles a writer schema and a wanted field tree (name -> subtree, or None
for the whole field; :func:`rbda.alerts.packets.wanted_fields`) once into:

* skip plans: patterns for such runs, with a varint length read between them for each string or
  bytes, a branch for each union holding one, a loop for each array or map (blocks of a count, or of
  a negative count and a byte size, as the Avro spec allows);
* readers for the wanted fields, giving what ``fastavro.schemaless_reader`` gives with the projected
  reader schema (records as dicts of the wanted fields, strings, bytes, numbers, lists, dicts).

A schema the decoder cannot compile (a wanted field of a logical type, which fastavro would convert,
or a type it does not know) raises :class:`Unsupported` and the caller decodes with fastavro instead;
``tests/test_avro_decode.py`` checks the two agree on the real ZTF, Rubin and DECam packets and on
generated records of every Avro type, and that every truncated or corrupted record is a
:class:`CorruptRecord`, never a hang or an over-long read. Bounds: every length and count is checked
against the bytes left, and a writer schema is first checked by
:func:`rbda.alerts.packets.check_schema_bounded` (no array of items that take no bytes, no
recursion), so decoding ends within the record's bytes.
"""

from __future__ import annotations

import re
import struct
from typing import Callable

_PRIMITIVES = ("null", "boolean", "int", "long", "float", "double", "bytes", "string")
_COMPLEX = ("record", "error", "enum", "fixed", "array", "map")
#: Largest fixed size compiled (a pattern's repeat count; a larger one is left to fastavro).
_MAX_FIXED_BYTES = 2**16
_VARINT = rb"[\x80-\xff]{0,9}[\x00-\x7f]"
#: Any byte (DOTALL within the pattern, whatever its compile flags): a run of them is a jump
#: (``[\x00-\xff]`` is tested byte by byte: 1.2x the time of a ZTF history record's skip).
_ANY = rb"(?s:.)"
#: Fixed sizes of the primitive types a pattern skips without a length.
_FIXED_PATTERN = {"null": b"", "boolean": _ANY, "float": _ANY + b"{4}", "double": _ANY + b"{8}", "int": _VARINT,
                  "long": _VARINT}
#: Union indexes written as one varint byte (zig-zag 2i): a pattern for more branches is not built.
_MAX_PATTERN_BRANCHES = 64
#: Longest string or bytes value a whole-plan pattern matches (ZTF's longest skipped string is 94 bytes).
_PATTERN_STRING_BYTES = 127
_FLOAT = struct.Struct("<f")
_DOUBLE = struct.Struct("<d")


class Unsupported(Exception):
    """A writer schema (or wanted field) this decoder does not compile; decode with fastavro instead."""


class CorruptRecord(ValueError):
    """Bytes that are not a record of the writer schema (truncated, or a length, count or index out of range)."""


def read_long(buf: bytes, pos: int) -> tuple[int, int]:
    """A zig-zag varint long at ``pos``: (value, position after it)."""
    if pos < len(buf):
        byte = buf[pos]
        if byte < 0x80:  # one byte: union indexes, short lengths, small numbers
            return (byte >> 1) ^ -(byte & 1), pos + 1
    result = shift = 0
    end = len(buf)
    for _ in range(10):
        if pos >= end:
            raise CorruptRecord(f"truncated (a number runs past the record's {end} bytes)")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return (result >> 1) ^ -(result & 1), pos
        shift += 7
    raise CorruptRecord("a varint longer than 10 bytes")


def _length(buf: bytes, pos: int, what: str) -> tuple[int, int]:
    n, pos = read_long(buf, pos)
    if n < 0 or pos + n > len(buf):
        raise CorruptRecord(f"truncated or invalid: a {what} of {n} bytes at byte {pos} of the record's {len(buf)}")
    return n, pos


# ---------------------------------------------------------------- schema walking


class _Schema:
    """Named-type resolution over a parsed (``fastavro.parse_schema``) or plain writer schema."""

    def __init__(self, schema: object):
        self.named: dict[str, object] = {}
        if isinstance(schema, dict):
            self.named.update(schema.get("__named_schemas", {}))
        self._collect(schema, "")

    def _collect(self, node: object, namespace: str) -> None:
        if isinstance(node, list):
            for branch in node:
                self._collect(branch, namespace)
        elif isinstance(node, dict):
            kind = node.get("type")
            if kind in ("record", "error", "enum", "fixed") and "name" in node:
                name = node["name"]
                space = node.get("namespace", namespace)
                full = name if "." in name or not space else f"{space}.{name}"
                self.named.setdefault(full, node)
                self.named.setdefault(name, node)
                namespace = full.rpartition(".")[0]
            if kind in ("record", "error"):
                for field in node.get("fields", []):
                    self._collect(field.get("type"), namespace)
            elif kind == "array":
                self._collect(node.get("items"), namespace)
            elif kind == "map":
                self._collect(node.get("values"), namespace)

    def resolve(self, node: object) -> object:
        """``node`` with a named reference replaced by its definition; a plain ``{"type": "long"}`` as "long"."""
        if isinstance(node, str):
            if node in _PRIMITIVES:
                return node
            if node not in self.named:
                raise Unsupported(f"the type {node!r} (not a primitive, not defined)")
            return self.named[node]
        if isinstance(node, dict):
            kind = node.get("type")
            if kind in _PRIMITIVES and "logicalType" not in node:
                return kind
            if isinstance(kind, (dict, list)):
                return self.resolve(kind)
            if isinstance(kind, str) and kind not in _COMPLEX and kind in self.named:  # {"type": "Name", "doc": ...}
                return self.named[kind]
        return node


def _fixed_size(node: dict) -> int:
    size = node.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= _MAX_FIXED_BYTES:
        raise Unsupported(f"a fixed type of {size!r} bytes (compiled: 0 to {_MAX_FIXED_BYTES})")
    return size


def _kind(node: object) -> str:
    if isinstance(node, str):
        return node
    if isinstance(node, list):
        return "union"
    if isinstance(node, dict):
        kind = node.get("type")
        if kind == "error":
            return "record"
        if isinstance(kind, str):
            return kind
    raise Unsupported(f"the type {str(node)[:60]}")


# ---------------------------------------------------------------- skipping
#
# A skip plan is a tuple of steps, each one of:
#   (PATTERN, compiled)        match at the position, go to its end
#   (LENGTH,)                  a varint length, then that many bytes
#   (UNION, (plan, ...))       a varint branch index, then that branch's plan
#   (BLOCKS, plan, is_map)     Avro blocks of items (a map's items are a string key then the value)

_PATTERN, _LENGTH, _UNION, _BLOCKS = range(4)
_ONE_LENGTH = ((_LENGTH,),)


def _plan(schema: _Schema, node: object) -> list:
    """The skip steps of one value of ``node``; adjacent patterns are joined later (:func:`_join`)."""
    node = schema.resolve(node)
    kind = _kind(node)
    if kind in _FIXED_PATTERN:
        return [(_PATTERN, _FIXED_PATTERN[kind])]
    if kind in ("string", "bytes"):
        return [(_LENGTH,)]
    if kind == "fixed":
        return [(_PATTERN, _ANY + b"{%d}" % _fixed_size(node))]
    if kind == "enum":
        return [(_PATTERN, _VARINT)]
    if kind == "record":
        return [step for field in node.get("fields", []) for step in _plan(schema, field.get("type"))]
    if kind == "union":
        branches = [_join(_plan(schema, branch)) for branch in node]
        if len(branches) <= _MAX_PATTERN_BRANCHES and all(
                len(b) <= 1 and all(step[0] == _PATTERN for step in b) for b in branches):
            return [(_PATTERN, _union_pattern([b[0][1].pattern if b else b"" for b in branches]))]
        return [(_UNION, tuple(branches))]
    if kind == "array":
        return [(_BLOCKS, _join(_plan(schema, node.get("items")), items=True), False)]
    if kind == "map":
        return [(_BLOCKS, _join([(_LENGTH,), *_plan(schema, node.get("values"))], items=True), True)]
    raise Unsupported(f"the type {kind!r}")


def _union_pattern(branches: list[bytes]) -> bytes:
    """A union of branch patterns: branch i's index (one varint byte, zig-zag 2i) then its pattern."""
    return b"(?:" + b"|".join(re.escape(bytes([2 * i])) + branch for i, branch in enumerate(branches)) + b")"


def _join(steps: list, items: bool = False) -> _Plan:
    """Adjacent pattern steps as one compiled pattern (strings are joined first, compiled here); ``items``: the
    plan of an array's or map's items (:class:`_Plan`)."""
    out: list = []
    for step in steps:
        if step[0] == _PATTERN and out and out[-1][0] == _PATTERN:
            out[-1] = (_PATTERN, out[-1][1] + step[1])
        else:
            out.append(step)
    return _Plan([(_PATTERN, re.compile(s[1], re.DOTALL)) if s[0] == _PATTERN and isinstance(s[1], bytes) else s
                  for s in out if not (s[0] == _PATTERN and s[1] == b"")], items)


def _short_lengths() -> bytes:
    """A pattern of a string or bytes value of at most :data:`_PATTERN_STRING_BYTES` bytes (its varint length, then
    that many bytes): one alternative per length, each opening with its distinct length bytes."""
    alternatives = []
    for n in range(_PATTERN_STRING_BYTES + 1):
        code, varint = 2 * n, bytearray()
        while code >= 0x80:
            varint.append((code & 0x7F) | 0x80)
            code >>= 7
        varint.append(code)
        alternatives.append(re.escape(bytes(varint)) + (_ANY + b"{%d}" % n if n else b""))
    return b"(?:" + b"|".join(alternatives) + b")"


_SHORT_LENGTHS = _short_lengths()


def _pattern_of(plan: list) -> bytes | None:
    """One pattern for a whole plan without blocks, its strings and bytes taken as at most
    :data:`_PATTERN_STRING_BYTES` long (None with blocks, or a union of too many branches)."""
    parts = []
    for step in plan:
        kind = step[0]
        if kind == _PATTERN:
            parts.append(step[1].pattern)
        elif kind == _LENGTH:
            parts.append(_SHORT_LENGTHS)
        elif kind == _UNION and len(step[1]) <= _MAX_PATTERN_BRANCHES:
            branches = [_pattern_of(list(b)) for b in step[1]]
            if any(b is None for b in branches):
                return None
            parts.append(_union_pattern(branches))
        else:
            return None
    return b"".join(parts)


class _Plan(tuple):
    """Skip steps (a tuple), and ``fast``: for an array's or map's items (skipped many times, where compiling
    pays), one pattern for all the steps when they have no blocks (strings and bytes of up to
    :data:`_PATTERN_STRING_BYTES`; a longer one falls back to the steps)."""

    fast: re.Pattern | None

    def __new__(cls, steps: list, items: bool = False):
        plan = super().__new__(cls, steps)
        pattern = _pattern_of(steps) if items and any(s[0] != _PATTERN for s in steps) else None
        plan.fast = None if pattern is None else re.compile(pattern, re.DOTALL)
        return plan


def _skip(plan: _Plan, buf: bytes, pos: int) -> int:
    """The position after one value of ``plan`` at ``pos``."""
    if plan.fast is not None:
        match = plan.fast.match(buf, pos)
        if match is not None:
            return match.end()
    for step in plan:
        kind = step[0]
        if kind == _PATTERN:
            match = step[1].match(buf, pos)
            if match is None:
                raise CorruptRecord(f"truncated or invalid data at byte {pos} of {len(buf)}")
            pos = match.end()
        elif kind == _LENGTH:
            n, pos = _length(buf, pos, "string or bytes value")
            pos += n
        elif kind == _UNION:
            index, pos = read_long(buf, pos)
            if not 0 <= index < len(step[1]):
                raise CorruptRecord(f"a union branch index below {len(step[1])}, got {index}")
            branch = step[1][index]
            if branch == _ONE_LENGTH:  # ["null", "string"] and the like, without a call
                n, pos = _length(buf, pos, "string or bytes value")
                pos += n
            elif branch:
                pos = _skip(branch, buf, pos)
        else:
            pos = _skip_blocks(step[1], buf, pos)
    return pos


def _block(buf: bytes, pos: int) -> tuple[int, int | None, int]:
    """An array's or map's block header at ``pos``: (items, the block's byte size or None, position after it);
    0 items end the blocks. A negative count is followed by the block's byte size (Avro spec)."""
    count, pos = read_long(buf, pos)
    size = None
    if count < 0:
        count = -count
        size, pos = _length(buf, pos, "block")
    if count > len(buf) - pos:  # every item takes at least one byte (check_schema_bounded)
        raise CorruptRecord(f"truncated or invalid: a block of {count} items in the record's last {len(buf) - pos} "
                            "bytes")
    return count, size, pos


def _skip_blocks(item: _Plan, buf: bytes, pos: int) -> int:
    fast = item.fast
    while True:
        count, size, pos = _block(buf, pos)
        if count == 0:
            return pos
        if size is not None:  # the block's size is known: jump it
            pos += size
            continue
        if fast is None:
            for _ in range(count):
                pos = _skip(item, buf, pos)
            continue
        for _ in range(count):  # _skip's first step, without its call (a ZTF history is tens of items)
            match = fast.match(buf, pos)
            pos = _skip(item, buf, pos) if match is None else match.end()


# ---------------------------------------------------------------- reading

Reader = Callable[[bytes, int], tuple]


def _read_null(buf: bytes, pos: int) -> tuple:
    return None, pos


def _read_boolean(buf: bytes, pos: int) -> tuple:
    if pos >= len(buf):
        raise CorruptRecord("truncated (a boolean past the record's end)")
    return buf[pos] != 0, pos + 1  # as fastavro: any byte but 0 is true


def _read_float(buf: bytes, pos: int) -> tuple:
    if pos + 4 > len(buf):
        raise CorruptRecord("truncated (a float past the record's end)")
    return _FLOAT.unpack_from(buf, pos)[0], pos + 4


def _read_double(buf: bytes, pos: int) -> tuple:
    if pos + 8 > len(buf):
        raise CorruptRecord("truncated (a double past the record's end)")
    return _DOUBLE.unpack_from(buf, pos)[0], pos + 8


def _read_bytes(buf: bytes, pos: int) -> tuple:
    n, pos = _length(buf, pos, "bytes value")
    return bytes(buf[pos : pos + n]), pos + n


def _read_string(buf: bytes, pos: int) -> tuple:
    n, pos = _length(buf, pos, "string")
    try:
        return str(buf[pos : pos + n], "utf-8"), pos + n
    except UnicodeDecodeError as exc:
        raise CorruptRecord(f"a UTF-8 string at byte {pos} ({exc.reason})") from None


_PRIMITIVE_READERS: dict[str, Reader] = {
    "null": _read_null, "boolean": _read_boolean, "int": read_long, "long": read_long, "float": _read_float,
    "double": _read_double, "bytes": _read_bytes, "string": _read_string}


def _reader(schema: _Schema, node: object, wanted: dict | None) -> Reader:
    """A reader of one value of ``node``: all of it (``wanted`` None), or of a record only the ``wanted`` fields."""
    node = schema.resolve(node)
    if isinstance(node, dict) and "logicalType" in node:
        raise Unsupported(f"a wanted field of logical type {node['logicalType']!r} (fastavro converts it)")
    kind = _kind(node)
    if kind in _PRIMITIVE_READERS:
        return _PRIMITIVE_READERS[kind]
    if kind == "union":
        branches = tuple(_reader(schema, branch, wanted) for branch in node)

        def read_union(buf: bytes, pos: int) -> tuple:
            index, pos = read_long(buf, pos)
            if not 0 <= index < len(branches):
                raise CorruptRecord(f"a union branch index below {len(branches)}, got {index}")
            return branches[index](buf, pos)

        return read_union
    if kind == "record":
        return _record_reader(schema, node, wanted)
    if wanted is not None:  # a path through a field that is not a record: fastavro reads it whole too
        wanted = None
    if kind == "fixed":
        size = _fixed_size(node)

        def read_fixed(buf: bytes, pos: int) -> tuple:
            if pos + size > len(buf):
                raise CorruptRecord("truncated (a fixed value past the record's end)")
            return bytes(buf[pos : pos + size]), pos + size

        return read_fixed
    if kind == "enum":
        symbols = tuple(node.get("symbols", ()))

        def read_enum(buf: bytes, pos: int) -> tuple:
            index, pos = read_long(buf, pos)
            if not 0 <= index < len(symbols):
                raise CorruptRecord(f"an enum index below {len(symbols)}, got {index}")
            return symbols[index], pos

        return read_enum
    if kind in ("array", "map"):
        is_map = kind == "map"
        item = _reader(schema, node.get("values" if is_map else "items"), None)

        def read_blocks(buf: bytes, pos: int) -> tuple:
            out: dict | list = {} if is_map else []
            while True:
                count, _, pos = _block(buf, pos)
                if count == 0:
                    return out, pos
                for _ in range(count):
                    if is_map:
                        key, pos = _read_string(buf, pos)
                        out[key], pos = item(buf, pos)
                    else:
                        value, pos = item(buf, pos)
                        out.append(value)

        return read_blocks
    raise Unsupported(f"the type {kind!r}")


def _record_reader(schema: _Schema, node: dict, wanted: dict | None) -> Reader:
    """Reads the wanted fields of a record (all with ``wanted`` None); runs of unwanted fields are one skip plan."""
    steps: list = []  # (name, reader) or (None, skip plan)
    pending: list = []
    for field in node.get("fields", []):
        name = field.get("name")
        if wanted is not None and name not in wanted:
            pending.extend(_plan(schema, field.get("type")))
            continue
        if pending:
            steps.append((None, _join(pending)))
            pending = []
        steps.append((name, _reader(schema, field.get("type"), None if wanted is None else wanted[name])))
    if pending:
        steps.append((None, _join(pending)))
    steps_t = tuple(steps)

    def read_record(buf: bytes, pos: int) -> tuple:
        record = {}
        for name, step in steps_t:
            if name is None:
                pos = _skip(step, buf, pos)
            else:
                record[name], pos = step(buf, pos)
        return record, pos

    return read_record


class ProjectedDecoder:
    """Records of one writer schema decoded for the ``wanted`` field tree (None: every field).

    ``writer_schema``: as loaded from JSON or parsed by ``fastavro.parse_schema``; it must have passed
    :func:`rbda.alerts.packets.check_schema_bounded`. Raises :class:`Unsupported` for what it does not compile.
    """

    def __init__(self, writer_schema: object, wanted: dict | None = None):
        self._read = _reader(_Schema(writer_schema), writer_schema, wanted)

    def decode(self, buf: bytes, pos: int = 0) -> tuple[object, int]:
        """(record, position after it) of the record at ``pos``; :class:`CorruptRecord` if the bytes are not one."""
        return self._read(buf, pos)
